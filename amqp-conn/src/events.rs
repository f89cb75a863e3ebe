//! Notifications from the connection that a user can subscribe to.

use crate::error::Error;
use crate::message::ReturnedMessage;

/// Something that happened on a connection: see
/// [`Connection::events`](crate::Connection::events).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// The broker stopped reading from this connection (`connection.blocked`),
    /// usually because of a memory or disk alarm: publishes wait until it
    /// is unblocked.
    Blocked {
        /// The broker's reason, such as `low on memory`.
        reason: String,
    },
    /// The broker reads from this connection again.
    Unblocked,
    /// The broker closed a channel (a soft error).
    ChannelClosed {
        /// The channel number.
        channel: u16,
        /// Why.
        error: Error,
    },
    /// A mandatory message came back on a channel without publisher
    /// confirms (with confirms, the publish's outcome carries it).
    Returned {
        /// The channel number.
        channel: u16,
        /// The message.
        returned: Box<ReturnedMessage>,
    },
    /// The connection closed.
    Closed(Error),
}
