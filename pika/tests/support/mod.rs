//! Helpers for pika's integration tests against the local RabbitMQ.

#![allow(dead_code)]
// Shared by the test files of this crate: `pub` here means "for them".
#![allow(unreachable_pub)]

use std::time::Duration;

pub mod traffic;

#[allow(unused_imports)]
pub use pika_test_support::{rabbitmqctl, unique, url, FreezableProxy};

pub async fn connect() -> pika::Connection {
    pika::connect(&url())
        .await
        .expect("connect to the local RabbitMQ")
}

/// Waits up to 5 s for the next item of a stream.
pub async fn next<S: futures_util::Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    use futures_util::StreamExt;
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("an item within 5 s")
}

/// Deletes a queue whatever it holds and whoever consumes it.
pub async fn delete_queue(queue: &pika::Queue) {
    queue
        .delete()
        .if_empty(false)
        .if_unused(false)
        .await
        .expect("delete the queue");
}

/// Publishes `body` through `exchange` by `routing_key` and checks that
/// the broker confirmed it.
pub async fn publish_confirmed(exchange: &pika::Exchange, body: &str, routing_key: &str) {
    let confirmation = exchange
        .publish(pika::Message::new(body.to_string()), routing_key)
        .await
        .unwrap_or_else(|e| panic!("publish {body:?}: {e}"));
    assert!(confirmation.is_ack(), "{body:?}: {confirmation:?}");
}

/// Receives the next message (within 5 s), checks its body and acks it.
pub async fn receive(iterator: &mut pika::QueueIterator, body: &str) {
    let message = next(iterator)
        .await
        .expect("the iterator goes on")
        .unwrap_or_else(|e| panic!("waiting for {body:?}: {e}"));
    assert_eq!(message.body().as_ref(), body.as_bytes());
    message.ack(false).expect("ack");
}
