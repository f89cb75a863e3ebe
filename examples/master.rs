//! Patterns, "Master/Worker": the master creates tasks `my_task_name`
//! (persistent, in the durable queue of that name), which workers take.
//!
//! Python original: the master of aio-pika's "Patterns and helpers".
//!
//! ```text
//! cargo run -p pika-patterns --example worker     # first: it declares the queue
//! cargo run -p pika-patterns --example master
//! ```
//!
//! The broker is `AMQP_URL` (default `amqp://guest:guest@127.0.0.1/`).
//! It creates 1000 tasks, or `PIKA_EXAMPLE_MAX_MESSAGES` when set. aio-pika
//! connects with `connect_robust`; pika has no automatic reconnection yet,
//! so this uses `connect`.

use pika_patterns::Master;
use serde::Serialize;

#[path = "support/mod.rs"]
mod support;

/// The task's keyword arguments (aio-pika's `kwargs=dict(task_id=...)`).
#[derive(Serialize)]
struct MyTask {
    task_id: u64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    support::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let url = support::amqp_url();
    let tasks = support::max_messages().unwrap_or(1000) as u64;
    let connection = pika::connect_robust(&url).await?;
    // Creating channel
    let channel = connection.channel().await?;
    let master = Master::new(channel);

    // Creates tasks (aio-pika's `master.proxy.my_task_name(task_id=...)`
    // and `master.create_task("my_task_name", kwargs=...)` are one typed
    // call in Rust).
    for task_id in 0..tasks {
        master
            .create_task("my_task_name", &MyTask { task_id })
            .await?;
    }
    println!(" [x] Created {tasks} tasks");
    connection.close().await?;
    Ok(())
}
