//! `--client amqprs` (feature `amqprs`): the scenarios with amqprs, used
//! as its documentation shows: `Connection::open`, `basic_publish`, the
//! channel-based consumer (`basic_consume_rx`) with `basic_ack` awaited
//! per message.
//!
//! amqprs has no per-publish confirm future: confirms arrive at the
//! channel's `ChannelCallback::publish_ack`/`publish_nack`. The
//! `publish_confirm` scenario registers a callback that forwards them
//! over a channel to the publisher, which keeps its window of
//! [`CONFIRM_WINDOW`] by delivery tag with a [`ConfirmTracker`].

use std::time::Instant;

use amqp_conn::ConnectionConfig;
use amqprs::callbacks::ChannelCallback;
use amqprs::channel::{
    BasicAckArguments, BasicConsumeArguments, BasicPublishArguments, BasicQosArguments, Channel,
    ConfirmSelectArguments, ConsumerMessage, QueueDeclareArguments, QueueDeleteArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{Ack, BasicProperties, Cancel, CloseChannel, Nack, Return};
use tokio::sync::mpsc;
use tokio::time::timeout;

use crate::body;
use crate::rusage::Timer;
use crate::scenario::{
    latency_histogram, unique_name, wait_for_count, Measured, Scenario, ScenarioConfig,
    CONFIRM_WINDOW, IDLE_TIMEOUT, PREFETCH,
};
use crate::tracking::{ConfirmTracker, SeqTracker};
use crate::Result;

/// Runs `config.scenario` with amqprs.
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
    // amqprs parses URIs only with its `urispec` feature; the URL is
    // parsed with amqp-conn's config instead (not part of any timing).
    let config = ConnectionConfig::from_url(url)?;
    let arguments = OpenConnectionArguments::new(
        &config.host,
        config.port,
        &config.credentials.username,
        config.credentials.password(),
    )
    .virtual_host(&config.vhost)
    .finish();
    Ok(Connection::open(&arguments).await?)
}

async fn declare(channel: &Channel, queue: &str) -> Result<()> {
    channel
        .queue_declare(QueueDeclareArguments::new(queue))
        .await?;
    Ok(())
}

async fn message_count(channel: &Channel, queue: &str) -> Result<u64> {
    let arguments = QueueDeclareArguments::new(queue).passive(true).finish();
    match channel.queue_declare(arguments).await? {
        Some((_, count, _)) => Ok(u64::from(count)),
        None => Err("queue.declare without a declare-ok".into()),
    }
}

async fn delete(channel: &Channel, queue: &str) -> Result<()> {
    channel
        .queue_delete(QueueDeleteArguments::new(queue))
        .await?;
    Ok(())
}

async fn close(channel: Channel, connection: Connection) -> Result<()> {
    channel.close().await?;
    connection.close().await?;
    Ok(())
}

async fn publish_bodies(channel: &Channel, queue: &str, n: u64, size: usize) -> Result<()> {
    for seq in 0..n {
        channel
            .basic_publish(
                BasicProperties::default(),
                body::encode(seq, size).to_vec(),
                BasicPublishArguments::new("", queue),
            )
            .await?;
    }
    Ok(())
}

async fn publish(config: &ScenarioConfig) -> Result<Measured> {
    let connection = connect(&config.url).await?;
    let channel = connection.open_channel(None).await?;
    let queue = unique_name("publish");
    declare(&channel, &queue).await?;

    let timer = Timer::start();
    publish_bodies(&channel, &queue, config.n, config.size).await?;
    let count = wait_for_count(config.n, || message_count(&channel, &queue)).await?;
    let elapsed = timer.stop();

    delete(&channel, &queue).await?;
    close(channel, connection).await?;
    Ok(Measured {
        elapsed,
        latency_us: None,
        lost: config.n.saturating_sub(count),
        dup: count.saturating_sub(config.n),
        setup: None,
    })
}

/// A confirm: delivery tag, multiple, ack (true) or nack.
type Settled = (u64, bool, bool);

/// Forwards the channel's publisher confirms to the publisher.
struct Confirms(mpsc::UnboundedSender<Settled>);

#[async_trait::async_trait]
impl ChannelCallback for Confirms {
    async fn close(
        &mut self,
        _channel: &Channel,
        _close: CloseChannel,
    ) -> std::result::Result<(), amqprs::error::Error> {
        Ok(())
    }

    async fn cancel(
        &mut self,
        _channel: &Channel,
        _cancel: Cancel,
    ) -> std::result::Result<(), amqprs::error::Error> {
        Ok(())
    }

    async fn flow(
        &mut self,
        _channel: &Channel,
        active: bool,
    ) -> std::result::Result<bool, amqprs::error::Error> {
        Ok(active)
    }

    async fn publish_ack(&mut self, _channel: &Channel, ack: Ack) {
        let _ = self.0.send((ack.delivery_tag(), ack.mutiple(), true));
    }

    async fn publish_nack(&mut self, _channel: &Channel, nack: Nack) {
        let _ = self.0.send((nack.delivery_tag(), nack.multiple(), false));
    }

    async fn publish_return(
        &mut self,
        _channel: &Channel,
        _ret: Return,
        _basic_properties: BasicProperties,
        _content: Vec<u8>,
    ) {
    }
}

async fn publish_confirm(config: &ScenarioConfig) -> Result<Measured> {
    let connection = connect(&config.url).await?;
    let channel = connection.open_channel(None).await?;
    let queue = unique_name("publish-confirm");
    declare(&channel, &queue).await?;
    let (tx, mut settled) = mpsc::unbounded_channel();
    channel.register_callback(Confirms(tx)).await?;
    channel
        .confirm_select(ConfirmSelectArguments::default())
        .await?;

    let timer = Timer::start();
    let mut confirms = ConfirmTracker::default();
    let arguments = BasicPublishArguments::new("", &queue);
    for seq in 0..config.n {
        while let Ok((tag, multiple, ack)) = settled.try_recv() {
            confirms.settle(tag, multiple, ack);
        }
        while confirms.in_flight() >= CONFIRM_WINDOW as u64 {
            let Ok(Some((tag, multiple, ack))) = timeout(IDLE_TIMEOUT, settled.recv()).await else {
                return Err("no publisher confirm within the idle timeout".into());
            };
            confirms.settle(tag, multiple, ack);
        }
        channel
            .basic_publish(
                BasicProperties::default(),
                body::encode(seq, config.size).to_vec(),
                arguments.clone(),
            )
            .await?;
        confirms.published();
    }
    while confirms.in_flight() > 0 {
        let Ok(Some((tag, multiple, ack))) = timeout(IDLE_TIMEOUT, settled.recv()).await else {
            break;
        };
        confirms.settle(tag, multiple, ack);
    }
    let elapsed = timer.stop();

    let count = message_count(&channel, &queue).await?;
    delete(&channel, &queue).await?;
    close(channel, connection).await?;
    Ok(Measured {
        elapsed,
        latency_us: None,
        lost: config.n.saturating_sub(count.min(confirms.acked())),
        dup: count.saturating_sub(config.n),
        setup: None,
    })
}

fn delivery_tag(message: &ConsumerMessage) -> Option<u64> {
    message.deliver.as_ref().map(|d| d.delivery_tag())
}

async fn consume(config: &ScenarioConfig) -> Result<Measured> {
    let connection = connect(&config.url).await?;
    let channel = connection.open_channel(None).await?;
    let queue = unique_name("consume");
    declare(&channel, &queue).await?;
    publish_bodies(&channel, &queue, config.n, config.size).await?;
    let filled = wait_for_count(config.n, || message_count(&channel, &queue)).await?;
    if filled != config.n {
        return Err(format!("prefill: the queue holds {filled} of {} messages", config.n).into());
    }

    let timer = Timer::start();
    channel
        .basic_qos(BasicQosArguments::new(0, PREFETCH, false))
        .await?;
    let (_tag, mut deliveries) = channel
        .basic_consume_rx(BasicConsumeArguments::new(&queue, "pika-perf-amqprs"))
        .await?;
    let mut seen = SeqTracker::new(config.n);
    while !seen.is_complete() {
        let Ok(Some(message)) = timeout(IDLE_TIMEOUT, deliveries.recv()).await else {
            break;
        };
        seen.record(message.content.as_deref().and_then(body::seq));
        if let Some(tag) = delivery_tag(&message) {
            channel
                .basic_ack(BasicAckArguments::new(tag, false))
                .await?;
        }
    }
    let elapsed = timer.stop();

    delete(&channel, &queue).await?;
    close(channel, connection).await?;
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
    let arguments = BasicConsumeArguments::new(&queue, "pika-perf-amqprs-server")
        .auto_ack(true)
        .finish();
    let (_tag, mut requests) = channel.basic_consume_rx(arguments).await?;
    while let Some(request) = requests.recv().await {
        let Some(properties) = request.basic_properties else {
            continue;
        };
        let Some(reply_to) = properties.reply_to() else {
            continue;
        };
        let mut reply = BasicProperties::default();
        if let Some(id) = properties.correlation_id() {
            reply.with_correlation_id(id);
        }
        channel
            .basic_publish(
                reply,
                request.content.unwrap_or_default(),
                BasicPublishArguments::new("", reply_to),
            )
            .await?;
    }
    Ok(())
}

async fn rpc(config: &ScenarioConfig) -> Result<Measured> {
    let server_connection = connect(&config.url).await?;
    let server_channel = server_connection.open_channel(None).await?;
    let requests = unique_name("rpc");
    declare(&server_channel, &requests).await?;
    let server = tokio::spawn(rpc_server(server_channel.clone(), requests.clone()));

    let connection = connect(&config.url).await?;
    let channel = connection.open_channel(None).await?;
    let reply_to = if config.direct_reply_to {
        "amq.rabbitmq.reply-to".to_string()
    } else {
        match channel
            .queue_declare(QueueDeclareArguments::exclusive_server_named())
            .await?
        {
            Some((name, _, _)) => name,
            None => return Err("queue.declare without a declare-ok".into()),
        }
    };
    let arguments = BasicConsumeArguments::new(&reply_to, "pika-perf-amqprs-client")
        .auto_ack(true)
        .finish();
    let (_tag, mut replies) = channel.basic_consume_rx(arguments).await?;
    wait_for_consumer(&channel, &requests).await?;

    let publish = BasicPublishArguments::new("", &requests);
    let mut latency = latency_histogram();
    let (mut lost, mut dup) = (0, 0);
    let timer = Timer::start();
    for seq in 0..config.n {
        let correlation_id = seq.to_string();
        let properties = BasicProperties::default()
            .with_reply_to(&reply_to)
            .with_correlation_id(&correlation_id)
            .finish();
        let sent = Instant::now();
        channel
            .basic_publish(
                properties,
                body::encode(seq, config.size).to_vec(),
                publish.clone(),
            )
            .await?;
        loop {
            match timeout(IDLE_TIMEOUT, replies.recv()).await {
                Ok(Some(reply)) => {
                    let id = reply
                        .basic_properties
                        .as_ref()
                        .and_then(|p| p.correlation_id());
                    if id == Some(&correlation_id) {
                        latency.saturating_record(sent.elapsed().as_micros() as u64);
                        break;
                    }
                    dup += 1;
                }
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
    close(channel, connection).await?;
    server_channel.close().await?;
    server_connection.close().await?;
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
        let arguments = QueueDeclareArguments::new(queue).passive(true).finish();
        if let Some((_, _, consumers)) = channel.queue_declare(arguments).await? {
            if consumers > 0 {
                return Ok(());
            }
        }
        if started.elapsed() > IDLE_TIMEOUT {
            return Err(format!("no consumer on {queue} after {IDLE_TIMEOUT:?}").into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}
