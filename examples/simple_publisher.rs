//! Publishes one message, `Hello test_queue`, to the queue `test_queue`
//! through the default exchange.
//!
//! Python original: "Simple publisher" of the aio-pika quick start.
//!
//! Start `simple_consumer` first (it declares the queue), then:
//!
//! ```text
//! cargo run --example simple_publisher
//! ```
//!
//! The broker is `AMQP_URL` (default `amqp://guest:guest@127.0.0.1/`).

use pika::{Confirmation, Message};

#[path = "support/mod.rs"]
mod support;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    support::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let url = std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1/".into());
    let connection = pika::connect_robust(&url).await?;

    let routing_key = "test_queue";
    let channel = connection.channel().await?;

    // The default exchange routes to the queue named by the routing key.
    // With publisher confirms (the default) this waits for the broker; a
    // refusal (a nack: the queue is full with x-overflow=reject-publish)
    // is an error, and `?` ends the program with it (exit code 1).
    let confirmation = channel
        .default_exchange()
        .publish(Message::new(format!("Hello {routing_key}")), routing_key)
        .await?;
    match confirmation {
        // Messages are mandatory by default: without a queue to take it,
        // the broker sends the message back instead of dropping it quietly.
        Confirmation::Returned(_) => {
            println!(" [!] No queue '{routing_key}' yet: start simple_consumer first")
        }
        _ => println!(" [x] Sent 'Hello {routing_key}'"),
    }

    connection.close().await?;
    Ok(())
}
