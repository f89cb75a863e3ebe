//! # amqp-conn
//!
//! The connection layer of pika: one tokio task per AMQP 0-9-1 connection
//! owns the socket (TCP or TLS) and all protocol state; [`Connection`],
//! [`Channel`] and [`Consumer`] are cheap handles that talk to it by
//! message. It negotiates tuning, keeps heartbeats, multiplexes channels,
//! tracks publisher confirms, assembles content and turns protocol errors
//! into typed [`Error`]s. Built on [`amqp_wire`].
//!
//! ```no_run
//! # async fn example() -> Result<(), amqp_conn::Error> {
//! use amqp_conn::{Connection, ConnectionConfig, Confirmation};
//! use amqp_wire::{BasicProperties, BasicPublish, QueueDeclare, ShortString};
//!
//! let connection = Connection::open(ConnectionConfig::from_url("amqp://localhost")?).await?;
//! let channel = connection.open_channel().await?;
//! channel.call(QueueDeclare { queue: ShortString::from_static("tasks"), durable: true, ..Default::default() }).await?;
//! channel.confirm_select().await?;
//! let publish = BasicPublish { routing_key: ShortString::from_static("tasks"), ..Default::default() };
//! let confirm = channel.publish(publish, BasicProperties::default(), "hello".into()).await?;
//! assert!(matches!(confirm.await, Confirmation::Ack));
//! connection.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! ## Logging
//! With a [`tracing`](https://docs.rs/tracing) subscriber, amqp-conn logs
//! in two spans: `amqp_connection{address, vhost}` (info) around the
//! connection task and its opening, and `amqp_channel{channel}` (debug)
//! inside it for what concerns one channel. Its events, by level:
//! - error: `closing the connection after a protocol error` (the broker
//!   sent something invalid).
//! - warn: `could not open the connection` (with the error), `connection
//!   closed` (any end but the application's normal close, which is a
//!   debug event), `the broker closed the connection`, `missed heartbeats:
//!   the broker is unreachable`, `delivery for an unknown consumer
//!   dropped`, and TLS with `dangerous_accept_invalid_certs`.
//! - info: `connection open` (with the negotiated limits), `the broker
//!   blocked the connection` / `unblocked`, `the broker closed a channel`,
//!   `the broker cancelled a consumer`.
//! - debug: each synchronous `request` and its `reply` (method names).
//! - trace: every `frame in`, `sending heartbeat`.
//!
//! So `RUST_LOG=amqp_conn=info` shows a connection's life without its
//! traffic; `amqp_conn=debug` adds every request and reply.
//!
//! ## Features
//! - `tls` (default): TLS (`amqps://`, [`TlsConfig`]) with rustls and the
//!   ring crypto provider; the same as `tls-ring`.
//! - `tls-ring`: TLS with the ring crypto provider.
//! - `tls-aws-lc-rs`: TLS with the aws-lc-rs crypto provider (builds C
//!   code). With both provider features on, aws-lc-rs is used.
//!
//! Without any of them (`default-features = false`) there is no rustls in
//! the build; TLS settings are refused with
//! [`ConfigError::TlsNotCompiled`] when the URL is parsed or the
//! connection opened. With TLS, `rustls` is re-exported, to build a
//! `TlsConfig::client_config` with the same version.
//!
//! ## Inside
//! - `state/`: the protocol state without I/O (frames and commands in,
//!   frames out), unit-tested with paused time.
//! - `driver.rs`: the task that feeds it from the socket, coalescing writes.
//! - `handshake.rs`, `tuning.rs`, `sasl.rs`: opening a connection.
//! - `transport.rs`: TCP and TLS.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod body_pool;
mod channel;
mod command;
mod config;
mod connection;
mod consumer;
mod delivery_queue;
mod driver;
mod error;
mod events;
mod handshake;
mod message;
mod sasl;
mod settlements;
mod state;
#[cfg(test)]
mod test_random;
mod transport;
mod tuning;

pub use channel::{Channel, PublishConfirm, TryPublishError, UnsentMessage};
pub use command::ConsumerEnd;
pub use config::{
    AuthMechanism, BrokerAddress, ConfigError, ConnectionConfig, Credentials, ReconnectPolicy,
    TlsConfig, MAX_CHANNELS, MAX_FRAME_SIZE,
};
pub use connection::Connection;
pub use consumer::Consumer;
pub use error::{CloseReason, Error, Initiator, Result};
pub use events::ConnectionEvent;
pub use message::{Confirmation, Delivery, PublishProperties, ReturnedMessage};
pub use state::topology::TopologyEntry;
pub use tuning::Tuning;

/// The rustls that amqp-conn uses, for a ready
/// [`TlsConfig::client_config`] (with the `tls` feature).
#[cfg(feature = "__tls")]
pub use rustls;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
