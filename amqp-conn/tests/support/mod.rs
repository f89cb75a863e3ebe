//! Helpers for the integration tests against the local RabbitMQ.

#![allow(dead_code)]
// Shared by the test files of this crate: `pub` here means "for them".
#![allow(unreachable_pub)]

use amqp_conn::{Channel, Connection, ConnectionConfig};
use amqp_wire::{QueueDeclare, QueueDelete, ShortString};

#[allow(unused_imports)]
pub use pika_test_support::{rabbitmqctl, unique, url, FreezableProxy, SecondNode};

pub fn config() -> ConnectionConfig {
    ConnectionConfig::from_url(&url()).expect("AMQP_URL parses")
}

pub async fn connect() -> Connection {
    Connection::open(config())
        .await
        .expect("connect to the local RabbitMQ")
}

pub fn s(text: &str) -> ShortString {
    ShortString::try_from(text).unwrap()
}

/// Declares a fresh queue (tests delete it); returns its name.
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
