//! [`Cluster`]: the throwaway 3-node RabbitMQ cluster of `scripts/cluster`
//! (nodes `pika-c1..3`, AMQP on 5701-5703), for the failover tests.

use std::path::PathBuf;
use std::process::Command;

/// The cluster, brought up by [`Cluster::up`] and torn down when dropped
/// (also when the test panics). Only one can exist on a machine: tests
/// that use it are in the nextest test group `cluster`.
#[derive(Debug)]
pub struct Cluster {
    _private: (),
}

impl Cluster {
    /// The nodes' numbers.
    pub const NODES: [u8; 3] = [1, 2, 3];

    fn script() -> PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/cluster")
    }

    fn run(args: &[&str]) -> String {
        let output = Command::new(Self::script())
            .args(args)
            .output()
            .expect("scripts/cluster runs");
        assert!(
            output.status.success(),
            "scripts/cluster {} failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Starts the three nodes and joins them (15-40 s), or reuses a
    /// healthy cluster.
    ///
    /// # Panics
    /// When the cluster does not come up; the script's output says why.
    pub fn up() -> Cluster {
        Self::run(&["up"]);
        Cluster { _private: () }
    }

    /// Node `n`'s AMQP URL.
    pub fn url(&self, n: u8) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", Self::port(n))
    }

    /// Node `n`'s AMQP port.
    pub fn port(n: u8) -> u16 {
        5700 + u16::from(n)
    }

    /// The node listening on `address` (`127.0.0.1:5702` is 2).
    pub fn node_at(address: &str) -> Option<u8> {
        let port: u16 = address.rsplit(':').next()?.parse().ok()?;
        Self::NODES.into_iter().find(|&n| Self::port(n) == port)
    }

    /// The three URLs, starting with node `first`'s.
    pub fn urls_from(&self, first: u8) -> Vec<String> {
        (0..3).map(|i| self.url((first - 1 + i) % 3 + 1)).collect()
    }

    /// Stops node `n`'s whole Erlang VM (its AMQP port closes, as in a
    /// shutdown) and waits until it is gone (3-8 s).
    pub fn stop_node(n: u8) {
        Self::run(&["stop-node", &n.to_string()]);
    }

    /// Starts node `n` again and waits until the cluster sees it (6-16 s).
    pub fn start_node(n: u8) {
        Self::run(&["start-node", &n.to_string()]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(Self::script()).arg("down").output();
    }
}
