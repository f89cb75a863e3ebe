//! RabbitMQ tutorial 4, "Routing": receives the log messages of the given
//! severities from the direct exchange `direct_logs`, one binding per
//! severity.
//!
//! Python original: `receive_logs_direct.py` of the aio-pika RabbitMQ
//! tutorial. Two changes, as in RabbitMQ's own tutorial: the exchange is
//! `direct_logs` (the Python code reuses tutorial 3's name `logs` with
//! another type, which the broker refuses), and the queue is exclusive
//! (the Python code declares a durable server-named queue, which outlives
//! the receiver and piles up messages forever).
//!
//! ```text
//! cargo run --example tut4_receive_logs_direct info warning error
//! cargo run --example tut4_emit_log_direct error "Run. Run. Or it will explode."
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
            let body = String::from_utf8_lossy(message.body());
            println!(" [x] '{}':'{body}'", message.routing_key());
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
    let severities: Vec<String> = std::env::args().skip(1).collect();
    if severities.is_empty() {
        let program = std::env::args().next().unwrap_or_default();
        eprintln!("Usage: {program} [info] [warning] [error]");
        std::process::exit(1);
    }

    let url = std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1/".into());
    // Perform connection
    let connection = pika::connect(&url).await?;
    // Creating a channel
    let channel = connection.channel().await?;
    channel.set_qos().prefetch_count(1).await?;

    // Declare an exchange
    let direct_logs_exchange = channel
        .declare_exchange("direct_logs")
        .kind(ExchangeType::Direct)
        .await?;

    // Declaring random queue, deleted when this connection closes
    let queue = channel.declare_queue("").exclusive(true).await?;
    for severity in &severities {
        queue.bind(&direct_logs_exchange, severity).await?;
    }

    // Start listening the random queue. The callback reports on `done`.
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
    println!(" [*] Waiting for messages. To exit press CTRL+C");

    // Wait for Ctrl-C, or for PIKA_EXAMPLE_MAX_MESSAGES handled messages.
    support::until_ctrl_c_or_max_messages(handled).await;
    connection.close().await?;
    Ok(())
}
