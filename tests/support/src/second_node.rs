//! [`SecondNode`]: a throwaway second RabbitMQ node for the tests that
//! must not disturb the main one.

use crate::{rabbitmqctl, Node};

/// A second RabbitMQ node with a TLS listener, started for a test from
/// `tests/support/tls-node` (TLS on 127.0.0.1:5681, plain AMQP on 5682,
/// certificates made for the run) and stopped, with its directory
/// removed, when dropped. The main node is never touched.
///
/// Only one can run at a time on a machine (fixed name and ports): tests
/// that use it are in the nextest test group `second-node`
/// (`.config/nextest.toml`), which runs them one at a time.
#[derive(Debug)]
pub struct SecondNode {
    dir: std::path::PathBuf,
}

impl SecondNode {
    /// The TLS port.
    pub const TLS_PORT: u16 = 5681;
    /// The plain AMQP port.
    pub const PLAIN_PORT: u16 = 5682;

    fn script() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tls-node")
    }

    /// Starts the node (about 8 seconds).
    ///
    /// # Panics
    /// When the node does not start; the script's output says why.
    pub fn start() -> SecondNode {
        let dir = std::env::temp_dir().join(format!("pika-tls-node-{}", std::process::id()));
        let output = std::process::Command::new(Self::script())
            .arg("start")
            .arg(&dir)
            .output()
            .expect("tls-node runs");
        assert!(
            output.status.success(),
            "tls-node start failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        SecondNode { dir }
    }

    /// A file of the node's certificates: `ca.pem`, `server.pem`,
    /// `client.pem`, `client.key`, `rogue-ca.pem`, ...
    pub fn cert(&self, name: &str) -> std::path::PathBuf {
        self.dir.join("certs").join(name)
    }

    /// The node's name, `pika-tls@HOST`.
    ///
    /// # Panics
    /// When `hostname` cannot be run.
    pub fn name() -> String {
        let host = std::process::Command::new("hostname")
            .arg("-s")
            .output()
            .expect("hostname runs");
        format!("pika-tls@{}", String::from_utf8_lossy(&host.stdout).trim())
    }

    /// The node to control with the broker control helpers: stop and
    /// start its application ([`Node::lock_app`]), raise its memory alarm,
    /// close its connections by name. Tests that stop its application
    /// disturb no test but the ones on this node, which run one at a time
    /// (the `second-node` test group).
    pub fn node(&self) -> Node {
        Node::named(Self::name())
    }

    /// `amqp://guest:guest@127.0.0.1:5682/%2f`: the node's plain AMQP URL.
    pub fn plain_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", Self::PLAIN_PORT)
    }

    /// Runs `rabbitmqctl -n NODE ARGS`; returns its stdout.
    ///
    /// # Panics
    /// When rabbitmqctl fails ([`Node::ctl`] returns the failure instead).
    pub fn ctl(&self, args: &[&str]) -> String {
        let node = Self::name();
        let mut all = vec!["-n", node.as_str()];
        all.extend_from_slice(args);
        rabbitmqctl(&all)
    }
}

impl Drop for SecondNode {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["-n", &Self::name(), "set_vm_memory_high_watermark", "0.4"])
            .output();
        let _ = std::process::Command::new(Self::script())
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}
