//! The fixed scenarios that match the comparison harness, their
//! configuration, and what every client's run of one returns.
//!
//! Timing rules (the timed region is what `wall_s` and the CPU fields
//! cover):
//! - `publish`: from the first publish until a passive declare shows all
//!   N messages in a fresh non-durable queue; no confirms, default
//!   exchange.
//! - `publish_confirm`: confirm mode, at most [`CONFIRM_WINDOW`]
//!   unconfirmed publishes in flight, until all N are confirmed.
//! - `consume`: the queue is filled with N messages first (untimed);
//!   then `basic.qos(`[`PREFETCH`]`)`, `basic.consume` and one
//!   `basic.ack` per message (`multiple=false`) until all N arrived.
//! - `rpc`: one request at a time over a callback queue (or direct
//!   reply-to), client and server in this process on their own
//!   connections; p50/p99 are of the round trips.
//!
//! The scenarios of scale take a width W ([`ScenarioConfig::width`]).
//! Message `seq` of `0..n` goes to queue `seq % W` (see [`share`]); every
//! consumer acks each delivery (`multiple=false`) with prefetch
//! [`PREFETCH`] unless said otherwise. Setup (opening what W counts,
//! declaring, consuming) is outside the timed region; its wall time and
//! the growth of the process's RSS over it are the `open_s` and
//! `rss_per_unit_kib` (growth / W) of the report.
//! - `channels`: one connection. Setup: open W channels one after
//!   another (no confirms). Timed: publish N messages to one queue,
//!   channel `seq % W` carrying message `seq`, until a passive declare
//!   counts N.
//! - `consumers`: one connection; W queues declared (untimed, before
//!   setup). Setup: one channel (prefetch [`PREFETCH`] per consumer) with
//!   W consumers, one per queue. Timed: a second channel publishes the N
//!   messages (no confirms), queue `seq % W`, until every delivery
//!   arrived.
//! - `connections`: setup: W connections, each with one channel, one
//!   queue and one consumer on a second channel of its own. Timed: every
//!   connection publishes its share (seq % W) to its queue and consumes
//!   it, all at once, until every delivery arrived.
//! - `fanout`: one connection; a fanout exchange bound to W queues
//!   (default 10), one consumer each on one channel. Timed: N publishes
//!   to the exchange (no confirms) until all W x N deliveries arrived;
//!   rates and CPU are per delivery.
//! - `large`: one connection, a publishing channel in confirm mode with
//!   at most [`LARGE_WINDOW`] unconfirmed, and a consumer with prefetch
//!   [`LARGE_PREFETCH`], both at once, until all N are confirmed and
//!   consumed. `mb_per_s` is N x size / wall; `peak_rss_kib` (the
//!   process's high-water mark) is set against `LARGE_PREFETCH x size`.
//!   The bodies are written into recycled buffers
//!   ([`crate::body::Bodies::recycled`]) wherever a client's publish
//!   lets the caller keep its buffer (pika, raw, lapin); amqprs takes an
//!   owned `Vec`, so it gets a new one per message, as its users must.
//! - `parallel`: one connection; W producers (default 4), each on its
//!   own channel and task, publish (no confirms) to W queues, and W
//!   consumers, each on its own channel and task, consume them, all at
//!   once, until every delivery arrived. Run with `--rt mt` to see the
//!   client spread over threads.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::report::ScenarioReport;
use crate::rusage::Elapsed;
use crate::Result;

/// Unconfirmed publishes at most in flight in `publish_confirm`.
pub const CONFIRM_WINDOW: usize = 1000;

/// The consumer's prefetch count in `consume`.
pub const PREFETCH: u16 = 1000;

/// Unconfirmed publishes at most in flight in `large`.
pub const LARGE_WINDOW: usize = 4;

/// The consumer's prefetch count in `large`.
pub const LARGE_PREFETCH: u16 = 4;

/// How long a run waits without progress (no message, no change in the
/// queue's count, no reply) before it gives up and counts what is
/// missing as lost.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The broker the tests and the tool use unless told otherwise.
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A fixed scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Scenario {
    /// Publish N messages without confirms.
    Publish,
    /// Publish N messages with confirms, at most 1000 unconfirmed.
    PublishConfirm,
    /// Consume N messages from a filled queue, acking each.
    Consume,
    /// N request/reply round trips, one at a time.
    Rpc,
    /// Open W channels on one connection, publish N round-robin over them.
    Channels,
    /// W queues with a consumer each on one connection, N messages spread.
    Consumers,
    /// W connections, each publishing and consuming its share of N.
    Connections,
    /// N publishes to a fanout exchange bound to W queues, each consumed.
    Fanout,
    /// N large messages (--size) published with confirms and consumed at once.
    Large,
    /// W producer and W consumer tasks, each on a channel of its own.
    Parallel,
}

impl Scenario {
    /// The name in the JSON line.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Publish => "publish",
            Scenario::PublishConfirm => "publish_confirm",
            Scenario::Consume => "consume",
            Scenario::Rpc => "rpc",
            Scenario::Channels => "channels",
            Scenario::Consumers => "consumers",
            Scenario::Connections => "connections",
            Scenario::Fanout => "fanout",
            Scenario::Large => "large",
            Scenario::Parallel => "parallel",
        }
    }

    /// The width W when none is given: 1 for the scenarios without one.
    pub fn default_width(self) -> u32 {
        match self {
            Scenario::Channels | Scenario::Consumers => 100,
            Scenario::Connections | Scenario::Fanout => 10,
            Scenario::Parallel => 4,
            _ => 1,
        }
    }

    /// True for the scenarios where each message is delivered W times
    /// (`fanout`): their rates count deliveries.
    pub fn deliveries_per_message(self, width: u32) -> u64 {
        match self {
            Scenario::Fanout => u64::from(width),
            _ => 1,
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The tokio runtime a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum)]
pub enum Rt {
    /// `current_thread`: everything on the calling thread.
    #[default]
    Ct,
    /// `multi_thread` with 2 workers.
    Mt,
}

impl Rt {
    /// The name in the JSON line.
    pub fn name(self) -> &'static str {
        match self {
            Rt::Ct => "ct",
            Rt::Mt => "mt",
        }
    }

    /// Builds the runtime.
    pub fn build(self) -> std::io::Result<tokio::runtime::Runtime> {
        match self {
            Rt::Ct => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
            Rt::Mt => tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build(),
        }
    }
}

impl fmt::Display for Rt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which client runs a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum)]
pub enum ClientKind {
    /// pika, through its public API (`src/clients/pika.rs`).
    #[default]
    Pika,
    /// lapin (needs the `lapin` feature).
    Lapin,
    /// amqprs (needs the `amqprs` feature).
    Amqprs,
    /// A minimal client on amqp-wire over a bare socket: the broker's limit.
    Raw,
    /// pika-patterns' `Rpc` (the rpc scenario only).
    PikaPatterns,
}

impl ClientKind {
    /// The name in the JSON line.
    pub fn name(self) -> &'static str {
        match self {
            ClientKind::Pika => "pika",
            ClientKind::Lapin => "lapin",
            ClientKind::Amqprs => "amqprs",
            ClientKind::Raw => "raw",
            ClientKind::PikaPatterns => "pika-patterns",
        }
    }
}

impl fmt::Display for ClientKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One run of a fixed scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioConfig {
    /// Which client.
    pub client: ClientKind,
    /// Which scenario.
    pub scenario: Scenario,
    /// Messages (or round trips).
    pub n: u64,
    /// Body size in bytes (at least [`body::HEADER_LEN`](crate::body::HEADER_LEN)).
    pub size: usize,
    /// The runtime.
    pub rt: Rt,
    /// The broker.
    pub url: String,
    /// `rpc` only: replies over `amq.rabbitmq.reply-to` instead of a
    /// callback queue.
    pub direct_reply_to: bool,
    /// The scenarios of scale: channels, queues, connections or
    /// producers; 0 takes [`Scenario::default_width`].
    pub width: u32,
    /// pika and raw: bytes written to the socket at a time at most (0:
    /// each client's default). For measuring the broker against the
    /// size of the writes it gets.
    pub write_batch: usize,
}

impl ScenarioConfig {
    /// The width W this run uses (at least 1).
    pub fn width(&self) -> u32 {
        match self.width {
            0 => self.scenario.default_width(),
            w => w,
        }
    }

    /// The messages the rates and CPU are per: N, or W x N for `fanout`.
    pub fn deliveries(&self) -> u64 {
        self.n * self.scenario.deliveries_per_message(self.width())
    }
}

/// How many of the messages `0..n` go to queue `i` of `w` (the ones with
/// `seq % w == i`).
///
/// ```
/// assert_eq!(pika_perf::scenario::share(10, 4, 1), 3); // 1, 5, 9
/// assert_eq!(pika_perf::scenario::share(10, 4, 3), 2); // 3, 7
/// ```
pub fn share(n: u64, w: u32, i: u32) -> u64 {
    let (w, i) = (u64::from(w.max(1)), u64::from(i));
    if i >= n {
        0
    } else {
        (n - i).div_ceil(w)
    }
}

impl Default for ScenarioConfig {
    fn default() -> Self {
        ScenarioConfig {
            client: ClientKind::Pika,
            scenario: Scenario::Publish,
            n: 100_000,
            size: 64,
            rt: Rt::Ct,
            url: DEFAULT_URL.to_string(),
            direct_reply_to: false,
            width: 0,
            write_batch: 0,
        }
    }
}

/// What a client measured in one run.
#[derive(Debug, Clone, Default)]
pub struct Measured {
    /// Wall clock and CPU time of the timed region.
    pub elapsed: Elapsed,
    /// Round-trip times in microseconds (`rpc` only).
    pub latency_us: Option<Histogram<u64>>,
    /// Messages (or replies) that did not arrive.
    pub lost: u64,
    /// Messages that arrived twice, or replies nobody waited for.
    pub dup: u64,
    /// The scenarios of scale: the untimed setup (opening the W
    /// channels, consumers or connections).
    pub setup: Option<Setup>,
}

impl Measured {
    /// A run that published `n` messages and found `count` in the queue:
    /// what is missing is lost, what is more is duplicated.
    pub fn counted(elapsed: Elapsed, n: u64, count: u64, setup: Option<Setup>) -> Measured {
        Measured {
            elapsed,
            lost: n.saturating_sub(count),
            dup: count.saturating_sub(n),
            setup,
            ..Measured::default()
        }
    }
}

/// The setup of a scenario of scale: how long it took and how much the
/// process's resident memory grew over it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Setup {
    /// Wall-clock time.
    pub wall: Duration,
    /// RSS after minus RSS before, in KiB (negative if memory was freed).
    pub rss_growth_kib: i64,
}

/// Measures a [`Setup`]: [`start`](Self::start) before opening the W
/// things, [`stop`](Self::stop) once they are all open.
#[derive(Debug, Clone, Copy)]
pub struct SetupTimer {
    started: std::time::Instant,
    rss_kib: u64,
}

impl SetupTimer {
    /// Starts measuring.
    pub fn start() -> SetupTimer {
        SetupTimer {
            rss_kib: crate::rusage::rss_kib(),
            started: std::time::Instant::now(),
        }
    }

    /// Stops measuring.
    pub fn stop(self) -> Setup {
        let wall = self.started.elapsed();
        Setup {
            wall,
            rss_growth_kib: crate::rusage::rss_kib() as i64 - self.rss_kib as i64,
        }
    }
}

/// Runs one scenario on the current tokio runtime.
pub async fn run_scenario(config: &ScenarioConfig) -> Result<ScenarioReport> {
    if config.n == 0 {
        return Err("n must be at least 1".into());
    }
    let measured = crate::clients::run(config).await?;
    Ok(ScenarioReport::new(config, &measured))
}

/// Runs one scenario on a runtime of its own, built as `config.rt` says.
pub fn run_scenario_blocking(config: &ScenarioConfig) -> Result<ScenarioReport> {
    config.rt.build()?.block_on(run_scenario(config))
}

/// A queue name no other run uses: `pika-perf-{what}-{pid}-{nanos}-{k}`.
pub fn unique_name(what: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "pika-perf-{what}-{}-{}-{}",
        std::process::id(),
        crate::body::now_ns(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A histogram of microseconds, 1 µs to 1 hour, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Polls `count` (a passive `queue.declare`) until the queue holds `n`
/// messages, or until its count has not changed for [`IDLE_TIMEOUT`];
/// returns the last count. Polls every millisecond, so that the poll
/// itself costs next to nothing.
pub async fn wait_for_count<F, Fut>(n: u64, mut count: F) -> Result<u64>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64>>,
{
    let mut waiter = CountWaiter::new(n);
    while !waiter.update(count().await?) {
        waiter.pause().await;
    }
    Ok(waiter.last())
}

/// The state of [`wait_for_count`], for clients whose count needs a
/// `&mut` borrow: feed it each count until [`update`](Self::update)
/// says done, [`pause`](Self::pause) between polls.
#[derive(Debug, Clone)]
pub struct CountWaiter {
    n: u64,
    last: Option<u64>,
    changed: tokio::time::Instant,
}

impl CountWaiter {
    /// Waits for `n` messages.
    pub fn new(n: u64) -> CountWaiter {
        CountWaiter {
            n,
            last: None,
            changed: tokio::time::Instant::now(),
        }
    }

    /// Takes one count; true when done: the queue holds `n`, or the count
    /// has not moved for [`IDLE_TIMEOUT`].
    pub fn update(&mut self, count: u64) -> bool {
        if self.last != Some(count) {
            self.last = Some(count);
            self.changed = tokio::time::Instant::now();
        }
        count >= self.n || self.changed.elapsed() > IDLE_TIMEOUT
    }

    /// The last count (0 before the first).
    pub fn last(&self) -> u64 {
        self.last.unwrap_or(0)
    }

    /// Sleeps between two polls.
    pub async fn pause(&self) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
