//! Messages from the broker: acknowledging them, and processing them with
//! aio-pika's `process()` semantics.

use std::future::Future;
use std::ops::Deref;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use amqp_conn::Delivery;
use amqp_wire::{BasicProperties, FieldTable};
use bytes::Bytes;

use crate::error::{Error, Result};
use crate::message::MessageInfo;

const PENDING: u8 = 0;
const ACKED: u8 = 1;
const NACKED: u8 = 2;
const REJECTED: u8 = 3;

fn how(state: u8) -> &'static str {
    match state {
        ACKED => "acked",
        NACKED => "nacked",
        _ => "rejected",
    }
}

#[derive(Debug)]
struct Inner {
    delivery: Delivery,
    channel: amqp_conn::Channel,
    no_ack: bool,
    state: AtomicU8,
}

/// A message delivered by the broker (to a consumer, an iterator or
/// `Queue::get`).
///
/// Cheap to clone; clones share whether the message was acked. Ack, nack
/// or reject it once: a second time is refused here with
/// [`Error::AlreadyProcessed`] instead of letting the broker close the
/// channel. A message that is dropped without either stays unacknowledged
/// until its channel closes, when the broker requeues it; use
/// [`process`](IncomingMessage::process) to have it acked or rejected for
/// you.
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
                state: AtomicU8::new(PENDING),
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

    /// The properties as plain values.
    pub fn info(&self) -> MessageInfo {
        MessageInfo::new(self.body().len(), self.properties())
    }

    /// True once acked, nacked or rejected.
    pub fn processed(&self) -> bool {
        self.inner.state.load(Ordering::Acquire) != PENDING
    }

    fn settle(&self, to: u8) -> Result<()> {
        let delivery_tag = self.delivery_tag();
        if self.inner.no_ack {
            return Err(Error::NoAck { delivery_tag });
        }
        self.inner
            .state
            .compare_exchange(PENDING, to, Ordering::AcqRel, Ordering::Acquire)
            .map_err(|first| Error::AlreadyProcessed {
                delivery_tag,
                how: how(first),
            })?;
        Ok(())
    }

    /// Acknowledges the message (with `multiple`, every earlier unacked
    /// one on the channel too). Sends and returns: no broker reply.
    pub fn ack(&self, multiple: bool) -> Result<()> {
        self.settle(ACKED)?;
        Ok(self.inner.channel.ack(self.delivery_tag(), multiple)?)
    }

    /// Negative acknowledgement, requeueing or dropping (dead-lettering).
    pub fn nack(&self, multiple: bool, requeue: bool) -> Result<()> {
        self.settle(NACKED)?;
        Ok(self
            .inner
            .channel
            .nack(self.delivery_tag(), multiple, requeue)?)
    }

    /// Rejects the message, requeueing it or dropping (dead-lettering) it.
    pub fn reject(&self, requeue: bool) -> Result<()> {
        self.settle(REJECTED)?;
        Ok(self.inner.channel.reject(self.delivery_tag(), requeue)?)
    }

    /// Processes the message with aio-pika's `process()` semantics: ack
    /// when the work succeeds; reject when it fails, panics or the guard
    /// is dropped.
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
    /// Requeue the message when the work fails (default: drop it).
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

    /// A guard: [`ProcessGuard::ack`] when the work succeeded; dropping it
    /// (on an error path or in a panic) rejects the message.
    pub fn guard(self) -> ProcessGuard {
        ProcessGuard {
            process: Some(self),
        }
    }

    /// Runs `work` on the message: acks when it returns `Ok`, rejects when
    /// it returns `Err` or panics (the panic continues).
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

/// Rejects its message when dropped unless [`ack`](ProcessGuard::ack)ed;
/// dereferences to the message.
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
        if let Some(process) = self.process.take() {
            if let Err(error) = process.fail() {
                tracing::warn!(%error, "could not reject a message whose processing was abandoned");
            }
        }
    }
}
