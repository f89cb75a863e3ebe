//! `--client lapin` (feature `lapin`): the scenarios with lapin, used as
//! its documentation shows: `Connection::connect`, `basic_publish`
//! returning a `PublisherConfirm` future per message, the `Consumer`
//! stream, and `Delivery::ack` awaited per message.

use std::collections::VecDeque;
use std::time::Instant;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, PublisherConfirm};
use tokio::time::timeout;

use crate::body;
use crate::rusage::Timer;
use crate::scenario::{
    latency_histogram, unique_name, wait_for_count, Measured, Scenario, ScenarioConfig,
    CONFIRM_WINDOW, IDLE_TIMEOUT, PREFETCH,
};
use crate::tracking::SeqTracker;
use crate::Result;

/// Runs `config.scenario` with lapin.
pub async fn run(config: &ScenarioConfig) -> Result<Measured> {
    match config.scenario {
        Scenario::Publish => publish(config).await,
        Scenario::PublishConfirm => publish_confirm(config).await,
        Scenario::Consume => consume(config).await,
        Scenario::Rpc => rpc(config).await,
        other => Err(format!("the {other} scenario is not written for this client yet").into()),
    }
}

async fn connect(url: &str) -> Result<Connection> {
    Ok(Connection::connect(url, ConnectionProperties::default()).await?)
}

async fn declare(channel: &Channel, queue: &str) -> Result<()> {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

async fn message_count(channel: &Channel, queue: &str) -> Result<u64> {
    let options = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let queue = channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await?;
    Ok(u64::from(queue.message_count()))
}

async fn delete(channel: &Channel, queue: &str) -> Result<()> {
    channel
        .queue_delete(queue.into(), QueueDeleteOptions::default())
        .await?;
    Ok(())
}

async fn close(connection: &Connection) -> Result<()> {
    connection.close(200, "done".into()).await?;
    Ok(())
}

async fn publish_one(channel: &Channel, queue: &str, body: &[u8]) -> Result<PublisherConfirm> {
    Ok(channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default(),
        )
        .await?)
}

async fn publish_bodies(channel: &Channel, queue: &str, n: u64, size: usize) -> Result<()> {
    for seq in 0..n {
        publish_one(channel, queue, &body::encode(seq, size)).await?;
    }
    Ok(())
}

async fn publish(config: &ScenarioConfig) -> Result<Measured> {
    let connection = connect(&config.url).await?;
    let channel = connection.create_channel().await?;
    let queue = unique_name("publish");
    declare(&channel, &queue).await?;

    let timer = Timer::start();
    publish_bodies(&channel, &queue, config.n, config.size).await?;
    let count = wait_for_count(config.n, || message_count(&channel, &queue)).await?;
    let elapsed = timer.stop();

    delete(&channel, &queue).await?;
    close(&connection).await?;
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
    let channel = connection.create_channel().await?;
    let queue = unique_name("publish-confirm");
    declare(&channel, &queue).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;

    let timer = Timer::start();
    let mut window: VecDeque<PublisherConfirm> = VecDeque::with_capacity(CONFIRM_WINDOW);
    let mut acked = 0u64;
    for seq in 0..config.n {
        if window.len() == CONFIRM_WINDOW {
            let oldest = window.pop_front().expect("the window is full");
            acked += u64::from(oldest.await?.is_ack());
        }
        let confirm = publish_one(&channel, &queue, &body::encode(seq, config.size)).await?;
        window.push_back(confirm);
    }
    for confirm in window {
        acked += u64::from(confirm.await?.is_ack());
    }
    let elapsed = timer.stop();

    let count = message_count(&channel, &queue).await?;
    delete(&channel, &queue).await?;
    close(&connection).await?;
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
    let channel = connection.create_channel().await?;
    let queue = unique_name("consume");
    declare(&channel, &queue).await?;
    publish_bodies(&channel, &queue, config.n, config.size).await?;
    let filled = wait_for_count(config.n, || message_count(&channel, &queue)).await?;
    if filled != config.n {
        return Err(format!("prefill: the queue holds {filled} of {} messages", config.n).into());
    }

    let timer = Timer::start();
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "pika-perf-lapin".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut seen = SeqTracker::new(config.n);
    while !seen.is_complete() {
        let Ok(Some(delivery)) = timeout(IDLE_TIMEOUT, consumer.next()).await else {
            break;
        };
        let delivery = delivery?;
        seen.record(body::seq(&delivery.data));
        delivery.ack(BasicAckOptions::default()).await?;
    }
    let elapsed = timer.stop();

    delete(&channel, &queue).await?;
    close(&connection).await?;
    Ok(Measured {
        elapsed,
        latency_us: None,
        lost: seen.lost(),
        dup: seen.dup(),
        setup: None,
    })
}

/// The rpc server: answers each request with its body, to its
/// `reply_to`, with its `correlation_id`, until its consumer ends.
async fn rpc_server(channel: Channel, queue: String) -> Result<()> {
    let options = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let mut requests = channel
        .basic_consume(
            queue.as_str().into(),
            "pika-perf-lapin-server".into(),
            options,
            FieldTable::default(),
        )
        .await?;
    while let Some(Ok(request)) = requests.next().await {
        let Some(reply_to) = request.properties.reply_to().clone() else {
            continue;
        };
        let mut properties = BasicProperties::default();
        if let Some(id) = request.properties.correlation_id().clone() {
            properties = properties.with_correlation_id(id);
        }
        channel
            .basic_publish(
                "".into(),
                reply_to,
                BasicPublishOptions::default(),
                &request.data,
                properties,
            )
            .await?;
    }
    Ok(())
}

async fn rpc(config: &ScenarioConfig) -> Result<Measured> {
    let server_connection = connect(&config.url).await?;
    let server_channel = server_connection.create_channel().await?;
    let requests = unique_name("rpc");
    declare(&server_channel, &requests).await?;
    let server = tokio::spawn(rpc_server(server_channel, requests.clone()));

    let connection = connect(&config.url).await?;
    let channel = connection.create_channel().await?;
    let reply_to: ShortString = if config.direct_reply_to {
        "amq.rabbitmq.reply-to".into()
    } else {
        let options = QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        };
        channel
            .queue_declare("".into(), options, FieldTable::default())
            .await?
            .name()
            .clone()
    };
    let options = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let mut replies = channel
        .basic_consume(
            reply_to.clone(),
            "pika-perf-lapin-client".into(),
            options,
            FieldTable::default(),
        )
        .await?;
    wait_for_consumer(&channel, &requests).await?;

    let mut latency = latency_histogram();
    let (mut lost, mut dup) = (0, 0);
    let timer = Timer::start();
    for seq in 0..config.n {
        let correlation_id: ShortString = seq.to_string().into();
        let properties = BasicProperties::default()
            .with_reply_to(reply_to.clone())
            .with_correlation_id(correlation_id.clone());
        let sent = Instant::now();
        channel
            .basic_publish(
                "".into(),
                requests.as_str().into(),
                BasicPublishOptions::default(),
                &body::encode(seq, config.size),
                properties,
            )
            .await?;
        loop {
            match timeout(IDLE_TIMEOUT, replies.next()).await {
                Ok(Some(Ok(reply))) => {
                    if reply.properties.correlation_id().as_ref() == Some(&correlation_id) {
                        latency.saturating_record(sent.elapsed().as_micros() as u64);
                        break;
                    }
                    dup += 1;
                }
                Ok(Some(Err(error))) => return Err(error.into()),
                Ok(None) => return Err("the reply consumer ended".into()),
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

    delete(&channel, &requests).await?;
    close(&connection).await?;
    close(&server_connection).await?;
    let _ = server.await;
    Ok(Measured {
        elapsed,
        latency_us: Some(latency),
        lost,
        dup,
        setup: None,
    })
}

async fn wait_for_consumer(channel: &Channel, queue: &str) -> Result<()> {
    let started = Instant::now();
    loop {
        let options = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let queue_ok = channel
            .queue_declare(queue.into(), options, FieldTable::default())
            .await?;
        if queue_ok.consumer_count() > 0 {
            return Ok(());
        }
        if started.elapsed() > IDLE_TIMEOUT {
            return Err(format!("no consumer on {queue} after {IDLE_TIMEOUT:?}").into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}
