//! Consumes `test_queue` with a queue iterator, processing each message
//! (ack on success, reject on failure) until one mentions the queue's name.
//!
//! Python original: "Simple consumer" of the aio-pika quick start.
//!
//! Run it, then `simple_publisher` in another terminal:
//!
//! ```text
//! cargo run --example simple_consumer
//! cargo run --example simple_publisher
//! ```
//!
//! The broker is `AMQP_URL` (default `amqp://guest:guest@127.0.0.1/`).
//! It stops at the message that mentions the queue, on Ctrl-C, or after
//! `PIKA_EXAMPLE_MAX_MESSAGES` messages when that variable is set.

use futures_util::StreamExt;

#[path = "support/mod.rs"]
mod support;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    support::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let url = std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1/".into());
    let max_messages: Option<usize> = std::env::var("PIKA_EXAMPLE_MAX_MESSAGES")
        .ok()
        .and_then(|n| n.parse().ok());

    let connection = pika::connect_robust(&url).await?;
    let queue_name = "test_queue";

    // Creating channel
    let channel = connection.channel().await?;
    // Declaring queue (deleted by the broker when its last consumer goes)
    let queue = channel.declare_queue(queue_name).auto_delete(true).await?;

    // The iterator is a Stream of messages; dropping it cancels the consumer.
    let mut messages = queue.iterator().await?;
    println!(" [*] Waiting for messages. To exit press CTRL+C");
    // One Ctrl-C listener for the whole loop, so that none is missed.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut handled = 0;
    loop {
        let message = tokio::select! {
            message = messages.next() => message,
            _ = &mut ctrl_c => break,
        };
        // `None`: the consumer was cancelled (say, the queue was deleted).
        let Some(message) = message else { break };
        // process(): the guard rejects the message if we leave this block
        // early (an error, a panic); `ack()` when the work is done.
        let message = message?.process().guard();
        println!("{:?}", message.body());
        let last = String::from_utf8_lossy(message.body()).contains(queue.name());
        message.ack()?;

        handled += 1;
        if last || Some(handled) == max_messages {
            break;
        }
    }
    // Cancels the consumer; messages it had received but not yielded go
    // back to the queue.
    drop(messages);
    connection.close().await?;
    Ok(())
}
