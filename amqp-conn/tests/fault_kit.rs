//! The fault-injection kit of tests/support (FaultProxy, the broker control
//! helpers) driven with a real client: amqp-conn against the local
//! RabbitMQ, and against a second node for stopping the application.
//! (pika-test-support cannot depend on amqp-conn, whose tests use it.)

mod support;

use std::time::Duration;

use amqp_conn::{Connection, ConnectionConfig, ConnectionEvent, Error};
use amqp_wire::{BasicProperties, BasicPublish, QueueDeclare, ReplyCode};
use bytes::Bytes;
use pika_test_support::{close_connection_named, BrokerControlError, Direction, FaultProxy};
use support::*;

/// Waits up to 10 s for the connection's `Closed` event; returns its error.
async fn closed(events: &mut tokio::sync::broadcast::Receiver<ConnectionEvent>) -> Error {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match events.recv().await {
                Ok(ConnectionEvent::Closed(error)) => return error,
                Ok(_) => continue,
                Err(e) => panic!("events ended before Closed: {e}"),
            }
        }
    })
    .await
    .expect("the connection closes within 10 s")
}

#[tokio::test]
async fn close_connection_named_closes_it_with_the_brokers_reason() {
    let name = unique("fault-kit-named");
    let connection = Connection::open(config().with_connection_name(name.clone()))
        .await
        .unwrap();
    let mut events = connection.events();
    let other = connect().await;
    tokio::task::spawn_blocking(move || {
        close_connection_named(&name, "closed by the fault kit test")
    })
    .await
    .unwrap()
    .unwrap();
    let error = closed(&mut events).await;
    assert_eq!(
        error.reply_code(),
        Some(ReplyCode::CONNECTION_FORCED),
        "{error:?}"
    );
    let text = &error.close_reason().unwrap().text;
    assert!(text.contains("closed by the fault kit test"), "{text}");
    assert!(connection.is_closed());
    // Only that one.
    assert!(!other.is_closed());
    other.close().await.unwrap();
}

#[tokio::test]
async fn close_connection_named_fails_without_such_a_connection() {
    let name = unique("fault-kit-nobody");
    let error = tokio::task::spawn_blocking(move || close_connection_named(&name, "nobody"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(error, BrokerControlError::NoConnectionNamed { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn a_connection_through_the_proxy_sees_cut_and_reset() {
    let proxy = FaultProxy::start("127.0.0.1:5672").await.unwrap();
    let through_proxy = || ConnectionConfig::from_url(&proxy.url()).unwrap();

    let connection = Connection::open(through_proxy()).await.unwrap();
    let mut events = connection.events();
    connection.open_channel().await.unwrap();
    assert_eq!(proxy.cut().await, 1);
    let error = closed(&mut events).await;
    assert!(error.is_connection_error(), "{error:?}");

    let connection = Connection::open(through_proxy()).await.unwrap();
    let mut events = connection.events();
    assert_eq!(proxy.reset().await, 1);
    let error = closed(&mut events).await;
    assert!(error.is_connection_error(), "{error:?}");
    assert_eq!(proxy.connections_accepted(), 2);
}

/// Cuts the connection at every tenth byte of the handshake, each way:
/// opening fails, in bounded time, every time.
#[tokio::test]
async fn opening_fails_cleanly_wherever_the_handshake_is_cut() {
    let proxy = FaultProxy::start("127.0.0.1:5672").await.unwrap();
    let config = ConnectionConfig::from_url(&proxy.url())
        .unwrap()
        .with_connection_timeout(Duration::from_secs(5));
    let connection = Connection::open(config.clone()).await.unwrap();
    // The bytes each way from connect to connection.open-ok.
    let handshake = [Direction::ClientToBroker, Direction::BrokerToClient]
        .map(|direction| (direction, proxy.bytes_forwarded(direction)));
    connection.close().await.unwrap();
    for (direction, bytes) in handshake {
        assert!(bytes > 8, "{direction:?}: {bytes}");
        for cut_at in (0..bytes).step_by(10) {
            proxy.cut_after_bytes(cut_at, direction);
            let opened =
                tokio::time::timeout(Duration::from_secs(10), Connection::open(config.clone()))
                    .await
                    .unwrap_or_else(|_| panic!("open cut at {cut_at} {direction:?} ends"));
            let error = opened.expect_err("the cut open fails");
            // RabbitMQ announces authentication_failure_close, so an end
            // of stream after connection.start-ok is a cut network, not a
            // refused login: every cut point is a connection error, which
            // a reconnecting client retries.
            assert!(
                error.is_connection_error(),
                "{cut_at} {direction:?}: {error:?}"
            );
        }
    }
}

/// Stops and starts the application of a second node, so that the main
/// node and the tests beside this one are left alone (test group
/// `second-node` in .config/nextest.toml). One test: the node takes
/// seconds to start.
#[tokio::test]
async fn second_node_app_stop_start_and_memory_alarm() {
    let second = SecondNode::start();
    let node = second.node();
    let config = ConnectionConfig::from_url(&second.plain_url())
        .unwrap()
        .with_connection_timeout(Duration::from_secs(5));

    // Stopping the application closes the connections and refuses new ones.
    let connection = Connection::open(config.clone()).await.unwrap();
    let mut events = connection.events();
    let lock = tokio::task::spawn_blocking({
        let node = node.clone();
        move || node.lock_app()
    })
    .await
    .unwrap()
    .unwrap();
    let lock = std::sync::Arc::new(lock);
    tokio::task::spawn_blocking({
        let lock = lock.clone();
        move || {
            let stopped = lock.stop_app().unwrap();
            let refused = std::net::TcpStream::connect(("127.0.0.1", SecondNode::PLAIN_PORT));
            assert!(refused.is_err(), "the listener is closed while stopped");
            stopped.start_app().unwrap();
        }
    })
    .await
    .unwrap();
    let error = closed(&mut events).await;
    assert!(error.is_connection_error(), "{error:?}");
    let connection = Connection::open(config.clone()).await.unwrap();
    connection.close().await.unwrap();

    // A test that panics while the application is stopped leaves it started.
    let panicked = tokio::task::spawn_blocking({
        let lock = lock.clone();
        move || {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let _stopped = lock.stop_app().unwrap();
                panic!("the test fails while the application is stopped");
            }))
        }
    })
    .await
    .unwrap();
    assert!(panicked.is_err());
    let connection = Connection::open(config.clone()).await.unwrap();
    drop(lock);

    // The memory alarm blocks a publisher until cleared.
    let mut events = connection.events();
    let channel = connection.open_channel().await.unwrap();
    let queue = unique("fault-kit-alarm");
    channel
        .call(QueueDeclare {
            queue: s(&queue),
            exclusive: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let alarm = tokio::task::spawn_blocking({
        let node = node.clone();
        move || node.raise_memory_alarm()
    })
    .await
    .unwrap()
    .unwrap();
    channel
        .publish(
            BasicPublish {
                routing_key: s(&queue),
                ..Default::default()
            },
            BasicProperties::default(),
            Bytes::from_static(b"during the alarm"),
        )
        .await
        .unwrap();
    wait_for_event(&mut events, "Blocked", |e| {
        matches!(e, ConnectionEvent::Blocked { .. })
    })
    .await;
    tokio::task::spawn_blocking(move || drop(alarm))
        .await
        .unwrap();
    wait_for_event(&mut events, "Unblocked", |e| {
        matches!(e, ConnectionEvent::Unblocked)
    })
    .await;
    connection.close().await.unwrap();
}

async fn wait_for_event(
    events: &mut tokio::sync::broadcast::Receiver<ConnectionEvent>,
    what: &str,
    wanted: impl Fn(&ConnectionEvent) -> bool,
) {
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            match events.recv().await {
                Ok(event) if wanted(&event) => return,
                Ok(_) => continue,
                Err(e) => panic!("events ended before {what}: {e}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} within 15 s"));
}
