//! # pika
//!
//! An AMQP 0-9-1 client for tokio with the API of Python's
//! [aio-pika](https://aio-pika.readthedocs.io/): the same concepts under the
//! same names, shaped as async Rust. Options are builders you `.await`,
//! consumers are streams, errors are typed values.
//!
//! ## Quick start
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use pika::Message;
//!
//! # #[tokio::main] async fn main() -> Result<(), pika::Error> {
//! let connection = pika::connect_robust("amqp://guest:guest@127.0.0.1/").await?;
//! let channel = connection.channel().await?;
//! let queue = channel.declare_queue("hello").auto_delete(true).await?;
//!
//! channel.default_exchange().publish(Message::new("Hello World!"), "hello").await?;
//!
//! let mut messages = queue.iterator().await?;
//! if let Some(message) = messages.next().await {
//!     let message = message?;
//!     println!("received {:?}", message.body());
//!     message.ack(false)?;
//! }
//! connection.close().await?;
//! # Ok(()) }
//! ```
//!
//! ## aio-pika to pika
//!
//! | aio-pika | pika |
//! |---|---|
//! | `connect(url)` | [`connect`] |
//! | `connect(host=..., login=...)` | [`connect_with`]`(`[`ConnectOptions`]`)` |
//! | `connect_robust(url)` | [`connect_robust`] (the same [`Connection`] type), [`connect_robust_with`] |
//! | (a cluster's nodes) | [`connect_robust_urls`] |
//! | `connection.add_reconnect_callback(cb)` | [`Connection::add_reconnect_callback`] |
//! | `connection.channel(publisher_confirms=False)` | `connection.channel().publisher_confirms(false).await` |
//! | `channel.declare_queue("q", durable=True)` | `channel.declare_queue("q").durable(true).await` |
//! | `channel.declare_exchange("x", ExchangeType.TOPIC)` | `channel.declare_exchange("x").kind(ExchangeType::Topic).await` |
//! | `channel.default_exchange` | [`Channel::default_exchange`] |
//! | `channel.set_qos(prefetch_count=1)` | `channel.set_qos().prefetch_count(1).await` |
//! | `exchange.publish(Message(b"..."), "rk")` | `exchange.publish(Message::new("..."), "rk").await` |
//! | `queue.consume(callback)` | [`Queue::consume`] |
//! | `async with queue.iterator() as it: async for m in it` | `let mut it = queue.iterator().await?; while let Some(m) = it.next().await` |
//! | `async with message.process():` | `message.process().run(\|m\| async { .. }).await` or `.guard()` |
//! | `queue.get(fail=False)` | `queue.get().fail(false).await` |
//! | `async with channel.transaction():` | `channel.transaction()?.begin().await?` ... `.commit()` |
//! | `aio_pika.exceptions.QueueEmpty` | [`Error::QueueEmpty`] |
//! | `DeliveryError` (`on_return_raises=True`) | [`Error::DeliveryError`] |
//!
//! ## Robust connections
//!
//! A connection made with [`connect_robust`] reconnects when it is lost
//! (network, missed heartbeats, broker restart, `rabbitmqctl
//! close_connection`, a cluster node going down), to the next broker of
//! its list if it has several, following a [`ReconnectPolicy`]. It
//! restores its channels (same numbers, publisher confirms, QoS), then
//! its exchanges, queues, bindings and consumers in the order they were
//! made; a queue the broker named gets a new name, which
//! [`Queue::name`], its bindings and consumers use. Queue iterators and
//! consume callbacks go on without any action. While it is down,
//! publishes and requests wait (up to their timeouts). What cannot be
//! known is never reported as success: a publish whose confirm was
//! pending ends at once with [`Error::Indeterminate`], and acking a
//! message delivered over the lost connection fails (the broker delivers
//! it again). A channel the broker closes for a soft error is reopened
//! the same way; the operation that caused it gets the error.
//!
//! Every handle is cheap to clone. Dropping the last handle of a channel
//! closes it; dropping the last handle of a connection (and its channels)
//! closes the connection. Nothing blocks in a drop.
//!
//! ## Features
//!
//! | feature | default | what it does |
//! |---|---|---|
//! | `tls` | yes | TLS (`amqps://`, [`TlsOptions`]) with rustls and the ring crypto provider; the same as `tls-ring` |
//! | `tls-ring` | (by `tls`) | TLS with the ring crypto provider |
//! | `tls-aws-lc-rs` | no | TLS with the aws-lc-rs crypto provider (builds C code with a C compiler, and cmake on some platforms); with both provider features on, aws-lc-rs is used |
//!
//! Without TLS (`default-features = false`) no rustls, ring or platform
//! certificate crates are built. An `amqps://` URL or TLS parameter is
//! then refused when parsed, and [`ConnectOptions::ssl`] settings when
//! connecting, with [`amqp_conn::ConfigError::TlsNotCompiled`] (inside
//! [`Error::Amqp`]), which says to enable the `tls` feature:
//!
//! ```toml
//! # Plain AMQP only:
//! pika = { version = "0.1", default-features = false }
//! # TLS with aws-lc-rs instead of ring:
//! pika = { version = "0.1", default-features = false, features = ["tls-aws-lc-rs"] }
//! ```
//!
//! With TLS, `rustls` is re-exported to build a ready configuration
//! for `TlsOptions::client_config`; certificates and keys can also be
//! given as PEM bytes ([`TlsOptions::ca_pem`],
//! [`TlsOptions::client_cert_pem`]).
//!
//! The `url` crate brings Unicode tables for international domain names
//! (IDNA), which AMQP URLs never use (`amqp://` hosts are opaque to the URL
//! standard). An application that parses no other URLs with non-ASCII
//! domain names can leave the tables out by pinning the IDNA back end in
//! its own `Cargo.toml`: `idna_adapter = "=1.0.0"` (42 crates become 26
//! without TLS; see the README's "Dependencies and features").

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod arguments;
mod builder;
mod channel;
mod connection;
mod error;
mod exchange;
mod incoming;
mod message;
mod queue;
mod transaction;

pub use amqp_conn::{AuthMechanism, ConnectionEvent, ReconnectPolicy};
pub use amqp_wire::{BasicProperties, FieldTable, FieldValue, ReplyCode};
pub use arguments::{DeathReason, Overflow, QueueType, StreamOffset, XDeath};
pub use channel::{Channel, DeclareExchange, DeclareQueue, SetQos};
pub use connection::{
    connect, connect_robust, connect_robust_urls, connect_robust_with, connect_with,
    ConnectOptions, Connection, OpenChannel, Reconnected, TlsOptions,
};
pub use error::{Error, Result};
pub use exchange::{
    BindExchange, Confirmation, DeleteExchange, Exchange, ExchangeName, ExchangeType,
    PendingConfirmation, Publish, PublishFuture,
};
pub use incoming::{IncomingMessage, Process, ProcessGuard};
pub use message::{table, DeliveryMode, Message, MessageInfo, ReturnedMessage};
pub use queue::{Bind, Cancel, Consume, Delete, Get, IterateQueue, Purge, Queue, QueueIterator};
pub use transaction::{Transaction, TransactionScope};

/// The rustls that pika uses, to build a ready configuration for
/// [`TlsOptions::client_config`] (with the `tls` feature).
#[cfg(feature = "__tls")]
pub use amqp_conn::rustls;

/// The connection layer pika is built on.
pub use amqp_conn;
/// The codec pika is built on.
pub use amqp_wire;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
