//! Free-form load on the `pika` API, as an application uses it:
//! [`pika::connect`], channels, an exchange and queues declared with
//! pika's builders, [`Exchange::publish`](pika::Exchange::publish) with
//! confirms in flight, a [`QueueIterator`](pika::QueueIterator) per
//! consumer and [`IncomingMessage::ack`](pika::IncomingMessage::ack). So
//! what it measures is what users of pika get.
//!
//! The run is shaped as RabbitMQ PerfTest shapes it (see [`topology`]):
//! an exchange (`direct` by default), one or more queues bound to it,
//! producers and consumers spread over the queues. Each producer and each
//! consumer is a channel of its own, on connection `i % connections`
//! (producers first); with `connections = 0` each gets a connection of
//! its own, and connections go round robin over the URIs. Latency is
//! measured by consumers from the producer's clock in the body
//! ([`crate::body`]).
//!
//! A run prints a line per interval, then a summary. It ends at the time
//! limit, when the message limits are reached, or at Ctrl-C
//! ([`Interrupt`]); then it deletes the queues it declared (unless
//! `auto_delete` is off) and closes its connections.

pub mod consumer;
pub mod output;
pub mod plot;
pub mod producer;
pub mod stats;
pub mod topology;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pika::{ConnectOptions, Connection, ConnectionEvent, ExchangeType, FieldValue, Queue};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use self::output::{EndReason, LoadReport, Reporter, RunTotals};
use self::stats::Stats;
use self::topology::Topology;
use crate::rusage::Timer;
use crate::scenario::{latency_histogram, Rt, IDLE_TIMEOUT};
use crate::Result;

/// How often the run checks whether it is done.
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// How long deleting the queues and closing may take at the end of a run.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(10);

/// How many JSON bodies `--json-body` prepares and sends in turn (as
/// PerfTest's default `--body-count`).
const JSON_BODY_COUNT: usize = 100;

/// The queue type (`x-queue-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum)]
pub enum QueueType {
    /// A classic queue.
    #[default]
    Classic,
    /// A quorum queue (always durable, never auto-delete).
    Quorum,
    /// A stream (always durable, never auto-delete; consumers need manual
    /// acks).
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
    /// The test id, at the start of the header, of the summary lines and
    /// of each CSV line.
    pub id: String,
    /// The brokers; connections go round robin over them.
    pub uris: Vec<String>,
    /// Producers.
    pub producers: usize,
    /// Consumers.
    pub consumers: usize,
    /// Connections (0: one per producer and per consumer).
    pub connections: usize,
    /// Body size in bytes.
    pub size: usize,
    /// Bodies are JSON documents of `size` bytes (PerfTest's
    /// `--json-body`); the producer's clock goes in a header.
    pub json_body: bool,
    /// Messages per second per producer (0: unlimited).
    pub rate: f64,
    /// Messages per second per consumer (0: unlimited).
    pub consumer_rate: f64,
    /// Confirm window per producer (0: no confirms).
    pub confirm: usize,
    /// Publish with mandatory.
    pub mandatory: bool,
    /// Persistent messages, durable queues.
    pub persistent: bool,
    /// Consume without acks.
    pub auto_ack: bool,
    /// Prefetch per consumer (manual acks; 0: unlimited).
    pub prefetch: u16,
    /// Ack with multiple every N messages (1: each message).
    pub multi_ack_every: u64,
    /// The exchange, queues and routing key.
    pub topology: Topology,
    /// Use the exchange and queues that exist instead of declaring them
    /// (PerfTest's `--predeclared`); those are never deleted.
    pub predeclared: bool,
    /// Declare classic queues auto-delete, and delete the queues this run
    /// declared when it ends (PerfTest's `--auto-delete`, default true);
    /// false keeps them.
    pub auto_delete: bool,
    /// The queues' type.
    pub queue_type: QueueType,
    /// Extra queue arguments.
    pub queue_args: Vec<(String, String)>,
    /// Messages per producer (`None`: no limit).
    pub producer_messages: Option<u64>,
    /// Messages per consumer (`None`: no limit).
    pub consumer_messages: Option<u64>,
    /// How long to run (`None`: until the message limits, or Ctrl-C).
    pub duration: Option<Duration>,
    /// Time between report lines.
    pub interval: Duration,
    /// Where to write the report lines as CSV (PerfTest's format).
    pub output_file: Option<PathBuf>,
    /// Where to write the SVG picture of the run.
    pub plot: Option<PathBuf>,
    /// The runtime.
    pub rt: Rt,
}

impl LoadConfig {
    /// The size of the bodies sent.
    pub fn body_size(&self) -> usize {
        if self.json_body {
            self.size
        } else {
            crate::body::effective_size(self.size)
        }
    }

    /// The arguments of each queue declare.
    fn queue_arguments(&self) -> Vec<(String, FieldValue)> {
        let mut arguments = Vec::new();
        if self.queue_type != QueueType::Classic {
            arguments.push(("x-queue-type".to_string(), self.queue_type.name().into()));
        }
        for (key, value) in &self.queue_args {
            let value: FieldValue = if let Ok(n) = value.parse::<i64>() {
                n.into()
            } else if let Ok(b) = value.parse::<bool>() {
                b.into()
            } else {
                value.as_str().into()
            };
            arguments.push((key.clone(), value));
        }
        arguments
    }

    /// Deliveries after which the consumers are done when only producers
    /// have a limit (`None`: no such limit).
    fn expected_deliveries(&self) -> Option<u64> {
        let per_producer = self.producer_messages?;
        (self.consumer_messages.is_none() && self.consumers > 0).then(|| {
            self.topology
                .expected_deliveries(self.producers, self.consumers, per_producer)
        })
    }
}

/// Ctrl-C, as the run sees it: [`Interrupt::on_ctrl_c`] in the tool,
/// [`Interrupt::never`] when a program runs the load itself.
#[derive(Debug, Clone)]
pub struct Interrupt(watch::Receiver<bool>);

impl Interrupt {
    /// Never interrupted.
    pub fn never() -> Interrupt {
        Interrupt(watch::channel(false).1)
    }

    /// Interrupted by the first SIGINT (Ctrl-C): the run stops, prints its
    /// summary and cleans up. A second SIGINT exits the process at once
    /// with status 130, without cleaning up. Call it on the runtime that
    /// runs the load; from then on SIGINT no longer kills the process by
    /// itself.
    pub fn on_ctrl_c() -> Result<Interrupt> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut sigint = signal(SignalKind::interrupt())
            .map_err(|e| format!("cannot listen for Ctrl-C (SIGINT): {e}"))?;
        let (interrupted, interrupt) = watch::channel(false);
        tokio::spawn(async move {
            if sigint.recv().await.is_none() {
                return;
            }
            eprintln!(
                "pika-perf: Ctrl-C: stopping; the summary follows once the queues are deleted (Ctrl-C again quits at once)"
            );
            let _ = interrupted.send(true);
            if sigint.recv().await.is_some() {
                eprintln!("pika-perf: second Ctrl-C: quitting without deleting the queues");
                std::process::exit(130);
            }
        });
        Ok(Interrupt(interrupt))
    }

    /// True once interrupted.
    pub fn is_interrupted(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once interrupted (never, for [`Interrupt::never`]).
    pub async fn interrupted(&mut self) {
        if self.0.wait_for(|interrupted| *interrupted).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Runs the load on a runtime of its own, printing as it goes; Ctrl-C
/// ends it early (see [`Interrupt::on_ctrl_c`]).
pub fn run_blocking(config: &LoadConfig, json: bool) -> Result<LoadReport> {
    config.rt.build()?.block_on(async {
        let interrupt = Interrupt::on_ctrl_c()?;
        run(config, json, interrupt).await
    })
}

/// Runs the load on the current runtime: a line per interval (on stderr
/// with `json`), then the summary (or, with `json`, one JSON line on
/// stdout); writes the CSV file and the plot when asked.
///
/// The queues this run declared are deleted at the end (unless
/// `auto_delete` is off), after a failure too.
pub async fn run(config: &LoadConfig, json: bool, interrupt: Interrupt) -> Result<LoadReport> {
    let total = config.producers + config.consumers;
    let k = if config.connections == 0 {
        total
    } else {
        config.connections.min(total)
    };
    let mut connections = Vec::with_capacity(k);
    for index in 0..k {
        connections.push(connect(config, index).await?);
    }
    let mut declared = Vec::new();
    let measured = async {
        declare_topology(&connections[0], config, &mut declared).await?;
        drive(config, json, &connections, k, interrupt).await
    };
    let outcome = measured.await;
    let cleanup = cleanup(config, &declared, &connections);
    let cleaned = match tokio::time::timeout(CLEANUP_TIMEOUT, cleanup).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "deleting the queues and closing took longer than {CLEANUP_TIMEOUT:?}: is a connection blocked by the broker (memory or disk alarm)? Delete the queues by hand: {}",
            queue_names(&declared)
        )
        .into()),
    };
    let (report, reporter, latency) = match (outcome, cleaned) {
        (Ok(measured), Ok(())) => measured,
        (Err(error), Ok(())) => return Err(error),
        (Ok(_), Err(error)) => return Err(error),
        (Err(error), Err(cleanup_error)) => {
            eprintln!("pika-perf: after the failure, cleaning up failed too: {cleanup_error}");
            return Err(error);
        }
    };
    reporter.summary(&report, &latency.0, &latency.1);
    if let Some(path) = &config.plot {
        let title = format!("pika-perf, id: {}", config.id);
        plot::write_svg(path, &title, &plot_subtitle(config), reporter.samples())?;
    }
    Ok(report)
}

/// The run's set-up in a few words, under the plot's title.
fn plot_subtitle(config: &LoadConfig) -> String {
    let mut parts = vec![
        format!("producers {}", config.producers),
        format!("consumers {}", config.consumers),
        format!("{} B", config.body_size()),
    ];
    if config.rate > 0.0 {
        parts.push(format!("{} msg/s each", config.rate));
    }
    parts.push(match config.confirm {
        0 => "no confirms".to_string(),
        window => format!("confirms ({window} in flight)"),
    });
    parts.push(if config.auto_ack {
        "auto-ack".to_string()
    } else {
        format!("prefetch {}", config.prefetch)
    });
    if config.persistent {
        parts.push("persistent".to_string());
    }
    let queues = &config.topology.queues;
    parts.push(match queues.as_slice() {
        [one] => format!("queue {one} ({})", config.queue_type.name()),
        _ => format!("{} {} queues", queues.len(), config.queue_type.name()),
    });
    parts.join(", ")
}

/// The whole run's consumer and confirm latencies.
type RunLatencies = (hdrhistogram::Histogram<u64>, hdrhistogram::Histogram<u64>);

/// Starts the consumers and producers, reports each interval until the
/// run ends, stops them.
async fn drive(
    config: &LoadConfig,
    json: bool,
    connections: &[Connection],
    k: usize,
    mut interrupt: Interrupt,
) -> Result<(LoadReport, Reporter, RunLatencies)> {
    let stats = Arc::new(Stats::default());
    let stop_producers = Arc::new(AtomicBool::new(false));
    let (stop_consumers, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    if config.confirm == 0 && config.mandatory {
        for connection in connections {
            tasks.spawn(count_returns(connection.clone(), stats.clone()));
        }
    }
    let mut consumers = JoinSet::new();
    for j in 0..config.consumers {
        let messages = start_consumer(&connections[(config.producers + j) % k], config, j).await?;
        let consumer = consumer::ConsumerConfig {
            auto_ack: config.auto_ack,
            multi_ack_every: config.multi_ack_every,
            rate: config.consumer_rate,
            count: config.consumer_messages,
            clock_in_header: config.json_body,
        };
        consumers.spawn(consumer::run(
            messages,
            consumer,
            stats.clone(),
            stopped.clone(),
        ));
    }
    let json_bodies = config.json_body.then(|| {
        Arc::new(crate::body::json_bodies(
            config.size,
            JSON_BODY_COUNT,
            crate::body::now_ns(),
        ))
    });
    let mut producers = JoinSet::new();
    for i in 0..config.producers {
        let channel = connections[i % k]
            .channel()
            .publisher_confirms(config.confirm > 0)
            .await?;
        let exchange = if config.topology.uses_default_exchange() {
            channel.default_exchange()
        } else {
            channel.get_exchange(&config.topology.exchange).await?
        };
        let producer = producer::ProducerConfig {
            routing_key: config.topology.producer_routing_key(i).to_string(),
            size: config.size,
            json_bodies: json_bodies.clone(),
            rate: config.rate,
            confirm: config.confirm,
            mandatory: config.mandatory,
            persistent: config.persistent,
            count: config.producer_messages,
        };
        producers.spawn(producer::run(
            exchange,
            producer,
            stats.clone(),
            stop_producers.clone(),
        ));
    }

    let mut reporter = Reporter::new(config, json)?;
    reporter.header(config, k);
    let timer = Timer::start();
    let started = Instant::now();
    let expected = config.expected_deliveries();
    let mut checks = tokio::time::interval(CHECK_EVERY);
    let mut next_line = started + config.interval;
    let mut consumer_latency = latency_histogram();
    let mut confirm_latency = latency_histogram();
    let mut last_progress = (stats.counts(), Instant::now());
    let mut consumers_done = 0usize;
    let mut failure = None;
    let ended_by = loop {
        let mut interrupted = false;
        tokio::select! {
            _ = checks.tick() => {}
            () = interrupt.interrupted() => interrupted = true,
            Some(result) = producers.join_next() => {
                if let Err(e) = result.map_err(crate::Error::from).and_then(|r| r) {
                    failure = Some(e);
                    break EndReason::MessageLimit;
                }
                continue;
            }
            Some(result) = consumers.join_next() => {
                if let Err(e) = result.map_err(crate::Error::from).and_then(|r| r) {
                    failure = Some(e);
                    break EndReason::MessageLimit;
                }
                consumers_done += 1;
                continue;
            }
        }
        let counts = stats.counts();
        if counts != last_progress.0 {
            last_progress = (counts, Instant::now());
        }
        let limits_reached = (config.producer_messages.is_some()
            || config.consumer_messages.is_some())
            && (config.producer_messages.is_none() || producers.is_empty())
            && if config.consumer_messages.is_some() {
                consumers_done == config.consumers
            } else {
                let received_all = expected.is_none_or(|expected| counts.received >= expected);
                let stalled = last_progress.1.elapsed() > IDLE_TIMEOUT;
                received_all || stalled
            };
        let ended_by = if interrupted {
            Some(EndReason::Interrupted)
        } else if config.duration.is_some_and(|d| started.elapsed() >= d) {
            Some(EndReason::TimeLimit)
        } else if limits_reached {
            Some(EndReason::MessageLimit)
        } else {
            None
        };
        if ended_by.is_some() || Instant::now() >= next_line {
            let consumer_interval = stats.consumer_latency.take();
            let confirm_interval = stats.confirm_latency.take();
            let _ = consumer_latency.add(&consumer_interval);
            let _ = confirm_latency.add(&confirm_interval);
            reporter.tick(
                started.elapsed(),
                counts,
                &consumer_interval,
                &confirm_interval,
            )?;
            next_line += config.interval;
        }
        if let Some(reason) = ended_by {
            break reason;
        }
    };
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
    tasks.abort_all();
    if let Some(error) = failure {
        return Err(error);
    }
    let _ = consumer_latency.add(stats.consumer_latency.take());
    let _ = confirm_latency.add(stats.confirm_latency.take());
    let report = LoadReport::new(
        config,
        &RunTotals {
            connections: k,
            elapsed,
            counts: stats.counts(),
            consumer_latency: &consumer_latency,
            confirm_latency: &confirm_latency,
            ended_by,
        },
    );
    Ok((report, reporter, (consumer_latency, confirm_latency)))
}

/// Opens connection `index`: to URI `index % uris`, named after the test
/// id so that `rabbitmqctl list_connections name` shows whose it is.
async fn connect(config: &LoadConfig, index: usize) -> Result<Connection> {
    let uri = &config.uris[index % config.uris.len()];
    let options = ConnectOptions::from_url(uri)
        .map_err(|e| format!("the URI {uri:?} is not an AMQP URI: {e}"))?
        .connection_name(format!("pika-perf {} #{index}", config.id));
    pika::connect_with(options)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", redact(uri)).into())
}

/// `uri` without its password, for messages.
fn redact(uri: &str) -> String {
    match (uri.find("://"), uri.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &uri[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &uri[..scheme + 3], &uri[at..]),
                None => uri.to_string(),
            }
        }
        _ => uri.to_string(),
    }
}

/// Declares the exchange (unless it is the default one or an `amq.` one,
/// or exists with `--predeclared`), then each queue (unless it exists
/// with `--predeclared`) and its binding. The queues declared go into
/// `declared`, so that they are deleted even when a later step fails.
async fn declare_topology(
    connection: &Connection,
    config: &LoadConfig,
    declared: &mut Vec<Queue>,
) -> Result<()> {
    let topology = &config.topology;
    let setup = connection.channel().publisher_confirms(false).await?;
    let exchange = topology.exchange.as_str();
    if !topology.uses_default_exchange() {
        let exists = exchange.starts_with("amq.")
            || (config.predeclared && exchange_exists(connection, exchange).await?);
        if !exists {
            setup
                .declare_exchange(exchange)
                .kind(ExchangeType::from(topology.exchange_type.as_str()))
                .durable(true)
                .await
                .map_err(|e| {
                    format!(
                        "cannot declare the exchange {exchange:?} as {}: {e}",
                        topology.exchange_type
                    )
                })?;
        }
    }
    let arguments = config.queue_arguments();
    for name in &topology.queues {
        let queue = if config.predeclared && queue_exists(connection, name).await? {
            setup.get_queue(name).await?
        } else {
            let mut declare = setup
                .declare_queue(name)
                .durable(config.persistent || config.queue_type != QueueType::Classic)
                .auto_delete(config.auto_delete && config.queue_type == QueueType::Classic);
            for (key, value) in &arguments {
                declare = declare.argument(key, value.clone());
            }
            let queue = declare.await.map_err(|e| {
                format!(
                    "cannot declare the queue {name:?}: {e}{}",
                    if config.predeclared {
                        ""
                    } else {
                        "; if it exists with other arguments, delete it or add -p (--predeclared) to use it as it is"
                    }
                )
            })?;
            declared.push(queue.clone());
            queue
        };
        if !topology.uses_default_exchange() {
            queue
                .bind(exchange, topology.binding_key(name))
                .await
                .map_err(|e| format!("cannot bind the queue {name:?} to {exchange:?}: {e}"))?;
        }
    }
    Ok(())
}

/// Whether the exchange exists: a passive declare on a channel of its own
/// (a 404 closes the channel).
async fn exchange_exists(connection: &Connection, name: &str) -> Result<bool> {
    let probe = connection.channel().publisher_confirms(false).await?;
    not_found_is_false(probe.get_exchange(name).await.map(drop))
}

/// Whether the queue exists: a passive declare on a channel of its own.
async fn queue_exists(connection: &Connection, name: &str) -> Result<bool> {
    let probe = connection.channel().publisher_confirms(false).await?;
    not_found_is_false(probe.get_queue(name).await.map(drop))
}

fn not_found_is_false(outcome: pika::Result<()>) -> Result<bool> {
    match outcome {
        Ok(()) => Ok(true),
        Err(e) if e.reply_code() == Some(pika::ReplyCode::NOT_FOUND) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Opens consumer `index`'s channel and starts its iterator.
async fn start_consumer(
    connection: &Connection,
    config: &LoadConfig,
    index: usize,
) -> Result<pika::QueueIterator> {
    let channel = connection.channel().publisher_confirms(false).await?;
    if !config.auto_ack {
        channel.set_qos().prefetch_count(config.prefetch).await?;
    }
    let name = config.topology.consumer_queue(index);
    let queue = channel
        .get_queue(name)
        .await
        .map_err(|e| format!("consumer {index} cannot find its queue {name:?}: {e}"))?;
    let mut iterate = queue.iterator().no_ack(config.auto_ack);
    if config.queue_type == QueueType::Stream {
        iterate = iterate.argument("x-stream-offset", "next");
    }
    Ok(iterate.await?)
}

/// Deletes the queues this run declared (when `auto_delete`), then closes
/// the connections.
async fn cleanup(
    config: &LoadConfig,
    declared: &[Queue],
    connections: &[Connection],
) -> Result<()> {
    let mut failure: Option<crate::Error> = None;
    if config.auto_delete {
        for queue in declared {
            if let Err(e) = queue.delete().if_unused(false).if_empty(false).await {
                failure.get_or_insert(
                    format!("cannot delete the queue {:?}: {e}", queue.name()).into(),
                );
            }
        }
    }
    for connection in connections {
        if let Err(e) = connection.close().await {
            failure.get_or_insert(e.into());
        }
    }
    failure.map_or(Ok(()), Err)
}

fn queue_names(queues: &[Queue]) -> String {
    let names: Vec<&str> = queues.iter().map(|q| q.name()).collect();
    names.join(", ")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_left_out_of_messages() {
        assert_eq!(
            redact("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("amqp://127.0.0.1/"), "amqp://127.0.0.1/");
        assert_eq!(redact("amqp://user@host/"), "amqp://user@host/");
    }
}
