//! RabbitMQ tutorial 6, "Remote procedure call": serves Fibonacci numbers.
//! Requests arrive on the queue `rpc_queue`; each reply goes to the
//! request's `reply_to` queue with its `correlation_id`.
//!
//! Python original: `rpc_server.py` of the aio-pika RabbitMQ tutorial.
//!
//! ```text
//! cargo run --example tut6_rpc_server      # in one terminal
//! cargo run --example tut6_rpc_client      # in another: fib(30)
//! ```
//!
//! The broker is `AMQP_URL` (default `amqp://guest:guest@127.0.0.1/`).
//! It runs until Ctrl-C, or until `PIKA_EXAMPLE_MAX_MESSAGES` requests
//! were handled when that variable is set.

use std::error::Error;

use pika::{Exchange, IncomingMessage, Message};
use tokio::sync::mpsc;

#[path = "support/mod.rs"]
mod support;

/// The slowest recursive implementation possible, on purpose.
fn fib(n: u32) -> u64 {
    match n {
        0 => 0,
        1 => 1,
        n => fib(n - 1) + fib(n - 2),
    }
}

async fn on_message(exchange: Exchange, message: IncomingMessage) {
    // process(): ack when the reply is sent; reject a request that cannot
    // be answered (not a number, no reply_to).
    let result = message
        .process()
        .run(|message| async move {
            let n: u32 = std::str::from_utf8(message.body())?.trim().parse()?;
            println!(" [.] fib({n})");
            let response = fib(n).to_string();

            let reply_to = message.reply_to().ok_or("request without reply_to")?;
            let mut reply = Message::new(response);
            if let Some(correlation_id) = message.correlation_id() {
                reply = reply.correlation_id(correlation_id);
            }
            exchange.publish(reply, reply_to).await?.ensure_routed()?;
            println!("Request complete");
            Ok::<_, Box<dyn Error + Send + Sync>>(())
        })
        .await;
    if let Err(error) = result {
        eprintln!(" [!] Bad request: {error}");
    }
}

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
    // Declaring queue
    let queue = channel.declare_queue("rpc_queue").await?;

    // Start listening the queue with name 'rpc_queue'; replies go through
    // the default exchange. The callback reports on `done`.
    let exchange = channel.default_exchange();
    let (done, handled) = mpsc::unbounded_channel();
    queue
        .consume(move |message| {
            let exchange = exchange.clone();
            let done = done.clone();
            async move {
                on_message(exchange, message).await;
                let _ = done.send(());
            }
        })
        .await?;
    println!(" [x] Awaiting RPC requests");

    // Wait for Ctrl-C, or for PIKA_EXAMPLE_MAX_MESSAGES handled requests.
    support::until_ctrl_c_or_max_messages(handled).await;
    connection.close().await?;
    Ok(())
}
