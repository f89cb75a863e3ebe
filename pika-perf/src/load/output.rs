//! What a load run prints: a header, a line per second, and a summary
//! with a latency histogram; or, with `--json`, one JSON line.

use std::io::Write;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::stats::Counts;
use super::LoadConfig;
use crate::rusage::Elapsed;

/// One load run, as printed on one JSON line with `--json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    /// Always `pika`.
    pub client: &'static str,
    /// Always `load`.
    pub mode: &'static str,
    /// Producers.
    pub producers: usize,
    /// Consumers.
    pub consumers: usize,
    /// Connections.
    pub connections: usize,
    /// Body size in bytes.
    pub size: usize,
    /// `classic`, `quorum` or `stream`.
    pub queue_type: &'static str,
    /// Seconds the run took.
    pub duration_s: f64,
    /// Messages published.
    pub sent: u64,
    /// Publishes acked.
    pub confirmed: u64,
    /// Publishes nacked or left without an answer.
    pub nacked: u64,
    /// Mandatory messages returned.
    pub returned: u64,
    /// Messages consumed.
    pub received: u64,
    /// Published messages per second.
    pub sent_per_s: f64,
    /// Consumed messages per second.
    pub received_per_s: f64,
    /// User CPU seconds of this process.
    pub cpu_user_s: f64,
    /// System CPU seconds of this process.
    pub cpu_sys_s: f64,
    /// Median latency, producer to consumer, microseconds.
    pub p50_us: Option<u64>,
    /// 95th percentile latency.
    pub p95_us: Option<u64>,
    /// 99th percentile latency.
    pub p99_us: Option<u64>,
    /// 99.9th percentile latency.
    pub p999_us: Option<u64>,
    /// Largest latency.
    pub max_us: Option<u64>,
}

impl LoadReport {
    /// The report of a run.
    pub fn new(
        config: &LoadConfig,
        connections: usize,
        elapsed: Elapsed,
        counts: Counts,
        latency: &Histogram<u64>,
    ) -> LoadReport {
        let seconds = elapsed.wall.as_secs_f64().max(1e-9);
        let q = |quantile: f64| (!latency.is_empty()).then(|| latency.value_at_quantile(quantile));
        LoadReport {
            client: "pika",
            mode: "load",
            producers: config.producers,
            consumers: config.consumers,
            connections,
            size: crate::body::effective_size(config.size),
            queue_type: config.queue_type.name(),
            duration_s: seconds,
            sent: counts.sent,
            confirmed: counts.confirmed,
            nacked: counts.nacked,
            returned: counts.returned,
            received: counts.received,
            sent_per_s: (counts.sent as f64 / seconds).round(),
            received_per_s: (counts.received as f64 / seconds).round(),
            cpu_user_s: elapsed.cpu.user.as_secs_f64(),
            cpu_sys_s: elapsed.cpu.sys.as_secs_f64(),
            p50_us: q(0.5),
            p95_us: q(0.95),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: (!latency.is_empty()).then(|| latency.max()),
        }
    }
}

/// Prints a run for a person (stdout), or per-second lines on stderr and
/// one JSON line on stdout.
#[derive(Debug)]
pub struct Reporter {
    json: bool,
    last: Counts,
    last_at: Duration,
}

impl Reporter {
    /// A reporter; `json` as `--json`.
    pub fn new(json: bool) -> Reporter {
        Reporter {
            json,
            last: Counts::default(),
            last_at: Duration::ZERO,
        }
    }

    fn out(&self) -> Box<dyn Write> {
        if self.json {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::stdout())
        }
    }

    /// What runs, and the column heads.
    pub fn header(&self, config: &LoadConfig, queue: &str, connections: usize) {
        let mut out = self.out();
        let rate = match config.rate {
            0 => "unlimited".to_string(),
            r => format!("{r} msg/s each"),
        };
        let confirms = match config.confirm {
            0 => "no confirms".to_string(),
            w => format!("confirms, window {w}"),
        };
        let acks = if config.auto_ack {
            "auto-ack".to_string()
        } else {
            format!(
                "manual acks, prefetch {}, multiple every {}",
                config.prefetch, config.multi_ack_every
            )
        };
        let _ = writeln!(
            out,
            "pika-perf: producers {}, consumers {}, connections {}; {} B, {rate}, {confirms}; {acks}; queue {queue} ({})",
            config.producers,
            config.consumers,
            connections,
            crate::body::effective_size(config.size),
            config.queue_type.name(),
        );
        let _ = writeln!(
            out,
            "{:>7} {:>10} {:>11} {:>7} {:>8} {:>10} {:>9} {:>9} {:>9}",
            "time",
            "sent/s",
            "confirmed/s",
            "nacked",
            "returned",
            "received/s",
            "p50 µs",
            "p99 µs",
            "max µs"
        );
    }

    /// The line for the second that ended at `at`.
    pub fn tick(&mut self, at: Duration, counts: Counts, latency: &Histogram<u64>) {
        let delta = counts.since(self.last);
        let seconds = (at - self.last_at).as_secs_f64().max(1e-9);
        self.last = counts;
        self.last_at = at;
        let rate = |n: u64| (n as f64 / seconds).round() as u64;
        let lat = |q: f64| {
            if latency.is_empty() {
                "-".to_string()
            } else {
                latency.value_at_quantile(q).to_string()
            }
        };
        let max = if latency.is_empty() {
            "-".to_string()
        } else {
            latency.max().to_string()
        };
        let _ = writeln!(
            self.out(),
            "{:>6.1}s {:>10} {:>11} {:>7} {:>8} {:>10} {:>9} {:>9} {:>9}",
            at.as_secs_f64(),
            rate(delta.sent),
            rate(delta.confirmed),
            delta.nacked,
            delta.returned,
            rate(delta.received),
            lat(0.5),
            lat(0.99),
            max
        );
    }

    /// The summary: totals, rates, CPU, latency percentiles and their
    /// distribution; with `json`, the JSON line instead.
    pub fn summary(&self, report: &LoadReport, latency: &Histogram<u64>) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string(report).expect("a report serializes")
            );
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "\nsummary over {:.1} s", report.duration_s);
        let _ = writeln!(
            out,
            "  sent      {:>12}  {:>10} msg/s",
            report.sent, report.sent_per_s
        );
        let _ = writeln!(
            out,
            "  confirmed {:>12}  nacked {}, returned {}",
            report.confirmed, report.nacked, report.returned
        );
        let _ = writeln!(
            out,
            "  received  {:>12}  {:>10} msg/s",
            report.received, report.received_per_s
        );
        let _ = writeln!(
            out,
            "  cpu       user {:.2} s, sys {:.2} s",
            report.cpu_user_s, report.cpu_sys_s
        );
        if latency.is_empty() {
            let _ = writeln!(out, "  latency   no messages received");
            return;
        }
        let _ = writeln!(out, "  latency (µs, producer's clock to consumer)");
        for (name, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("p99.9", 0.999)] {
            let _ = writeln!(out, "    {name:<6}{:>10}", latency.value_at_quantile(q));
        }
        let _ = writeln!(out, "    {:<6}{:>10}", "max", latency.max());
        let _ = writeln!(out, "  distribution");
        for line in distribution(latency) {
            let _ = writeln!(out, "    {line}");
        }
    }
}

/// The histogram in power-of-two buckets of microseconds, with bars.
pub fn distribution(latency: &Histogram<u64>) -> Vec<String> {
    let total = latency.len().max(1);
    let mut lines = Vec::new();
    let mut low = 0u64;
    let mut high = 1u64;
    while low <= latency.max() {
        let count = latency.count_between(low, high - 1);
        if count > 0 || !lines.is_empty() {
            let share = count as f64 / total as f64;
            let bar = "#".repeat((share * 50.0).round() as usize);
            lines.push(format!(
                "{:>9} - {:<9} {:>10} {:>6.2}% {bar}",
                low,
                high - 1,
                count,
                share * 100.0
            ));
        }
        low = high;
        high *= 2;
    }
    lines
}
