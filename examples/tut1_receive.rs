//! RabbitMQ tutorial 1, "Hello World!": receives messages from the queue
//! `hello` with a callback, without acknowledgements (`no_ack`).
//!
//! Python original: `receive.py` of the aio-pika RabbitMQ tutorial.
//!
//! ```text
//! cargo run --example tut1_receive     # in one terminal
//! cargo run --example tut1_send        # in another
//! ```
//!
//! The broker is `AMQP_URL` (default `amqp://guest:guest@127.0.0.1/`).
//! It runs until Ctrl-C, or until `PIKA_EXAMPLE_MAX_MESSAGES` messages
//! were handled when that variable is set.

use std::time::Duration;

use pika::IncomingMessage;
use tokio::sync::mpsc;

#[path = "support/mod.rs"]
mod support;

async fn on_message(message: IncomingMessage) {
    println!(" [x] Received message {:#?}", message.info());
    println!("Message body is: {:?}", message.body());
    println!("Before sleep!");
    tokio::time::sleep(Duration::from_secs(5)).await; // Represents async I/O operations
    println!("After sleep!");
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
    // Declaring queue
    let queue = channel.declare_queue("hello").await?;

    // Start listening the queue with name 'hello'. The callback runs in a
    // task of its own per message, then reports on `done`.
    let (done, handled) = mpsc::unbounded_channel();
    queue
        .consume(move |message| {
            let done = done.clone();
            async move {
                on_message(message).await;
                let _ = done.send(());
            }
        })
        .no_ack(true)
        .await?;
    println!(" [*] Waiting for messages. To exit press CTRL+C");

    // Wait for Ctrl-C, or for PIKA_EXAMPLE_MAX_MESSAGES handled messages.
    support::until_ctrl_c_or_max_messages(handled).await;
    connection.close().await?;
    Ok(())
}
