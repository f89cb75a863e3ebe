//! The connection's protocol state, without I/O: frames and commands in,
//! frames out (into [`WriteQueue`]), replies to the waiting handles.
//!
//! The driver (`crate::driver`) owns one of these with the socket and
//! feeds it; unit tests feed it directly with paused time.

mod channel;
mod channel_ids;
mod confirms;
mod heartbeat;
mod holding;
mod recovery;
pub(crate) mod topology;
mod write_queue;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use amqp_wire::{
    ChannelOpen, ConnectionClose, ConnectionCloseOk, Frame, Method, ReplyCode, ShortString,
};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::body_pool::BodyPool;
use crate::command::{ChannelRef, ChannelShared, Command, PublishCommand, Reply};
use crate::error::{CloseReason, Error, Initiator, Result};
use crate::events::{ConnectionEvent, EventSender};
use crate::message::Delivery;
use crate::tuning::Tuning;
use bytes::BytesMut;
use channel::CloseStarted;

pub(crate) use channel::{lock as lock_settlements, ChannelState};
use channel::{ChannelChange, FrameOutcome};
use channel_ids::ChannelIds;
pub(crate) use confirms::ConfirmTracker;
pub(crate) use heartbeat::{Heartbeat, HeartbeatAction};
use holding::HoldingQueue;
use topology::Topology;
pub(crate) use write_queue::WriteQueue;

/// Bodies at least this large are written from the caller's buffer
/// (vectored write) instead of being copied into the write buffer.
pub(crate) const LARGE_BODY: usize = 64 * 1024;

/// How long we wait for `connection.close-ok` after sending a close; and
/// how long a close asked for by the application first waits for the
/// confirms of publishes already sent.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Publishes are held while this many bytes wait to be written: a slow
/// socket or a blocked connection makes publishers wait for room (the
/// bounded number of publishes in flight) instead of growing memory.
pub(crate) const WRITE_HIGH_WATER: usize = 256 * 1024;

/// How many held commands of one channel go out before the next channel
/// with held commands gets its turn.
const HELD_TURN: usize = 64;

/// A delivery that did not fit in its consumer's buffer: reading stops
/// until the consumer makes room.
#[derive(Debug)]
pub(crate) struct Stall {
    pub(crate) channel: ChannelRef,
    pub(crate) sender: crate::delivery_queue::DeliverySender,
    pub(crate) delivery: Delivery,
}

/// Where the connection is in its life.
#[derive(Debug)]
pub(crate) enum ConnectionPhase {
    Open,
    /// The socket was lost (a connection with a reconnect policy): the
    /// driver opens a new one; channels, consumers and held commands wait.
    Reconnecting,
    /// We sent `connection.close`; waiting for close-ok until `deadline`.
    Closing {
        error: Error,
        deadline: Instant,
    },
    /// Done: the driver flushes what is queued and exits with `error`.
    Closed {
        error: Error,
    },
}

/// The protocol state of one open connection.
pub(crate) struct ConnectionState {
    pub(crate) tuning: Tuning,
    max_body_size: u64,
    ids: ChannelIds,
    channels: Vec<Option<ChannelState>>,
    next_generation: u64,
    pub(crate) out: WriteQueue,
    events: EventSender,
    pub(crate) blocked: bool,
    pub(crate) heartbeat: Option<Heartbeat>,
    pub(crate) phase: ConnectionPhase,
    pub(crate) stall: Option<Stall>,
    close_waiters: Vec<oneshot::Sender<Result<()>>>,
    /// Channels with held commands, in turn order.
    holding: HoldingQueue,
    /// Buffers of large bodies, used again (see [`BodyPool`]).
    body_pool: Arc<BodyPool>,
    /// Channels whose close waits for confirms, and until when.
    draining_channels: Vec<(ChannelRef, Instant)>,
    /// The application asked to close the connection: `connection.close`
    /// waits until held publishes are written and sent publishes
    /// confirmed, or until the deadline.
    draining: Option<(CloseReason, Instant)>,
    /// Publishes received from the handles, ever.
    publishes_received: u64,
    /// What the broker confirmed this connection declared, bound and
    /// consumes.
    topology: Topology,
    /// The connection reconnects when it is lost.
    robust: bool,
    /// Reopening channels and replaying the topology after a reconnection.
    recovery: Option<recovery::Recovery>,
    /// Answers to the recovery's requests, not yet looked at.
    recovery_answers: Vec<Result<Method>>,
    /// Channels asked for while reconnecting: opened once recovered.
    deferred: VecDeque<Command>,
    /// Server-named queues declared again under a new name: old to new,
    /// shared with the handles (see `Connection::renamed_queue`).
    renames: QueueRenames,
    /// Consumers the broker cancelled, waiting for their queue (robust).
    suspended: Vec<recovery::Suspended>,
    /// A look, on a channel of its own, at whether a queue is back.
    probe: Option<recovery::Probe>,
    /// Answers to the probe, not yet looked at.
    probe_answers: Vec<Result<Method>>,
}

/// Names of server-named queues declared again on reconnection, old to
/// new; written by the task (rarely), read by the handles.
pub(crate) type QueueRenames =
    Arc<std::sync::Mutex<std::collections::HashMap<String, ShortString>>>;

/// Takes what `channel` has to tell the connection. Deliveries and acks
/// tell nothing: for them this is one inlined test of an empty list on
/// the hot path.
#[inline(always)]
fn take_changes(channel: &mut ChannelState) -> Option<Vec<ChannelChange>> {
    if channel.changes.is_empty() {
        None
    } else {
        Some(std::mem::take(&mut channel.changes))
    }
}

impl ConnectionState {
    pub(crate) fn new(
        tuning: Tuning,
        max_body_size: u64,
        events: EventSender,
        now: Instant,
    ) -> Self {
        ConnectionState {
            tuning,
            max_body_size,
            ids: ChannelIds::new(tuning.channel_max),
            channels: Vec::new(),
            next_generation: 1,
            out: WriteQueue::new(),
            events,
            blocked: false,
            heartbeat: tuning.heartbeat_interval().map(|i| Heartbeat::new(i, now)),
            phase: ConnectionPhase::Open,
            stall: None,
            close_waiters: Vec::new(),
            holding: HoldingQueue::default(),
            body_pool: Arc::default(),
            draining_channels: Vec::new(),
            draining: None,
            publishes_received: 0,
            topology: Topology::default(),
            robust: false,
            recovery: None,
            recovery_answers: Vec::new(),
            deferred: VecDeque::new(),
            renames: QueueRenames::default(),
            suspended: Vec::new(),
            probe: None,
            probe_answers: Vec::new(),
        }
    }

    /// The renames of server-named queues, for the handles.
    pub(crate) fn renames(&self) -> QueueRenames {
        self.renames.clone()
    }

    /// Reconnect when the connection is lost (see `recovery`).
    pub(crate) fn set_robust(&mut self, robust: bool) {
        self.robust = robust;
    }

    /// Moves what a channel told into the topology record; answers to the
    /// recovery wait in `recovery_answers`.
    fn apply_changes(&mut self, id: u16, changes: Vec<ChannelChange>) {
        for change in changes {
            match change {
                ChannelChange::Confirmed(pair) => self.topology.confirmed(id, &pair.0, &pair.1),
                ChannelChange::ConsumerGone(tag) => self.topology.consumer_gone(id, &tag),
                ChannelChange::Recovery(answer) => {
                    if self.probe.as_ref().is_some_and(|p| p.channel.id == id) {
                        self.probe_answers.push(answer);
                    } else if self.recovery.is_some() {
                        self.recovery_answers.push(answer);
                    }
                }
                ChannelChange::BrokerCancelled {
                    tag,
                    queue,
                    resuming,
                } => self.consumer_cancelled(id, tag, queue, resuming),
            }
        }
    }

    /// True while commands of the handles wait: the connection is being
    /// opened again, or its channels and topology restored.
    fn waiting_for_recovery(&self) -> bool {
        self.recovery.is_some() || matches!(self.phase, ConnectionPhase::Reconnecting)
    }

    /// Publishes received and no longer held (encoded, or failed): their
    /// places in the bounded number of publishes in flight can be given
    /// back. Grows by one per publish; the driver gives back the
    /// difference once per turn.
    pub(crate) fn publishes_released(&self) -> u64 {
        // Each channel is in `holding` at most once.
        let held: usize = self
            .holding
            .iter()
            .filter_map(|id| self.channels.get(usize::from(id))?.as_ref())
            .map(|channel| channel.held_publishes())
            .sum();
        self.publishes_received - held as u64
    }

    /// True when a publish may be encoded now: the connection is open and
    /// not blocked, and the write queue is below its high-water mark.
    pub(crate) fn can_publish(&self) -> bool {
        self.is_open() && !self.blocked && self.out.len() < WRITE_HIGH_WATER
    }

    pub(crate) fn is_open(&self) -> bool {
        matches!(self.phase, ConnectionPhase::Open)
    }

    pub(crate) fn emit(&self, event: ConnectionEvent) {
        self.events.send(event);
    }

    /// Why the connection is closing or closed (`None` while open).
    fn close_error(&self) -> Option<&Error> {
        match &self.phase {
            ConnectionPhase::Open | ConnectionPhase::Reconnecting => None,
            ConnectionPhase::Closing { error, .. } | ConnectionPhase::Closed { error } => {
                Some(error)
            }
        }
    }

    /// The error for a request to a channel that is gone.
    fn channel_gone(&self, r: ChannelRef) -> Error {
        self.close_error()
            .cloned()
            .unwrap_or_else(|| Error::ChannelClosed {
                channel: r.id,
                reason: CloseReason::library(ReplyCode::CHANNEL_ERROR, "the channel is closed"),
            })
    }

    // ---- commands -------------------------------------------------------

    /// Handles a command from a handle. On a channel with held commands,
    /// or for a publish the connection cannot take now, the command is
    /// held behind them: the order on a channel is the order of the calls.
    pub(crate) fn handle_command(&mut self, command: Command, now: Instant) {
        self.publishes_received += u64::from(matches!(command, Command::Publish(_)));
        if let Some(error) = self.close_error().cloned() {
            return match command {
                Command::CloseConnection {
                    reply: Some(reply), ..
                } if matches!(self.phase, ConnectionPhase::Closing { .. }) => {
                    self.close_waiters.push(reply)
                }
                command => command.fail(error),
            };
        }
        if self.waiting_for_recovery() {
            return self.hold_for_recovery(command, now);
        }
        if let Some((reason, _)) = &self.draining {
            // The application's close is under way: nothing new starts.
            return match command {
                Command::CloseConnection {
                    reply: Some(reply), ..
                } => self.close_waiters.push(reply),
                command => command.fail(Error::ConnectionClosed(reason.clone())),
            };
        }
        if let Some(r) = command.channel() {
            let can_publish = self.can_publish();
            if let Some(channel) = find(&mut self.channels, r) {
                // A channel the broker closed is being reopened (robust
                // connections): its publishes wait.
                let must_wait =
                    matches!(command, Command::Publish(_)) && !(can_publish && channel.is_open());
                if channel.has_held() || must_wait {
                    // Found just above: nothing comes back.
                    let _ = self.hold(r, command);
                    return;
                }
            }
        }
        self.dispatch(command, now);
    }

    /// Holds `command` behind what channel `r` holds, so that the order on
    /// the channel is the order of the calls; gives the command back when
    /// the channel is gone.
    #[must_use = "a command given back must be failed"]
    fn hold(&mut self, r: ChannelRef, command: Command) -> Option<Command> {
        let Some(channel) = find(&mut self.channels, r) else {
            return Some(command);
        };
        self.holding.push(r.id);
        channel.hold(command);
        None
    }

    /// Lets held commands go, channel by channel in turns, while the
    /// connection can take publishes.
    pub(crate) fn release_held(&mut self, now: Instant) {
        if self.waiting_for_recovery() {
            return;
        }
        while let Some(id) = self.holding.front() {
            let mut turn = 0;
            loop {
                let can_publish = self.can_publish();
                let Some(Some(channel)) = self.channels.get_mut(usize::from(id)) else {
                    break;
                };
                let Some(command) = channel.next_held() else {
                    break;
                };
                if matches!(command, Command::Publish(_)) && !(can_publish && channel.is_open()) {
                    channel.unhold(command);
                    return;
                }

                self.dispatch(command, now);
                turn += 1;
                if turn == HELD_TURN {
                    break;
                }
            }
            self.holding.pop_front();
            if let Some(Some(channel)) = self.channels.get(usize::from(id)) {
                if channel.has_held() {
                    self.holding.push(id);
                }
            }
        }
        self.check_drained(now);
    }

    /// Handles a command whose turn has come.
    fn dispatch(&mut self, command: Command, now: Instant) {
        match command {
            Command::Publish(publish) => self.publish(publish),
            Command::OpenChannel { id, reply } => self.open_channel(id, reply),
            Command::Call {
                channel,
                method,
                reply,
            } => match find(&mut self.channels, channel) {
                Some(ch) => ch.call(*method, reply, &mut self.out),
                None => reply.fail(self.channel_gone(channel)),
            },
            Command::Cast {
                channel,
                method,
                merge,
            } => {
                if let Some(ch) = find(&mut self.channels, channel) {
                    ch.cast(&method.into(), merge, &mut self.out);
                    if let Some(changes) = take_changes(ch) {
                        self.apply_changes(channel.id, changes);
                    }
                }
            }
            Command::Topology { reply } => {
                let _ = reply.send(Ok(self.topology.snapshot()));
            }
            Command::CloseChannel { channel, reply } => match find(&mut self.channels, channel) {
                Some(ch) => {
                    let started =
                        ch.close(CloseReason::normal(Initiator::Client), reply, &mut self.out);
                    if started == CloseStarted::Draining
                        && !self.draining_channels.iter().any(|(r, _)| *r == channel)
                    {
                        self.draining_channels.push((channel, now + CLOSE_TIMEOUT));
                    }
                }
                None => {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(()));
                    }
                }
            },
            Command::CloseConnection { code, text, reply } => {
                let reason = CloseReason::by_client(code, text);
                match reply {
                    Some(reply) => {
                        // Asked for: first learn the outcomes still coming.
                        self.close_waiters.push(reply);
                        self.draining = Some((reason, now + CLOSE_TIMEOUT));
                        self.check_drained(now);
                    }
                    // Every handle is gone: nobody waits for an outcome.
                    None => self.close(Error::ConnectionClosed(reason), now),
                }
            }
        }
    }

    /// Ends the application's close of the connection once nothing is held
    /// and every sent publish is confirmed, or once its deadline passed.
    fn check_drained(&mut self, now: Instant) {
        let Some((_, deadline)) = &self.draining else {
            return;
        };
        let done = now >= *deadline
            || self
                .channels
                .iter()
                .flatten()
                .all(|c| !c.has_held() && c.unconfirmed() == 0);
        if done {
            let (reason, _) = self.draining.take().expect("checked above");
            self.close(Error::ConnectionClosed(reason), now);
        }
    }

    /// Ends the draining close of a channel once its publishes are
    /// confirmed, or once its deadline passed.
    fn check_channel_drained(&mut self, r: ChannelRef, now: Instant) {
        let Some(index) = self.draining_channels.iter().position(|(c, _)| *c == r) else {
            return;
        };
        let deadline_passed = now >= self.draining_channels[index].1;
        let finished = match find(&mut self.channels, r) {
            Some(channel) => {
                channel.finish_draining(deadline_passed, &mut self.out) || !channel.is_draining()
            }
            None => true,
        };
        if finished {
            self.draining_channels.swap_remove(index);
        }
    }

    fn open_channel(
        &mut self,
        id: Option<u16>,
        reply: oneshot::Sender<Result<(ChannelRef, Arc<ChannelShared>)>>,
    ) {
        let channel_max = self.ids.channel_max();
        let id = match id {
            Some(id) if self.ids.take(id) => id,
            Some(channel) => {
                let _ = reply.send(Err(Error::ChannelUnavailable {
                    channel,
                    channel_max,
                }));
                return;
            }
            None => match self.ids.allocate() {
                Some(id) => id,
                None => {
                    let _ = reply.send(Err(Error::ChannelLimitReached { channel_max }));
                    return;
                }
            },
        };
        let generation = self.next_generation;
        self.next_generation += 1;
        let mut channel = ChannelState::new(
            ChannelRef { id, generation },
            self.max_body_size,
            self.body_pool.clone(),
        );
        channel.reopen_on_close = self.robust;
        channel.call(
            ChannelOpen::default().into(),
            Reply::Open(reply),
            &mut self.out,
        );
        self.install(id, channel);
    }

    /// Puts `channel` in its slot. The slots grow with the highest channel
    /// number in use, not to `channel_max` up front: a connection with one
    /// channel costs one slot, not 2,048 (about 700 KiB).
    fn install(&mut self, id: u16, channel: ChannelState) {
        let index = usize::from(id);
        if self.channels.len() <= index {
            self.channels.resize_with(index + 1, || None);
        }
        self.channels[index] = Some(channel);
    }

    /// Encodes a publish, or ends it when its channel is gone.
    fn publish(&mut self, command: PublishCommand) {
        let frame_max = self.tuning.frame_max;
        let error = match find(&mut self.channels, command.channel) {
            Some(ch) if ch.is_open() => {
                ch.publish(command, frame_max, &mut self.out);
                return;
            }
            _ => self.channel_gone(command.channel),
        };
        Command::Publish(command).fail(error);
    }

    // ---- frames -------------------------------------------------------

    /// Handles a frame from the broker. An error is fatal: the connection
    /// has been told to close (see [`ConnectionState::fail`]).
    pub(crate) fn handle_frame(&mut self, frame: Frame, now: Instant) {
        if let Some(hb) = &mut self.heartbeat {
            hb.on_read(now);
        }
        let result = match frame {
            Frame::Heartbeat => Ok(()),
            Frame::Method { channel: 0, method } => self.connection_method(method, now),
            Frame::ProtocolHeader(_) => Err(Error::UnexpectedFrame {
                channel: 0,
                got: "protocol header",
                state: "the connection is open",
            }),
            frame => self.channel_frame(frame, now),
        };
        if let Err(error) = result {
            self.fail(error, now);
        }
    }

    fn connection_method(&mut self, method: Method, now: Instant) -> Result<()> {
        match method {
            Method::ConnectionClose(close) => {
                amqp_wire::encode_method(
                    &mut self.out.buf,
                    0,
                    &ConnectionCloseOk::default().into(),
                );
                let reason = CloseReason {
                    code: ReplyCode(close.reply_code),
                    text: close.reply_text.to_string(),
                    class_id: close.class_id,
                    method_id: close.method_id,
                    initiator: Initiator::Broker,
                };
                tracing::warn!(%reason, "the broker closed the connection");
                self.lost(Error::ConnectionClosed(reason), now);
                Ok(())
            }
            Method::ConnectionCloseOk(_) => {
                match std::mem::replace(&mut self.phase, ConnectionPhase::Open) {
                    ConnectionPhase::Closing { error, .. } => self.finish(error),
                    other => {
                        self.phase = other;
                        return Err(Error::UnexpectedFrame {
                            channel: 0,
                            got: "connection.close-ok",
                            state: "the connection is open (we sent no close)",
                        });
                    }
                }
                Ok(())
            }
            Method::ConnectionBlocked(blocked) => {
                tracing::info!(reason = %blocked.reason, "the broker blocked the connection");
                self.blocked = true;
                self.emit(ConnectionEvent::Blocked {
                    reason: blocked.reason.to_string(),
                });
                Ok(())
            }
            Method::ConnectionUnblocked(_) => {
                tracing::info!("the broker unblocked the connection");
                self.blocked = false;
                if let Some(hb) = &mut self.heartbeat {
                    hb.on_read(now);
                }
                self.emit(ConnectionEvent::Unblocked);
                Ok(())
            }
            _ if !self.is_open() => Ok(()),
            other => Err(Error::UnexpectedFrame {
                channel: 0,
                got: other.name(),
                state: "the connection is open",
            }),
        }
    }

    fn channel_frame(&mut self, frame: Frame, now: Instant) -> Result<()> {
        let (id, name) = (frame.channel(), frame_name(&frame));
        self.channel_input(id, name, now, |channel, out, stall| {
            channel.handle_frame(frame, out, stall)
        })
    }

    /// Lends the buffer of the body arriving on `channel` to the driver,
    /// to read a body frame of `len` bytes straight into it: see
    /// [`ChannelState::lend_body_buffer`].
    pub(crate) fn lend_body_buffer(&mut self, channel: u16, len: usize) -> Option<(BytesMut, u64)> {
        if self.stall.is_some() || !self.is_open() {
            return None;
        }
        self.channels
            .get_mut(usize::from(channel))?
            .as_mut()?
            .lend_body_buffer(len)
    }

    /// A whole body frame was read straight into `buffer` (lent by
    /// [`ConnectionState::lend_body_buffer`]; the payload is
    /// `buffer[start..]`): as [`ConnectionState::handle_frame`] for it.
    pub(crate) fn body_read_directly(
        &mut self,
        channel: u16,
        buffer: BytesMut,
        start: usize,
        now: Instant,
    ) {
        if let Some(hb) = &mut self.heartbeat {
            hb.on_read(now);
        }
        let result = self.channel_input(channel, "body frame", now, |channel, out, stall| {
            channel.body_read_directly(buffer, start, out, stall)
        });
        if let Err(error) = result {
            self.fail(error, now);
        }
    }

    /// Hands a frame (or a body frame read directly) to its channel, then
    /// applies what it changed.
    fn channel_input(
        &mut self,
        id: u16,
        name: &'static str,
        now: Instant,
        input: impl FnOnce(
            &mut ChannelState,
            &mut WriteQueue,
            &mut Option<Stall>,
        ) -> Result<FrameOutcome>,
    ) -> Result<()> {
        let Some(Some(channel)) = self.channels.get_mut(usize::from(id)) else {
            if !self.is_open() {
                return Ok(());
            }
            return Err(Error::UnexpectedFrame {
                channel: id,
                got: name,
                state: "the channel is not open",
            });
        };
        let outcome = input(channel, &mut self.out, &mut self.stall)?;
        if let Some(changes) = take_changes(channel) {
            self.apply_changes(id, changes);
        }
        let event_seen = outcome.event.is_some();
        if let Some(event) = outcome.event {
            self.emit(event);
        }
        if outcome.closed {
            self.channels[usize::from(id)] = None;
            self.ids.release(id);
            self.topology.channel_closed(id);
        } else if let Some(channel) = self.channels[usize::from(id)]
            .as_ref()
            .filter(|_| event_seen)
        {
            // Reopened after a close by the broker: what waited goes out
            // once it is open.
            if channel.has_held() {
                self.holding.push(id);
            }
        }
        if !self.recovery_answers.is_empty() {
            self.advance_recovery(now);
        }
        if !self.probe_answers.is_empty() {
            self.advance_probe(now);
        }
        if !self.draining_channels.is_empty() {
            let r = self
                .draining_channels
                .iter()
                .map(|(r, _)| *r)
                .find(|r| r.id == id);
            if let Some(r) = r {
                self.check_channel_drained(r, now);
            }
        }
        self.check_drained(now);
        Ok(())
    }

    // ---- timers -------------------------------------------------------

    /// When [`ConnectionState::handle_timeout`] should be called next.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match &self.phase {
            ConnectionPhase::Closing { deadline, .. } => Some(*deadline),
            ConnectionPhase::Closed { .. } | ConnectionPhase::Reconnecting => None,
            ConnectionPhase::Open => {
                // Called on every turn of the driver: the heartbeat is
                // the usual answer, the rest is usually empty.
                let mut next = self.heartbeat.as_ref().map(Heartbeat::deadline);
                let mut earlier = |deadline: Instant| {
                    next = Some(next.map_or(deadline, |n| n.min(deadline)));
                };
                for (_, deadline) in &self.draining_channels {
                    earlier(*deadline);
                }
                if let Some((_, deadline)) = &self.draining {
                    earlier(*deadline);
                }
                if !self.suspended.is_empty() {
                    if let Some(deadline) = self.next_probe() {
                        earlier(deadline);
                    }
                }
                next
            }
        }
    }

    /// Sends heartbeats, detects a dead peer, ends a close that got no
    /// answer.
    pub(crate) fn handle_timeout(&mut self, now: Instant, reads_paused: bool) {
        match &self.phase {
            ConnectionPhase::Closing { deadline, error } if now >= *deadline => {
                let error = error.clone();
                self.finish(error);
            }
            ConnectionPhase::Open => {
                let due: Vec<ChannelRef> = self
                    .draining_channels
                    .iter()
                    .filter(|(_, deadline)| now >= *deadline)
                    .map(|(r, _)| *r)
                    .collect();
                for r in due {
                    self.check_channel_drained(r, now);
                }
                self.check_drained(now);
                if !self.is_open() {
                    return;
                }
                self.start_due_probe(now);
                let Some(hb) = &mut self.heartbeat else {
                    return;
                };
                match hb.poll(now, reads_paused || self.blocked) {
                    HeartbeatAction::Idle => {}
                    HeartbeatAction::Send => {
                        tracing::trace!("sending heartbeat");
                        Frame::Heartbeat.encode(&mut self.out.buf);
                    }
                    HeartbeatAction::Dead { silent_for } => {
                        let interval = hb.interval();
                        tracing::warn!(?silent_for, "missed heartbeats: the broker is unreachable");
                        // Nobody is listening: do not wait for a close-ok.
                        self.lost(
                            Error::HeartbeatTimeout {
                                interval,
                                silent_for,
                            },
                            now,
                        );
                    }
                }
            }
            _ => {}
        }
    }

    /// Records that bytes were written to the socket.
    pub(crate) fn on_write(&mut self, now: Instant) {
        if let Some(hb) = &mut self.heartbeat {
            hb.on_write(now);
        }
    }

    // ---- closing ------------------------------------------------------

    /// Starts closing with `error`: sends `connection.close` with the
    /// matching code, fails everything pending, waits for close-ok.
    pub(crate) fn close(&mut self, error: Error, now: Instant) {
        if !self.is_open() {
            return;
        }
        let (code, text, class_id, method_id) = match &error {
            Error::ConnectionClosed(reason) => (
                reason.code,
                reason.text.clone(),
                reason.class_id,
                reason.method_id,
            ),
            Error::Decode(e) => (e.reply_code(), e.to_string(), 0, 0),
            Error::UnexpectedFrame { .. } => (ReplyCode::UNEXPECTED_FRAME, error.to_string(), 0, 0),
            other => (ReplyCode::INTERNAL_ERROR, other.to_string(), 0, 0),
        };
        let text = truncate(&text);
        amqp_wire::encode_method(
            &mut self.out.buf,
            0,
            &ConnectionClose {
                reply_code: code.0,
                reply_text: text,
                class_id,
                method_id,
            }
            .into(),
        );
        self.fail_all(&error);
        self.phase = ConnectionPhase::Closing {
            error,
            deadline: now + CLOSE_TIMEOUT,
        };
    }

    /// A protocol failure detected here: close with the matching code.
    pub(crate) fn fail(&mut self, error: Error, now: Instant) {
        tracing::error!(%error, "closing the connection after a protocol error");
        self.close(error, now);
    }

    /// The connection is over: fail what is left and answer close waiters.
    pub(crate) fn finish(&mut self, error: Error) {
        self.fail_all(&error);
        let normal =
            matches!(&error, Error::ConnectionClosed(r) if r.initiator == Initiator::Client);
        for waiter in self.close_waiters.drain(..) {
            let _ = waiter.send(if normal { Ok(()) } else { Err(error.clone()) });
        }
        self.emit(ConnectionEvent::Closed(error.clone()));
        self.phase = ConnectionPhase::Closed { error };
    }

    /// Every channel fails with `error`: pending replies, confirms and
    /// consumers all resolve.
    pub(crate) fn fail_all(&mut self, error: &Error) {
        for slot in self.channels.iter_mut() {
            if let Some(mut channel) = slot.take() {
                channel.fail(error.clone());
            }
        }
        for command in self.deferred.drain(..) {
            command.fail(error.clone());
        }
        self.recovery = None;
        self.recovery_answers.clear();
        self.suspended.clear();
        self.probe = None;
        self.probe_answers.clear();
        self.holding.clear();
        self.draining_channels.clear();
        self.draining = None;
        // A delivery waiting for room goes: the broker requeues it with
        // the channel.
        self.stall = None;
    }

    /// The consumer of a stalled delivery went away while reading was
    /// paused for it: give the message back.
    pub(crate) fn consumer_gone(&mut self, channel: ChannelRef, delivery: Delivery) {
        if let Some(channel) = find(&mut self.channels, channel) {
            channel.consumer_gone(delivery, &mut self.out);
        }
    }

    /// The driver is done with the socket (an I/O error, or the broker
    /// closed it): reconnect, or make sure nothing waits.
    pub(crate) fn shutdown(&mut self, error: Error, now: Instant) {
        match self.phase {
            ConnectionPhase::Closed { .. } | ConnectionPhase::Reconnecting => {}
            _ => self.lost(error, now),
        }
    }
}

/// The channel `r` names, if it is still the same opening of that number.
fn find(channels: &mut [Option<ChannelState>], r: ChannelRef) -> Option<&mut ChannelState> {
    channels
        .get_mut(usize::from(r.id))?
        .as_mut()
        .filter(|c| c.generation == r.generation)
}

/// A short string of at most 255 bytes from `text`, cut at a character
/// boundary.
pub(crate) fn truncate(text: &str) -> ShortString {
    let mut end = text.len().min(ShortString::MAX_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    ShortString::try_from(&text[..end]).unwrap_or_default()
}

pub(crate) fn frame_name(frame: &Frame) -> &'static str {
    match frame {
        Frame::Method { method, .. } => method.name(),
        Frame::Header { .. } => "content header",
        Frame::Body { .. } => "body frame",
        Frame::Heartbeat => "heartbeat",
        Frame::ProtocolHeader(_) => "protocol header",
    }
}

#[cfg(test)]
mod tests;
