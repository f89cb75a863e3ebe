//! Messages to publish, and messages the broker returned.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use amqp_conn::PublishProperties;
use amqp_wire::{BasicProperties, FieldTable, FieldValue, ReplyCode, ShortString};
use bytes::Bytes;

use crate::error::{Error, Result};

/// Whether the broker writes a message to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeliveryMode {
    /// Kept in memory only (1): lost when the broker restarts.
    #[default]
    NotPersistent,
    /// Written to disk (2) when it reaches a durable queue.
    Persistent,
}

impl DeliveryMode {
    /// The octet on the wire.
    pub fn octet(self) -> u8 {
        match self {
            DeliveryMode::NotPersistent => 1,
            DeliveryMode::Persistent => 2,
        }
    }

    pub(crate) fn from_octet(octet: u8) -> Option<Self> {
        match octet {
            1 => Some(DeliveryMode::NotPersistent),
            2 => Some(DeliveryMode::Persistent),
            _ => None,
        }
    }
}

/// A message to publish: a body and the 13 properties of aio-pika's
/// `Message`, built with chained setters.
///
/// ```
/// use pika::{DeliveryMode, Message};
/// use std::time::Duration;
///
/// let message = Message::new("hello")
///     .content_type("text/plain")
///     .header("attempt", 1)
///     .header("source", "billing")
///     .delivery_mode(DeliveryMode::Persistent)
///     .expiration(Duration::from_secs(60))
///     .message_id("m-1");
/// let info = message.info();
/// assert_eq!(info.body_size, 5);
/// assert_eq!(info.expiration.as_deref(), Some("60000"));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Message {
    /// The body.
    pub body: Bytes,
    /// Boxed once the first property is set, so a message moves cheaply
    /// on the way to the socket and one without properties allocates none.
    properties: PublishProperties,
    /// The first invalid property given (a name over 255 bytes); reported
    /// when the message is published.
    invalid: Option<(&'static str, String)>,
}

/// A short string property from text; remembers the first failure.
fn set_short(
    invalid: &mut Option<(&'static str, String)>,
    what: &'static str,
    value: &str,
) -> Option<ShortString> {
    match ShortString::try_from(value) {
        Ok(s) => Some(s),
        Err(e) => {
            invalid.get_or_insert((what, e.to_string()));
            None
        }
    }
}

macro_rules! short_setters {
    ($($(#[$doc:meta])* $name:ident => $field:ident),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, value: impl AsRef<str>) -> Self {
                self.properties.get_mut().$field = set_short(&mut self.invalid, stringify!($name), value.as_ref());
                self
            }
        )*
    };
}

impl Message {
    /// A message with `body` and no properties.
    pub fn new(body: impl Into<Bytes>) -> Self {
        Message {
            body: body.into(),
            ..Default::default()
        }
    }

    short_setters! {
        /// MIME content type, such as `application/json`.
        content_type => content_type,
        /// MIME content encoding, such as `gzip`.
        content_encoding => content_encoding,
        /// Correlates an RPC reply with its request.
        correlation_id => correlation_id,
        /// The queue to reply to.
        reply_to => reply_to,
        /// An application message id.
        message_id => message_id,
        /// An application message type name (aio-pika's `type`).
        message_type => kind,
        /// The user who published (RabbitMQ checks it against the login).
        user_id => user_id,
        /// The publishing application.
        app_id => app_id,
    }

    /// Sets a header; values convert from integers, floats, `bool`, `&str`,
    /// `String`, [`FieldTable`] and `Vec<FieldValue>`.
    pub fn header(mut self, key: &str, value: impl Into<FieldValue>) -> Self {
        if let Some(key) = set_short(&mut self.invalid, "header name", key) {
            self.properties
                .get_mut()
                .headers
                .get_or_insert_with(FieldTable::new)
                .insert(key, value);
        }
        self
    }

    /// Replaces all headers.
    pub fn headers(mut self, headers: FieldTable) -> Self {
        self.properties.get_mut().headers = Some(headers);
        self
    }

    /// Persistent or not.
    pub fn delivery_mode(mut self, mode: DeliveryMode) -> Self {
        self.properties.get_mut().delivery_mode = Some(mode.octet());
        self
    }

    /// Priority, 0 to 9 in RabbitMQ's priority queues.
    pub fn priority(mut self, priority: u8) -> Self {
        self.properties.get_mut().priority = Some(priority);
        self
    }

    /// The message expires after `ttl` in a queue (whole milliseconds).
    pub fn expiration(mut self, ttl: Duration) -> Self {
        self.properties.get_mut().expiration =
            ShortString::try_from(ttl.as_millis().to_string()).ok();
        self
    }

    /// The message expires at `when` (converted to a time-to-live now;
    /// a time in the past expires at once).
    pub fn expiration_at(self, when: SystemTime) -> Self {
        let ttl = when
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        self.expiration(ttl)
    }

    /// The publishing time (whole seconds since the Unix epoch on the wire).
    pub fn timestamp(mut self, when: SystemTime) -> Self {
        self.properties.get_mut().timestamp =
            when.duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs());
        self
    }

    /// All properties at once (replaces what was set).
    pub fn properties(mut self, properties: BasicProperties) -> Self {
        self.properties = properties.into();
        self
    }

    /// The properties as they go on the wire.
    pub fn basic_properties(&self) -> &BasicProperties {
        self.properties.get()
    }

    /// The message as a plain struct, like aio-pika's `Message.info()`.
    pub fn info(&self) -> MessageInfo {
        MessageInfo::new(self.body.len(), self.properties.get())
    }

    pub(crate) fn into_parts(self) -> Result<(PublishProperties, Bytes)> {
        if let Some((what, reason)) = self.invalid {
            return Err(Error::InvalidArgument { what, reason });
        }
        Ok((self.properties, self.body))
    }
}

/// A message's properties as plain values (aio-pika's `info()`); for a
/// message from the broker, its delivery fields too.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct MessageInfo {
    /// Body length in bytes.
    pub body_size: usize,
    /// Headers.
    pub headers: FieldTable,
    /// Content type.
    pub content_type: Option<String>,
    /// Content encoding.
    pub content_encoding: Option<String>,
    /// Delivery mode.
    pub delivery_mode: Option<DeliveryMode>,
    /// Priority.
    pub priority: Option<u8>,
    /// Correlation id.
    pub correlation_id: Option<String>,
    /// Reply-to queue.
    pub reply_to: Option<String>,
    /// Expiration in milliseconds, as on the wire.
    pub expiration: Option<String>,
    /// Message id.
    pub message_id: Option<String>,
    /// Timestamp.
    pub timestamp: Option<SystemTime>,
    /// Message type.
    pub message_type: Option<String>,
    /// User id.
    pub user_id: Option<String>,
    /// App id.
    pub app_id: Option<String>,
    /// The exchange it was published to (messages from the broker).
    pub exchange: Option<String>,
    /// The routing key it was published with (messages from the broker).
    pub routing_key: Option<String>,
    /// The delivery tag on its channel (messages from the broker).
    pub delivery_tag: Option<u64>,
    /// True when delivered before (messages from the broker).
    pub redelivered: Option<bool>,
    /// The consumer's tag (delivered to a consumer).
    pub consumer_tag: Option<String>,
    /// Messages left in the queue (fetched with `Queue::get`).
    pub message_count: Option<u32>,
}

impl MessageInfo {
    pub(crate) fn new(body_size: usize, p: &BasicProperties) -> Self {
        let text = |s: &Option<ShortString>| s.as_ref().map(|s| s.to_string());
        MessageInfo {
            body_size,
            headers: p.headers.clone().unwrap_or_default(),
            content_type: text(&p.content_type),
            content_encoding: text(&p.content_encoding),
            delivery_mode: p.delivery_mode.and_then(DeliveryMode::from_octet),
            priority: p.priority,
            correlation_id: text(&p.correlation_id),
            reply_to: text(&p.reply_to),
            expiration: text(&p.expiration),
            message_id: text(&p.message_id),
            timestamp: p.timestamp.map(|s| UNIX_EPOCH + Duration::from_secs(s)),
            message_type: text(&p.kind),
            user_id: text(&p.user_id),
            app_id: text(&p.app_id),
            ..MessageInfo::default()
        }
    }
}

/// A mandatory message the broker could not route and sent back.
#[derive(Debug, Clone, PartialEq)]
pub struct ReturnedMessage {
    /// Why, usually `NO_ROUTE` (312).
    pub reply_code: ReplyCode,
    /// The broker's text.
    pub reply_text: String,
    /// The exchange it was published to.
    pub exchange: String,
    /// Its routing key.
    pub routing_key: String,
    /// Its properties.
    pub properties: BasicProperties,
    /// Its body.
    pub body: Bytes,
}

impl From<amqp_conn::ReturnedMessage> for ReturnedMessage {
    fn from(r: amqp_conn::ReturnedMessage) -> Self {
        ReturnedMessage {
            reply_code: r.reply_code,
            reply_text: r.reply_text.to_string(),
            exchange: r.exchange.to_string(),
            routing_key: r.routing_key.to_string(),
            properties: *r.properties,
            body: r.body,
        }
    }
}

/// Converts a name to a short string, naming the argument on failure.
pub(crate) fn short(what: &'static str, value: &str) -> Result<ShortString> {
    ShortString::try_from(value).map_err(|e| Error::name(what, e))
}

/// Builds a field table from `(name, value)` pairs.
///
/// ```
/// let args = pika::table([("x-max-length", 10.into()), ("x-overflow", "reject-publish".into())]).unwrap();
/// assert_eq!(args.len(), 2);
/// ```
pub fn table<'a>(entries: impl IntoIterator<Item = (&'a str, FieldValue)>) -> Result<FieldTable> {
    let mut table = FieldTable::new();
    for (key, value) in entries {
        table.insert(short("table key", key)?, value);
    }
    Ok(table)
}
