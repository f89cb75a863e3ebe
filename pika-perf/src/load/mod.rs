//! Free-form load with pika's connection layer (amqp-conn, which the
//! `pika` API wraps): producers and consumers on channels spread over
//! connections, a line per second, then a summary.
//!
//! Each producer and each consumer is a channel of its own, on
//! connection `i % connections` (producers first); with `connections = 0`
//! each gets a connection of its own. Latency is measured by consumers
//! from the producer's timestamp in the body ([`crate::body`]).

pub mod consumer;
pub mod output;
pub mod producer;
pub mod stats;
pub mod topology;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use amqp_conn::{Connection, ConnectionEvent};
use amqp_wire::{
    BasicConsume, BasicQos, FieldTable, FieldValue, QueueDeclare, QueueDelete, ShortString,
};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use self::output::{LoadReport, Reporter};
use self::stats::Stats;
use crate::rusage::Timer;
use crate::scenario::{latency_histogram, unique_name, Rt, IDLE_TIMEOUT};
use crate::Result;
use amqp_conn::ConnectionConfig;

/// How often the run checks whether it is done.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// The queue type (`x-queue-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum)]
pub enum QueueType {
    /// A classic queue.
    #[default]
    Classic,
    /// A quorum queue (always durable).
    Quorum,
    /// A stream (always durable; consumers need manual acks).
    Stream,
}

impl QueueType {
    /// The `x-queue-type` value.
    pub fn name(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
            QueueType::Stream => "stream",
        }
    }
}

/// One free-form load run.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadConfig {
    /// The broker.
    pub url: String,
    /// Producers.
    pub producers: usize,
    /// Consumers.
    pub consumers: usize,
    /// Connections (0: one per producer and per consumer).
    pub connections: usize,
    /// Body size.
    pub size: usize,
    /// Messages per second per producer (0: unlimited).
    pub rate: u64,
    /// Confirm window per producer (0: no confirms).
    pub confirm: usize,
    /// Publish with mandatory.
    pub mandatory: bool,
    /// Persistent messages, durable queue.
    pub persistent: bool,
    /// Consume without acks.
    pub auto_ack: bool,
    /// Prefetch per consumer (manual acks; 0: unlimited).
    pub prefetch: u16,
    /// Ack with multiple every N messages.
    pub multi_ack_every: u64,
    /// The queue's name (`None`: a fresh one, deleted afterwards).
    pub queue: Option<String>,
    /// The queue's type.
    pub queue_type: QueueType,
    /// Extra queue arguments.
    pub queue_args: Vec<(String, String)>,
    /// Messages per producer (`None`: until `duration`).
    pub count: Option<u64>,
    /// How long to run (`None`: until `count` is sent and received).
    pub duration: Option<Duration>,
    /// The runtime.
    pub rt: Rt,
}

impl LoadConfig {
    fn queue_arguments(&self) -> Result<FieldTable> {
        let mut table = FieldTable::new();
        if self.queue_type != QueueType::Classic {
            table.insert(
                ShortString::from_static("x-queue-type"),
                self.queue_type.name(),
            );
        }
        for (key, value) in &self.queue_args {
            let value: FieldValue = if let Ok(n) = value.parse::<i64>() {
                n.into()
            } else if let Ok(b) = value.parse::<bool>() {
                b.into()
            } else {
                value.as_str().into()
            };
            table.insert(ShortString::try_from(key.as_str())?, value);
        }
        Ok(table)
    }
}

/// Runs the load on a runtime of its own, printing as it goes.
pub fn run_blocking(config: &LoadConfig, json: bool) -> Result<LoadReport> {
    config.rt.build()?.block_on(run(config, json))
}

/// Runs the load on the current runtime: per-second lines (on stderr
/// with `json`), then the summary (or, with `json`, one JSON line on
/// stdout).
pub async fn run(config: &LoadConfig, json: bool) -> Result<LoadReport> {
    let total = config.producers + config.consumers;
    let k = if config.connections == 0 {
        total
    } else {
        config.connections.min(total)
    };
    let mut connections = Vec::with_capacity(k);
    for _ in 0..k {
        connections.push(connect(&config.url).await?);
    }
    let owned_queue = config.queue.is_none();
    let queue_name = config.queue.clone().unwrap_or_else(|| unique_name("load"));
    let queue = ShortString::try_from(queue_name.as_str())?;
    let setup = connections[0].open_channel().await?;
    setup
        .call(QueueDeclare {
            queue: queue.clone(),
            durable: config.persistent || config.queue_type != QueueType::Classic,
            arguments: config.queue_arguments()?,
            ..Default::default()
        })
        .await?;

    let stats = Arc::new(Stats::default());
    let stop_producers = Arc::new(AtomicBool::new(false));
    let (stop_consumers, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for connection in &connections {
        tasks.spawn(count_returns(connection.clone(), stats.clone()));
    }
    let mut consumers = JoinSet::new();
    for j in 0..config.consumers {
        let channel = connections[(config.producers + j) % k]
            .open_channel()
            .await?;
        if !config.auto_ack {
            channel
                .call(BasicQos {
                    prefetch_count: config.prefetch,
                    ..Default::default()
                })
                .await?;
        }
        let mut arguments = FieldTable::new();
        if config.queue_type == QueueType::Stream {
            arguments.insert(ShortString::from_static("x-stream-offset"), "next");
        }
        let buffer = if config.prefetch == 0 {
            1000
        } else {
            usize::from(config.prefetch)
        };
        let consumer = channel
            .consume(
                BasicConsume {
                    queue: queue.clone(),
                    no_ack: config.auto_ack,
                    arguments,
                    ..Default::default()
                },
                buffer,
            )
            .await?;
        let ack = consumer::ConsumerConfig {
            auto_ack: config.auto_ack,
            multi_ack_every: config.multi_ack_every,
        };
        consumers.spawn(consumer::run(consumer, ack, stats.clone(), stopped.clone()));
    }
    let mut producers = JoinSet::new();
    for i in 0..config.producers {
        let channel = connections[i % k].open_channel().await?;
        let producer = producer::ProducerConfig {
            queue: queue.clone(),
            size: config.size,
            rate: config.rate,
            confirm: config.confirm,
            mandatory: config.mandatory,
            persistent: config.persistent,
            count: config.count,
        };
        producers.spawn(producer::run(
            channel,
            producer,
            stats.clone(),
            stop_producers.clone(),
        ));
    }

    let mut reporter = Reporter::new(json);
    reporter.header(config, &queue_name, k);
    let timer = Timer::start();
    let started = Instant::now();
    // Messages the consumers wait for: each producer's count, or with no
    // producers (consuming a queue filled before) the count itself.
    let expected = config
        .count
        .map(|count| count * config.producers.max(1) as u64);
    let mut checks = tokio::time::interval(CHECK_EVERY);
    let mut next_line = started + Duration::from_secs(1);
    let mut total_latency = latency_histogram();
    let mut last_progress = (stats.counts(), Instant::now());
    let mut failure = None;
    loop {
        tokio::select! {
            _ = checks.tick() => {}
            Some(result) = producers.join_next() => {
                if let Err(e) = result.map_err(crate::Error::from).and_then(|r| r) {
                    failure = Some(e);
                    break;
                }
                continue;
            }
        }
        let counts = stats.counts();
        if counts != last_progress.0 {
            last_progress = (counts, Instant::now());
        }
        let done = config.duration.is_some_and(|d| started.elapsed() >= d)
            || expected.is_some_and(|expected| {
                let sent_all = producers.is_empty();
                let received_all = config.consumers == 0 || counts.received >= expected;
                let stalled = last_progress.1.elapsed() > IDLE_TIMEOUT;
                sent_all && (received_all || stalled)
            });
        if done || Instant::now() >= next_line {
            let interval = stats.take_latencies();
            let _ = total_latency.add(&interval);
            reporter.tick(started.elapsed(), counts, &interval);
            next_line += Duration::from_secs(1);
        }
        if done {
            break;
        }
    }
    stop_producers.store(true, Ordering::Relaxed);
    while let Some(result) = producers.join_next().await {
        if let Err(e) = result.map_err(crate::Error::from).and_then(|r| r) {
            failure.get_or_insert(e);
        }
    }
    let _ = stop_consumers.send(true);
    while let Some(result) = consumers.join_next().await {
        if let Err(e) = result.map_err(crate::Error::from).and_then(|r| r) {
            failure.get_or_insert(e);
        }
    }
    let elapsed = timer.stop();
    let _ = total_latency.add(stats.take_latencies());

    // A connection the broker blocks (memory or disk alarm) is not read
    // by the broker: its delete and close get no answer. Bound the wait.
    let cleanup = async {
        if owned_queue {
            setup
                .call(QueueDelete {
                    queue: queue.clone(),
                    ..Default::default()
                })
                .await?;
        }
        for connection in &connections {
            connection.close().await?;
        }
        Ok::<_, crate::Error>(())
    };
    match tokio::time::timeout(CLEANUP_TIMEOUT, cleanup).await {
        Ok(result) => result?,
        Err(_) => {
            failure.get_or_insert_with(|| {
                format!("deleting the queue and closing took longer than {CLEANUP_TIMEOUT:?}: is the connection blocked by the broker?").into()
            });
        }
    }
    tasks.abort_all();
    if let Some(error) = failure {
        return Err(error);
    }
    let report = LoadReport::new(config, k, elapsed, stats.counts(), &total_latency);
    reporter.summary(&report, &total_latency);
    Ok(report)
}

/// Counts mandatory messages returned on a connection without confirms
/// (with confirms the producer counts them from the outcome).
async fn count_returns(connection: Connection, stats: Arc<Stats>) {
    let mut events = connection.events();
    loop {
        match events.recv().await {
            Ok(ConnectionEvent::Returned { .. }) => Stats::add(&stats.returned, 1),
            Ok(ConnectionEvent::Closed(_))
            | Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            _ => {}
        }
    }
}

/// How long deleting the queue and closing may take at the end of a run.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens a connection to `url`.
async fn connect(url: &str) -> crate::Result<Connection> {
    Ok(Connection::open(ConnectionConfig::from_url(url)?).await?)
}
