//! RabbitMQ tutorial 4, "Routing": sends a log message to the direct
//! exchange `direct_logs` with its severity as the routing key.
//!
//! Python original: `emit_log_direct.py` of the aio-pika RabbitMQ tutorial.
//! The Python code names the exchange `logs`, like tutorial 3's fanout
//! exchange: declaring one name with two types fails (406
//! PRECONDITION_FAILED), so this port uses `direct_logs`, the name of
//! RabbitMQ's own tutorial.
//!
//! Arguments: `SEVERITY MESSAGE...`. As in the original, the first
//! argument is the severity only when a message follows it; the defaults
//! are `info` and `Hello World!`.
//!
//! ```text
//! cargo run --example tut4_receive_logs_direct warning error   # in one terminal
//! cargo run --example tut4_emit_log_direct error "Run. Run. Or it will explode."
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

    let logs_exchange = channel
        .declare_exchange("direct_logs")
        .kind(ExchangeType::Direct)
        .await?;

    let args: Vec<String> = std::env::args().skip(1).collect();
    let (routing_key, message_body) = match args.split_first() {
        Some((severity, words)) if !words.is_empty() => (severity.as_str(), words.join(" ")),
        _ => ("info", "Hello World!".to_string()),
    };
    let message = Message::new(message_body.clone()).delivery_mode(DeliveryMode::Persistent);

    // Sending the message: it reaches the queues bound with this severity.
    let confirmation = logs_exchange.publish(message, routing_key).await?;
    println!(" [x] Sent '{routing_key}':'{message_body}'");
    if let pika::Confirmation::Returned(_) = confirmation {
        // As in the tutorial, with no queue bound for the key nobody gets
        // the message; the broker returned it, so say so.
        println!(" [!] No queue is bound for '{routing_key}': the message was dropped");
    }

    connection.close().await?;
    Ok(())
}
