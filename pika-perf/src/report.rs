//! The JSON line of a fixed scenario, with the fields the comparison
//! harness reads.

use serde::{Deserialize, Serialize};

use crate::scenario::{Measured, Scenario, ScenarioConfig};

/// One run of a fixed scenario, as printed on one JSON line.
///
/// `p50_us` and `p99_us` are the round-trip percentiles of `rpc`, and
/// `null` for the other scenarios (they time throughput, not latency).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioReport {
    /// `pika`, `lapin`, `amqprs` or `raw`.
    pub client: String,
    /// `publish`, `publish_confirm`, `consume` or `rpc`.
    pub scenario: String,
    /// Messages (or round trips).
    pub n: u64,
    /// Body size in bytes.
    pub size: usize,
    /// `ct` or `mt`.
    pub rt: String,
    /// Wall-clock seconds of the timed region.
    pub wall_s: f64,
    /// n / wall_s.
    pub msgs_per_s: f64,
    /// User CPU seconds of this process in the timed region.
    pub cpu_user_s: f64,
    /// System CPU seconds of this process in the timed region.
    pub cpu_sys_s: f64,
    /// (user + system) CPU microseconds per message.
    pub cpu_us_per_msg: f64,
    /// Median round trip in microseconds (`rpc`).
    pub p50_us: Option<f64>,
    /// 99th percentile round trip in microseconds (`rpc`).
    pub p99_us: Option<f64>,
    /// Messages that did not arrive.
    pub lost: u64,
    /// Messages that arrived more than once.
    pub dup: u64,
    /// The width W of a scenario of scale (1 for the others).
    #[serde(default)]
    pub width: u32,
    /// The messages `msgs_per_s` and `cpu_us_per_msg` count: N, or the
    /// W x N deliveries of `fanout`.
    #[serde(default)]
    pub msgs: u64,
    /// Body bytes moved per second: msgs x size / wall, in MB (10^6 bytes).
    #[serde(default)]
    pub mb_per_s: f64,
    /// The scenarios of scale: seconds to open the W channels, consumers
    /// or connections (untimed setup).
    #[serde(default)]
    pub open_s: Option<f64>,
    /// The scenarios of scale: growth of the process's RSS over the setup,
    /// per channel, consumer or connection, in KiB.
    #[serde(default)]
    pub rss_per_unit_kib: Option<f64>,
    /// The process's peak RSS (`VmHWM`) at the end of the run, in KiB.
    #[serde(default)]
    pub peak_rss_kib: u64,
}

/// The field names every JSON line has, in order.
pub const FIELDS: [&str; 20] = [
    "client",
    "scenario",
    "n",
    "size",
    "rt",
    "wall_s",
    "msgs_per_s",
    "cpu_user_s",
    "cpu_sys_s",
    "cpu_us_per_msg",
    "p50_us",
    "p99_us",
    "lost",
    "dup",
    "width",
    "msgs",
    "mb_per_s",
    "open_s",
    "rss_per_unit_kib",
    "peak_rss_kib",
];

impl ScenarioReport {
    /// The report of a run.
    pub fn new(config: &ScenarioConfig, measured: &Measured) -> ScenarioReport {
        let wall_s = measured.elapsed.wall.as_secs_f64();
        let cpu = measured.elapsed.cpu;
        let n = config.n;
        let msgs = config.deliveries();
        let width = config.width();
        let size = crate::body::effective_size(config.size);
        let percentile = |q: f64| {
            measured
                .latency_us
                .as_ref()
                .filter(|h| !h.is_empty() && config.scenario == Scenario::Rpc)
                .map(|h| h.value_at_quantile(q) as f64)
        };
        ScenarioReport {
            client: config.client.name().to_string(),
            scenario: config.scenario.name().to_string(),
            n,
            size,
            rt: config.rt.name().to_string(),
            wall_s: round(wall_s, 6),
            msgs_per_s: round(per_s(msgs as f64, wall_s), 1),
            cpu_user_s: round(cpu.user.as_secs_f64(), 6),
            cpu_sys_s: round(cpu.sys.as_secs_f64(), 6),
            cpu_us_per_msg: round(cpu.total().as_secs_f64() * 1e6 / msgs.max(1) as f64, 3),
            p50_us: percentile(0.5),
            p99_us: percentile(0.99),
            lost: measured.lost,
            dup: measured.dup,
            width,
            msgs,
            mb_per_s: round(per_s(msgs as f64 * size as f64 / 1e6, wall_s), 3),
            open_s: measured.setup.map(|s| round(s.wall.as_secs_f64(), 6)),
            rss_per_unit_kib: measured
                .setup
                .map(|s| round(s.rss_growth_kib as f64 / f64::from(width), 3)),
            peak_rss_kib: crate::rusage::peak_rss_kib(),
        }
    }

    /// The report as one line of JSON (no newline).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("a report serializes")
    }
}

fn per_s(amount: f64, wall_s: f64) -> f64 {
    if wall_s > 0.0 {
        amount / wall_s
    } else {
        0.0
    }
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}
