//! Helpers for the integration tests against the local RabbitMQ.

#![allow(dead_code)]
// Shared by the test files of this crate: `pub` here means "for them".
#![allow(unreachable_pub)]

use amqp_conn::{Channel, Confirmation, Connection, ConnectionConfig};
use amqp_wire::{BasicProperties, BasicPublish, QueueDeclare, QueueDelete, ShortString};
use bytes::Bytes;

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

/// A body of `len` bytes that differs with `seed` at every byte: a body
/// cut, shifted or mixed with another shows.
pub fn numbered_body(seed: u32, len: usize) -> Bytes {
    (0..len as u32)
        .map(|i| (i.wrapping_add(seed).wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// Publishes `body` to `queue` (default exchange) on a channel in confirm
/// mode and checks that the broker acked it.
pub async fn publish_acked(channel: &Channel, queue: &str, body: Bytes) {
    let confirm = channel
        .publish(
            BasicPublish {
                routing_key: s(queue),
                ..Default::default()
            },
            BasicProperties::default(),
            body,
        )
        .await
        .expect("publish");
    let outcome = confirm.await;
    assert!(matches!(outcome, Confirmation::Ack), "{outcome:?}");
}
