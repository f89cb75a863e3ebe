//! Errors: what happened, who closed what, and what the user can do.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use amqp_wire::{DecodeError, ReplyCode};

/// Who closed a channel or connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Initiator {
    /// The application, by calling `close` or dropping the last handle.
    Client,
    /// This library, after a protocol error or a failed heartbeat.
    Library,
    /// The broker.
    Broker,
}

impl fmt::Display for Initiator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Initiator::Client => "the application",
            Initiator::Library => "the client library",
            Initiator::Broker => "the broker",
        })
    }
}

/// Why a channel or connection was closed: the fields of
/// `channel.close`/`connection.close` and who sent it.
///
/// ```
/// use amqp_conn::{CloseReason, Initiator};
/// use amqp_wire::ReplyCode;
///
/// let reason = CloseReason {
///     code: ReplyCode::NOT_FOUND,
///     text: "NOT_FOUND - no queue 'tasks' in vhost '/'".into(),
///     class_id: 50,
///     method_id: 10,
///     initiator: Initiator::Broker,
/// };
/// assert!(reason.is_soft());
/// assert_eq!(reason.method_name(), Some("queue.declare"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    /// The reply code.
    pub code: ReplyCode,
    /// The reply text.
    pub text: String,
    /// Class of the method that caused the close (0 if none).
    pub class_id: u16,
    /// Method that caused the close (0 if none).
    pub method_id: u16,
    /// Who closed.
    pub initiator: Initiator,
}

impl CloseReason {
    /// A close the application asked for, with its code and text.
    pub(crate) fn by_client(code: u16, text: String) -> Self {
        CloseReason {
            code: ReplyCode(code),
            text,
            class_id: 0,
            method_id: 0,
            initiator: Initiator::Client,
        }
    }

    /// A close with code 200 by `initiator`.
    pub fn normal(initiator: Initiator) -> Self {
        CloseReason {
            code: ReplyCode::REPLY_SUCCESS,
            text: "closed".into(),
            class_id: 0,
            method_id: 0,
            initiator,
        }
    }

    /// A close by this library with `code` and `text`.
    pub fn library(code: ReplyCode, text: impl Into<String>) -> Self {
        CloseReason {
            code,
            text: text.into(),
            class_id: 0,
            method_id: 0,
            initiator: Initiator::Library,
        }
    }

    /// True for soft errors, which close only the channel.
    pub fn is_soft(&self) -> bool {
        self.code.is_soft_error()
    }

    /// True for a normal close (code 200).
    pub fn is_normal(&self) -> bool {
        self.code == ReplyCode::REPLY_SUCCESS
    }

    /// The name of the method that caused the close, such as
    /// `queue.declare`.
    pub fn method_name(&self) -> Option<&'static str> {
        amqp_wire::Method::name_of(self.class_id, self.method_id)
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code.name() {
            Some(name) => write!(f, "{name} ({})", self.code.0)?,
            None => write!(f, "reply code {}", self.code.0)?,
        }
        write!(f, " from {}: {}", self.initiator, self.text)?;
        if let Some(method) = self.method_name() {
            write!(f, " (in reply to {method})")?;
        }
        Ok(())
    }
}

/// Everything that can go wrong on a connection or channel.
///
/// `Clone`, so one failure can be handed to every waiter it ends.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration or URL is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The TCP connection could not be made. The I/O error is the
    /// [`source`](std::error::Error::source).
    #[error("could not connect to {address}; is the broker running and reachable?")]
    Connect {
        /// `host:port`.
        address: String,
        /// The I/O error.
        source: Arc<std::io::Error>,
    },
    /// None of several broker addresses could be reached: each attempt's
    /// address and error, in the order tried.
    #[error("could not connect to any of {} brokers: {}", .attempts.len(), list_attempts(.attempts))]
    NoBrokerReachable {
        /// `(host:port, why)` for each address tried.
        attempts: Vec<(String, Error)>,
    },
    /// A connection with a reconnect policy made its last allowed attempt
    /// (`max_attempts`) and closed.
    #[error("gave up reconnecting after {attempts} attempts; the last one failed: {last}")]
    GaveUpReconnecting {
        /// Attempts made since the connection was lost.
        attempts: u32,
        /// Why the last one failed.
        last: Box<Error>,
    },
    /// The connection is lost and reconnecting, and its policy says to
    /// fail at once meanwhile (`ReconnectPolicy::fail_fast`): nothing was
    /// sent. Try again once it is back (`ConnectionEvent::Reconnected`).
    #[error("the connection is lost and reconnecting (fail_fast is set): nothing was sent; try again once it is back")]
    Reconnecting,
    /// The connection did not open within `connection_timeout`.
    #[error("connecting to {address} timed out after {after:?} ({stage}); check the address and the broker's load, or raise connection_timeout")]
    ConnectTimeout {
        /// `host:port`.
        address: String,
        /// How long we waited.
        after: Duration,
        /// What was in progress: TCP connect, TLS handshake, AMQP handshake.
        stage: &'static str,
    },
    /// The TLS handshake failed (certificate not trusted, wrong host
    /// name, client certificate refused, ...).
    /// The TLS error is the [`source`](std::error::Error::source).
    #[error("TLS handshake with {address} failed; check the CA, the host name and the client certificate")]
    Tls {
        /// `host:port`.
        address: String,
        /// The TLS error.
        source: Arc<std::io::Error>,
    },
    /// The broker refused the credentials.
    #[error("the broker refused the login of user '{username}' with {mechanism}: {reason}; check the user name and password (or certificate)")]
    AuthenticationFailed {
        /// The user name (never the password).
        username: String,
        /// The SASL mechanism used.
        mechanism: &'static str,
        /// The broker's explanation, if it gave one.
        reason: String,
    },
    /// The broker does not offer the SASL mechanism we were asked to use.
    #[error("the broker does not offer the {mechanism} mechanism (it offers: {offered}); enable it on the broker or choose another auth_mechanism")]
    MechanismNotOffered {
        /// The mechanism asked for.
        mechanism: &'static str,
        /// What the broker offers.
        offered: String,
    },
    /// The broker refused to open the virtual host (it does not exist, or
    /// the user has no permissions on it).
    #[error("the broker refused virtual host '{vhost}' ({reason}); create it (rabbitmqctl add_vhost) and give the user permissions, or fix the URL's path: the default vhost '/' is written %2f, as in amqp://host/%2f")]
    VhostRefused {
        /// The virtual host asked for.
        vhost: String,
        /// The broker's close.
        reason: CloseReason,
    },
    /// The peer does not speak AMQP 0-9-1.
    #[error("the server does not speak AMQP 0-9-1: it answered with protocol header {0:?}")]
    UnsupportedProtocol(amqp_wire::ProtocolHeader),
    /// The connection was closed (by the broker, the application or this
    /// library); every pending operation on it ends with this error.
    #[error("connection closed: {0}")]
    ConnectionClosed(CloseReason),
    /// The channel was closed (a soft error from the broker, or a close
    /// by the application); the connection stays usable.
    #[error("channel {channel} closed: {reason}")]
    ChannelClosed {
        /// The channel number.
        channel: u16,
        /// Why.
        reason: CloseReason,
    },
    /// The socket failed or was closed without a `connection.close`.
    #[error("connection lost: {0}; the broker may have restarted or the network dropped")]
    Io(Arc<std::io::Error>),
    /// Nothing arrived from the broker for two heartbeat intervals.
    #[error("no data from the broker for {silent_for:?} (two heartbeat intervals of {interval:?}): the connection is considered dead")]
    HeartbeatTimeout {
        /// The negotiated heartbeat interval.
        interval: Duration,
        /// How long nothing arrived.
        silent_for: Duration,
    },
    /// The broker sent bytes that are not valid AMQP.
    #[error("the broker sent malformed data: {0}")]
    Decode(#[from] DecodeError),
    /// The broker sent a frame that is valid AMQP but not expected here.
    #[error("unexpected {got} on channel {channel} while {state}")]
    UnexpectedFrame {
        /// The channel.
        channel: u16,
        /// What arrived, such as `basic.deliver` or `body frame`.
        got: &'static str,
        /// What we were doing.
        state: &'static str,
    },
    /// Every channel number up to the negotiated channel_max is in use.
    #[error(
        "all {channel_max} channels of this connection are open; close some or raise channel_max"
    )]
    ChannelLimitReached {
        /// The negotiated maximum.
        channel_max: u16,
    },
    /// An explicit channel number that is already open or out of range.
    #[error("channel {channel} is not available (in use, 0, or above channel_max {channel_max})")]
    ChannelUnavailable {
        /// The number asked for.
        channel: u16,
        /// The negotiated maximum.
        channel_max: u16,
    },
    /// A method argument or message property does not fit in a frame.
    #[error(transparent)]
    FrameTooLarge(#[from] amqp_wire::FrameTooLarge),
    /// A message body larger than this side accepts.
    #[error(transparent)]
    Body(#[from] amqp_wire::BodyError),
    /// A name or other short string is longer than 255 bytes.
    #[error(transparent)]
    ShortString(#[from] amqp_wire::ShortStringTooLong),
    /// The delivery was settled before (acked, nacked or rejected, alone
    /// or covered by a `multiple`), or was delivered without ack. Nothing
    /// was sent: the broker would have closed the channel with 406.
    #[error("delivery {delivery_tag} on channel {channel} was already acked, nacked or rejected (or consumed without ack); each delivery is settled once")]
    AlreadySettled {
        /// The channel.
        channel: u16,
        /// The delivery tag.
        delivery_tag: u64,
    },
    /// No delivery with this tag was made on the channel (delivery tags
    /// belong to the channel that received the message). Nothing was sent.
    #[error("no delivery {delivery_tag} was made on channel {channel}; ack a message on the channel it was delivered on")]
    UnknownDeliveryTag {
        /// The channel.
        channel: u16,
        /// The delivery tag.
        delivery_tag: u64,
    },
    /// The delivery came over a connection that was lost before it was
    /// settled; the connection reconnected. The broker has requeued the
    /// message and delivers it again: settle that delivery instead.
    /// Nothing was sent.
    #[error("delivery {delivery_tag} on channel {channel} came over a connection that was lost; the broker requeued the message and delivers it again (settle the new delivery)")]
    StaleDelivery {
        /// The channel.
        channel: u16,
        /// The delivery tag.
        delivery_tag: u64,
    },
    /// A request awaited for its reply had its `nowait` bit set (the broker
    /// would answer nothing), or one sent as nowait had it unset.
    #[error("{method}: the nowait bit decides whether the broker replies; await requests with nowait=false, send the others with send_nowait")]
    NowaitRequest {
        /// The request, such as `queue.declare`.
        method: &'static str,
    },
}

impl Error {
    /// The broker's reply code, if this error is a close by the broker or
    /// carries one.
    pub fn reply_code(&self) -> Option<ReplyCode> {
        self.close_reason().map(|r| r.code)
    }

    /// The close reason of a channel or connection close.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        match self {
            Error::ConnectionClosed(reason)
            | Error::ChannelClosed { reason, .. }
            | Error::VhostRefused { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// True when the error ended only a channel: the connection is usable.
    pub fn is_channel_error(&self) -> bool {
        matches!(self, Error::ChannelClosed { .. })
    }

    /// True when the connection is gone or could not be made over the
    /// network (a robust layer would reconnect): closed, lost, silent,
    /// broken by a protocol error, refused at TCP or TLS, or timed out
    /// while opening. A refused login or virtual host is not: trying again
    /// changes nothing.
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            Error::ConnectionClosed(_)
                | Error::Io(_)
                | Error::HeartbeatTimeout { .. }
                | Error::Decode(_)
                | Error::UnexpectedFrame { .. }
                | Error::Connect { .. }
                | Error::ConnectTimeout { .. }
                | Error::Tls { .. }
                | Error::NoBrokerReachable { .. }
                | Error::GaveUpReconnecting { .. }
                | Error::Reconnecting
        )
    }

    pub(crate) fn io(error: std::io::Error) -> Self {
        Error::Io(Arc::new(error))
    }
}

/// `a (why); b (why)`: each attempt with its error and the error's causes.
fn list_attempts(attempts: &[(String, Error)]) -> String {
    attempts
        .iter()
        .map(|(address, error)| {
            let mut why = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                why.push_str(": ");
                why.push_str(&cause.to_string());
                source = cause.source();
            }
            format!("{address} ({why})")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
