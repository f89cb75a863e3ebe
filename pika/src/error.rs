//! The one error type of pika.

use std::time::Duration;

use amqp_wire::ReplyCode;

use crate::message::ReturnedMessage;

/// Everything that can go wrong in pika.
///
/// Broker refusals keep their reply code and text:
///
/// ```
/// # fn check(err: pika::Error) {
/// use pika::ReplyCode;
/// if err.reply_code() == Some(ReplyCode::NOT_FOUND) {
///     // the queue or exchange does not exist
/// }
/// # }
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A connection or channel error: refused login, broker close, lost
    /// socket, protocol violation. See [`amqp_conn::Error`].
    #[error(transparent)]
    Amqp(#[from] amqp_conn::Error),
    /// `Queue::get` with `fail(true)` found the queue empty.
    #[error("queue '{queue}' is empty")]
    QueueEmpty {
        /// The queue.
        queue: String,
    },
    /// A mandatory message could not be routed and came back, on a channel
    /// opened with `on_return_raises(true)`.
    #[error("message to exchange '{}' with routing key '{}' was returned: {} ({}); bind a queue that matches, or publish with mandatory(false)", .0.exchange, .0.routing_key, .0.reply_text, .0.reply_code.0)]
    DeliveryError(Box<ReturnedMessage>),
    /// The channel or connection closed before the broker confirmed the
    /// publish: the message may or may not have been taken.
    #[error("publish not confirmed before the channel closed, the message may or may not have arrived: {0}")]
    Indeterminate(amqp_conn::Error),
    /// The message was already acked, nacked or rejected: doing it again
    /// would make the broker close the channel (406), so it is refused here.
    #[error("message with delivery tag {delivery_tag} was already {how}; each message is acked, nacked or rejected once")]
    AlreadyProcessed {
        /// The delivery tag.
        delivery_tag: u64,
        /// What was done first: `acked`, `nacked` or `rejected`.
        how: &'static str,
    },
    /// The message was consumed with `no_ack`: the broker forgot it when
    /// it sent it, there is nothing to ack.
    #[error("message with delivery tag {delivery_tag} was consumed with no_ack: there is nothing to acknowledge")]
    NoAck {
        /// The delivery tag.
        delivery_tag: u64,
    },
    /// An operation did not complete within its timeout.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// The operation, such as `queue.declare`.
        operation: &'static str,
        /// The timeout.
        after: Duration,
    },
    /// Transactions and publisher confirms exclude each other on a channel.
    #[error("transactions are not possible on a channel with publisher confirms: open it with publisher_confirms(false)")]
    TransactionWithConfirms,
    /// An argument is invalid (a name longer than 255 bytes, ...).
    #[error("invalid {what}: {reason}")]
    InvalidArgument {
        /// Which argument.
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl Error {
    /// The broker's reply code, when the broker refused something.
    pub fn reply_code(&self) -> Option<ReplyCode> {
        match self {
            Error::Amqp(e) | Error::Indeterminate(e) => e.reply_code(),
            Error::DeliveryError(returned) => Some(returned.reply_code),
            _ => None,
        }
    }

    /// The broker's reply text, when the broker refused something.
    pub fn reply_text(&self) -> Option<&str> {
        match self {
            Error::Amqp(e) | Error::Indeterminate(e) => e.close_reason().map(|r| r.text.as_str()),
            Error::DeliveryError(returned) => Some(&returned.reply_text),
            _ => None,
        }
    }

    /// True when only a channel closed and the connection is usable.
    pub fn is_channel_error(&self) -> bool {
        matches!(self, Error::Amqp(e) if e.is_channel_error())
    }

    pub(crate) fn name(what: &'static str, err: amqp_wire::ShortStringTooLong) -> Self {
        Error::InvalidArgument {
            what,
            reason: err.to_string(),
        }
    }
}

/// A `Result` with pika's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Runs `future` within `timeout`, if one is set.
pub(crate) async fn with_timeout<T>(
    operation: &'static str,
    timeout: Option<Duration>,
    future: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match timeout {
        None => future.await,
        Some(after) => tokio::time::timeout(after, future)
            .await
            .map_err(|_| Error::Timeout { operation, after })?,
    }
}
