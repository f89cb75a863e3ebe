//! One consumer: measures the latency of each message from the timestamp
//! its producer put in the body, and acks as configured.

use std::sync::Arc;

use amqp_conn::Consumer;
use tokio::sync::watch;

use super::stats::{LatencyRecorder, Stats};
use crate::body;
use crate::Result;

/// How a consumer acks.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerConfig {
    /// The consumer was started with `no_ack`.
    pub auto_ack: bool,
    /// Ack with `multiple=true` every this many messages (1: each one).
    pub multi_ack_every: u64,
}

/// Consumes until `stop` changes or the consumer ends, then acks what is
/// left and cancels.
pub async fn run(
    mut consumer: Consumer,
    config: ConsumerConfig,
    stats: Arc<Stats>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let latency: LatencyRecorder = stats.latency_recorder();
    let channel = consumer.channel().clone();
    let (mut unacked, mut last_tag) = (0u64, 0u64);
    loop {
        let delivery = tokio::select! {
            biased;
            _ = stop.changed() => break,
            delivery = consumer.recv() => delivery,
        };
        let Some(delivery) = delivery else { break };
        if let Some(us) = body::latency_us(&delivery.body) {
            latency.record(us);
        }
        Stats::add(&stats.received, 1);
        if config.auto_ack {
            continue;
        }
        if config.multi_ack_every <= 1 {
            channel.ack(delivery.delivery_tag, false)?;
        } else {
            unacked += 1;
            last_tag = delivery.delivery_tag;
            if unacked >= config.multi_ack_every {
                channel.ack(last_tag, true)?;
                unacked = 0;
            }
        }
    }
    if unacked > 0 {
        channel.ack(last_tag, true)?;
    }
    consumer.cancel().await?;
    Ok(())
}
