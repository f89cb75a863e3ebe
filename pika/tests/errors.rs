//! Errors a person reads: what the broker refused is said to be refused,
//! the predicates users reach for, Debug output without internals or
//! secrets.

mod support;

use std::error::Error as _;
use std::time::Duration;

use pika::{Error, Message, ReplyCode};
use support::*;

#[tokio::test]
async fn a_publish_to_a_missing_exchange_is_refused_and_a_channel_error() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    // The exchange is deleted under the application's feet.
    let name = unique("gone");
    let exchange = channel.declare_exchange(&name).await.unwrap();
    exchange.delete().await.unwrap();
    let err = exchange
        .publish(Message::new("lost"), "key")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::PublishRefused(_)), "{err:?}");
    assert!(err.is_channel_error());
    assert!(!err.is_connection_error());
    assert_eq!(err.reply_code(), Some(ReplyCode::NOT_FOUND));
    let chain = format!("{err}: {}", err.source().expect("the broker's close"));
    assert!(chain.contains("refused"), "{chain}");
    assert!(chain.contains(&name), "{chain}");
    assert!(!chain.contains("may or may not"), "{chain}");
    assert!(channel.is_closed());
    connection.close().await.unwrap();
}

#[tokio::test]
async fn predicates_say_what_kind_of_error_it_is() {
    // A declare that cannot be answered: the proxy forwards nothing (a 1
    // ms timeout against the real broker raced a fast declare and lost).
    let proxy = pika_test_support::FaultProxy::start("127.0.0.1:5672")
        .await
        .unwrap();
    let connection = pika::connect(&proxy.url()).await.unwrap();
    let channel = connection
        .channel()
        .operation_timeout(Duration::from_millis(50))
        .await
        .unwrap();
    proxy.black_hole(true);
    let err = channel
        .declare_queue(&unique("slow"))
        .exclusive(true)
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(!err.is_channel_error());
    let err = pika::connect("amqp://guest:guest@127.0.0.1:1/")
        .await
        .unwrap_err();
    assert!(err.is_connection_error(), "{err}");
    assert!(err.source().is_some(), "the I/O error is the source: {err}");
    assert!(
        !err.to_string().contains("os error"),
        "Display and source() must not both carry the cause: {err}"
    );
    proxy.black_hole(false);
    connection.close().await.unwrap();
}

#[tokio::test]
async fn connection_and_channel_debug_output_is_short_and_has_no_secrets() {
    let connection = pika::connect(&url()).await.unwrap();
    let channel = connection.channel().await.unwrap();
    let connection_debug = format!("{connection:?}");
    let channel_debug = format!("{channel:?}");
    for debug in [&connection_debug, &channel_debug] {
        assert!(debug.contains("127.0.0.1:5672"), "{debug}");
        assert!(!debug.contains("guest"), "{debug}");
        assert!(!debug.contains("Semaphore"), "{debug}");
        assert!(!debug.contains("0x"), "{debug}");
        assert!(debug.len() < 300, "{} bytes: {debug}", debug.len());
    }
    assert!(connection_debug.contains("open"), "{connection_debug}");
    connection.close().await.unwrap();
    assert!(format!("{connection:?}").contains("closed"));
}

#[tokio::test]
async fn a_list_of_brokers_connects_to_the_first_that_answers_and_says_why_when_none_does() {
    let connection = pika::connect_with(
        pika::ConnectOptions::from_urls(["amqp://guest:guest@127.0.0.1:1/%2f", &url()]).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(connection.address(), "127.0.0.1:5672");
    connection.close().await.unwrap();

    let error = pika::connect_with(
        pika::ConnectOptions::new()
            .login("guest")
            .password("s3cret")
            .addresses([("127.0.0.1", 1), ("127.0.0.1", 2)]),
    )
    .await
    .unwrap_err();
    assert!(error.is_connection_error(), "{error:?}");
    let text = format!("{error:#}");
    assert!(
        text.contains("any of 2 brokers") && text.contains("127.0.0.1:2"),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
}
