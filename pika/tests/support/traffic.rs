//! Traffic for the recovery tests, every message recorded in a
//! [`Ledger`]: a publisher of persistent messages with confirms (a window
//! in flight, a timeout each) and a consumer with manual acks. Neither
//! has any recovery code: they publish and consume whatever happens
//! underneath. The publisher's one reaction is to a broker bug: after a
//! nack it publishes on a new channel (see [`publish`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, StreamExt};
use pika::{Channel, Connection, ConnectionEvent, DeliveryMode, Message, Queue};
use pika_test_support::Ledger;

/// Each publish's timeout, as issue 10 sets it.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads a size from the environment.
pub fn from_env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What the publisher has done so far.
#[derive(Debug, Default)]
pub struct Progress {
    /// Publishes with an outcome.
    pub published: AtomicU64,
    /// Channels opened after a nack (see [`publish`]).
    pub channels_opened: AtomicU64,
    /// When the last confirm arrived.
    pub last_confirm: Mutex<Option<Instant>>,
    /// When the last delivery arrived (for the consumer's progress).
    pub last_delivery: Mutex<Option<Instant>>,
    /// Why publishes failed (nacked or indeterminate): each distinct
    /// error, how many times, and when it first and last happened.
    pub errors: Mutex<Vec<PublishErrors>>,
}

/// Publishes that ended with the same error.
#[derive(Debug)]
pub struct PublishErrors {
    /// The error as displayed.
    pub error: String,
    /// How many publishes ended with it.
    pub count: u64,
    /// When it first happened.
    pub first: Instant,
    /// When it last happened.
    pub last: Instant,
}

impl Progress {
    /// Records a publish that ended with `error`.
    pub fn failed(&self, error: String) {
        let now = Instant::now();
        let mut errors = self.errors.lock().unwrap();
        match errors.iter_mut().find(|e| e.error == error) {
            Some(seen) => {
                seen.count += 1;
                seen.last = now;
            }
            None => errors.push(PublishErrors {
                error,
                count: 1,
                first: now,
                last: now,
            }),
        }
    }

    /// The errors publishes ended with, one a line, times relative to
    /// `origin` (for a test's failure message).
    pub fn errors_since(&self, origin: Instant) -> String {
        let errors = self.errors.lock().unwrap();
        if errors.is_empty() {
            return "no publish failed".to_string();
        }
        errors
            .iter()
            .map(|e| {
                format!(
                    "{} x from {:.1?} to {:.1?}: {}",
                    e.count,
                    e.first.saturating_duration_since(origin),
                    e.last.saturating_duration_since(origin),
                    e.error
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
    /// Waits until `count` publishes have an outcome.
    pub async fn until_published(&self, count: u64) {
        while self.published.load(Ordering::Relaxed) < count {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until a confirm arrives after `since`; returns when it did.
    pub async fn next_confirm_after(&self, since: Instant) -> Instant {
        Self::next_after(&self.last_confirm, since).await
    }

    /// Waits until a delivery arrives after `since`; returns when it did.
    pub async fn next_delivery_after(&self, since: Instant) -> Instant {
        Self::next_after(&self.last_delivery, since).await
    }

    async fn next_after(last: &Mutex<Option<Instant>>, since: Instant) -> Instant {
        loop {
            if let Some(at) = *last.lock().unwrap() {
                if at > since {
                    return at;
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// How the publisher publishes.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Messages `0..messages`, their id in the body.
    pub messages: u64,
    /// Publishes in flight at once.
    pub window: usize,
    /// At most this many publishes a second (`None`: as fast as the
    /// window allows), so that the traffic spans slow faults.
    pub rate: Option<f64>,
}

/// Publishes `load` to `queue` through the default exchange of a channel
/// of `connection`, and records each attempt and outcome: a confirm, a
/// nack, or anything else as indeterminate (a timeout or a lost
/// connection: it may have arrived).
///
/// After a nack of the channel in use (not a late one of a channel left
/// behind), the next publishes go on a new channel. That is the one
/// thing this publisher does about faults, and it is for the broker:
/// RabbitMQ 3.10 (`rabbit_fifo_client:enqueue/3`) gives a channel's
/// first publish to a quorum queue the leader named in the queue's
/// record. If that node has just stopped, it rejects the publish and
/// keeps no state, so that channel asks the stopped node again for every
/// later publish to that queue: nacks for as long as the channel lives.
/// A new channel starts from the record as it is by then.
pub fn publish(
    connection: Connection,
    queue: String,
    load: Load,
    ledger: Ledger,
) -> (tokio::task::JoinHandle<()>, Arc<Progress>) {
    let progress = Arc::new(Progress::default());
    let shared = progress.clone();
    let task = tokio::spawn(async move {
        let mut exchange = open_channel(&connection).await.default_exchange();
        // Channels are numbered from 1 as they are opened; `nacked_on`
        // holds the highest number that nacked, so a late nack of a
        // channel already left behind does not open another.
        let mut channel_number = 1u64;
        let nacked_on = Arc::new(AtomicU64::new(0));
        let mut in_flight = FuturesUnordered::new();
        let mut pace = load
            .rate
            .map(|rate| tokio::time::interval(Duration::from_secs_f64(1.0 / rate)));
        for id in 0..load.messages {
            if in_flight.len() >= load.window.max(1) {
                in_flight.next().await;
            }
            if let Some(pace) = &mut pace {
                // Waiting for the tick while confirms come in.
                let tick = pace.tick();
                tokio::pin!(tick);
                loop {
                    tokio::select! {
                        _ = &mut tick => break,
                        Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
                    }
                }
            }
            if nacked_on.load(Ordering::Relaxed) == channel_number {
                exchange = open_channel(&connection).await.default_exchange();
                channel_number += 1;
                shared.channels_opened.fetch_add(1, Ordering::Relaxed);
            }
            ledger.published(id);
            let (exchange, ledger, queue, progress, nacked_on) = (
                exchange.clone(),
                ledger.clone(),
                queue.clone(),
                shared.clone(),
                nacked_on.clone(),
            );
            in_flight.push(async move {
                let message = Message::new(id.to_string()).delivery_mode(DeliveryMode::Persistent);
                let outcome = exchange
                    .publish(message, &queue)
                    .timeout(PUBLISH_TIMEOUT)
                    .await;
                match outcome {
                    Ok(confirmation) if confirmation.is_ack() => {
                        ledger.confirmed(id);
                        *progress.last_confirm.lock().unwrap() = Some(Instant::now());
                    }
                    Ok(other) => {
                        // Returned or not confirmed: no ack, so it may or
                        // may not be in the queue.
                        progress.failed(format!("not acked: {other:?}"));
                        ledger.indeterminate(id);
                    }
                    Err(error) => {
                        progress.failed(error.to_string());
                        if matches!(error, pika::Error::Nacked { .. }) {
                            ledger.nacked(id);
                            nacked_on.fetch_max(channel_number, Ordering::Relaxed);
                        } else {
                            ledger.indeterminate(id);
                        }
                    }
                }
                progress.published.fetch_add(1, Ordering::Relaxed);
            });
        }
        while in_flight.next().await.is_some() {}
    });
    (task, progress)
}

/// A channel of `connection` to publish on; waits while the connection
/// is being restored.
async fn open_channel(connection: &Connection) -> Channel {
    connection
        .channel()
        .await
        .unwrap_or_else(|error| panic!("opening a channel to publish on: {error}"))
}

/// What the consumer has done so far.
#[derive(Debug, Default)]
pub struct Consumed {
    /// Acks that failed: their delivery came over a lost connection (the
    /// broker delivers that message again).
    pub failed_acks: AtomicU64,
    /// When deliveries arrived.
    pub progress: Progress,
}

/// Consumes `queue` with manual acks, recording each delivery.
pub async fn consume(
    queue: &Queue,
    ledger: Ledger,
) -> (tokio::task::JoinHandle<()>, Arc<Consumed>) {
    let mut iterator = queue.iterator().await.expect("consume");
    let consumed = Arc::new(Consumed::default());
    let counter = consumed.clone();
    let task = tokio::spawn(async move {
        while let Some(item) = iterator.next().await {
            let message = item.unwrap_or_else(|error| panic!("the iterator failed: {error}"));
            let id: u64 = std::str::from_utf8(message.body())
                .unwrap()
                .parse()
                .unwrap();
            ledger.delivered(id);
            *counter.progress.last_delivery.lock().unwrap() = Some(Instant::now());
            if message.ack(false).is_err() {
                counter.failed_acks.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    (task, consumed)
}

/// Waits until every confirmed message was delivered (at most `bound`).
pub async fn until_delivered(ledger: &Ledger, bound: Duration) {
    let deadline = Instant::now() + bound;
    while ledger.confirmed_undelivered() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Late duplicates, if any, are counted too.
    tokio::time::sleep(Duration::from_millis(500)).await;
}

/// Waits for the event `wanted` picks, at most `bound`.
pub async fn wait_for<T>(
    events: &mut tokio::sync::broadcast::Receiver<ConnectionEvent>,
    bound: Duration,
    mut wanted: impl FnMut(&ConnectionEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(bound, async {
        loop {
            match events.recv().await {
                Ok(event) => {
                    if let Some(found) = wanted(&event) {
                        return found;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(error) => panic!("events ended: {error}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no such event within {bound:?}"))
}

/// How long the connection took to be restored, from a `Reconnected`
/// event; a `Closed` event fails the test.
pub fn restored(event: &ConnectionEvent) -> Option<Duration> {
    match event {
        ConnectionEvent::Reconnected { took, .. } => Some(*took),
        ConnectionEvent::Closed(error) => panic!("the robust connection closed: {error}"),
        _ => None,
    }
}

/// The `p` quantile (0 to 1) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}
