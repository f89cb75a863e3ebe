//! RabbitMQ tutorial 1, "Hello World!": sends one message to the queue
//! `hello`.
//!
//! Python original: `send.py` of the aio-pika RabbitMQ tutorial.
//!
//! ```text
//! cargo run --example tut1_receive     # in one terminal
//! cargo run --example tut1_send        # in another
//! ```
//!
//! The broker is `AMQP_URL` (default `amqp://guest:guest@127.0.0.1/`).

use pika::Message;

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

    // Make sure the recipient queue exists (declaring is idempotent).
    channel.declare_queue("hello").await?;

    // Sending the message through the default exchange, which routes to
    // the queue named by the routing key.
    channel
        .default_exchange()
        .publish(Message::new("Hello World!"), "hello")
        .await?
        .ensure_routed()?;
    println!(" [x] Sent 'Hello World!'");

    // Closing the connection waits until everything was sent.
    connection.close().await?;
    Ok(())
}
