//! The `pika-perf` binary with PerfTest's flags against the local
//! RabbitMQ (`AMQP_URL` or amqp://guest:guest@127.0.0.1:5672/%2f): a
//! short run writes its summary, CSV file and picture and deletes its
//! queues; a message limit ends a run; Ctrl-C ends a run with the summary
//! and deletes the queues. Correctness only: no timing assertions.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pika_perf::scenario::{unique_name, DEFAULT_URL};

fn url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

fn pika_perf(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pika-perf"));
    command
        .args(["-h", &url()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Waits for `child` to exit (at most `limit`), then returns its output.
fn wait(mut child: Child, limit: Duration) -> Output {
    let started = Instant::now();
    while child
        .try_wait()
        .expect("the child can be waited for")
        .is_none()
    {
        if started.elapsed() > limit {
            let _ = child.kill();
            let output = child.wait_with_output().expect("the killed child's output");
            panic!(
                "pika-perf still ran after {limit:?}\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("the child's output")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Whether the broker has `queue`: `rabbitmqctl list_queues name` when
/// rabbitmqctl runs here, else a passive declare with pika.
fn queue_exists(queue: &str) -> bool {
    if let Ok(listed) = Command::new("rabbitmqctl")
        .args(["list_queues", "name", "--quiet", "--no-table-headers"])
        .output()
    {
        if listed.status.success() {
            return String::from_utf8_lossy(&listed.stdout)
                .lines()
                .any(|line| line.trim() == queue);
        }
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(async {
            let connection = pika::connect(&url()).await.expect("a connection");
            let channel = connection.channel().await.expect("a channel");
            let exists = channel.get_queue(queue).await.is_ok();
            let _ = connection.close().await;
            exists
        })
}

fn temp_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("{}-{name}", unique_name("cli")))
}

#[test]
fn a_short_run_prints_a_summary_writes_csv_and_svg_and_deletes_its_queue() {
    let queue = unique_name("short");
    let csv = temp_file("run.csv");
    let svg = temp_file("run.svg");
    let child = pika_perf(&[
        "-x",
        "1",
        "-y",
        "2",
        "-u",
        &queue,
        "-a",
        "--id",
        "short run",
        "-r",
        "2000",
        "-z",
        "2",
        "-o",
        csv.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ])
    .spawn()
    .expect("pika-perf starts");
    let output = wait(child, Duration::from_secs(60));
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("id: short run, producers 1, consumers 2"),
        "{stdout}"
    );
    assert!(stdout.contains("ended by the time limit"), "{stdout}");
    assert!(
        stdout.contains("id: short run, sending rate avg: "),
        "{stdout}"
    );
    assert!(
        stdout.contains("id: short run, receiving rate avg: "),
        "{stdout}"
    );
    assert!(!queue_exists(&queue), "the queue {queue} is still there");

    let lines = std::fs::read_to_string(&csv).expect("the CSV file");
    let mut lines = lines.lines();
    assert_eq!(
        lines.next().map(|h| h.split(',').count()),
        Some(17),
        "PerfTest's header"
    );
    let rows: Vec<&str> = lines.collect();
    assert!(rows.len() >= 2, "{rows:?}");
    assert!(
        rows.iter()
            .all(|row| row.starts_with("short run,") && row.split(',').count() == 17),
        "{rows:?}"
    );
    let picture = std::fs::read_to_string(&svg).expect("the SVG file");
    assert!(picture.starts_with("<svg") && picture.contains("<polyline"));
    let _ = std::fs::remove_file(csv);
    let _ = std::fs::remove_file(svg);
}

#[test]
fn a_message_limit_ends_the_run_once_everything_is_received() {
    let queue = unique_name("limit");
    let child = pika_perf(&[
        "-x", "2", "-y", "1", "-u", &queue, "-C", "500", "-c", "50", "--json",
    ])
    .spawn()
    .expect("pika-perf starts");
    let output = wait(child, Duration::from_secs(60));
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(report["ended_by"], "message_limit", "{report}");
    assert_eq!(report["sent"], 1000, "{report}");
    assert_eq!(report["confirmed"], 1000, "{report}");
    assert_eq!(report["received"], 1000, "{report}");
    assert!(!queue_exists(&queue), "the queue {queue} is still there");
}

#[test]
fn several_queues_from_a_pattern_are_used_and_deleted() {
    let prefix = unique_name("pattern");
    let pattern = format!("{prefix}-%d");
    let child = pika_perf(&[
        "-x",
        "3",
        "-y",
        "3",
        "--queue-pattern",
        &pattern,
        "--queue-pattern-from",
        "1",
        "--queue-pattern-to",
        "3",
        "-C",
        "100",
        "--json",
    ])
    .spawn()
    .expect("pika-perf starts");
    let output = wait(child, Duration::from_secs(60));
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(report["queues"], 3, "{report}");
    assert_eq!(report["received"], 300, "{report}");
    for n in 1..=3 {
        let queue = format!("{prefix}-{n}");
        assert!(!queue_exists(&queue), "the queue {queue} is still there");
    }
}

#[test]
fn ctrl_c_prints_the_summary_and_deletes_the_queue() {
    let queue = unique_name("ctrl-c");
    // No -z, -C or -D: the run goes on until Ctrl-C.
    let child = pika_perf(&[
        "-x", "1", "-y", "1", "-u", &queue, "-r", "1000", "--id", "ctrl-c",
    ])
    .spawn()
    .expect("pika-perf starts");
    std::thread::sleep(Duration::from_secs(2));
    assert!(queue_exists(&queue), "the run declared {queue}");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).expect("SIGINT is sent");
    let output = wait(child, Duration::from_secs(30));
    let (stdout, stderr) = text(&output);
    assert!(
        output.status.success(),
        "exit status {:?}\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("summary over"), "{stdout}");
    assert!(stdout.contains("(ended by Ctrl-C)"), "{stdout}");
    assert!(
        stdout.contains("id: ctrl-c, sending rate avg: "),
        "{stdout}"
    );
    assert!(stderr.contains("Ctrl-C: stopping"), "{stderr}");
    assert!(!queue_exists(&queue), "the queue {queue} is still there");
}

#[test]
fn a_bad_command_line_exits_with_2_and_says_why() {
    let output = pika_perf(&["-x", "0", "-y", "0"])
        .output()
        .expect("pika-perf runs");
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("nothing to do"), "{stderr}");
}
