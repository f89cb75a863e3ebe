//! What can go wrong in a pattern, said so a person can act on it.

use std::time::Duration;

use crate::serializer::SerializeError;

/// An error of [`Master`](crate::Master), [`Worker`](crate::Worker) or
/// [`Rpc`](crate::Rpc).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The broker or the connection refused or failed (the cause says which).
    #[error("AMQP operation failed")]
    Amqp(#[from] pika::Error),
    /// A payload could not be written in the serializer's format.
    #[error("could not serialize the payload")]
    Serialize {
        /// What the serializer said.
        #[source]
        source: SerializeError,
    },
    /// A message body is not what its content type says, or not the type
    /// expected.
    #[error("could not deserialize the message body")]
    Deserialize {
        /// What the serializer said.
        #[source]
        source: SerializeError,
    },
    /// A message arrived in another format than the serializer's: both
    /// sides must use the same serializer.
    #[error("message in an unexpected format: expected {expected}, found {found}; use the same serializer on both sides")]
    UnexpectedFormat {
        /// The serializer's content type (and encoding).
        expected: String,
        /// The message's.
        found: String,
    },
    /// No queue takes tasks or calls of this name: start a worker or
    /// register a handler first.
    #[error("no queue named '{name}' takes this message (it was returned unroutable): start a worker or register the RPC handler first")]
    NoRoute {
        /// The task or method name.
        name: String,
    },
    /// The remote handler failed; its error, as it displayed it.
    #[error("the remote handler of '{method}' failed: {message}")]
    Remote {
        /// The method called.
        method: String,
        /// The Rust type of the handler's error.
        kind: String,
        /// The handler's error message.
        message: String,
    },
    /// No reply came in time (no handler consumed the request before it
    /// expired, or the handler is slow).
    #[error("no reply to '{method}' within {after:?}: is a handler registered and running?")]
    Timeout {
        /// The method called.
        method: String,
        /// How long the call waited.
        after: Duration,
    },
    /// A handler for this method is already registered on this `Rpc`.
    #[error("a handler for '{method}' is already registered on this Rpc")]
    AlreadyRegistered {
        /// The method.
        method: String,
    },
    /// No handler for this method is registered on this `Rpc`.
    #[error("no handler for '{method}' is registered on this Rpc")]
    NotRegistered {
        /// The method.
        method: String,
    },
    /// The RPC's channel or connection ended (or it was closed) while the
    /// call waited, so its reply can never arrive.
    #[error("the RPC channel closed while calling '{method}': {reason}")]
    Closed {
        /// The method called.
        method: String,
        /// Why the channel ended.
        reason: String,
    },
}

impl PatternError {
    pub(crate) fn serialize(source: SerializeError) -> Self {
        PatternError::Serialize { source }
    }
}
