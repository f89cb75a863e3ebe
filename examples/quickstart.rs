//! The quickstart of the README: publish a message, consume it, print it.
//!
//! `cargo run --example quickstart` (the broker is `AMQP_URL`, default the
//! local RabbitMQ with guest/guest).

use futures_util::StreamExt;
use pika::{ExchangeType, Message};

#[path = "support/mod.rs"]
mod support;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    support::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let url = std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1/".into());
    let connection = pika::connect_robust(&url).await?;
    // The URL may hold a password: print where we are, not the URL.
    println!("connected to {}", connection.address());

    // A channel with publisher confirms (the default).
    let channel = connection.channel().await?;
    let exchange = channel
        .declare_exchange("pika.quickstart")
        .kind(ExchangeType::Topic)
        .await?;
    let queue = channel.declare_queue("").exclusive(true).await?;
    queue.bind(&exchange, "greetings.#").await?;

    let confirmation = exchange
        .publish(
            Message::new("Hello from pika!").content_type("text/plain"),
            "greetings.world",
        )
        .await?;
    println!("published: {confirmation:?}");

    let mut messages = queue.iterator().await?;
    if let Some(message) = messages.next().await {
        let message = message?;
        println!(
            "received {:?} (routing key {}, content type {:?})",
            String::from_utf8_lossy(message.body()),
            message.routing_key(),
            message.content_type()
        );
        message.ack(false)?;
    }
    exchange.delete().await?;
    connection.close().await?;
    println!("done");
    Ok(())
}
