//! Several broker addresses: the first that answers is used, an
//! unreachable one is skipped, a refusal every node would repeat stops the
//! search, and when none answers the error lists every attempt.

mod support;

use amqp_conn::{Connection, ConnectionConfig, Credentials, Error};
use pika_test_support::FaultProxy;

/// A port where nothing listens.
const DEAD: (&str, u16) = ("127.0.0.1", 1);

#[tokio::test]
async fn an_unreachable_address_is_skipped_for_the_next() {
    let live = support::config();
    let config = live
        .clone()
        .with_addresses([DEAD, (live.host.as_str(), live.port)]);
    let connection = Connection::open(config)
        .await
        .expect("the second address answers");
    assert_eq!(connection.address(), live.address());
    connection.close().await.unwrap();
}

#[tokio::test]
async fn when_no_address_answers_the_error_lists_every_attempt() {
    let proxy = FaultProxy::start("127.0.0.1:5672").await.unwrap();
    proxy.refuse(true).await.unwrap();
    let config = support::config().with_addresses([DEAD, ("127.0.0.1", proxy.port())]);
    let error = Connection::open(config).await.unwrap_err();
    let Error::NoBrokerReachable { attempts } = &error else {
        panic!("expected NoBrokerReachable, got {error:?}");
    };
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].0, "127.0.0.1:1");
    assert_eq!(attempts[1].0, proxy.address());
    assert!(error.is_connection_error());
    let text = error.to_string();
    assert!(
        text.starts_with(
            "could not connect to any of 2 brokers: 127.0.0.1:1 (could not connect to 127.0.0.1:1"
        ),
        "{text}"
    );
    assert!(text.contains("refused"), "{text}");
}

#[tokio::test]
async fn a_refused_login_is_not_retried_on_the_other_nodes() {
    let other_node = FaultProxy::start("127.0.0.1:5672").await.unwrap();
    let live = support::config();
    let mut config = live.with_addresses([("127.0.0.1", 5672), ("127.0.0.1", other_node.port())]);
    config.credentials = Credentials::new("guest", "wrong password");
    let error = Connection::open(config).await.unwrap_err();
    assert!(
        matches!(error, Error::AuthenticationFailed { .. }),
        "{error:?}"
    );
    assert_eq!(
        other_node.connections_accepted(),
        0,
        "the second node was tried"
    );
}

#[tokio::test]
async fn urls_of_a_cluster_connect_through_whichever_answers() {
    let proxy = FaultProxy::start("127.0.0.1:5672").await.unwrap();
    let config =
        ConnectionConfig::from_urls(["amqp://guest:guest@127.0.0.1:1/%2f", &proxy.url()]).unwrap();
    let connection = Connection::open(config).await.unwrap();
    assert_eq!(connection.address(), proxy.address());
    assert_eq!(proxy.connections_accepted(), 1);
    connection.close().await.unwrap();
}
