//! `--client pika`: the scenarios on the `pika` API, written as an
//! application would: a [`Message`] per publish through an exchange, a
//! [`QueueIterator`] to consume, one `ack` per delivery.

use std::collections::VecDeque;
use std::time::Instant;

use futures_util::StreamExt;
use pika::{
    Channel, Connection, Exchange, ExchangeType, Message, PendingConfirmation, Queue, QueueIterator,
};
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

/// Runs `config.scenario` with pika.
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

/// Opens a connection to the run's broker, writing at most
/// `config.write_batch` bytes at a time when that is set.
pub async fn connect(config: &ScenarioConfig) -> Result<Connection> {
    let options = pika::ConnectOptions::from_url(&config.url)?.write_batch(config.write_batch);
    Ok(pika::connect_with(options).await?)
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
    let connection = connect(config).await?;
    let channel = fast_channel(&connection).await?;
    let queue = channel.declare_queue(&unique_name("publish")).await?;
    let exchange = channel.default_exchange();

    let timer = Timer::start();
    publish_bodies(&exchange, queue.name(), config.n, config.size).await?;
    let count = wait_for_count(config.n, || message_count(&channel, queue.name())).await?;
    let elapsed = timer.stop();

    delete(&queue).await?;
    connection.close().await?;
    Ok(Measured::counted(elapsed, config.n, count, None))
}

/// Publishes the bodies `0..N` (from `bodies`) to `queue` on a channel in
/// confirm mode, at most `window` unconfirmed at a time; returns how many
/// were acked.
async fn publish_confirmed(
    exchange: &Exchange,
    queue: &str,
    n: u64,
    bodies: &Bodies,
    window: usize,
) -> Result<u64> {
    let mut pending: VecDeque<PendingConfirmation> = VecDeque::with_capacity(window);
    let mut acked = 0u64;
    for seq in 0..n {
        if pending.len() == window {
            let oldest = pending.pop_front().expect("the window is full");
            acked += u64::from(oldest.await?.is_ack());
        }
        let message = Message::new(bodies.body(seq));
        pending.push_back(
            exchange
                .publish(message, queue)
                .mandatory(false)
                .send()
                .await?,
        );
    }
    for confirmation in pending {
        acked += u64::from(confirmation.await?.is_ack());
    }
    Ok(acked)
}

async fn publish_confirm(config: &ScenarioConfig) -> Result<Measured> {
    let connection = connect(config).await?;
    let channel = connection.channel().await?;
    let queue = channel
        .declare_queue(&unique_name("publish-confirm"))
        .await?;
    let exchange = channel.default_exchange();

    let timer = Timer::start();
    let acked = publish_confirmed(
        &exchange,
        queue.name(),
        config.n,
        &Bodies::Fresh(config.size),
        CONFIRM_WINDOW,
    )
    .await?;
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
    let connection = connect(config).await?;
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
    let server_connection = connect(config).await?;
    let server_channel = fast_channel(&server_connection).await?;
    let requests = server_channel.declare_queue(&unique_name("rpc")).await?;
    let server = tokio::spawn(rpc_server(requests.clone()));

    let connection = connect(config).await?;
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

/// Opens a channel without confirms whose consumers get `prefetch`.
async fn consumer_channel(connection: &Connection, prefetch: u16) -> Result<Channel> {
    let channel = fast_channel(connection).await?;
    channel.set_qos().prefetch_count(prefetch).await?;
    Ok(channel)
}

/// Declares `w` queues named after `what` on `channel`.
async fn declare_queues(channel: &Channel, what: &str, w: u32) -> Result<Vec<Queue>> {
    let mut queues = Vec::with_capacity(w as usize);
    for _ in 0..w {
        queues.push(channel.declare_queue(&unique_name(what)).await?);
    }
    Ok(queues)
}

async fn delete_all(queues: &[Queue]) -> Result<()> {
    for queue in queues {
        delete(queue).await?;
    }
    Ok(())
}

/// Publishes the messages of `share` (`seq % w == i` of `0..n`) to
/// `routing_key` through `exchange`, without confirms.
async fn publish_share(
    exchange: Exchange,
    routing_key: String,
    share: Share,
    size: usize,
) -> Result<()> {
    for seq in share.seqs() {
        let _ = exchange
            .publish(Message::new(body::encode(seq, size)), &routing_key)
            .mandatory(false)
            .await?;
    }
    Ok(())
}

/// A consumer's task: acks each delivery and records it, until its share
/// arrived or nothing came for [`IDLE_TIMEOUT`]. Returns the iterator
/// too, so that cancelling the consumer happens after the timed region.
type ConsumerTask = JoinHandle<Result<(SeqTracker, QueueIterator)>>;

fn spawn_consumer(mut messages: QueueIterator, share: Share) -> ConsumerTask {
    tokio::spawn(async move {
        let mut seen = share.tracker();
        while !seen.is_complete() {
            let Ok(Some(message)) = timeout(IDLE_TIMEOUT, messages.next()).await else {
                break;
            };
            let message = message?;
            seen.record(share.local(body::seq(message.body())));
            message.ack(false)?;
        }
        Ok((seen, messages))
    })
}

/// Waits for every consumer; returns lost and duplicated messages summed,
/// and the iterators to drop after the timed region.
async fn join_consumers(tasks: Vec<ConsumerTask>) -> Result<(u64, u64, Vec<QueueIterator>)> {
    let (mut lost, mut dup) = (0, 0);
    let mut iterators = Vec::with_capacity(tasks.len());
    for task in tasks {
        let (seen, messages) = task.await??;
        lost += seen.lost();
        dup += seen.dup();
        iterators.push(messages);
    }
    Ok((lost, dup, iterators))
}

async fn join_all(tasks: Vec<JoinHandle<Result<()>>>) -> Result<()> {
    for task in tasks {
        task.await??;
    }
    Ok(())
}

async fn channels(config: &ScenarioConfig) -> Result<Measured> {
    let w = config.width();
    let connection = connect(config).await?;

    let setup = SetupTimer::start();
    let mut channels = Vec::with_capacity(w as usize);
    for _ in 0..w {
        channels.push(fast_channel(&connection).await?);
    }
    let setup = setup.stop();
    let control = &channels[0];
    let queue = control.declare_queue(&unique_name("channels")).await?;
    let exchanges: Vec<Exchange> = channels.iter().map(Channel::default_exchange).collect();

    let timer = Timer::start();
    for seq in 0..config.n {
        let _ = exchanges[(seq % u64::from(w)) as usize]
            .publish(Message::new(body::encode(seq, config.size)), queue.name())
            .mandatory(false)
            .await?;
    }
    let count = wait_for_count(config.n, || message_count(control, queue.name())).await?;
    let elapsed = timer.stop();

    delete(&queue).await?;
    connection.close().await?;
    Ok(Measured::counted(elapsed, config.n, count, Some(setup)))
}

async fn consumers(config: &ScenarioConfig) -> Result<Measured> {
    let w = config.width();
    let connection = connect(config).await?;
    let publisher = fast_channel(&connection).await?;
    let channel = consumer_channel(&connection, PREFETCH).await?;
    let queues = declare_queues(&channel, "consumers", w).await?;

    let setup = SetupTimer::start();
    let mut iterators = Vec::with_capacity(queues.len());
    for queue in &queues {
        iterators.push(queue.iterator().await?);
    }
    let setup = setup.stop();

    let exchange = publisher.default_exchange();
    let timer = Timer::start();
    let tasks: Vec<ConsumerTask> = iterators
        .into_iter()
        .zip(0..)
        .map(|(messages, i)| spawn_consumer(messages, Share::new(config.n, w, i)))
        .collect();
    for seq in 0..config.n {
        let queue = &queues[(seq % u64::from(w)) as usize];
        let _ = exchange
            .publish(Message::new(body::encode(seq, config.size)), queue.name())
            .mandatory(false)
            .await?;
    }
    let (lost, dup, iterators) = join_consumers(tasks).await?;
    let elapsed = timer.stop();

    drop(iterators);
    delete_all(&queues).await?;
    connection.close().await?;
    Ok(Measured {
        elapsed,
        lost,
        dup,
        setup: Some(setup),
        ..Measured::default()
    })
}

/// One connection of `connections`: its publishing channel, its queue and
/// its consumer.
struct Peer {
    connection: Connection,
    exchange: Exchange,
    queue: Queue,
    messages: QueueIterator,
}

impl Peer {
    async fn open(config: &ScenarioConfig) -> Result<Peer> {
        let connection = connect(config).await?;
        let exchange = fast_channel(&connection).await?.default_exchange();
        let channel = consumer_channel(&connection, PREFETCH).await?;
        let queue = channel.declare_queue(&unique_name("connections")).await?;
        let messages = queue.iterator().await?;
        Ok(Peer {
            connection,
            exchange,
            queue,
            messages,
        })
    }
}

async fn connections(config: &ScenarioConfig) -> Result<Measured> {
    let w = config.width();
    let setup = SetupTimer::start();
    let mut peers = Vec::with_capacity(w as usize);
    for _ in 0..w {
        peers.push(Peer::open(config).await?);
    }
    let setup = setup.stop();

    let mut closing = Vec::with_capacity(peers.len());
    let mut publishers = Vec::with_capacity(peers.len());
    let mut consumers = Vec::with_capacity(peers.len());
    let timer = Timer::start();
    for (peer, i) in peers.into_iter().zip(0..) {
        let share = Share::new(config.n, w, i);
        let routing_key = peer.queue.name().to_string();
        publishers.push(tokio::spawn(publish_share(
            peer.exchange,
            routing_key,
            share,
            config.size,
        )));
        consumers.push(spawn_consumer(peer.messages, share));
        closing.push((peer.connection, peer.queue));
    }
    join_all(publishers).await?;
    let (lost, dup, iterators) = join_consumers(consumers).await?;
    let elapsed = timer.stop();

    drop(iterators);
    for (connection, queue) in closing {
        delete(&queue).await?;
        connection.close().await?;
    }
    Ok(Measured {
        elapsed,
        lost,
        dup,
        setup: Some(setup),
        ..Measured::default()
    })
}

async fn fanout(config: &ScenarioConfig) -> Result<Measured> {
    let w = config.width();
    let connection = connect(config).await?;
    let publisher = fast_channel(&connection).await?;
    let exchange = publisher
        .declare_exchange(&unique_name("fanout"))
        .kind(ExchangeType::Fanout)
        .await?;
    let channel = consumer_channel(&connection, PREFETCH).await?;
    let queues = declare_queues(&channel, "fanout", w).await?;
    for queue in &queues {
        queue.bind(&exchange, "").await?;
    }

    let setup = SetupTimer::start();
    let mut iterators = Vec::with_capacity(queues.len());
    for queue in &queues {
        iterators.push(queue.iterator().await?);
    }
    let setup = setup.stop();

    let timer = Timer::start();
    let every = Share::new(config.n, 1, 0);
    let tasks: Vec<ConsumerTask> = iterators
        .into_iter()
        .map(|messages| spawn_consumer(messages, every))
        .collect();
    for seq in 0..config.n {
        let _ = exchange
            .publish(Message::new(body::encode(seq, config.size)), "")
            .mandatory(false)
            .await?;
    }
    let (lost, dup, iterators) = join_consumers(tasks).await?;
    let elapsed = timer.stop();

    drop(iterators);
    delete_all(&queues).await?;
    exchange.delete().await?;
    connection.close().await?;
    Ok(Measured {
        elapsed,
        lost,
        dup,
        setup: Some(setup),
        ..Measured::default()
    })
}

async fn large(config: &ScenarioConfig) -> Result<Measured> {
    let connection = connect(config).await?;
    let publisher = connection.channel().await?;
    let channel = consumer_channel(&connection, LARGE_PREFETCH).await?;
    let queue = channel.declare_queue(&unique_name("large")).await?;
    let messages = queue.iterator().await?;
    let exchange = publisher.default_exchange();

    let timer = Timer::start();
    let consumer = spawn_consumer(messages, Share::new(config.n, 1, 0));
    let acked = publish_confirmed(
        &exchange,
        queue.name(),
        config.n,
        &Bodies::recycled(config.size),
        LARGE_WINDOW,
    )
    .await?;
    let (seen, messages) = consumer.await??;
    let elapsed = timer.stop();

    drop(messages);
    delete(&queue).await?;
    connection.close().await?;
    Ok(Measured {
        elapsed,
        lost: config.n - seen.distinct().min(acked),
        dup: seen.dup(),
        ..Measured::default()
    })
}

async fn parallel(config: &ScenarioConfig) -> Result<Measured> {
    let w = config.width();
    let connection = connect(config).await?;
    let mut exchanges = Vec::with_capacity(w as usize);
    let mut queues = Vec::with_capacity(w as usize);
    let mut iterators = Vec::with_capacity(w as usize);
    let setup = SetupTimer::start();
    for _ in 0..w {
        exchanges.push(fast_channel(&connection).await?.default_exchange());
        let channel = consumer_channel(&connection, PREFETCH).await?;
        let queue = channel.declare_queue(&unique_name("parallel")).await?;
        iterators.push(queue.iterator().await?);
        queues.push(queue);
    }
    let setup = setup.stop();

    let timer = Timer::start();
    let mut consumers = Vec::with_capacity(queues.len());
    let mut publishers = Vec::with_capacity(queues.len());
    for (((exchange, queue), messages), i) in
        exchanges.into_iter().zip(&queues).zip(iterators).zip(0..)
    {
        let share = Share::new(config.n, w, i);
        consumers.push(spawn_consumer(messages, share));
        publishers.push(tokio::spawn(publish_share(
            exchange,
            queue.name().to_string(),
            share,
            config.size,
        )));
    }
    join_all(publishers).await?;
    let (lost, dup, iterators) = join_consumers(consumers).await?;
    let elapsed = timer.stop();

    drop(iterators);
    delete_all(&queues).await?;
    connection.close().await?;
    Ok(Measured {
        elapsed,
        lost,
        dup,
        setup: Some(setup),
        ..Measured::default()
    })
}
