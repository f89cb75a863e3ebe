//! Reconnection with complete state recovery, inside the connection task
//! (see `docs/design/connect_robust.md`).
//!
//! When a connection with a reconnect policy loses its socket (an I/O
//! error, missed heartbeats, a close by the broker), [`ConnectionState::lost`]
//! keeps what the handles hold on to: open channels keep their numbers,
//! consumers their buffers and tags, held publishes and requests not yet
//! sent wait. What cannot survive ends at once: the request on the wire
//! fails, publishes waiting for a confirm end indeterminate, deliveries
//! not settled become stale (the broker requeues them). The driver then
//! opens a new socket ([`ConnectionState::reconnected`]), and the
//! recovery reopens every channel (confirm mode, QoS), replays the
//! topology record in order on a channel of its own (a queue named by the
//! broker gets a new name, used by the bindings and consumers after it),
//! consumes again with each consumer's tag, and only then lets the
//! handles' commands go. Any refusal during the replay fails the attempt:
//! the socket is dropped and the next attempt follows the policy.

use std::collections::VecDeque;

use std::time::Duration;

use amqp_wire::{ChannelOpen, Method, ReplyCode, ShortString};
use tokio::time::Instant;

use super::topology::TopologyEntry;
use super::{find, ChannelState, ConnectionPhase, ConnectionState, WriteQueue};
use crate::command::{ChannelRef, Command, Reply};
use crate::error::{CloseReason, Error, Initiator};
use crate::events::ConnectionEvent;
use crate::tuning::Tuning;

/// A recovery under way on a new socket.
#[derive(Debug)]
pub(crate) struct Recovery {
    /// When the connection was lost.
    lost_at: Instant,
    /// Attempts it took to open the new socket.
    attempts: u32,
    /// The broker of the new socket.
    address: String,
    /// Requests sent and not yet answered.
    outstanding: usize,
    /// What is still to replay, in order.
    remaining: VecDeque<TopologyEntry>,
    /// The channel the recovery declares and binds on.
    replay_channel: ChannelRef,
    /// The entry whose request is on the wire.
    current: Option<TopologyEntry>,
}

/// A consumer the broker cancelled (its queue deleted, its node down) on
/// a robust connection: it waits, and a probe looks for its queue from
/// time to time.
#[derive(Debug)]
pub(crate) struct Suspended {
    channel: ChannelRef,
    tag: ShortString,
    queue: ShortString,
    next_try: Instant,
    delay: Duration,
}

/// A look at whether a queue is back: a passive declare on a channel of
/// its own, which a 404 closes without touching the consumer's channel.
#[derive(Debug)]
pub(crate) struct Probe {
    pub(super) channel: ChannelRef,
    /// The consumer it is for.
    consumer: (ChannelRef, ShortString),
}

/// The first look for a cancelled consumer's queue, and the longest wait
/// between two looks.
const FIRST_PROBE: Duration = Duration::from_millis(250);
const MAX_PROBE_DELAY: Duration = Duration::from_secs(5);

/// True for the losses a connection with a reconnect policy recovers
/// from: the network, missed heartbeats, a close by the broker (a node
/// stopping, `rabbitmqctl close_connection`), unless the broker refused
/// this login or vhost, which another attempt would not change.
fn recoverable(error: &Error) -> bool {
    match error {
        Error::Io(_) | Error::HeartbeatTimeout { .. } => true,
        Error::ConnectionClosed(reason) => {
            reason.initiator == Initiator::Broker
                && ![
                    ReplyCode::ACCESS_REFUSED,
                    ReplyCode::NOT_ALLOWED,
                    ReplyCode::INVALID_PATH,
                ]
                .contains(&reason.code)
        }
        _ => false,
    }
}

impl ConnectionState {
    /// The socket is gone (or the broker closed the connection): reconnect
    /// when the policy allows, otherwise the connection is over.
    pub(crate) fn lost(&mut self, error: Error, now: Instant) {
        let open = matches!(self.phase, ConnectionPhase::Open);
        if !(self.robust && open && recoverable(&error)) {
            return self.finish(error);
        }
        if let Some((reason, _)) = self.draining.take() {
            // The application was closing the connection: it is closed.
            self.fail_all(&error);
            return self.finish(Error::ConnectionClosed(reason));
        }
        self.disconnect(error, now);
    }

    /// Keeps what survives a lost socket and waits for the next one.
    fn disconnect(&mut self, error: Error, _now: Instant) {
        tracing::warn!(%error, "the connection was lost; reconnecting");
        if self.recovery.take().is_some() {
            // The recovery's own channel goes with the socket.
            self.recovery_answers.clear();
        }
        self.emit(ConnectionEvent::Disconnected {
            error: error.clone(),
        });
        for id in 0..self.channels.len() {
            let Some(channel) = self.channels[id].as_mut() else {
                continue;
            };
            let survives = channel.disconnect(&error);
            let held = channel.has_held();
            let changes = std::mem::take(&mut channel.changes);
            let id = id as u16;
            self.apply_changes(id, changes);
            if survives {
                if held {
                    self.holding.push(id);
                }
            } else {
                self.channels[usize::from(id)] = None;
                self.ids.release(id);
                self.topology.channel_closed(id);
            }
        }
        self.recovery_answers.clear();
        self.probe = None;
        self.probe_answers.clear();
        self.draining_channels.clear();
        self.stall = None;
        self.out = WriteQueue::new();
        self.heartbeat = None;
        self.blocked = false;
        self.phase = ConnectionPhase::Reconnecting;
    }

    /// A command while the connection is reconnecting or recovering:
    /// channel commands wait behind what the channel holds, channel opens
    /// wait for the end of the recovery, a close ends everything at once.
    pub(super) fn hold_for_recovery(&mut self, command: Command, now: Instant) {
        match command {
            Command::CloseConnection { code, text, reply } => {
                // Closing wins over reconnecting, at once.
                let reason = CloseReason::by_client(code, text);
                if let Some(reply) = reply {
                    self.close_waiters.push(reply);
                }
                if matches!(self.phase, ConnectionPhase::Reconnecting) {
                    self.finish(Error::ConnectionClosed(reason));
                } else {
                    self.recovery = None;
                    self.recovery_answers.clear();
                    self.close(Error::ConnectionClosed(reason), now);
                }
            }
            Command::Topology { reply } => {
                let _ = reply.send(Ok(self.topology.snapshot()));
            }
            command @ Command::OpenChannel { .. } => self.deferred.push_back(command),
            command => {
                let r = command
                    .channel()
                    .expect("the other commands name a channel");
                if let Some(command) = self.hold(r, command) {
                    let error = self.channel_gone(r);
                    command.fail(error);
                }
            }
        }
    }

    /// Opens a channel for the connection's own requests (the replay, a
    /// probe), answered as [`Reply::Recovery`]; `None` when every channel
    /// number is in use.
    fn open_own_channel(&mut self) -> Option<ChannelRef> {
        let id = self.ids.allocate()?;
        let generation = self.next_generation;
        self.next_generation += 1;
        let r = ChannelRef { id, generation };
        let mut channel = ChannelState::new(r, self.max_body_size, self.body_pool.clone());
        channel.call(
            ChannelOpen::default().into(),
            Reply::Recovery,
            &mut self.out,
        );
        self.install(id, channel);
        Some(r)
    }

    /// The driver opened a new socket: reopen the channels, then replay
    /// the topology.
    pub(crate) fn reconnected(
        &mut self,
        tuning: Tuning,
        address: String,
        attempts: u32,
        lost_at: Instant,
        now: Instant,
    ) {
        self.tuning = tuning;
        self.heartbeat = tuning
            .heartbeat_interval()
            .map(|interval| super::Heartbeat::new(interval, now));
        self.phase = ConnectionPhase::Open;
        let mut outstanding = 0;
        for channel in self.channels.iter_mut().flatten() {
            outstanding += channel.reopen(&mut self.out);
        }
        let Some(replay_channel) = self.open_own_channel() else {
            // Every channel number is in use: no room to replay on.
            return self.disconnect(
                Error::ChannelLimitReached {
                    channel_max: self.ids.channel_max(),
                },
                now,
            );
        };
        outstanding += 1;
        tracing::info!(%address, attempts, "reconnected; restoring channels and topology");
        self.recovery = Some(Recovery {
            lost_at,
            attempts,
            address,
            outstanding,
            remaining: self.topology.snapshot().into(),
            replay_channel,
            current: None,
        });
    }

    /// Looks at the answers the recovery got: on to the next step, or
    /// the attempt failed.
    pub(super) fn advance_recovery(&mut self, now: Instant) {
        let answers = std::mem::take(&mut self.recovery_answers);
        let Some(mut recovery) = self.recovery.take() else {
            return;
        };
        for answer in answers {
            recovery.outstanding = recovery.outstanding.saturating_sub(1);
            match answer {
                Err(error) => {
                    tracing::warn!(%error, "restoring the connection's state failed; trying again");
                    return self.disconnect(error, now);
                }
                Ok(Method::QueueDeclareOk(ok)) => {
                    if let Some(TopologyEntry::Queue { name, .. }) = recovery.current.take() {
                        if name != ok.queue {
                            let (old, new) = (name, ok.queue);
                            rename_queue(&mut recovery.remaining, &old, &new);
                            self.topology.rename_queue(&old, &new);
                            self.renames
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .insert(old.to_string(), new.clone());
                            tracing::info!(%old, %new, "a server-named queue was declared again");
                            self.emit(ConnectionEvent::QueueRenamed { old, new });
                        }
                    }
                }
                Ok(_) => {}
            }
        }
        self.recovery = Some(recovery);
        self.next_recovery_step(now);
    }

    /// Sends the next entry of the record, or ends the recovery.
    fn next_recovery_step(&mut self, now: Instant) {
        loop {
            let Some(recovery) = self.recovery.as_mut() else {
                return;
            };
            if recovery.outstanding > 0 {
                return;
            }
            let Some(entry) = recovery.remaining.pop_front() else {
                return self.finish_recovery(now);
            };
            let replay = recovery.replay_channel;
            let (channel, request) = match &entry {
                TopologyEntry::Exchange(declare) => (replay, declare.clone().into()),
                TopologyEntry::Queue { declare, .. } => (replay, declare.clone().into()),
                TopologyEntry::QueueBinding(bind) => (replay, bind.clone().into()),
                TopologyEntry::ExchangeBinding(bind) => (replay, bind.clone().into()),
                TopologyEntry::Consumer {
                    channel,
                    consume,
                    tag,
                } => {
                    let live = self
                        .channels
                        .get(usize::from(*channel))
                        .and_then(Option::as_ref);
                    match live {
                        Some(live) if live.has_consumer(tag) => {
                            let consume = amqp_wire::BasicConsume {
                                consumer_tag: tag.clone(),
                                nowait: false,
                                ..consume.clone()
                            };
                            (live.r(), consume.into())
                        }
                        // The consumer ended meanwhile: nothing to restore.
                        _ => continue,
                    }
                }
            };
            recovery.outstanding = 1;
            recovery.current = Some(entry);
            match find(&mut self.channels, channel) {
                Some(ch) => ch.call(request, Reply::Recovery, &mut self.out),
                None => {
                    let error = self.channel_gone(channel);
                    return self.disconnect(error, now);
                }
            }
        }
    }

    /// Everything is restored: close the replay channel, tell the
    /// subscribers, let the handles' commands go.
    fn finish_recovery(&mut self, now: Instant) {
        let Some(recovery) = self.recovery.take() else {
            return;
        };
        if let Some(channel) = find(&mut self.channels, recovery.replay_channel) {
            channel.close(CloseReason::normal(Initiator::Client), None, &mut self.out);
        }
        let took = now.saturating_duration_since(recovery.lost_at);
        tracing::info!(address = %recovery.address, attempts = recovery.attempts, ?took, "connection restored");
        self.emit(ConnectionEvent::Reconnected {
            attempts: recovery.attempts,
            took,
            address: recovery.address,
        });
        for command in std::mem::take(&mut self.deferred) {
            self.handle_command_again(command, now);
        }
        self.release_held(now);
    }

    /// Handles a command that waited for the recovery (it was counted
    /// when it arrived).
    fn handle_command_again(&mut self, command: Command, now: Instant) {
        self.publishes_received -= u64::from(matches!(command, Command::Publish(_)));
        self.handle_command(command, now);
    }

    /// True while the connection is reconnecting (no socket).
    pub(crate) fn is_reconnecting(&self) -> bool {
        matches!(self.phase, ConnectionPhase::Reconnecting)
    }

    /// True while the channels and topology are being restored.
    pub(crate) fn is_recovering(&self) -> bool {
        self.recovery.is_some()
    }

    /// The connection could not be opened again: it is over.
    pub(crate) fn give_up(&mut self, attempts: u32, error: Error) {
        tracing::error!(%error, attempts, "giving up reconnecting");
        self.emit(ConnectionEvent::GaveUp {
            attempts,
            error: error.clone(),
        });
        self.finish(Error::GaveUpReconnecting {
            attempts,
            last: Box::new(error),
        });
    }
}

impl ConnectionState {
    /// The broker cancelled a consumer of channel `id`: tell the
    /// subscribers; on a robust connection, look for its queue soon.
    pub(super) fn consumer_cancelled(
        &mut self,
        id: u16,
        tag: ShortString,
        queue: ShortString,
        resuming: bool,
    ) {
        let Some(channel) = self.channels.get(usize::from(id)).and_then(Option::as_ref) else {
            return;
        };
        let r = channel.r();
        if resuming {
            if self
                .suspended
                .iter()
                .any(|s| s.channel == r && s.tag == tag)
            {
                return;
            }
            self.suspended.push(Suspended {
                channel: r,
                tag: tag.clone(),
                queue: queue.clone(),
                next_try: Instant::now() + FIRST_PROBE,
                delay: FIRST_PROBE,
            });
        }
        self.emit(ConnectionEvent::ConsumerCancelled {
            channel: id,
            consumer_tag: tag,
            queue,
            resuming,
        });
    }

    /// When the next probe is due (none while one runs or the connection
    /// is being restored).
    pub(super) fn next_probe(&self) -> Option<Instant> {
        if self.probe.is_some() || self.recovery.is_some() {
            return None;
        }
        self.suspended.iter().map(|s| s.next_try).min()
    }

    /// Starts the probe that is due, if any.
    pub(super) fn start_due_probe(&mut self, now: Instant) {
        if self.next_probe().is_none_or(|due| due > now) {
            return;
        }
        let Some(index) = self.suspended.iter().position(|s| s.next_try <= now) else {
            return;
        };
        let entry = &self.suspended[index];
        let still_waiting = find(&mut self.channels, entry.channel)
            .and_then(|channel| channel.suspended_queue(&entry.tag))
            .is_some();
        if !still_waiting {
            // Cancelled by the application, or its channel closed.
            self.suspended.swap_remove(index);
            return;
        }
        let (queue, consumer) = (entry.queue.clone(), (entry.channel, entry.tag.clone()));
        let Some(r) = self.open_own_channel() else {
            self.suspended[index].next_try = now + MAX_PROBE_DELAY;
            return;
        };
        let declare = amqp_wire::QueueDeclare {
            queue,
            passive: true,
            ..Default::default()
        };
        if let Some(channel) = find(&mut self.channels, r) {
            channel.call(declare.into(), Reply::Recovery, &mut self.out);
        }
        self.probe = Some(Probe {
            channel: r,
            consumer,
        });
    }

    /// The probe's answers: the queue is back (consume again), or not yet
    /// (look again later, less often).
    pub(super) fn advance_probe(&mut self, now: Instant) {
        for answer in std::mem::take(&mut self.probe_answers) {
            let Some(probe) = self.probe.take() else {
                return;
            };
            let index = self
                .suspended
                .iter()
                .position(|s| (s.channel, &s.tag) == (probe.consumer.0, &probe.consumer.1));
            match answer {
                Ok(Method::QueueDeclareOk(_)) => {
                    if let Some(channel) = find(&mut self.channels, probe.channel) {
                        channel.close(CloseReason::normal(Initiator::Client), None, &mut self.out);
                    }
                    if let Some(index) = index {
                        let entry = self.suspended.swap_remove(index);
                        if let Some(channel) = find(&mut self.channels, entry.channel) {
                            tracing::info!(queue = %entry.queue, consumer_tag = %entry.tag, "the queue is back: consuming again");
                            channel.resume_consumer(&entry.tag, &mut self.out);
                            self.emit(ConnectionEvent::ConsumerResumed {
                                channel: entry.channel.id,
                                consumer_tag: entry.tag,
                            });
                        }
                    }
                }
                Ok(_) => self.probe = Some(probe),
                Err(_) => {
                    // Not there yet (404 closed the probe's channel).
                    if let Some(entry) = index.map(|i| &mut self.suspended[i]) {
                        entry.delay = (entry.delay * 2).min(MAX_PROBE_DELAY);
                        entry.next_try = now + entry.delay;
                    }
                }
            }
        }
    }
}

/// A queue named by the broker got a new name: the entries still to
/// replay use it.
fn rename_queue(entries: &mut VecDeque<TopologyEntry>, old: &ShortString, new: &ShortString) {
    for entry in entries {
        entry.rename_queue(old, new);
    }
}
