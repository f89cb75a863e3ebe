//! RabbitMQ tutorial 6, "Remote procedure call": asks the RPC server for a
//! Fibonacci number (30, or the number given) and waits for the answer on
//! its own exclusive callback queue, matching it by correlation id.
//!
//! Python original: `rpc_client.py` of the aio-pika RabbitMQ tutorial.
//!
//! ```text
//! cargo run --example tut6_rpc_server      # in one terminal
//! cargo run --example tut6_rpc_client      # fib(30)
//! cargo run --example tut6_rpc_client 10   # fib(10)
//! ```
//!
//! The broker is `AMQP_URL` (default `amqp://guest:guest@127.0.0.1/`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};

use pika::{Channel, Confirmation, Connection, IncomingMessage, Message, Queue};
use tokio::sync::oneshot;

#[path = "support/mod.rs"]
mod support;

/// How long a call waits for its response.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The requests waiting for their response, by correlation id.
type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<IncomingMessage>>>>;

struct FibonacciRpcClient {
    channel: Channel,
    callback_queue: Queue,
    futures: Pending,
    next_id: AtomicU64,
}

impl FibonacciRpcClient {
    async fn connect(connection: &Connection) -> pika::Result<Self> {
        let channel = connection.channel().await?;
        // The broker names the queue; exclusive: only ours, deleted with
        // the connection.
        let callback_queue = channel.declare_queue("").exclusive(true).await?;

        let futures = Pending::default();
        let pending = futures.clone();
        callback_queue
            .consume(move |message: IncomingMessage| {
                // A response nobody waits for (a duplicate, say) is dropped.
                let waiter = message
                    .correlation_id()
                    .and_then(|id| pending.lock().unwrap().remove(id));
                async move {
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(message);
                    }
                }
            })
            // Responses need no ack: nobody else would take them anyway.
            .no_ack(true)
            .await?;

        Ok(FibonacciRpcClient {
            channel,
            callback_queue,
            futures,
            next_id: AtomicU64::new(0),
        })
    }

    async fn call(&self, n: u32) -> anyhow::Result<u64> {
        // Unique within this client's callback queue, which is all it takes
        // (the Python original uses a UUID).
        let correlation_id = self.next_id.fetch_add(1, Ordering::Relaxed).to_string();
        let (sender, response) = oneshot::channel();
        self.futures
            .lock()
            .unwrap()
            .insert(correlation_id.clone(), sender);

        let request = Message::new(n.to_string())
            .content_type("text/plain")
            .correlation_id(&correlation_id)
            .reply_to(self.callback_queue.name());
        let confirmation = self
            .channel
            .default_exchange()
            .publish(request, "rpc_queue")
            .await?;
        if let Confirmation::Returned(_) = confirmation {
            bail!("no queue 'rpc_queue': start tut6_rpc_server first");
        }

        // The queue exists but nobody may be serving it: do not wait forever.
        let response = match tokio::time::timeout(RESPONSE_TIMEOUT, response).await {
            Ok(response) => response.context("the response consumer stopped")?,
            Err(_) => {
                self.futures.lock().unwrap().remove(&correlation_id);
                bail!(
                    "no response within {RESPONSE_TIMEOUT:?}: is tut6_rpc_server running? \
                     (the request waits in 'rpc_queue' for a server)"
                );
            }
        };
        Ok(std::str::from_utf8(response.body())?.parse()?)
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    support::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let n: u32 = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 30,
    };
    let url = std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1/".into());
    let connection = pika::connect(&url).await?;

    let fibonacci_rpc = FibonacciRpcClient::connect(&connection).await?;
    println!(" [x] Requesting fib({n})");
    let response = fibonacci_rpc.call(n).await?;
    println!(" [.] Got {response}");

    connection.close().await?;
    Ok(())
}
