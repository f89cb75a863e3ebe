//! The consumer handle: a bounded stream of deliveries.

use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use amqp_wire::{BasicCancel, ShortString};

use crate::channel::Channel;
use crate::command::ConsumerEnd;
use crate::delivery_queue::DeliveryReceiver;
use crate::error::Result;
use crate::message::Delivery;

/// A consumer started with [`Channel::consume`].
///
/// [`recv`](Consumer::recv) returns deliveries until the consumer ends;
/// [`end`](Consumer::end) then says why: cancelled by the application,
/// cancelled by the broker (queue deleted, node down), or the channel
/// closed. Dropping a consumer cancels it and gives back (rejects with
/// requeue) the messages still in its buffer, unless it consumes without
/// acks.
#[derive(Debug)]
pub struct Consumer {
    tag: ShortString,
    rx: DeliveryReceiver,
    end: Arc<OnceLock<ConsumerEnd>>,
    no_ack: bool,
    channel: Channel,
}

impl Consumer {
    pub(crate) fn new(
        tag: ShortString,
        rx: DeliveryReceiver,
        end: Arc<OnceLock<ConsumerEnd>>,
        no_ack: bool,
        channel: Channel,
    ) -> Self {
        Consumer {
            tag,
            rx,
            end,
            no_ack,
            channel,
        }
    }

    /// The consumer tag.
    pub fn tag(&self) -> &ShortString {
        &self.tag
    }

    /// The channel the consumer runs on (to ack its deliveries).
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// The next delivery; `None` once the consumer has ended.
    ///
    /// On a connection that reconnects, deliveries still buffered from
    /// the connection that was lost are skipped (unless the consumer
    /// needs no acks): they could no longer be acked, and the broker
    /// delivers them again.
    ///
    /// # Cancel safety
    /// Cancel-safe: a delivery is never lost by dropping this future.
    pub async fn recv(&mut self) -> Option<Delivery> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next delivery (for `Stream` implementations).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        let stale_through = self.stale_through();
        if stale_through == 0 {
            // The channel never lost its connection: nothing to skip.
            return self.rx.poll_recv(cx);
        }
        loop {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(delivery)) if delivery.delivery_tag <= stale_through => {}
                other => return other,
            }
        }
    }

    /// Deliveries with a tag up to this came over a connection that was
    /// lost (0: none, or the consumer needs no acks).
    fn stale_through(&self) -> u64 {
        if self.no_ack {
            return 0;
        }
        self.channel
            .inner
            .shared
            .stale_through
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Why the consumer ended, once it has.
    pub fn end(&self) -> Option<ConsumerEnd> {
        self.end.get().cloned()
    }

    /// Cancels the consumer (`basic.cancel`) and waits for the broker's
    /// cancel-ok; deliveries already buffered can still be received.
    pub async fn cancel(&self) -> Result<()> {
        if self.end.get().is_some() {
            return Ok(());
        }
        self.channel
            .call(BasicCancel {
                consumer_tag: self.tag.clone(),
                nowait: false,
            })
            .await
            .map(drop)
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.rx.close();
        if self.end.get().is_none() {
            let _ = self.channel.call_detached(BasicCancel {
                consumer_tag: self.tag.clone(),
                nowait: false,
            });
        }
        if !self.no_ack {
            while let Some(delivery) = self.rx.try_recv() {
                let _ = self.channel.reject(delivery.delivery_tag, true);
            }
        }
    }
}
