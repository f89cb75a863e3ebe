//! RabbitMQ tutorial 3, "Publish/Subscribe": receives every message
//! broadcast to the fanout exchange `logs`, through a fresh exclusive queue
//! named by the broker.
//!
//! Python original: `receive_logs.py` of the aio-pika RabbitMQ tutorial.
//!
//! ```text
//! cargo run --example tut3_receive_logs     # in one or more terminals
//! cargo run --example tut3_emit_log Something happened
//! ```
//!
//! The broker is `AMQP_URL` (default `amqp://guest:guest@127.0.0.1/`).
//! It runs until Ctrl-C, or until `PIKA_EXAMPLE_MAX_MESSAGES` messages
//! were handled when that variable is set.

use pika::{ExchangeType, IncomingMessage};
use tokio::sync::mpsc;

#[path = "support/mod.rs"]
mod support;

async fn on_message(message: IncomingMessage) {
    let result = message
        .process()
        .run(|message| async move {
            println!("[x] '{}'", String::from_utf8_lossy(message.body()));
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
    channel.set_qos().prefetch_count(1).await?;

    let logs_exchange = channel
        .declare_exchange("logs")
        .kind(ExchangeType::Fanout)
        .await?;

    // Declaring queue: an empty name lets the broker choose one; exclusive,
    // it is deleted when this connection closes.
    let queue = channel.declare_queue("").exclusive(true).await?;

    // Binding the queue to the exchange (fanout: the key is ignored)
    queue.bind(&logs_exchange, "").await?;

    // Start listening the queue. The callback reports on `done`.
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
    println!(" [*] Waiting for logs. To exit press CTRL+C");

    // Wait for Ctrl-C, or for PIKA_EXAMPLE_MAX_MESSAGES handled messages.
    support::until_ctrl_c_or_max_messages(handled).await;
    connection.close().await?;
    Ok(())
}
