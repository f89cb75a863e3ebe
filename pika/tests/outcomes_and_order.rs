//! The guarantees the foundation gives about a user's messages, against
//! the real broker: the order on a channel is the order of the calls, a
//! refusal is never a success, each delivery is settled once, a forgotten
//! decision never discards a message, and a close learns every outcome.

mod support;

use std::future::IntoFuture;
use std::time::Duration;

use futures_util::StreamExt;
use pika::{Error, Message};
use support::*;

#[tokio::test]
async fn a_publish_after_a_dropped_transaction_scope_is_committed() {
    // The scope's rollback is queued when it is dropped; a publish made
    // right after must not overtake it, or the rollback discards it.
    let connection = connect().await;
    let channel = connection
        .channel()
        .publisher_confirms(false)
        .await
        .unwrap();
    let queue = channel
        .declare_queue(&unique("tx-order"))
        .exclusive(true)
        .await
        .unwrap();
    let exchange = channel.default_exchange();
    for round in 0..20 {
        let scope = channel.transaction().unwrap().begin().await.unwrap();
        let _ = exchange
            .publish(Message::new(format!("A{round}")), queue.name())
            .await
            .unwrap();
        drop(scope);
        let _ = exchange
            .publish(Message::new(format!("B{round}")), queue.name())
            .await
            .unwrap();
        channel.transaction().unwrap().commit().await.unwrap();
        let got = queue
            .get()
            .no_ack(true)
            .await
            .unwrap()
            .expect("the committed message");
        assert_eq!(
            got.body().as_ref(),
            format!("B{round}").as_bytes(),
            "round {round}"
        );
        assert!(
            queue.get().fail(false).await.unwrap().is_none(),
            "round {round}: only B is committed"
        );
    }
    connection.close().await.unwrap();
}

#[tokio::test]
async fn an_ack_covered_by_a_multiple_ack_is_refused_locally_and_the_channel_stays_open() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = channel
        .declare_queue(&unique("multiple"))
        .exclusive(true)
        .await
        .unwrap();
    for n in 0..3 {
        channel
            .default_exchange()
            .publish(Message::new(format!("{n}")), queue.name())
            .await
            .unwrap()
            .ensure_routed()
            .unwrap();
    }
    let mut messages = queue.iterator().await.unwrap();
    let first = next(&mut messages).await.unwrap().unwrap();
    let _second = next(&mut messages).await.unwrap().unwrap();
    let third = next(&mut messages).await.unwrap().unwrap();
    third.ack(true).unwrap();
    assert!(first.processed(), "covered by the multiple ack");
    let err = first.ack(false).unwrap_err();
    assert!(
        matches!(err, Error::AlreadyProcessed { delivery_tag } if delivery_tag == first.delivery_tag()),
        "{err}"
    );
    assert!(matches!(
        first.reject(true),
        Err(Error::AlreadyProcessed { .. })
    ));
    // Nothing reached the broker: the channel is still open and usable.
    let again = channel.get_queue(queue.name()).await.unwrap();
    assert_eq!(again.declared_message_count(), 0);
    assert!(!channel.is_closed());
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_process_guard_dropped_without_a_decision_requeues_the_message() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = channel
        .declare_queue(&unique("guard"))
        .exclusive(true)
        .await
        .unwrap();
    channel
        .default_exchange()
        .publish(Message::new("precious"), queue.name())
        .await
        .unwrap()
        .ensure_routed()
        .unwrap();
    let message = queue.get().await.unwrap().unwrap();
    // The default of process() drops a failed message (requeue false); a
    // guard that is merely forgotten must not.
    let guard = message.process().guard();
    drop(guard);
    let again = queue
        .get()
        .timeout(Duration::from_secs(5))
        .await
        .unwrap()
        .expect("the message is back in the queue");
    assert_eq!(again.body().as_ref(), b"precious");
    assert!(again.redelivered());
    // An explicit reject still follows the configuration: dropped.
    again.process().guard().reject().unwrap();
    assert!(queue.get().fail(false).await.unwrap().is_none());
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_process_guard_dropped_in_a_panic_rejects_as_configured() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = channel
        .declare_queue(&unique("guard-panic"))
        .exclusive(true)
        .await
        .unwrap();
    channel
        .default_exchange()
        .publish(Message::new("poison"), queue.name())
        .await
        .unwrap()
        .ensure_routed()
        .unwrap();
    let message = queue.get().await.unwrap().unwrap();
    let work = tokio::spawn(async move {
        let _guard = message.process().requeue(false).guard();
        panic!("the work failed");
    });
    assert!(work.await.unwrap_err().is_panic());
    // Rejected without requeue: gone.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(queue.get().fail(false).await.unwrap().is_none());
    connection.close().await.unwrap();
}

#[tokio::test]
async fn closing_the_connection_learns_the_outcome_of_every_publish_sent() {
    const N: usize = 1_000;
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = channel
        .declare_queue(&unique("close-outcomes"))
        .auto_delete(false)
        .await
        .unwrap();
    let name = queue.name().to_string();
    let exchange = channel.default_exchange();
    let mut pending = Vec::with_capacity(N);
    for n in 0..N {
        pending.push(
            exchange
                .publish(Message::new(format!("{n}")), &name)
                .send()
                .await
                .unwrap(),
        );
    }
    connection.close().await.unwrap();
    let mut acked = 0;
    for confirmation in pending {
        assert!(confirmation.await.unwrap().is_ack());
        acked += 1;
    }
    assert_eq!(acked, N);
    // Every one of them is in the queue.
    let check = connect().await;
    let channel = check.channel().await.unwrap();
    let queue = channel.get_queue(&name).await.unwrap();
    assert_eq!(queue.declared_message_count() as usize, N);
    queue.delete().if_empty(false).await.unwrap();
    check.close().await.unwrap();
}

#[tokio::test]
async fn closing_a_channel_learns_the_outcome_of_every_publish_sent() {
    const N: usize = 500;
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = channel
        .declare_queue(&unique("channel-close-outcomes"))
        .exclusive(true)
        .await
        .unwrap();
    let exchange = channel.default_exchange();
    let mut pending = Vec::with_capacity(N);
    for n in 0..N {
        pending.push(
            exchange
                .publish(Message::new(format!("{n}")), queue.name())
                .send()
                .await
                .unwrap(),
        );
    }
    channel.close().await.unwrap();
    for confirmation in pending {
        assert!(confirmation.await.unwrap().is_ack());
    }
    let other = connection.channel().await.unwrap();
    let queue = other.get_queue(queue.name()).await.unwrap();
    assert_eq!(queue.declared_message_count() as usize, N);
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_message_from_the_broker_tells_its_delivery_fields() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = channel
        .declare_queue(&unique("info"))
        .exclusive(true)
        .await
        .unwrap();
    channel
        .default_exchange()
        .publish(Message::new("x").content_type("text/plain"), queue.name())
        .await
        .unwrap()
        .ensure_routed()
        .unwrap();
    let mut messages = queue.iterator().consumer_tag("info-tag").await.unwrap();
    let message = messages.next().await.unwrap().unwrap();
    let info = message.info();
    assert_eq!(info.exchange.as_deref(), Some(""));
    assert_eq!(info.routing_key.as_deref(), Some(queue.name()));
    assert_eq!(info.delivery_tag, Some(message.delivery_tag()));
    assert_eq!(info.redelivered, Some(false));
    assert_eq!(info.consumer_tag.as_deref(), Some("info-tag"));
    assert_eq!(info.content_type.as_deref(), Some("text/plain"));
    message.ack(false).unwrap();
    connection.close().await.unwrap();
}

/// Publishes that find the connection full (1,024 waiting to be written:
/// here a black-holed socket) wait for room, then go out in the order of
/// the calls; an awaited publish that finds it full waits too, and one
/// dropped while it waits publishes nothing. Every other one is confirmed
/// and delivered once.
#[tokio::test]
async fn publishes_that_wait_for_room_go_out_in_order_once_there_is_room() {
    let proxy = pika_test_support::FaultProxy::start("127.0.0.1:5672")
        .await
        .unwrap();
    let connection = pika::connect(&proxy.url()).await.unwrap();
    let channel = connection.channel().await.unwrap();
    let queue = channel
        .declare_queue(&unique("room"))
        .exclusive(true)
        .await
        .unwrap();
    let exchange = channel.default_exchange();
    let filler = bytes::Bytes::from(vec![b'x'; 8 * 1024]);
    let numbered = |n: u32| {
        let mut body = n.to_be_bytes().to_vec();
        body.extend_from_slice(&filler);
        Message::new(body)
    };

    proxy.black_hole(true);
    let mut pending = Vec::new();
    let mut awaited = None;
    for n in 0..20_000u32 {
        let mut send = Box::pin(exchange.publish(numbered(n), queue.name()).send());
        match tokio::time::timeout(Duration::from_millis(300), &mut send).await {
            Ok(queued) => pending.push(queued.unwrap()),
            Err(_) => {
                // Full: the kernel's buffers, the write queue and the
                // 1,024 places are taken. One more, awaited, waits too.
                let mut publish = Box::pin(
                    exchange
                        .publish(numbered(u32::MAX), queue.name())
                        .into_future(),
                );
                assert!(
                    tokio::time::timeout(Duration::from_millis(300), &mut publish)
                        .await
                        .is_err(),
                    "an awaited publish waits for room"
                );
                awaited = Some(publish);
                // Dropped while it waits for room, one publishes nothing.
                let mut dropped = Box::pin(
                    exchange
                        .publish(numbered(u32::MAX - 1), queue.name())
                        .into_future(),
                );
                assert!(
                    tokio::time::timeout(Duration::from_millis(100), &mut dropped)
                        .await
                        .is_err()
                );
                drop(dropped);
                proxy.black_hole(false);
                pending.push(send.await.unwrap());
            }
        }
        if awaited.is_some() && pending.len() > 1024 + 100 {
            break;
        }
    }
    let awaited = awaited.expect("the connection filled up within 20,000 publishes of 8 KiB");
    let published = pending.len() as u32;
    for (n, confirmation) in pending.into_iter().enumerate() {
        assert!(confirmation.await.unwrap().is_ack(), "publish {n}");
    }
    assert!(awaited.await.unwrap().is_ack());

    let mut messages = queue.iterator().no_ack(true).await.unwrap();
    let mut expected = 0u32;
    for _ in 0..=published {
        let message = next(&mut messages).await.unwrap().unwrap();
        let n = u32::from_be_bytes(message.body()[..4].try_into().unwrap());
        if n == u32::MAX {
            continue;
        }
        assert_eq!(n, expected, "in the order of the calls");
        expected += 1;
    }
    assert_eq!(expected, published);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), messages.next())
            .await
            .is_err(),
        "the publish dropped while it waited never arrives"
    );
    drop(messages);
    connection.close().await.unwrap();
}
