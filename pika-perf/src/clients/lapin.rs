//! `--client lapin` (feature `lapin`): the scenarios with lapin, used as
//! its documentation shows: `Connection::connect`, `basic_publish`
//! returning a `PublisherConfirm` future per message, the `Consumer`
//! stream, and `Delivery::ack` awaited per message.

use std::collections::VecDeque;
use std::time::Instant;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind,
    PublisherConfirm,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use crate::body::{self, Bodies};
use crate::rusage::Timer;
use crate::scenario::{
    latency_histogram, unique_name, wait_for_count, Measured, Scenario, ScenarioConfig, SetupTimer,
    CONFIRM_WINDOW, IDLE_TIMEOUT, LARGE_PREFETCH, LARGE_WINDOW, PREFETCH,
};
use crate::tracking::{SeqTracker, Share};
use crate::Result;

/// Runs `config.scenario` with lapin.
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
    Ok(Measured::counted(elapsed, config.n, count, None))
}

/// Publishes the bodies `0..N` (from `bodies`) to `queue` on a channel in
/// confirm mode, at most `window` unconfirmed at a time; returns how many
/// were acked.
async fn publish_confirmed(
    channel: &Channel,
    queue: &str,
    n: u64,
    bodies: &Bodies,
    window: usize,
) -> Result<u64> {
    let mut pending: VecDeque<PublisherConfirm> = VecDeque::with_capacity(window);
    let mut acked = 0u64;
    for seq in 0..n {
        if pending.len() == window {
            let oldest = pending.pop_front().expect("the window is full");
            acked += u64::from(oldest.await?.is_ack());
        }
        pending.push_back(publish_one(channel, queue, &bodies.body(seq)).await?);
    }
    for confirm in pending {
        acked += u64::from(confirm.await?.is_ack());
    }
    Ok(acked)
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
    let acked = publish_confirmed(
        &channel,
        &queue,
        config.n,
        &Bodies::Fresh(config.size),
        CONFIRM_WINDOW,
    )
    .await?;
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

/// Opens a channel whose consumers get `prefetch` each (`basic.qos`,
/// `global=false`).
async fn consumer_channel(connection: &Connection, prefetch: u16) -> Result<Channel> {
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    Ok(channel)
}

/// Declares `w` queues named after `what` on `channel`; returns their names.
async fn declare_queues(channel: &Channel, what: &str, w: u32) -> Result<Vec<String>> {
    let mut queues = Vec::with_capacity(w as usize);
    for _ in 0..w {
        let queue = unique_name(what);
        declare(channel, &queue).await?;
        queues.push(queue);
    }
    Ok(queues)
}

/// Closes `channel` (and with it its consumers). Done explicitly before
/// the connection closes: a channel whose last handle is dropped closes
/// itself in the background, and if that races with `Connection::close`,
/// the close fails with "invalid channel state: Closing (channel.close)".
async fn close_channel(channel: &Channel) -> Result<()> {
    channel.close(200, "done".into()).await?;
    Ok(())
}

/// Deletes every queue of `queues` through `channel`.
async fn delete_all(channel: &Channel, queues: &[String]) -> Result<()> {
    for queue in queues {
        delete(channel, queue).await?;
    }
    Ok(())
}

/// Starts consumer `i` on `queue` (acks on, the channel's prefetch).
async fn start_consumer(channel: &Channel, queue: &str, i: u32) -> Result<Consumer> {
    Ok(channel
        .basic_consume(
            queue.into(),
            format!("pika-perf-lapin-{i}").into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?)
}

/// Publishes the messages of `share` (`seq % w == i` of `0..n`) to
/// `queue` through the default exchange, without confirms.
async fn publish_share(channel: Channel, queue: String, share: Share, size: usize) -> Result<()> {
    for seq in share.seqs() {
        publish_one(&channel, &queue, &body::encode(seq, size)).await?;
    }
    Ok(())
}

/// A consumer's task: its tracker and its stream, which is handed back so
/// that dropping it (lapin then sends `basic.cancel`) happens after the
/// timed region.
type ConsumerTask = JoinHandle<Result<(SeqTracker, Consumer)>>;

/// Spawns the task of consumer `i`, which expects the messages of `share`
/// (all of `0..n` with `Share::new(n, 1, 0)`): once `go` turns true (the
/// timed region starts) it acks each delivery and records it, until its
/// share arrived or nothing came for [`IDLE_TIMEOUT`].
fn spawn_consumer(
    mut consumer: Consumer,
    i: u32,
    share: Share,
    mut go: watch::Receiver<bool>,
) -> ConsumerTask {
    tokio::spawn(async move {
        let mut seen = share.tracker();
        if go.wait_for(|&go| go).await.is_err() {
            return Ok((seen, consumer));
        }
        while !seen.is_complete() {
            let Ok(Some(delivery)) = timeout(IDLE_TIMEOUT, consumer.next()).await else {
                break;
            };
            let delivery = delivery.map_err(|e| format!("consumer {i}: {e}"))?;
            seen.record(share.local(body::seq(&delivery.data)));
            delivery
                .ack(BasicAckOptions::default())
                .await
                .map_err(|e| format!("consumer {i}: basic.ack: {e}"))?;
        }
        Ok((seen, consumer))
    })
}

/// Waits for every consumer; returns lost and duplicated messages summed,
/// and the streams to drop after the timed region.
async fn join_consumers(tasks: Vec<ConsumerTask>) -> Result<(u64, u64, Vec<Consumer>)> {
    let (mut lost, mut dup) = (0, 0);
    let mut consumers = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (seen, consumer) = task.await??;
        lost += seen.lost();
        dup += seen.dup();
        consumers.push(consumer);
    }
    Ok((lost, dup, consumers))
}

/// Waits for every publisher task.
async fn join_publishers(tasks: Vec<JoinHandle<Result<()>>>) -> Result<()> {
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// `channels`: W channels opened one after another (setup); message `seq`
/// goes out on channel `seq % W` to one queue, until a passive declare
/// counts N. The queue is declared and counted on the first of the W
/// channels, so that W may be the broker's `channel_max`.
async fn channels(config: &ScenarioConfig) -> Result<Measured> {
    let w = config.width();
    let connection = connect(&config.url).await?;

    let setup = SetupTimer::start();
    let mut channels = Vec::with_capacity(w as usize);
    for k in 0..w {
        let channel = connection.create_channel().await.map_err(|e| {
            format!(
                "opening channel {} of {w} (negotiated channel_max {}): {e}",
                k + 1,
                connection.configuration().channel_max()
            )
        })?;
        channels.push(channel);
    }
    let setup = setup.stop();
    let control = &channels[0];
    let queue = unique_name("channels");
    declare(control, &queue).await?;

    let timer = Timer::start();
    for seq in 0..config.n {
        let channel = &channels[(seq % u64::from(w)) as usize];
        publish_one(channel, &queue, &body::encode(seq, config.size)).await?;
    }
    let count = wait_for_count(config.n, || message_count(control, &queue)).await?;
    let elapsed = timer.stop();

    delete(control, &queue).await?;
    close(&connection).await?;
    Ok(Measured::counted(elapsed, config.n, count, Some(setup)))
}

/// `consumers`: W queues (declared first); setup is one channel with a
/// consumer per queue, each read by a task of its own; a second channel
/// publishes message `seq` to queue `seq % W` until every delivery arrived.
async fn consumers(config: &ScenarioConfig) -> Result<Measured> {
    let w = config.width();
    let connection = connect(&config.url).await?;
    let publisher = connection.create_channel().await?;
    let queues = declare_queues(&publisher, "consumers", w).await?;
    let (go, gate) = watch::channel(false);

    let setup = SetupTimer::start();
    let channel = consumer_channel(&connection, PREFETCH).await?;
    let mut tasks = Vec::with_capacity(queues.len());
    for (queue, i) in queues.iter().zip(0..) {
        let consumer = start_consumer(&channel, queue, i).await?;
        tasks.push(spawn_consumer(
            consumer,
            i,
            Share::new(config.n, w, i),
            gate.clone(),
        ));
    }
    let setup = setup.stop();

    let timer = Timer::start();
    go.send_replace(true);
    for seq in 0..config.n {
        let queue = &queues[(seq % u64::from(w)) as usize];
        publish_one(&publisher, queue, &body::encode(seq, config.size)).await?;
    }
    let (lost, dup, streams) = join_consumers(tasks).await?;
    let elapsed = timer.stop();

    drop(streams);
    delete_all(&publisher, &queues).await?;
    close_channel(&channel).await?;
    close(&connection).await?;
    Ok(Measured {
        elapsed,
        latency_us: None,
        lost,
        dup,
        setup: Some(setup),
    })
}

/// One connection of `connections`: its publishing channel, its queue,
/// its consumer's channel and the consumer's task.
struct Peer {
    connection: Connection,
    publisher: Channel,
    queue: String,
    channel: Channel,
    consumer: ConsumerTask,
}

impl Peer {
    /// Connects (connection `i`), opens both channels, declares the queue
    /// and starts the consumer of `share` behind `go`.
    async fn open(url: &str, i: u32, share: Share, go: watch::Receiver<bool>) -> Result<Peer> {
        let connection = connect(url)
            .await
            .map_err(|e| format!("opening connection {}: {e}", i + 1))?;
        let publisher = connection.create_channel().await?;
        let channel = consumer_channel(&connection, PREFETCH).await?;
        let queue = unique_name("connections");
        declare(&channel, &queue).await?;
        let consumer = start_consumer(&channel, &queue, i).await?;
        Ok(Peer {
            connection,
            publisher,
            queue,
            channel,
            consumer: spawn_consumer(consumer, i, share, go),
        })
    }
}

/// `connections`: W connections (setup), each with a publishing channel, a
/// queue and a consumer task; every connection publishes its share to its
/// queue from a task of its own, all at once, until every delivery
/// arrived.
async fn connections(config: &ScenarioConfig) -> Result<Measured> {
    let w = config.width();
    let (go, gate) = watch::channel(false);

    let setup = SetupTimer::start();
    let mut peers = Vec::with_capacity(w as usize);
    for i in 0..w {
        peers.push(Peer::open(&config.url, i, Share::new(config.n, w, i), gate.clone()).await?);
    }
    let setup = setup.stop();

    let mut closing = Vec::with_capacity(peers.len());
    let mut publishers = Vec::with_capacity(peers.len());
    let mut consumers = Vec::with_capacity(peers.len());
    let timer = Timer::start();
    go.send_replace(true);
    for (peer, i) in peers.into_iter().zip(0..) {
        publishers.push(tokio::spawn(publish_share(
            peer.publisher.clone(),
            peer.queue.clone(),
            Share::new(config.n, w, i),
            config.size,
        )));
        consumers.push(peer.consumer);
        closing.push((peer.connection, peer.publisher, peer.queue, peer.channel));
    }
    join_publishers(publishers).await?;
    let (lost, dup, streams) = join_consumers(consumers).await?;
    let elapsed = timer.stop();

    drop(streams);
    for (connection, publisher, queue, channel) in closing {
        delete(&publisher, &queue).await?;
        close_channel(&channel).await?;
        close_channel(&publisher).await?;
        close(&connection).await?;
    }
    Ok(Measured {
        elapsed,
        latency_us: None,
        lost,
        dup,
        setup: Some(setup),
    })
}

/// `fanout`: a fanout exchange bound to W queues (declared first); setup
/// is one channel with a consumer task per queue; a second channel
/// publishes N messages to the exchange until every queue received all N.
async fn fanout(config: &ScenarioConfig) -> Result<Measured> {
    let w = config.width();
    let connection = connect(&config.url).await?;
    let publisher = connection.create_channel().await?;
    let exchange = unique_name("fanout");
    publisher
        .exchange_declare(
            exchange.as_str().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let queues = declare_queues(&publisher, "fanout", w).await?;
    for queue in &queues {
        publisher
            .queue_bind(
                queue.as_str().into(),
                exchange.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    let (go, gate) = watch::channel(false);

    let setup = SetupTimer::start();
    let channel = consumer_channel(&connection, PREFETCH).await?;
    let mut tasks = Vec::with_capacity(queues.len());
    for (queue, i) in queues.iter().zip(0..) {
        let consumer = start_consumer(&channel, queue, i).await?;
        tasks.push(spawn_consumer(
            consumer,
            i,
            Share::new(config.n, 1, 0),
            gate.clone(),
        ));
    }
    let setup = setup.stop();

    let timer = Timer::start();
    go.send_replace(true);
    for seq in 0..config.n {
        publisher
            .basic_publish(
                exchange.as_str().into(),
                "".into(),
                BasicPublishOptions::default(),
                &body::encode(seq, config.size),
                BasicProperties::default(),
            )
            .await?;
    }
    let (lost, dup, streams) = join_consumers(tasks).await?;
    let elapsed = timer.stop();

    drop(streams);
    delete_all(&publisher, &queues).await?;
    publisher
        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
        .await?;
    close_channel(&channel).await?;
    close(&connection).await?;
    Ok(Measured {
        elapsed,
        latency_us: None,
        lost,
        dup,
        setup: Some(setup),
    })
}

/// `large`: a consumer task (prefetch [`LARGE_PREFETCH`], its own channel)
/// is running (setup) while a confirm-mode channel publishes N bodies of
/// `config.size`, written one by one into recycled buffers (lapin copies
/// what it is given), at most [`LARGE_WINDOW`] unconfirmed,
/// until all N are confirmed and consumed.
async fn large(config: &ScenarioConfig) -> Result<Measured> {
    let connection = connect(&config.url).await?;
    let publisher = connection.create_channel().await?;
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let queue = unique_name("large");
    declare(&publisher, &queue).await?;
    let (go, gate) = watch::channel(false);

    let setup = SetupTimer::start();
    let channel = consumer_channel(&connection, LARGE_PREFETCH).await?;
    let consumer = start_consumer(&channel, &queue, 0).await?;
    let consumer = spawn_consumer(consumer, 0, Share::new(config.n, 1, 0), gate);
    let setup = setup.stop();

    let timer = Timer::start();
    go.send_replace(true);
    let acked = publish_confirmed(
        &publisher,
        &queue,
        config.n,
        &Bodies::recycled(config.size),
        LARGE_WINDOW,
    )
    .await?;
    let (seen, stream) = consumer.await??;
    let elapsed = timer.stop();

    drop(stream);
    delete(&publisher, &queue).await?;
    close_channel(&channel).await?;
    close(&connection).await?;
    Ok(Measured {
        elapsed,
        latency_us: None,
        lost: config.n - seen.distinct().min(acked),
        dup: seen.dup(),
        setup: Some(setup),
    })
}

/// `parallel`: W queues (declared first); setup opens W publishing
/// channels and W consumer channels with a consumer task each; then W
/// publisher tasks send their shares (queue `seq % W`, no confirms) while
/// the consumers ack, all at once, until every delivery arrived.
async fn parallel(config: &ScenarioConfig) -> Result<Measured> {
    let w = config.width();
    let connection = connect(&config.url).await?;
    let control = connection.create_channel().await?;
    let queues = declare_queues(&control, "parallel", w).await?;
    let (go, gate) = watch::channel(false);

    let setup = SetupTimer::start();
    let mut publishers = Vec::with_capacity(queues.len());
    let mut channels = Vec::with_capacity(queues.len());
    let mut consumers = Vec::with_capacity(queues.len());
    for (queue, i) in queues.iter().zip(0..) {
        publishers.push(connection.create_channel().await?);
        let channel = consumer_channel(&connection, PREFETCH).await?;
        let consumer = start_consumer(&channel, queue, i).await?;
        consumers.push(spawn_consumer(
            consumer,
            i,
            Share::new(config.n, w, i),
            gate.clone(),
        ));
        channels.push(channel);
    }
    let setup = setup.stop();

    let timer = Timer::start();
    go.send_replace(true);
    let tasks: Vec<_> = publishers
        .iter()
        .zip(&queues)
        .zip(0..)
        .map(|((channel, queue), i)| {
            tokio::spawn(publish_share(
                channel.clone(),
                queue.clone(),
                Share::new(config.n, w, i),
                config.size,
            ))
        })
        .collect();
    join_publishers(tasks).await?;
    let (lost, dup, streams) = join_consumers(consumers).await?;
    let elapsed = timer.stop();

    drop(streams);
    delete_all(&control, &queues).await?;
    for channel in channels.iter().chain(&publishers) {
        close_channel(channel).await?;
    }
    close(&connection).await?;
    Ok(Measured {
        elapsed,
        latency_us: None,
        lost,
        dup,
        setup: Some(setup),
    })
}
