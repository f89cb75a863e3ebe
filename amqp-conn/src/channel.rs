//! The channel handle.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use amqp_wire::{
    BasicAck, BasicConsume, BasicGet, BasicNack, BasicPublish, BasicReject, ConfirmSelect, Method,
    Request,
};
use bytes::Bytes;
use tokio::sync::{oneshot, TryAcquireError};

use crate::command::{ChannelRef, ChannelShared, Command, ConsumerSink, PublishCommand, Reply};
use crate::connection::ConnectionInner;
use crate::consumer::Consumer;
use crate::error::{Error, Result};
use crate::message::{Confirmation, Delivery, PublishProperties};
use crate::settlements::Refused;
use crate::state::lock_settlements;

pub(crate) struct ChannelInner {
    pub(crate) r: ChannelRef,
    pub(crate) shared: Arc<ChannelShared>,
    pub(crate) conn: Arc<ConnectionInner>,
}

impl ChannelInner {
    fn closed_error(&self) -> Error {
        self.shared
            .closed
            .get()
            .cloned()
            .unwrap_or_else(|| self.conn.closed_error())
    }

    pub(crate) fn send(&self, command: Command) -> Result<()> {
        if let Some(error) = self.shared.closed.get() {
            return Err(error.clone());
        }
        self.conn.check_up()?;
        self.conn.send(command)
    }

    fn settle(&self, delivery_tag: u64, multiple: bool, method: Method) -> Result<()> {
        settle(
            &self.shared,
            self.r,
            delivery_tag,
            multiple,
            method,
            |command| self.conn.send(command),
        )
    }
}

/// Settles `delivery_tag` in the channel's book and queues `method` (its
/// ack, nack or reject) with `send` while the book is held, so the frames
/// go out in the order of the book. A tag settled before, or never
/// delivered, is refused here and nothing is sent.
pub(crate) fn settle(
    shared: &ChannelShared,
    r: ChannelRef,
    delivery_tag: u64,
    multiple: bool,
    method: Method,
    send: impl FnOnce(Command) -> Result<()>,
) -> Result<()> {
    let mut book = lock_settlements(shared);
    if let Some(error) = shared.closed.get() {
        return Err(error.clone());
    }
    let channel = r.id;
    let merge = match book.settle(delivery_tag, multiple) {
        Ok(merge) => merge,
        Err(Refused::AlreadySettled) => {
            return Err(Error::AlreadySettled {
                channel,
                delivery_tag,
            })
        }
        Err(Refused::NeverDelivered) => {
            return Err(Error::UnknownDeliveryTag {
                channel,
                delivery_tag,
            })
        }
        Err(Refused::Stale) => {
            return Err(Error::StaleDelivery {
                channel,
                delivery_tag,
            })
        }
    };
    send(Command::Cast {
        channel: r,
        method: method.into(),
        merge,
    })
}

impl std::fmt::Debug for ChannelInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = f.debug_struct("Channel");
        s.field("number", &self.r.id)
            .field("connection", &self.conn.address());
        match self.shared.closed.get().or(self.conn.closed.get()) {
            None => s.field("state", &"open"),
            Some(error) => s.field("state", &format_args!("closed: {error}")),
        };
        s.finish()
    }
}

impl Drop for ChannelInner {
    fn drop(&mut self) {
        if self.shared.closed.get().is_none() {
            let _ = self.conn.commands.send(Command::CloseChannel {
                channel: self.r,
                reply: None,
            });
        }
    }
}

/// An AMQP channel.
///
/// Cheap to clone. Requests that wait for a reply go out one at a time,
/// in the order they were made; publishes and acks do not wait. When the
/// last clone is dropped (consumers hold one too), the channel is closed;
/// the drop does not wait for it.
#[derive(Clone)]
pub struct Channel {
    pub(crate) inner: Arc<ChannelInner>,
}

/// `Channel { number: 1, connection: "127.0.0.1:5672", state: "open" }`.
impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

/// The confirm of one publish: await it for the [`Confirmation`].
///
/// Dropping it does not cancel the publish.
#[derive(Debug)]
pub struct PublishConfirm {
    /// The answer to wait for (channels in confirm mode), and the channel
    /// for its close reason when the task drops the confirm unanswered.
    waiting: Option<(oneshot::Receiver<Confirmation>, Arc<ChannelInner>)>,
}

impl Future for PublishConfirm {
    type Output = Confirmation;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Confirmation> {
        let Some((rx, channel)) = self.waiting.as_mut() else {
            return Poll::Ready(Confirmation::NotConfirmed);
        };
        match Pin::new(rx).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(outcome)) => Poll::Ready(outcome),
            Poll::Ready(Err(_)) => Poll::Ready(Confirmation::Indeterminate(channel.closed_error())),
        }
    }
}

/// Why [`Channel::try_publish`] did not queue a message.
#[derive(Debug)]
pub enum TryPublishError {
    /// 1,024 publishes of the connection wait to be written: nothing was
    /// sent, and the message comes back, to publish with
    /// [`Channel::publish`] (which waits for room).
    Full(Box<UnsentMessage>),
    /// Refused as [`Channel::publish`] refuses it (nothing was sent).
    Failed(Error),
}

impl std::fmt::Display for TryPublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TryPublishError::Full(_) => f.write_str(
                "1,024 publishes of the connection wait to be written: publish again, waiting for room",
            ),
            TryPublishError::Failed(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for TryPublishError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TryPublishError::Full(_) => None,
            TryPublishError::Failed(error) => Some(error),
        }
    }
}

/// A message [`Channel::try_publish`] gave back unsent.
#[derive(Debug)]
pub struct UnsentMessage {
    /// Its `basic.publish`.
    pub publish: BasicPublish,
    /// Its properties.
    pub properties: PublishProperties,
    /// Its body.
    pub body: Bytes,
}

impl Channel {
    pub(crate) fn new(
        r: ChannelRef,
        shared: Arc<ChannelShared>,
        conn: Arc<ConnectionInner>,
    ) -> Self {
        Channel {
            inner: Arc::new(ChannelInner { r, shared, conn }),
        }
    }

    /// The channel number.
    pub fn number(&self) -> u16 {
        self.inner.r.id
    }

    /// The name a queue the broker named `name` has now, after a robust
    /// connection declared it again (see
    /// [`Connection::renamed_queue`](crate::Connection::renamed_queue)).
    pub fn renamed_queue(&self, name: &str) -> Option<amqp_wire::ShortString> {
        self.inner.conn.renamed_queue(name)
    }

    /// The connection the channel is on.
    pub fn connection(&self) -> crate::Connection {
        crate::Connection {
            inner: self.inner.conn.clone(),
        }
    }

    /// Why the channel closed, once it has.
    pub fn close_reason(&self) -> Option<Error> {
        self.inner
            .shared
            .closed
            .get()
            .cloned()
            .or_else(|| self.inner.conn.closed.get().cloned())
    }

    /// True once the channel (or its connection) is closed.
    pub fn is_closed(&self) -> bool {
        self.close_reason().is_some()
    }

    /// True once `confirm.select` succeeded on this channel.
    pub fn is_confirm_mode(&self) -> bool {
        self.inner.shared.confirm_mode.load(Ordering::Acquire)
    }

    /// Sends a synchronous request and waits for its reply, typed by the
    /// request (`QueueDeclare` gives `QueueDeclareOk`). Requests on a
    /// channel go out one at a time, in the order of the calls (publishes
    /// and acks included). A broker refusal closes the channel and comes
    /// back as [`Error::ChannelClosed`] with the reply code.
    ///
    /// ```no_run
    /// # async fn example(channel: amqp_conn::Channel) -> amqp_conn::Result<()> {
    /// use amqp_wire::{QueueDeclare, ShortString};
    /// let ok = channel.call(QueueDeclare { queue: ShortString::from_static("tasks"), ..Default::default() }).await?;
    /// println!("{} messages waiting", ok.message_count);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// A request with `nowait` set gets no reply: it is refused with
    /// [`Error::NowaitRequest`]; send it with [`Channel::send_nowait`].
    ///
    /// # Cancel safety
    /// Dropping the future does not withdraw the request: it still goes
    /// out and its reply is discarded.
    pub async fn call<R: Request>(&self, request: R) -> Result<R::Reply> {
        self.request(request, true).await
    }

    /// [`Channel::call`] for a declare or bind that a robust connection
    /// does not restore when it reconnects (aio-pika's `robust=False`):
    /// it is left out of the [topology record](crate::Connection::topology).
    ///
    /// # Cancel safety
    /// As [`Channel::call`].
    pub async fn call_not_restored<R: Request>(&self, request: R) -> Result<R::Reply> {
        self.request(request, false).await
    }

    async fn request<R: Request>(&self, request: R, restored: bool) -> Result<R::Reply> {
        if request.nowait() {
            return Err(Error::NowaitRequest { method: R::NAME });
        }
        let (reply, rx) = oneshot::channel();
        let reply = if restored {
            Reply::Method(reply)
        } else {
            Reply::NotRestored(reply)
        };
        self.inner.send(Command::Call {
            channel: self.inner.r,
            method: Box::new(request.into()),
            reply,
        })?;
        let method = rx.await.map_err(|_| self.inner.closed_error())??;
        R::reply_from(method).map_err(|other| Error::UnexpectedFrame {
            channel: self.inner.r.id,
            got: other.name(),
            state: "waiting for the reply to a request",
        })
    }

    /// Queues a synchronous request without waiting for its reply (which
    /// is discarded); requests on the channel stay in order. For drops,
    /// which cannot wait.
    pub fn call_detached<R: Request>(&self, request: R) -> Result<()> {
        if request.nowait() {
            return self.send_nowait(request);
        }
        let (reply, _) = oneshot::channel();
        self.inner.send(Command::Call {
            channel: self.inner.r,
            method: Box::new(request.into()),
            reply: Reply::Method(reply),
        })
    }

    /// Sends a request with its `nowait` bit set: the broker answers
    /// nothing (a refusal still closes the channel, reported to the next
    /// operation and in [`Channel::close_reason`]). Refused with
    /// [`Error::NowaitRequest`] when the bit is not set.
    pub fn send_nowait<R: Request>(&self, request: R) -> Result<()> {
        if !request.nowait() {
            return Err(Error::NowaitRequest { method: R::NAME });
        }
        let method: Method = request.into();
        self.inner.send(Command::Cast {
            channel: self.inner.r,
            method: method.into(),
            merge: false,
        })
    }

    /// Puts the channel in confirm mode: every publish after this gets a
    /// [`Confirmation`].
    ///
    /// # Cancel safety
    /// As [`Channel::call`]: once sent, the select happens.
    pub async fn confirm_select(&self) -> Result<()> {
        self.call(ConfirmSelect { nowait: false }).await.map(drop)
    }

    /// Publishes a message. Returns once the message is queued for the
    /// socket (waiting while 1,024 publishes of the connection wait to be
    /// written: a slow socket or a blocked connection slows publishers
    /// down). Await the returned [`PublishConfirm`] for the broker's
    /// answer in confirm mode.
    ///
    /// Fails at once, sending nothing, when the method or the properties
    /// do not fit in one frame.
    ///
    /// # Cancel safety
    /// Dropping the future while it waits for room publishes nothing.
    pub async fn publish(
        &self,
        publish: BasicPublish,
        properties: impl Into<PublishProperties>,
        body: Bytes,
    ) -> Result<PublishConfirm> {
        let properties = properties.into();
        self.check_publish(&publish, &properties, &body)?;
        // The publish takes one of the connection's places for publishes
        // in flight; the task gives places back, in batches, once the
        // publishes are out of its hands (encoded or failed). Most
        // publishes find one at once: no acquire future to build.
        let permits = &self.inner.conn.publish_permits;
        match permits.try_acquire() {
            Ok(permit) => permit.forget(),
            Err(TryAcquireError::NoPermits) => permits
                .acquire()
                .await
                .map_err(|_| self.inner.closed_error())?
                .forget(),
            Err(TryAcquireError::Closed) => return Err(self.inner.closed_error()),
        }
        self.queue_publish(publish, properties, body)
    }

    /// [`Channel::publish`] without waiting: when 1,024 publishes of the
    /// connection wait to be written, the message comes back in
    /// [`TryPublishError::Full`] (publish it with [`Channel::publish`],
    /// which waits for room). For callers that build their own future
    /// around a publish: the common case needs no future at all.
    ///
    /// ```no_run
    /// # async fn example(channel: amqp_conn::Channel) -> amqp_conn::Result<()> {
    /// use amqp_conn::TryPublishError;
    /// use amqp_wire::{BasicProperties, BasicPublish};
    /// let publish = BasicPublish { routing_key: "tasks".try_into().unwrap(), ..Default::default() };
    /// let confirm = match channel.try_publish(publish, BasicProperties::default(), "hello".into()) {
    ///     Ok(confirm) => confirm,
    ///     Err(TryPublishError::Full(message)) => {
    ///         channel.publish(message.publish, message.properties, message.body).await?
    ///     }
    ///     Err(TryPublishError::Failed(error)) => return Err(error),
    /// };
    /// confirm.await;
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_publish(
        &self,
        publish: BasicPublish,
        properties: impl Into<PublishProperties>,
        body: Bytes,
    ) -> std::result::Result<PublishConfirm, TryPublishError> {
        let properties = properties.into();
        self.check_publish(&publish, &properties, &body)
            .map_err(TryPublishError::Failed)?;
        match self.inner.conn.publish_permits.try_acquire() {
            Ok(permit) => permit.forget(),
            Err(TryAcquireError::NoPermits) => {
                return Err(TryPublishError::Full(Box::new(UnsentMessage {
                    publish,
                    properties,
                    body,
                })))
            }
            Err(TryAcquireError::Closed) => {
                return Err(TryPublishError::Failed(self.inner.closed_error()))
            }
        }
        self.queue_publish(publish, properties, body)
            .map_err(TryPublishError::Failed)
    }

    /// What refuses a publish before it takes a place: frames that do not
    /// fit, a body over the limit, a closed channel.
    #[inline(always)]
    fn check_publish(
        &self,
        publish: &BasicPublish,
        properties: &PublishProperties,
        body: &Bytes,
    ) -> Result<()> {
        amqp_wire::check_publish_fits(publish, properties.get(), self.inner.conn.tuning.frame_max)?;
        if body.len() as u64 > self.inner.conn.max_body_size {
            return Err(amqp_wire::BodyError::TooLarge {
                size: body.len() as u64,
                limit: self.inner.conn.max_body_size,
            }
            .into());
        }
        if let Some(error) = self.inner.shared.closed.get() {
            return Err(error.clone());
        }
        Ok(())
    }

    /// Queues a publish that holds a place (see [`Channel::publish`]).
    /// Inlined, as `check_publish`: as calls, with the message copied into
    /// them, pika-perf's publish_confirm took about 1% more instructions.
    #[inline(always)]
    fn queue_publish(
        &self,
        publish: BasicPublish,
        properties: PublishProperties,
        body: Bytes,
    ) -> Result<PublishConfirm> {
        let (confirm, waiting) = if self.is_confirm_mode() {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some((rx, self.inner.clone())))
        } else {
            (None, None)
        };
        let sent = self.inner.send(Command::Publish(PublishCommand {
            channel: self.inner.r,
            publish,
            properties,
            body,
            confirm,
        }));
        if let Err(error) = sent {
            // Not queued (closed, or down with fail_fast): its place goes
            // back.
            self.inner.conn.publish_permits.add_permits(1);
            return Err(error);
        }
        Ok(PublishConfirm { waiting })
    }

    /// Starts a consumer; its deliveries arrive in a buffer of `buffer`
    /// messages (at least 1). When the buffer is full the connection stops
    /// reading from the socket until the consumer takes a message, so
    /// memory stays bounded; with manual acks the prefetch count (see
    /// `basic.qos`) bounds it first.
    ///
    /// # Cancel safety
    /// If the future is dropped after the request was sent, the consumer
    /// still starts; its first delivery finds no receiver, is given back
    /// (rejected with requeue) and the consumer is cancelled.
    pub async fn consume(&self, consume: BasicConsume, buffer: usize) -> Result<Consumer> {
        self.start_consumer(consume, buffer, true).await
    }

    /// [`Channel::consume`] for a consumer that a robust connection does
    /// not restore when it reconnects (aio-pika's `robust=False`): the
    /// lost connection ends it, with [`ConsumerEnd::Closed`](crate::ConsumerEnd::Closed).
    ///
    /// # Cancel safety
    /// As [`Channel::consume`].
    pub async fn consume_not_restored(
        &self,
        consume: BasicConsume,
        buffer: usize,
    ) -> Result<Consumer> {
        self.start_consumer(consume, buffer, false).await
    }

    async fn start_consumer(
        &self,
        consume: BasicConsume,
        buffer: usize,
        restored: bool,
    ) -> Result<Consumer> {
        if consume.nowait {
            return Err(Error::NowaitRequest {
                method: "basic.consume",
            });
        }
        let (tx, rx) = crate::delivery_queue::delivery_queue(buffer);
        let end = Arc::new(OnceLock::new());
        let no_ack = consume.no_ack;
        let sink = ConsumerSink {
            deliveries: tx,
            end: end.clone(),
            no_ack,
            restored,
        };
        let (reply, tag_rx) = oneshot::channel();
        self.inner.send(Command::Call {
            channel: self.inner.r,
            method: Box::new(consume.into()),
            reply: Reply::Consume { sink, reply },
        })?;
        let tag = tag_rx.await.map_err(|_| self.inner.closed_error())??;
        Ok(Consumer::new(tag, rx, end, no_ack, self.clone()))
    }

    /// Fetches one message (`basic.get`); `None` when the queue is empty.
    ///
    /// # Cancel safety
    /// If the future is dropped after the request was sent, a message
    /// that arrives for it is given back (rejected with requeue).
    pub async fn get(&self, get: BasicGet) -> Result<Option<Delivery>> {
        let (reply, rx) = oneshot::channel();
        self.inner.send(Command::Call {
            channel: self.inner.r,
            method: Box::new(get.into()),
            reply: Reply::Get(reply),
        })?;
        rx.await.map_err(|_| self.inner.closed_error())?
    }

    /// Acknowledges a delivery (and, with `multiple`, every earlier one
    /// not yet settled).
    ///
    /// The channel keeps one book of which deliveries wait to be settled:
    /// a tag settled before (alone or covered by a `multiple`) is refused
    /// with [`Error::AlreadySettled`], a tag never delivered with
    /// [`Error::UnknownDeliveryTag`], and nothing is sent (the broker
    /// would close the channel with 406).
    ///
    /// Acks queued together go out as one: when every delivery up to
    /// `delivery_tag` is settled, the connection replaces the ack queued
    /// just before this one with a single `basic.ack` of `delivery_tag`
    /// with `multiple` set, which acks exactly the same messages.
    pub fn ack(&self, delivery_tag: u64, multiple: bool) -> Result<()> {
        let ack = BasicAck {
            delivery_tag,
            multiple,
        };
        self.inner.settle(delivery_tag, multiple, ack.into())
    }

    /// Rejects deliveries, requeueing them or not. Refused as
    /// [`Channel::ack`] is for a tag already settled.
    pub fn nack(&self, delivery_tag: u64, multiple: bool, requeue: bool) -> Result<()> {
        let nack = BasicNack {
            delivery_tag,
            multiple,
            requeue,
        };
        self.inner.settle(delivery_tag, multiple, nack.into())
    }

    /// Rejects one delivery, requeueing it or not. Refused as
    /// [`Channel::ack`] is for a tag already settled.
    pub fn reject(&self, delivery_tag: u64, requeue: bool) -> Result<()> {
        let reject = BasicReject {
            delivery_tag,
            requeue,
        };
        self.inner.settle(delivery_tag, false, reject.into())
    }

    /// True when the delivery `delivery_tag` of this channel was settled
    /// (acked, nacked, rejected, or delivered without ack).
    pub fn is_settled(&self, delivery_tag: u64) -> bool {
        lock_settlements(&self.inner.shared).is_settled(delivery_tag)
    }

    /// Closes the channel with code 200: first waits (at most 5 seconds)
    /// for the confirms of publishes already sent, so they end with the
    /// broker's answer; then sends `channel.close` and waits for the
    /// broker's close-ok. What is still pending then ends with
    /// [`Error::ChannelClosed`].
    ///
    /// # Cancel safety
    /// Dropping the future does not stop the close.
    pub async fn close(&self) -> Result<()> {
        if self.inner.shared.closed.get().is_some() {
            return Ok(());
        }
        let (reply, rx) = oneshot::channel();
        if self
            .inner
            .conn
            .send(Command::CloseChannel {
                channel: self.inner.r,
                reply: Some(reply),
            })
            .is_err()
        {
            return Ok(());
        }
        rx.await.unwrap_or(Ok(()))
    }
}
