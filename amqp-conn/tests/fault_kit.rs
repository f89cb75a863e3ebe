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

/// Cuts the connection at points across a 1 MiB delivery (8 body frames,
/// read straight into the message's buffer): each time the consumer gets
/// the whole body intact or nothing, ends with a connection error, and the
/// message stays in the queue for the next consumer.
#[tokio::test]
async fn a_connection_cut_inside_a_large_body_delivers_nothing_partial() {
    const SIZE: usize = 1 << 20;
    let body = numbered_body(0, SIZE);
    let direct = connect().await;
    let publisher = direct.open_channel().await.unwrap();
    let queue = unique("fault-kit-large-cut");
    publisher
        .call(QueueDeclare {
            queue: s(&queue),
            ..Default::default()
        })
        .await
        .unwrap();
    publisher.confirm_select().await.unwrap();
    publish_acked(&publisher, &queue, body.clone()).await;

    let proxy = FaultProxy::start("127.0.0.1:5672").await.unwrap();
    let config = ConnectionConfig::from_url(&proxy.url())
        .unwrap()
        .with_connection_timeout(Duration::from_secs(5));
    // Returns the body if it arrived (then rejects it back to the queue).
    let consume_once = |cut: bool| {
        let config = config.clone();
        let queue = queue.clone();
        async move {
            let opened = async { Connection::open(config).await?.open_channel().await };
            let channel = match opened.await {
                Ok(channel) => channel,
                Err(error) => {
                    // Cut before the consumer started (a point too early).
                    assert!(cut && error.is_connection_error(), "{error:?}");
                    return None;
                }
            };
            let connection = channel.connection();
            let mut consumer = channel
                .consume(
                    amqp_wire::BasicConsume {
                        queue: s(&queue),
                        ..Default::default()
                    },
                    1,
                )
                .await;
            let got = match consumer.as_mut() {
                Ok(consumer) => tokio::time::timeout(Duration::from_secs(10), consumer.recv())
                    .await
                    .expect("the delivery or the end within 10 s"),
                Err(error) => {
                    assert!(error.is_connection_error(), "{error:?}");
                    None
                }
            };
            if let Ok(consumer) = &consumer {
                if got.is_none() {
                    let end = consumer.end();
                    assert!(
                        matches!(&end, Some(amqp_conn::ConsumerEnd::Closed(e)) if e.is_connection_error()),
                        "{end:?}"
                    );
                }
            }
            if !cut {
                let d = got.as_ref().expect("a delivery without a cut");
                channel.reject(d.delivery_tag, true).unwrap();
                connection.close().await.unwrap();
            }
            got.map(|d| d.body)
        }
    };
    // A clean run first: how many bytes reach the client up to the end of
    // the message.
    let before = proxy.bytes_forwarded(Direction::BrokerToClient);
    assert!(consume_once(false).await.is_some());
    let through = proxy.bytes_forwarded(Direction::BrokerToClient) - before;
    // The message's frames end the run but for the close-ok (12 bytes):
    // the deliver and header frames (about 150 bytes) and the body in 9
    // frames (8 bytes each besides the payload).
    let body_end = through - 12;
    let body_start = body_end - SIZE as u64 - 9 * 8;
    let message_start = body_start - 150;
    let mut points: Vec<u64> = (0..=16)
        .map(|i| message_start + i * (SIZE as u64 / 16))
        .collect();
    // Around the first body frame boundaries.
    for frame in 1..3u64 {
        let boundary = body_start + frame * 131_072;
        points.extend([
            boundary - 9,
            boundary - 1,
            boundary,
            boundary + 1,
            boundary + 8,
        ]);
    }
    // Waits until the broker has taken the message back from a cut
    // connection.
    let requeued = || async {
        for _ in 0..100 {
            let ok = publisher
                .call(QueueDeclare {
                    queue: s(&queue),
                    passive: true,
                    ..Default::default()
                })
                .await
                .unwrap();
            if ok.message_count == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the message is back in the queue within 5 s");
    };
    // Just after the message: it arrives whole, then the socket ends.
    points.extend([body_end, body_end + 4]);
    let (mut whole, mut nothing) = (0, 0);
    for cut_at in points {
        requeued().await;
        proxy.cut_after_bytes(cut_at, Direction::BrokerToClient);
        match consume_once(true).await {
            Some(got) => {
                assert!(got == body, "cut at {cut_at}: the body arrived intact");
                whole += 1;
            }
            None => nothing += 1,
        }
        proxy.clear_cut_after_bytes();
    }
    assert!(
        nothing >= 20 && whole >= 1,
        "cuts inside the message and after it: {nothing} gave nothing, {whole} the whole body"
    );
    // Still in the queue, intact.
    requeued().await;
    let got = publisher
        .get(amqp_wire::BasicGet {
            queue: s(&queue),
            no_ack: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .expect("the message is still queued");
    assert!(got.body == body);
    publisher
        .call(amqp_wire::QueueDelete {
            queue: s(&queue),
            ..Default::default()
        })
        .await
        .unwrap();
    direct.close().await.unwrap();
}
