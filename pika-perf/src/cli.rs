//! The command line: RabbitMQ PerfTest's flags for free-form load, and
//! `--scenario` for the fixed scenarios.
//!
//! Without `--scenario` the tool runs free-form load ([`crate::load`]) and
//! takes [PerfTest](https://perftest.rabbitmq.com/)'s short and long flags
//! where it has the concept, with PerfTest's meaning: a command line
//! written for PerfTest runs the same load with pika.
//!
//! ```text
//! # PerfTest's documentation's first example, and a CSV file and a picture:
//! pika-perf -x 1 -y 2 -u "throughput-test-1" -a --id "test 1" -h amqp://guest:guest@127.0.0.1:5672/%2f -z 10 -o run.csv --plot run.svg
//! # Confirms (100 in flight), persistent messages, prefetch 500, 30 s:
//! pika-perf -x 2 -y 4 -u "throughput-test-2" -c 100 -f persistent -q 500 -z 30
//! # 10 queues perf-test-1 .. perf-test-10, producers and consumers spread over them:
//! pika-perf -x 10 -y 10 --queue-pattern 'perf-test-%d' --queue-pattern-from 1 --queue-pattern-to 10 -r 100 -z 60
//! # Fill a queue and keep it (-ad false), then drain it with what exists (-p):
//! pika-perf -x 1 -y 0 -u backlog -ad false -C 100000
//! pika-perf -x 0 -y 1 -u backlog -p -D 100000
//! # Quorum queue with arguments, JSON bodies of 1 KiB, two brokers:
//! pika-perf -qq -qa x-max-length=100000,x-overflow=reject-publish --json-body -s 1024 -H amqp://a/%2f,amqp://b/%2f -z 20
//! ```
//!
//! A run ends at `-z` seconds, when the message limits (`-C`, `-D`) are
//! reached, or at Ctrl-C; without any of them it runs until Ctrl-C. Then
//! it prints a summary (with PerfTest's `id: ..., sending rate avg: ...`
//! lines) and deletes the queues it declared, unless `-ad false`.
//!
//! PerfTest's two-letter short flags (`-ad`, `-qa`, `-qp`, `-qpf`, `-qpt`,
//! `-jb`, `-qq`, `-sq`) are rewritten to their long names before parsing
//! ([`rewrite_two_letter_flags`]); `-h` is the URI, as in PerfTest, so
//! help is `--help` (or `-?`).
//!
//! The flags of pika-perf before it spoke PerfTest still work: `--url`,
//! `--n`, `--duration`, `--prefetch`, `--persistent`, `--mandatory`,
//! `--auto-ack`, `--queue-arg`.
//!
//! With `--scenario` it runs one fixed scenario and prints one JSON line:
//!
//! ```text
//! pika-perf --scenario consume --n 200000 --size 64 --rt ct --client raw
//! ```

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};

use crate::load::topology::{expand_queue_pattern, Topology};
use crate::load::{LoadConfig, QueueType};
use crate::scenario::{unique_name, ClientKind, Rt, Scenario, ScenarioConfig, DEFAULT_URL};

/// PerfTest's short flags of two or three letters, which clap cannot
/// parse, and the long flags they are rewritten to.
pub const TWO_LETTER_FLAGS: [(&str, &str); 8] = [
    ("-ad", "--auto-delete"),
    ("-qa", "--queue-args"),
    ("-qp", "--queue-pattern"),
    ("-qpf", "--queue-pattern-from"),
    ("-qpt", "--queue-pattern-to"),
    ("-jb", "--json-body"),
    ("-qq", "--quorum-queue"),
    ("-sq", "--stream-queue"),
];

/// Rewrites PerfTest's short flags of several letters ([`TWO_LETTER_FLAGS`])
/// to their long names, alone (`-ad false`) or with `=` (`-ad=false`).
/// Everything after `--` is left as it is.
///
/// ```
/// use pika_perf::cli::rewrite_two_letter_flags;
/// let argv = rewrite_two_letter_flags(["pika-perf", "-ad", "false", "-qa=x-max-length=10", "-a"]);
/// assert_eq!(argv, ["pika-perf", "--auto-delete", "false", "--queue-args=x-max-length=10", "-a"]);
/// ```
pub fn rewrite_two_letter_flags<I, T>(argv: I) -> Vec<OsString>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut after_separator = false;
    argv.into_iter()
        .map(|arg| {
            let arg: OsString = arg.into();
            if after_separator {
                return arg;
            }
            if arg == "--" {
                after_separator = true;
                return arg;
            }
            let Some(text) = arg.to_str() else {
                return arg;
            };
            for (short, long) in TWO_LETTER_FLAGS {
                if text == short {
                    return long.into();
                }
                if let Some(value) = text.strip_prefix(short).and_then(|v| v.strip_prefix('=')) {
                    return format!("{long}={value}").into();
                }
            }
            arg
        })
        .collect()
}

/// A message flag of PerfTest's `-f`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MessageFlag {
    /// Delivery mode 2, and durable queues.
    Persistent,
    /// Publish with mandatory: unroutable messages come back.
    Mandatory,
}

/// The examples at the end of `--help`.
const EXAMPLES: &str = "\
Examples (PerfTest's flags):
  pika-perf -x 1 -y 2 -u throughput-test-1 -a --id 'test 1' -h amqp://guest:guest@127.0.0.1:5672/%2f -z 10
  pika-perf -x 2 -y 4 -c 100 -f persistent -q 500 -z 30 -o run.csv --plot run.svg
  pika-perf -x 10 -y 10 --queue-pattern 'perf-test-%d' --queue-pattern-from 1 --queue-pattern-to 10 -r 100
  pika-perf -x 1 -y 0 -u backlog -ad false -C 100000      (fill a queue and keep it)
  pika-perf --scenario consume --n 200000 --client raw    (a fixed scenario, one JSON line)

Without -z, -C or -D the run goes on until Ctrl-C, which prints the summary and deletes the queues.";

/// Load tool for RabbitMQ and pika: free-form load with RabbitMQ
/// PerfTest's flags (the default), or a fixed scenario (`--scenario`)
/// measured the same way for pika, lapin, amqprs and a raw socket client.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "pika-perf",
    version,
    about,
    disable_help_flag = true,
    after_help = EXAMPLES
)]
pub struct Args {
    /// Print help (-h is the URI, as in PerfTest).
    #[arg(short = '?', long, action = ArgAction::Help)]
    help: Option<bool>,

    /// The broker's URI.
    #[arg(short = 'h', long = "uri", visible_alias = "url", default_value = DEFAULT_URL)]
    pub uri: String,

    /// Brokers' URIs, comma-separated; connections go round robin over
    /// them (replaces --uri).
    #[arg(
        short = 'H',
        long = "uris",
        value_delimiter = ',',
        value_name = "URI,..."
    )]
    pub uris: Vec<String>,

    /// Run this fixed scenario and print one JSON line (free-form load's
    /// flags other than -C/--n, -s, -h and --rt do not apply).
    #[arg(long, value_enum, help_heading = "Fixed scenarios")]
    pub scenario: Option<Scenario>,

    /// The client that runs a fixed scenario (lapin and amqprs need the
    /// cargo features of the same names).
    #[arg(long, value_enum, default_value_t = ClientKind::Pika, help_heading = "Fixed scenarios")]
    pub client: ClientKind,

    /// Messages each producer sends (0: no limit); in a scenario, the
    /// total (default 100000).
    #[arg(
        short = 'C',
        long = "pmessages",
        visible_alias = "n",
        alias = "count",
        value_name = "N"
    )]
    pub messages: Option<u64>,

    /// Messages each consumer takes before it stops (0: no limit).
    #[arg(short = 'D', long = "cmessages", value_name = "N")]
    pub consumer_messages: Option<u64>,

    /// Message body size in bytes (pika-perf's bodies are at least 16: a
    /// sequence number and a timestamp).
    #[arg(short = 's', long, default_value_t = 64)]
    pub size: usize,

    /// Bodies are random JSON documents of --size bytes (the timestamp
    /// goes in a header). PerfTest's -jb.
    #[arg(long)]
    pub json_body: bool,

    /// The tokio runtime: ct (current_thread) or mt (multi_thread, 2
    /// workers).
    #[arg(long, value_enum, default_value_t = Rt::Ct)]
    pub rt: Rt,

    /// rpc scenario: replies over direct reply-to instead of a callback queue.
    #[arg(long, help_heading = "Fixed scenarios")]
    pub direct_reply_to: bool,

    /// Scenarios of scale: the number of channels, queues, connections or
    /// producers (0: the scenario's default).
    #[arg(
        long,
        default_value_t = 0,
        value_name = "W",
        help_heading = "Fixed scenarios"
    )]
    pub width: u32,

    /// pika and raw: write at most about this many bytes to the socket at
    /// a time (0: the client's default).
    #[arg(
        long,
        default_value_t = 0,
        value_name = "BYTES",
        help_heading = "Fixed scenarios"
    )]
    pub write_batch: usize,

    /// Print one JSON line per run on stdout (the interval lines go to stderr).
    #[arg(long)]
    pub json: bool,

    /// Producers (one channel each).
    #[arg(short = 'x', long, default_value_t = 1)]
    pub producers: usize,

    /// Consumers (one channel each).
    #[arg(short = 'y', long, default_value_t = 1)]
    pub consumers: usize,

    /// Connections the producers' and consumers' channels are spread
    /// over, round robin (0: one connection per producer and per consumer,
    /// as PerfTest).
    #[arg(long, default_value_t = 0)]
    pub connections: usize,

    /// Publish rate limit per producer, messages per second (0: unlimited).
    #[arg(short = 'r', long, default_value_t = 0.0, value_name = "MSG/S")]
    pub rate: f64,

    /// Consume rate limit per consumer, messages per second (0: unlimited).
    #[arg(short = 'R', long, default_value_t = 0.0, value_name = "MSG/S")]
    pub consumer_rate: f64,

    /// Publisher confirms with at most this many unconfirmed messages per
    /// producer (0: no confirms).
    #[arg(short = 'c', long, default_value_t = 0, value_name = "WINDOW")]
    pub confirm: usize,

    /// Message flags: persistent, mandatory (repeatable, or comma-separated).
    #[arg(short = 'f', long = "flag", value_enum, value_delimiter = ',')]
    pub flags: Vec<MessageFlag>,

    /// Same as -f mandatory.
    #[arg(long)]
    pub mandatory: bool,

    /// Same as -f persistent.
    #[arg(long)]
    pub persistent: bool,

    /// Consume without acks.
    #[arg(short = 'a', long = "autoack", visible_alias = "auto-ack")]
    pub auto_ack: bool,

    /// Prefetch count per consumer with manual acks (0: unlimited;
    /// PerfTest's default is 0).
    #[arg(
        short = 'q',
        long = "qos",
        visible_alias = "prefetch",
        default_value_t = 1000
    )]
    pub prefetch: u16,

    /// Ack every N messages with multiple=true (0 or 1: one ack per message).
    #[arg(short = 'A', long, default_value_t = 1, value_name = "N")]
    pub multi_ack_every: u64,

    /// The queue (default: a fresh uniquely named one).
    #[arg(short = 'u', long)]
    pub queue: Option<String>,

    /// Several queues: a name with %d, numbered from
    /// --queue-pattern-from to --queue-pattern-to (e.g. 'perf-test-%d');
    /// producers and consumers go round robin over them. PerfTest's -qp.
    #[arg(long, value_name = "PATTERN", conflicts_with = "queue")]
    pub queue_pattern: Option<String>,

    /// The first number of --queue-pattern. PerfTest's -qpf.
    #[arg(long, value_name = "N")]
    pub queue_pattern_from: Option<u32>,

    /// The last number of --queue-pattern (included). PerfTest's -qpt.
    #[arg(long, value_name = "N")]
    pub queue_pattern_to: Option<u32>,

    /// The exchange (default: named after --type, e.g. `direct`; `-e ""`,
    /// `-e` alone or `-e amq.default`: the default exchange).
    #[arg(short = 'e', long, num_args = 0..=1, default_missing_value = "")]
    pub exchange: Option<String>,

    /// The exchange's type.
    #[arg(short = 't', long = "type", default_value = "direct")]
    pub exchange_type: String,

    /// The routing key and binding key (default: each queue's name).
    #[arg(short = 'k', long)]
    pub routing_key: Option<String>,

    /// Use the exchange and queues that exist instead of declaring them
    /// (they are never deleted).
    #[arg(short = 'p', long)]
    pub predeclared: bool,

    /// Declare classic queues auto-delete and delete the queues declared
    /// at the end (false: keep them). PerfTest's -ad.
    #[arg(
        long,
        value_name = "true|false",
        default_value_t = true,
        action = ArgAction::Set
    )]
    pub auto_delete: bool,

    /// Queue arguments, KEY=VALUE, comma-separated or repeated (integers
    /// and true/false are typed, the rest are strings). PerfTest's -qa.
    #[arg(
        long = "queue-args",
        visible_alias = "queue-arg",
        value_name = "KEY=VALUE,...",
        value_delimiter = ',',
        value_parser = parse_queue_arg
    )]
    pub queue_args: Vec<(String, String)>,

    /// The queue type.
    #[arg(long, value_enum, default_value_t = QueueType::Classic)]
    pub queue_type: QueueType,

    /// Same as --queue-type quorum. PerfTest's -qq.
    #[arg(long, conflicts_with_all = ["queue_type", "stream_queue"])]
    pub quorum_queue: bool,

    /// Same as --queue-type stream. PerfTest's -sq.
    #[arg(long, conflicts_with = "queue_type")]
    pub stream_queue: bool,

    /// Seconds to run (default: until the message limits, or Ctrl-C).
    #[arg(
        short = 'z',
        long = "time",
        visible_alias = "duration",
        value_name = "SECONDS"
    )]
    pub time: Option<f64>,

    /// Seconds between report lines.
    #[arg(short = 'i', long, default_value_t = 1.0, value_name = "SECONDS")]
    pub interval: f64,

    /// Write the report lines to this file as CSV (PerfTest's columns).
    #[arg(short = 'o', long, value_name = "FILE.csv")]
    pub output_file: Option<PathBuf>,

    /// Draw msgs/s and latency p50/p99 over time into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,

    /// The test id, at the start of the report lines (default: test-HHMMSS-mmm, UTC).
    #[arg(short = 'd', long)]
    pub id: Option<String>,
}

fn parse_queue_arg(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))
}

/// PerfTest's default test id: `test-HHMMSS-mmm` (UTC).
fn default_id() -> String {
    let ms = crate::body::now_ns() / 1_000_000;
    let seconds_of_day = (ms / 1000) % 86_400;
    format!(
        "test-{:02}{:02}{:02}-{:03}",
        seconds_of_day / 3600,
        seconds_of_day / 60 % 60,
        seconds_of_day % 60,
        ms % 1000
    )
}

/// A positive, finite number of seconds, or what is wrong with it.
fn seconds(flag: &str, value: f64) -> Result<Duration, String> {
    if value > 0.0 && value.is_finite() {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(format!(
            "{flag} must be a positive number of seconds, got {value}"
        ))
    }
}

impl Args {
    /// Parses the process's arguments, PerfTest's two-letter flags
    /// included; prints usage and exits on an error, as clap does.
    pub fn parse_perftest() -> Args {
        Args::parse_from(rewrite_two_letter_flags(std::env::args_os()))
    }

    /// Parses `argv` (the program's name first), PerfTest's two-letter
    /// flags included.
    pub fn try_parse_perftest<I, T>(argv: I) -> Result<Args, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString>,
    {
        Args::try_parse_from(rewrite_two_letter_flags(argv))
    }

    /// The fixed scenario's configuration, when `--scenario` was given.
    pub fn scenario_config(&self) -> Option<ScenarioConfig> {
        Some(ScenarioConfig {
            client: self.client,
            scenario: self.scenario?,
            n: self.messages.unwrap_or(100_000),
            size: self.size,
            rt: self.rt,
            url: self.uri.clone(),
            direct_reply_to: self.direct_reply_to,
            width: self.width,
            write_batch: self.write_batch,
        })
    }

    /// The queues: the pattern's, the one named, or a fresh one.
    fn queues(&self) -> Result<Vec<String>, String> {
        match (
            &self.queue_pattern,
            self.queue_pattern_from,
            self.queue_pattern_to,
        ) {
            (Some(pattern), Some(from), Some(to)) => expand_queue_pattern(pattern, from, to),
            (None, None, None) => Ok(vec![self
                .queue
                .clone()
                .unwrap_or_else(|| unique_name("load"))]),
            _ => Err(
                "--queue-pattern, --queue-pattern-from and --queue-pattern-to go together: give all three or none"
                    .into(),
            ),
        }
    }

    /// The free-form load's configuration, or what is wrong with the
    /// command line.
    pub fn load_config(&self) -> Result<LoadConfig, String> {
        if self.client != ClientKind::Pika {
            return Err("free-form load runs with pika only; --client is for --scenario".into());
        }
        if self.producers == 0 && self.consumers == 0 {
            return Err("nothing to do: no producers and no consumers (-x 0 -y 0)".into());
        }
        let queue_type = if self.quorum_queue {
            QueueType::Quorum
        } else if self.stream_queue {
            QueueType::Stream
        } else {
            self.queue_type
        };
        let multi_ack_every = self.multi_ack_every.max(1);
        if !self.auto_ack && self.prefetch > 0 && multi_ack_every > u64::from(self.prefetch) {
            return Err(format!(
                "--multi-ack-every {multi_ack_every} is more than --qos {}: the consumers would stall; raise -q or lower -A",
                self.prefetch
            ));
        }
        if queue_type == QueueType::Stream && self.auto_ack && self.consumers > 0 {
            return Err("stream queues need manual acks: drop -a (--autoack)".into());
        }
        for (flag, rate) in [
            ("--rate", self.rate),
            ("--consumer-rate", self.consumer_rate),
        ] {
            if !(rate >= 0.0 && rate.is_finite()) {
                return Err(format!(
                    "{flag} must be a number of messages per second, 0 or more, got {rate}"
                ));
            }
        }
        let duration = self.time.map(|t| seconds("--time", t)).transpose()?;
        let interval = seconds("--interval", self.interval)?;
        let uris = if self.uris.is_empty() {
            vec![self.uri.clone()]
        } else {
            self.uris.clone()
        };
        if let Some(empty) = uris.iter().position(|uri| uri.trim().is_empty()) {
            return Err(format!(
                "URI {} of --uris is empty: separate URIs with single commas",
                empty + 1
            ));
        }
        let exchange = match self.exchange.as_deref() {
            None => self.exchange_type.clone(),
            Some("amq.default") => String::new(),
            Some(name) => name.to_string(),
        };
        let flag = |wanted: MessageFlag| self.flags.contains(&wanted);
        Ok(LoadConfig {
            id: self.id.clone().unwrap_or_else(default_id),
            uris,
            producers: self.producers,
            consumers: self.consumers,
            connections: self.connections,
            size: self.size,
            json_body: self.json_body,
            rate: self.rate,
            consumer_rate: self.consumer_rate,
            confirm: self.confirm,
            mandatory: self.mandatory || flag(MessageFlag::Mandatory),
            persistent: self.persistent || flag(MessageFlag::Persistent),
            auto_ack: self.auto_ack,
            prefetch: self.prefetch,
            multi_ack_every,
            topology: Topology {
                exchange,
                exchange_type: self.exchange_type.clone(),
                queues: self.queues()?,
                routing_key: self.routing_key.clone(),
            },
            predeclared: self.predeclared,
            auto_delete: self.auto_delete,
            queue_type,
            queue_args: self.queue_args.clone(),
            producer_messages: self.messages.filter(|&n| n > 0),
            consumer_messages: self.consumer_messages.filter(|&n| n > 0),
            duration,
            interval,
            output_file: self.output_file.clone(),
            plot: self.plot.clone(),
            rt: self.rt,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(argv: &str) -> LoadConfig {
        let argv = std::iter::once("pika-perf").chain(argv.split_whitespace());
        Args::try_parse_perftest(argv)
            .unwrap_or_else(|e| panic!("{e}"))
            .load_config()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn error(argv: &str) -> String {
        let argv = std::iter::once("pika-perf").chain(argv.split_whitespace());
        match Args::try_parse_perftest(argv) {
            Err(e) => e.to_string(),
            Ok(args) => args.load_config().expect_err("an error"),
        }
    }

    #[test]
    fn the_command_line_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn two_letter_flags_become_long_flags() {
        let argv = rewrite_two_letter_flags([
            "pika-perf",
            "-ad",
            "false",
            "-qa",
            "x-max-length=10",
            "-qp=q-%d",
            "-qpf",
            "1",
            "-qpt=3",
            "-jb",
            "-qq",
            "-sq",
            "-a",
            "-u",
            "q",
        ]);
        assert_eq!(
            argv,
            [
                "pika-perf",
                "--auto-delete",
                "false",
                "--queue-args",
                "x-max-length=10",
                "--queue-pattern=q-%d",
                "--queue-pattern-from",
                "1",
                "--queue-pattern-to=3",
                "--json-body",
                "--quorum-queue",
                "--stream-queue",
                "-a",
                "-u",
                "q",
            ]
        );
    }

    #[test]
    fn only_whole_flags_are_rewritten_and_nothing_after_the_separator() {
        let argv = rewrite_two_letter_flags(["pika-perf", "-adx", "-qaz", "-ad", "--", "-ad"]);
        assert_eq!(
            argv,
            ["pika-perf", "-adx", "-qaz", "--auto-delete", "--", "-ad"]
        );
    }

    #[test]
    fn perftests_documented_command_line_parses() {
        let config = parse(
            "-x 1 -y 2 -u throughput-test-1 -a --id test-1 -h amqp://guest:guest@127.0.0.1:5672/%2f -z 10",
        );
        assert_eq!(config.producers, 1);
        assert_eq!(config.consumers, 2);
        assert!(config.auto_ack);
        assert_eq!(config.id, "test-1");
        assert_eq!(config.uris, ["amqp://guest:guest@127.0.0.1:5672/%2f"]);
        assert_eq!(config.duration, Some(Duration::from_secs(10)));
        assert_eq!(
            config.topology,
            Topology {
                exchange: "direct".into(),
                exchange_type: "direct".into(),
                queues: vec!["throughput-test-1".into()],
                routing_key: None,
            }
        );
        assert!(config.auto_delete);
        assert!(!config.predeclared);
        assert_eq!(config.producer_messages, None);
        assert_eq!(config.consumer_messages, None);
        assert_eq!(config.interval, Duration::from_secs(1));
        assert_eq!(config.confirm, 0);
        assert!(!config.persistent && !config.mandatory);
    }

    #[test]
    fn an_id_with_spaces_parses_as_one_value() {
        let args = Args::try_parse_perftest(["pika-perf", "--id", "test 1", "-a"]).unwrap();
        assert_eq!(args.load_config().unwrap().id, "test 1");
        let id = Args::try_parse_perftest(["pika-perf"])
            .unwrap()
            .load_config()
            .unwrap()
            .id;
        assert!(
            id.starts_with("test-") && id.len() == "test-HHMMSS-mmm".len(),
            "{id}"
        );
    }

    #[test]
    fn publishing_and_consuming_flags_parse() {
        let config = parse(
            "-x 3 -y 4 -s 1000 -r 500 -R 200.5 -c 50 -f persistent -f mandatory -q 300 -A 10 -C 1000 -D 750 -i 2.5",
        );
        assert_eq!(
            (config.producers, config.consumers, config.size),
            (3, 4, 1000)
        );
        assert_eq!((config.rate, config.consumer_rate), (500.0, 200.5));
        assert_eq!(config.confirm, 50);
        assert!(config.persistent && config.mandatory);
        assert_eq!((config.prefetch, config.multi_ack_every), (300, 10));
        assert_eq!(config.producer_messages, Some(1000));
        assert_eq!(config.consumer_messages, Some(750));
        assert_eq!(config.interval, Duration::from_millis(2500));
        assert_eq!(config.duration, None);
        // Comma-separated flags, and -A 0 (PerfTest: no multi-ack).
        let config = parse("-f persistent,mandatory -A 0 -C 0");
        assert!(config.persistent && config.mandatory);
        assert_eq!(config.multi_ack_every, 1);
        assert_eq!(config.producer_messages, None);
    }

    #[test]
    fn exchange_and_routing_flags_parse() {
        let config = parse("-e logs -t fanout -k rk -p -u q");
        assert_eq!(config.topology.exchange, "logs");
        assert_eq!(config.topology.exchange_type, "fanout");
        assert_eq!(config.topology.routing_key.as_deref(), Some("rk"));
        assert!(config.predeclared);
        // -e alone, -e "" and amq.default: the default exchange.
        assert_eq!(parse("-e -u q").topology.exchange, "");
        let args = Args::try_parse_perftest(["pika-perf", "-e", ""]).unwrap();
        assert_eq!(args.load_config().unwrap().topology.exchange, "");
        assert_eq!(parse("-e amq.default").topology.exchange, "");
        // Without -e the exchange is named after its type.
        assert_eq!(parse("-t topic").topology.exchange, "topic");
    }

    #[test]
    fn queue_flags_parse() {
        let config = parse("-ad false -qa x-max-length=10,x-overflow=reject-publish -qa x-a=b -qq");
        assert!(!config.auto_delete);
        assert_eq!(
            config.queue_args,
            [
                ("x-max-length".to_string(), "10".to_string()),
                ("x-overflow".into(), "reject-publish".into()),
                ("x-a".into(), "b".into()),
            ]
        );
        assert_eq!(config.queue_type, QueueType::Quorum);
        assert_eq!(parse("-sq").queue_type, QueueType::Stream);
        assert!(parse("--auto-delete=true").auto_delete);
        // A fresh queue when none is named.
        let queues = parse("-x 1").topology.queues;
        assert_eq!(queues.len(), 1);
        assert!(queues[0].starts_with("pika-perf-load-"), "{queues:?}");
    }

    #[test]
    fn queue_patterns_expand_into_the_queues() {
        let config =
            parse("--queue-pattern perf-test-%d --queue-pattern-from 1 --queue-pattern-to 3");
        assert_eq!(
            config.topology.queues,
            ["perf-test-1", "perf-test-2", "perf-test-3"]
        );
        let config = parse("-qp q-%02d -qpf 9 -qpt 10");
        assert_eq!(config.topology.queues, ["q-09", "q-10"]);
        assert!(error("--queue-pattern q-%d --queue-pattern-from 1").contains("go together"));
        assert!(error("--queue-pattern q-%d -u q").contains("cannot be used with"));
    }

    #[test]
    fn several_uris_parse() {
        let config = parse("-H amqp://a/%2f,amqp://b/%2f");
        assert_eq!(config.uris, ["amqp://a/%2f", "amqp://b/%2f"]);
        assert!(error("-H amqp://a/%2f,,amqp://b/%2f").contains("URI 2 of --uris is empty"));
    }

    #[test]
    fn the_earlier_long_flags_still_work() {
        let config = parse(
            "--url amqp://x/%2f --producers 2 --consumers 3 --n 500 --duration 4 --prefetch 20 --persistent --mandatory --auto-ack --queue-arg x-max-length=5 --queue pinned --confirm 8 --rate 100 --multi-ack-every 5 --connections 2",
        );
        assert_eq!(config.uris, ["amqp://x/%2f"]);
        assert_eq!((config.producers, config.consumers), (2, 3));
        assert_eq!(config.producer_messages, Some(500));
        assert_eq!(config.duration, Some(Duration::from_secs(4)));
        assert_eq!(config.prefetch, 20);
        assert!(config.persistent && config.mandatory && config.auto_ack);
        assert_eq!(
            config.queue_args,
            [("x-max-length".to_string(), "5".to_string())]
        );
        assert_eq!(config.topology.queues, ["pinned"]);
        assert_eq!((config.confirm, config.rate), (8, 100.0));
        assert_eq!((config.multi_ack_every, config.connections), (5, 2));
        let scenario = Args::try_parse_perftest(["pika-perf", "--scenario", "rpc", "--n", "7"])
            .unwrap()
            .scenario_config()
            .unwrap();
        assert_eq!(scenario.n, 7);
    }

    #[test]
    fn help_is_long_only_or_question_mark() {
        for flag in ["--help", "-?"] {
            let error = Args::try_parse_perftest(["pika-perf", flag]).unwrap_err();
            assert_eq!(error.kind(), clap::error::ErrorKind::DisplayHelp, "{flag}");
        }
        // -h is the URI.
        let args = Args::try_parse_perftest(["pika-perf", "-h", "amqp://h/%2f"]).unwrap();
        assert_eq!(args.uri, "amqp://h/%2f");
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        assert!(error("-x 0 -y 0").contains("nothing to do"));
        assert!(error("-z 0").contains("--time must be a positive number of seconds"));
        assert!(error("--interval=-1").contains("--interval must be a positive number"));
        assert!(error("-q 10 -A 20").contains("would stall"));
        assert!(error("-sq -a").contains("stream queues need manual acks"));
        assert!(error("-qa novalue").contains("expected KEY=VALUE"));
        assert!(error("-f durable").contains("invalid value 'durable'"));
        assert!(error("-ad maybe").contains("invalid value 'maybe'"));
        assert!(error("--rate=-5").contains("--rate must be a number of messages per second"));
    }
}
