//! Patterns, "RPC": the caller calls `multiply(x=100, y=i)` and prints
//! each product.
//!
//! Python original: the caller of aio-pika's "Patterns and helpers".
//!
//! ```text
//! cargo run -p pika-patterns --example rpc_callee   # first
//! cargo run -p pika-patterns --example rpc_caller
//! ```
//!
//! The broker is `AMQP_URL` (default `amqp://guest:guest@127.0.0.1/`).
//! It makes 1000 calls, or `PIKA_EXAMPLE_MAX_MESSAGES` when set; each gives
//! up after 5 seconds without an answer.

use std::time::Duration;

use pika::ConnectOptions;
use pika_patterns::Rpc;
use serde::Serialize;

#[path = "support/mod.rs"]
mod support;

#[derive(Serialize)]
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
    let calls = support::max_messages().unwrap_or(1000) as i64;
    let connection =
        pika::connect_robust_with(ConnectOptions::from_url(&url)?.connection_name("caller"))
            .await?;
    // Creating channel
    let channel = connection.channel().await?;
    let rpc = Rpc::create(channel).await?;

    // aio-pika's `await rpc.proxy.multiply(x=100, y=i)` and
    // `await rpc.call("multiply", kwargs=dict(x=100, y=i))`.
    for i in 0..calls {
        let product: i64 = rpc
            .call("multiply", &Multiply { x: 100, y: i })
            .timeout(Duration::from_secs(5))
            .await?;
        println!("{product}");
    }
    connection.close().await?;
    Ok(())
}
