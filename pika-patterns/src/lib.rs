//! # pika-patterns
//!
//! The patterns of aio-pika's "Patterns and helpers" chapter for
//! [pika](https://docs.rs/pika-amqp), built on pika's public API only:
//!
//! - [`Master`] and [`Worker`]: tasks published to a durable queue named
//!   after the task, taken by as many workers as run; a handler settles
//!   its task by its result ([`RejectMessage`], [`NackMessage`]).
//! - [`Rpc`]: remote procedure calls with typed arguments and replies,
//!   replies over RabbitMQ's direct reply-to; a handler's error comes
//!   back to the caller as [`PatternError::Remote`].
//! - [`Pool`]: pools of connections and channels (aio-pika's `Pool`), on
//!   deadpool; a closed connection or channel is replaced, never handed
//!   out.
//! - [`Serializer`]: the payload format, JSON ([`Json`]) unless you give
//!   another; the content type is set on every message and checked on
//!   receipt.
//!
//! aio-pika's `master.proxy.resize(image_id=7)` and
//! `rpc.proxy.multiply(x=100, y=7)` are typed calls here:
//! `master.create_task("resize", &Resize { image_id: 7 })` and
//! `rpc.call::<_, i64>("multiply", &Multiply { x: 100, y: 7 })`.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod error;
mod master;
mod pool;
mod queue_options;
mod rpc;
mod serializer;

pub use error::PatternError;
pub use master::{Master, NackMessage, RejectMessage, TaskError, Worker};
pub use pool::*;
pub use queue_options::QueueOptions;
pub use rpc::{Call, ReplyQueue, Rpc, DIRECT_REPLY_TO};
pub use serializer::{Json, SerializeError, Serializer};

/// Displays an error with its causes: `outer: cause: root`.
pub(crate) struct Chain<'a>(pub(crate) &'a dyn std::error::Error);

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
