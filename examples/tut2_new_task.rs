//! RabbitMQ tutorial 2, "Work Queues": sends a task (the command-line
//! arguments, or `Hello World!`) to the durable queue `task_queue`, as a
//! persistent message. Each dot in the task is a second of work.
//!
//! Python original: `new_task.py` of the aio-pika RabbitMQ tutorial.
//!
//! ```text
//! cargo run --example tut2_worker               # in one or more terminals
//! cargo run --example tut2_new_task First message.
//! cargo run --example tut2_new_task Second message..
//! ```
//!
//! The broker is `AMQP_URL` (default `amqp://guest:guest@127.0.0.1/`).

use pika::{DeliveryMode, Message};

#[path = "support/mod.rs"]
mod support;

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

    let args: Vec<String> = std::env::args().skip(1).collect();
    let message_body = if args.is_empty() {
        "Hello World!".to_string()
    } else {
        args.join(" ")
    };
    // Persistent: written to disk, so the task survives a broker restart
    // (together with the durable queue the worker declares).
    let message = Message::new(message_body.clone()).delivery_mode(DeliveryMode::Persistent);

    // Sending the message
    channel
        .default_exchange()
        .publish(message, "task_queue")
        .await?
        .ensure_routed()?;
    println!(" [x] Sent '{message_body}'");

    connection.close().await?;
    Ok(())
}
