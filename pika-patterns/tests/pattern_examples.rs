//! The patterns examples of the workspace's `examples/` folder (aio-pika's
//! "Patterns and helpers"), run as programs against the real broker.
//! They use fixed queue names (`my_task_name`, `multiply`), so the tests
//! run one at a time (a lock).

use pika_test_support::example_runner::{self, Example};

/// One test at a time under `cargo test` (nextest runs each test in its
/// own process: `.config/nextest.toml` puts them in one group).
static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn start(name: &str, max_messages: Option<usize>) -> Example {
    example_runner::start("pika-patterns", name, &[], max_messages)
}

#[tokio::test]
async fn master_creates_tasks_that_the_worker_rejects_and_nacks_as_the_docs_do() {
    let _lock = BROKER.lock().await;
    let mut worker = start("worker", Some(6));
    worker.wait_for("Waiting for tasks").await;
    let created = start("master", Some(6)).finish().await;
    assert!(created.contains("Created 6 tasks"), "{created}");
    let stdout = worker.finish().await;
    for id in [0, 2, 4] {
        assert!(stdout.contains(&format!("task {id}: reject")), "{stdout}");
    }
    for id in [1, 3, 5] {
        assert!(stdout.contains(&format!("task {id}: nack")), "{stdout}");
    }
}

#[tokio::test]
async fn master_without_a_worker_says_so_and_fails() {
    let _lock = BROKER.lock().await;
    let (status, _, stderr) = start("master", Some(1)).exit().await;
    assert!(!status.success());
    assert!(
        stderr.starts_with("error: no queue named 'my_task_name'")
            && stderr.contains("start a worker"),
        "{stderr}"
    );
}

#[tokio::test]
async fn rpc_caller_gets_the_products_from_rpc_callee() {
    let _lock = BROKER.lock().await;
    let mut callee = start("rpc_callee", Some(5));
    callee.wait_for("Serving multiply").await;
    let stdout = start("rpc_caller", Some(5)).finish().await;
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["0", "100", "200", "300", "400"]
    );
    callee.finish().await;
}

#[tokio::test]
async fn extending_serializers_speaks_gzip_json_on_both_sides() {
    let _lock = BROKER.lock().await;
    let stdout = start("extending_serializers", None).finish().await;
    assert!(
        stdout.contains("gzip_multiply(x=100, y=3) = 300"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Hello, gzip!") && stdout.contains("Hello, json!"),
        "{stdout}"
    );
}

/// Every patterns and pooling example, run against a broken URL, a wrong
/// password and a port where no broker listens, fails with one line a
/// person reads: no Debug dump, no password.
#[tokio::test]
async fn every_example_fails_with_one_readable_line_and_no_password() {
    example_runner::assert_every_example_fails_readably(
        "pika-patterns",
        &[
            ("master", &[]),
            ("worker", &[]),
            ("rpc_caller", &[]),
            ("rpc_callee", &[]),
            ("extending_serializers", &[]),
            ("connection_pool", &[]),
        ],
    )
    .await;
}
