//! Patterns, "RPC": the callee serves `multiply`; replies go back over
//! RabbitMQ's direct reply-to.
//!
//! Python original: the callee of aio-pika's "Patterns and helpers".
//!
//! ```text
//! cargo run -p pika-patterns --example rpc_callee   # first
//! cargo run -p pika-patterns --example rpc_caller
//! ```
//!
//! The broker is `AMQP_URL` (default `amqp://guest:guest@127.0.0.1/`).
//! It runs until Ctrl-C, or until `PIKA_EXAMPLE_MAX_MESSAGES` calls were
//! answered when that variable is set.

use pika::ConnectOptions;
use pika_patterns::{QueueOptions, Rpc};
use serde::Deserialize;
use tokio::sync::mpsc;

#[path = "support/mod.rs"]
mod support;

/// The keyword arguments of `multiply(*, x, y)`.
#[derive(Deserialize)]
struct Multiply {
    x: i64,
    y: i64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    support::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let url = support::amqp_url();
    let connection =
        pika::connect_robust_with(ConnectOptions::from_url(&url)?.connection_name("callee"))
            .await?;
    // Creating channel
    let channel = connection.channel().await?;
    let rpc = Rpc::create(channel).await?;

    let (answered, done) = mpsc::unbounded_channel();
    rpc.register(
        "multiply",
        move |args: Multiply| {
            let answered = answered.clone();
            async move {
                let _ = answered.send(());
                Ok::<i64, std::convert::Infallible>(args.x * args.y)
            }
        },
        QueueOptions::transient().auto_delete(true),
    )
    .await?;
    println!(" [*] Serving multiply. To exit press CTRL+C");

    support::until_ctrl_c_or_max_messages(done).await;
    rpc.close().await?;
    connection.close().await?;
    Ok(())
}
