//! Counters the producers and consumers share with the reporter, and the
//! latency histograms.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;

use crate::scenario::latency_histogram;

/// What the producers and consumers of a load run counted.
///
/// Counters are atomics. Latencies go into one histogram per producer or
/// consumer behind its own mutex, which only the reporter contends for,
/// once an interval: a lock per message that is never contended costs a
/// few nanoseconds.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages published.
    pub sent: AtomicU64,
    /// Publishes the broker acked.
    pub confirmed: AtomicU64,
    /// Publishes the broker nacked (or that ended without an answer).
    pub nacked: AtomicU64,
    /// Mandatory messages the broker returned.
    pub returned: AtomicU64,
    /// Messages consumed.
    pub received: AtomicU64,
    /// Consumer latency: from the producer's clock in the message to its
    /// arrival at a consumer.
    pub consumer_latency: Latencies,
    /// Confirm latency: from a publish to the broker's confirm of it.
    pub confirm_latency: Latencies,
}

/// The latency histograms (microseconds) of one kind, one per producer or
/// consumer, registered with [`Latencies::recorder`].
#[derive(Debug, Default)]
pub struct Latencies {
    histograms: Mutex<Vec<Arc<Mutex<Histogram<u64>>>>>,
}

impl Latencies {
    /// A new histogram for one producer or consumer.
    pub fn recorder(&self) -> LatencyRecorder {
        let histogram = Arc::new(Mutex::new(latency_histogram()));
        if let Ok(mut all) = self.histograms.lock() {
            all.push(histogram.clone());
        }
        LatencyRecorder(histogram)
    }

    /// Takes the latencies recorded since the last call, merged, and
    /// resets the histograms.
    pub fn take(&self) -> Histogram<u64> {
        let mut merged = latency_histogram();
        if let Ok(all) = self.histograms.lock() {
            for histogram in all.iter() {
                if let Ok(mut histogram) = histogram.lock() {
                    let _ = merged.add(&*histogram);
                    histogram.reset();
                }
            }
        }
        merged
    }
}

/// One producer's or consumer's latency histogram (microseconds).
#[derive(Debug, Clone)]
pub struct LatencyRecorder(Arc<Mutex<Histogram<u64>>>);

impl LatencyRecorder {
    /// Records one latency in microseconds.
    pub fn record(&self, us: u64) {
        if let Ok(mut histogram) = self.0.lock() {
            histogram.saturating_record(us.max(1));
        }
    }
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// See [`Stats::sent`].
    pub sent: u64,
    /// See [`Stats::confirmed`].
    pub confirmed: u64,
    /// See [`Stats::nacked`].
    pub nacked: u64,
    /// See [`Stats::returned`].
    pub returned: u64,
    /// See [`Stats::received`].
    pub received: u64,
}

impl Counts {
    /// The counts from `earlier` to `self`.
    pub fn since(self, earlier: Counts) -> Counts {
        Counts {
            sent: self.sent - earlier.sent,
            confirmed: self.confirmed - earlier.confirmed,
            nacked: self.nacked - earlier.nacked,
            returned: self.returned - earlier.returned,
            received: self.received - earlier.received,
        }
    }
}

impl Stats {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn counts(&self) -> Counts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            sent: get(&self.sent),
            confirmed: get(&self.confirmed),
            nacked: get(&self.nacked),
            returned: get(&self.returned),
            received: get(&self.received),
        }
    }
}
