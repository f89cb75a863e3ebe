//! RabbitMQ tutorial 5, "Topics": sends a log message to the topic
//! exchange `topic_logs` with a `<facility>.<severity>` routing key.
//!
//! Python original: `emit_log_topic.py` of the aio-pika RabbitMQ tutorial.
//!
//! Arguments: `ROUTING_KEY MESSAGE...`. As in the original, the first
//! argument is the routing key only when a message follows it; the
//! defaults are `anonymous.info` and `Hello World!`.
//!
//! ```text
//! cargo run --example tut5_receive_logs_topic "kern.*" "*.critical"   # in one terminal
//! cargo run --example tut5_emit_log_topic kern.critical "A critical kernel error"
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

    let topic_logs_exchange = channel
        .declare_exchange("topic_logs")
        .kind(ExchangeType::Topic)
        .await?;

    let args: Vec<String> = std::env::args().skip(1).collect();
    let (routing_key, message_body) = match args.split_first() {
        Some((key, words)) if !words.is_empty() => (key.as_str(), words.join(" ")),
        _ => ("anonymous.info", "Hello World!".to_string()),
    };
    let message = Message::new(message_body.clone()).delivery_mode(DeliveryMode::Persistent);

    // Sending the message: it reaches the queues whose binding key matches.
    let confirmation = topic_logs_exchange.publish(message, routing_key).await?;
    println!(" [x] Sent '{routing_key}':'{message_body}'");
    if let pika::Confirmation::Returned(_) = confirmation {
        // As in the tutorial, with no queue bound for the key nobody gets
        // the message; the broker returned it, so say so.
        println!(" [!] No queue is bound for '{routing_key}': the message was dropped");
    }

    connection.close().await?;
    Ok(())
}
