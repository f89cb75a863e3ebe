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
