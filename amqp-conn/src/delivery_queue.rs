//! The buffer between the connection task and one consumer: a bounded
//! queue of deliveries that allocates nothing until the first delivery.
//!
//! A service may hold a thousand consumers that are idle most of the
//! time; tokio's `mpsc` allocates a block of 32 slots (about 5 KiB of
//! deliveries) plus a cache-padded channel for each one up front. This
//! queue is a `VecDeque` behind a mutex that grows with what is actually
//! buffered, and keeps what it grew to.
//!
//! The lock is short and taken once per delivery by the connection task
//! (a push) and once per *batch* by the consumer: the consumer swaps the
//! whole queue into a buffer of its own and then pops without locking.
//! The sender sees the queue full at `capacity` deliveries, so at most
//! twice that many are buffered (the consumer's batch and the queue).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use crate::message::Delivery;

/// A new queue that holds at most `capacity` (at least 1) deliveries on
/// the sender's side.
pub(crate) fn delivery_queue(capacity: usize) -> (DeliverySender, DeliveryReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            capacity: capacity.max(1),
            receiver: None,
            sender: None,
            senders: 1,
            closed: false,
        }),
    });
    (
        DeliverySender {
            shared: shared.clone(),
        },
        DeliveryReceiver {
            shared,
            batch: VecDeque::new(),
        },
    )
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    items: VecDeque<Delivery>,
    capacity: usize,
    /// The consumer waiting for a delivery.
    receiver: Option<Waker>,
    /// The connection task waiting for room.
    sender: Option<Waker>,
    /// Live senders; none left ends the stream once it is drained.
    senders: usize,
    /// The receiver closed or was dropped: sends fail.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned lock still
        // holds a consistent queue.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why a delivery could not be queued; it comes back.
#[derive(Debug)]
pub(crate) enum TrySendError {
    /// The queue is full: wait with [`DeliverySender::poll_ready`].
    Full(Delivery),
    /// The consumer is gone.
    Closed(Delivery),
}

/// The connection task's end.
#[derive(Debug)]
pub(crate) struct DeliverySender {
    shared: Arc<Shared>,
}

impl Clone for DeliverySender {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        DeliverySender {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for DeliverySender {
    fn drop(&mut self) {
        let waker = {
            let mut state = self.shared.lock();
            state.senders -= 1;
            if state.senders == 0 {
                state.receiver.take()
            } else {
                None
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl DeliverySender {
    /// Queues `delivery` unless the queue is full or the consumer gone.
    // The delivery comes back in the error by value, as with tokio's
    // `try_send`: boxing it would allocate on every refusal.
    #[allow(clippy::result_large_err)]
    pub(crate) fn try_send(&self, delivery: Delivery) -> Result<(), TrySendError> {
        let waker = {
            let mut state = self.shared.lock();
            if state.closed {
                return Err(TrySendError::Closed(delivery));
            }
            if state.items.len() >= state.capacity {
                return Err(TrySendError::Full(delivery));
            }
            state.items.push_back(delivery);
            state.receiver.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Ready once there is room (`Ok`) or the consumer is gone (`Err`).
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
        let mut state = self.shared.lock();
        if state.closed {
            return Poll::Ready(Err(()));
        }
        if state.items.len() < state.capacity {
            return Poll::Ready(Ok(()));
        }
        match &state.sender {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.sender = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// The consumer's end.
#[derive(Debug)]
pub(crate) struct DeliveryReceiver {
    shared: Arc<Shared>,
    /// Deliveries taken from the queue in one swap, popped without the lock.
    batch: VecDeque<Delivery>,
}

impl DeliveryReceiver {
    /// The next delivery; `None` once every sender is gone and the queue
    /// is drained.
    pub(crate) fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Delivery>> {
        if let Some(delivery) = self.batch.pop_front() {
            return Poll::Ready(Some(delivery));
        }
        let waker = {
            let mut state = self.shared.lock();
            if state.items.is_empty() {
                if state.senders == 0 {
                    return Poll::Ready(None);
                }
                match &state.receiver {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    _ => state.receiver = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
            std::mem::swap(&mut state.items, &mut self.batch);
            state.sender.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        Poll::Ready(self.batch.pop_front())
    }

    /// The next delivery if one is buffered, without waiting.
    pub(crate) fn try_recv(&mut self) -> Option<Delivery> {
        if let Some(delivery) = self.batch.pop_front() {
            return Some(delivery);
        }
        let mut state = self.shared.lock();
        let delivery = state.items.pop_front();
        if delivery.is_some() {
            if let Some(waker) = state.sender.take() {
                drop(state);
                waker.wake();
            }
        }
        delivery
    }

    /// Refuses further deliveries; those buffered can still be taken.
    pub(crate) fn close(&mut self) {
        let waker = {
            let mut state = self.shared.lock();
            state.closed = true;
            state.sender.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl Drop for DeliveryReceiver {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn delivery(tag: u64) -> Delivery {
        Delivery {
            delivery_tag: tag,
            redelivered: false,
            exchange: Default::default(),
            routing_key: Default::default(),
            consumer_tag: None,
            message_count: None,
            properties: Default::default(),
            body: Default::default(),
        }
    }

    fn tags(rx: &mut DeliveryReceiver, cx: &mut Context<'_>) -> Vec<u64> {
        let mut tags = Vec::new();
        while let Poll::Ready(Some(d)) = rx.poll_recv(cx) {
            tags.push(d.delivery_tag);
        }
        tags
    }

    #[test]
    fn deliveries_arrive_in_order_and_a_full_queue_refuses_until_drained() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let (tx, mut rx) = delivery_queue(2);
        assert!(rx.poll_recv(&mut cx).is_pending());
        tx.try_send(delivery(1)).unwrap();
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "the waiting consumer is woken"
        );
        tx.try_send(delivery(2)).unwrap();
        assert!(
            matches!(tx.try_send(delivery(3)), Err(TrySendError::Full(d)) if d.delivery_tag == 3)
        );
        assert!(tx.poll_ready(&mut cx).is_pending());
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(delivery(1))));
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            2,
            "the stalled sender is woken"
        );
        assert!(tx.poll_ready(&mut cx).is_ready());
        tx.try_send(delivery(3)).unwrap();
        assert_eq!(tags(&mut rx, &mut cx), [2, 3]);
        drop(tx);
        assert_eq!(
            rx.poll_recv(&mut cx),
            Poll::Ready(None),
            "no sender: the end"
        );
    }

    #[test]
    fn the_end_comes_after_the_last_clone_and_a_closed_receiver_refuses() {
        let waker = Waker::from(Arc::new(Count(AtomicUsize::new(0))));
        let mut cx = Context::from_waker(&waker);
        let (tx, mut rx) = delivery_queue(8);
        let stalled = tx.clone();
        tx.try_send(delivery(1)).unwrap();
        drop(tx);
        assert_eq!(tags(&mut rx, &mut cx), [1]);
        assert!(rx.poll_recv(&mut cx).is_pending(), "a clone still lives");
        stalled.try_send(delivery(2)).unwrap();
        rx.close();
        assert!(matches!(
            stalled.try_send(delivery(3)),
            Err(TrySendError::Closed(_))
        ));
        assert_eq!(stalled.poll_ready(&mut cx), Poll::Ready(Err(())));
        assert_eq!(
            rx.try_recv().map(|d| d.delivery_tag),
            Some(2),
            "buffered ones remain"
        );
        assert!(rx.try_recv().is_none());
    }

    #[test]
    fn nothing_is_allocated_before_the_first_delivery() {
        let (_tx, rx) = delivery_queue(1024);
        assert_eq!(rx.shared.lock().items.capacity(), 0);
        assert_eq!(rx.batch.capacity(), 0);
    }
}
