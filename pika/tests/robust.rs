//! `connect_robust`: the connection comes back after a cut, a reset, a
//! black hole and `rabbitmqctl close_connection`, with its channels,
//! exchanges, queues, bindings and consumers, and the same handles go on
//! working: no recovery code in these tests.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pika::{
    ConnectOptions, Connection, ConnectionEvent, Error, ExchangeType, Message, ReconnectPolicy,
};
use pika_test_support::{close_connection_named, FaultProxy};
use support::{traffic, unique};

/// Heartbeat of the connections under test: a black hole is found after
/// about two intervals.
const HEARTBEAT_SECONDS: u16 = 1;

/// How the connection is lost.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Cut,
    Reset,
    BlackHole,
    ForcedClose,
}

impl Fault {
    const ALL: [Fault; 4] = [
        Fault::Cut,
        Fault::Reset,
        Fault::BlackHole,
        Fault::ForcedClose,
    ];

    /// Injects the fault; returns when it is in place (for a black hole:
    /// once the client found it, within two heartbeat intervals).
    async fn inject(self, proxy: &FaultProxy, connection: &Connection, connection_name: &str) {
        match self {
            Fault::Cut => {
                proxy.cut().await;
            }
            Fault::Reset => {
                proxy.reset().await;
            }
            Fault::BlackHole => {
                // Silence until the client gives up on this socket; then
                // the network heals for the new one.
                let mut events = connection.events();
                let started = Instant::now();
                proxy.black_hole(true);
                let bound = Duration::from_secs(2 * u64::from(HEARTBEAT_SECONDS) + 1);
                tokio::time::timeout(bound, async {
                    loop {
                        if let Ok(ConnectionEvent::Disconnected { .. }) = events.recv().await {
                            break;
                        }
                    }
                })
                .await
                .expect("the black hole is found within two heartbeat intervals");
                eprintln!("black hole found after {:?}", started.elapsed());
                proxy.black_hole(false);
            }
            Fault::ForcedClose => {
                let name = connection_name.to_string();
                tokio::task::spawn_blocking(move || {
                    close_connection_named(&name, "closed by the robust test")
                })
                .await
                .unwrap()
                .expect("rabbitmqctl close_connection");
            }
        }
    }
}

async fn robust_through(proxy: &FaultProxy, name: &str) -> Connection {
    pika::connect_robust_with(
        ConnectOptions::from_url(&proxy.url())
            .unwrap()
            .heartbeat(HEARTBEAT_SECONDS)
            .connection_name(name),
    )
    .await
    .expect("connect through the proxy")
}

/// A robust connection through a new fault proxy, its events, a channel
/// and a durable queue named after `name`.
async fn robust_with_queue(
    name: &str,
) -> (
    FaultProxy,
    Connection,
    tokio::sync::broadcast::Receiver<ConnectionEvent>,
    pika::Channel,
    pika::Queue,
) {
    let proxy = FaultProxy::start("127.0.0.1:5672").await.unwrap();
    let connection = robust_through(&proxy, &unique(name)).await;
    let events = connection.events();
    let channel = connection.channel().await.unwrap();
    let queue = channel
        .declare_queue(&unique(name))
        .durable(true)
        .await
        .unwrap();
    (proxy, connection, events, channel, queue)
}

/// Waits for the next `Reconnected` event (at most 20 s).
async fn reconnected(events: &mut tokio::sync::broadcast::Receiver<ConnectionEvent>) -> Duration {
    traffic::wait_for(events, Duration::from_secs(20), traffic::restored).await
}

async fn consumers_and_publishers_carry_on_after(fault: Fault) {
    let proxy = FaultProxy::start("127.0.0.1:5672").await.unwrap();
    let name = unique("robust-conn");
    let connection = robust_through(&proxy, &name).await;
    let mut events = connection.events();
    let channel = connection.channel().await.unwrap();
    channel.set_qos().prefetch_count(10).await.unwrap();
    let exchange = channel
        .declare_exchange(&unique("robust-x"))
        .kind(ExchangeType::Direct)
        .auto_delete(true)
        .await
        .unwrap();
    let durable = unique("robust-q");
    let queue = channel.declare_queue(&durable).durable(true).await.unwrap();
    queue.bind(&exchange, "a").await.unwrap();
    queue.bind(&exchange, "b").await.unwrap();
    let mut iterator = queue.iterator().await.unwrap();

    let confirmation = exchange
        .publish(Message::new("before"), "a")
        .await
        .expect("confirmed before the fault");
    assert!(confirmation.is_ack());
    let first = support::next(&mut iterator).await.unwrap().unwrap();
    assert_eq!(first.body().as_ref(), b"before");
    first.ack(false).unwrap();

    let faulted_at = Instant::now();
    fault.inject(&proxy, &connection, &name).await;
    let took = reconnected(&mut events).await;
    eprintln!(
        "{fault:?}: restored {took:?} after the loss, {:?} after the fault",
        faulted_at.elapsed()
    );

    // Both bindings came back: a message by each key arrives.
    for key in ["a", "b"] {
        let confirmation = exchange
            .publish(Message::new(format!("after {key}")), key)
            .await
            .unwrap_or_else(|e| panic!("{fault:?}: publish by {key} after reconnecting: {e}"));
        assert!(confirmation.is_ack());
    }
    let mut got = Vec::new();
    while got.len() < 2 {
        let message = support::next(&mut iterator)
            .await
            .expect("the iterator goes on")
            .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        let body = String::from_utf8(message.body().to_vec()).unwrap();
        message.ack(false).unwrap();
        if body != "before" {
            got.push(body);
        }
    }
    got.sort();
    assert_eq!(got, ["after a", "after b"], "{fault:?}");
    assert_eq!(channel.number(), 1);
    assert!(!connection.is_closed());
    support::delete_queue(&queue).await;
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_cut_is_recovered() {
    consumers_and_publishers_carry_on_after(Fault::Cut).await;
}

#[tokio::test]
async fn a_reset_is_recovered() {
    consumers_and_publishers_carry_on_after(Fault::Reset).await;
}

#[tokio::test]
async fn a_black_hole_is_found_by_heartbeats_and_recovered() {
    consumers_and_publishers_carry_on_after(Fault::BlackHole).await;
}

#[tokio::test]
async fn a_close_by_the_broker_is_recovered() {
    consumers_and_publishers_carry_on_after(Fault::ForcedClose).await;
}

/// A server-named exclusive queue comes back under a new name, which its
/// handle, bindings and consumer use; the event says old and new.
#[tokio::test]
async fn a_server_named_exclusive_queue_comes_back_under_its_new_name() {
    let proxy = FaultProxy::start("127.0.0.1:5672").await.unwrap();
    let connection = robust_through(&proxy, &unique("robust-renamed")).await;
    let mut events = connection.events();
    let channel = connection.channel().await.unwrap();
    let exchange = channel
        .declare_exchange(&unique("robust-fanout"))
        .kind(ExchangeType::Fanout)
        .auto_delete(true)
        .await
        .unwrap();
    let queue = channel.declare_queue("").exclusive(true).await.unwrap();
    let old = queue.name().to_string();
    queue.bind(&exchange, "").await.unwrap();
    let mut iterator = queue.iterator().await.unwrap();

    proxy.cut().await;
    let mut renamed = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let event = tokio::time::timeout_at(deadline.into(), events.recv())
            .await
            .expect("reconnected within 20 s")
            .unwrap();
        match event {
            ConnectionEvent::QueueRenamed { old: o, new } => {
                assert_eq!(o.as_str(), old);
                renamed = Some(new.to_string());
            }
            ConnectionEvent::Reconnected { .. } => break,
            _ => {}
        }
    }
    let new = renamed.expect("a QueueRenamed event");
    assert_ne!(new, old);
    assert_eq!(queue.name(), new, "the handle has the new name");
    support::publish_confirmed(&exchange, "to the new name", "").await;
    support::receive(&mut iterator, "to the new name").await;
    connection.close().await.unwrap();
}

/// A publish whose confirm was pending when the connection was lost ends
/// at once as indeterminate, never as success; a publish made while the
/// connection is down waits for it and is confirmed.
#[tokio::test]
async fn pending_confirms_end_indeterminate_and_later_publishes_wait() {
    let (proxy, connection, _events, channel, queue) = robust_with_queue("robust-pending").await;
    // Silence: the publish goes out, its confirm cannot come back.
    proxy.black_hole(true);
    let pending = {
        let channel = channel.clone();
        let name = queue.name().to_string();
        tokio::spawn(async move {
            channel
                .default_exchange()
                .publish(Message::new("in flight"), &name)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.cut().await;
    let lost_at = Instant::now();
    proxy.black_hole(false);
    let outcome = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("the pending publish ends")
        .unwrap();
    assert!(
        matches!(outcome, Err(Error::Indeterminate(_))),
        "{outcome:?}"
    );
    assert!(lost_at.elapsed() < Duration::from_secs(2));

    // Published while reconnecting (or just after): confirmed.
    let confirmation = channel
        .default_exchange()
        .publish(Message::new("after"), queue.name())
        .timeout(Duration::from_secs(10))
        .await
        .expect("a publish after the loss is confirmed");
    assert!(confirmation.is_ack());
    support::delete_queue(&queue).await;
    connection.close().await.unwrap();
}

/// Acks of deliveries made over the lost connection fail locally with a
/// clear error and never reach the new channel; the broker delivers the
/// message again.
#[tokio::test]
async fn acks_of_a_lost_connections_deliveries_fail_locally() {
    let (proxy, connection, mut events, channel, queue) = robust_with_queue("robust-stale").await;
    let confirmation = channel
        .default_exchange()
        .publish(Message::new("once"), queue.name())
        .await
        .unwrap();
    assert!(confirmation.is_ack());
    let mut iterator = queue.iterator().await.unwrap();
    let first = support::next(&mut iterator).await.unwrap().unwrap();
    proxy.cut().await;
    reconnected(&mut events).await;
    let error = first.ack(false).unwrap_err();
    assert!(error.to_string().contains("lost"), "{error}");
    let again = support::next(&mut iterator).await.unwrap().unwrap();
    assert_eq!(again.body().as_ref(), b"once");
    assert!(again.redelivered());
    again.ack(false).unwrap();
    support::delete_queue(&queue).await;
    connection.close().await.unwrap();
}

/// Closing while the connection cannot come back ends at once.
#[tokio::test]
async fn a_close_during_reconnection_ends_it_at_once() {
    let proxy = FaultProxy::start("127.0.0.1:5672").await.unwrap();
    let connection = robust_through(&proxy, &unique("robust-close")).await;
    let channel = connection.channel().await.unwrap();
    let mut events = connection.events();
    proxy.refuse(true).await.unwrap();
    proxy.cut().await;
    // Wait until an attempt failed: the connection is down for good.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let event = tokio::time::timeout_at(deadline.into(), events.recv())
            .await
            .expect("an attempt fails")
            .unwrap();
        if let ConnectionEvent::ReconnectFailed { .. } = event {
            break;
        }
    }
    let waiting = {
        let channel = channel.clone();
        tokio::spawn(async move {
            channel
                .declare_queue(&unique("never"))
                .exclusive(true)
                .await
        })
    };
    let started = Instant::now();
    connection.close().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    let declared = tokio::time::timeout(Duration::from_secs(1), waiting)
        .await
        .expect("the waiting declare ends with the close")
        .unwrap();
    assert!(declared.is_err());
    assert!(connection.is_closed());
}

/// The reconnect callback hears of each reconnection.
#[tokio::test]
async fn the_reconnect_callback_is_called() {
    let proxy = FaultProxy::start("127.0.0.1:5672").await.unwrap();
    let connection = robust_through(&proxy, &unique("robust-callback")).await;
    let heard = Arc::new(Mutex::new(Vec::new()));
    let sink = heard.clone();
    connection.add_reconnect_callback(move |reconnected| {
        sink.lock().unwrap().push(reconnected.attempts);
    });
    let mut events = connection.events();
    for _ in 0..2 {
        proxy.cut().await;
        reconnected(&mut events).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(heard.lock().unwrap().len(), 2);
    connection.close().await.unwrap();
}

/// Every kind of fault, one after the other, on one connection.
#[tokio::test]
async fn every_fault_in_turn_on_one_connection() {
    let proxy = FaultProxy::start("127.0.0.1:5672").await.unwrap();
    let name = unique("robust-turns");
    let connection = robust_through(&proxy, &name).await;
    let mut events = connection.events();
    let channel = connection.channel().await.unwrap();
    let queue = channel
        .declare_queue(&unique("robust-turns"))
        .durable(true)
        .await
        .unwrap();
    let mut iterator = queue.iterator().await.unwrap();
    for (round, fault) in Fault::ALL.into_iter().enumerate() {
        fault.inject(&proxy, &connection, &name).await;
        reconnected(&mut events).await;
        let confirmation = channel
            .default_exchange()
            .publish(Message::new(format!("{round}")), queue.name())
            .await
            .unwrap_or_else(|e| panic!("{fault:?}: {e}"));
        assert!(confirmation.is_ack(), "{fault:?}");
        // An ack of the round before may have been lost with the socket:
        // that message comes again first.
        loop {
            let message = support::next(&mut iterator).await.unwrap().unwrap();
            let _ = message.ack(false);
            if message.body().as_ref() == format!("{round}").as_bytes() {
                break;
            }
            assert!(message.redelivered(), "{fault:?}: {:?}", message.body());
        }
    }
    support::delete_queue(&queue).await;
    connection.close().await.unwrap();
}

/// A channel the broker closes for a soft error is opened again with its
/// consumer: the refused operation gets the error, the rest goes on.
#[tokio::test]
async fn a_channel_closed_for_a_soft_error_is_reopened_with_its_consumer() {
    let connection = pika::connect_robust(&support::url()).await.unwrap();
    let mut events = connection.events();
    let channel = connection.channel().await.unwrap();
    let name = unique("robust-soft");
    let queue = channel.declare_queue(&name).durable(true).await.unwrap();
    let mut iterator = queue.iterator().await.unwrap();

    // Declared again with other settings: 406 PRECONDITION_FAILED.
    let refused = channel
        .declare_queue(&name)
        .durable(false)
        .await
        .unwrap_err();
    assert_eq!(
        refused.reply_code(),
        Some(pika::ReplyCode::PRECONDITION_FAILED)
    );
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(ConnectionEvent::ChannelClosed { channel, .. }) = events.recv().await {
                break channel;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(closed, channel.number());

    // The same channel handle publishes, the same iterator receives.
    support::publish_confirmed(&channel.default_exchange(), "after the refusal", &name).await;
    support::receive(&mut iterator, "after the refusal").await;
    assert!(!channel.is_closed());
    support::delete_queue(&queue).await;
    connection.close().await.unwrap();
}

/// A consumer the broker cancels (its queue deleted) is told about, waits,
/// and consumes again once the queue is back: the same iterator receives.
#[tokio::test]
async fn a_consumer_cancelled_by_the_broker_resumes_when_its_queue_is_back() {
    let connection = pika::connect_robust(&support::url()).await.unwrap();
    let mut events = connection.events();
    let channel = connection.channel().await.unwrap();
    let name = unique("robust-cancelled");
    let queue = channel.declare_queue(&name).await.unwrap();
    let mut iterator = queue.iterator().await.unwrap();

    // Another application deletes the queue, then declares it again.
    let other = support::connect().await;
    let other_channel = other.channel().await.unwrap();
    support::delete_queue(&other_channel.get_queue(&name).await.unwrap()).await;
    let cancelled = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Ok(ConnectionEvent::ConsumerCancelled {
                queue, resuming, ..
            }) = events.recv().await
            {
                break (queue, resuming);
            }
        }
    })
    .await
    .expect("the cancel is surfaced");
    assert_eq!((cancelled.0.as_str(), cancelled.1), (name.as_str(), true));
    tokio::time::sleep(Duration::from_millis(600)).await;
    other_channel.declare_queue(&name).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(ConnectionEvent::ConsumerResumed { .. }) = events.recv().await {
                break;
            }
        }
    })
    .await
    .expect("the consumer resumes once the queue is back");
    support::publish_confirmed(
        &other_channel.default_exchange(),
        "to the queue that came back",
        &name,
    )
    .await;
    support::receive(&mut iterator, "to the queue that came back").await;
    support::delete_queue(&other_channel.get_queue(&name).await.unwrap()).await;
    connection.close().await.unwrap();
    other.close().await.unwrap();
}

/// `robust(false)` (aio-pika's `robust=False`): what is declared, bound or
/// consumed that way is not restored; the rest is.
#[tokio::test]
async fn what_is_marked_not_robust_is_not_restored() {
    let proxy = FaultProxy::start("127.0.0.1:5672").await.unwrap();
    let connection = robust_through(&proxy, &unique("robust-optout")).await;
    let mut events = connection.events();
    let channel = connection.channel().await.unwrap();
    let kept = channel
        .declare_queue(&unique("robust-kept"))
        .exclusive(true)
        .await
        .unwrap();
    let dropped = channel
        .declare_queue(&unique("robust-dropped"))
        .exclusive(true)
        .robust(false)
        .await
        .unwrap();
    let mut not_restored = kept.iterator().robust(false).await.unwrap();
    let topology: Vec<String> = connection
        .amqp()
        .topology()
        .await
        .unwrap()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(topology, [format!("queue {}", kept.name())]);

    proxy.cut().await;
    reconnected(&mut events).await;
    // The kept exclusive queue is back; the other is gone with the old
    // connection; the consumer that was not to be restored has ended.
    channel.get_queue(kept.name()).await.unwrap();
    let gone = channel.get_queue(dropped.name()).await.unwrap_err();
    assert_eq!(gone.reply_code(), Some(pika::ReplyCode::NOT_FOUND));
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        use futures_util::StreamExt;
        loop {
            match not_restored.next().await {
                Some(Ok(_)) => continue,
                other => break other,
            }
        }
    })
    .await
    .expect("the consumer ends");
    assert!(!matches!(end, Some(Ok(_))), "{end:?}");
    connection.close().await.unwrap();
}

/// A consume callback goes on after a reconnection, as iterators do.
#[tokio::test]
async fn consume_callbacks_go_on_after_a_reconnection() {
    let (proxy, connection, mut events, channel, queue) =
        robust_with_queue("robust-callback-consumer").await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    queue
        .consume(move |message: pika::IncomingMessage| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(String::from_utf8(message.body().to_vec()).unwrap());
                let _ = message.ack(false);
            }
        })
        .await
        .unwrap();
    let exchange = channel.default_exchange();
    support::publish_confirmed(&exchange, "before", queue.name()).await;
    assert_eq!(rx.recv().await.unwrap(), "before");
    proxy.reset().await;
    reconnected(&mut events).await;
    support::publish_confirmed(&exchange, "after", queue.name()).await;
    // "before" may come again first: its ack may have been lost with the
    // socket.
    loop {
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("the callback runs again")
            .unwrap();
        if got == "after" {
            break;
        }
        assert_eq!(got, "before");
    }
    support::delete_queue(&queue).await;
    connection.close().await.unwrap();
}

/// With `max_attempts`, a connection that cannot come back gives up:
/// events say so, and what waited ends with a clear error.
#[tokio::test]
async fn after_its_last_attempt_the_connection_gives_up() {
    let proxy = FaultProxy::start("127.0.0.1:5672").await.unwrap();
    let connection = pika::connect_robust_with(
        ConnectOptions::from_url(&proxy.url()).unwrap().reconnect(
            ReconnectPolicy::default()
                .with_initial_delay(Duration::from_millis(50))
                .with_max_attempts(Some(3)),
        ),
    )
    .await
    .unwrap();
    let channel = connection.channel().await.unwrap();
    let mut events = connection.events();
    proxy.refuse(true).await.unwrap();
    proxy.cut().await;
    let mut failed = Vec::new();
    let gave_up = traffic::wait_for(&mut events, Duration::from_secs(10), |event| match event {
        ConnectionEvent::ReconnectFailed { attempt, .. } => {
            failed.push(*attempt);
            None
        }
        ConnectionEvent::GaveUp { attempts, .. } => Some(*attempts),
        _ => None,
    })
    .await;
    assert_eq!((failed, gave_up), (vec![1, 2], 3));
    let error = channel
        .declare_queue(&unique("never"))
        .exclusive(true)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("gave up reconnecting after 3 attempts"),
        "{error}"
    );
    assert!(connection.is_closed());
}

/// With `fail_fast`, operations made while the connection is down fail at
/// once, sending nothing; once it is back they work again.
#[tokio::test]
async fn fail_fast_fails_at_once_while_down() {
    let proxy = FaultProxy::start("127.0.0.1:5672").await.unwrap();
    let connection = pika::connect_robust_with(
        ConnectOptions::from_url(&proxy.url())
            .unwrap()
            .reconnect(ReconnectPolicy::default().with_fail_fast(true)),
    )
    .await
    .unwrap();
    let channel = connection.channel().await.unwrap();
    let queue = channel
        .declare_queue(&unique("robust-fail-fast"))
        .exclusive(true)
        .await
        .unwrap();
    let mut events = connection.events();
    proxy.refuse(true).await.unwrap();
    proxy.cut().await;
    traffic::wait_for(&mut events, Duration::from_secs(5), |event| {
        matches!(event, ConnectionEvent::Disconnected { .. }).then_some(())
    })
    .await;
    let started = Instant::now();
    let error = channel
        .default_exchange()
        .publish(Message::new("while down"), queue.name())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("reconnecting"), "{error}");
    assert!(started.elapsed() < Duration::from_millis(500));
    proxy.refuse(false).await.unwrap();
    reconnected(&mut events).await;
    support::publish_confirmed(&channel.default_exchange(), "when back", queue.name()).await;
    connection.close().await.unwrap();
}

/// Deliveries still buffered from the lost connection are skipped (they
/// could no longer be acked); the broker's redeliveries come instead, and
/// each can be acked.
#[tokio::test]
async fn deliveries_buffered_from_the_lost_connection_are_skipped() {
    let (proxy, connection, mut events, channel, queue) =
        robust_with_queue("robust-buffered").await;
    let exchange = channel.default_exchange();
    for body in ["1", "2", "3"] {
        support::publish_confirmed(&exchange, body, queue.name()).await;
    }
    let mut iterator = queue.iterator().await.unwrap();
    // The first is taken; the other two wait in the consumer's buffer.
    let first = support::next(&mut iterator).await.unwrap().unwrap();
    assert_eq!(first.body().as_ref(), b"1");
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.cut().await;
    reconnected(&mut events).await;
    let mut again = Vec::new();
    while again.len() < 3 {
        let message = support::next(&mut iterator).await.unwrap().unwrap();
        assert!(
            message.redelivered(),
            "a stale copy came through: {message:?}"
        );
        message.ack(false).expect("a redelivery can be acked");
        again.push(String::from_utf8(message.body().to_vec()).unwrap());
    }
    again.sort();
    assert_eq!(again, ["1", "2", "3"]);
    support::delete_queue(&queue).await;
    connection.close().await.unwrap();
}
