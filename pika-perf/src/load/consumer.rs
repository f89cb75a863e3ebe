//! One consumer: a pika [`QueueIterator`] that measures the latency of
//! each message from the timestamp its producer put in it, and acks as
//! configured.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use pika::{FieldValue, IncomingMessage, QueueIterator};
use tokio::sync::watch;
use tokio::time::Instant;

use super::stats::{LatencyRecorder, Stats};
use crate::body;
use crate::Result;

/// How a consumer takes its messages.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerConfig {
    /// The iterator was started with `no_ack`.
    pub auto_ack: bool,
    /// Ack with `multiple=true` every this many messages (1: each one).
    pub multi_ack_every: u64,
    /// Messages per second at most (0: unlimited).
    pub rate: f64,
    /// Stop after this many messages (`None`: until stopped).
    pub count: Option<u64>,
    /// The producer's clock is in the [`body::SENT_AT_HEADER`] header
    /// (`--json-body`), not in the body.
    pub clock_in_header: bool,
}

/// Consumes until `stop` changes, `count` messages came or the consumer
/// ends; then acks what is left and cancels.
pub async fn run(
    mut messages: QueueIterator,
    config: ConsumerConfig,
    stats: Arc<Stats>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let latency = stats.consumer_latency.recorder();
    let start = Instant::now();
    let mut received = 0u64;
    let mut unacked: Option<IncomingMessage> = None;
    let mut unacked_count = 0u64;
    while config.count.is_none_or(|count| received < count) {
        if config.rate > 0.0 {
            let due = start + Duration::from_secs_f64(received as f64 / config.rate);
            tokio::select! {
                biased;
                _ = stop.changed() => break,
                () = tokio::time::sleep_until(due) => {}
            }
        }
        let message = tokio::select! {
            biased;
            _ = stop.changed() => break,
            message = messages.next() => message,
        };
        // The stream ends when the broker cancels the consumer (its queue
        // was deleted).
        let Some(message) = message else { break };
        let message = message?;
        record_latency(&message, config.clock_in_header, &latency);
        received += 1;
        Stats::add(&stats.received, 1);
        if config.auto_ack {
            continue;
        }
        if config.multi_ack_every <= 1 {
            message.ack(false)?;
            continue;
        }
        unacked_count += 1;
        if unacked_count >= config.multi_ack_every {
            message.ack(true)?;
            unacked = None;
            unacked_count = 0;
        } else {
            unacked = Some(message);
        }
    }
    if let Some(last) = unacked {
        last.ack(true)?;
    }
    messages.close().await?;
    Ok(())
}

/// Records the latency of `message` from its producer's clock, in the
/// body or in the header.
fn record_latency(message: &IncomingMessage, clock_in_header: bool, latency: &LatencyRecorder) {
    let us = if clock_in_header {
        message.properties().headers.as_ref().and_then(|headers| {
            match headers.get(body::SENT_AT_HEADER) {
                Some(FieldValue::LongLongInt(ns)) => Some(body::latency_since_us(*ns as u64)),
                _ => None,
            }
        })
    } else {
        body::latency_us(message.body())
    };
    if let Some(us) = us {
        latency.record(us);
    }
}
