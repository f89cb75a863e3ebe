//! `--client pika`: the scenarios on the `pika` API, written as an
//! application would: a [`Message`] per publish through an exchange, a
//! [`QueueIterator`](pika::QueueIterator) to consume, one `ack` per
//! delivery.

use std::collections::VecDeque;
use std::time::Instant;

use futures_util::StreamExt;
use pika::{Channel, Connection, Exchange, Message, PendingConfirmation, Queue};
use tokio::time::timeout;

use crate::body;
use crate::rusage::Timer;
use crate::scenario::{
    latency_histogram, unique_name, wait_for_count, Measured, Scenario, ScenarioConfig,
    CONFIRM_WINDOW, IDLE_TIMEOUT, PREFETCH,
};
use crate::tracking::SeqTracker;
use crate::Result;

/// Runs `config.scenario` with pika.
pub async fn run(config: &ScenarioConfig) -> Result<Measured> {
    match config.scenario {
        Scenario::Publish => publish(config).await,
        Scenario::PublishConfirm => publish_confirm(config).await,
        Scenario::Consume => consume(config).await,
        Scenario::Rpc => rpc(config).await,
        other => Err(format!("the {other} scenario is not written for this client yet").into()),
    }
}

/// Opens a connection to `url`.
pub async fn connect(url: &str) -> Result<Connection> {
    Ok(pika::connect(url).await?)
}

/// A channel without publisher confirms: publishes return once queued.
async fn fast_channel(connection: &Connection) -> Result<Channel> {
    Ok(connection.channel().publisher_confirms(false).await?)
}

/// The queue's message count, from a passive declare.
async fn message_count(channel: &Channel, name: &str) -> Result<u64> {
    Ok(u64::from(
        channel.get_queue(name).await?.declared_message_count(),
    ))
}

async fn delete(queue: &Queue) -> Result<()> {
    queue.delete().if_unused(false).if_empty(false).await?;
    Ok(())
}

/// Publishes the bodies `0..n` to `queue` through the default exchange,
/// on a channel without confirms.
async fn publish_bodies(exchange: &Exchange, queue: &str, n: u64, size: usize) -> Result<()> {
    for seq in 0..n {
        let _ = exchange
            .publish(Message::new(body::encode(seq, size)), queue)
            .mandatory(false)
            .await?;
    }
    Ok(())
}

async fn publish(config: &ScenarioConfig) -> Result<Measured> {
    let connection = connect(&config.url).await?;
    let channel = fast_channel(&connection).await?;
    let queue = channel.declare_queue(&unique_name("publish")).await?;
    let exchange = channel.default_exchange();

    let timer = Timer::start();
    publish_bodies(&exchange, queue.name(), config.n, config.size).await?;
    let count = wait_for_count(config.n, || message_count(&channel, queue.name())).await?;
    let elapsed = timer.stop();

    delete(&queue).await?;
    connection.close().await?;
    Ok(Measured {
        elapsed,
        latency_us: None,
        lost: config.n.saturating_sub(count),
        dup: count.saturating_sub(config.n),
        setup: None,
    })
}

async fn publish_confirm(config: &ScenarioConfig) -> Result<Measured> {
    let connection = connect(&config.url).await?;
    let channel = connection.channel().await?;
    let queue = channel
        .declare_queue(&unique_name("publish-confirm"))
        .await?;
    let exchange = channel.default_exchange();

    let timer = Timer::start();
    let mut window: VecDeque<PendingConfirmation> = VecDeque::with_capacity(CONFIRM_WINDOW);
    let mut acked = 0u64;
    for seq in 0..config.n {
        if window.len() == CONFIRM_WINDOW {
            let oldest = window.pop_front().expect("the window is full");
            acked += u64::from(oldest.await?.is_ack());
        }
        let message = Message::new(body::encode(seq, config.size));
        window.push_back(
            exchange
                .publish(message, queue.name())
                .mandatory(false)
                .send()
                .await?,
        );
    }
    for pending in window {
        acked += u64::from(pending.await?.is_ack());
    }
    let elapsed = timer.stop();

    let count = message_count(&channel, queue.name()).await?;
    delete(&queue).await?;
    connection.close().await?;
    Ok(Measured {
        elapsed,
        latency_us: None,
        lost: config.n.saturating_sub(count.min(acked)),
        dup: count.saturating_sub(config.n),
        setup: None,
    })
}

async fn consume(config: &ScenarioConfig) -> Result<Measured> {
    let connection = connect(&config.url).await?;
    let channel = fast_channel(&connection).await?;
    let queue = channel.declare_queue(&unique_name("consume")).await?;
    publish_bodies(
        &channel.default_exchange(),
        queue.name(),
        config.n,
        config.size,
    )
    .await?;
    let filled = wait_for_count(config.n, || message_count(&channel, queue.name())).await?;
    if filled != config.n {
        return Err(format!("prefill: the queue holds {filled} of {} messages", config.n).into());
    }

    let timer = Timer::start();
    channel.set_qos().prefetch_count(PREFETCH).await?;
    let mut messages = queue.iterator().await?;
    let mut seen = SeqTracker::new(config.n);
    while !seen.is_complete() {
        let Ok(Some(message)) = timeout(IDLE_TIMEOUT, messages.next()).await else {
            break;
        };
        let message = message?;
        seen.record(body::seq(message.body()));
        message.ack(false)?;
    }
    let elapsed = timer.stop();

    messages.close().await?;
    drop(messages);
    delete(&queue).await?;
    connection.close().await?;
    Ok(Measured {
        elapsed,
        latency_us: None,
        lost: seen.lost(),
        dup: seen.dup(),
        setup: None,
    })
}

/// The rpc server: answers each request on `queue` with its body, to its
/// `reply_to`, with its `correlation_id`. Returns when its consumer ends.
async fn rpc_server(queue: Queue) -> Result<()> {
    let exchange = queue.channel().default_exchange();
    let mut requests = queue.iterator().no_ack(true).await?;
    while let Some(request) = requests.next().await {
        let Ok(request) = request else { break };
        let (Some(reply_to), Some(correlation_id)) = (request.reply_to(), request.correlation_id())
        else {
            continue;
        };
        let reply = Message::new(request.body().clone()).correlation_id(correlation_id);
        let _ = exchange.publish(reply, reply_to).mandatory(false).await?;
    }
    Ok(())
}

async fn rpc(config: &ScenarioConfig) -> Result<Measured> {
    let server_connection = connect(&config.url).await?;
    let server_channel = fast_channel(&server_connection).await?;
    let requests = server_channel.declare_queue(&unique_name("rpc")).await?;
    let server = tokio::spawn(rpc_server(requests.clone()));

    let connection = connect(&config.url).await?;
    let channel = fast_channel(&connection).await?;
    let callback = if config.direct_reply_to {
        None
    } else {
        Some(channel.declare_queue("").exclusive(true).await?)
    };
    let reply_to = match &callback {
        Some(queue) => queue.name().to_string(),
        None => "amq.rabbitmq.reply-to".to_string(),
    };
    let replies_queue = match callback {
        Some(queue) => queue,
        None => channel.get_queue("amq.rabbitmq.reply-to").await?,
    };
    let mut replies = replies_queue.iterator().no_ack(true).await?;
    // The server consumes before the first request: wait until the
    // broker reports its consumer.
    wait_for_consumer(&channel, requests.name()).await?;

    let exchange = channel.default_exchange();
    let mut latency = latency_histogram();
    let (mut lost, mut dup) = (0, 0);
    let timer = Timer::start();
    for seq in 0..config.n {
        let correlation_id = seq.to_string();
        let request = Message::new(body::encode(seq, config.size))
            .reply_to(&reply_to)
            .correlation_id(&correlation_id);
        let sent = Instant::now();
        let _ = exchange
            .publish(request, requests.name())
            .mandatory(false)
            .await?;
        loop {
            match timeout(IDLE_TIMEOUT, replies.next()).await {
                Ok(Some(Ok(reply))) if reply.correlation_id() == Some(correlation_id.as_str()) => {
                    latency.saturating_record(sent.elapsed().as_micros() as u64);
                    break;
                }
                Ok(Some(Ok(_))) => dup += 1,
                Ok(Some(Err(error))) => return Err(error.into()),
                Ok(None) => return Err("the reply consumer ended".into()),
                Err(_) if server.is_finished() => break,
                Err(_) => {
                    lost += 1;
                    break;
                }
            }
        }
        if server.is_finished() {
            break;
        }
    }
    let elapsed = timer.stop();
    if server.is_finished() {
        server.await??;
        return Err("the rpc server stopped".into());
    }

    drop(replies);
    delete(&requests).await?;
    connection.close().await?;
    server_connection.close().await?;
    // The server ends when its connection closes; errors after that are
    // the close itself.
    let _ = server.await;
    Ok(Measured {
        elapsed,
        latency_us: Some(latency),
        lost,
        dup,
        setup: None,
    })
}

/// Waits until `queue` has a consumer (the rpc server's).
async fn wait_for_consumer(channel: &Channel, queue: &str) -> Result<()> {
    let started = Instant::now();
    loop {
        if channel.get_queue(queue).await?.declared_consumer_count() > 0 {
            return Ok(());
        }
        if started.elapsed() > IDLE_TIMEOUT {
            return Err(format!("no consumer on {queue} after {IDLE_TIMEOUT:?}").into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}
