//! The scenarios of scale for the raw client. Each connection is driven
//! by one loop that multiplexes all its channels and consumers: it
//! copies publishes from their templates into batches of about
//! [`BATCH`] bytes, and between two batches takes whatever the socket
//! holds without waiting, acking each complete delivery (`multiple=false`)
//! into the next write. Consumer tags are the consumers' indexes, so that
//! a delivery names the queue it came from.

use amqp_wire::{
    encode_method, encode_publish, BasicAck, BasicConsume, BasicProperties, BasicPublish, BasicQos,
    ConfirmSelect, ExchangeDeclare, ExchangeDelete, Frame, Method, QueueBind, ShortString,
};
use bytes::BytesMut;
use tokio::time::timeout;

use super::conn::{RawConn, CHANNEL};
use super::{declare, delete, wait_for_count, Template, BATCH};
use crate::body::{self, Bodies};
use crate::rusage::Timer;
use crate::scenario::{
    share, unique_name, Measured, ScenarioConfig, SetupTimer, IDLE_TIMEOUT, LARGE_PREFETCH,
    LARGE_WINDOW, PREFETCH,
};
use crate::tracking::{ConfirmTracker, SeqTracker};
use crate::Result;

/// The channel the consumers of `consumers`, `connections`, `fanout` and
/// `large` share ([`CHANNEL`] declares and publishes).
const CONSUMER_CHANNEL: u16 = 2;

/// What the consumers of a run received: one [`SeqTracker`] per
/// consumer, whose tag is its index.
#[derive(Debug)]
struct Seen {
    /// Per consumer: the queue `i` of `w` it reads, and its tracker.
    consumers: Vec<(u64, SeqTracker)>,
    w: u64,
    /// Every queue gets all of `0..n` (a fanout), not its share.
    fanout: bool,
    expected: u64,
    distinct: u64,
    /// Deliveries to a consumer tag this run did not make.
    stray: u64,
}

impl Seen {
    /// Consumer `i` of `w` reads queue `i`: the messages `seq % w == i`.
    fn split(n: u64, w: u32) -> Seen {
        Seen::of((0..w).map(|i| (i, share(n, w, i))).collect(), w, false)
    }

    /// One consumer (tag 0) reads queue `i` of `w`.
    fn one(n: u64, w: u32, i: u32) -> Seen {
        Seen::of(vec![(i, share(n, w, i))], w, false)
    }

    /// Consumer `i` of `w` reads a queue that gets every message of `0..n`.
    fn fanout(n: u64, w: u32) -> Seen {
        Seen::of((0..w).map(|i| (i, n)).collect(), w, true)
    }

    /// Trackers for `(queue, messages)` pairs, consumer `k` being pair `k`.
    fn of(queues: Vec<(u32, u64)>, w: u32, fanout: bool) -> Seen {
        Seen {
            expected: queues.iter().map(|&(_, len)| len).sum(),
            consumers: queues
                .into_iter()
                .map(|(i, len)| (u64::from(i), SeqTracker::new(len)))
                .collect(),
            w: u64::from(w.max(1)),
            fanout,
            distinct: 0,
            stray: 0,
        }
    }

    /// Records a delivery of `seq` to consumer `consumer`; a number that
    /// is not of its queue counts as a duplicate.
    fn record(&mut self, consumer: u32, seq: Option<u64>) {
        let Some((i, tracker)) = self.consumers.get_mut(consumer as usize) else {
            self.stray += 1;
            return;
        };
        let local = if self.fanout {
            seq
        } else {
            let (w, i) = (self.w, *i);
            seq.filter(|s| s % w == i).map(|s| s / w)
        };
        if tracker.record(local) {
            self.distinct += 1;
        }
    }

    /// True once every consumer received all of its messages.
    fn is_complete(&self) -> bool {
        self.distinct == self.expected
    }

    /// Distinct messages received, over all consumers.
    fn distinct(&self) -> u64 {
        self.distinct
    }

    /// Messages that did not arrive.
    fn lost(&self) -> u64 {
        self.expected - self.distinct
    }

    /// Messages that arrived twice, at the wrong consumer, or made no sense.
    fn dup(&self) -> u64 {
        self.stray + self.consumers.iter().map(|(_, t)| t.dup()).sum::<u64>()
    }
}

/// A delivery whose body is still arriving on one channel.
#[derive(Debug, Clone, Copy)]
struct Partial {
    tag: u64,
    consumer: u32,
    /// The sequence number, from the first body frame.
    seq: Option<u64>,
    /// Body bytes still to come; `None` before the content header.
    remaining: Option<u64>,
}

/// The deliveries in progress, one per channel at most (the content
/// frames of one channel come in order; channels interleave). Bodies are
/// not assembled: the sequence number comes from the first body frame and
/// the others are only counted.
#[derive(Debug, Default)]
struct Deliveries {
    partial: Vec<Option<Partial>>,
}

impl Deliveries {
    /// Decodes every whole frame in the read buffer: each complete delivery
    /// is recorded in `seen` and acked on its channel (into the write
    /// buffer); publisher confirms go to `confirms`.
    fn drain(
        &mut self,
        conn: &mut RawConn,
        seen: &mut Seen,
        mut confirms: Option<&mut ConfirmTracker>,
    ) -> Result<()> {
        while let Some(frame) = conn.next_frame()? {
            let (channel, done) = match frame {
                Frame::Method {
                    channel,
                    method: Method::BasicDeliver(deliver),
                } => {
                    *self.slot(channel) = Some(Partial {
                        tag: deliver.delivery_tag,
                        consumer: deliver.consumer_tag.as_str().parse().unwrap_or(u32::MAX),
                        seq: None,
                        remaining: None,
                    });
                    continue;
                }
                Frame::Method {
                    method: Method::BasicAck(ack),
                    ..
                } => {
                    if let Some(confirms) = confirms.as_deref_mut() {
                        confirms.settle(ack.delivery_tag, ack.multiple, true);
                    }
                    continue;
                }
                Frame::Method {
                    method: Method::BasicNack(nack),
                    ..
                } => {
                    if let Some(confirms) = confirms.as_deref_mut() {
                        confirms.settle(nack.delivery_tag, nack.multiple, false);
                    }
                    continue;
                }
                Frame::Header { channel, header } => {
                    let Some(partial) = self.slot(channel) else {
                        continue;
                    };
                    partial.remaining = Some(header.body_size);
                    (channel, header.body_size == 0)
                }
                Frame::Body { channel, payload } => {
                    let Some(partial) = self.slot(channel) else {
                        continue;
                    };
                    let Some(remaining) = partial.remaining.as_mut() else {
                        continue;
                    };
                    if partial.seq.is_none() {
                        partial.seq = body::seq(&payload);
                    }
                    *remaining = remaining.saturating_sub(payload.len() as u64);
                    (channel, *remaining == 0)
                }
                _ => continue,
            };
            if !done {
                continue;
            }
            let Some(partial) = self.slot(channel).take() else {
                continue;
            };
            seen.record(partial.consumer, partial.seq);
            let ack = BasicAck {
                delivery_tag: partial.tag,
                multiple: false,
            };
            encode_method(conn.write_buf(), channel, &ack.into());
        }
        Ok(())
    }

    /// The delivery in progress on `channel`.
    fn slot(&mut self, channel: u16) -> &mut Option<Partial> {
        let index = usize::from(channel);
        if self.partial.len() <= index {
            self.partial.resize(index + 1, None);
        }
        &mut self.partial[index]
    }
}

/// Writes out the write buffer [`BATCH`] bytes at a time, reading
/// meanwhile and handling what arrived after each piece (acks it adds
/// go out too); an error if the broker takes nothing for
/// [`IDLE_TIMEOUT`].
async fn flush(
    conn: &mut RawConn,
    deliveries: &mut Deliveries,
    seen: &mut Seen,
    mut confirms: Option<&mut ConfirmTracker>,
) -> Result<()> {
    while !conn.write_buf().is_empty() {
        let Ok(flushed) = timeout(IDLE_TIMEOUT, conn.flush_reading(BATCH)).await else {
            return Err(format!(
                "the broker read none of our data for {IDLE_TIMEOUT:?} (a resource alarm \
                 blocking publishers?)"
            )
            .into());
        };
        flushed?;
        deliveries.drain(conn, seen, confirms.as_deref_mut())?;
    }
    Ok(())
}

/// Publishes the messages `seqs` (each appended by `append`, at most
/// `max_len` bytes) in batches of about [`BATCH`] bytes while receiving
/// and acking the deliveries into `seen`, until `seen` is complete or,
/// once everything is published, nothing arrives for [`IDLE_TIMEOUT`].
async fn pump(
    conn: &mut RawConn,
    mut seqs: impl Iterator<Item = u64>,
    max_len: usize,
    mut append: impl FnMut(&mut BytesMut, u64),
    seen: &mut Seen,
) -> Result<()> {
    let mut deliveries = Deliveries::default();
    let mut publishing = true;
    loop {
        deliveries.drain(conn, seen, None)?;
        if seen.is_complete() {
            return flush(conn, &mut deliveries, seen, None).await;
        }
        if publishing {
            loop {
                let Some(seq) = seqs.next() else {
                    publishing = false;
                    break;
                };
                append(conn.write_buf(), seq);
                if conn.write_buf().len() + max_len > BATCH {
                    break;
                }
            }
            flush(conn, &mut deliveries, seen, None).await?;
            conn.try_fill()?;
        } else {
            flush(conn, &mut deliveries, seen, None).await?;
            if timeout(IDLE_TIMEOUT, conn.fill()).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// Opens `channel` on `conn`, saying which of how many failed and the
/// broker's channel_max.
async fn open_channel(conn: &mut RawConn, channel: u16, what: &str) -> Result<()> {
    conn.open_channel(channel).await.map_err(|e| {
        format!(
            "opening channel {channel} ({what}; the broker's channel_max is {}): {e}",
            conn.channel_max()
        )
        .into()
    })
}

/// Sets the prefetch of each consumer started later on `channel`.
async fn qos(conn: &mut RawConn, channel: u16, prefetch: u16) -> Result<()> {
    conn.call_on(
        channel,
        BasicQos {
            prefetch_count: prefetch,
            global: false,
            ..Default::default()
        },
    )
    .await?;
    Ok(())
}

/// Starts consumer `index` (its tag) on `queue` over `channel`, with acks.
async fn consume(conn: &mut RawConn, channel: u16, queue: &ShortString, index: u32) -> Result<()> {
    match conn
        .call_on(
            channel,
            BasicConsume {
                queue: queue.clone(),
                consumer_tag: ShortString::try_from(index.to_string())?,
                ..Default::default()
            },
        )
        .await?
    {
        Method::BasicConsumeOk(_) => Ok(()),
        other => Err(format!("expected basic.consume-ok, got {other:?}").into()),
    }
}

/// Declares `w` queues named after `what`, one after another.
async fn declare_queues(conn: &mut RawConn, what: &str, w: u32) -> Result<Vec<ShortString>> {
    let mut queues = Vec::with_capacity(w as usize);
    for _ in 0..w {
        let queue = ShortString::try_from(unique_name(what))?;
        declare(conn, &queue).await?;
        queues.push(queue);
    }
    Ok(queues)
}

/// Deletes `queues`.
async fn delete_all(conn: &mut RawConn, queues: &[ShortString]) -> Result<()> {
    for queue in queues {
        delete(conn, queue).await?;
    }
    Ok(())
}

/// A publish template per queue (default exchange), on [`CHANNEL`].
fn templates(conn: &RawConn, queues: &[ShortString], size: usize) -> Result<Vec<Template>> {
    queues
        .iter()
        .map(|queue| Template::new(queue, size, conn.frame_max()))
        .collect()
}

/// The longest of `templates`.
fn max_len(templates: &[Template]) -> usize {
    templates.iter().map(Template::len).max().unwrap_or(0)
}

/// Checks that channels `1..=needed` fit in the broker's channel_max.
fn check_channels(conn: &RawConn, needed: u32, what: &str) -> Result<()> {
    let max = conn.channel_max();
    if max != 0 && needed > u32::from(max) {
        return Err(format!(
            "{what} needs channels 1..={needed} on one connection, but the broker's \
             channel_max is {max}"
        )
        .into());
    }
    Ok(())
}

/// `channels`: W channels (1..=W, [`CHANNEL`] being the first) opened
/// one after another (setup); message `seq` goes out on channel
/// `seq % W + 1` to one queue, until a passive declare counts N.
pub(super) async fn channels(config: &ScenarioConfig) -> Result<Measured> {
    let w = config.width();
    let mut conn = RawConn::connect(&config.url).await?;
    if w > u32::from(u16::MAX) {
        return Err(format!("{w} channels do not fit in AMQP's 16-bit channel numbers").into());
    }

    let setup = SetupTimer::start();
    for channel in 1..=w as u16 {
        open_channel(&mut conn, channel, &format!("{channel} of {w}")).await?;
    }
    let setup = setup.stop();
    let queue = ShortString::try_from(unique_name("channels"))?;
    declare(&mut conn, &queue).await?;
    let template = Template::new(&queue, config.size, conn.frame_max())?;

    let timer = Timer::start();
    for seq in 0..config.n {
        if conn.write_buf().len() + template.len() > BATCH {
            conn.flush().await?;
        }
        let channel = (seq % u64::from(w)) as u16 + 1;
        template.append_on(conn.write_buf(), seq, channel);
    }
    conn.flush().await?;
    let count = wait_for_count(&mut conn, &queue, config.n).await?;
    let elapsed = timer.stop();

    delete(&mut conn, &queue).await?;
    conn.close().await?;
    Ok(Measured::counted(elapsed, config.n, count, Some(setup)))
}

/// `consumers`: W queues (declared first); setup is one channel with a
/// consumer per queue; [`CHANNEL`] publishes message `seq` to queue
/// `seq % W` while the same loop acks the deliveries, until every
/// delivery arrived.
pub(super) async fn consumers(config: &ScenarioConfig) -> Result<Measured> {
    let w = config.width();
    let mut conn = RawConn::open(&config.url).await?;
    let queues = declare_queues(&mut conn, "consumers", w).await?;

    let setup = SetupTimer::start();
    open_channel(&mut conn, CONSUMER_CHANNEL, "the consumers'").await?;
    qos(&mut conn, CONSUMER_CHANNEL, PREFETCH).await?;
    for (queue, i) in queues.iter().zip(0..) {
        consume(&mut conn, CONSUMER_CHANNEL, queue, i)
            .await
            .map_err(|e| format!("starting consumer {} of {w}: {e}", i + 1))?;
    }
    let setup = setup.stop();
    let templates = templates(&conn, &queues, config.size)?;

    let mut seen = Seen::split(config.n, w);
    let timer = Timer::start();
    pump(
        &mut conn,
        0..config.n,
        max_len(&templates),
        |out, seq| templates[(seq % u64::from(w)) as usize].append(out, seq),
        &mut seen,
    )
    .await?;
    let elapsed = timer.stop();

    delete_all(&mut conn, &queues).await?;
    conn.close().await?;
    Ok(Measured {
        elapsed,
        latency_us: None,
        lost: seen.lost(),
        dup: seen.dup(),
        setup: Some(setup),
    })
}

/// One connection of `connections`: its queue is `i` of `w`.
#[derive(Debug)]
struct Peer {
    conn: RawConn,
    queue: ShortString,
    i: u32,
}

impl Peer {
    /// Connects, declares the queue, and starts its consumer on a second
    /// channel.
    async fn open(url: &str, i: u32) -> Result<Peer> {
        let mut conn = RawConn::open(url).await?;
        let queue = ShortString::try_from(unique_name("connections"))?;
        declare(&mut conn, &queue).await?;
        open_channel(&mut conn, CONSUMER_CHANNEL, "the consumer's").await?;
        qos(&mut conn, CONSUMER_CHANNEL, PREFETCH).await?;
        consume(&mut conn, CONSUMER_CHANNEL, &queue, 0).await?;
        Ok(Peer { conn, queue, i })
    }

    /// The template of this connection's publishes.
    fn template(&self, size: usize) -> Result<Template> {
        Template::new(&self.queue, size, self.conn.frame_max())
    }

    /// Publishes this connection's share of `0..n` to its queue and
    /// consumes it, in one loop; gives the connection back with what
    /// arrived.
    async fn run(mut self, template: Template, n: u64, w: u32) -> Result<(Peer, Seen)> {
        let mut seen = Seen::one(n, w, self.i);
        let seqs = (u64::from(self.i)..n).step_by(w as usize);
        pump(
            &mut self.conn,
            seqs,
            template.len(),
            |out, seq| template.append(out, seq),
            &mut seen,
        )
        .await?;
        Ok((self, seen))
    }
}

/// `connections`: W connections opened one after another (setup), each
/// with a queue and a consumer on a second channel; then one task per
/// connection publishes its share (`seq % W`) to its queue and consumes
/// it, all at once, until every delivery arrived.
pub(super) async fn connections(config: &ScenarioConfig) -> Result<Measured> {
    let w = config.width();

    let setup = SetupTimer::start();
    let mut peers = Vec::with_capacity(w as usize);
    for i in 0..w {
        let peer = Peer::open(&config.url, i)
            .await
            .map_err(|e| format!("opening connection {} of {w}: {e}", i + 1))?;
        peers.push(peer);
    }
    let setup = setup.stop();
    let mut ready = Vec::with_capacity(peers.len());
    for peer in peers {
        let template = peer.template(config.size)?;
        ready.push((peer, template));
    }

    let n = config.n;
    let timer = Timer::start();
    let tasks: Vec<_> = ready
        .into_iter()
        .map(|(peer, template)| tokio::spawn(peer.run(template, n, w)))
        .collect();
    let mut done = Vec::with_capacity(tasks.len());
    let mut failed = None;
    for (task, i) in tasks.into_iter().zip(1..) {
        match task.await {
            Ok(Ok(peer)) => done.push(peer),
            Ok(Err(e)) => failed = failed.or(Some(format!("connection {i} of {w}: {e}"))),
            Err(e) => failed = failed.or(Some(format!("connection {i} of {w}: {e}"))),
        }
    }
    let elapsed = timer.stop();
    if let Some(failed) = failed {
        return Err(failed.into());
    }

    let (mut lost, mut dup) = (0, 0);
    for (mut peer, seen) in done {
        lost += seen.lost();
        dup += seen.dup();
        delete(&mut peer.conn, &peer.queue).await?;
        peer.conn.close().await?;
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
/// is one channel with a consumer per queue; [`CHANNEL`] publishes N
/// messages to the exchange while the same loop acks the deliveries, until
/// every queue received all N.
pub(super) async fn fanout(config: &ScenarioConfig) -> Result<Measured> {
    let w = config.width();
    let mut conn = RawConn::open(&config.url).await?;
    let exchange = ShortString::try_from(unique_name("fanout"))?;
    conn.call(ExchangeDeclare {
        exchange: exchange.clone(),
        kind: ShortString::from_static("fanout"),
        ..Default::default()
    })
    .await?;
    let queues = declare_queues(&mut conn, "fanout", w).await?;
    for queue in &queues {
        conn.call(QueueBind {
            queue: queue.clone(),
            exchange: exchange.clone(),
            ..Default::default()
        })
        .await?;
    }

    let setup = SetupTimer::start();
    open_channel(&mut conn, CONSUMER_CHANNEL, "the consumers'").await?;
    qos(&mut conn, CONSUMER_CHANNEL, PREFETCH).await?;
    for (queue, i) in queues.iter().zip(0..) {
        consume(&mut conn, CONSUMER_CHANNEL, queue, i)
            .await
            .map_err(|e| format!("starting consumer {} of {w}: {e}", i + 1))?;
    }
    let setup = setup.stop();
    let template = Template::to(
        &exchange,
        &ShortString::default(),
        config.size,
        conn.frame_max(),
    )?;

    let mut seen = Seen::fanout(config.n, w);
    let timer = Timer::start();
    pump(
        &mut conn,
        0..config.n,
        template.len(),
        |out, seq| template.append(out, seq),
        &mut seen,
    )
    .await?;
    let elapsed = timer.stop();

    delete_all(&mut conn, &queues).await?;
    conn.call(ExchangeDelete {
        exchange,
        ..Default::default()
    })
    .await?;
    conn.close().await?;
    Ok(Measured {
        elapsed,
        latency_us: None,
        lost: seen.lost(),
        dup: seen.dup(),
        setup: Some(setup),
    })
}

/// `large`: a consumer (prefetch [`LARGE_PREFETCH`], its own channel) is
/// running (setup) while [`CHANNEL`], in confirm mode, publishes N bodies
/// of `config.size`, each written (into a recycled buffer) and encoded
/// when its turn comes, at most [`LARGE_WINDOW`] unconfirmed, until all N
/// are confirmed and consumed.
pub(super) async fn large(config: &ScenarioConfig) -> Result<Measured> {
    let mut conn = RawConn::open(&config.url).await?;
    conn.call(ConfirmSelect { nowait: false }).await?;
    let queue = ShortString::try_from(unique_name("large"))?;
    declare(&mut conn, &queue).await?;

    let setup = SetupTimer::start();
    open_channel(&mut conn, CONSUMER_CHANNEL, "the consumer's").await?;
    qos(&mut conn, CONSUMER_CHANNEL, LARGE_PREFETCH).await?;
    consume(&mut conn, CONSUMER_CHANNEL, &queue, 0).await?;
    let setup = setup.stop();

    let publish = BasicPublish {
        routing_key: queue.clone(),
        ..Default::default()
    };
    let properties = BasicProperties::default();
    let frame_max = conn.frame_max();
    let mut seen = Seen::split(config.n, 1);
    let mut confirms = ConfirmTracker::default();
    let mut deliveries = Deliveries::default();
    let mut seq = 0;
    let bodies = Bodies::recycled(config.size);
    let timer = Timer::start();
    loop {
        deliveries.drain(&mut conn, &mut seen, Some(&mut confirms))?;
        if confirms.acked() + confirms.nacked() >= config.n && seen.is_complete() {
            flush(&mut conn, &mut deliveries, &mut seen, Some(&mut confirms)).await?;
            break;
        }
        if seq < config.n && confirms.in_flight() < LARGE_WINDOW as u64 {
            let body = bodies.body(seq);
            encode_publish(
                conn.write_buf(),
                CHANNEL,
                &publish,
                &properties,
                &body,
                frame_max,
            )?;
            confirms.published();
            seq += 1;
            flush(&mut conn, &mut deliveries, &mut seen, Some(&mut confirms)).await?;
            conn.try_fill()?;
            continue;
        }
        flush(&mut conn, &mut deliveries, &mut seen, Some(&mut confirms)).await?;
        if timeout(IDLE_TIMEOUT, conn.fill()).await.is_err() {
            break;
        }
    }
    let elapsed = timer.stop();

    delete(&mut conn, &queue).await?;
    conn.close().await?;
    Ok(Measured {
        elapsed,
        latency_us: None,
        lost: config.n - seen.distinct().min(confirms.acked()),
        dup: seen.dup(),
        setup: Some(setup),
    })
}

/// `parallel`: W queues (declared first); setup opens W publishing
/// channels and W consumer channels with a consumer each (channels
/// `2 + 2i` and `3 + 2i` for queue `i`). The raw client has no tasks or
/// threads to spread the work over: one loop on one connection publishes
/// message `seq` on producer channel `seq % W` to queue `seq % W` while
/// acking every consumer's deliveries, until every delivery arrived.
/// Under `--rt mt` it still runs on one worker at a time.
pub(super) async fn parallel(config: &ScenarioConfig) -> Result<Measured> {
    let w = config.width();
    let mut conn = RawConn::open(&config.url).await?;
    check_channels(&conn, 2 * w + 1, "parallel")?;
    let queues = declare_queues(&mut conn, "parallel", w).await?;
    let producer = |i: u64| (2 + 2 * i) as u16;

    let setup = SetupTimer::start();
    for (queue, i) in queues.iter().zip(0..) {
        open_channel(&mut conn, producer(u64::from(i)), "a producer's").await?;
        let channel = producer(u64::from(i)) + 1;
        open_channel(&mut conn, channel, "a consumer's").await?;
        qos(&mut conn, channel, PREFETCH).await?;
        consume(&mut conn, channel, queue, i).await?;
    }
    let setup = setup.stop();
    let templates = templates(&conn, &queues, config.size)?;

    let mut seen = Seen::split(config.n, w);
    let timer = Timer::start();
    pump(
        &mut conn,
        0..config.n,
        max_len(&templates),
        |out, seq| {
            let i = seq % u64::from(w);
            templates[i as usize].append_on(out, seq, producer(i));
        },
        &mut seen,
    )
    .await?;
    let elapsed = timer.stop();

    delete_all(&mut conn, &queues).await?;
    conn.close().await?;
    Ok(Measured {
        elapsed,
        latency_us: None,
        lost: seen.lost(),
        dup: seen.dup(),
        setup: Some(setup),
    })
}
