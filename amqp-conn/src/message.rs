//! Messages that come from the broker, and what becomes of a publish.

use amqp_wire::{BasicProperties, ReplyCode, ShortString};
use bytes::Bytes;

use crate::error::Error;

/// A message delivered to a consumer (`basic.deliver`) or fetched with
/// `basic.get` (`basic.get-ok`).
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The delivery tag, for ack, nack and reject on the same channel.
    pub delivery_tag: u64,
    /// True when the message was delivered before and not acknowledged.
    pub redelivered: bool,
    /// The exchange the message was published to (empty: the default
    /// exchange).
    pub exchange: ShortString,
    /// The routing key it was published with.
    pub routing_key: ShortString,
    /// The consumer's tag (`None` for `basic.get`).
    pub consumer_tag: Option<ShortString>,
    /// Messages left in the queue (`basic.get` only).
    pub message_count: Option<u32>,
    /// The message properties.
    pub properties: Box<BasicProperties>,
    /// The body: a slice of the read buffer when it arrived in one frame.
    pub body: Bytes,
}

/// A mandatory (or immediate) message the broker could not route and
/// returned (`basic.return`).
#[derive(Debug, Clone, PartialEq)]
pub struct Returned {
    /// Why: usually `NO_ROUTE` (312).
    pub reply_code: ReplyCode,
    /// The broker's explanation.
    pub reply_text: ShortString,
    /// The exchange it was published to.
    pub exchange: ShortString,
    /// The routing key it was published with.
    pub routing_key: ShortString,
    /// The message properties.
    pub properties: Box<BasicProperties>,
    /// The body.
    pub body: Bytes,
}

/// What became of one publish on a channel in confirm mode: exactly one
/// of these per publish.
#[derive(Debug, Clone)]
pub enum PublishOutcome {
    /// The broker took responsibility for the message (`basic.ack`).
    Ack,
    /// The broker could not take the message (`basic.nack`): for example a
    /// full queue with `x-overflow=reject-publish`. Publish it again or
    /// give up.
    Nack,
    /// The message was mandatory and could not be routed: the broker
    /// returned it (`basic.return`) before confirming it.
    Returned(Box<Returned>),
    /// The channel or connection closed before the broker answered: the
    /// message may or may not have been taken. The error says why.
    Indeterminate(Error),
    /// The channel is not in confirm mode: nothing will be confirmed.
    NotConfirmed,
}

impl PublishOutcome {
    /// True for `Ack`.
    pub fn is_ack(&self) -> bool {
        matches!(self, PublishOutcome::Ack)
    }
}
