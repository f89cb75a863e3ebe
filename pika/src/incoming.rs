//! Messages from the broker: acknowledging them, and processing them with
//! aio-pika's `process()` semantics.

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;

use amqp_conn::Delivery;
use amqp_wire::{BasicProperties, FieldTable};
use bytes::Bytes;

use crate::error::{Error, Result};
use crate::message::MessageInfo;

#[derive(Debug)]
struct Inner {
    delivery: Delivery,
    channel: amqp_conn::Channel,
    no_ack: bool,
}

/// A message delivered by the broker (to a consumer, an iterator or
/// `Queue::get`).
///
/// Cheap to clone. Ack, nack or reject it once: a second time (or after
/// an ack or nack with `multiple` covered it) is refused here with
/// [`Error::AlreadyProcessed`] and nothing is sent, instead of letting the
/// broker close the channel. The channel keeps the one record of which
/// deliveries are settled. A message that is dropped without either stays
/// unacknowledged until its channel closes, when the broker requeues it;
/// use [`process`](IncomingMessage::process) to have it acked or rejected
/// for you.
#[derive(Debug, Clone)]
pub struct IncomingMessage {
    inner: Arc<Inner>,
}

impl IncomingMessage {
    pub(crate) fn new(delivery: Delivery, channel: amqp_conn::Channel, no_ack: bool) -> Self {
        IncomingMessage {
            inner: Arc::new(Inner {
                delivery,
                channel,
                no_ack,
            }),
        }
    }

    /// The body, a slice of the read buffer (no copy).
    pub fn body(&self) -> &Bytes {
        &self.inner.delivery.body
    }

    /// The properties.
    pub fn properties(&self) -> &BasicProperties {
        &self.inner.delivery.properties
    }

    /// The headers (empty when there are none).
    pub fn headers(&self) -> FieldTable {
        self.properties().headers.clone().unwrap_or_default()
    }

    /// Stream queues: this message's offset in the stream (the
    /// `x-stream-offset` header). Resume after it with
    /// [`StreamOffset::Offset`](crate::StreamOffset::Offset)`(offset + 1)`.
    pub fn stream_offset(&self) -> Option<u64> {
        crate::arguments::parse_stream_offset(self.properties().headers.as_ref())
    }

    /// Why and where this message was dead-lettered: the `x-death` header,
    /// newest entry first; empty when it never was.
    ///
    /// # Errors
    /// [`Error::MalformedHeader`] when the header is there but not as
    /// RabbitMQ writes it (someone else set it).
    pub fn x_death(&self) -> Result<Vec<crate::XDeath>> {
        crate::arguments::parse_x_death(self.properties().headers.as_ref())
    }

    /// The content type.
    pub fn content_type(&self) -> Option<&str> {
        self.properties().content_type.as_deref()
    }

    /// The correlation id.
    pub fn correlation_id(&self) -> Option<&str> {
        self.properties().correlation_id.as_deref()
    }

    /// The reply-to queue.
    pub fn reply_to(&self) -> Option<&str> {
        self.properties().reply_to.as_deref()
    }

    /// The message id.
    pub fn message_id(&self) -> Option<&str> {
        self.properties().message_id.as_deref()
    }

    /// The delivery tag (per channel).
    pub fn delivery_tag(&self) -> u64 {
        self.inner.delivery.delivery_tag
    }

    /// True when the broker delivered it before.
    pub fn redelivered(&self) -> bool {
        self.inner.delivery.redelivered
    }

    /// The exchange it was published to.
    pub fn exchange(&self) -> &str {
        &self.inner.delivery.exchange
    }

    /// The routing key it was published with.
    pub fn routing_key(&self) -> &str {
        &self.inner.delivery.routing_key
    }

    /// The consumer tag (`None` for `Queue::get`).
    pub fn consumer_tag(&self) -> Option<&str> {
        self.inner.delivery.consumer_tag.as_deref()
    }

    /// Messages left in the queue (`Queue::get` only).
    pub fn message_count(&self) -> Option<u32> {
        self.inner.delivery.message_count
    }

    /// The properties and the delivery fields (exchange, routing key,
    /// delivery tag, redelivered, consumer tag, message count) as plain
    /// values, as aio-pika's `info()`.
    ///
    /// ```no_run
    /// # fn example(message: pika::IncomingMessage) {
    /// let info = message.info();
    /// println!("{:?} {:?} tag {:?}", info.exchange, info.routing_key, info.delivery_tag);
    /// # }
    /// ```
    pub fn info(&self) -> MessageInfo {
        let delivery = &self.inner.delivery;
        MessageInfo {
            exchange: Some(delivery.exchange.to_string()),
            routing_key: Some(delivery.routing_key.to_string()),
            delivery_tag: Some(delivery.delivery_tag),
            redelivered: Some(delivery.redelivered),
            consumer_tag: delivery.consumer_tag.as_ref().map(|t| t.to_string()),
            message_count: delivery.message_count,
            ..MessageInfo::new(self.body().len(), self.properties())
        }
    }

    /// True once acked, nacked or rejected (alone, or covered by an ack or
    /// nack with `multiple`), or when consumed without ack.
    pub fn processed(&self) -> bool {
        self.inner.channel.is_settled(self.delivery_tag())
    }

    /// Turns the channel's refusal of a second settlement into pika's
    /// error; a no-ack message has nothing to settle.
    fn settle(
        &self,
        settle: impl FnOnce(&amqp_conn::Channel) -> amqp_conn::Result<()>,
    ) -> Result<()> {
        let delivery_tag = self.delivery_tag();
        if self.inner.no_ack {
            return Err(Error::NoAck { delivery_tag });
        }
        settle(&self.inner.channel).map_err(|error| match error {
            amqp_conn::Error::AlreadySettled { .. } => Error::AlreadyProcessed { delivery_tag },
            other => Error::from(other),
        })
    }

    /// Acknowledges the message (with `multiple`, every earlier unsettled
    /// one on the channel too). Sends and returns: no broker reply.
    pub fn ack(&self, multiple: bool) -> Result<()> {
        let tag = self.delivery_tag();
        self.settle(|channel| channel.ack(tag, multiple))
    }

    /// Negative acknowledgement, requeueing or dropping (dead-lettering).
    pub fn nack(&self, multiple: bool, requeue: bool) -> Result<()> {
        let tag = self.delivery_tag();
        self.settle(|channel| channel.nack(tag, multiple, requeue))
    }

    /// Rejects the message, requeueing it or dropping (dead-lettering) it.
    pub fn reject(&self, requeue: bool) -> Result<()> {
        let tag = self.delivery_tag();
        self.settle(|channel| channel.reject(tag, requeue))
    }

    /// Processes the message with aio-pika's `process()` semantics: ack
    /// when the work succeeds; reject (requeued or not, as configured)
    /// when it fails or panics. A [guard](Process::guard) dropped without
    /// a decision requeues the message (see [`ProcessGuard`]).
    ///
    /// ```no_run
    /// # async fn example(message: pika::IncomingMessage) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    /// message
    ///     .process()
    ///     .requeue(true)
    ///     .run(|message| async move {
    ///         println!("{:?}", message.body());
    ///         Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    ///     })
    ///     .await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn process(self) -> Process {
        Process {
            message: self,
            requeue: false,
            reject_on_redelivered: false,
            ignore_processed: false,
        }
    }
}

/// Options of [`IncomingMessage::process`].
#[derive(Debug)]
#[must_use = "nothing is processed until `run` or `guard` is called"]
pub struct Process {
    message: IncomingMessage,
    requeue: bool,
    reject_on_redelivered: bool,
    ignore_processed: bool,
}

impl Process {
    /// Requeue the message when the work fails or panics (default: drop
    /// or dead-letter it).
    pub fn requeue(mut self, requeue: bool) -> Self {
        self.requeue = requeue;
        self
    }

    /// When the work fails on a message that was already redelivered,
    /// reject it without requeue (poison messages do not loop).
    pub fn reject_on_redelivered(mut self, on: bool) -> Self {
        self.reject_on_redelivered = on;
        self
    }

    /// Allow acking, nacking or rejecting inside: then the guard does
    /// nothing more.
    pub fn ignore_processed(mut self, on: bool) -> Self {
        self.ignore_processed = on;
        self
    }

    /// A guard: [`ProcessGuard::ack`] when the work succeeded,
    /// [`ProcessGuard::reject`] when it failed. Dropped in a panic, it
    /// rejects as configured; dropped without a decision otherwise, it
    /// requeues the message and logs a warning (never discards it).
    pub fn guard(self) -> ProcessGuard {
        ProcessGuard {
            process: Some(self),
        }
    }

    /// Runs `work` on the message: acks when it returns `Ok`, rejects when
    /// it returns `Err` or panics (the panic continues).
    ///
    /// # Cancel safety
    /// Dropping the future (or a timeout) while `work` runs drops the guard
    /// without a decision: the message is requeued (see [`ProcessGuard`]).
    /// A future dropped before its first poll settles nothing: the message
    /// stays unacknowledged (see [`IncomingMessage`]).
    pub async fn run<F, Fut, T, E>(self, work: F) -> std::result::Result<T, E>
    where
        F: FnOnce(IncomingMessage) -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: From<Error>,
    {
        let guard = self.guard();
        match work(guard.message().clone()).await {
            Ok(value) => {
                guard.ack()?;
                Ok(value)
            }
            Err(error) => {
                // The work's error matters more than a failed reject.
                let _ = guard.reject();
                Err(error)
            }
        }
    }

    fn fail(self) -> Result<()> {
        let message = &self.message;
        if self.ignore_processed && message.processed() {
            return Ok(());
        }
        if self.reject_on_redelivered && message.redelivered() {
            tracing::info!(
                delivery_tag = message.delivery_tag(),
                "redelivered message failed again: rejected without requeue"
            );
            return message.reject(false);
        }
        message.reject(self.requeue)
    }
}

/// Settles its message when the work is done; dereferences to the message.
///
/// Decide with [`ack`](ProcessGuard::ack) or
/// [`reject`](ProcessGuard::reject). When the guard is dropped without a
/// decision:
/// - during a panic, the message is rejected as configured (requeued with
///   [`Process::requeue`], else dropped or dead-lettered), as aio-pika
///   does when the block raises;
/// - otherwise (a forgotten `ack`, or an early return with `?`), the
///   message is **requeued** and a warning logged: forgetting a decision
///   never loses a message. Reject explicitly to drop it.
///
/// ```no_run
/// # async fn example(message: pika::IncomingMessage) -> pika::Result<()> {
/// let guard = message.process().requeue(false).guard();
/// if guard.body().is_empty() {
///     return guard.reject(); // dropped or dead-lettered, as configured
/// }
/// // ... the work ...
/// guard.ack()
/// # }
/// ```
#[derive(Debug)]
pub struct ProcessGuard {
    process: Option<Process>,
}

impl ProcessGuard {
    fn message(&self) -> &IncomingMessage {
        &self
            .process
            .as_ref()
            .expect("guard not yet settled")
            .message
    }

    /// The work succeeded: ack the message (nothing when
    /// `ignore_processed` and it was already settled).
    pub fn ack(mut self) -> Result<()> {
        let process = self.process.take().expect("guard not yet settled");
        if process.ignore_processed && process.message.processed() {
            return Ok(());
        }
        process.message.ack(false)
    }

    /// The work failed: reject as configured.
    pub fn reject(mut self) -> Result<()> {
        self.process.take().expect("guard not yet settled").fail()
    }
}

impl Deref for ProcessGuard {
    type Target = IncomingMessage;

    fn deref(&self) -> &IncomingMessage {
        self.message()
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        let Some(process) = self.process.take() else {
            return;
        };
        if std::thread::panicking() {
            if let Err(error) = process.fail() {
                tracing::warn!(%error, "could not reject a message whose processing panicked");
            }
            return;
        }
        let message = &process.message;
        if message.processed() {
            // Settled by hand inside the work: nothing was forgotten.
            return;
        }
        tracing::warn!(
            delivery_tag = message.delivery_tag(),
            "a processing guard was dropped without ack or reject: the message is requeued"
        );
        if let Err(error) = message.reject(true) {
            tracing::warn!(%error, "could not requeue a message whose processing guard was dropped");
        }
    }
}
