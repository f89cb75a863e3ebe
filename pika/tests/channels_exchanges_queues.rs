//! Connections, channels, exchanges, queues and transactions against the
//! real broker, one test per documented behaviour.

mod support;

use std::time::Duration;

use pika::{Confirmation, ConnectOptions, Error, ExchangeType, Message, ReplyCode};
use support::*;

#[tokio::test]
async fn connect_with_options_sends_client_properties_and_the_connection_name() {
    let name = unique("named");
    let options = ConnectOptions::new()
        .host("127.0.0.1")
        .port(5672)
        .login("guest")
        .password("guest")
        .virtualhost("/")
        .timeout(Duration::from_secs(5))
        .client_property("connection_name", name.as_str())
        .unwrap()
        .client_property("x-test-property", "shown-in-the-broker")
        .unwrap();
    let connection = pika::connect_with(options).await.unwrap();
    let listing = rabbitmqctl(&["-q", "list_connections", "client_properties"]);
    let line = listing
        .lines()
        .find(|l| l.contains(&name))
        .expect("the connection is listed by name");
    assert!(line.contains("shown-in-the-broker"), "{line}");
    connection.close().await.unwrap();
}

#[tokio::test]
async fn close_callback_gets_none_for_a_close_by_the_application() {
    let connection = connect().await;
    let (tx, rx) = tokio::sync::oneshot::channel();
    connection.add_close_callback(move |error| {
        let _ = tx.send(error.map(|e| e.to_string()));
    });
    connection.close().await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, None);
    assert!(connection.is_closed());
}

#[tokio::test]
async fn channel_with_an_explicit_number() {
    let connection = connect().await;
    let channel = connection.channel().number(42).await.unwrap();
    assert_eq!(channel.number(), 42);
    let err = connection.channel().number(42).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Amqp(pika::amqp_conn::Error::ChannelUnavailable { channel: 42, .. })
        ),
        "{err:?}"
    );
    connection.close().await.unwrap();
}

#[tokio::test]
async fn declare_exchange_of_every_builtin_type() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    for kind in [
        ExchangeType::Direct,
        ExchangeType::Fanout,
        ExchangeType::Topic,
        ExchangeType::Headers,
    ] {
        let name = unique(kind.as_str());
        let exchange = channel
            .declare_exchange(&name)
            .kind(kind.clone())
            .auto_delete(true)
            .await
            .unwrap();
        assert_eq!(exchange.kind(), &kind);
        let again = channel.get_exchange(&name).await.unwrap();
        assert_eq!(again.name(), name);
        exchange.delete().await.unwrap();
    }
    connection.close().await.unwrap();
}

#[tokio::test]
async fn custom_exchange_types_are_sent_by_name() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    // The delayed message plugin is not enabled here: the broker refuses
    // the type by the name we sent.
    let err = channel
        .declare_exchange(&unique("delayed"))
        .kind("x-delayed-message")
        .await
        .unwrap_err();
    assert_eq!(err.reply_code(), Some(ReplyCode::COMMAND_INVALID), "{err}");
    assert!(
        err.reply_text().unwrap().contains("x-delayed-message"),
        "{err}"
    );
    connection.close().await.unwrap();
}

#[tokio::test]
async fn get_exchange_that_does_not_exist_is_404() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let err = channel.get_exchange(&unique("missing")).await.unwrap_err();
    assert_eq!(err.reply_code(), Some(ReplyCode::NOT_FOUND));
    assert!(err.is_channel_error());
    assert!(channel.is_closed());
    connection.close().await.unwrap();
}

#[tokio::test]
async fn server_named_exclusive_queue() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = channel.declare_queue("").exclusive(true).await.unwrap();
    assert!(queue.name().starts_with("amq.gen-"), "{}", queue.name());
    let same = channel.get_queue(queue.name()).await.unwrap();
    assert_eq!(same.name(), queue.name());
    connection.close().await.unwrap();
}

#[tokio::test]
async fn declare_queue_with_arguments_and_redeclare_mismatch_is_406() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let name = unique("args");
    let queue = channel
        .declare_queue(&name)
        .argument("x-max-length", 10)
        .await
        .unwrap();
    let err = channel
        .declare_queue(&name)
        .argument("x-max-length", 20)
        .await
        .unwrap_err();
    assert_eq!(err.reply_code(), Some(ReplyCode::PRECONDITION_FAILED));
    let channel = connection.channel().await.unwrap();
    channel
        .get_queue(queue.name())
        .await
        .unwrap()
        .delete()
        .if_empty(false)
        .if_unused(false)
        .await
        .unwrap();
    connection.close().await.unwrap();
}

#[tokio::test]
async fn names_longer_than_255_bytes_are_refused_before_sending() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let err = channel.declare_queue(&"q".repeat(300)).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                what: "queue name",
                ..
            }
        ),
        "{err:?}"
    );
    let err = channel
        .declare_queue("ok")
        .argument(&"k".repeat(300), 1)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidArgument {
                what: "argument name",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!channel.is_closed());
    connection.close().await.unwrap();
}

#[tokio::test]
async fn set_qos_limits_unacked_deliveries() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    channel.set_qos().prefetch_count(2).await.unwrap();
    let queue = channel
        .declare_queue(&unique("qos"))
        .exclusive(true)
        .await
        .unwrap();
    for n in 0..5 {
        let _ = channel
            .default_exchange()
            .publish(Message::new(format!("{n}")), queue.name())
            .await
            .unwrap();
    }
    let mut messages = queue.iterator().await.unwrap();
    let first = next(&mut messages).await.unwrap().unwrap();
    let _second = next(&mut messages).await.unwrap().unwrap();
    // A third arrives only after an ack.
    assert!(tokio::time::timeout(
        Duration::from_millis(300),
        futures_util::StreamExt::next(&mut messages)
    )
    .await
    .is_err());
    first.ack(false).unwrap();
    assert!(next(&mut messages).await.unwrap().is_ok());
    connection.close().await.unwrap();
}

#[tokio::test]
async fn an_operation_past_its_timeout_is_a_timeout_error_naming_it() {
    let proxy = FreezableProxy::start("127.0.0.1:5672").await;
    let connection = pika::connect(&format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port))
        .await
        .unwrap();
    let channel = connection.channel().await.unwrap();
    proxy.freeze();
    let err = channel
        .set_qos()
        .prefetch_count(1)
        .timeout(Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                operation: "basic.qos",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("basic.qos timed out"), "{err}");
}

#[tokio::test]
async fn exchange_to_exchange_binding_routes_messages() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let source = channel.declare_exchange(&unique("src")).await.unwrap();
    let destination = channel
        .declare_exchange(&unique("dst"))
        .kind(ExchangeType::Fanout)
        .await
        .unwrap();
    let queue = channel.declare_queue("").exclusive(true).await.unwrap();
    queue.bind(&destination, "").await.unwrap();
    destination.bind(&source, "routing").await.unwrap();
    let confirmation = source
        .publish(Message::new("via two exchanges"), "routing")
        .await
        .unwrap();
    assert!(confirmation.is_ack(), "{confirmation:?}");
    let message = queue.get().await.unwrap().unwrap();
    assert_eq!(&message.body()[..], b"via two exchanges");
    assert_eq!(message.exchange(), source.name());
    message.ack(false).unwrap();
    destination.unbind(&source, "routing").await.unwrap();
    let returned = source
        .publish(Message::new("nowhere"), "routing")
        .await
        .unwrap();
    assert!(matches!(returned, Confirmation::Returned(_)));
    source.delete().await.unwrap();
    destination.delete().await.unwrap();
    connection.close().await.unwrap();
}

#[tokio::test]
async fn queue_bind_and_unbind_with_a_topic_pattern() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let logs = channel
        .declare_exchange(&unique("topic"))
        .kind(ExchangeType::Topic)
        .await
        .unwrap();
    let queue = channel.declare_queue("").exclusive(true).await.unwrap();
    queue.bind(&logs, "kern.*").await.unwrap();
    assert!(logs
        .publish(Message::new("a"), "kern.critical")
        .await
        .unwrap()
        .is_ack());
    assert!(matches!(
        logs.publish(Message::new("b"), "user.info").await.unwrap(),
        Confirmation::Returned(_)
    ));
    queue.unbind(&logs, "kern.*").await.unwrap();
    assert!(matches!(
        logs.publish(Message::new("c"), "kern.critical")
            .await
            .unwrap(),
        Confirmation::Returned(_)
    ));
    assert_eq!(queue.purge().await.unwrap(), Some(1));
    logs.delete().await.unwrap();
    connection.close().await.unwrap();
}

#[tokio::test]
async fn returned_message_is_an_error_with_on_return_raises() {
    let connection = connect().await;
    let channel = connection.channel().on_return_raises(true).await.unwrap();
    let err = channel
        .default_exchange()
        .publish(Message::new("lost"), &unique("nowhere"))
        .await
        .unwrap_err();
    let Error::DeliveryError(returned) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(returned.reply_code, ReplyCode::NO_ROUTE);
    assert_eq!(&returned.body[..], b"lost");
    assert_eq!(err.reply_code(), Some(ReplyCode::NO_ROUTE));
    // Without mandatory, nothing comes back.
    let quiet = channel
        .default_exchange()
        .publish(Message::new("dropped"), &unique("nowhere"))
        .mandatory(false)
        .await
        .unwrap();
    assert!(quiet.is_ack());
    connection.close().await.unwrap();
}

#[tokio::test]
async fn returned_message_is_an_outcome_without_on_return_raises() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let outcome = channel
        .default_exchange()
        .publish(Message::new("lost"), &unique("nowhere"))
        .await
        .unwrap();
    let Confirmation::Returned(returned) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(&returned.body[..], b"lost");
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_nacked_publish_is_an_error_never_a_success() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = channel
        .declare_queue(&unique("full"))
        .argument("x-max-length", 1)
        .argument("x-overflow", "reject-publish")
        .exclusive(true)
        .await
        .unwrap();
    let exchange = channel.default_exchange();
    assert!(exchange
        .publish(Message::new("1"), queue.name())
        .await
        .unwrap()
        .is_ack());
    // What `?` sees: an error that says the broker refused the message.
    let refused: pika::Result<Confirmation> =
        exchange.publish(Message::new("2"), queue.name()).await;
    let err = refused.expect_err("a nack is an error");
    assert!(matches!(&err, Error::Nacked { routing_key, .. } if routing_key == queue.name()));
    assert!(err.to_string().contains("refused"), "{err}");
    // Awaited later through `send`, the same.
    let pending = exchange
        .publish(Message::new("3"), queue.name())
        .send()
        .await
        .unwrap();
    assert!(matches!(pending.await, Err(Error::Nacked { .. })));
    connection.close().await.unwrap();
}

#[tokio::test]
async fn publish_is_indeterminate_when_the_connection_dies_before_the_confirm() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    // RabbitMQ does not implement `immediate`: it closes the connection
    // (540) instead of confirming.
    let err = channel
        .default_exchange()
        .publish(Message::new("x"), "anything")
        .immediate(true)
        .await
        .unwrap_err();
    let Error::Indeterminate(cause) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(cause.reply_code(), Some(ReplyCode::NOT_IMPLEMENTED));
}

#[tokio::test]
async fn without_publisher_confirms_publish_returns_not_confirmed() {
    let connection = connect().await;
    let channel = connection
        .channel()
        .publisher_confirms(false)
        .await
        .unwrap();
    let queue = channel
        .declare_queue(&unique("fast"))
        .exclusive(true)
        .await
        .unwrap();
    let outcome = channel
        .default_exchange()
        .publish(Message::new("x"), queue.name())
        .await
        .unwrap();
    assert!(matches!(outcome, Confirmation::NotConfirmed));
    assert!(queue.get().await.unwrap().is_some());
    connection.close().await.unwrap();
}

#[tokio::test]
async fn transaction_commit_delivers_publishes() {
    let connection = connect().await;
    let channel = connection
        .channel()
        .publisher_confirms(false)
        .await
        .unwrap();
    let queue = channel
        .declare_queue(&unique("tx"))
        .exclusive(true)
        .await
        .unwrap();
    let scope = channel.transaction().unwrap().begin().await.unwrap();
    for n in 0..3 {
        let _ = channel
            .default_exchange()
            .publish(Message::new(format!("{n}")), queue.name())
            .await
            .unwrap();
    }
    assert!(
        queue.get().fail(false).await.unwrap().is_none(),
        "nothing before the commit"
    );
    scope.commit().await.unwrap();
    for _ in 0..3 {
        queue.get().no_ack(true).await.unwrap().unwrap();
    }
    connection.close().await.unwrap();
}

#[tokio::test]
async fn transaction_rollback_discards_publishes() {
    let connection = connect().await;
    let channel = connection
        .channel()
        .publisher_confirms(false)
        .await
        .unwrap();
    let queue = channel
        .declare_queue(&unique("rollback"))
        .exclusive(true)
        .await
        .unwrap();
    let transaction = channel.transaction().unwrap();
    transaction.select().await.unwrap();
    let _ = channel
        .default_exchange()
        .publish(Message::new("discarded"), queue.name())
        .await
        .unwrap();
    transaction.rollback().await.unwrap();
    // A scope dropped without commit rolls back too.
    {
        let _scope = channel.transaction().unwrap().begin().await.unwrap();
        let _ = channel
            .default_exchange()
            .publish(Message::new("also discarded"), queue.name())
            .await
            .unwrap();
    }
    transaction.commit().await.unwrap();
    assert!(queue.get().fail(false).await.unwrap().is_none());
    connection.close().await.unwrap();
}

#[tokio::test]
async fn transaction_on_a_confirm_channel_is_refused() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    assert!(matches!(
        channel.transaction(),
        Err(Error::TransactionWithConfirms)
    ));
    connection.close().await.unwrap();
}

#[tokio::test]
async fn queue_delete_defaults_refuse_a_queue_with_messages() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = channel.declare_queue(&unique("delete")).await.unwrap();
    let _ = channel
        .default_exchange()
        .publish(Message::new("x"), queue.name())
        .await
        .unwrap();
    let err = queue.delete().await.unwrap_err();
    assert_eq!(err.reply_code(), Some(ReplyCode::PRECONDITION_FAILED));
    let channel = connection.channel().await.unwrap();
    let queue = channel.get_queue(queue.name()).await.unwrap();
    assert_eq!(queue.delete().if_empty(false).await.unwrap(), 1);
    connection.close().await.unwrap();
}

#[tokio::test]
async fn send_keeps_many_publishes_in_flight_and_each_is_confirmed() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = channel
        .declare_queue(&unique("in-flight"))
        .exclusive(true)
        .await
        .unwrap();
    let exchange = channel.default_exchange();
    let mut pending = Vec::new();
    for n in 0..500 {
        pending.push(
            exchange
                .publish(Message::new(format!("{n}")), queue.name())
                .send()
                .await
                .unwrap(),
        );
    }
    for confirmation in pending {
        assert!(confirmation.await.unwrap().is_ack());
    }
    assert_eq!(
        channel
            .get_queue(queue.name())
            .await
            .unwrap()
            .declared_message_count(),
        500
    );
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_channel_operation_timeout_applies_to_every_operation_without_its_own() {
    let proxy = FreezableProxy::start("127.0.0.1:5672").await;
    let connection = pika::connect(&format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port))
        .await
        .unwrap();
    let channel = connection
        .channel()
        .operation_timeout(Duration::from_millis(200))
        .await
        .unwrap();
    let queue = channel.declare_queue("").exclusive(true).await.unwrap();
    proxy.freeze();
    let err = queue.purge().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                operation: "queue.purge",
                ..
            }
        ),
        "{err:?}"
    );
    let err = channel
        .default_exchange()
        .publish(Message::new("x"), queue.name())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                operation: "basic.publish",
                ..
            }
        ),
        "{err:?}"
    );
    let err = channel.close().await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                operation: "channel.close",
                ..
            }
        ),
        "{err:?}"
    );
}
