//! Patterns, "Extending": the payload format of Master/Worker and RPC is
//! a `Serializer`; this one is gzip-compressed JSON (the docs'
//! `JsonGZipRPC`). It runs both sides in one process: a worker and an RPC
//! handler, a master and a caller, all speaking gzip.
//!
//! Python original: the "Extending" example of aio-pika's "Patterns and
//! helpers" (`JsonMaster`, `JsonRPC`, `JsonGZipRPC`).
//!
//! ```text
//! cargo run -p pika-patterns --example extending_serializers
//! ```
//!
//! The broker is `AMQP_URL` (default `amqp://guest:guest@127.0.0.1/`).

use std::io::{Read, Write};
use std::time::Duration;

use pika_patterns::{
    Json, Master, QueueOptions, ReplyQueue, Rpc, SerializeError, Serializer, TaskError,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

#[path = "support/mod.rs"]
mod support;

/// JSON, gzip-compressed: content type `application/json`, content
/// encoding `gzip`, both checked on receipt.
#[derive(Debug, Clone, Copy)]
struct GzipJson;

impl Serializer for GzipJson {
    fn content_type(&self) -> &str {
        "application/json"
    }

    fn content_encoding(&self) -> Option<&str> {
        Some("gzip")
    }

    fn serialize<T: Serialize + ?Sized>(&self, value: &T) -> Result<bytes::Bytes, SerializeError> {
        let json = Json.serialize(value)?;
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(&json)?;
        Ok(gzip.finish()?.into())
    }

    fn deserialize<T: DeserializeOwned>(&self, body: &[u8]) -> Result<T, SerializeError> {
        let mut json = Vec::new();
        flate2::read::GzDecoder::new(body).read_to_end(&mut json)?;
        Json.deserialize(&json)
    }
}

#[derive(Serialize, Deserialize)]
struct Multiply {
    x: i64,
    y: i64,
}

#[derive(Serialize, Deserialize)]
struct Greet {
    name: String,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    support::exit_code(run().await)
}

async fn run() -> anyhow::Result<()> {
    let url = support::amqp_url();
    let connection = pika::connect_robust(&url).await?;

    // RPC with gzip-compressed JSON on both sides.
    let callee = Rpc::create_with(
        connection.channel().await?,
        GzipJson,
        ReplyQueue::DirectReplyTo,
    )
    .await?;
    callee
        .register(
            "gzip_multiply",
            |args: Multiply| async move { Ok::<i64, std::convert::Infallible>(args.x * args.y) },
            QueueOptions::transient().auto_delete(true),
        )
        .await?;
    let caller = Rpc::create_with(
        connection.channel().await?,
        GzipJson,
        ReplyQueue::DirectReplyTo,
    )
    .await?;
    for y in 1..=3 {
        let product: i64 = caller
            .call("gzip_multiply", &Multiply { x: 100, y })
            .timeout(Duration::from_secs(5))
            .await?;
        println!(" [x] gzip_multiply(x=100, y={y}) = {product}");
    }

    // Master/Worker with the same format.
    let (greeted, mut done) = mpsc::unbounded_channel();
    let master = Master::with_serializer(connection.channel().await?, GzipJson);
    let worker = master
        .create_worker(
            "gzip_greet",
            move |task: Greet| {
                let greeted = greeted.clone();
                async move {
                    println!(" [x] Hello, {}!", task.name);
                    let _ = greeted.send(());
                    Ok::<(), TaskError>(())
                }
            },
            QueueOptions::durable().auto_delete(true),
        )
        .await?;
    for name in ["gzip", "json"] {
        master
            .create_task("gzip_greet", &Greet { name: name.into() })
            .await?;
    }
    for _ in 0..2 {
        tokio::time::timeout(Duration::from_secs(5), done.recv())
            .await
            .map_err(|_| anyhow::anyhow!("the worker did not greet within 5 s"))?;
    }
    worker.close().await?;
    callee.close().await?;
    connection.close().await?;
    Ok(())
}
