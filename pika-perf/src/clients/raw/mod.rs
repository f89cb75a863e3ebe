//! `--client raw`: the broker's limit. A minimal client on amqp-wire
//! over a bare socket ([`conn::RawConn`]): publishes are encoded once
//! into a template and copied into 256 KiB batches with only the
//! sequence number patched, and acks are written once per read buffer.
//! This is what the broker can do when the client costs almost nothing.
//! The scenarios of scale are in `scale.rs`: one loop per connection
//! multiplexes all its channels and consumers.

pub mod conn;
mod scale;

use std::time::Instant;

use amqp_wire::{
    encode_method, encode_publish, publish_len, BasicAck, BasicConsume, BasicProperties,
    BasicPublish, BasicQos, BodyAssembler, ConfirmSelect, Frame, Method, QueueDeclare, QueueDelete,
    ShortString, FRAME_HEADER_LEN, FRAME_OVERHEAD,
};
use bytes::BytesMut;
use tokio::sync::oneshot;
use tokio::time::timeout;

use self::conn::{RawConn, CHANNEL};
use crate::body;
use crate::rusage::Timer;
use crate::scenario::{
    latency_histogram, unique_name, CountWaiter, Measured, Scenario, ScenarioConfig,
    CONFIRM_WINDOW, IDLE_TIMEOUT, PREFETCH,
};
use crate::tracking::{ConfirmTracker, SeqTracker};
use crate::Result;

/// Bytes of publishes written per socket write.
pub const BATCH: usize = 256 * 1024;

/// Largest body the rpc scenario's peers accept.
const MAX_BODY: u64 = 64 << 20;

/// Runs `config.scenario` with the raw client.
pub async fn run(config: &ScenarioConfig) -> Result<Measured> {
    match config.scenario {
        Scenario::Publish => publish(config).await,
        Scenario::PublishConfirm => publish_confirm(config).await,
        Scenario::Consume => consume(config).await,
        Scenario::Rpc => rpc(config).await,
        Scenario::Channels => scale::channels(config).await,
        Scenario::Consumers => scale::consumers(config).await,
        Scenario::Connections => scale::connections(config).await,
        Scenario::Fanout => scale::fanout(config).await,
        Scenario::Large => scale::large(config).await,
        Scenario::Parallel => scale::parallel(config).await,
    }
}

/// A publish encoded once: copies of it differ only in the sequence
/// number at the start of the body (and, where asked, the channel).
struct Template {
    bytes: BytesMut,
    seq_at: usize,
    /// Where each of its frames starts (for patching the channel).
    frames: Vec<usize>,
}

impl Template {
    /// A publish of `size` bytes to `queue` through the default exchange.
    fn new(queue: &ShortString, size: usize, frame_max: u32) -> Result<Template> {
        Template::to(&ShortString::default(), queue, size, frame_max)
    }

    /// A publish of `size` bytes to `exchange` with `routing_key`.
    fn to(
        exchange: &ShortString,
        routing_key: &ShortString,
        size: usize,
        frame_max: u32,
    ) -> Result<Template> {
        let publish = BasicPublish {
            exchange: exchange.clone(),
            routing_key: routing_key.clone(),
            ..Default::default()
        };
        let properties = BasicProperties::default();
        let mut bytes = BytesMut::new();
        encode_publish(
            &mut bytes,
            CHANNEL,
            &publish,
            &properties,
            &body::encode(0, size),
            frame_max,
        )?;
        // The first body frame follows the method and header frames.
        let seq_at = publish_len(&publish, &properties, 0, frame_max) + FRAME_HEADER_LEN;
        let mut frames = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            frames.push(at);
            let size =
                u32::from_be_bytes([bytes[at + 3], bytes[at + 4], bytes[at + 5], bytes[at + 6]]);
            at += size as usize + FRAME_OVERHEAD;
        }
        Ok(Template {
            bytes,
            seq_at,
            frames,
        })
    }

    /// Bytes of one copy.
    fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Appends a copy carrying `seq` on [`CHANNEL`].
    fn append(&self, out: &mut BytesMut, seq: u64) {
        let start = out.len() + self.seq_at;
        out.extend_from_slice(&self.bytes);
        out[start..start + 8].copy_from_slice(&seq.to_be_bytes());
    }

    /// Appends a copy carrying `seq` on `channel`.
    fn append_on(&self, out: &mut BytesMut, seq: u64, channel: u16) {
        let start = out.len();
        self.append(out, seq);
        for &at in &self.frames {
            out[start + at + 1..start + at + 3].copy_from_slice(&channel.to_be_bytes());
        }
    }
}

/// Declares `queue` (non-durable) on [`CHANNEL`].
async fn declare(conn: &mut RawConn, queue: &ShortString) -> Result<()> {
    conn.call(QueueDeclare {
        queue: queue.clone(),
        ..Default::default()
    })
    .await?;
    Ok(())
}

/// Deletes `queue` on [`CHANNEL`].
async fn delete(conn: &mut RawConn, queue: &ShortString) -> Result<()> {
    conn.call(QueueDelete {
        queue: queue.clone(),
        ..Default::default()
    })
    .await?;
    Ok(())
}

/// Polls with passive declares until `queue` holds `n` messages (or stops
/// moving); returns the last count.
async fn wait_for_count(conn: &mut RawConn, queue: &ShortString, n: u64) -> Result<u64> {
    let mut waiter = CountWaiter::new(n);
    loop {
        let reply = conn
            .call(QueueDeclare {
                queue: queue.clone(),
                passive: true,
                ..Default::default()
            })
            .await?;
        let Method::QueueDeclareOk(ok) = reply else {
            return Err(format!("expected queue.declare-ok, got {reply:?}").into());
        };
        if waiter.update(u64::from(ok.message_count)) {
            return Ok(waiter.last());
        }
        waiter.pause().await;
    }
}

/// The bytes per write: `--write-batch`, else [`BATCH`].
fn batch(config: &ScenarioConfig) -> usize {
    match config.write_batch {
        0 => BATCH,
        bytes => bytes,
    }
}

/// Publishes `0..n` from the template in batches of about `batch` bytes.
async fn publish_batched(
    conn: &mut RawConn,
    template: &Template,
    n: u64,
    batch: usize,
) -> Result<()> {
    for seq in 0..n {
        if conn.write_buf().len() + template.len() > batch {
            conn.flush().await?;
        }
        template.append(conn.write_buf(), seq);
    }
    conn.flush().await
}

/// `publish`: N publishes from the template until a passive declare counts N.
async fn publish(config: &ScenarioConfig) -> Result<Measured> {
    let mut conn = RawConn::open(&config.url).await?;
    let queue = ShortString::try_from(unique_name("publish"))?;
    declare(&mut conn, &queue).await?;
    let template = Template::new(&queue, config.size, conn.frame_max())?;

    let timer = Timer::start();
    publish_batched(&mut conn, &template, config.n, batch(config)).await?;
    let count = wait_for_count(&mut conn, &queue, config.n).await?;
    let elapsed = timer.stop();

    delete(&mut conn, &queue).await?;
    conn.close().await?;
    Ok(Measured::counted(elapsed, config.n, count, None))
}

/// `publish_confirm`: confirm mode, at most [`CONFIRM_WINDOW`]
/// unconfirmed, until all N are confirmed.
async fn publish_confirm(config: &ScenarioConfig) -> Result<Measured> {
    let mut conn = RawConn::open(&config.url).await?;
    let queue = ShortString::try_from(unique_name("publish-confirm"))?;
    declare(&mut conn, &queue).await?;
    conn.call(ConfirmSelect { nowait: false }).await?;
    let template = Template::new(&queue, config.size, conn.frame_max())?;

    let timer = Timer::start();
    let mut confirms = ConfirmTracker::default();
    let mut seq = 0;
    while confirms.acked() + confirms.nacked() < config.n {
        while seq < config.n && confirms.in_flight() < CONFIRM_WINDOW as u64 {
            if conn.write_buf().len() + template.len() > BATCH {
                conn.flush().await?;
            }
            template.append(conn.write_buf(), seq);
            confirms.published();
            seq += 1;
        }
        conn.flush().await?;
        if timeout(IDLE_TIMEOUT, conn.fill()).await.is_err() {
            break;
        }
        while let Some(frame) = conn.next_frame()? {
            if let Frame::Method { method, .. } = frame {
                match method {
                    Method::BasicAck(ack) => confirms.settle(ack.delivery_tag, ack.multiple, true),
                    Method::BasicNack(nack) => {
                        confirms.settle(nack.delivery_tag, nack.multiple, false)
                    }
                    _ => {}
                }
            }
        }
    }
    let elapsed = timer.stop();

    let count = wait_for_count(&mut conn, &queue, 0).await?;
    delete(&mut conn, &queue).await?;
    conn.close().await?;
    Ok(Measured {
        elapsed,
        latency_us: None,
        lost: config.n.saturating_sub(count.min(confirms.acked())),
        dup: count.saturating_sub(config.n),
        setup: None,
    })
}

/// `consume`: a queue filled first; then one consumer acks each of the
/// N deliveries.
async fn consume(config: &ScenarioConfig) -> Result<Measured> {
    let mut conn = RawConn::open(&config.url).await?;
    let queue = ShortString::try_from(unique_name("consume"))?;
    declare(&mut conn, &queue).await?;
    let template = Template::new(&queue, config.size, conn.frame_max())?;
    publish_batched(&mut conn, &template, config.n, batch(config)).await?;
    let filled = wait_for_count(&mut conn, &queue, config.n).await?;
    if filled != config.n {
        return Err(format!("prefill: the queue holds {filled} of {} messages", config.n).into());
    }

    let timer = Timer::start();
    conn.call(BasicQos {
        prefetch_count: PREFETCH,
        ..Default::default()
    })
    .await?;
    conn.call(BasicConsume {
        queue: queue.clone(),
        ..Default::default()
    })
    .await?;
    let mut seen = SeqTracker::new(config.n);
    let (mut tag, mut first_body) = (0, false);
    loop {
        while let Some(frame) = conn.next_frame()? {
            match frame {
                Frame::Method {
                    method: Method::BasicDeliver(deliver),
                    ..
                } => {
                    tag = deliver.delivery_tag;
                    first_body = true;
                }
                Frame::Body { payload, .. } if first_body => {
                    first_body = false;
                    seen.record(body::seq(&payload));
                    let ack = BasicAck {
                        delivery_tag: tag,
                        multiple: false,
                    };
                    encode_method(conn.write_buf(), CHANNEL, &ack.into());
                }
                _ => {}
            }
        }
        conn.flush().await?;
        if seen.is_complete() || timeout(IDLE_TIMEOUT, conn.fill()).await.is_err() {
            break;
        }
    }
    let elapsed = timer.stop();

    delete(&mut conn, &queue).await?;
    conn.close().await?;
    Ok(Measured {
        elapsed,
        latency_us: None,
        lost: seen.lost(),
        dup: seen.dup(),
        setup: None,
    })
}

/// Collects one message from its content header and body frames.
#[derive(Default)]
struct Incoming {
    properties: Option<Box<BasicProperties>>,
    body: Option<BodyAssembler>,
}

impl Incoming {
    /// Feeds a frame; returns the properties and body once a message is
    /// complete.
    fn push(&mut self, frame: Frame) -> Result<Option<(Box<BasicProperties>, bytes::Bytes)>> {
        match frame {
            Frame::Header { header, .. } => {
                self.body = Some(BodyAssembler::new(header.body_size, MAX_BODY)?);
                self.properties = Some(header.properties);
            }
            Frame::Body { payload, .. } => {
                let Some(assembler) = self.body.as_mut() else {
                    return Ok(None);
                };
                if let Some(body) = assembler.push(payload)? {
                    self.body = None;
                    return Ok(self.properties.take().map(|p| (p, body)));
                }
            }
            _ => {}
        }
        Ok(None)
    }
}

/// The rpc server: answers each request with its body, to its `reply_to`
/// and with its `correlation_id`, until `stop` fires.
async fn rpc_server(mut conn: RawConn, mut stop: oneshot::Receiver<()>) -> Result<()> {
    let mut incoming = Incoming::default();
    loop {
        while let Some(frame) = conn.next_frame()? {
            let Some((properties, body)) = incoming.push(frame)? else {
                continue;
            };
            let Some(reply_to) = properties.reply_to else {
                continue;
            };
            let reply = BasicPublish {
                routing_key: reply_to,
                ..Default::default()
            };
            let properties = BasicProperties {
                correlation_id: properties.correlation_id,
                ..Default::default()
            };
            let frame_max = conn.frame_max();
            encode_publish(
                conn.write_buf(),
                CHANNEL,
                &reply,
                &properties,
                &body,
                frame_max,
            )?;
        }
        conn.flush().await?;
        tokio::select! {
            read = conn.fill() => read?,
            _ = &mut stop => break,
        }
    }
    conn.close().await
}

/// `rpc`: N round trips, one at a time, to a server on its own connection.
async fn rpc(config: &ScenarioConfig) -> Result<Measured> {
    let mut server_conn = RawConn::open(&config.url).await?;
    let requests = ShortString::try_from(unique_name("rpc"))?;
    declare(&mut server_conn, &requests).await?;
    server_conn
        .call(BasicConsume {
            queue: requests.clone(),
            no_ack: true,
            ..Default::default()
        })
        .await?;
    let (stop, stopped) = oneshot::channel();
    let server = tokio::spawn(rpc_server(server_conn, stopped));

    let mut conn = RawConn::open(&config.url).await?;
    let reply_to = if config.direct_reply_to {
        ShortString::from_static("amq.rabbitmq.reply-to")
    } else {
        match conn
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
    conn.call(BasicConsume {
        queue: reply_to.clone(),
        no_ack: true,
        ..Default::default()
    })
    .await?;

    let request = BasicPublish {
        routing_key: requests.clone(),
        ..Default::default()
    };
    let mut latency = latency_histogram();
    let (mut lost, mut dup) = (0, 0);
    let mut incoming = Incoming::default();
    let timer = Timer::start();
    'requests: for seq in 0..config.n {
        let correlation_id = ShortString::try_from(seq.to_string())?;
        let properties = BasicProperties {
            reply_to: Some(reply_to.clone()),
            correlation_id: Some(correlation_id.clone()),
            ..Default::default()
        };
        let frame_max = conn.frame_max();
        let sent = Instant::now();
        encode_publish(
            conn.write_buf(),
            CHANNEL,
            &request,
            &properties,
            &body::encode(seq, config.size),
            frame_max,
        )?;
        conn.flush().await?;
        loop {
            while let Some(frame) = conn.next_frame()? {
                let Some((properties, _)) = incoming.push(frame)? else {
                    continue;
                };
                if properties.correlation_id.as_ref() == Some(&correlation_id) {
                    latency.saturating_record(sent.elapsed().as_micros() as u64);
                    continue 'requests;
                }
                dup += 1;
            }
            if timeout(IDLE_TIMEOUT, conn.fill()).await.is_err() {
                lost += 1;
                if server.is_finished() {
                    break 'requests;
                }
                continue 'requests;
            }
        }
    }
    let elapsed = timer.stop();

    let _ = stop.send(());
    server.await??;
    delete(&mut conn, &requests).await?;
    conn.close().await?;
    Ok(Measured {
        elapsed,
        latency_us: Some(latency),
        lost,
        dup,
        setup: None,
    })
}
