//! Typed queue and consumer arguments, and the typed `x-death` header.
//!
//! RabbitMQ configures queues and consumers through `x-` arguments in a
//! field table. The setters here write the broker's names and value types
//! for you, so a typo or a wrong type is a compile error instead of a
//! queue that silently ignores its limit:
//!
//! ```no_run
//! # async fn example(channel: pika::Channel) -> pika::Result<()> {
//! use std::time::Duration;
//! use pika::{Overflow, QueueType};
//!
//! let orders = channel
//!     .declare_queue("orders")
//!     .durable(true)
//!     .queue_type(QueueType::Quorum)       // x-queue-type = "quorum"
//!     .dead_letter_exchange("orders.dlx")   // x-dead-letter-exchange
//!     .max_length(10_000)                   // x-max-length
//!     .overflow(Overflow::RejectPublish)    // x-overflow = "reject-publish"
//!     .message_ttl(Duration::from_secs(60)) // x-message-ttl = 60000 (ms)
//!     .delivery_limit(5)                    // x-delivery-limit
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Anything else stays possible with `.argument(key, value)`.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use amqp_wire::{FieldTable, FieldValue};

use crate::channel::DeclareQueue;
use crate::error::{Error, Result};

/// The kind of queue (`x-queue-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QueueType {
    /// The classic queue, on one node.
    Classic,
    /// A replicated queue (Raft); must be durable, not exclusive.
    Quorum,
    /// An append-only log read from an offset; must be durable.
    Stream,
}

impl QueueType {
    /// The name the broker uses: `classic`, `quorum` or `stream`.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
            QueueType::Stream => "stream",
        }
    }
}

/// What a queue at its maximum length does with one more message
/// (`x-overflow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Overflow {
    /// Drop (or dead-letter) the oldest message: the default.
    DropHead,
    /// Refuse the new message: with publisher confirms the publish ends
    /// with [`Error::Nacked`].
    RejectPublish,
    /// Refuse the new message and dead-letter it (classic queues).
    RejectPublishDlx,
}

impl Overflow {
    /// The name the broker uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Overflow::DropHead => "drop-head",
            Overflow::RejectPublish => "reject-publish",
            Overflow::RejectPublishDlx => "reject-publish-dlx",
        }
    }
}

/// Where a consumer of a stream queue starts reading (`x-stream-offset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamOffset {
    /// The first message still in the stream.
    First,
    /// The last chunk written: a few recent messages.
    Last,
    /// Only messages written from now on (the default).
    Next,
    /// From this offset on: to resume, the offset after the last one
    /// processed ([`IncomingMessage::stream_offset`](crate::IncomingMessage::stream_offset)` + 1`).
    Offset(u64),
    /// From the first chunk written at or after this time (the broker
    /// reads it in whole seconds).
    Timestamp(SystemTime),
    /// Messages written in the last this long (whole seconds).
    Interval(Duration),
}

impl StreamOffset {
    /// `x-stream-offset` as the broker reads it, or why it cannot be
    /// written.
    pub(crate) fn to_value(self) -> Result<FieldValue> {
        Ok(match self {
            StreamOffset::First => "first".into(),
            StreamOffset::Last => "last".into(),
            StreamOffset::Next => "next".into(),
            StreamOffset::Offset(offset) => {
                FieldValue::LongLongInt(i64::try_from(offset).map_err(|_| {
                    invalid(
                        "x-stream-offset",
                        format!("offset {offset} is above i64::MAX"),
                    )
                })?)
            }
            StreamOffset::Timestamp(time) => FieldValue::Timestamp(
                time.duration_since(UNIX_EPOCH)
                    .map_err(|_| invalid("x-stream-offset", "a time before 1970".into()))?
                    .as_secs(),
            ),
            StreamOffset::Interval(interval) => {
                format!("{}s", whole_seconds("x-stream-offset", interval)?).into()
            }
        })
    }
}

fn invalid(what: &'static str, reason: String) -> Error {
    Error::InvalidArgument { what, reason }
}

/// `duration` in milliseconds, as the broker's `x-message-ttl` and
/// `x-expires` take it.
fn milliseconds(what: &'static str, duration: Duration) -> Result<i64> {
    i64::try_from(duration.as_millis())
        .map_err(|_| invalid(what, format!("{duration:?} is too long")))
}

/// `duration` in whole seconds, at least one.
fn whole_seconds(what: &'static str, duration: Duration) -> Result<u64> {
    match duration.as_secs() {
        0 => Err(invalid(what, format!("{duration:?} is under one second"))),
        seconds => Ok(seconds),
    }
}

fn count(what: &'static str, n: u64) -> Result<FieldValue> {
    i64::try_from(n)
        .map(FieldValue::LongLongInt)
        .map_err(|_| invalid(what, format!("{n} is above i64::MAX")))
}

/// The typed setters of queue arguments; each writes one `x-` argument.
impl DeclareQueue<'_> {
    fn typed(self, key: &'static str, value: Result<FieldValue>) -> Self {
        match value {
            Ok(value) => self.argument(key, value),
            Err(error) => self.invalid(error),
        }
    }

    /// The kind of queue (`x-queue-type`). Quorum and stream queues must
    /// be durable and not exclusive.
    pub fn queue_type(self, kind: QueueType) -> Self {
        self.argument("x-queue-type", kind.as_str())
    }

    /// Where rejected, expired and overflowing messages go
    /// (`x-dead-letter-exchange`; `""` is the default exchange).
    pub fn dead_letter_exchange(self, exchange: &str) -> Self {
        self.argument("x-dead-letter-exchange", exchange)
    }

    /// The routing key of dead-lettered messages
    /// (`x-dead-letter-routing-key`; default: their own).
    pub fn dead_letter_routing_key(self, routing_key: &str) -> Self {
        self.argument("x-dead-letter-routing-key", routing_key)
    }

    /// Messages older than this expire (`x-message-ttl`, milliseconds).
    pub fn message_ttl(self, ttl: Duration) -> Self {
        let value = milliseconds("x-message-ttl", ttl).map(FieldValue::LongLongInt);
        self.typed("x-message-ttl", value)
    }

    /// The queue is deleted after being unused (no consumers, no
    /// `basic.get`, no redeclare) this long (`x-expires`, milliseconds,
    /// at least 1).
    pub fn expires(self, after: Duration) -> Self {
        let value = match milliseconds("x-expires", after) {
            Ok(0) => Err(invalid("x-expires", "must be at least 1 ms".into())),
            other => other.map(FieldValue::LongLongInt),
        };
        self.typed("x-expires", value)
    }

    /// At most this many ready messages (`x-max-length`); see
    /// [`overflow`](Self::overflow) for what happens past it.
    pub fn max_length(self, messages: u64) -> Self {
        self.typed("x-max-length", count("x-max-length", messages))
    }

    /// At most this many bytes of ready message bodies
    /// (`x-max-length-bytes`).
    pub fn max_length_bytes(self, bytes: u64) -> Self {
        self.typed("x-max-length-bytes", count("x-max-length-bytes", bytes))
    }

    /// What a full queue does with one more message (`x-overflow`).
    pub fn overflow(self, overflow: Overflow) -> Self {
        self.argument("x-overflow", overflow.as_str())
    }

    /// A priority queue with priorities 1 to `max` (`x-max-priority`;
    /// RabbitMQ advises at most 10). Messages set theirs with
    /// [`Message::priority`](crate::Message::priority).
    pub fn max_priority(self, max: u8) -> Self {
        let value = match max {
            0 => Err(invalid("x-max-priority", "must be at least 1".into())),
            max => Ok(FieldValue::ShortShortUInt(max)),
        };
        self.typed("x-max-priority", value)
    }

    /// Only one consumer receives at a time; when it goes, the next one
    /// takes over (`x-single-active-consumer`).
    pub fn single_active_consumer(self, on: bool) -> Self {
        self.argument("x-single-active-consumer", on)
    }

    /// Quorum queues: a message returned this many times is dropped or
    /// dead-lettered (`x-delivery-limit`).
    pub fn delivery_limit(self, limit: u32) -> Self {
        self.typed("x-delivery-limit", count("x-delivery-limit", limit.into()))
    }

    /// Stream queues: segments older than this are removed (`x-max-age`,
    /// written in whole seconds, such as `"3600s"`).
    pub fn stream_max_age(self, age: Duration) -> Self {
        let value = whole_seconds("x-max-age", age).map(|s| format!("{s}s").into());
        self.typed("x-max-age", value)
    }

    /// Stream queues: the size of one segment file on disk
    /// (`x-stream-max-segment-size-bytes`).
    pub fn stream_max_segment_size_bytes(self, bytes: u64) -> Self {
        let key = "x-stream-max-segment-size-bytes";
        self.typed(key, count(key, bytes))
    }
}

/// Why a message was dead-lettered (`reason` in `x-death`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeathReason {
    /// Rejected or nacked with `requeue = false`.
    Rejected,
    /// Its time to live ran out.
    Expired,
    /// The queue was over its maximum length.
    MaxLength,
    /// Returned more often than the quorum queue's delivery limit.
    DeliveryLimit,
    /// A reason this version does not know, as the broker wrote it.
    Other(String),
}

impl DeathReason {
    fn parse(text: &str) -> DeathReason {
        match text {
            "rejected" => DeathReason::Rejected,
            "expired" => DeathReason::Expired,
            "maxlen" => DeathReason::MaxLength,
            "delivery_limit" => DeathReason::DeliveryLimit,
            other => DeathReason::Other(other.to_string()),
        }
    }
}

impl fmt::Display for DeathReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeathReason::Rejected => "rejected",
            DeathReason::Expired => "expired",
            DeathReason::MaxLength => "maxlen",
            DeathReason::DeliveryLimit => "delivery_limit",
            DeathReason::Other(other) => other,
        })
    }
}

/// One entry of a dead-lettered message's `x-death` header: the broker
/// adds one per (queue, reason) the message died in, newest first, and
/// counts repeats in `count`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct XDeath {
    /// The queue the message was dead-lettered from.
    pub queue: String,
    /// Why.
    pub reason: DeathReason,
    /// How many times it died in this queue for this reason.
    pub count: u64,
    /// The exchange it had been published to.
    pub exchange: String,
    /// Its routing keys (the routing key, and CC/BCC headers' keys).
    pub routing_keys: Vec<String>,
    /// When it died the first time for this queue and reason.
    pub time: Option<SystemTime>,
    /// Its own `expiration` property, when it had one.
    pub original_expiration: Option<String>,
}

/// Reads an `x-death` header value; `None` when the header is absent.
pub(crate) fn parse_x_death(headers: Option<&FieldTable>) -> Result<Vec<XDeath>> {
    let Some(value) = headers.and_then(|headers| headers.get("x-death")) else {
        return Ok(Vec::new());
    };
    let malformed = |problem: &str| Error::MalformedHeader {
        header: "x-death",
        problem: problem.to_string(),
    };
    let FieldValue::Array(entries) = value else {
        return Err(malformed("not an array"));
    };
    entries
        .iter()
        .map(|entry| {
            let FieldValue::Table(table) = entry else {
                return Err(malformed("an entry is not a table"));
            };
            let text = |key: &str| {
                table
                    .get(key)
                    .and_then(FieldValue::as_str)
                    .map(str::to_string)
            };
            Ok(XDeath {
                queue: text("queue").ok_or_else(|| malformed("an entry has no queue"))?,
                reason: DeathReason::parse(
                    &text("reason").ok_or_else(|| malformed("an entry has no reason"))?,
                ),
                count: table
                    .get("count")
                    .and_then(FieldValue::as_i64)
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or_else(|| malformed("an entry has no count"))?,
                exchange: text("exchange").unwrap_or_default(),
                routing_keys: match table.get("routing-keys") {
                    Some(FieldValue::Array(keys)) => keys
                        .iter()
                        .filter_map(|key| key.as_str().map(str::to_string))
                        .collect(),
                    _ => Vec::new(),
                },
                time: match table.get("time") {
                    Some(FieldValue::Timestamp(seconds)) => {
                        Some(UNIX_EPOCH + Duration::from_secs(*seconds))
                    }
                    _ => None,
                },
                original_expiration: text("original-expiration"),
            })
        })
        .collect()
}

/// Reads `x-stream-offset` from a delivery's headers.
pub(crate) fn parse_stream_offset(headers: Option<&FieldTable>) -> Option<u64> {
    headers?
        .get("x-stream-offset")?
        .as_i64()
        .and_then(|offset| u64::try_from(offset).ok())
}

#[cfg(test)]
mod tests {
    use amqp_wire::ShortString;

    use super::*;

    fn table(entries: &[(&'static str, FieldValue)]) -> FieldTable {
        let mut table = FieldTable::new();
        for (key, value) in entries {
            table.insert(ShortString::from_static(key), value.clone());
        }
        table
    }

    #[test]
    fn x_death_as_rabbitmq_writes_it_is_read() {
        let entry = table(&[
            ("count", FieldValue::LongLongInt(2)),
            ("reason", "expired".into()),
            ("queue", "work".into()),
            ("time", FieldValue::Timestamp(1_700_000_000)),
            ("exchange", "".into()),
            ("routing-keys", FieldValue::Array(vec!["work".into()])),
            ("original-expiration", "100".into()),
        ]);
        let headers = table(&[("x-death", FieldValue::Array(vec![FieldValue::Table(entry)]))]);
        let deaths = parse_x_death(Some(&headers)).unwrap();
        assert_eq!(
            deaths,
            vec![XDeath {
                queue: "work".into(),
                reason: DeathReason::Expired,
                count: 2,
                exchange: String::new(),
                routing_keys: vec!["work".into()],
                time: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
                original_expiration: Some("100".into()),
            }]
        );
    }

    #[test]
    fn no_x_death_is_an_empty_list_and_a_wrong_shape_an_error() {
        assert_eq!(parse_x_death(None).unwrap(), vec![]);
        assert_eq!(parse_x_death(Some(&FieldTable::new())).unwrap(), vec![]);
        let headers = table(&[("x-death", "rejected".into())]);
        let error = parse_x_death(Some(&headers)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the x-death header is not as RabbitMQ writes it: not an array"
        );
        let headers = table(&[(
            "x-death",
            FieldValue::Array(vec![FieldValue::Table(table(&[(
                "reason",
                "rejected".into(),
            )]))]),
        )]);
        assert!(parse_x_death(Some(&headers)).is_err());
    }

    #[test]
    fn unknown_reasons_are_kept_as_written() {
        assert_eq!(DeathReason::parse("maxlen"), DeathReason::MaxLength);
        assert_eq!(
            DeathReason::parse("delivery_limit"),
            DeathReason::DeliveryLimit
        );
        assert_eq!(
            DeathReason::parse("new_reason"),
            DeathReason::Other("new_reason".into())
        );
        assert_eq!(
            DeathReason::Other("new_reason".into()).to_string(),
            "new_reason"
        );
    }

    #[test]
    fn stream_offsets_are_written_as_the_broker_reads_them() {
        assert_eq!(StreamOffset::First.to_value().unwrap(), "first".into());
        assert_eq!(StreamOffset::Next.to_value().unwrap(), "next".into());
        assert_eq!(
            StreamOffset::Offset(42).to_value().unwrap(),
            FieldValue::LongLongInt(42)
        );
        assert!(StreamOffset::Offset(u64::MAX).to_value().is_err());
        let time = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            StreamOffset::Timestamp(time).to_value().unwrap(),
            FieldValue::Timestamp(1_700_000_000)
        );
        assert_eq!(
            StreamOffset::Interval(Duration::from_secs(600))
                .to_value()
                .unwrap(),
            "600s".into()
        );
        assert!(StreamOffset::Interval(Duration::from_millis(10))
            .to_value()
            .is_err());
    }

    #[test]
    fn stream_offset_header_is_read() {
        let headers = table(&[("x-stream-offset", FieldValue::LongLongInt(7))]);
        assert_eq!(parse_stream_offset(Some(&headers)), Some(7));
        assert_eq!(parse_stream_offset(None), None);
    }
}
