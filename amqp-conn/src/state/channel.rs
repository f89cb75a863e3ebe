//! One channel's protocol state: its queue of synchronous requests, what
//! waits behind a held publish, its consumers, publisher confirms and the
//! message being assembled.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

use amqp_wire::{
    BasicCancel, BasicCancelOk, BasicConsume, BasicDeliver, BasicGetOk, BasicQos, BasicReject,
    BasicReturn, BodyAssembler, ChannelClose, ChannelCloseOk, ChannelFlowOk, ChannelOpen,
    ConfirmSelect, ContentHeader, Frame, Method, ReplyCode, ShortString,
};
use bytes::{Bytes, BytesMut};
use tokio::sync::oneshot;

use crate::body_pool::{BodyPool, POOL_MIN};
use crate::delivery_queue::TrySendError;

use super::{frame_name, truncate, ConfirmTracker, Stall, WriteQueue};
use crate::command::{
    ChannelRef, ChannelShared, Command, ConsumerEnd, ConsumerSink, PublishCommand, Reply,
};
use crate::error::{CloseReason, Error, Initiator, Result};
use crate::events::ConnectionEvent;
use crate::message::{Confirmation, Delivery, ReturnedMessage};
use crate::settlements::Settlements;

/// Where the channel is in its life.
#[derive(Debug)]
enum ChannelPhase {
    /// `channel.open` sent.
    Opening,
    Open,
    /// The application asked to close: `channel.close` waits until the
    /// publishes already sent are confirmed (or the close's deadline).
    Draining {
        reply: Option<oneshot::Sender<Result<()>>>,
    },
    /// We sent `channel.close`: everything but close/close-ok is dropped.
    Closing {
        reply: Option<oneshot::Sender<Result<()>>>,
    },
}

/// A message whose content frames are arriving.
#[derive(Debug)]
struct Incoming {
    kind: IncomingKind,
    header: Option<ContentHeader>,
    body: Option<BodyAssembler>,
}

#[derive(Debug)]
enum IncomingKind {
    Deliver(BasicDeliver),
    /// The reply, and whether the get asked for no ack.
    Get(BasicGetOk, oneshot::Sender<Result<Option<Delivery>>>, bool),
    Return(BasicReturn),
}

/// Below this many consumers a channel finds a delivery's consumer by
/// scanning; from it on, by a map from tag to place.
const CONSUMERS_SCANNED: usize = 8;

/// The consumers of a channel, in the order they started, and found by
/// tag in constant time when there are many (a delivery must not cost
/// more on a channel with a thousand consumers than on one with ten).
///
/// The map is built on the first lookup that needs it, follows the
/// consumers that start (a push keeps every place), and is dropped when
/// one ends (places move); consumers end rarely, deliveries are many.
/// Entries may be changed in place, but never their tags.
#[derive(Debug, Default)]
struct ConsumerList {
    entries: Vec<ConsumerEntry>,
    by_tag: Option<HashMap<ShortString, usize>>,
}

impl ConsumerList {
    /// The place of the consumer `tag`.
    fn position(&mut self, tag: &ShortString) -> Option<usize> {
        if self.entries.len() < CONSUMERS_SCANNED {
            return self.entries.iter().position(|c| c.tag == *tag);
        }
        let entries = &self.entries;
        self.by_tag
            .get_or_insert_with(|| {
                entries
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.tag.clone(), i))
                    .collect()
            })
            .get(tag)
            .copied()
    }

    fn push(&mut self, entry: ConsumerEntry) {
        if let Some(by_tag) = &mut self.by_tag {
            by_tag.insert(entry.tag.clone(), self.entries.len());
        }
        self.entries.push(entry);
    }

    fn remove(&mut self, index: usize) -> ConsumerEntry {
        self.by_tag = None;
        self.entries.remove(index)
    }

    fn retain(&mut self, keep: impl FnMut(&ConsumerEntry) -> bool) {
        self.by_tag = None;
        self.entries.retain(keep);
    }

    fn drain(&mut self) -> std::vec::Drain<'_, ConsumerEntry> {
        self.by_tag = None;
        self.entries.drain(..)
    }
}

impl std::ops::Deref for ConsumerList {
    type Target = [ConsumerEntry];

    fn deref(&self) -> &[ConsumerEntry] {
        &self.entries
    }
}

impl std::ops::DerefMut for ConsumerList {
    fn deref_mut(&mut self) -> &mut [ConsumerEntry] {
        &mut self.entries
    }
}

/// A consumer as the channel knows it.
#[derive(Debug)]
struct ConsumerEntry {
    tag: amqp_wire::ShortString,
    /// The request that started it, to consume again on reopening.
    consume: Box<BasicConsume>,
    sink: ConsumerSink,
    /// We sent `basic.cancel` after its receiver went away.
    cancelling: bool,
    /// The broker cancelled it (queue deleted, node down) and the
    /// connection is robust: it waits to consume again once the queue is
    /// back.
    suspended: bool,
}

/// What handling a frame did beyond replies.
#[derive(Debug, Default)]
pub(crate) struct FrameOutcome {
    /// An event for the connection's subscribers.
    pub(crate) event: Option<ConnectionEvent>,
    /// The channel is closed: its number can be reused.
    pub(crate) closed: bool,
}

/// What a close request did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CloseStarted {
    /// `channel.close` went out (or was already out).
    Sent,
    /// It waits for the confirms of publishes already sent.
    Draining,
}

/// The state of one channel.
#[derive(Debug)]
pub(crate) struct ChannelState {
    r: ChannelRef,
    pub(crate) generation: u64,
    shared: Arc<ChannelShared>,
    phase: ChannelPhase,
    /// Synchronous requests; the first is on the wire when `in_flight`.
    calls: VecDeque<(Method, Reply)>,
    in_flight: bool,
    confirms: Option<ConfirmTracker>,
    consumers: ConsumerList,
    incoming: Option<Incoming>,
    max_body_size: u64,
    /// The connection's buffers of large bodies (see [`BodyPool`]).
    body_pool: Arc<BodyPool>,
    /// Publishes and commands that wait behind a publish the connection
    /// could not take yet (blocked, or too much waiting to be written):
    /// they go out in this order, so the order on the channel is the
    /// order of the calls.
    held: VecDeque<Command>,
    /// How many of `held` are publishes.
    held_publishes: usize,
    /// `amqp_channel{channel}`, inside the connection's span: what is
    /// logged about this channel is logged in it.
    span: tracing::Span,
    /// What the connection has to learn since it last looked: changes to
    /// its topology record, answers to its recovery's requests.
    pub(crate) changes: Vec<ChannelChange>,
    /// Added to the broker's delivery tags of this opening of the
    /// channel, so that tags keep growing across reconnections and a
    /// delivery of a lost connection is never settled on the new one.
    tag_base: u64,
    /// The last `basic.qos` the broker accepted: set again on reopening.
    qos: Option<BasicQos>,
    /// `tx.select` was accepted: a transaction cannot survive a lost
    /// connection, so such a channel is not reopened.
    tx_mode: bool,
    /// `channel.open-ok` arrived once: the channel is reopened when the
    /// connection comes back.
    opened: bool,
    /// The connection is robust: a channel the broker closes (a soft
    /// error) is reopened with its consumers.
    pub(crate) reopen_on_close: bool,
    /// Requests of a recovery (reopen, confirm mode, QoS, consumers) not
    /// answered yet: a close by the broker meanwhile is final, so a
    /// refusal that repeats does not loop.
    recovery_calls: usize,
}

/// What a channel tells the connection, seen while handling a frame or
/// a command.
#[derive(Debug)]
pub(crate) enum ChannelChange {
    /// The broker answered a request (first) with a reply (second).
    Confirmed(Box<(Method, Method)>),
    /// The consumer with this tag ended without a cancel-ok.
    ConsumerGone(ShortString),
    /// The answer to a request of the recovery.
    Recovery(Result<Method>),
    /// The broker cancelled this consumer; on a robust connection
    /// (`resuming`) it waits for its queue to come back.
    BrokerCancelled {
        tag: ShortString,
        queue: ShortString,
        resuming: bool,
    },
}

/// True for the requests whose success changes the topology record.
fn shapes_topology(request: &Method) -> bool {
    matches!(
        request,
        Method::ExchangeDeclare(_)
            | Method::ExchangeDelete(_)
            | Method::ExchangeBind(_)
            | Method::ExchangeUnbind(_)
            | Method::QueueDeclare(_)
            | Method::QueueDelete(_)
            | Method::QueueBind(_)
            | Method::QueueUnbind(_)
            | Method::BasicConsume(_)
            | Method::BasicCancel(_)
    )
}

impl ChannelState {
    pub(crate) fn new(r: ChannelRef, max_body_size: u64, body_pool: Arc<BodyPool>) -> Self {
        ChannelState {
            body_pool,
            r,
            generation: r.generation,
            shared: Arc::new(ChannelShared::default()),
            phase: ChannelPhase::Opening,
            calls: VecDeque::new(),
            in_flight: false,
            confirms: None,
            consumers: ConsumerList::default(),
            incoming: None,
            changes: Vec::new(),
            tag_base: 0,
            qos: None,
            tx_mode: false,
            opened: false,
            reopen_on_close: false,
            recovery_calls: 0,
            max_body_size,
            held: VecDeque::new(),
            held_publishes: 0,
            span: tracing::debug_span!("amqp_channel", channel = r.id),
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        matches!(self.phase, ChannelPhase::Open)
    }

    /// The channel as handles name it.
    pub(crate) fn r(&self) -> ChannelRef {
        self.r
    }

    /// True while the application's close waits for confirms.
    pub(crate) fn is_draining(&self) -> bool {
        matches!(self.phase, ChannelPhase::Draining { .. })
    }

    /// Publishes sent and not yet confirmed.
    pub(crate) fn unconfirmed(&self) -> usize {
        self.confirms
            .as_ref()
            .map_or(0, ConfirmTracker::unconfirmed)
    }

    /// True when commands wait behind a held publish.
    pub(crate) fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    /// Publishes held on this channel.
    pub(crate) fn held_publishes(&self) -> usize {
        self.held_publishes
    }

    /// Queues `command` behind what is held.
    pub(crate) fn hold(&mut self, command: Command) {
        self.held_publishes += usize::from(matches!(command, Command::Publish(_)));
        self.held.push_back(command);
    }

    /// The first held command.
    pub(crate) fn next_held(&mut self) -> Option<Command> {
        let command = self.held.pop_front()?;
        self.held_publishes -= usize::from(matches!(command, Command::Publish(_)));
        Some(command)
    }

    /// Puts back a command taken with [`ChannelState::next_held`] that
    /// cannot go yet.
    pub(crate) fn unhold(&mut self, command: Command) {
        self.held_publishes += usize::from(matches!(command, Command::Publish(_)));
        self.held.push_front(command);
    }

    fn closed_error(&self) -> Error {
        self.shared
            .closed
            .get()
            .cloned()
            .unwrap_or_else(|| Error::ChannelClosed {
                channel: self.r.id,
                reason: CloseReason::normal(Initiator::Client),
            })
    }

    fn settlements(&self) -> MutexGuard<'_, Settlements> {
        lock(&self.shared)
    }

    /// Queues a synchronous request; it goes out when the ones before it
    /// are answered.
    pub(crate) fn call(&mut self, method: Method, reply: Reply, out: &mut WriteQueue) {
        let span = self.span.clone();
        let _in_channel = span.enter();
        if matches!(
            self.phase,
            ChannelPhase::Closing { .. } | ChannelPhase::Draining { .. }
        ) {
            return reply.fail(self.closed_error());
        }
        self.calls.push_back((method, reply));
        self.send_next(out);
    }

    fn send_next(&mut self, out: &mut WriteQueue) {
        if self.in_flight {
            return;
        }
        let Some((method, _)) = self.calls.front() else {
            return;
        };
        tracing::debug!(channel = self.r.id, method = method.name(), "request");
        amqp_wire::encode_method(&mut out.buf, self.r.id, method);
        if let Method::ConfirmSelect(_) = method {
            // The broker numbers publishes from the select on.
            self.confirms.get_or_insert_with(ConfirmTracker::new);
        }
        self.in_flight = true;
    }

    /// Sends a method that has no reply. A settlement was already entered
    /// in the channel's book by the handle; with `merge`, an ack may
    /// replace the ack queued just before it (see [`WriteQueue::ack`]).
    pub(crate) fn cast(&mut self, method: &Method, merge: bool, out: &mut WriteQueue) {
        if !self.is_open() {
            return;
        }
        match method {
            Method::BasicAck(ack) => {
                if let Some(tag) = self.broker_tag(ack.delivery_tag) {
                    out.ack(self.r, tag, ack.multiple, merge);
                }
            }
            Method::BasicNack(nack) if self.tag_base > 0 => {
                if let Some(delivery_tag) = self.broker_tag(nack.delivery_tag) {
                    let nack = amqp_wire::BasicNack {
                        delivery_tag,
                        ..nack.clone()
                    };
                    amqp_wire::encode_method(&mut out.buf, self.r.id, &nack.into());
                }
            }
            Method::BasicReject(reject) if self.tag_base > 0 => {
                if let Some(delivery_tag) = self.broker_tag(reject.delivery_tag) {
                    let reject = BasicReject {
                        delivery_tag,
                        ..reject.clone()
                    };
                    amqp_wire::encode_method(&mut out.buf, self.r.id, &reject.into());
                }
            }
            Method::BasicCancel(cancel) => {
                // No cancel-ok will come: the consumer ends now.
                self.changes
                    .push(ChannelChange::ConsumerGone(cancel.consumer_tag.clone()));
                if let Some(index) = self
                    .consumers
                    .iter()
                    .position(|c| c.tag == cancel.consumer_tag)
                {
                    self.consumers
                        .remove(index)
                        .sink
                        .end(ConsumerEnd::Cancelled);
                }
                amqp_wire::encode_method(&mut out.buf, self.r.id, method);
            }
            _ => amqp_wire::encode_method(&mut out.buf, self.r.id, method),
        }
    }

    /// Starts closing the channel. A close asked for by the application
    /// (`reply` set) first waits for the confirms of publishes already
    /// sent; the connection gives it a deadline.
    pub(crate) fn close(
        &mut self,
        reason: CloseReason,
        reply: Option<oneshot::Sender<Result<()>>>,
        out: &mut WriteQueue,
    ) -> CloseStarted {
        let draining = self.is_draining();
        let unconfirmed = self.unconfirmed();
        match &mut self.phase {
            ChannelPhase::Closing { reply: waiting }
            | ChannelPhase::Draining { reply: waiting } => {
                // Already closing: answer when the first close is done.
                if let (None, Some(reply)) = (waiting.as_ref(), reply) {
                    *waiting = Some(reply);
                }
                return if draining {
                    CloseStarted::Draining
                } else {
                    CloseStarted::Sent
                };
            }
            ChannelPhase::Open if reply.is_some() && unconfirmed > 0 => {
                self.phase = ChannelPhase::Draining { reply };
                return CloseStarted::Draining;
            }
            _ => {}
        }
        self.send_close(reason, reply, out);
        CloseStarted::Sent
    }

    /// Ends a draining close: at once when nothing waits for a confirm,
    /// or regardless when `deadline_passed`. True when the close went out.
    pub(crate) fn finish_draining(&mut self, deadline_passed: bool, out: &mut WriteQueue) -> bool {
        if !self.is_draining() || (!deadline_passed && self.unconfirmed() > 0) {
            return false;
        }
        let ChannelPhase::Draining { reply } =
            std::mem::replace(&mut self.phase, ChannelPhase::Open)
        else {
            unreachable!("checked above");
        };
        self.send_close(CloseReason::normal(Initiator::Client), reply, out);
        true
    }

    fn send_close(
        &mut self,
        reason: CloseReason,
        reply: Option<oneshot::Sender<Result<()>>>,
        out: &mut WriteQueue,
    ) {
        amqp_wire::encode_method(
            &mut out.buf,
            self.r.id,
            &ChannelClose {
                reply_code: reason.code.0,
                reply_text: truncate(&reason.text),
                class_id: 0,
                method_id: 0,
            }
            .into(),
        );
        self.fail(Error::ChannelClosed {
            channel: self.r.id,
            reason,
        });
        self.phase = ChannelPhase::Closing { reply };
    }

    /// Encodes a publish and registers it for a confirm.
    pub(crate) fn publish(
        &mut self,
        command: PublishCommand,
        frame_max: u32,
        out: &mut WriteQueue,
    ) {
        let PublishCommand {
            publish,
            properties,
            body,
            confirm,
            ..
        } = command;
        // Channel::publish checked that the frames fit in frame_max.
        let properties = properties.get();
        debug_assert!(amqp_wire::check_publish_fits(&publish, properties, frame_max).is_ok());
        out.publish(self.r.id, &publish, properties, &body, frame_max);
        match &mut self.confirms {
            Some(tracker) => {
                tracker.publish(publish, confirm);
            }
            None => {
                if let Some(confirm) = confirm {
                    let _ = confirm.send(Confirmation::NotConfirmed);
                }
            }
        }
    }

    /// The broker's tag of a delivery this channel numbered `tag`;
    /// `None` for a delivery of a connection that was lost (settled in
    /// the book before the reconnection, sent after it: the broker
    /// requeued the message already).
    fn broker_tag(&self, tag: u64) -> Option<u64> {
        match tag.checked_sub(self.tag_base) {
            Some(0) | None => None,
            Some(tag) => Some(tag),
        }
    }

    /// The connection was lost. A channel that was open keeps its
    /// consumers and what waits to be sent, to be reopened on the new
    /// connection (true); the request on the wire fails, pending confirms
    /// end indeterminate, and deliveries not settled become stale. Other
    /// channels (opening, closing, in a transaction) fail and close
    /// (false).
    pub(crate) fn disconnect(&mut self, error: &Error) -> bool {
        let closing = matches!(
            self.phase,
            ChannelPhase::Closing { .. } | ChannelPhase::Draining { .. }
        );
        if !self.opened || closing || self.tx_mode {
            let error = if self.tx_mode {
                Error::ChannelClosed {
                    channel: self.r.id,
                    reason: CloseReason::library(
                        ReplyCode::CONNECTION_FORCED,
                        "the connection was lost during a transaction; its uncommitted work is gone: open a channel and start the transaction again",
                    ),
                }
            } else {
                error.clone()
            };
            self.fail(error);
            if let ChannelPhase::Closing { reply: Some(reply) }
            | ChannelPhase::Draining { reply: Some(reply) } =
                std::mem::replace(&mut self.phase, ChannelPhase::Opening)
            {
                // What the application asked for, a closed channel, is so.
                let _ = reply.send(Ok(()));
            }
            return false;
        }
        // The recovery's requests go with the socket (dropped below).
        self.recovery_calls = 0;
        let mut calls = std::mem::take(&mut self.calls).into_iter();
        if self.in_flight {
            if let Some((_, reply)) = calls.next() {
                reply.fail(error.clone());
            }
            self.in_flight = false;
        }
        // Requests not sent yet go first once the channel is back.
        let waiting: Vec<Command> = calls
            .filter(|(_, reply)| !matches!(reply, Reply::Recovery))
            .map(|(method, reply)| Command::Call {
                channel: self.r,
                method: Box::new(method),
                reply,
            })
            .collect();
        for command in waiting.into_iter().rev() {
            self.unhold(command);
        }
        if let Some(mut tracker) = self.confirms.take() {
            tracker.fail_all(error);
        }
        if let Some(Incoming {
            kind: IncomingKind::Get(_, reply, _),
            ..
        }) = self.incoming.take()
        {
            let _ = reply.send(Err(error.clone()));
        }
        let changes = &mut self.changes;
        self.consumers.retain(|consumer| {
            let ends = if consumer.cancelling {
                Some(ConsumerEnd::Cancelled)
            } else if !consumer.sink.restored {
                // Asked not to be restored: the lost connection ends it.
                Some(ConsumerEnd::Closed(error.clone()))
            } else {
                None
            };
            let Some(end) = ends else {
                return true;
            };
            consumer.sink.end(end);
            changes.push(ChannelChange::ConsumerGone(consumer.tag.clone()));
            false
        });
        self.tag_base = lock(&self.shared).start_generation();
        self.shared
            .stale_through
            .store(self.tag_base, Ordering::Release);
        self.phase = ChannelPhase::Opening;
        true
    }

    /// Opens the channel again on a new connection, with its confirm
    /// mode and QoS; returns how many requests that takes (each answered
    /// as [`ChannelChange::Recovery`]).
    pub(crate) fn reopen(&mut self, out: &mut WriteQueue) -> usize {
        let mut requests = vec![Method::from(ChannelOpen::default())];
        if self.shared.confirm_mode.load(Ordering::Acquire) {
            requests.push(ConfirmSelect { nowait: false }.into());
        }
        if let Some(qos) = &self.qos {
            requests.push(qos.clone().into());
        }
        let count = requests.len();
        for request in requests {
            self.recovery_call(request, out);
        }
        count
    }

    /// Queues a request of a recovery.
    fn recovery_call(&mut self, request: Method, out: &mut WriteQueue) {
        self.recovery_calls += 1;
        self.calls.push_back((request, Reply::Recovery));
        self.send_next(out);
    }

    /// The broker closed the channel for a soft error and the connection
    /// is robust: open it again with its confirm mode, QoS and consumers
    /// (each with its tag); what waited goes out after them.
    fn reopen_after_close(&mut self, error: &Error, out: &mut WriteQueue) {
        self.disconnect(error);
        self.reopen(out);
        for consumer in self.consumers.iter().filter(|c| c.suspended) {
            // Still waiting for its queue: the connection tries again.
            self.changes.push(ChannelChange::BrokerCancelled {
                tag: consumer.tag.clone(),
                queue: consumer.consume.queue.clone(),
                resuming: true,
            });
        }
        let consumes: Vec<Method> = self
            .consumers
            .iter()
            .filter(|consumer| !consumer.suspended)
            .map(|consumer| {
                BasicConsume {
                    consumer_tag: consumer.tag.clone(),
                    nowait: false,
                    ..(*consumer.consume).clone()
                }
                .into()
            })
            .collect();
        for consume in consumes {
            self.recovery_call(consume, out);
        }
    }

    /// True when the consumer with `tag` lives on this channel.
    pub(crate) fn has_consumer(&self, tag: &ShortString) -> bool {
        self.consumers.iter().any(|c| c.tag == *tag)
    }

    /// The queue of the consumer with `tag`, if it waits for it to come
    /// back.
    pub(crate) fn suspended_queue(&self, tag: &ShortString) -> Option<ShortString> {
        self.consumers
            .iter()
            .find(|c| c.tag == *tag && c.suspended)
            .map(|c| c.consume.queue.clone())
    }

    /// The queue of a suspended consumer is back: consume again with its
    /// tag (recorded in the topology again when the broker confirms).
    pub(crate) fn resume_consumer(&mut self, tag: &ShortString, out: &mut WriteQueue) {
        let Some(consumer) = self.consumers.iter().find(|c| c.tag == *tag && c.suspended) else {
            return;
        };
        let consume = BasicConsume {
            consumer_tag: consumer.tag.clone(),
            nowait: false,
            ..(*consumer.consume).clone()
        };
        let (reply, _) = oneshot::channel();
        self.call(consume.into(), Reply::Method(reply), out);
    }

    /// Every pending request, held command, confirm and consumer ends
    /// with `error`.
    pub(crate) fn fail(&mut self, error: Error) {
        let _ = self.shared.closed.set(error.clone());
        for (_, reply) in self.calls.drain(..) {
            if matches!(reply, Reply::Recovery) {
                self.changes
                    .push(ChannelChange::Recovery(Err(error.clone())));
            }
            reply.fail(error.clone());
        }
        self.in_flight = false;
        for command in self.held.drain(..) {
            command.fail(error.clone());
        }
        self.held_publishes = 0;
        if let Some(tracker) = &mut self.confirms {
            tracker.fail_all(&error);
        }
        for consumer in self.consumers.drain() {
            consumer.sink.end(ConsumerEnd::Closed(error.clone()));
        }
        if let Some(Incoming {
            kind: IncomingKind::Get(_, reply, _),
            ..
        }) = self.incoming.take()
        {
            let _ = reply.send(Err(error));
        }
    }

    // ---- frames ---------------------------------------------------------

    pub(crate) fn handle_frame(
        &mut self,
        frame: Frame,
        out: &mut WriteQueue,
        stall: &mut Option<Stall>,
    ) -> Result<FrameOutcome> {
        let span = self.span.clone();
        let _in_channel = span.enter();
        let closing = matches!(self.phase, ChannelPhase::Closing { .. });
        match frame {
            Frame::Method {
                method: Method::ChannelClose(close),
                ..
            } => Ok(self.on_broker_close(close, out)),
            Frame::Method {
                method: Method::ChannelCloseOk(_),
                ..
            } if closing => {
                if let ChannelPhase::Closing { reply: Some(reply) } =
                    std::mem::replace(&mut self.phase, ChannelPhase::Opening)
                {
                    let _ = reply.send(Ok(()));
                }
                Ok(FrameOutcome {
                    event: None,
                    closed: true,
                })
            }
            _ if closing => Ok(FrameOutcome::default()),
            Frame::Method { method, .. } => self
                .on_method(method, out)
                .map(|()| FrameOutcome::default()),
            Frame::Header { header, .. } => self.on_header(header, out, stall),
            Frame::Body { payload, .. } => self.on_body(payload, out, stall),
            other => Err(self.unexpected(frame_name(&other))),
        }
    }

    fn unexpected(&self, got: &'static str) -> Error {
        Error::UnexpectedFrame {
            channel: self.r.id,
            got,
            state: match (&self.phase, &self.incoming) {
                (ChannelPhase::Opening, _) => "opening the channel",
                (_, Some(i)) if i.header.is_none() => "waiting for a content header",
                (_, Some(_)) => "waiting for body frames",
                (_, None) if self.in_flight => "waiting for a reply",
                _ => "the channel is idle",
            },
        }
    }

    fn on_broker_close(&mut self, close: ChannelClose, out: &mut WriteQueue) -> FrameOutcome {
        amqp_wire::encode_method(&mut out.buf, self.r.id, &ChannelCloseOk::default().into());
        let reason = CloseReason {
            code: ReplyCode(close.reply_code),
            text: close.reply_text.to_string(),
            class_id: close.class_id,
            method_id: close.method_id,
            initiator: Initiator::Broker,
        };
        tracing::info!(channel = self.r.id, %reason, "the broker closed a channel");
        let error = Error::ChannelClosed {
            channel: self.r.id,
            reason,
        };
        let reopen = self.reopen_on_close
            && self.opened
            && !self.tx_mode
            && self.recovery_calls == 0
            && self.is_open();
        if reopen {
            tracing::info!(channel = self.r.id, "reopening the channel");
            self.reopen_after_close(&error, out);
            return FrameOutcome {
                event: Some(ConnectionEvent::ChannelClosed {
                    channel: self.r.id,
                    error,
                }),
                closed: false,
            };
        }
        self.fail(error.clone());
        if let ChannelPhase::Closing { reply: Some(reply) }
        | ChannelPhase::Draining { reply: Some(reply) } =
            std::mem::replace(&mut self.phase, ChannelPhase::Opening)
        {
            let _ = reply.send(Ok(()));
        }
        FrameOutcome {
            event: Some(ConnectionEvent::ChannelClosed {
                channel: self.r.id,
                error,
            }),
            closed: true,
        }
    }

    fn on_method(&mut self, method: Method, out: &mut WriteQueue) -> Result<()> {
        if self.incoming.is_some() {
            return Err(self.unexpected(method.name()));
        }
        match method {
            Method::BasicDeliver(deliver) => self.start_content(IncomingKind::Deliver(deliver)),
            Method::BasicReturn(ret) => self.start_content(IncomingKind::Return(ret)),
            Method::BasicAck(ack) => self.on_confirm(ack.delivery_tag, ack.multiple, false),
            Method::BasicNack(nack) => self.on_confirm(nack.delivery_tag, nack.multiple, true),
            Method::BasicCancel(cancel) => {
                self.on_broker_cancel(&cancel, out);
                Ok(())
            }
            Method::ChannelFlow(flow) => {
                amqp_wire::encode_method(
                    &mut out.buf,
                    self.r.id,
                    &ChannelFlowOk {
                        active: flow.active,
                    }
                    .into(),
                );
                Ok(())
            }
            reply => self.on_reply(reply, out),
        }
    }

    fn start_content(&mut self, kind: IncomingKind) -> Result<()> {
        if !self.is_open() {
            return Err(self.unexpected("content before channel.open-ok"));
        }
        self.incoming = Some(Incoming {
            kind,
            header: None,
            body: None,
        });
        Ok(())
    }

    fn on_confirm(&mut self, tag: u64, multiple: bool, nack: bool) -> Result<()> {
        match &mut self.confirms {
            Some(tracker) => {
                tracker.on_confirm(tag, multiple, nack);
                Ok(())
            }
            None => Err(self.unexpected(if nack { "basic.nack" } else { "basic.ack" })),
        }
    }

    fn on_broker_cancel(&mut self, cancel: &BasicCancel, out: &mut WriteQueue) {
        tracing::info!(channel = self.r.id, consumer_tag = %cancel.consumer_tag, "the broker cancelled a consumer");
        if let Some(index) = self.consumers.position(&cancel.consumer_tag) {
            if self.reopen_on_close {
                // Robust: the consumer waits for its queue to come back.
                let consumer = &mut self.consumers[index];
                consumer.suspended = true;
                self.changes.push(ChannelChange::BrokerCancelled {
                    tag: consumer.tag.clone(),
                    queue: consumer.consume.queue.clone(),
                    resuming: true,
                });
            } else {
                let consumer = self.consumers.remove(index);
                consumer.sink.end(ConsumerEnd::CancelledByBroker);
                self.changes.push(ChannelChange::BrokerCancelled {
                    tag: consumer.tag,
                    queue: consumer.consume.queue,
                    resuming: false,
                });
            }
        }
        self.changes
            .push(ChannelChange::ConsumerGone(cancel.consumer_tag.clone()));
        if !cancel.nowait {
            let ok = BasicCancelOk {
                consumer_tag: cancel.consumer_tag.clone(),
            };
            amqp_wire::encode_method(&mut out.buf, self.r.id, &ok.into());
        }
    }

    fn on_reply(&mut self, method: Method, out: &mut WriteQueue) -> Result<()> {
        let answers_head = self.in_flight
            && self
                .calls
                .front()
                .is_some_and(|(request, _)| request.expects_reply(&method));
        if !answers_head {
            if let Method::BasicConsumeOk(ok) = &method {
                if self.has_consumer(&ok.consumer_tag) {
                    // Seen once in the cluster failover test, on a consumer
                    // of a quorum queue whose leader node had stopped: a
                    // second consume-ok for a consumer this channel has.
                    // It changes nothing; the connection goes on.
                    tracing::warn!(channel = self.r.id, consumer_tag = %ok.consumer_tag, "a consume-ok nothing waited for, for a known consumer: ignored");
                    return Ok(());
                }
            }
            return Err(self.unexpected(method.name()));
        }
        let (request, reply) = self.calls.pop_front().expect("checked above");
        if self.calls.is_empty() {
            // Requests come in bursts (setting up, closing): a channel
            // that has none waiting keeps no room for them.
            self.calls = VecDeque::new();
        }
        self.in_flight = false;
        let restored = match &reply {
            Reply::Recovery | Reply::NotRestored(_) => false,
            Reply::Consume { sink, .. } => sink.restored,
            _ => true,
        };
        let reply = match reply {
            Reply::NotRestored(tx) => Reply::Method(tx),
            other => other,
        };
        if shapes_topology(&request) && restored {
            self.changes.push(ChannelChange::Confirmed(Box::new((
                request.clone(),
                method.clone(),
            ))));
        }
        match &request {
            Method::BasicQos(qos) => self.qos = Some(qos.clone()),
            Method::TxSelect(_) => self.tx_mode = true,
            _ => {}
        }
        tracing::debug!(channel = self.r.id, method = method.name(), "reply");
        match (reply, method) {
            (Reply::Recovery, method) => {
                self.recovery_calls = self.recovery_calls.saturating_sub(1);
                if let Method::ChannelOpenOk(_) = method {
                    self.phase = ChannelPhase::Open;
                }
                self.changes.push(ChannelChange::Recovery(Ok(method)));
            }
            (Reply::Open(reply), Method::ChannelOpenOk(_)) => {
                self.phase = ChannelPhase::Open;
                self.opened = true;
                let _ = reply.send(Ok((self.r, self.shared.clone())));
            }
            (Reply::Consume { sink, reply }, Method::BasicConsumeOk(ok)) => {
                let Method::BasicConsume(consume) = request else {
                    unreachable!("a consume reply answers basic.consume");
                };
                self.consumers.push(ConsumerEntry {
                    tag: ok.consumer_tag.clone(),
                    consume: Box::new(consume),
                    sink,
                    cancelling: false,
                    suspended: false,
                });
                let _ = reply.send(Ok(ok.consumer_tag));
            }
            (Reply::Get(reply), Method::BasicGetEmpty(_)) => {
                let _ = reply.send(Ok(None));
            }
            (Reply::Get(reply), Method::BasicGetOk(ok)) => {
                let no_ack = matches!(request, Method::BasicGet(get) if get.no_ack);
                self.incoming = Some(Incoming {
                    kind: IncomingKind::Get(ok, reply, no_ack),
                    header: None,
                    body: None,
                });
            }
            (Reply::Method(reply), method) => {
                match &method {
                    Method::BasicConsumeOk(ok) => {
                        if let Some(consumer) =
                            self.consumers.iter_mut().find(|c| c.tag == ok.consumer_tag)
                        {
                            consumer.suspended = false;
                        }
                    }
                    Method::BasicCancelOk(ok) => {
                        if let Some(index) = self.consumers.position(&ok.consumer_tag) {
                            self.consumers
                                .remove(index)
                                .sink
                                .end(ConsumerEnd::Cancelled);
                        }
                    }
                    Method::ConfirmSelectOk(_) => {
                        self.shared.confirm_mode.store(true, Ordering::Release)
                    }
                    _ => {}
                }
                let _ = reply.send(Ok(method));
            }
            (reply, method) => reply.fail(Error::UnexpectedFrame {
                channel: self.r.id,
                got: method.name(),
                state: "waiting for a reply of another kind",
            }),
        }
        self.send_next(out);
        Ok(())
    }

    fn on_header(
        &mut self,
        header: ContentHeader,
        out: &mut WriteQueue,
        stall: &mut Option<Stall>,
    ) -> Result<FrameOutcome> {
        let max_body_size = self.max_body_size;
        let Some(incoming) = self.incoming.as_mut().filter(|i| i.header.is_none()) else {
            return Err(self.unexpected("content header"));
        };
        let body = BodyAssembler::new(header.body_size, max_body_size)?;
        incoming.header = Some(header);
        if body.is_complete() {
            return Ok(self.complete(Bytes::new(), out, stall));
        }
        incoming.body = Some(body);
        Ok(FrameOutcome::default())
    }

    fn on_body(
        &mut self,
        payload: Bytes,
        out: &mut WriteQueue,
        stall: &mut Option<Stall>,
    ) -> Result<FrameOutcome> {
        let Some(body) = self.incoming.as_mut().and_then(|i| i.body.as_mut()) else {
            return Err(self.unexpected("body frame"));
        };
        if body.expected() < POOL_MIN as u64 {
            return match body.push(payload)? {
                Some(body) => Ok(self.complete(body, out, stall)),
                None => Ok(FrameOutcome::default()),
            };
        }
        // A large body is joined in a buffer of the pool, whether its
        // frames are read straight into it or come here.
        let (mut buffer, _) = self.lend_body().expect("a body arrives");
        buffer.extend_from_slice(&payload);
        self.give_back_body(buffer, out, stall)
    }

    /// Lends the buffer of the body arriving on this channel to a reader
    /// that reads a body frame of `len` bytes straight into it (see
    /// [`BodyAssembler::lend`]); `None` unless the channel is open and
    /// waits for at least `len` more body bytes. With the buffer comes
    /// the count of body bytes still to come, this frame's included.
    pub(crate) fn lend_body_buffer(&mut self, len: usize) -> Option<(BytesMut, u64)> {
        if matches!(self.phase, ChannelPhase::Closing { .. }) {
            return None;
        }
        let remaining = self.incoming.as_ref()?.body.as_ref()?.remaining();
        if remaining < len as u64 {
            return None;
        }
        self.lend_body()
    }

    /// The buffer of the body arriving (from the pool when it has none
    /// yet), and the body bytes still to come.
    fn lend_body(&mut self) -> Option<(BytesMut, u64)> {
        let body = self.incoming.as_mut()?.body.as_mut()?;
        let pool = &self.body_pool;
        Some((body.lend_with(|size| pool.take(size)), body.remaining()))
    }

    /// Gives the lent `buffer` back to the body arriving; once the body is
    /// whole, hands the message on (its body given back to the pool when
    /// the application drops it).
    fn give_back_body(
        &mut self,
        buffer: BytesMut,
        out: &mut WriteQueue,
        stall: &mut Option<Stall>,
    ) -> Result<FrameOutcome> {
        let Some(body) = self.incoming.as_mut().and_then(|i| i.body.as_mut()) else {
            return Err(self.unexpected("body frame"));
        };
        match body.give_back_unfrozen(buffer)? {
            Some(body) => {
                let body = self.body_pool.wrap(body);
                Ok(self.complete(body, out, stall))
            }
            None => Ok(FrameOutcome::default()),
        }
    }

    /// A body frame was read straight into the lent `buffer` (its payload
    /// is `buffer[start..]`): the buffer goes back to the body, or, if the
    /// message is no longer waited for (the channel closed meanwhile), the
    /// payload is handled as any body frame.
    pub(crate) fn body_read_directly(
        &mut self,
        mut buffer: BytesMut,
        start: usize,
        out: &mut WriteQueue,
        stall: &mut Option<Stall>,
    ) -> Result<FrameOutcome> {
        let closing = matches!(self.phase, ChannelPhase::Closing { .. });
        if !closing && self.incoming.as_ref().is_some_and(|i| i.body.is_some()) {
            return self.give_back_body(buffer, out, stall);
        }
        let payload = buffer.split_off(start).freeze();
        let channel = self.r.id;
        self.handle_frame(Frame::Body { channel, payload }, out, stall)
    }

    /// The whole message is here: hand it to whoever waits for it.
    fn complete(
        &mut self,
        body: Bytes,
        out: &mut WriteQueue,
        stall: &mut Option<Stall>,
    ) -> FrameOutcome {
        let Incoming { kind, header, .. } = self.incoming.take().expect("content in progress");
        // Moves the box the properties were decoded into: no copy.
        let properties = header.expect("header before body").properties;
        match kind {
            IncomingKind::Deliver(deliver) => {
                let delivery = Delivery {
                    delivery_tag: self.tag_base + deliver.delivery_tag,
                    redelivered: deliver.redelivered,
                    exchange: deliver.exchange,
                    routing_key: deliver.routing_key,
                    consumer_tag: Some(deliver.consumer_tag),
                    message_count: None,
                    properties,
                    body,
                };
                self.dispatch(delivery, out, stall);
                FrameOutcome::default()
            }
            IncomingKind::Get(ok, reply, no_ack) => {
                let delivery_tag = self.tag_base + ok.delivery_tag;
                self.settlements().delivered(delivery_tag, no_ack);
                let delivery = Delivery {
                    delivery_tag,
                    redelivered: ok.redelivered,
                    exchange: ok.exchange,
                    routing_key: ok.routing_key,
                    consumer_tag: None,
                    message_count: Some(ok.message_count),
                    properties,
                    body,
                };
                if let Err(Ok(Some(delivery))) = reply.send(Ok(Some(delivery))) {
                    // The caller stopped waiting: put the message back.
                    self.requeue(delivery.delivery_tag, out);
                }
                FrameOutcome::default()
            }
            IncomingKind::Return(ret) => {
                let returned = ReturnedMessage {
                    reply_code: ReplyCode(ret.reply_code),
                    reply_text: ret.reply_text,
                    exchange: ret.exchange,
                    routing_key: ret.routing_key,
                    properties,
                    body,
                };
                match &mut self.confirms {
                    Some(tracker) => {
                        tracker.on_return(returned);
                        FrameOutcome::default()
                    }
                    None => FrameOutcome {
                        event: Some(ConnectionEvent::Returned {
                            channel: self.r.id,
                            returned: Box::new(returned),
                        }),
                        closed: false,
                    },
                }
            }
        }
    }

    /// Gives a delivery back to the broker, unless it was settled.
    fn requeue(&mut self, delivery_tag: u64, out: &mut WriteQueue) {
        if self.settlements().settle(delivery_tag, false).is_err() {
            return;
        }
        let Some(delivery_tag) = self.broker_tag(delivery_tag) else {
            return;
        };
        let reject = BasicReject {
            delivery_tag,
            requeue: true,
        };
        amqp_wire::encode_method(&mut out.buf, self.r.id, &reject.into());
    }

    /// Hands a delivery to its consumer; a full buffer stalls reading.
    fn dispatch(&mut self, delivery: Delivery, out: &mut WriteQueue, stall: &mut Option<Stall>) {
        let tag = delivery
            .consumer_tag
            .as_ref()
            .expect("deliveries have a consumer tag");
        let Some(index) = self.consumers.position(tag) else {
            // Never settled: acks on this channel stop merging past it.
            self.settlements().delivered(delivery.delivery_tag, false);
            tracing::warn!(channel = self.r.id, consumer_tag = %tag, "delivery for an unknown consumer dropped");
            return;
        };
        lock(&self.shared).delivered(delivery.delivery_tag, self.consumers[index].sink.no_ack);
        let consumer = &mut self.consumers[index];
        match consumer.sink.deliveries.try_send(delivery) {
            Ok(()) => {}
            Err(TrySendError::Full(delivery)) => {
                *stall = Some(Stall {
                    channel: self.r,
                    sender: consumer.sink.deliveries.clone(),
                    delivery,
                });
            }
            Err(TrySendError::Closed(delivery)) => self.consumer_gone(delivery, out),
        }
    }

    /// The application dropped the consumer of `delivery`: give the
    /// message back (unless it needs no ack) and cancel the consumer once.
    pub(crate) fn consumer_gone(&mut self, delivery: Delivery, out: &mut WriteQueue) {
        let tag = delivery
            .consumer_tag
            .as_ref()
            .expect("deliveries have a consumer tag");
        let Some(consumer) = self.consumers.iter_mut().find(|c| c.tag == *tag) else {
            return;
        };
        let no_ack = consumer.sink.no_ack;
        let cancel = !std::mem::replace(&mut consumer.cancelling, true);
        let tag = consumer.tag.clone();
        if !no_ack {
            self.requeue(delivery.delivery_tag, out);
        }
        if cancel {
            let (reply, _) = oneshot::channel();
            let cancel = BasicCancel {
                consumer_tag: tag,
                nowait: false,
            };
            self.call(cancel.into(), Reply::Method(reply), out);
        }
    }
}

/// The channel's book of settlements. A panic while it was held cannot
/// leave it half-changed (every change is one step), so a poisoned lock
/// is used as it is.
pub(crate) fn lock(shared: &ChannelShared) -> MutexGuard<'_, Settlements> {
    shared
        .settlements
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
