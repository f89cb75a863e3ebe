//! `--client pika`: the scenarios on amqp-conn, the connection layer the
//! `pika` crate is a thin layer over ([`Connection`], [`Channel`],
//! [`Consumer`](amqp_conn::Consumer)). Written as an application would
//! use it: one `Bytes` body per message, a confirm future per publish,
//! one `ack` call per delivery.

use std::collections::VecDeque;
use std::time::Instant;

use amqp_conn::{Channel, Connection, ConnectionConfig, PublishConfirm, PublishOutcome};
use amqp_wire::{
    BasicConsume, BasicProperties, BasicPublish, BasicQos, Method, QueueDeclare, QueueDelete,
    ShortString,
};
use tokio::time::timeout;

use crate::body;
use crate::rusage::Timer;
use crate::scenario::{
    latency_histogram, unique_name, wait_for_count, Measured, Scenario, ScenarioConfig,
    CONFIRM_WINDOW, IDLE_TIMEOUT, PREFETCH,
};
use crate::tracking::SeqTracker;
use crate::Result;

/// Runs `config.scenario` with amqp-conn.
pub async fn run(config: &ScenarioConfig) -> Result<Measured> {
    match config.scenario {
        Scenario::Publish => publish(config).await,
        Scenario::PublishConfirm => publish_confirm(config).await,
        Scenario::Consume => consume(config).await,
        Scenario::Rpc => rpc(config).await,
    }
}

/// Opens a connection to `config.url`.
pub async fn connect(url: &str) -> Result<Connection> {
    Ok(Connection::open(ConnectionConfig::from_url(url)?).await?)
}

fn short(text: &str) -> Result<ShortString> {
    Ok(ShortString::try_from(text)?)
}

/// Declares a fresh non-durable queue.
async fn declare(channel: &Channel, queue: &ShortString) -> Result<()> {
    channel
        .call(QueueDeclare {
            queue: queue.clone(),
            ..Default::default()
        })
        .await?;
    Ok(())
}

/// The queue's message count, from a passive declare.
async fn message_count(channel: &Channel, queue: &ShortString) -> Result<u64> {
    let reply = channel
        .call(QueueDeclare {
            queue: queue.clone(),
            passive: true,
            ..Default::default()
        })
        .await?;
    match reply {
        Method::QueueDeclareOk(ok) => Ok(u64::from(ok.message_count)),
        other => Err(format!("expected queue.declare-ok, got {other:?}").into()),
    }
}

async fn delete(channel: &Channel, queue: &ShortString) -> Result<()> {
    channel
        .call(QueueDelete {
            queue: queue.clone(),
            ..Default::default()
        })
        .await?;
    Ok(())
}

fn to_queue(queue: &ShortString) -> BasicPublish {
    BasicPublish {
        routing_key: queue.clone(),
        ..Default::default()
    }
}

/// Publishes the bodies `0..n` to `queue`, without waiting for confirms.
async fn publish_bodies(channel: &Channel, queue: &ShortString, n: u64, size: usize) -> Result<()> {
    let publish = to_queue(queue);
    for seq in 0..n {
        channel
            .publish(
                publish.clone(),
                BasicProperties::default(),
                body::encode(seq, size),
            )
            .await?;
    }
    Ok(())
}

async fn publish(config: &ScenarioConfig) -> Result<Measured> {
    let connection = connect(&config.url).await?;
    let channel = connection.open_channel().await?;
    let queue = short(&unique_name("publish"))?;
    declare(&channel, &queue).await?;

    let timer = Timer::start();
    publish_bodies(&channel, &queue, config.n, config.size).await?;
    let count = wait_for_count(config.n, || message_count(&channel, &queue)).await?;
    let elapsed = timer.stop();

    delete(&channel, &queue).await?;
    connection.close().await?;
    Ok(Measured {
        elapsed,
        latency_us: None,
        lost: config.n.saturating_sub(count),
        dup: count.saturating_sub(config.n),
    })
}

async fn publish_confirm(config: &ScenarioConfig) -> Result<Measured> {
    let connection = connect(&config.url).await?;
    let channel = connection.open_channel().await?;
    let queue = short(&unique_name("publish-confirm"))?;
    declare(&channel, &queue).await?;
    channel.confirm_select().await?;

    let timer = Timer::start();
    let publish = to_queue(&queue);
    let mut window: VecDeque<PublishConfirm> = VecDeque::with_capacity(CONFIRM_WINDOW);
    let mut acked = 0u64;
    for seq in 0..config.n {
        if window.len() == CONFIRM_WINDOW {
            let oldest = window.pop_front().expect("the window is full");
            acked += u64::from(oldest.await.is_ack());
        }
        let confirm = channel
            .publish(
                publish.clone(),
                BasicProperties::default(),
                body::encode(seq, config.size),
            )
            .await?;
        window.push_back(confirm);
    }
    for confirm in window {
        acked += u64::from(matches!(confirm.await, PublishOutcome::Ack));
    }
    let elapsed = timer.stop();

    let count = message_count(&channel, &queue).await?;
    delete(&channel, &queue).await?;
    connection.close().await?;
    Ok(Measured {
        elapsed,
        latency_us: None,
        lost: config.n.saturating_sub(count.min(acked)),
        dup: count.saturating_sub(config.n),
    })
}

async fn consume(config: &ScenarioConfig) -> Result<Measured> {
    let connection = connect(&config.url).await?;
    let channel = connection.open_channel().await?;
    let queue = short(&unique_name("consume"))?;
    declare(&channel, &queue).await?;
    publish_bodies(&channel, &queue, config.n, config.size).await?;
    let filled = wait_for_count(config.n, || message_count(&channel, &queue)).await?;
    if filled != config.n {
        return Err(format!("prefill: the queue holds {filled} of {} messages", config.n).into());
    }

    let timer = Timer::start();
    channel
        .call(BasicQos {
            prefetch_count: PREFETCH,
            ..Default::default()
        })
        .await?;
    let mut consumer = channel
        .consume(
            BasicConsume {
                queue: queue.clone(),
                ..Default::default()
            },
            usize::from(PREFETCH),
        )
        .await?;
    let mut seen = SeqTracker::new(config.n);
    while !seen.is_complete() {
        let Ok(Some(delivery)) = timeout(IDLE_TIMEOUT, consumer.recv()).await else {
            break;
        };
        seen.record(body::seq(&delivery.body));
        channel.ack(delivery.delivery_tag, false)?;
    }
    let elapsed = timer.stop();

    consumer.cancel().await?;
    drop(consumer);
    delete(&channel, &queue).await?;
    connection.close().await?;
    Ok(Measured {
        elapsed,
        latency_us: None,
        lost: seen.lost(),
        dup: seen.dup(),
    })
}

/// The rpc server: answers each request on `queue` with its body, to its
/// `reply_to`, with its `correlation_id`. Returns when its consumer ends.
async fn rpc_server(channel: Channel, queue: ShortString) -> Result<()> {
    let mut requests = channel
        .consume(
            BasicConsume {
                queue,
                no_ack: true,
                ..Default::default()
            },
            usize::from(PREFETCH),
        )
        .await?;
    while let Some(request) = requests.recv().await {
        let Some(reply_to) = request.properties.reply_to.clone() else {
            continue;
        };
        let properties = BasicProperties {
            correlation_id: request.properties.correlation_id.clone(),
            ..Default::default()
        };
        channel
            .publish(
                BasicPublish {
                    routing_key: reply_to,
                    ..Default::default()
                },
                properties,
                request.body,
            )
            .await?;
    }
    Ok(())
}

async fn rpc(config: &ScenarioConfig) -> Result<Measured> {
    let server_connection = connect(&config.url).await?;
    let server_channel = server_connection.open_channel().await?;
    let requests = short(&unique_name("rpc"))?;
    declare(&server_channel, &requests).await?;
    let server = tokio::spawn(rpc_server(server_channel.clone(), requests.clone()));

    let connection = connect(&config.url).await?;
    let channel = connection.open_channel().await?;
    let reply_to = if config.direct_reply_to {
        ShortString::from_static("amq.rabbitmq.reply-to")
    } else {
        match channel
            .call(QueueDeclare {
                exclusive: true,
                ..Default::default()
            })
            .await?
        {
            Method::QueueDeclareOk(ok) => ok.queue,
            other => return Err(format!("expected queue.declare-ok, got {other:?}").into()),
        }
    };
    let mut replies = channel
        .consume(
            BasicConsume {
                queue: reply_to.clone(),
                no_ack: true,
                ..Default::default()
            },
            16,
        )
        .await?;
    // The server consumes before the first request: wait until the
    // broker reports its consumer.
    wait_for_consumer(&channel, &requests).await?;

    let publish = to_queue(&requests);
    let mut latency = latency_histogram();
    let (mut lost, mut dup) = (0, 0);
    let timer = Timer::start();
    for seq in 0..config.n {
        let correlation_id = short(&seq.to_string())?;
        let properties = BasicProperties {
            reply_to: Some(reply_to.clone()),
            correlation_id: Some(correlation_id.clone()),
            ..Default::default()
        };
        let sent = Instant::now();
        channel
            .publish(publish.clone(), properties, body::encode(seq, config.size))
            .await?;
        loop {
            match timeout(IDLE_TIMEOUT, replies.recv()).await {
                Ok(Some(reply))
                    if reply.properties.correlation_id.as_ref() == Some(&correlation_id) =>
                {
                    latency.saturating_record(sent.elapsed().as_micros() as u64);
                    break;
                }
                Ok(Some(_)) => dup += 1,
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
    delete(&channel, &requests).await?;
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
    })
}

/// Waits until `queue` has a consumer (the rpc server's).
async fn wait_for_consumer(channel: &Channel, queue: &ShortString) -> Result<()> {
    let started = Instant::now();
    loop {
        let reply = channel
            .call(QueueDeclare {
                queue: queue.clone(),
                passive: true,
                ..Default::default()
            })
            .await?;
        if let Method::QueueDeclareOk(ok) = reply {
            if ok.consumer_count > 0 {
                return Ok(());
            }
        }
        if started.elapsed() > IDLE_TIMEOUT {
            return Err(format!("no consumer on {queue} after {IDLE_TIMEOUT:?}").into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}
