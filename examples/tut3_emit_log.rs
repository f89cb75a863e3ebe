//! RabbitMQ tutorial 3, "Publish/Subscribe": broadcasts a log message (the
//! command-line arguments, or `Hello World!`) to the fanout exchange
//! `logs`.
//!
//! Python original: `emit_log.py` of the aio-pika RabbitMQ tutorial.
//!
//! ```text
//! cargo run --example tut3_receive_logs     # in one or more terminals
//! cargo run --example tut3_emit_log Something happened
//! ```
//!
//! The broker is `AMQP_URL` (default `amqp://guest:guest@127.0.0.1/`).

use pika::{DeliveryMode, ExchangeType, Message};

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

    // Publishing to an exchange that does not exist is an error: declare it.
    let logs_exchange = channel
        .declare_exchange("logs")
        .kind(ExchangeType::Fanout)
        .await?;

    let args: Vec<String> = std::env::args().skip(1).collect();
    let message_body = if args.is_empty() {
        "Hello World!".to_string()
    } else {
        args.join(" ")
    };
    let message = Message::new(message_body.clone()).delivery_mode(DeliveryMode::Persistent);

    // Sending the message. A fanout exchange ignores the routing key; with
    // no receiver bound, the message is lost, which is fine for logs.
    let confirmation = logs_exchange.publish(message, "info").await?;
    println!(" [x] Sent '{message_body}'");
    if let pika::Confirmation::Returned(_) = confirmation {
        println!(" [!] No queue is bound to 'logs': the message was dropped");
    }

    connection.close().await?;
    Ok(())
}
