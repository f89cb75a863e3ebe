//! The channel handle.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use amqp_wire::{
    BasicAck, BasicConsume, BasicGet, BasicNack, BasicPublish, BasicReject, ConfirmSelect, Method,
};
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::command::{ChannelRef, ChannelShared, Command, ConsumerSink, PublishCommand, Reply};
use crate::connection::ConnectionInner;
use crate::consumer::Consumer;
use crate::error::{Error, Result};
use crate::message::{Delivery, PublishOutcome, PublishProperties};

#[derive(Debug)]
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
        self.conn.send(command)
    }

    pub(crate) fn cast(&self, method: Method) -> Result<()> {
        self.send(Command::Cast {
            channel: self.r,
            method,
        })
    }
}

impl Drop for ChannelInner {
    fn drop(&mut self) {
        if self.shared.closed.get().is_none() {
            let _ = self.conn.control.send(Command::CloseChannel {
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
#[derive(Debug, Clone)]
pub struct Channel {
    pub(crate) inner: Arc<ChannelInner>,
}

/// The confirm of one publish: await it for the [`PublishOutcome`].
///
/// Dropping it does not cancel the publish.
#[derive(Debug)]
pub struct PublishConfirm {
    /// The answer to wait for (channels in confirm mode), and the channel
    /// for its close reason when the task drops the confirm unanswered.
    waiting: Option<(oneshot::Receiver<PublishOutcome>, Arc<ChannelInner>)>,
}

impl Future for PublishConfirm {
    type Output = PublishOutcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<PublishOutcome> {
        let Some((rx, channel)) = self.waiting.as_mut() else {
            return Poll::Ready(PublishOutcome::NotConfirmed);
        };
        match Pin::new(rx).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(outcome)) => Poll::Ready(outcome),
            Poll::Ready(Err(_)) => {
                Poll::Ready(PublishOutcome::Indeterminate(channel.closed_error()))
            }
        }
    }
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
    pub fn id(&self) -> u16 {
        self.inner.r.id
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

    /// Sends a synchronous method (one whose `nowait` is false) and waits
    /// for its reply; a broker refusal closes the channel and comes back
    /// as [`Error::ChannelClosed`] with the reply code.
    ///
    /// # Cancel safety
    /// Dropping the future does not withdraw the request: it still goes
    /// out and its reply is discarded.
    pub async fn call(&self, method: impl Into<Method>) -> Result<Method> {
        let (reply, rx) = oneshot::channel();
        self.inner.send(Command::Call {
            channel: self.inner.r,
            method: method.into(),
            reply: Reply::Method(reply),
        })?;
        rx.await.map_err(|_| self.inner.closed_error())?
    }

    /// Queues a synchronous method without waiting for its reply (which
    /// is discarded); requests on the channel stay in order. For drops,
    /// which cannot wait.
    pub fn call_detached(&self, method: impl Into<Method>) -> Result<()> {
        let (reply, _) = oneshot::channel();
        self.inner.send(Command::Call {
            channel: self.inner.r,
            method: method.into(),
            reply: Reply::Method(reply),
        })
    }

    /// Sends a method that has no reply.
    pub fn cast(&self, method: impl Into<Method>) -> Result<()> {
        self.inner.cast(method.into())
    }

    /// Puts the channel in confirm mode: every publish after this gets a
    /// [`PublishOutcome`].
    pub async fn confirm_select(&self) -> Result<()> {
        self.call(ConfirmSelect { nowait: false }).await.map(drop)
    }

    /// Publishes a message. Returns once the message is queued for the
    /// socket (waiting while the publish queue is full: a slow socket or a
    /// blocked connection slows publishers down). Await the returned
    /// [`PublishConfirm`] for the broker's answer in confirm mode.
    ///
    /// Fails at once, sending nothing, when the method or the properties
    /// do not fit in one frame.
    ///
    /// # Cancel safety
    /// Dropping the future while it waits for room in the queue publishes
    /// nothing.
    pub async fn publish(
        &self,
        publish: BasicPublish,
        properties: impl Into<PublishProperties>,
        body: Bytes,
    ) -> Result<PublishConfirm> {
        let properties = properties.into();
        amqp_wire::check_publish_fits(
            &publish,
            properties.get(),
            self.inner.conn.tuning.frame_max,
        )?;
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
        let (confirm, waiting) = if self.is_confirm_mode() {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some((rx, self.inner.clone())))
        } else {
            (None, None)
        };
        let command = PublishCommand {
            channel: self.inner.r,
            publish,
            properties,
            body,
            confirm,
        };
        // Most publishes find room in the queue: no send future to build.
        match self.inner.conn.publishes.try_send(command) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(command)) => self
                .inner
                .conn
                .publishes
                .send(command)
                .await
                .map_err(|_| self.inner.closed_error())?,
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(self.inner.closed_error()),
        }
        Ok(PublishConfirm { waiting })
    }

    /// Starts a consumer; its deliveries arrive in a buffer of `buffer`
    /// messages (at least 1). When the buffer is full the connection stops
    /// reading from the socket until the consumer takes a message, so
    /// memory stays bounded; with manual acks the prefetch count (see
    /// `basic.qos`) bounds it first.
    pub async fn consume(&self, consume: BasicConsume, buffer: usize) -> Result<Consumer> {
        let (tx, rx) = mpsc::channel(buffer.max(1));
        let end = Arc::new(OnceLock::new());
        let no_ack = consume.no_ack;
        let sink = ConsumerSink {
            deliveries: tx,
            end: end.clone(),
            no_ack,
        };
        let (reply, tag_rx) = oneshot::channel();
        self.inner.send(Command::Call {
            channel: self.inner.r,
            method: consume.into(),
            reply: Reply::Consume { sink, reply },
        })?;
        let tag = tag_rx.await.map_err(|_| self.inner.closed_error())??;
        Ok(Consumer::new(tag, rx, end, no_ack, self.clone()))
    }

    /// Fetches one message (`basic.get`); `None` when the queue is empty.
    pub async fn get(&self, get: BasicGet) -> Result<Option<Delivery>> {
        let (reply, rx) = oneshot::channel();
        self.inner.send(Command::Call {
            channel: self.inner.r,
            method: get.into(),
            reply: Reply::Get(reply),
        })?;
        rx.await.map_err(|_| self.inner.closed_error())?
    }

    /// Acknowledges a delivery (and, with `multiple`, every earlier one).
    ///
    /// Acks queued together go out as one: when every delivery up to
    /// `delivery_tag` on this channel is settled, the connection replaces
    /// the ack queued just before this one with a single `basic.ack` of
    /// `delivery_tag` with `multiple` set, which acks exactly the same
    /// messages and saves the broker a frame per message.
    pub fn ack(&self, delivery_tag: u64, multiple: bool) -> Result<()> {
        self.cast(BasicAck {
            delivery_tag,
            multiple,
        })
    }

    /// Rejects deliveries, requeueing them or not.
    pub fn nack(&self, delivery_tag: u64, multiple: bool, requeue: bool) -> Result<()> {
        self.cast(BasicNack {
            delivery_tag,
            multiple,
            requeue,
        })
    }

    /// Rejects one delivery, requeueing it or not.
    pub fn reject(&self, delivery_tag: u64, requeue: bool) -> Result<()> {
        self.cast(BasicReject {
            delivery_tag,
            requeue,
        })
    }

    /// Closes the channel with code 200 and waits for the broker's
    /// close-ok. Pending replies, confirms and consumers end with
    /// [`Error::ChannelClosed`].
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
