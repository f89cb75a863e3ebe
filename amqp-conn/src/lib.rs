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
//! ## Inside
//! - `state/`: the protocol state without I/O (frames and commands in,
//!   frames out), unit-tested with paused time.
//! - `driver.rs`: the task that feeds it from the socket, coalescing writes.
//! - `handshake.rs`, `tuning.rs`, `sasl.rs`: opening a connection.
//! - `transport.rs`: TCP and TLS.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod channel;
mod command;
mod config;
mod connection;
mod consumer;
mod driver;
mod error;
mod events;
mod handshake;
mod message;
mod sasl;
mod settlements;
mod state;
mod transport;
mod tuning;

pub use channel::{Channel, PublishConfirm};
pub use command::ConsumerEnd;
pub use config::{
    AuthMechanism, ConfigError, ConnectionConfig, Credentials, TlsConfig, MAX_CHANNELS,
    MAX_FRAME_SIZE,
};
pub use connection::Connection;
pub use consumer::Consumer;
pub use error::{CloseReason, Error, Initiator, Result};
pub use events::ConnectionEvent;
pub use message::{Confirmation, Delivery, PublishProperties, ReturnedMessage};
pub use tuning::Tuning;
