//! RabbitMQ tutorial 5, "Topics": receives the log messages whose routing
//! key matches one of the binding keys given (`*` is one word, `#` any
//! number) from the topic exchange `topic_logs`.
//!
//! Python original: `receive_logs_topic.py` of the aio-pika RabbitMQ
//! tutorial. One change, as in RabbitMQ's own tutorial: the queue is a
//! fresh exclusive one (the Python code binds tutorial 2's durable
//! `task_queue`, which then collects logs for the workers forever).
//!
//! ```text
//! cargo run --example tut5_receive_logs_topic "#"                  # everything
//! cargo run --example tut5_receive_logs_topic "kern.*" "*.critical"
//! cargo run --example tut5_emit_log_topic kern.critical "A critical kernel error"
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
    let binding_keys: Vec<String> = std::env::args().skip(1).collect();
    if binding_keys.is_empty() {
        let program = std::env::args().next().unwrap_or_default();
        eprintln!("Usage: {program} [binding_key]...");
        std::process::exit(1);
    }

    let url = std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1/".into());
    // Perform connection
    let connection = pika::connect(&url).await?;
    // Creating a channel
    let channel = connection.channel().await?;
    channel.set_qos().prefetch_count(1).await?;

    // Declare an exchange
    let topic_logs_exchange = channel
        .declare_exchange("topic_logs")
        .kind(ExchangeType::Topic)
        .await?;

    // Declaring queue: named by the broker, deleted when this connection
    // closes
    let queue = channel.declare_queue("").exclusive(true).await?;
    for binding_key in &binding_keys {
        queue.bind(&topic_logs_exchange, binding_key).await?;
    }

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
    println!(" [*] Waiting for messages. To exit press CTRL+C");

    // Wait for Ctrl-C, or for PIKA_EXAMPLE_MAX_MESSAGES handled messages.
    support::until_ctrl_c_or_max_messages(handled).await;
    connection.close().await?;
    Ok(())
}
