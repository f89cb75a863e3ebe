//! Publishes inside transactions: ten messages committed together, one
//! committed with a manual transaction, and one rolled back (never
//! delivered).
//!
//! Python original: "Working with RabbitMQ transactions" of the aio-pika
//! quick start.
//!
//! Declare `test_queue` first to see the messages arrive, for instance by
//! starting `async_processing`, then:
//!
//! ```text
//! cargo run --example transactions
//! ```
//!
//! The broker is `AMQP_URL` (default `amqp://guest:guest@127.0.0.1/`).

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
    let routing_key = "test_queue";

    // Transactions conflict with publisher confirms: turn them off.
    let channel = connection.channel().publisher_confirms(false).await?;
    let exchange = channel.default_exchange();

    // A scoped transaction (Python's `async with channel.transaction()`):
    // rolled back if `scope` is dropped before `commit`, say by an error.
    let scope = channel.transaction()?.begin().await?;
    // Publishing messages, but delivery will not be done before the commit.
    for i in 0..10 {
        let message = Message::new(format!("Hello #{i}"));
        exchange
            .publish(message, routing_key)
            .await?
            .ensure_routed()?;
    }
    scope.commit().await?;
    println!(" [x] Committed 10 messages");

    // Using transactions manually
    let tx = channel.transaction()?;
    tx.select().await?;
    let body = format!("Hello {routing_key}");
    exchange
        .publish(Message::new(body.clone()), routing_key)
        .await?
        .ensure_routed()?;
    tx.commit().await?;
    println!(" [x] Committed '{body}'");

    // Using transactions manually, and rolling back
    let tx = channel.transaction()?;
    tx.select().await?;
    exchange
        .publish(Message::new("Should be rejected"), routing_key)
        .await?
        .ensure_routed()?;
    tx.rollback().await?;
    println!(" [x] Rolled back 'Should be rejected'");

    connection.close().await?;
    Ok(())
}
