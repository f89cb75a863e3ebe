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
    /// The broker refused the message (`basic.nack`): a queue it routes to
    /// is full with `x-overflow=reject-publish`, or the broker could not
    /// store it. aio-pika raises `DeliveryError` here.
    #[error("the broker refused the message to exchange '{exchange}' with routing key '{routing_key}' (basic.nack): a queue it routes to may be full (x-overflow=reject-publish) or the broker could not store it; publish it again later or give up")]
    Nacked {
        /// The exchange it was published to (`""`: the default exchange).
        exchange: String,
        /// The routing key it was published with.
        routing_key: String,
    },
    /// The broker refused the publish and closed the channel because of
    /// it (404: no such exchange; 403: no permission on it): the message
    /// was not delivered. Open a new channel to go on.
    #[error("the broker refused the publish and closed the channel")]
    PublishRefused(#[source] amqp_conn::Error),
    /// The channel or connection closed before the broker confirmed the
    /// publish: the message may or may not have been taken. The close is
    /// the [`source`](std::error::Error::source).
    #[error(
        "publish not confirmed before the channel closed: the message may or may not have arrived"
    )]
    Indeterminate(#[source] amqp_conn::Error),
    /// The message was already acked, nacked or rejected (alone, or
    /// covered by an ack or nack with `multiple`): doing it again would
    /// make the broker close the channel (406), so it is refused here and
    /// nothing is sent.
    #[error("message with delivery tag {delivery_tag} was already acked, nacked or rejected (perhaps by a multiple ack); each message is settled once")]
    AlreadyProcessed {
        /// The delivery tag.
        delivery_tag: u64,
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
    /// A header of a received message is not in the form the broker
    /// writes it (see [`IncomingMessage::x_death`](crate::IncomingMessage::x_death)).
    #[error("the {header} header is not as RabbitMQ writes it: {problem}")]
    MalformedHeader {
        /// Which header.
        header: &'static str,
        /// What is wrong.
        problem: String,
    },
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
            Error::Amqp(e) | Error::Indeterminate(e) | Error::PublishRefused(e) => e.reply_code(),
            Error::DeliveryError(returned) => Some(returned.reply_code),
            _ => None,
        }
    }

    /// The broker's reply text, when the broker refused something.
    pub fn reply_text(&self) -> Option<&str> {
        match self {
            Error::Amqp(e) | Error::Indeterminate(e) | Error::PublishRefused(e) => {
                e.close_reason().map(|r| r.text.as_str())
            }
            Error::DeliveryError(returned) => Some(&returned.reply_text),
            _ => None,
        }
    }

    /// True when only a channel closed and the connection is usable
    /// (including a publish the broker refused, or one whose channel
    /// closed before its confirm).
    pub fn is_channel_error(&self) -> bool {
        match self {
            Error::Amqp(e) | Error::Indeterminate(e) | Error::PublishRefused(e) => {
                e.is_channel_error()
            }
            _ => false,
        }
    }

    /// True when the connection is gone (closed by the broker, the socket
    /// lost, heartbeats missed, a protocol error): open a new one (or let
    /// a robust connection reconnect).
    pub fn is_connection_error(&self) -> bool {
        match self {
            Error::Amqp(e) | Error::Indeterminate(e) => e.is_connection_error(),
            _ => false,
        }
    }

    /// True when an operation gave up waiting.
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            Error::Timeout { .. } | Error::Amqp(amqp_conn::Error::ConnectTimeout { .. })
        )
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
