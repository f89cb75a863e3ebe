//! Faults on the broker's side, through `rabbitmqctl`: closing a
//! connection by its client-provided name, stopping and starting the
//! RabbitMQ application, raising a memory alarm.
//!
//! Every helper returns a [`BrokerControlError`] (with rabbitmqctl's
//! stderr) instead of panicking, and blocks while rabbitmqctl runs (about
//! a second per call): from async tests, call them in
//! `tokio::task::spawn_blocking`.
//!
//! # The main node is shared
//! The tests of the workspace run in parallel against the main node
//! (`rabbit@localhost`, 5672). A test that stops its application, or
//! raises a memory alarm on it, breaks or stalls whatever other test runs
//! at that moment. So:
//! - prefer a [`SecondNode`](crate::SecondNode) for such tests (its
//!   [`node`](crate::SecondNode::node) method gives the [`Node`] to
//!   control), in the nextest test group `second-node`;
//! - stopping an application goes through a [`BrokerAppLock`], a file lock
//!   per node that serialises such tests across test processes (nextest
//!   runs every test in its own process), and whose [`StoppedApp`] guard
//!   starts the application again even when the test panics;
//! - a test that must stop the main node's application belongs in the
//!   nextest test group `broker-app` (`.config/nextest.toml`), and still
//!   disturbs the tests running beside it.

use std::fs::File;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The memory high watermark RabbitMQ has by default, which
/// [`Node::set_memory_alarm`]`(false)` restores.
pub const DEFAULT_VM_MEMORY_HIGH_WATERMARK: &str = "0.4";

/// A memory high watermark so low that the node is always over it: the
/// memory alarm goes off.
pub const ALARMING_VM_MEMORY_HIGH_WATERMARK: &str = "0.000001";

/// How long [`Node::close_connection_named`] waits for the connection to
/// disappear from `list_connections`.
pub const CONNECTION_CLOSE_WAIT: Duration = Duration::from_secs(15);

/// How long [`Node::await_startup`] waits for the application.
pub const STARTUP_WAIT: Duration = Duration::from_secs(120);

/// Why a broker control helper failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerControlError {
    /// `rabbitmqctl` could not be run at all.
    #[error("could not run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// `rabbitmqctl` ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it wrote on stderr (and stdout, when stderr was empty).
        stderr: String,
    },
    /// No connection of the node has this client-provided name.
    #[error("no connection named {name:?} on {node}")]
    NoConnectionNamed {
        /// The name looked for.
        name: String,
        /// The node, as `rabbitmqctl -n` names it (or `the main node`).
        node: String,
    },
    /// The connection was told to close and was still listed after the
    /// wait.
    #[error("connection {name:?} on {node} still open {waited:?} after close_connection")]
    StillOpen {
        /// The connection's name.
        name: String,
        /// The node.
        node: String,
        /// How long it was waited for.
        waited: Duration,
    },
    /// The lock file of a [`BrokerAppLock`] could not be opened or locked.
    #[error("could not lock {path}: {source}", path = path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A RabbitMQ node that `rabbitmqctl` reaches: the main one (its default
/// node) or one named with `-n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    name: Option<String>,
}

impl Node {
    /// The main node: rabbitmqctl's default (`rabbit@localhost` here,
    /// AMQP on 5672).
    pub fn main() -> Node {
        Node { name: None }
    }

    /// The node `name` (`rabbitmqctl -n NAME`), such as `r2@HOST`.
    pub fn named(name: impl Into<String>) -> Node {
        Node {
            name: Some(name.into()),
        }
    }

    /// The name given to `rabbitmqctl -n`; `None` for the main node.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The node for messages: its name, or `the main node`.
    fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| "the main node".into())
    }

    /// Runs `rabbitmqctl [-n NODE] ARGS`; returns its stdout, or its
    /// stderr in the error when it fails.
    pub fn ctl(&self, args: &[&str]) -> Result<String, BrokerControlError> {
        let mut all: Vec<&str> = Vec::with_capacity(args.len() + 2);
        if let Some(name) = &self.name {
            all.extend(["-n", name.as_str()]);
        }
        all.extend_from_slice(args);
        let command = format!("rabbitmqctl {}", all.join(" "));
        let output = Command::new("rabbitmqctl")
            .args(&all)
            .output()
            .map_err(|source| BrokerControlError::Spawn {
                command: command.clone(),
                source,
            })?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let mut stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if stderr.is_empty() {
            stderr = String::from_utf8_lossy(&output.stdout).trim().to_string();
        }
        Err(BrokerControlError::Failed {
            command,
            status: output.status,
            stderr,
        })
    }

    /// The Erlang pids (`<rabbit@localhost.1.2.0>`) of the node's
    /// connections whose client-provided name (`connection_name` in the
    /// client properties) is `name`.
    pub fn connections_named(&self, name: &str) -> Result<Vec<String>, BrokerControlError> {
        let listing = self.ctl(&[
            "-q",
            "list_connections",
            "pid",
            "client_properties",
            "--no-table-headers",
        ])?;
        Ok(pids_of_connections_named(&listing, name))
    }

    /// Closes the connection whose client-provided name is `name` (all of
    /// them, if several have it) with `rabbitmqctl close_connection PID
    /// REASON`: the client receives `connection.close` 320
    /// CONNECTION_FORCED with `reason` in its text. Returns once the
    /// connection is no longer listed, waiting at most
    /// [`CONNECTION_CLOSE_WAIT`].
    ///
    /// Fails with [`BrokerControlError::NoConnectionNamed`] when there is
    /// no such connection (yet: the name is listed once the client's
    /// handshake is done).
    pub fn close_connection_named(
        &self,
        name: &str,
        reason: &str,
    ) -> Result<(), BrokerControlError> {
        let pids = self.connections_named(name)?;
        if pids.is_empty() {
            return Err(BrokerControlError::NoConnectionNamed {
                name: name.to_string(),
                node: self.label(),
            });
        }
        for pid in &pids {
            self.ctl(&["close_connection", pid, reason])?;
        }
        let started = Instant::now();
        loop {
            let left = self.connections_named(name)?;
            if !left.iter().any(|pid| pids.contains(pid)) {
                return Ok(());
            }
            if started.elapsed() >= CONNECTION_CLOSE_WAIT {
                return Err(BrokerControlError::StillOpen {
                    name: name.to_string(),
                    node: self.label(),
                    waited: started.elapsed(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts the node's RabbitMQ application (`rabbitmqctl start_app`)
    /// and waits until it runs ([`await_startup`](Self::await_startup)).
    /// Starting a running application does nothing.
    pub fn start_app(&self) -> Result<(), BrokerControlError> {
        self.ctl(&["start_app"])?;
        self.await_startup()
    }

    /// Waits until the node's application runs (`rabbitmqctl
    /// await_startup`), at most [`STARTUP_WAIT`].
    pub fn await_startup(&self) -> Result<(), BrokerControlError> {
        let seconds = STARTUP_WAIT.as_secs().to_string();
        self.ctl(&["await_startup", "--timeout", &seconds])
            .map(drop)
    }

    /// Raises (`on`) or clears the node's memory alarm, by setting its
    /// memory high watermark to [`ALARMING_VM_MEMORY_HIGH_WATERMARK`] or
    /// back to [`DEFAULT_VM_MEMORY_HIGH_WATERMARK`]. During the alarm the
    /// broker blocks every connection that publishes (`connection.blocked`
    /// to clients that announced the capability). On the main node this
    /// stalls the publishers of every test running meanwhile: prefer a
    /// [`SecondNode`](crate::SecondNode).
    pub fn set_memory_alarm(&self, on: bool) -> Result<(), BrokerControlError> {
        let watermark = if on {
            ALARMING_VM_MEMORY_HIGH_WATERMARK
        } else {
            DEFAULT_VM_MEMORY_HIGH_WATERMARK
        };
        self.ctl(&["set_vm_memory_high_watermark", watermark])
            .map(drop)
    }

    /// Raises the node's memory alarm until the returned guard is cleared
    /// or dropped (so a panicking test clears it too).
    pub fn raise_memory_alarm(&self) -> Result<MemoryAlarm, BrokerControlError> {
        self.set_memory_alarm(true)?;
        Ok(MemoryAlarm {
            node: self.clone(),
            cleared: false,
        })
    }

    /// Takes the node's [`BrokerAppLock`], waiting for any other test
    /// process that holds it.
    pub fn lock_app(&self) -> Result<BrokerAppLock, BrokerControlError> {
        BrokerAppLock::acquire(self.clone())
    }
}

/// Closes the main node's connection named `name`: see
/// [`Node::close_connection_named`].
pub fn close_connection_named(name: &str, reason: &str) -> Result<(), BrokerControlError> {
    Node::main().close_connection_named(name, reason)
}

/// The pids in a `list_connections pid client_properties` listing (one
/// connection per line: the pid, a tab, the properties as an Erlang list
/// of `{"key",value}` or `{"key",type,value}`) of the connections whose
/// `connection_name` is `name`.
fn pids_of_connections_named(listing: &str, name: &str) -> Vec<String> {
    let escaped = name.replace('\\', "\\\\").replace('"', "\\\"");
    let property = format!("{{\"connection_name\",\"{escaped}\"}}");
    listing
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter(|(_, properties)| properties.contains(&property))
        .map(|(pid, _)| pid.trim().to_string())
        .collect()
}

/// A memory alarm raised by [`Node::raise_memory_alarm`]; cleared by
/// [`clear`](Self::clear) or when dropped.
#[derive(Debug)]
#[must_use = "the alarm is cleared when this guard is dropped"]
pub struct MemoryAlarm {
    node: Node,
    cleared: bool,
}

impl MemoryAlarm {
    /// Clears the alarm (restores the default watermark).
    pub fn clear(mut self) -> Result<(), BrokerControlError> {
        self.cleared = true;
        self.node.set_memory_alarm(false)
    }
}

impl Drop for MemoryAlarm {
    fn drop(&mut self) {
        if !self.cleared {
            if let Err(error) = self.node.set_memory_alarm(false) {
                eprintln!("MemoryAlarm: could not clear the alarm: {error}");
            }
        }
    }
}

/// The right to stop a node's RabbitMQ application: an exclusive lock on
/// the file `/tmp/pika-broker-app-NODE.lock` (an `flock`, through
/// [`File::lock`]), held until dropped. Tests that stop an application
/// take it first and hold it for the whole test, so that they run one at
/// a time even across test processes; it does not protect the tests that
/// do not take it (see the [module documentation](self)).
///
/// ```no_run
/// # fn demo(node: pika_test_support::Node) -> Result<(), pika_test_support::BrokerControlError> {
/// let lock = node.lock_app()?;
/// let stopped = lock.stop_app()?;
/// // ... the broker is down: clients see refused connects ...
/// stopped.start_app()?; // or dropped (also by a panic): started again
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct BrokerAppLock {
    node: Node,
    path: PathBuf,
    // Locked while open; closing the file releases the lock.
    _file: File,
}

impl BrokerAppLock {
    /// Takes the lock of `node`'s application, blocking until no other
    /// process (or other lock in this one) holds it.
    pub fn acquire(node: Node) -> Result<BrokerAppLock, BrokerControlError> {
        let label: String = node
            .name()
            .unwrap_or("main")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = std::env::temp_dir().join(format!("pika-broker-app-{label}.lock"));
        let locked = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .and_then(|file| file.lock().map(|()| file));
        match locked {
            Ok(file) => Ok(BrokerAppLock {
                node,
                path,
                _file: file,
            }),
            Err(source) => Err(BrokerControlError::Lock { path, source }),
        }
    }

    /// The node whose application this lock is for.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The lock file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Stops the node's RabbitMQ application (`rabbitmqctl stop_app`: the
    /// node keeps running, its listeners close, every client connection
    /// is closed). The returned guard starts it again.
    pub fn stop_app(&self) -> Result<StoppedApp<'_>, BrokerControlError> {
        self.node.ctl(&["stop_app"])?;
        Ok(StoppedApp {
            lock: self,
            started: false,
        })
    }
}

/// A stopped RabbitMQ application ([`BrokerAppLock::stop_app`]): started
/// again by [`start_app`](Self::start_app), or when dropped (also when the
/// test panics), so that no test leaves a node stopped.
#[derive(Debug)]
#[must_use = "the application is started again when this guard is dropped"]
pub struct StoppedApp<'lock> {
    lock: &'lock BrokerAppLock,
    started: bool,
}

impl StoppedApp<'_> {
    /// Starts the application and waits until it runs.
    pub fn start_app(mut self) -> Result<(), BrokerControlError> {
        self.started = true;
        self.lock.node.start_app()
    }
}

impl Drop for StoppedApp<'_> {
    fn drop(&mut self) {
        if !self.started {
            if let Err(error) = self.lock.node.start_app() {
                eprintln!("StoppedApp: could not start the application again: {error}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_pids_of_the_connections_with_a_name() {
        let listing = "<rabbit@localhost.1.100.0>\t[{\"capabilities\",table,[{\"basic.nack\",bool,true}]},{\"connection_name\",\"billing\"},{\"product\",\"pika\"}]\n\
                       <rabbit@localhost.1.200.0>\t[{\"connection_name\",\"billing-2\"}]\n\
                       <rabbit@localhost.1.300.0>\t[{\"product\",\"other\"}]\n\
                       <rabbit@localhost.1.400.0>\t[{\"connection_name\",\"billing\"}]\n";
        assert_eq!(
            pids_of_connections_named(listing, "billing"),
            ["<rabbit@localhost.1.100.0>", "<rabbit@localhost.1.400.0>"]
        );
        assert!(pids_of_connections_named(listing, "bill").is_empty());
        assert!(pids_of_connections_named("", "billing").is_empty());
    }

    #[test]
    fn a_failing_command_returns_its_stderr() {
        let error = Node::named("pika-no-such-node@localhost")
            .ctl(&["status"])
            .unwrap_err();
        match &error {
            BrokerControlError::Failed {
                command, stderr, ..
            } => {
                assert!(
                    command.contains("-n pika-no-such-node@localhost status"),
                    "{command}"
                );
                assert!(!stderr.is_empty());
            }
            BrokerControlError::Spawn { .. } => {} // no rabbitmqctl on this machine
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_app_lock_is_exclusive_across_open_files() {
        let node = Node::named(format!("pika-lock-test-{}@nowhere", std::process::id()));
        let first = node.lock_app().unwrap();
        let path = first.path().to_path_buf();
        let other = File::options().write(true).open(&path).unwrap();
        assert!(matches!(
            other.try_lock(),
            Err(std::fs::TryLockError::WouldBlock)
        ));
        drop(first);
        other.try_lock().unwrap();
        drop(other);
        let _ = std::fs::remove_file(path);
    }
}
