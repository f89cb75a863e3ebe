//! Messages that come from the broker, and what becomes of a publish.

use amqp_wire::{BasicProperties, ReplyCode, ShortString};
use bytes::Bytes;

use crate::error::Error;

/// The properties of a message to publish, as [`Channel::publish`]
/// takes them: [`BasicProperties`], a box of them, or `None` for a
/// message without properties (nothing allocated).
///
/// ```
/// use amqp_conn::PublishProperties;
/// use amqp_wire::BasicProperties;
///
/// let none = PublishProperties::from(None);
/// assert_eq!(none.get(), &BasicProperties::default());
/// let typed = PublishProperties::from(BasicProperties {
///     content_type: Some("text/plain".try_into().unwrap()),
///     ..Default::default()
/// });
/// assert_eq!(typed.get().content_type.as_deref(), Some("text/plain"));
/// ```
///
/// [`Channel::publish`]: crate::Channel::publish
#[derive(Debug, Clone, Default)]
pub struct PublishProperties(Option<Box<BasicProperties>>);

impl PublishProperties {
    /// The properties (the shared empty ones when none are set).
    pub fn get(&self) -> &BasicProperties {
        self.0.as_deref().unwrap_or(BasicProperties::none())
    }

    /// The properties to change; the first call allocates them.
    pub fn get_mut(&mut self) -> &mut BasicProperties {
        self.0.get_or_insert_with(Box::default)
    }
}

/// Equal when the properties are: none set equals all unset.
impl PartialEq for PublishProperties {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl From<BasicProperties> for PublishProperties {
    fn from(properties: BasicProperties) -> Self {
        PublishProperties(Some(Box::new(properties)))
    }
}

impl From<Box<BasicProperties>> for PublishProperties {
    fn from(properties: Box<BasicProperties>) -> Self {
        PublishProperties(Some(properties))
    }
}

impl From<Option<Box<BasicProperties>>> for PublishProperties {
    fn from(properties: Option<Box<BasicProperties>>) -> Self {
        PublishProperties(properties)
    }
}

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
pub struct ReturnedMessage {
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
#[non_exhaustive]
#[must_use = "a Nack, Returned or Indeterminate outcome means the message may not have arrived"]
pub enum Confirmation {
    /// The broker took responsibility for the message (`basic.ack`).
    Ack,
    /// The broker could not take the message (`basic.nack`): for example a
    /// full queue with `x-overflow=reject-publish`. Publish it again or
    /// give up. Says where the message went.
    Nack {
        /// The exchange it was published to.
        exchange: ShortString,
        /// The routing key it was published with.
        routing_key: ShortString,
    },
    /// The message was mandatory and could not be routed: the broker
    /// returned it (`basic.return`) before confirming it.
    Returned(Box<ReturnedMessage>),
    /// The channel or connection closed before the broker answered: the
    /// message may or may not have been taken. The error says why.
    Indeterminate(Error),
    /// The broker refused the message and closed the channel because of
    /// it (a close in reply to `basic.publish` naming its exchange: 404 no
    /// such exchange, 403 access refused): it was not delivered. The
    /// error carries the broker's reason.
    Refused(Error),
    /// The channel is not in confirm mode: nothing will be confirmed.
    NotConfirmed,
}

impl Confirmation {
    /// True for `Ack`.
    pub fn is_ack(&self) -> bool {
        matches!(self, Confirmation::Ack)
    }
}
