//! Declares an exchange and a queue, binds them, publishes a message with
//! properties and fetches it back with `basic.get`; then cleans up.
//!
//! Python original: "Get single message example" of the aio-pika quick
//! start.
//!
//! ```text
//! cargo run --example get_single_message
//! ```
//!
//! The broker is `AMQP_URL` (default `amqp://guest:guest@127.0.0.1/`).

use std::time::Duration;

use pika::Message;

#[path = "support/mod.rs"]
mod support;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    support::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let url = std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1/".into());
    let connection = pika::connect_robust(&url).await?;

    let queue_name = "test_queue";
    let routing_key = "test_queue";

    // Creating channel
    let channel = connection.channel().await?;
    // Declaring exchange (a direct exchange named "direct")
    let exchange = channel.declare_exchange("direct").auto_delete(true).await?;
    // Declaring queue
    let queue = channel.declare_queue(queue_name).auto_delete(true).await?;
    // Binding queue
    queue.bind(&exchange, routing_key).await?;

    exchange
        .publish(
            Message::new("Hello")
                .content_type("text/plain")
                .header("foo", "bar"),
            routing_key,
        )
        .await?
        .ensure_routed()?;

    // Receiving message. An empty queue is Err(Error::QueueEmpty) unless
    // `.fail(false)` is set, so here there always is a message.
    let incoming_message = queue
        .get()
        .timeout(Duration::from_secs(5))
        .await?
        .expect("fail(true) reports an empty queue as an error");
    let body = String::from_utf8_lossy(incoming_message.body());
    let content_type = incoming_message.content_type().unwrap_or_default();
    let headers = incoming_message.headers();
    let header = headers
        .get("foo")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    println!(" [x] Received '{body}' ({content_type}, header foo={header})");
    // Confirm message
    incoming_message.ack(false)?;

    queue.unbind(&exchange, routing_key).await?;
    queue.delete().await?;
    connection.close().await?;
    Ok(())
}
