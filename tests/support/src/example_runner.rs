//! Runs the workspace's examples as programs: builds a package's examples
//! once per test process, starts one with its output read line by line,
//! and kills it when the handle is dropped, so a failed test leaves nothing
//! behind.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The broker the examples use: `AMQP_URL`, or the local RabbitMQ.
fn url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1/".into())
}

/// How long an example may take to print a line or to exit.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The folder of `package`'s example binaries, built (once per test
/// process) with the test's own profile and target directory.
///
/// # Panics
/// When the build fails: the test cannot go on.
pub fn examples_dir(package: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(dir) = built.get(package) {
        return dir.clone();
    }
    // The test is target/<profile>/deps/NAME-<hash>.
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let target_dir = profile_dir.parent().unwrap();
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => panic!("unexpected test binary path {}", exe.display()),
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // One job: the examples are small and the machine may be shared.
    let mut build = std::process::Command::new(cargo);
    build
        .args(["build", "-q", "-j", "1", "-p", package, "--examples"])
        .args(["--profile", profile])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    // What cargo sets for the test (CARGO_MANIFEST_DIR, CARGO_PKG_NAME,
    // ...) and not for the build that made it: with them, ring's build
    // script would run again, and everything above it be rebuilt.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_for_the_test = [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_CRATE_",
            "CARGO_PRIMARY_",
            "CARGO_TARGET_TMPDIR",
            "CARGO_RUSTC_CURRENT_DIR",
        ]
        .iter()
        .any(|prefix| name.starts_with(prefix));
        if set_for_the_test {
            build.env_remove(&*name);
        }
    }
    let output = build.output().expect("run cargo build");
    assert!(
        output.status.success(),
        "cargo build -p {package} --examples failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dir = profile_dir.join("examples");
    built.insert(package.to_string(), dir.clone());
    dir
}

/// A running example. Killed when dropped (`kill_on_drop`), so that a
/// failed test leaves nothing behind.
#[derive(Debug)]
pub struct Example {
    name: String,
    child: Child,
    /// Its stdout, line by line, read by a task.
    lines: mpsc::UnboundedReceiver<String>,
    /// Its stderr, all of it once it exits.
    stderr: Option<JoinHandle<String>>,
    /// The stdout lines read so far.
    seen: Vec<String>,
}

/// Starts example `name` of `package` with `args`, and
/// `PIKA_EXAMPLE_MAX_MESSAGES` when `max_messages` is given.
pub fn start(package: &str, name: &str, args: &[&str], max_messages: Option<usize>) -> Example {
    let mut command = Command::new(examples_dir(package).join(name));
    command
        .args(args)
        .env("AMQP_URL", url())
        .env_remove("PIKA_EXAMPLE_MAX_MESSAGES")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(max) = max_messages {
        command.env("PIKA_EXAMPLE_MAX_MESSAGES", max.to_string());
    }
    start_command(name, command)
}

/// Starts an example from a command prepared by the caller (its own
/// environment, say); stdout and stderr are taken over.
pub fn start_command(name: &str, mut command: Command) -> Example {
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("start example {name}: {e}"));
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (sender, lines) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut reader = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    let stderr = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    Example {
        name: name.to_string(),
        child,
        lines,
        stderr: Some(stderr),
        seen: Vec::new(),
    }
}

impl Example {
    /// The next stdout line; `None` once stdout is closed.
    pub async fn next_line(&mut self) -> Option<String> {
        let line = self.lines.recv().await?;
        self.seen.push(line.clone());
        Some(line)
    }

    /// Reads stdout until a line contains `text`; returns that line.
    pub async fn wait_for(&mut self, text: &str) -> String {
        let found = tokio::time::timeout(TIMEOUT, async {
            while let Some(line) = self.next_line().await {
                if line.contains(text) {
                    return Some(line);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(line)) => line,
            Ok(None) => {
                let stderr = self.take_stderr().await;
                panic!(
                    "{} exited without printing {text:?}; stdout:\n{}\nstderr:\n{stderr}",
                    self.name,
                    self.seen.join("\n"),
                )
            }
            Err(_) => panic!(
                "{} did not print {text:?} within {TIMEOUT:?}; stdout:\n{}",
                self.name,
                self.seen.join("\n")
            ),
        }
    }

    /// Its stderr, once it closed (or \"(still open)\" after 2 s).
    pub async fn take_stderr(&mut self) -> String {
        match self.stderr.take() {
            Some(task) => tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .map(|text| text.unwrap_or_default())
                .unwrap_or_else(|_| "(still open)".into()),
            None => String::new(),
        }
    }

    /// Waits for the exit; returns the status, all stdout and stderr.
    pub async fn exit(mut self) -> (ExitStatus, String, String) {
        let status = match tokio::time::timeout(TIMEOUT, self.child.wait()).await {
            Ok(status) => status.expect("wait for the example"),
            Err(_) => panic!(
                "{} did not exit within {TIMEOUT:?}; stdout so far:\n{}",
                self.name,
                self.seen.join("\n")
            ),
        };
        while self.next_line().await.is_some() {}
        let stderr = self.take_stderr().await;
        (status, self.seen.join("\n"), stderr)
    }

    /// Waits for a successful exit; returns all stdout.
    pub async fn finish(self) -> String {
        let name = self.name.clone();
        let (status, stdout, stderr) = self.exit().await;
        assert!(
            status.success(),
            "{name} failed ({status}); stdout:\n{stdout}\nstderr:\n{stderr}"
        );
        stdout
    }

    /// Sends SIGINT, as Ctrl-C in a terminal does.
    pub fn interrupt(&self) {
        let pid = self.child.id().expect("the example is running");
        let status = std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -INT {pid}");
    }
}

/// Runs every example of `package` in `examples` (name and arguments)
/// against a broken URL, a wrong password and a port where no broker
/// listens, all at once, and asserts that each fails with exit code 1 and
/// one line on stderr that a person reads: `error: ...`, no Debug dump,
/// and never the password.
///
/// # Panics
/// On the first example that does otherwise.
pub async fn assert_every_example_fails_readably(package: &str, examples: &[(&str, &[&str])]) {
    const SECRET: &str = "s3cret-pw";
    let cases = [
        (
            "broken URL",
            format!("amqp//guest:{SECRET}@127.0.0.1:5672/"),
        ),
        (
            "wrong password",
            format!("amqp://guest:{SECRET}@127.0.0.1:5672/%2f"),
        ),
        (
            "no broker",
            format!("amqp://guest:{SECRET}@127.0.0.1:1/%2f"),
        ),
    ];
    let dir = examples_dir(package);
    let mut runs = tokio::task::JoinSet::new();
    for (name, args) in examples {
        for (case, url) in &cases {
            let mut command = Command::new(dir.join(name));
            command
                .args(*args)
                .env("AMQP_URL", url)
                .env("PORT", "0")
                .env_remove("PIKA_EXAMPLE_MAX_MESSAGES")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            let (name, case) = (name.to_string(), *case);
            runs.spawn(async move {
                let output = tokio::time::timeout(TIMEOUT, command.output())
                    .await
                    .unwrap_or_else(|_| panic!("{name} ({case}) did not end"))
                    .expect("run the example");
                (name, case, output)
            });
        }
    }
    while let Some(run) = runs.join_next().await {
        let (name, case, output) = run.expect("the example run");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let context = format!("{name} ({case}):\nstdout: {stdout}\nstderr: {stderr}");
        assert_eq!(output.status.code(), Some(1), "{context}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {context}");
        assert!(lines[0].starts_with("error: "), "{context}");
        for noise in ["{ ", "Os {", "Some(", "kind:", "Arc("] {
            assert!(
                !lines[0].contains(noise),
                "Debug noise {noise:?}: {context}"
            );
        }
        assert!(!stderr.contains(SECRET), "the password leaked: {context}");
        assert!(!stdout.contains(SECRET), "the password leaked: {context}");
    }
}
