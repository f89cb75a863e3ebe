//! One producer: a channel that publishes through pika's
//! [`Exchange::publish`](pika::Exchange::publish) as fast as allowed, with
//! a window of unconfirmed messages when confirms are on.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use pika::{Confirmation, DeliveryMode, Exchange, Message, PendingConfirmation};
use tokio::time::Instant;

use super::stats::{LatencyRecorder, Stats};
use crate::body;
use crate::Result;

/// How long a producer waits for its last confirms once it stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How a producer publishes.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// The routing key of every publish.
    pub routing_key: String,
    /// Body size (pika-perf's bodies: at least [`body::HEADER_LEN`]).
    pub size: usize,
    /// JSON documents to send in turn instead of pika-perf's bodies; the
    /// clock then goes in the [`body::SENT_AT_HEADER`] header.
    pub json_bodies: Option<Arc<Vec<Bytes>>>,
    /// Messages per second (0: unlimited).
    pub rate: f64,
    /// Unconfirmed messages in flight (0: no confirms; the channel must
    /// have been opened without publisher confirms).
    pub confirm: usize,
    /// The mandatory flag.
    pub mandatory: bool,
    /// Delivery mode 2.
    pub persistent: bool,
    /// Messages to send (`None`: until stopped).
    pub count: Option<u64>,
}

impl ProducerConfig {
    /// The message with sequence number `seq`, stamped with the clock now.
    fn message(&self, seq: u64) -> Message {
        let message = match &self.json_bodies {
            None => Message::new(body::encode(seq, self.size)),
            Some(bodies) => Message::new(bodies[(seq % bodies.len() as u64) as usize].clone())
                .content_type("application/json")
                .header(body::SENT_AT_HEADER, body::now_ns() as i64),
        };
        if self.persistent {
            message.delivery_mode(DeliveryMode::Persistent)
        } else {
            message
        }
    }
}

/// A publish whose confirm has not come yet, and when it went out.
type InFlight = (Instant, PendingConfirmation);

/// Publishes until `stop` is set or `count` messages are sent, then waits
/// (at most 10 s) for the confirms still in flight.
pub async fn run(
    exchange: Exchange,
    config: ProducerConfig,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    let latency = stats.confirm_latency.recorder();
    let mut window: VecDeque<InFlight> = VecDeque::with_capacity(config.confirm);
    let start = Instant::now();
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) && config.count.is_none_or(|count| sent < count) {
        settle_arrived(&mut window, &stats, &latency);
        if config.rate > 0.0 {
            let due = start + Duration::from_secs_f64(sent as f64 / config.rate);
            if due > Instant::now() {
                // Sleep until due (waking at least every 100 ms to see
                // `stop`), settling confirms as they come.
                let wake = due.min(Instant::now() + Duration::from_millis(100));
                tokio::select! {
                    () = tokio::time::sleep_until(wake) => {}
                    outcome = oldest(&mut window) => settle_oldest(&mut window, outcome, &stats, &latency),
                }
                continue;
            }
        }
        if config.confirm > 0 && window.len() >= config.confirm {
            let outcome = oldest(&mut window).await;
            settle_oldest(&mut window, outcome, &stats, &latency);
        }
        let publishing = exchange
            .publish(config.message(sent), &config.routing_key)
            .mandatory(config.mandatory)
            .send();
        // A blocked connection can keep a publish waiting for room in the
        // queue forever: stop waiting when the run ends (dropping the
        // future publishes nothing).
        let pending = tokio::select! {
            pending = publishing => pending?,
            () = stopped(&stop) => break,
        };
        Stats::add(&stats.sent, 1);
        if config.confirm > 0 {
            window.push_back((Instant::now(), pending));
        }
        sent += 1;
    }
    let drain = async {
        while !window.is_empty() {
            let outcome = oldest(&mut window).await;
            settle_oldest(&mut window, outcome, &stats, &latency);
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
    Ok(())
}

/// Resolves with the outcome of the oldest publish in flight (never, when
/// none is); the caller then takes it out with [`settle_oldest`].
async fn oldest(window: &mut VecDeque<InFlight>) -> pika::Result<Confirmation> {
    match window.front_mut() {
        Some((_, pending)) => pending.await,
        None => std::future::pending().await,
    }
}

/// Counts the oldest publish's outcome and its confirm latency, and takes
/// it out of the window.
fn settle_oldest(
    window: &mut VecDeque<InFlight>,
    outcome: pika::Result<Confirmation>,
    stats: &Stats,
    latency: &LatencyRecorder,
) {
    if let Some((sent_at, _)) = window.pop_front() {
        latency.record(sent_at.elapsed().as_micros() as u64);
        settle(stats, outcome);
    }
}

/// Settles the confirms that already came, oldest first, without waiting,
/// so that confirm latency is taken when they arrive rather than when the
/// window is full.
fn settle_arrived(window: &mut VecDeque<InFlight>, stats: &Stats, latency: &LatencyRecorder) {
    while let Some((_, pending)) = window.front_mut() {
        match pending.now_or_never() {
            Some(outcome) => settle_oldest(window, outcome, stats, latency),
            None => return,
        }
    }
}

/// Resolves once `stop` is set (checked every 50 ms).
async fn stopped(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Counts one outcome: acked, returned (and acked), or nacked (a nack, or
/// no answer because the channel closed first).
fn settle(stats: &Stats, outcome: pika::Result<Confirmation>) {
    match outcome {
        Ok(Confirmation::Ack) => Stats::add(&stats.confirmed, 1),
        Ok(Confirmation::Returned(_)) => {
            Stats::add(&stats.returned, 1);
            Stats::add(&stats.confirmed, 1);
        }
        Ok(_) => {}
        Err(_) => Stats::add(&stats.nacked, 1),
    }
}
