//! Publishes and consumes one large message and prints the process's peak
//! memory, to check that memory stays near the message size:
//! `cargo run --release -p amqp-conn --example large_message -- 16`
//! (the size in MiB; the broker is `AMQP_URL` or the local one).

use amqp_conn::{Confirmation, Connection, ConnectionConfig};
use amqp_wire::{
    BasicConsume, BasicProperties, BasicPublish, QueueDeclare, QueueDelete, ShortString,
};
use bytes::Bytes;

/// Peak and current resident memory in MiB, from /proc/self/status.
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mib: usize = std::env::args().nth(1).map_or(Ok(16), |a| a.parse())?;
    let url = std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://127.0.0.1".into());
    let connection = Connection::open(ConnectionConfig::from_url(&url)?).await?;
    let channel = connection.open_channel().await?;
    let queue = ShortString::try_from(format!("pika-large-message-{}", std::process::id()))?;
    channel
        .call(QueueDeclare {
            queue: queue.clone(),
            ..Default::default()
        })
        .await?;
    let (peak, rss) = memory();
    println!("before: peak {peak:.1} MiB, rss {rss:.1} MiB");

    let body = Bytes::from(vec![0xA5u8; mib << 20]);
    channel.confirm_select().await?;
    let publish = BasicPublish {
        routing_key: queue.clone(),
        ..Default::default()
    };
    let confirm = channel
        .publish(publish, BasicProperties::default(), body.clone())
        .await?;
    assert!(matches!(confirm.await, Confirmation::Ack));
    drop(body);
    let (peak, rss) = memory();
    println!("after publishing {mib} MiB: peak {peak:.1} MiB, rss {rss:.1} MiB");

    let mut consumer = channel
        .consume(
            BasicConsume {
                queue: queue.clone(),
                no_ack: true,
                ..Default::default()
            },
            1,
        )
        .await?;
    let delivery = consumer.recv().await.ok_or("consumer ended")?;
    assert_eq!(delivery.body.len(), mib << 20);
    let (peak, rss) = memory();
    println!("after consuming {mib} MiB: peak {peak:.1} MiB, rss {rss:.1} MiB");
    drop(delivery);
    drop(consumer);
    channel
        .call(QueueDelete {
            queue,
            ..Default::default()
        })
        .await?;
    connection.close().await?;
    Ok(())
}
