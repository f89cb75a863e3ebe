//! Patterns, "Master/Worker": a worker of the tasks `my_task_name`. As in
//! the docs, it rejects even task ids and nacks odd ones (both without
//! requeue), to show how a handler asks for either.
//!
//! Python original: the worker of aio-pika's "Patterns and helpers".
//!
//! ```text
//! cargo run -p pika-patterns --example worker     # one or more
//! cargo run -p pika-patterns --example master
//! ```
//!
//! The broker is `AMQP_URL` (default `amqp://guest:guest@127.0.0.1/`).
//! It runs until Ctrl-C, or until `PIKA_EXAMPLE_MAX_MESSAGES` tasks were
//! handled when that variable is set.

use pika_patterns::{Master, NackMessage, QueueOptions, RejectMessage, TaskError};
use serde::Deserialize;
use tokio::sync::mpsc;

#[path = "support/mod.rs"]
mod support;

#[derive(Deserialize)]
struct MyTask {
    task_id: u64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    support::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let url = support::amqp_url();
    let connection = pika::connect_robust(&url).await?;
    // Creating channel
    let channel = connection.channel().await?;
    let master = Master::new(channel);

    let (handled, done) = mpsc::unbounded_channel();
    let worker = master
        .create_worker(
            "my_task_name",
            move |task: MyTask| {
                let handled = handled.clone();
                async move {
                    let _ = handled.send(());
                    // If you want to reject message or send nack, return
                    // the special errors.
                    if task.task_id.is_multiple_of(2) {
                        println!(" [x] task {}: reject", task.task_id);
                        return Err(TaskError::from(RejectMessage { requeue: false }));
                    }
                    println!(" [x] task {}: nack", task.task_id);
                    Err(NackMessage { requeue: false }.into())
                }
            },
            QueueOptions::durable().auto_delete(true),
        )
        .await?;
    println!(" [*] Waiting for tasks. To exit press CTRL+C");

    support::until_ctrl_c_or_max_messages(done).await;
    worker.close().await?;
    connection.close().await?;
    Ok(())
}
