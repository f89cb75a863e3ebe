//! # pika-perf
//!
//! The load tool of pika. Two modes:
//!
//! - **Free-form load** ([`load`]) on the `pika` API, with RabbitMQ
//!   PerfTest's command line flags ([`cli`]): producers and consumers
//!   spread over queues and connections, with rate limits, confirms, acks
//!   and queue types of your choice; a line per interval (also as
//!   PerfTest's CSV, and as an SVG picture), then a summary with a latency
//!   histogram. Ctrl-C ends a run with its summary and deletes its queues.
//! - **Fixed scenarios** ([`scenario`]): `publish`, `publish_confirm`,
//!   `consume` and `rpc`, run the same way with pika, lapin, amqprs or a
//!   raw socket client ([`clients`]), each printing one JSON line
//!   ([`ScenarioReport`]) so the clients can be compared in one run.
//!
//! ```no_run
//! use pika_perf::{ClientKind, Rt, Scenario, ScenarioConfig};
//!
//! let config = ScenarioConfig {
//!     client: ClientKind::Pika,
//!     scenario: Scenario::Consume,
//!     n: 20_000,
//!     size: 64,
//!     rt: Rt::Ct,
//!     ..ScenarioConfig::default()
//! };
//! let report = pika_perf::run_scenario_blocking(&config)?;
//! assert_eq!((report.lost, report.dup), (0, 0));
//! println!("{}", report.to_json_line());
//! # Ok::<(), pika_perf::Error>(())
//! ```
//!
//! Message bodies carry a sequence number and the producer's clock
//! ([`body`]), so consumers count lost and duplicated messages and
//! measure latency.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod body;
pub mod cli;
pub mod clients;
pub mod load;
pub mod report;
pub mod rusage;
pub mod scenario;
pub mod tracking;

pub use report::ScenarioReport;
pub use scenario::{run_scenario, run_scenario_blocking, ClientKind, Rt, Scenario, ScenarioConfig};

/// Any failure of a run. A boxed error, not an enum: a run can fail in
/// four client libraries, the codec or the socket, and the tool only
/// reports what happened.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The result of a run.
pub type Result<T, E = Error> = std::result::Result<T, E>;
