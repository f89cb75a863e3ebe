//! The connection's topology record against the real broker: what the
//! broker confirmed is recorded in order, under the broker's names, and
//! what undoes it removes it; what the broker refused is never recorded.

mod support;

use amqp_conn::TopologyEntry;
use amqp_wire::{
    BasicConsume, ExchangeBind, ExchangeDeclare, ExchangeDelete, QueueBind, QueueDeclare,
    QueueDelete, QueueUnbind, ShortString,
};
use support::*;

/// One line per entry (their Display), to compare in order.
fn lines(entries: &[TopologyEntry]) -> Vec<String> {
    entries.iter().map(ToString::to_string).collect()
}

#[tokio::test]
async fn the_record_follows_what_the_broker_confirmed() {
    let connection = connect().await;
    let channel = connection.open_channel().await.unwrap();
    let source = unique("topology-source");
    let logs = unique("topology-logs");
    for exchange in [&source, &logs] {
        channel
            .call(ExchangeDeclare {
                exchange: s(exchange),
                kind: ShortString::from_static("topic"),
                auto_delete: true,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    channel
        .call(ExchangeBind {
            destination: s(&logs),
            source: s(&source),
            routing_key: s("#"),
            ..Default::default()
        })
        .await
        .unwrap();
    let queue = channel
        .call(QueueDeclare {
            queue: ShortString::default(),
            exclusive: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .queue;
    assert!(queue.starts_with("amq.gen-"));
    for key in ["a.*", "b.*"] {
        channel
            .call(QueueBind {
                queue: queue.clone(),
                exchange: s(&logs),
                routing_key: s(key),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let consumer = channel
        .consume(
            BasicConsume {
                queue: queue.clone(),
                consumer_tag: s("topology-tag"),
                ..Default::default()
            },
            16,
        )
        .await
        .unwrap();

    assert_eq!(
        lines(&connection.topology().await.unwrap()),
        [
            format!("exchange {source} (topic)"),
            format!("exchange {logs} (topic)"),
            format!("binding {logs} <- {source} (#)"),
            format!("queue {queue}"),
            format!("binding {queue} <- {logs} (a.*)"),
            format!("binding {queue} <- {logs} (b.*)"),
            format!("consumer topology-tag on channel {}", channel.number()),
        ]
    );

    // Undo, piece by piece.
    consumer.cancel().await.unwrap();
    channel
        .call(QueueUnbind {
            queue: queue.clone(),
            exchange: s(&logs),
            routing_key: s("a.*"),
            ..Default::default()
        })
        .await
        .unwrap();
    channel
        .call(ExchangeDelete {
            exchange: s(&source),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        lines(&connection.topology().await.unwrap()),
        [
            format!("exchange {logs} (topic)"),
            format!("queue {queue}"),
            format!("binding {queue} <- {logs} (b.*)"),
        ]
    );
    channel
        .call(QueueDelete {
            queue: queue.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    channel
        .call(ExchangeDelete {
            exchange: s(&logs),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(connection.topology().await.unwrap().is_empty());
    connection.close().await.unwrap();
}

#[tokio::test]
async fn refusals_and_passive_declares_are_not_recorded_and_a_closed_channel_takes_its_consumers() {
    let connection = connect().await;
    let channel = connection.open_channel().await.unwrap();
    let name = fresh_queue(&channel, "topology-queue").await;
    // A passive declare of an existing queue: nothing new.
    channel
        .call(QueueDeclare {
            queue: s(&name),
            passive: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let consumer_channel = connection.open_channel().await.unwrap();
    let _consumer = consumer_channel
        .consume(
            BasicConsume {
                queue: s(&name),
                ..Default::default()
            },
            16,
        )
        .await
        .unwrap();
    assert_eq!(lines(&connection.topology().await.unwrap()).len(), 2);
    consumer_channel.close().await.unwrap();
    assert_eq!(
        lines(&connection.topology().await.unwrap()),
        [format!("queue {name}")]
    );

    // A bind to a missing exchange is refused (404, the channel closes):
    // nothing is recorded.
    let refused = channel
        .call(QueueBind {
            queue: s(&name),
            exchange: s(&unique("no-such-exchange")),
            ..Default::default()
        })
        .await;
    assert!(refused.is_err());
    assert_eq!(
        lines(&connection.topology().await.unwrap()),
        [format!("queue {name}")]
    );
    let cleanup = connection.open_channel().await.unwrap();
    delete_queue(&cleanup, &name).await;
    assert!(connection.topology().await.unwrap().is_empty());
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_consumer_the_broker_cancels_leaves_the_record() {
    let connection = connect().await;
    let channel = connection.open_channel().await.unwrap();
    let name = fresh_queue(&channel, "topology-cancelled").await;
    let _consumer = channel
        .consume(
            BasicConsume {
                queue: s(&name),
                ..Default::default()
            },
            16,
        )
        .await
        .unwrap();
    // Deleted from another connection: the broker cancels the consumer.
    let other = connect().await;
    let other_channel = other.open_channel().await.unwrap();
    delete_queue(&other_channel, &name).await;
    other.close().await.unwrap();
    let mut remaining = Vec::new();
    for _ in 0..50 {
        remaining = lines(&connection.topology().await.unwrap());
        if remaining.len() == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The queue's record stays: this connection did not see it deleted
    // (a reconnection declares it again).
    assert_eq!(remaining, [format!("queue {name}")]);
    connection.close().await.unwrap();
}
