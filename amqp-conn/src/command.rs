//! What handles send to the connection task, and how it answers.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, OnceLock};

use amqp_wire::{BasicAck, BasicNack, BasicPublish, BasicReject, Method, ShortString};
use bytes::Bytes;
use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::message::{Confirmation, Delivery, PublishProperties};
use crate::settlements::Settlements;

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
    /// The deliveries waiting to be settled: the one authority on it.
    /// Handles settle under this lock and queue the frame before letting
    /// go, so the frames go out in the order of the book; the task
    /// records each delivery.
    pub(crate) settlements: Mutex<Settlements>,
    /// Deliveries with a tag up to this came over a connection that was
    /// lost (robust connections): the broker gives them again, so a
    /// consumer skips those still in its buffer.
    pub(crate) stale_through: AtomicU64,
}

/// Why a consumer's stream of deliveries ended.
#[derive(Debug, Clone)]
#[non_exhaustive]
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
    pub(crate) deliveries: crate::delivery_queue::DeliverySender,
    /// Set before `deliveries` is dropped, so the receiver knows why the
    /// stream ended.
    pub(crate) end: Arc<OnceLock<ConsumerEnd>>,
    pub(crate) no_ack: bool,
    /// Restored when a robust connection reconnects (the default); when
    /// not, a lost connection ends it.
    pub(crate) restored: bool,
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
    /// The reply method of a request whose effect a robust connection
    /// does not restore (left out of the topology record).
    NotRestored(oneshot::Sender<Result<Method>>),
    /// `basic.get`: a message or `None` for get-empty.
    Get(oneshot::Sender<Result<Option<Delivery>>>),
    /// `basic.consume`: the consumer tag; deliveries go to `deliveries`.
    Consume {
        sink: ConsumerSink,
        reply: oneshot::Sender<Result<ShortString>>,
    },
    /// `channel.open`.
    Open(oneshot::Sender<Result<(ChannelRef, Arc<ChannelShared>)>>),
    /// A request of the connection's own recovery (see
    /// `state::recovery`): its answer goes to the recovery, not to a
    /// handle.
    Recovery,
}

impl Reply {
    /// Ends the request with `error`.
    pub(crate) fn fail(self, error: Error) {
        // A requester that stopped waiting does not need the answer.
        let _ = match self {
            Reply::Method(tx) | Reply::NotRestored(tx) => tx.send(Err(error)).map_err(drop),
            Reply::Get(tx) => tx.send(Err(error)).map_err(drop),
            Reply::Consume { reply, .. } => reply.send(Err(error)).map_err(drop),
            Reply::Open(tx) => tx.send(Err(error)).map_err(drop),
            Reply::Recovery => Ok(()),
        };
    }
}

/// What handles send to the connection task, in one queue: the order of
/// the calls on a channel is the order on the wire.
#[derive(Debug)]
pub(crate) enum Command {
    /// Publish a message.
    Publish(PublishCommand),
    /// Open a channel (a given number, or any free one).
    OpenChannel {
        id: Option<u16>,
        reply: oneshot::Sender<Result<(ChannelRef, Arc<ChannelShared>)>>,
    },
    /// Send a synchronous method and wait for its reply; requests on one
    /// channel go out one at a time, in order.
    Call {
        channel: ChannelRef,
        /// Boxed: requests are few, and a command's size is what every
        /// publish moves through the queue (and what the queue reserves
        /// for each of its slots).
        method: Box<Method>,
        reply: Reply,
    },
    /// Send a method that has no reply: an ack, nack or reject already
    /// settled in the channel's book (`merge`: every delivery up to an
    /// ack's tag is settled, so it may replace the ack queued before it),
    /// or a request with `nowait` set.
    Cast {
        channel: ChannelRef,
        method: CastMethod,
        merge: bool,
    },
    /// Close a channel (`None` reply: the last handle was dropped).
    CloseChannel {
        channel: ChannelRef,
        reply: Option<oneshot::Sender<Result<()>>>,
    },
    /// A copy of the topology record (see `Connection::topology`).
    Topology {
        reply: oneshot::Sender<Result<Vec<crate::TopologyEntry>>>,
    },
    /// Close the connection.
    CloseConnection {
        code: u16,
        text: String,
        reply: Option<oneshot::Sender<Result<()>>>,
    },
}

/// The method of a [`Command::Cast`]: settlements inline (one per
/// delivery: no allocation), anything else boxed, so that the command
/// stays small.
#[derive(Debug)]
pub(crate) enum CastMethod {
    Ack(BasicAck),
    Nack(BasicNack),
    Reject(BasicReject),
    Other(Box<Method>),
}

impl From<Method> for CastMethod {
    fn from(method: Method) -> Self {
        match method {
            Method::BasicAck(ack) => CastMethod::Ack(ack),
            Method::BasicNack(nack) => CastMethod::Nack(nack),
            Method::BasicReject(reject) => CastMethod::Reject(reject),
            other => CastMethod::Other(Box::new(other)),
        }
    }
}

impl From<CastMethod> for Method {
    fn from(method: CastMethod) -> Self {
        match method {
            CastMethod::Ack(ack) => ack.into(),
            CastMethod::Nack(nack) => nack.into(),
            CastMethod::Reject(reject) => reject.into(),
            CastMethod::Other(method) => *method,
        }
    }
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
    pub(crate) confirm: Option<oneshot::Sender<Confirmation>>,
}

impl Command {
    /// The channel the command is for (`None`: the connection).
    pub(crate) fn channel(&self) -> Option<ChannelRef> {
        match self {
            Command::Publish(publish) => Some(publish.channel),
            Command::Call { channel, .. }
            | Command::Cast { channel, .. }
            | Command::CloseChannel { channel, .. } => Some(*channel),
            Command::OpenChannel { .. }
            | Command::Topology { .. }
            | Command::CloseConnection { .. } => None,
        }
    }

    /// Ends the command with `error`: every waiter it carries resolves.
    pub(crate) fn fail(self, error: Error) {
        match self {
            Command::Publish(publish) => {
                if let Some(confirm) = publish.confirm {
                    let _ = confirm.send(Confirmation::Indeterminate(error));
                }
            }
            Command::OpenChannel { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Command::Call { reply, .. } => reply.fail(error),
            Command::Topology { reply } => {
                let _ = reply.send(Err(error));
            }
            Command::CloseChannel {
                reply: Some(reply), ..
            }
            | Command::CloseConnection {
                reply: Some(reply), ..
            } => {
                // What was asked for, a closed channel or connection, is so.
                let _ = reply.send(Ok(()));
            }
            Command::Cast { .. }
            | Command::CloseChannel { .. }
            | Command::CloseConnection { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_command_is_no_larger_than_a_publish() {
        // What every publish moves through the queue, and what the queue
        // reserves per slot (32 slots per block, one block per
        // connection at least).
        let command = std::mem::size_of::<super::Command>();
        let publish = std::mem::size_of::<super::PublishCommand>();
        assert!(
            command <= publish + 8,
            "{command} bytes, a publish {publish}"
        );
    }
}
