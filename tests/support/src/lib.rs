//! Helpers shared by the integration tests of the workspace, and the
//! fault-injection kit for the tests of recovery:
//! - [`fault_proxy`]: [`FaultProxy`], a TCP proxy that cuts, resets,
//!   silences, delays or refuses connections on demand;
//! - [`broker_control`]: faults on the broker's side through `rabbitmqctl`
//!   ([`close_connection_named`], stopping the application through a
//!   [`BrokerAppLock`], memory alarms), for any [`Node`];
//! - [`second_node`]: [`SecondNode`], a throwaway second RabbitMQ node for
//!   the tests that must not disturb the main one;
//! - [`cluster`]: [`Cluster`], the throwaway 3-node cluster of
//!   `scripts/cluster`, for failover tests;
//! - [`total_queue`]: [`Ledger`], a total-queue checker that tells whether
//!   confirmed messages were lost or unexpected ones delivered.
//!
//! The main items are re-exported here.

pub mod broker_control;
pub mod cluster;
pub mod example_runner;
pub mod fault_proxy;
pub mod second_node;
pub mod total_queue;

pub use broker_control::{
    close_connection_named, BrokerAppLock, BrokerControlError, MemoryAlarm, Node, StoppedApp,
    ALARMING_VM_MEMORY_HIGH_WATERMARK, CONNECTION_CLOSE_WAIT, DEFAULT_VM_MEMORY_HIGH_WATERMARK,
    STARTUP_WAIT,
};
pub use cluster::Cluster;
pub use fault_proxy::{Direction, FaultProxy, FreezableProxy};
pub use second_node::SecondNode;
pub use total_queue::{Ledger, Report};

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The broker the tests use: `AMQP_URL`, or the local RabbitMQ.
pub fn url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A name no other test (or run) uses, starting with `pika-test-PREFIX`.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "pika-test-{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `rabbitmqctl ARGS` against the main node; returns its stdout.
/// ([`Node::ctl`] returns the failure instead.)
///
/// # Panics
/// When rabbitmqctl fails (the test cannot go on).
pub fn rabbitmqctl(args: &[&str]) -> String {
    let output = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}
