//! `--client amqprs` (feature `amqprs`): the scenarios with amqprs, used
//! as its documentation shows: `Connection::open`, `basic_publish`, the
//! channel-based consumer (`basic_consume_rx`) with `basic_ack` awaited
//! per message.
//!
//! amqprs has no per-publish confirm future: confirms arrive at the
//! channel's `ChannelCallback::publish_ack`/`publish_nack`. The
//! `publish_confirm` scenario registers a callback that forwards them
//! over a channel to the publisher, which keeps its window of
//! [`CONFIRM_WINDOW`] by delivery tag with a [`ConfirmTracker`]; `large`
//! does the same with [`LARGE_WINDOW`].
//!
//! In the scenarios of scale every consumer is a task of its own that
//! reads its `basic_consume_rx` channel and acks on a clone of its
//! channel; the run joins them.

use std::time::Instant;

use amqp_conn::ConnectionConfig;
use amqprs::callbacks::ChannelCallback;
use amqprs::channel::{
    BasicAckArguments, BasicConsumeArguments, BasicPublishArguments, BasicQosArguments, Channel,
    ConfirmSelectArguments, ConsumerMessage, ExchangeDeclareArguments, ExchangeDeleteArguments,
    ExchangeType, QueueBindArguments, QueueDeclareArguments, QueueDeleteArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{Ack, BasicProperties, Cancel, CloseChannel, Nack, Return};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::body;
use crate::rusage::Timer;
use crate::scenario::{
    latency_histogram, unique_name, wait_for_count, Measured, Scenario, ScenarioConfig, SetupTimer,
    CONFIRM_WINDOW, IDLE_TIMEOUT, LARGE_PREFETCH, LARGE_WINDOW, PREFETCH,
};
use crate::tracking::{ConfirmTracker, SeqTracker, Share};
use crate::Result;

/// Runs `config.scenario` with amqprs.
pub async fn run(config: &ScenarioConfig) -> Result<Measured> {
    match config.scenario {
        Scenario::Publish => publish(config).await,
        Scenario::PublishConfirm => publish_confirm(config).await,
        Scenario::Consume => consume(config).await,
        Scenario::Rpc => rpc(config).await,
        Scenario::Channels => channels(config).await,
        Scenario::Consumers => consumers(config).await,
        Scenario::Connections => connections(config).await,
        Scenario::Fanout => fanout(config).await,
        Scenario::Large => large(config).await,
        Scenario::Parallel => parallel(config).await,
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
    Ok(Measured::counted(elapsed, config.n, count, None))
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

/// What a consumer receives: the channel of amqprs's `basic_consume_rx`.
type Deliveries = mpsc::UnboundedReceiver<ConsumerMessage>;

/// A consumer's task (see [`spawn_consumer`]): what arrived of its share.
type ConsumerTask = JoinHandle<Result<SeqTracker>>;

/// The body of message `seq` as the `Vec` that `basic_publish` takes
/// (`bytes` hands the fresh buffer over instead of copying it, as nothing
/// else shares it).
fn content(seq: u64, size: usize) -> Vec<u8> {
    body::encode(seq, size).into()
}

/// Opens a channel whose consumers get `prefetch` unacked deliveries
/// each (`basic.qos`, `global=false`).
async fn consumer_channel(connection: &Connection, prefetch: u16) -> Result<Channel> {
    let channel = connection.open_channel(None).await?;
    channel
        .basic_qos(BasicQosArguments::new(0, prefetch, false))
        .await?;
    Ok(channel)
}

/// Declares `w` queues named after `what` on `channel`; returns their
/// names.
async fn declare_queues(channel: &Channel, what: &str, w: u32) -> Result<Vec<String>> {
    let mut queues = Vec::with_capacity(w as usize);
    for _ in 0..w {
        let queue = unique_name(what);
        declare(channel, &queue).await?;
        queues.push(queue);
    }
    Ok(queues)
}

/// Deletes `queues` on `channel`.
async fn delete_all(channel: &Channel, queues: &[String]) -> Result<()> {
    for queue in queues {
        delete(channel, queue).await?;
    }
    Ok(())
}

/// Starts a consumer with manual acks on `queue`; returns its deliveries.
async fn start_consumer(channel: &Channel, queue: &str, tag: &str) -> Result<Deliveries> {
    let (_tag, deliveries) = channel
        .basic_consume_rx(BasicConsumeArguments::new(queue, tag))
        .await?;
    Ok(deliveries)
}

/// Closes `channels`, then `connection`.
async fn close_all(channels: Vec<Channel>, connection: Connection) -> Result<()> {
    for channel in channels {
        channel.close().await?;
    }
    connection.close().await?;
    Ok(())
}

/// Publishes the messages of `share` (`seq % w == i` of `0..n`) to
/// `queue` on `channel`, without confirms.
async fn publish_share(channel: Channel, queue: String, share: Share, size: usize) -> Result<()> {
    let arguments = BasicPublishArguments::new("", &queue);
    for seq in share.seqs() {
        channel
            .basic_publish(
                BasicProperties::default(),
                content(seq, size),
                arguments.clone(),
            )
            .await?;
    }
    Ok(())
}

/// A consumer's task: records each delivery and acks it (`multiple=false`)
/// on `channel`, until its share arrived or nothing came for
/// [`IDLE_TIMEOUT`].
fn spawn_consumer(channel: Channel, mut deliveries: Deliveries, share: Share) -> ConsumerTask {
    tokio::spawn(async move {
        let mut seen = share.tracker();
        while !seen.is_complete() {
            let Ok(Some(message)) = timeout(IDLE_TIMEOUT, deliveries.recv()).await else {
                break;
            };
            seen.record(share.local(message.content.as_deref().and_then(body::seq)));
            if let Some(tag) = delivery_tag(&message) {
                channel
                    .basic_ack(BasicAckArguments::new(tag, false))
                    .await?;
            }
        }
        Ok(seen)
    })
}

/// Waits for every consumer; returns their lost and duplicated messages,
/// summed.
async fn join_consumers(tasks: Vec<ConsumerTask>) -> Result<(u64, u64)> {
    let (mut lost, mut dup) = (0, 0);
    for task in tasks {
        let seen = task.await??;
        lost += seen.lost();
        dup += seen.dup();
    }
    Ok((lost, dup))
}

/// Waits for every task; fails with the first failure.
async fn join_all(tasks: Vec<JoinHandle<Result<()>>>) -> Result<()> {
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// `channels`: W channels opened one after another (setup), then N
/// publishes to one queue, message `seq` on channel `seq % W`, until a
/// passive declare counts N.
async fn channels(config: &ScenarioConfig) -> Result<Measured> {
    let w = config.width();
    let connection = connect(&config.url).await?;

    let setup = SetupTimer::start();
    let mut channels = Vec::with_capacity(w as usize);
    for k in 1..=w {
        let channel = connection.open_channel(None).await.map_err(|e| {
            let max = connection.channel_max();
            let past = if k > u32::from(max) {
                ": amqprs gave it an id past the channel_max the broker negotiated, \
                 and the broker closed the connection"
            } else {
                ""
            };
            format!("opening channel {k} of {w} (channel_max {max}): {e}{past}")
        })?;
        channels.push(channel);
    }
    let setup = setup.stop();
    let control = &channels[0];
    let queue = unique_name("channels");
    declare(control, &queue).await?;
    let arguments = BasicPublishArguments::new("", &queue);

    let timer = Timer::start();
    for seq in 0..config.n {
        channels[(seq % u64::from(w)) as usize]
            .basic_publish(
                BasicProperties::default(),
                content(seq, config.size),
                arguments.clone(),
            )
            .await?;
    }
    let count = wait_for_count(config.n, || message_count(control, &queue)).await?;
    let elapsed = timer.stop();

    delete(control, &queue).await?;
    close_all(channels, connection).await?;
    Ok(Measured::counted(elapsed, config.n, count, Some(setup)))
}

/// `consumers`: W queues (declared first); setup: one channel with a
/// consumer on each; timed: a second channel publishes the N messages,
/// message `seq` to queue `seq % W`, until every delivery arrived.
async fn consumers(config: &ScenarioConfig) -> Result<Measured> {
    let w = config.width();
    let connection = connect(&config.url).await?;
    let publisher = connection.open_channel(None).await?;
    let queues = declare_queues(&publisher, "consumers", w).await?;

    let setup = SetupTimer::start();
    let channel = consumer_channel(&connection, PREFETCH).await?;
    let mut consumers = Vec::with_capacity(queues.len());
    for (queue, i) in queues.iter().zip(0..) {
        let tag = format!("pika-perf-amqprs-{i}");
        consumers.push(start_consumer(&channel, queue, &tag).await?);
    }
    let setup = setup.stop();

    let timer = Timer::start();
    let tasks: Vec<ConsumerTask> = consumers
        .into_iter()
        .zip(0..)
        .map(|(deliveries, i)| {
            spawn_consumer(channel.clone(), deliveries, Share::new(config.n, w, i))
        })
        .collect();
    for seq in 0..config.n {
        let queue = &queues[(seq % u64::from(w)) as usize];
        publisher
            .basic_publish(
                BasicProperties::default(),
                content(seq, config.size),
                BasicPublishArguments::new("", queue),
            )
            .await?;
    }
    let (lost, dup) = join_consumers(tasks).await?;
    let elapsed = timer.stop();

    delete_all(&publisher, &queues).await?;
    close_all(vec![channel, publisher], connection).await?;
    Ok(Measured {
        elapsed,
        latency_us: None,
        lost,
        dup,
        setup: Some(setup),
    })
}

/// One connection of `connections`: its publishing channel, its queue,
/// and the channel and deliveries of the queue's consumer.
struct Peer {
    connection: Connection,
    publisher: Channel,
    channel: Channel,
    queue: String,
    deliveries: Deliveries,
}

impl Peer {
    /// Opens a connection with a publishing channel, and a queue consumed
    /// on a second channel.
    async fn open(url: &str) -> Result<Peer> {
        let connection = connect(url).await?;
        let publisher = connection.open_channel(None).await?;
        let channel = consumer_channel(&connection, PREFETCH).await?;
        let queue = unique_name("connections");
        declare(&channel, &queue).await?;
        let deliveries = start_consumer(&channel, &queue, "pika-perf-amqprs").await?;
        Ok(Peer {
            connection,
            publisher,
            channel,
            queue,
            deliveries,
        })
    }
}

/// `connections`: W connections (setup), each publishing its share to its
/// own queue and consuming it, all at once, until every delivery arrived.
async fn connections(config: &ScenarioConfig) -> Result<Measured> {
    let w = config.width();
    let setup = SetupTimer::start();
    let mut peers = Vec::with_capacity(w as usize);
    for k in 1..=w {
        let peer = Peer::open(&config.url)
            .await
            .map_err(|e| format!("opening connection {k} of {w}: {e}"))?;
        peers.push(peer);
    }
    let setup = setup.stop();

    let mut closing = Vec::with_capacity(peers.len());
    let mut publishers = Vec::with_capacity(peers.len());
    let mut consumers = Vec::with_capacity(peers.len());
    let timer = Timer::start();
    for (peer, i) in peers.into_iter().zip(0..) {
        let share = Share::new(config.n, w, i);
        publishers.push(tokio::spawn(publish_share(
            peer.publisher.clone(),
            peer.queue.clone(),
            share,
            config.size,
        )));
        consumers.push(spawn_consumer(peer.channel.clone(), peer.deliveries, share));
        closing.push((peer.connection, peer.publisher, peer.channel, peer.queue));
    }
    join_all(publishers).await?;
    let (lost, dup) = join_consumers(consumers).await?;
    let elapsed = timer.stop();

    for (connection, publisher, channel, queue) in closing {
        delete(&publisher, &queue).await?;
        close_all(vec![channel, publisher], connection).await?;
    }
    Ok(Measured {
        elapsed,
        latency_us: None,
        lost,
        dup,
        setup: Some(setup),
    })
}

/// `fanout`: a fanout exchange bound to W queues; setup: one channel with
/// a consumer on each; timed: N publishes to the exchange until all
/// W x N deliveries arrived.
async fn fanout(config: &ScenarioConfig) -> Result<Measured> {
    let w = config.width();
    let connection = connect(&config.url).await?;
    let publisher = connection.open_channel(None).await?;
    let exchange = unique_name("fanout");
    publisher
        .exchange_declare(ExchangeDeclareArguments::of_type(
            &exchange,
            ExchangeType::Fanout,
        ))
        .await?;
    let queues = declare_queues(&publisher, "fanout", w).await?;
    for queue in &queues {
        publisher
            .queue_bind(QueueBindArguments::new(queue, &exchange, ""))
            .await?;
    }

    let setup = SetupTimer::start();
    let channel = consumer_channel(&connection, PREFETCH).await?;
    let mut consumers = Vec::with_capacity(queues.len());
    for (queue, i) in queues.iter().zip(0..) {
        let tag = format!("pika-perf-amqprs-{i}");
        consumers.push(start_consumer(&channel, queue, &tag).await?);
    }
    let setup = setup.stop();

    let every = Share::new(config.n, 1, 0);
    let arguments = BasicPublishArguments::new(&exchange, "");
    let timer = Timer::start();
    let tasks: Vec<ConsumerTask> = consumers
        .into_iter()
        .map(|deliveries| spawn_consumer(channel.clone(), deliveries, every))
        .collect();
    for seq in 0..config.n {
        publisher
            .basic_publish(
                BasicProperties::default(),
                content(seq, config.size),
                arguments.clone(),
            )
            .await?;
    }
    let (lost, dup) = join_consumers(tasks).await?;
    let elapsed = timer.stop();

    delete_all(&publisher, &queues).await?;
    publisher
        .exchange_delete(ExchangeDeleteArguments::new(&exchange))
        .await?;
    close_all(vec![channel, publisher], connection).await?;
    Ok(Measured {
        elapsed,
        latency_us: None,
        lost,
        dup,
        setup: Some(setup),
    })
}

/// `large`: N bodies of `config.size` published in confirm mode, at most
/// [`LARGE_WINDOW`] unconfirmed, while a consumer on a second channel
/// (prefetch [`LARGE_PREFETCH`]) takes them, until all are confirmed and
/// consumed. Each body is a new `Vec`: amqprs's `basic_publish` takes
/// it by value and does not give it back, so it cannot be recycled.
async fn large(config: &ScenarioConfig) -> Result<Measured> {
    let connection = connect(&config.url).await?;
    let publisher = connection.open_channel(None).await?;
    let queue = unique_name("large");
    declare(&publisher, &queue).await?;
    let (tx, mut settled) = mpsc::unbounded_channel();
    publisher.register_callback(Confirms(tx)).await?;
    publisher
        .confirm_select(ConfirmSelectArguments::default())
        .await?;
    let channel = consumer_channel(&connection, LARGE_PREFETCH).await?;
    let deliveries = start_consumer(&channel, &queue, "pika-perf-amqprs").await?;
    let arguments = BasicPublishArguments::new("", &queue);

    let timer = Timer::start();
    let consumer = spawn_consumer(channel.clone(), deliveries, Share::new(config.n, 1, 0));
    let mut confirms = ConfirmTracker::default();
    'publish: for seq in 0..config.n {
        while let Ok((tag, multiple, ack)) = settled.try_recv() {
            confirms.settle(tag, multiple, ack);
        }
        while confirms.in_flight() >= LARGE_WINDOW as u64 {
            let Ok(Some((tag, multiple, ack))) = timeout(IDLE_TIMEOUT, settled.recv()).await else {
                break 'publish;
            };
            confirms.settle(tag, multiple, ack);
        }
        publisher
            .basic_publish(
                BasicProperties::default(),
                content(seq, config.size),
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
    let seen = consumer.await??;
    let elapsed = timer.stop();

    delete(&publisher, &queue).await?;
    close_all(vec![channel, publisher], connection).await?;
    Ok(Measured {
        elapsed,
        latency_us: None,
        lost: config.n - seen.distinct().min(confirms.acked()),
        dup: seen.dup(),
        setup: None,
    })
}

/// `parallel`: W producer tasks, each on a channel of its own, publish
/// their shares to W queues while W consumer tasks, each on a channel of
/// its own, consume them, until every delivery arrived.
async fn parallel(config: &ScenarioConfig) -> Result<Measured> {
    let w = config.width();
    let connection = connect(&config.url).await?;

    let setup = SetupTimer::start();
    let mut publishers = Vec::with_capacity(w as usize);
    let mut channels = Vec::with_capacity(w as usize);
    let mut queues = Vec::with_capacity(w as usize);
    let mut consumers = Vec::with_capacity(w as usize);
    for _ in 0..w {
        publishers.push(connection.open_channel(None).await?);
        let channel = consumer_channel(&connection, PREFETCH).await?;
        let queue = unique_name("parallel");
        declare(&channel, &queue).await?;
        consumers.push(start_consumer(&channel, &queue, "pika-perf-amqprs").await?);
        channels.push(channel);
        queues.push(queue);
    }
    let setup = setup.stop();

    let timer = Timer::start();
    let mut consumer_tasks = Vec::with_capacity(queues.len());
    let mut publisher_tasks = Vec::with_capacity(queues.len());
    for ((((publisher, channel), queue), deliveries), i) in publishers
        .iter()
        .zip(&channels)
        .zip(&queues)
        .zip(consumers)
        .zip(0..)
    {
        let share = Share::new(config.n, w, i);
        consumer_tasks.push(spawn_consumer(channel.clone(), deliveries, share));
        publisher_tasks.push(tokio::spawn(publish_share(
            publisher.clone(),
            queue.clone(),
            share,
            config.size,
        )));
    }
    join_all(publisher_tasks).await?;
    let (lost, dup) = join_consumers(consumer_tasks).await?;
    let elapsed = timer.stop();

    delete_all(&channels[0], &queues).await?;
    close_all(channels.into_iter().chain(publishers).collect(), connection).await?;
    Ok(Measured {
        elapsed,
        latency_us: None,
        lost,
        dup,
        setup: Some(setup),
    })
}
