//! Notifications from the connection that a user can subscribe to.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use amqp_wire::ShortString;
use tokio::sync::broadcast;

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
    /// The broker cancelled a consumer: its queue was deleted, or the node
    /// holding it went down. On a robust connection the consumer waits
    /// (its stream does not end) and consumes again with the same tag once
    /// the queue is back; otherwise its stream ended with
    /// [`ConsumerEnd::CancelledByBroker`](crate::ConsumerEnd::CancelledByBroker).
    ConsumerCancelled {
        /// The channel number.
        channel: u16,
        /// The consumer tag.
        consumer_tag: ShortString,
        /// The queue it consumed from.
        queue: ShortString,
        /// True when it will consume again once the queue is back.
        resuming: bool,
    },
    /// A consumer the broker had cancelled consumes again: its queue is
    /// back (robust connections).
    ConsumerResumed {
        /// The channel number.
        channel: u16,
        /// The consumer tag.
        consumer_tag: ShortString,
    },
    /// A mandatory message came back on a channel without publisher
    /// confirms (with confirms, the publish's outcome carries it).
    Returned {
        /// The channel number.
        channel: u16,
        /// The message.
        returned: Box<ReturnedMessage>,
    },
    /// A connection with a [`ReconnectPolicy`](crate::ReconnectPolicy)
    /// lost its socket and is being opened again. Handles stay valid:
    /// requests and publishes made meanwhile wait for the reconnection.
    Disconnected {
        /// Why the connection was lost.
        error: Error,
    },
    /// An attempt to reconnect failed; the next one follows after
    /// `retry_in`.
    ReconnectFailed {
        /// Attempts made since the connection was lost (1 is the first).
        attempt: u32,
        /// Why it failed.
        error: Error,
        /// The wait before the next attempt.
        retry_in: Duration,
    },
    /// The connection made its last allowed attempt and closes
    /// (`ReconnectPolicy::max_attempts`); `Closed` follows.
    GaveUp {
        /// Attempts made since the connection was lost.
        attempts: u32,
        /// Why the last one failed.
        error: Error,
    },
    /// The connection is open again, with its channels, exchanges,
    /// queues, bindings and consumers restored.
    Reconnected {
        /// Attempts it took (1: the first attempt succeeded).
        attempts: u32,
        /// From the loss of the connection to the end of the recovery.
        took: Duration,
        /// The broker it is connected to now (`host:port`).
        address: String,
    },
    /// A queue declared with a name chosen by the broker was declared
    /// again on reconnection and got a new name; bindings and consumers
    /// of the old name now use the new one.
    QueueRenamed {
        /// The name before the reconnection.
        old: ShortString,
        /// The name now.
        new: ShortString,
    },
    /// The connection closed (for a connection that reconnects: it was
    /// closed by the application, or gave up after its last attempt).
    Closed(Error),
}

/// Events a subscriber may fall behind by before it misses the oldest.
pub(crate) const EVENT_BUFFER: usize = 256;

/// Where the connection's events go. The broadcast buffer ([`EVENT_BUFFER`]
/// events, about 30 KiB) is made by the first subscription: most
/// connections never have a subscriber, and an event sent before the
/// first subscription reaches nobody either way.
#[derive(Debug, Clone, Default)]
pub(crate) struct EventSender(Arc<OnceLock<broadcast::Sender<ConnectionEvent>>>);

impl EventSender {
    /// A receiver of the events sent from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.0
            .get_or_init(|| broadcast::channel(EVENT_BUFFER).0)
            .subscribe()
    }

    /// Sends `event` to the subscribers, if there are any.
    pub(crate) fn send(&self, event: ConnectionEvent) {
        if let Some(sender) = self.0.get() {
            let _ = sender.send(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_reach_the_subscribers_of_before_they_were_sent() {
        let events = EventSender::default();
        events.send(ConnectionEvent::Unblocked);
        assert!(events.0.get().is_none(), "no buffer without a subscriber");
        let mut first = events.subscribe();
        events.send(ConnectionEvent::Unblocked);
        let mut second = events.subscribe();
        events.send(ConnectionEvent::Unblocked);
        assert!(matches!(first.try_recv(), Ok(ConnectionEvent::Unblocked)));
        assert!(matches!(first.try_recv(), Ok(ConnectionEvent::Unblocked)));
        assert!(first.try_recv().is_err());
        assert!(matches!(second.try_recv(), Ok(ConnectionEvent::Unblocked)));
        assert!(second.try_recv().is_err());
    }
}
