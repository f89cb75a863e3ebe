//! RabbitMQ tutorial 2, "Work Queues": takes tasks from the durable queue
//! `task_queue` one at a time (prefetch 1, fair dispatch) and acks each
//! when done; every dot in a task is a second of work.
//!
//! Python original: `worker.py` of the aio-pika RabbitMQ tutorial.
//!
//! ```text
//! cargo run --example tut2_worker               # in one or more terminals
//! cargo run --example tut2_new_task Hello...
//! ```
//!
//! The broker is `AMQP_URL` (default `amqp://guest:guest@127.0.0.1/`).
//! It runs until Ctrl-C, or until `PIKA_EXAMPLE_MAX_MESSAGES` tasks were
//! done when that variable is set.

use std::time::Duration;

use pika::IncomingMessage;
use tokio::sync::mpsc;

#[path = "support/mod.rs"]
mod support;

async fn on_message(message: IncomingMessage) {
    // process(): ack when the work returns Ok. If the worker dies before,
    // the broker gives the task to another worker.
    let result = message
        .process()
        .run(|message| async move {
            let body = String::from_utf8_lossy(message.body());
            println!(" [x] Received '{body}'");
            let dots = body.matches('.').count() as u64;
            tokio::time::sleep(Duration::from_secs(dots)).await;
            println!(" [x] Done");
            Ok::<_, pika::Error>(())
        })
        .await;
    if let Err(error) = result {
        eprintln!(" [!] {error}");
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    support::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let url = std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1/".into());
    // Perform connection
    let connection = pika::connect(&url).await?;
    // Creating a channel
    let channel = connection.channel().await?;
    // Don't give this worker a new task before it acked the previous one.
    channel.set_qos().prefetch_count(1).await?;

    // Declaring queue: durable, it survives a broker restart.
    let queue = channel.declare_queue("task_queue").durable(true).await?;

    // Start listening the queue with name 'task_queue'. The callback
    // reports on `done` when a task is finished.
    let (done, handled) = mpsc::unbounded_channel();
    queue
        .consume(move |message| {
            let done = done.clone();
            async move {
                on_message(message).await;
                let _ = done.send(());
            }
        })
        .await?;
    println!(" [*] Waiting for messages. To exit press CTRL+C");

    // Wait for Ctrl-C, or for PIKA_EXAMPLE_MAX_MESSAGES finished tasks.
    support::until_ctrl_c_or_max_messages(handled).await;
    connection.close().await?;
    Ok(())
}
