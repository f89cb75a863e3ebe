//! A pool of connections (at most 2) and a pool of channels on them (at
//! most 10). One task consumes the queue `pool_queue` on a pooled channel
//! (prefetch 10, printing and acking each message), while 10,000 messages
//! are published at once, each through a channel taken from the pool.
//!
//! Python original: "Connection pooling" of the aio-pika quick start.
//!
//! ```text
//! cargo run --example connection_pool [COUNT]
//! ```
//!
//! The broker is `AMQP_URL` (default `amqp://guest:guest@127.0.0.1/`).
//! COUNT (or `PIKA_EXAMPLE_MAX_MESSAGES`) is the number of messages,
//! 10,000 by default. The Python example never ends (its consumer waits
//! for more); this one stops once the consumer received every message,
//! deletes the queue and closes the pools. It also publishes only once the
//! consumer declared the queue: in the Python example, the messages
//! published before are dropped unroutable.

use futures_util::future::try_join_all;
use futures_util::StreamExt;
use pika::Message;
use pika_patterns::{ChannelPool, ConnectionPool};
use tokio::sync::oneshot;

#[path = "support/mod.rs"]
mod support;

const QUEUE_NAME: &str = "pool_queue";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    support::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let url = std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1/".into());
    let count = message_count()?;

    // Nothing connects yet: pools create their items on first use.
    let connection_pool = ConnectionPool::from_url(&url, 2)?;
    let channel_pool = ChannelPool::from_connections(connection_pool.clone(), 10);

    let (declared, queue_declared) = oneshot::channel();
    let consumer = tokio::spawn(consume(channel_pool.clone(), count, declared));
    if queue_declared.await.is_err() {
        // The consumer failed before declaring the queue: its error.
        consumer.await??;
        anyhow::bail!("the consumer stopped before declaring {QUEUE_NAME}");
    }

    // All at once: each publish waits for a free channel of the pool.
    try_join_all((0..count).map(|number| publish(&channel_pool, number))).await?;
    println!(" [x] Published {count} messages");

    let received = consumer.await??;
    println!(
        " [x] Received {received} messages, on {} pooled channels over {} pooled connections",
        channel_pool.status().size,
        connection_pool.status().size,
    );

    {
        let channel = channel_pool.acquire().await?;
        let queue = channel.get_queue(QUEUE_NAME).await?;
        queue.delete().if_unused(false).if_empty(false).await?;
    }
    println!(" [x] Deleted {QUEUE_NAME}");

    // Channels are dropped (which closes them); connections are closed,
    // waiting for the broker's answer.
    drop(channel_pool.close());
    for connection in connection_pool.close() {
        connection.close().await?;
    }
    Ok(())
}

/// Consumes `count` messages from the queue on a channel of the pool;
/// says on `declared` when the queue exists.
async fn consume(
    channel_pool: ChannelPool,
    count: usize,
    declared: oneshot::Sender<()>,
) -> anyhow::Result<usize> {
    let channel = channel_pool.acquire().await?;
    channel.set_qos().prefetch_count(10).await?;
    let queue = channel
        .declare_queue(QUEUE_NAME)
        .durable(false)
        .auto_delete(false)
        .await?;
    // The queue outlives the program when it is interrupted: start empty.
    queue.purge().await?;
    let _ = declared.send(());

    let mut messages = queue.iterator().await?;
    let mut received = 0;
    while received < count {
        let Some(message) = messages.next().await else {
            anyhow::bail!("the consumer was cancelled after {received} messages");
        };
        let message = message?;
        println!(
            " [x] Received {:?}",
            String::from_utf8_lossy(message.body())
        );
        message.ack(false)?;
        received += 1;
    }
    messages.close().await?;
    Ok(received)
}

/// Publishes message `number` through a channel of the pool.
async fn publish(channel_pool: &ChannelPool, number: usize) -> anyhow::Result<()> {
    let channel = channel_pool.acquire().await?;
    let body = format!("Message {number} on channel {}", channel.number());
    channel
        .default_exchange()
        .publish(Message::new(body), QUEUE_NAME)
        .await?
        // Not routed would mean: no queue; the consumer declared it.
        .ensure_routed()?;
    Ok(())
}

/// COUNT from the command line, or `PIKA_EXAMPLE_MAX_MESSAGES`, or 10,000.
fn message_count() -> anyhow::Result<usize> {
    let given = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("PIKA_EXAMPLE_MAX_MESSAGES").ok());
    match given {
        None => Ok(10_000),
        Some(text) => text
            .parse()
            .map_err(|_| anyhow::anyhow!("the message count must be a number, not {text:?}")),
    }
}
