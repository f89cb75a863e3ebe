//! One producer: a channel that publishes as fast as allowed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use amqp_conn::{Channel, Confirmation, PublishConfirm};
use amqp_wire::{BasicProperties, BasicPublish, ShortString};
use tokio::time::Instant;

use super::stats::Stats;
use crate::body;
use crate::Result;

/// How a producer publishes.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// The queue, through the default exchange.
    pub queue: ShortString,
    /// Body size.
    pub size: usize,
    /// Messages per second (0: unlimited).
    pub rate: u64,
    /// Unconfirmed messages in flight (0: no confirms).
    pub confirm: usize,
    /// The mandatory flag.
    pub mandatory: bool,
    /// Delivery mode 2.
    pub persistent: bool,
    /// Messages to send (`None`: until stopped).
    pub count: Option<u64>,
}

/// Publishes until `stop` is set or `count` messages are sent, then waits
/// (at most 10 s) for the confirms still in flight.
pub async fn run(
    channel: Channel,
    config: ProducerConfig,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) -> Result<()> {
    if config.confirm > 0 {
        channel.confirm_select().await?;
    }
    let publish = BasicPublish {
        routing_key: config.queue.clone(),
        mandatory: config.mandatory,
        ..Default::default()
    };
    let properties = BasicProperties {
        delivery_mode: config.persistent.then_some(2),
        ..Default::default()
    };
    let mut window: VecDeque<PublishConfirm> = VecDeque::with_capacity(config.confirm);
    let start = Instant::now();
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) && config.count.is_none_or(|count| sent < count) {
        if config.rate > 0 {
            let due = start + Duration::from_secs_f64(sent as f64 / config.rate as f64);
            if due > Instant::now() {
                tokio::time::sleep_until(due.min(Instant::now() + Duration::from_millis(100)))
                    .await;
                continue;
            }
        }
        if config.confirm > 0 && window.len() == config.confirm {
            let oldest = window.pop_front().expect("the window is full");
            settle(&stats, oldest.await);
        }
        let publishing = channel.publish(
            publish.clone(),
            properties.clone(),
            body::encode(sent, config.size),
        );
        // A blocked connection can keep a publish waiting for room in the
        // queue forever: stop waiting when the run ends (dropping the
        // future publishes nothing).
        let confirm = tokio::select! {
            confirm = publishing => confirm?,
            () = stopped(&stop) => break,
        };
        Stats::add(&stats.sent, 1);
        if config.confirm > 0 {
            window.push_back(confirm);
        }
        sent += 1;
    }
    let drain = async {
        for confirm in window {
            settle(&stats, confirm.await);
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
    Ok(())
}

/// Resolves once `stop` is set (checked every 50 ms).
async fn stopped(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn settle(stats: &Stats, outcome: Confirmation) {
    match outcome {
        Confirmation::Ack => Stats::add(&stats.confirmed, 1),
        Confirmation::Returned(_) => {
            Stats::add(&stats.returned, 1);
            Stats::add(&stats.confirmed, 1);
        }
        _ => Stats::add(&stats.nacked, 1),
    }
}
