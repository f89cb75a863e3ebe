//! The command line.
//!
//! Without `--scenario` the tool runs free-form load ([`crate::load`]):
//!
//! ```text
//! pika-perf --producers 2 --consumers 2 --size 1024 --rate 5000 --confirm 100 --duration 30
//! pika-perf --queue-type quorum --persistent --prefetch 200 --multi-ack-every 50 --n 100000
//! ```
//!
//! With `--scenario` it runs one fixed scenario and prints one JSON line:
//!
//! ```text
//! pika-perf --scenario consume --n 200000 --size 64 --rt ct --client raw
//! ```

use std::time::Duration;

use clap::Parser;

use crate::load::{LoadConfig, QueueType};
use crate::scenario::{ClientKind, Rt, Scenario, ScenarioConfig, DEFAULT_URL};

/// Load tool for RabbitMQ and pika: free-form load (the default), or a
/// fixed scenario (`--scenario`) measured the same way for pika, lapin,
/// amqprs and a raw socket client.
#[derive(Debug, Clone, Parser)]
#[command(name = "pika-perf", version, about)]
pub struct Args {
    /// The broker.
    #[arg(long, default_value = DEFAULT_URL)]
    pub url: String,

    /// Run this fixed scenario and print one JSON line.
    #[arg(long, value_enum)]
    pub scenario: Option<Scenario>,

    /// The client that runs a fixed scenario (lapin and amqprs need the
    /// cargo features of the same names).
    #[arg(long, value_enum, default_value_t = ClientKind::Pika)]
    pub client: ClientKind,

    /// Messages: in a scenario the total (default 100000); in free-form
    /// load the messages each producer sends (without producers: the
    /// messages to consume), after which the run ends once they are
    /// consumed (default: no limit, run for --duration).
    #[arg(long = "n", alias = "count", value_name = "N")]
    pub n: Option<u64>,

    /// Message body size in bytes (at least 16: a sequence number and a
    /// timestamp).
    #[arg(long, default_value_t = 64)]
    pub size: usize,

    /// The tokio runtime: ct (current_thread) or mt (multi_thread, 2 workers).
    #[arg(long, value_enum, default_value_t = Rt::Ct)]
    pub rt: Rt,

    /// rpc scenario: replies over direct reply-to instead of a callback queue.
    #[arg(long)]
    pub direct_reply_to: bool,

    /// Print one JSON line per run on stdout (per-second lines go to stderr).
    #[arg(long)]
    pub json: bool,

    /// Free-form: producers (one channel each).
    #[arg(short = 'x', long, default_value_t = 1)]
    pub producers: usize,

    /// Free-form: consumers (one channel each).
    #[arg(short = 'y', long, default_value_t = 1)]
    pub consumers: usize,

    /// Free-form: connections the producers' and consumers' channels are
    /// spread over, round robin (0: one connection per producer and per
    /// consumer).
    #[arg(long, default_value_t = 0)]
    pub connections: usize,

    /// Free-form: publish rate limit per producer, messages per second
    /// (0: unlimited).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,

    /// Free-form: publisher confirms with this many unconfirmed messages
    /// in flight per producer (0: no confirms).
    #[arg(long, default_value_t = 0, value_name = "WINDOW")]
    pub confirm: usize,

    /// Free-form: publish with the mandatory flag.
    #[arg(long)]
    pub mandatory: bool,

    /// Free-form: persistent messages (delivery mode 2) and a durable queue.
    #[arg(long)]
    pub persistent: bool,

    /// Free-form: consume without acks.
    #[arg(long)]
    pub auto_ack: bool,

    /// Free-form: prefetch count per consumer with manual acks (0: unlimited).
    #[arg(long, default_value_t = 1000)]
    pub prefetch: u16,

    /// Free-form: ack every N messages with multiple=true (1: one ack per message).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub multi_ack_every: u64,

    /// Free-form: the queue (default: a fresh uniquely named one, deleted
    /// afterwards; a named queue is kept).
    #[arg(long)]
    pub queue: Option<String>,

    /// Free-form: the queue type.
    #[arg(long, value_enum, default_value_t = QueueType::Classic)]
    pub queue_type: QueueType,

    /// Free-form: a queue argument, KEY=VALUE (integers and true/false are
    /// typed, the rest are strings); repeatable.
    #[arg(long = "queue-arg", value_name = "KEY=VALUE", value_parser = parse_queue_arg)]
    pub queue_args: Vec<(String, String)>,

    /// Free-form: seconds to run (default 10 without --n).
    #[arg(long, value_name = "SECONDS")]
    pub duration: Option<f64>,
}

fn parse_queue_arg(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {text:?}"))
}

impl Args {
    /// The fixed scenario's configuration, when `--scenario` was given.
    pub fn scenario_config(&self) -> Option<ScenarioConfig> {
        Some(ScenarioConfig {
            client: self.client,
            scenario: self.scenario?,
            n: self.n.unwrap_or(100_000),
            size: self.size,
            rt: self.rt,
            url: self.url.clone(),
            direct_reply_to: self.direct_reply_to,
        })
    }

    /// The free-form load's configuration.
    pub fn load_config(&self) -> Result<LoadConfig, String> {
        if self.client != ClientKind::Pika {
            return Err("free-form load runs with pika only; --client is for --scenario".into());
        }
        if self.producers == 0 && self.consumers == 0 {
            return Err("nothing to do: no producers and no consumers".into());
        }
        if self.multi_ack_every == 0 {
            return Err("--multi-ack-every must be at least 1".into());
        }
        if !self.auto_ack && self.prefetch > 0 && self.multi_ack_every > u64::from(self.prefetch) {
            return Err(format!(
                "--multi-ack-every {} is more than --prefetch {}: the consumers would stall",
                self.multi_ack_every, self.prefetch
            ));
        }
        if self.queue_type == QueueType::Stream && self.auto_ack && self.consumers > 0 {
            return Err("stream queues need manual acks: drop --auto-ack".into());
        }
        let duration = match (self.duration, self.n) {
            (Some(seconds), _) if seconds <= 0.0 || !seconds.is_finite() => {
                return Err("--duration must be positive".into())
            }
            (Some(seconds), _) => Some(Duration::from_secs_f64(seconds)),
            (None, Some(_)) => None,
            (None, None) => Some(Duration::from_secs(10)),
        };
        Ok(LoadConfig {
            url: self.url.clone(),
            producers: self.producers,
            consumers: self.consumers,
            connections: self.connections,
            size: self.size,
            rate: self.rate,
            confirm: self.confirm,
            mandatory: self.mandatory,
            persistent: self.persistent,
            auto_ack: self.auto_ack,
            prefetch: self.prefetch,
            multi_ack_every: self.multi_ack_every,
            queue: self.queue.clone(),
            queue_type: self.queue_type,
            queue_args: self.queue_args.clone(),
            count: self.n,
            duration,
            rt: self.rt,
        })
    }
}
