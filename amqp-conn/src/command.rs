//! What handles send to the connection task, and how it answers.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

use amqp_wire::{BasicPublish, Method, ShortString};
use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};
use crate::message::{Delivery, PublishOutcome, PublishProperties};

/// A channel as handles name it: its number and which opening of that
/// number (numbers are reused, a stale handle must not reach a new channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChannelRef {
    pub(crate) id: u16,
    pub(crate) generation: u64,
}

/// State a channel shares with its handles, written only by the task.
#[derive(Debug, Default)]
pub(crate) struct ChannelShared {
    /// Why the channel closed, once it has.
    pub(crate) closed: OnceLock<Error>,
    /// True once `confirm.select` succeeded.
    pub(crate) confirm_mode: AtomicBool,
}

/// Why a consumer's stream of deliveries ended.
#[derive(Debug, Clone)]
pub enum ConsumerEnd {
    /// The application cancelled it (`basic.cancel`).
    Cancelled,
    /// The broker cancelled it: its queue was deleted, or the node holding
    /// the queue went down. Consume again (from another queue or node).
    CancelledByBroker,
    /// The channel or connection closed.
    Closed(Error),
}

/// Where a consumer's deliveries go, and where its end is recorded.
#[derive(Debug, Clone)]
pub(crate) struct ConsumerSink {
    pub(crate) deliveries: mpsc::Sender<Delivery>,
    /// Set before `deliveries` is dropped, so the receiver knows why the
    /// stream ended.
    pub(crate) end: Arc<OnceLock<ConsumerEnd>>,
    pub(crate) no_ack: bool,
}

impl ConsumerSink {
    /// Records why the stream ends (the first reason wins).
    pub(crate) fn end(&self, end: ConsumerEnd) {
        let _ = self.end.set(end);
    }
}

/// How a request is answered.
#[derive(Debug)]
pub(crate) enum Reply {
    /// The reply method.
    Method(oneshot::Sender<Result<Method>>),
    /// `basic.get`: a message or `None` for get-empty.
    Get(oneshot::Sender<Result<Option<Delivery>>>),
    /// `basic.consume`: the consumer tag; deliveries go to `deliveries`.
    Consume {
        sink: ConsumerSink,
        reply: oneshot::Sender<Result<ShortString>>,
    },
    /// `channel.open`.
    Open(oneshot::Sender<Result<(ChannelRef, Arc<ChannelShared>)>>),
}

impl Reply {
    /// Ends the request with `error`.
    pub(crate) fn fail(self, error: Error) {
        // A requester that stopped waiting does not need the answer.
        let _ = match self {
            Reply::Method(tx) => tx.send(Err(error)).map_err(drop),
            Reply::Get(tx) => tx.send(Err(error)).map_err(drop),
            Reply::Consume { reply, .. } => reply.send(Err(error)).map_err(drop),
            Reply::Open(tx) => tx.send(Err(error)).map_err(drop),
        };
    }
}

/// Requests other than publishes.
#[derive(Debug)]
pub(crate) enum Command {
    /// Open a channel (a given number, or any free one).
    OpenChannel {
        id: Option<u16>,
        reply: oneshot::Sender<Result<(ChannelRef, Arc<ChannelShared>)>>,
    },
    /// Send a synchronous method and wait for its reply; requests on one
    /// channel go out one at a time, in order.
    Call {
        channel: ChannelRef,
        method: Method,
        reply: Reply,
    },
    /// Send a method that has no reply (ack, nack, reject, ...).
    Cast { channel: ChannelRef, method: Method },
    /// Close a channel (`None` reply: the last handle was dropped).
    CloseChannel {
        channel: ChannelRef,
        reply: Option<oneshot::Sender<Result<()>>>,
    },
    /// Close the connection.
    CloseConnection {
        code: u16,
        text: String,
        reply: Option<oneshot::Sender<Result<()>>>,
    },
}

/// A message to publish.
#[derive(Debug)]
pub(crate) struct PublishCommand {
    pub(crate) channel: ChannelRef,
    pub(crate) publish: BasicPublish,
    /// Boxed when set: the properties are a few hundred bytes and the
    /// command moves through the queue and the task.
    pub(crate) properties: PublishProperties,
    pub(crate) body: Bytes,
    /// Where the confirm goes (channels in confirm mode).
    pub(crate) confirm: Option<oneshot::Sender<PublishOutcome>>,
}

/// True when `reply` answers `request`.
pub(crate) fn is_reply_to(request: &Method, reply: &Method) -> bool {
    if request.class_id() != reply.class_id() {
        return false;
    }
    match request {
        Method::ExchangeUnbind(_) => matches!(reply, Method::ExchangeUnbindOk(_)),
        Method::BasicGet(_) => matches!(reply, Method::BasicGetOk(_) | Method::BasicGetEmpty(_)),
        _ => reply.method_id() == request.method_id() + 1 && reply.name().ends_with("-ok"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amqp_wire::*;

    #[test]
    fn replies_are_matched_to_their_requests() {
        let declare: Method = QueueDeclare::default().into();
        assert!(is_reply_to(
            &declare,
            &QueueDeclareOk {
                queue: ShortString::default(),
                message_count: 0,
                consumer_count: 0
            }
            .into()
        ));
        assert!(!is_reply_to(&declare, &QueueBindOk::default().into()));
        assert!(!is_reply_to(&declare, &ExchangeDeclareOk::default().into()));
        let unbind: Method = ExchangeUnbind::default().into();
        assert!(is_reply_to(&unbind, &ExchangeUnbindOk::default().into()));
        let get: Method = BasicGet::default().into();
        assert!(is_reply_to(&get, &BasicGetEmpty::default().into()));
        let select: Method = ConfirmSelect::default().into();
        assert!(is_reply_to(&select, &ConfirmSelectOk::default().into()));
        let close: Method = ChannelClose::default().into();
        assert!(is_reply_to(&close, &ChannelCloseOk::default().into()));
        let consume: Method = BasicConsume::default().into();
        assert!(!is_reply_to(&consume, &BasicCancel::default().into()));
    }
}
