//! Consumes `test_queue` with a callback: each message is processed in its
//! own task, up to 100 at once (the prefetch count), each taking a second.
//!
//! Python original: "Asynchronous message processing" of the aio-pika
//! quick start.
//!
//! ```text
//! cargo run --example async_processing
//! cargo run --example simple_publisher     # in another terminal, repeatedly
//! ```
//!
//! The broker is `AMQP_URL` (default `amqp://guest:guest@127.0.0.1/`).
//! It runs until Ctrl-C, or until `PIKA_EXAMPLE_MAX_MESSAGES` messages
//! were processed when that variable is set.

use std::time::Duration;

use pika::IncomingMessage;
use tokio::sync::mpsc;

#[path = "support/mod.rs"]
mod support;

async fn process_message(message: IncomingMessage) {
    // process(): ack when the work returns Ok, reject when it fails.
    let result = message
        .process()
        .run(|message| async move {
            println!("{:?}", message.body());
            tokio::time::sleep(Duration::from_secs(1)).await;
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
    let connection = pika::connect_robust(&url).await?;
    let queue_name = "test_queue";

    // Creating channel
    let channel = connection.channel().await?;
    // Maximum message count which will be processing at the same time.
    channel.set_qos().prefetch_count(100).await?;
    // Declaring queue
    let queue = channel.declare_queue(queue_name).auto_delete(true).await?;

    // The callback runs in a task of its own for each message. It reports
    // on `done` when finished, so that main can count processed messages.
    let (done, processed) = mpsc::unbounded_channel();
    queue
        .consume(move |message| {
            let done = done.clone();
            async move {
                process_message(message).await;
                let _ = done.send(());
            }
        })
        .await?;
    println!(" [*] Waiting for messages. To exit press CTRL+C");

    // Wait for Ctrl-C, or for PIKA_EXAMPLE_MAX_MESSAGES processed messages.
    support::until_ctrl_c_or_max_messages(processed).await;
    connection.close().await?;
    Ok(())
}
