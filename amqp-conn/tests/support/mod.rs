//! Helpers for the integration tests against the local RabbitMQ.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use amqp_conn::{Channel, Connection, ConnectionConfig};
use amqp_wire::{QueueDeclare, QueueDelete, ShortString};

/// The broker the tests use: `AMQP_URL`, or the local RabbitMQ.
pub fn url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub fn config() -> ConnectionConfig {
    ConnectionConfig::from_url(&url()).expect("AMQP_URL parses")
}

pub async fn connect() -> Connection {
    Connection::open(config())
        .await
        .expect("connect to the local RabbitMQ")
}

/// A name no other test (or run) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "pika-test-{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn s(text: &str) -> ShortString {
    ShortString::try_from(text).unwrap()
}

/// Declares a fresh auto-delete queue; returns its name.
pub async fn fresh_queue(channel: &Channel, prefix: &str) -> String {
    let name = unique(prefix);
    channel
        .call(QueueDeclare {
            queue: s(&name),
            auto_delete: false,
            ..Default::default()
        })
        .await
        .expect("declare queue");
    name
}

pub async fn delete_queue(channel: &Channel, name: &str) {
    let _ = channel
        .call(QueueDelete {
            queue: s(name),
            ..Default::default()
        })
        .await;
}
