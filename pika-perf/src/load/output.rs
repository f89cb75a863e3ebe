//! What a load run prints and writes: a header, a line per interval (and,
//! with `-o`, the same line in PerfTest's CSV format), then a summary with
//! a latency histogram and PerfTest's summary lines; or, with `--json`,
//! one JSON line.

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::stats::Counts;
use super::LoadConfig;
use crate::rusage::Elapsed;
use crate::Result;

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// `-z`: the time was up.
    TimeLimit,
    /// `-C` / `-D`: the producers sent and the consumers received what
    /// they were to (or the consumers stopped getting any for 10 s).
    MessageLimit,
    /// Ctrl-C (SIGINT).
    Interrupted,
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EndReason::TimeLimit => "the time limit",
            EndReason::MessageLimit => "the message limits",
            EndReason::Interrupted => "Ctrl-C",
        })
    }
}

/// One load run, as printed on one JSON line with `--json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadReport {
    /// The test id (`--id`).
    pub id: String,
    /// Always `pika`.
    pub client: &'static str,
    /// Always `load`.
    pub mode: &'static str,
    /// Why the run ended.
    pub ended_by: EndReason,
    /// Producers.
    pub producers: usize,
    /// Consumers.
    pub consumers: usize,
    /// Connections.
    pub connections: usize,
    /// Queues.
    pub queues: usize,
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
    /// Median confirm latency (publish to the broker's ack), microseconds.
    pub confirm_p50_us: Option<u64>,
    /// 99th percentile confirm latency.
    pub confirm_p99_us: Option<u64>,
}

/// What went into a report besides the configuration.
#[derive(Debug, Clone)]
pub struct RunTotals<'a> {
    /// Connections opened.
    pub connections: usize,
    /// Wall clock and CPU time of the timed region.
    pub elapsed: Elapsed,
    /// The counters at the end.
    pub counts: Counts,
    /// Every consumer latency of the run.
    pub consumer_latency: &'a Histogram<u64>,
    /// Every confirm latency of the run.
    pub confirm_latency: &'a Histogram<u64>,
    /// Why the run ended.
    pub ended_by: EndReason,
}

impl LoadReport {
    /// The report of a run.
    pub fn new(config: &LoadConfig, totals: &RunTotals<'_>) -> LoadReport {
        let seconds = totals.elapsed.wall.as_secs_f64().max(1e-9);
        let counts = totals.counts;
        let latency = totals.consumer_latency;
        let q = |quantile: f64| (!latency.is_empty()).then(|| latency.value_at_quantile(quantile));
        let confirm = totals.confirm_latency;
        let c = |quantile: f64| (!confirm.is_empty()).then(|| confirm.value_at_quantile(quantile));
        LoadReport {
            id: config.id.clone(),
            client: "pika",
            mode: "load",
            ended_by: totals.ended_by,
            producers: config.producers,
            consumers: config.consumers,
            connections: totals.connections,
            queues: config.topology.queues.len(),
            size: config.body_size(),
            queue_type: config.queue_type.name(),
            duration_s: seconds,
            sent: counts.sent,
            confirmed: counts.confirmed,
            nacked: counts.nacked,
            returned: counts.returned,
            received: counts.received,
            sent_per_s: (counts.sent as f64 / seconds).round(),
            received_per_s: (counts.received as f64 / seconds).round(),
            cpu_user_s: totals.elapsed.cpu.user.as_secs_f64(),
            cpu_sys_s: totals.elapsed.cpu.sys.as_secs_f64(),
            p50_us: q(0.5),
            p95_us: q(0.95),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: (!latency.is_empty()).then(|| latency.max()),
            confirm_p50_us: c(0.5),
            confirm_p99_us: c(0.99),
        }
    }
}

/// Latency percentiles of one interval or run, microseconds: the five
/// PerfTest writes (min, median, 75th, 95th, 99th) and the largest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyStats {
    /// The smallest.
    pub min: u64,
    /// The median.
    pub p50: u64,
    /// The 75th percentile.
    pub p75: u64,
    /// The 95th percentile.
    pub p95: u64,
    /// The 99th percentile.
    pub p99: u64,
    /// The largest.
    pub max: u64,
}

impl LatencyStats {
    /// The percentiles of `histogram`; `None` when it is empty.
    pub fn of(histogram: &Histogram<u64>) -> Option<LatencyStats> {
        (!histogram.is_empty()).then(|| LatencyStats {
            min: histogram.min(),
            p50: histogram.value_at_quantile(0.5),
            p75: histogram.value_at_quantile(0.75),
            p95: histogram.value_at_quantile(0.95),
            p99: histogram.value_at_quantile(0.99),
            max: histogram.max(),
        })
    }
}

/// One reporting interval (`-i`): rates and latencies, as printed, written
/// to the CSV file and drawn by `--plot`.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalSample {
    /// Seconds from the start of the run to the end of the interval.
    pub at_s: f64,
    /// Messages published per second.
    pub sent_per_s: f64,
    /// Publishes confirmed per second.
    pub confirmed_per_s: f64,
    /// Publishes nacked per second.
    pub nacked_per_s: f64,
    /// Messages returned per second.
    pub returned_per_s: f64,
    /// Messages consumed per second.
    pub received_per_s: f64,
    /// Consumer latency in the interval (`None`: nothing received).
    pub consumer_latency: Option<LatencyStats>,
    /// Confirm latency in the interval (`None`: nothing confirmed).
    pub confirm_latency: Option<LatencyStats>,
}

/// Which columns of PerfTest's CSV format a run fills; the others stay
/// empty, as PerfTest leaves them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsvColumns {
    /// There are producers: `published`.
    pub published: bool,
    /// There are consumers: `received` and consumer latency.
    pub received: bool,
    /// Producers publish with `mandatory`: `returned`.
    pub returned: bool,
    /// Producers use confirms: `confirmed`, `nacked` and confirm latency.
    pub confirmed: bool,
}

impl CsvColumns {
    /// The columns `config` fills.
    pub fn of(config: &LoadConfig) -> CsvColumns {
        CsvColumns {
            published: config.producers > 0,
            received: config.consumers > 0,
            returned: config.mandatory,
            confirmed: config.confirm > 0,
        }
    }
}

/// The first line of the CSV file: PerfTest's header (`-o`), latencies in
/// microseconds.
pub const CSV_HEADER: &str = "id,time (s),published (msg/s),returned (msg/s),\
confirmed (msg/s),nacked (msg/s),received (msg/s),\
min consumer latency (µs),median consumer latency (µs),75th p. consumer latency (µs),\
95th p. consumer latency (µs),99th p. consumer latency (µs),\
min confirm latency (µs),median confirm latency (µs),75th p. confirm latency (µs),\
95th p. confirm latency (µs),99th p. confirm latency (µs)";

/// A rate as PerfTest prints it: `0`, two decimals below 1, one below 10,
/// else a whole number (rounded down).
///
/// ```
/// use pika_perf::load::output::format_rate;
/// assert_eq!(format_rate(0.0), "0");
/// assert_eq!(format_rate(0.5), "0.50");
/// assert_eq!(format_rate(2.25), "2.2");
/// assert_eq!(format_rate(12345.9), "12345");
/// ```
pub fn format_rate(rate: f64) -> String {
    if rate == 0.0 {
        "0".to_string()
    } else if rate < 1.0 {
        format!("{rate:.2}")
    } else if rate < 10.0 {
        format!("{rate:.1}")
    } else {
        format!("{}", rate as u64)
    }
}

/// One CSV line (without the newline) for `sample`, in the order of
/// [`CSV_HEADER`]. An id with a comma or a quote is quoted.
pub fn csv_line(id: &str, sample: &IntervalSample, columns: CsvColumns) -> String {
    let rate = |value: f64, shown: bool| {
        if shown {
            format_rate(value)
        } else {
            String::new()
        }
    };
    let latency = |stats: Option<LatencyStats>, shown: bool| match stats.filter(|_| shown) {
        Some(s) => format!("{},{},{},{},{}", s.min, s.p50, s.p75, s.p95, s.p99),
        None => ",,,,".to_string(),
    };
    let published = columns.published;
    [
        csv_field(id),
        format!("{:.3}", sample.at_s),
        rate(sample.sent_per_s, published),
        rate(sample.returned_per_s, published && columns.returned),
        rate(sample.confirmed_per_s, published && columns.confirmed),
        rate(sample.nacked_per_s, published && columns.confirmed),
        rate(sample.received_per_s, columns.received),
        latency(sample.consumer_latency, columns.received),
        latency(sample.confirm_latency, published && columns.confirmed),
    ]
    .join(",")
}

/// `text` as one CSV field: quoted (with quotes doubled) when it holds a
/// comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// The CSV file of `-o`, written a line per interval and flushed each
/// time, so that a run that fails keeps what it measured.
#[derive(Debug)]
struct CsvFile {
    path: PathBuf,
    out: BufWriter<File>,
}

impl CsvFile {
    fn create(path: &Path) -> Result<CsvFile> {
        let file = File::create(path).map_err(|e| {
            format!(
                "cannot create the CSV file {}: {e}; check that its directory exists and is writable",
                path.display()
            )
        })?;
        let mut csv = CsvFile {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        };
        csv.write_line(CSV_HEADER)?;
        Ok(csv)
    }

    fn write_line(&mut self, line: &str) -> Result<()> {
        writeln!(self.out, "{line}")
            .and_then(|()| self.out.flush())
            .map_err(|e| {
                format!("cannot write to the CSV file {}: {e}", self.path.display()).into()
            })
    }
}

/// Prints a run for a person (stdout), or per-interval lines on stderr and
/// one JSON line on stdout; writes the CSV file; keeps the samples for
/// the plot.
#[derive(Debug)]
pub struct Reporter {
    json: bool,
    id: String,
    columns: CsvColumns,
    csv: Option<CsvFile>,
    last: Counts,
    last_at: Duration,
    samples: Vec<IntervalSample>,
}

impl Reporter {
    /// A reporter for `config`; `json` as `--json`. Creates the CSV file
    /// (`-o`) and writes its header.
    pub fn new(config: &LoadConfig, json: bool) -> Result<Reporter> {
        let csv = config
            .output_file
            .as_deref()
            .map(CsvFile::create)
            .transpose()?;
        Ok(Reporter {
            json,
            id: config.id.clone(),
            columns: CsvColumns::of(config),
            csv,
            last: Counts::default(),
            last_at: Duration::ZERO,
            samples: Vec::new(),
        })
    }

    fn out(&self) -> Box<dyn Write> {
        if self.json {
            Box::new(std::io::stderr())
        } else {
            Box::new(std::io::stdout())
        }
    }

    /// What runs, and the column heads.
    pub fn header(&self, config: &LoadConfig, connections: usize) {
        let mut out = self.out();
        let _ = writeln!(out, "id: {}, {}", self.id, describe(config, connections));
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

    /// The line for the interval that ended at `at`, on the terminal and
    /// in the CSV file.
    pub fn tick(
        &mut self,
        at: Duration,
        counts: Counts,
        consumer_latency: &Histogram<u64>,
        confirm_latency: &Histogram<u64>,
    ) -> Result<()> {
        let delta = counts.since(self.last);
        let seconds = (at - self.last_at).as_secs_f64().max(1e-9);
        self.last = counts;
        self.last_at = at;
        let rate = |n: u64| n as f64 / seconds;
        let sample = IntervalSample {
            at_s: at.as_secs_f64(),
            sent_per_s: rate(delta.sent),
            confirmed_per_s: rate(delta.confirmed),
            nacked_per_s: rate(delta.nacked),
            returned_per_s: rate(delta.returned),
            received_per_s: rate(delta.received),
            consumer_latency: LatencyStats::of(consumer_latency),
            confirm_latency: LatencyStats::of(confirm_latency),
        };
        let latency = |pick: fn(&LatencyStats) -> u64| {
            sample
                .consumer_latency
                .as_ref()
                .map_or("-".to_string(), |s| pick(s).to_string())
        };
        let _ = writeln!(
            self.out(),
            "{:>6.1}s {:>10.0} {:>11.0} {:>7} {:>8} {:>10.0} {:>9} {:>9} {:>9}",
            sample.at_s,
            sample.sent_per_s,
            sample.confirmed_per_s,
            delta.nacked,
            delta.returned,
            sample.received_per_s,
            latency(|s| s.p50),
            latency(|s| s.p99),
            latency(|s| s.max),
        );
        if let Some(csv) = &mut self.csv {
            csv.write_line(&csv_line(&self.id, &sample, self.columns))?;
        }
        self.samples.push(sample);
        Ok(())
    }

    /// The intervals so far.
    pub fn samples(&self) -> &[IntervalSample] {
        &self.samples
    }

    /// The summary: totals, rates, CPU, latency percentiles and their
    /// distribution, then PerfTest's summary lines (`id: ..., sending rate
    /// avg: ...`); with `json`, the JSON line instead.
    pub fn summary(
        &self,
        report: &LoadReport,
        consumer_latency: &Histogram<u64>,
        confirm_latency: &Histogram<u64>,
    ) {
        if self.json {
            println!(
                "{}",
                serde_json::to_string(report).expect("a report serializes")
            );
            return;
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "\nsummary over {:.1} s (ended by {})",
            report.duration_s, report.ended_by
        );
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
        if consumer_latency.is_empty() {
            let _ = writeln!(out, "  latency   no messages received");
        } else {
            let _ = writeln!(out, "  latency (µs, producer's clock to consumer)");
            for (name, q) in [("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("p99.9", 0.999)] {
                let _ = writeln!(
                    out,
                    "    {name:<6}{:>10}",
                    consumer_latency.value_at_quantile(q)
                );
            }
            let _ = writeln!(out, "    {:<6}{:>10}", "max", consumer_latency.max());
            let _ = writeln!(out, "  distribution");
            for line in distribution(consumer_latency) {
                let _ = writeln!(out, "    {line}");
            }
        }
        for line in perftest_summary(
            &report.id,
            report,
            self.columns,
            consumer_latency,
            confirm_latency,
        ) {
            let _ = writeln!(out, "{line}");
        }
    }
}

/// PerfTest's summary lines: `id: ID, sending rate avg: N msg/s`, the
/// receiving rate, and the consumer and confirm latencies as
/// `min/median/75th/95th/99th/max` in µs.
pub fn perftest_summary(
    id: &str,
    report: &LoadReport,
    columns: CsvColumns,
    consumer_latency: &Histogram<u64>,
    confirm_latency: &Histogram<u64>,
) -> Vec<String> {
    let latency = |histogram: &Histogram<u64>| match LatencyStats::of(histogram) {
        Some(s) => format!(
            "{}/{}/{}/{}/{}/{} µs",
            s.min, s.p50, s.p75, s.p95, s.p99, s.max
        ),
        None => "none".to_string(),
    };
    let seconds = report.duration_s;
    let mut lines = vec![
        format!(
            "id: {id}, sending rate avg: {} msg/s",
            format_rate(report.sent as f64 / seconds)
        ),
        format!(
            "id: {id}, receiving rate avg: {} msg/s",
            format_rate(report.received as f64 / seconds)
        ),
    ];
    if columns.received {
        lines.push(format!(
            "id: {id}, consumer latency min/median/75th/95th/99th/max {}",
            latency(consumer_latency)
        ));
    }
    if columns.published && columns.confirmed {
        lines.push(format!(
            "id: {id}, confirm latency min/median/75th/95th/99th/max {}",
            latency(confirm_latency)
        ));
    }
    lines
}

/// The run's set-up in one line, after the id.
fn describe(config: &LoadConfig, connections: usize) -> String {
    let rate = |rate: f64| match rate {
        r if r > 0.0 => format!("{r} msg/s each"),
        _ => "unlimited".to_string(),
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
    let topology = &config.topology;
    let exchange = if topology.uses_default_exchange() {
        "the default exchange".to_string()
    } else {
        format!(
            "exchange {} ({})",
            topology.exchange, topology.exchange_type
        )
    };
    let queues = match topology.queues.as_slice() {
        [one] => format!("queue {one}"),
        [first, .., last] => format!("queues {first} .. {last} ({})", topology.queues.len()),
        [] => "no queue".to_string(),
    };
    let end = match (
        config.duration,
        config.producer_messages,
        config.consumer_messages,
    ) {
        (None, None, None) => "runs until Ctrl-C".to_string(),
        (duration, producer, consumer) => {
            let mut limits = Vec::new();
            if let Some(d) = duration {
                limits.push(format!("{} s", d.as_secs_f64()));
            }
            if let Some(n) = producer {
                limits.push(format!("{n} messages per producer"));
            }
            if let Some(n) = consumer {
                limits.push(format!("{n} messages per consumer"));
            }
            format!("ends after {} or Ctrl-C", limits.join(", "))
        }
    };
    format!(
        "producers {}, consumers {}, connections {connections}; {} B{}, {}, consumers {}; {confirms}; {acks}; {exchange}; {queues} ({}); {end}",
        config.producers,
        config.consumers,
        config.body_size(),
        if config.json_body { " JSON" } else { "" },
        rate(config.rate),
        rate(config.consumer_rate),
        config.queue_type.name(),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> IntervalSample {
        IntervalSample {
            at_s: 1.0004,
            sent_per_s: 12345.6,
            confirmed_per_s: 12000.0,
            nacked_per_s: 0.0,
            returned_per_s: 0.5,
            received_per_s: 9.94,
            consumer_latency: Some(LatencyStats {
                min: 10,
                p50: 20,
                p75: 30,
                p95: 40,
                p99: 50,
                max: 60,
            }),
            confirm_latency: Some(LatencyStats {
                min: 1,
                p50: 2,
                p75: 3,
                p95: 4,
                p99: 5,
                max: 6,
            }),
        }
    }

    const ALL: CsvColumns = CsvColumns {
        published: true,
        received: true,
        returned: true,
        confirmed: true,
    };

    #[test]
    fn csv_lines_follow_perftests_columns() {
        assert_eq!(
            csv_line("test 1", &sample(), ALL),
            "test 1,1.000,12345,0.50,12000,0,9.9,10,20,30,40,50,1,2,3,4,5"
        );
        let columns = CSV_HEADER.split(',').count();
        assert_eq!(columns, 17);
        assert_eq!(csv_line("x", &sample(), ALL).split(',').count(), columns);
    }

    #[test]
    fn csv_lines_leave_empty_what_the_run_does_not_measure() {
        // No confirms, no mandatory (PerfTest's `-x 1 -y 2 -a`).
        let columns = CsvColumns {
            returned: false,
            confirmed: false,
            ..ALL
        };
        assert_eq!(
            csv_line("t", &sample(), columns),
            "t,1.000,12345,,,,9.9,10,20,30,40,50,,,,,"
        );
        // A consumer-only run, and an interval without deliveries.
        let consumer_only = CsvColumns {
            published: false,
            received: true,
            returned: false,
            confirmed: false,
        };
        let empty = IntervalSample {
            consumer_latency: None,
            received_per_s: 0.0,
            ..sample()
        };
        assert_eq!(
            csv_line("t", &empty, consumer_only),
            "t,1.000,,,,,0,,,,,,,,,,"
        );
        for line in [
            csv_line("t", &sample(), columns),
            csv_line("t", &empty, consumer_only),
        ] {
            assert_eq!(line.split(',').count(), 17, "{line}");
        }
    }

    #[test]
    fn ids_with_commas_or_quotes_are_quoted() {
        assert!(csv_line("a,b", &sample(), ALL).starts_with("\"a,b\",1.000,"));
        assert!(csv_line("say \"hi\"", &sample(), ALL).starts_with("\"say \"\"hi\"\"\","));
    }

    #[test]
    fn rates_are_formatted_as_perftest_does() {
        assert_eq!(format_rate(0.0), "0");
        assert_eq!(format_rate(0.256), "0.26");
        assert_eq!(format_rate(9.99), "10.0");
        assert_eq!(format_rate(10.9), "10");
        assert_eq!(format_rate(250_000.7), "250000");
    }
}
