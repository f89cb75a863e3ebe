//! The connection task: one tokio task owns the socket and the protocol
//! state, and drives both from a single poll function.
//!
//! Each turn it takes commands and publishes from the handles, decodes
//! what the socket brought, writes what the state queued (many frames per
//! write), and runs the timer. Reads go into one persistent buffer and
//! writes advance a queue, so nothing is lost when a poll returns
//! `Pending`: there is no `write_all` inside a `select!` to cancel.

use std::future::{poll_fn, Future};
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use amqp_wire::{Decoded, Frame, FrameType, PartialFrame};
use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::{Instant, Sleep};
use tracing::Instrument;

use crate::command::{ChannelRef, Command};
use crate::config::{ConnectionConfig, ReconnectPolicy};
use crate::connection::{lock_address, open_socket, OpenedSocket};
use crate::delivery_queue::{DeliverySender, TrySendError};
use crate::error::{Error, Result};
use crate::events::ConnectionEvent;
use crate::handshake::{Handshake, Opened};
use crate::message::Delivery;
use crate::state::{ConnectionPhase, ConnectionState, Stall};
use crate::transport::Transport;

/// Read buffer: room reserved before each read, at most. A connection
/// starts with [`READ_RESERVE_MIN`] and doubles it each time a read fills
/// all the room there was: a quiet connection keeps a small buffer, a busy
/// one reads 64 KiB at a time.
const READ_RESERVE: usize = 64 * 1024;
/// Read buffer: room reserved before each read, at first.
const READ_RESERVE_MIN: usize = 2 * 1024;
/// Read buffer of the handshake: its frames are small, and the driver's
/// buffer is made when the connection is open.
const HANDSHAKE_READ: usize = 4096;
/// A body frame whose payload still misses at least this much is read
/// from the socket straight into its message's buffer: see [`DirectBody`].
const DIRECT_MIN: usize = 32 * 1024;
/// After the content header of a body at least this large, and after the
/// last frame of one, reads are cut short (see [`Driver::read_limit`]) so
/// that body frames are read directly from their first byte.
const DIRECT_HINT: u64 = 256 * 1024;
/// The read after the last frame of a large body: room for the next
/// message's method and content header, little of its body.
const AFTER_LARGE_BODY: usize = 1 + 2048;

/// How many commands (publishes included) one turn takes before it reads
/// and writes. Large enough to take every publish in flight (at most
/// 1,024) in one turn, so a burst of small publishes goes out in a few
/// large writes rather than one write per few hundred messages.
const COMMAND_BATCH: usize = 4096;

/// Runs the handshake on a fresh transport.
pub(crate) async fn handshake(
    transport: &mut Transport,
    config: &ConnectionConfig,
) -> Result<(Opened, BytesMut)> {
    let mut out = BytesMut::new();
    let mut read = BytesMut::with_capacity(HANDSHAKE_READ);
    let mut hs = Handshake::start(config, &mut out);
    loop {
        if !out.is_empty() {
            transport.write_all(&out).await.map_err(Error::io)?;
            transport.flush().await.map_err(Error::io)?;
            out.clear();
        }
        loop {
            let frame = match Frame::decode(&mut read, config.frame_max) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => return Err(e.into()),
            };
            match hs.handle(frame, &mut out) {
                Ok(Some(opened)) => {
                    transport.write_all(&out).await.map_err(Error::io)?;
                    transport.flush().await.map_err(Error::io)?;
                    return Ok((opened, read));
                }
                Ok(None) => {}
                Err(error) => {
                    // Answer a close before giving up; the error matters more.
                    let _ = transport.write_all(&out).await;
                    let _ = transport.flush().await;
                    return Err(error);
                }
            }
        }
        if !out.is_empty() {
            continue;
        }
        read.reserve(HANDSHAKE_READ);
        let n =
            poll_fn(|cx| tokio_util::io::poll_read_buf(Pin::new(&mut *transport), cx, &mut read))
                .await
                .map_err(Error::io)?;
        if n == 0 {
            return Err(hs.on_eof());
        }
    }
}

/// What the task needs to open the connection again when it is lost.
pub(crate) struct Reconnect {
    pub(crate) config: ConnectionConfig,
    pub(crate) policy: ReconnectPolicy,
    /// The connection's current address, shown by the handles.
    pub(crate) address: Arc<Mutex<String>>,
    /// True while the socket is lost (for `fail_fast`, read by the
    /// handles).
    pub(crate) down: Arc<AtomicBool>,
}

/// An attempt to open a new socket: the wait of the policy, then every
/// address in turn.
type Attempt = Pin<Box<dyn Future<Output = Result<OpenedSocket>> + Send>>;

/// Where the reconnection is.
struct Reconnecting {
    /// When the connection was lost.
    lost_at: Instant,
    /// Attempts made so far (the one under way included).
    attempts: u32,
    attempt: Attempt,
}

/// A body frame whose payload is read from the socket straight into the
/// buffer its message is joined in (lent by the channel), rather than
/// into the read buffer and then copied there: a body of many frames
/// (larger than `frame_max`) then arrives without being copied. Only what
/// the read before brought of the frame is copied.
struct DirectBody {
    channel: u16,
    buffer: BytesMut,
    /// Where the frame's payload starts in `buffer`.
    start: usize,
    /// Payload bytes still to read; at 0 the frame-end octet is next.
    left: usize,
    /// Body bytes still to come after this frame.
    after: u64,
    /// The whole body's size.
    body_size: u64,
}

/// The connection task's state.
pub(crate) struct Driver {
    /// `None` while reconnecting.
    transport: Option<Transport>,
    read: BytesMut,
    state: ConnectionState,
    commands: mpsc::UnboundedReceiver<Command>,
    /// The publishes allowed between the handles and the socket; closed
    /// when the task ends, so no publisher waits for room that never
    /// comes.
    publish_permits: Arc<Semaphore>,
    /// Publishes whose places were given back to `publish_permits`.
    publishes_released: u64,
    timer: Pin<Box<Sleep>>,
    stall: Option<(ChannelRef, DeliverySender, Delivery)>,
    needs_flush: bool,
    handles_gone: bool,
    reconnect: Option<Reconnect>,
    reconnecting: Option<Reconnecting>,
    /// When the connection was lost, until it is restored: attempts
    /// and the time to restore count from here.
    lost: Option<(Instant, u32)>,
    /// The wait before the next attempt, as `ReconnectFailed` announced
    /// it (the jitter is drawn once).
    retry_in: Option<std::time::Duration>,
    /// Bytes encoded after which a turn stops taking commands and writes
    /// (0: no limit): [`ConnectionConfig::write_batch`].
    write_batch: usize,
    /// Room reserved before a read: from [`READ_RESERVE_MIN`] up to
    /// [`READ_RESERVE`].
    read_reserve: usize,
    /// The body frame being read straight into its message's buffer.
    direct: Option<DirectBody>,
    /// Bytes the next read into `read` takes at most (`None`: all there
    /// is room for): the frame end and the next frame header between the
    /// frames of a large body, the next frame header after its content
    /// header, so that its body frames are read directly from their start.
    read_limit: Option<usize>,
}

impl Driver {
    pub(crate) fn new(
        transport: Transport,
        read: BytesMut,
        state: ConnectionState,
        commands: mpsc::UnboundedReceiver<Command>,
        publish_permits: Arc<Semaphore>,
        reconnect: Option<Reconnect>,
        write_batch: usize,
    ) -> Self {
        Driver {
            transport: Some(transport),
            // A buffer the handshake left empty is not kept: the first read
            // reserves one.
            read: if read.is_empty() {
                BytesMut::new()
            } else {
                read
            },
            state,
            commands,
            publish_permits,
            publishes_released: 0,
            timer: Box::pin(tokio::time::sleep_until(
                Instant::now() + std::time::Duration::from_secs(3600),
            )),
            stall: None,
            needs_flush: false,
            handles_gone: false,
            reconnect,
            reconnecting: None,
            lost: None,
            retry_in: None,
            write_batch,
            read_reserve: READ_RESERVE_MIN,
            direct: None,
            read_limit: None,
        }
    }

    /// Runs until the connection is over; returns why it ended.
    pub(crate) async fn run(mut self: Box<Self>) -> Error {
        let error = poll_fn(|cx| self.poll(cx)).await;
        self.publish_permits.close();
        error
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Error> {
        loop {
            let now = Instant::now();
            let mut progress = false;
            progress |= self.poll_stall(cx);
            progress |= self.poll_commands(cx, now);
            if self.state.is_reconnecting() {
                progress |= self.poll_reconnect(cx, now);
            } else {
                if self.lost.is_some() && !self.state.is_recovering() {
                    // Restored: the next loss counts attempts afresh.
                    self.lost = None;
                }
                // A socket error changes the phase (closed, or reconnecting):
                // that is progress, the loop goes on with the new phase.
                match self.poll_read(cx, now) {
                    Ok(read) => progress |= read,
                    Err(error) => {
                        self.state.shutdown(error, now);
                        progress = true;
                    }
                }
                match self.poll_write(cx, now) {
                    Ok(wrote) => progress |= wrote,
                    Err(error) => {
                        self.state.shutdown(error, now);
                        progress = true;
                    }
                }
            }
            // Room was made, or the broker unblocked: held publishes go.
            self.state.release_held(now);
            self.give_back_permits();
            progress |= self.poll_timer(cx, now);
            if let ConnectionPhase::Closed { error } = &self.state.phase {
                if self.state.out.is_empty() && !self.needs_flush {
                    return Poll::Ready(error.clone());
                }
                if !progress {
                    // Nothing more will drain: give up on the rest.
                    return Poll::Ready(error.clone());
                }
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }

    /// While the connection is lost: drops the old socket, then makes
    /// attempts at a new one as the policy says; on success the state
    /// starts its recovery, after the last allowed attempt it gives up.
    fn poll_reconnect(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let Some(reconnect) = &self.reconnect else {
            return false;
        };
        if self.transport.take().is_some() {
            reconnect.down.store(true, Ordering::Release);
            // The old socket goes; nothing read or to flush survives it.
            self.read.clear();
            self.direct = None;
            self.read_limit = None;
            self.needs_flush = false;
            self.stall = None;
        }
        let (lost_at, attempts) = *self.lost.get_or_insert((now, 0));
        let retry_in = &mut self.retry_in;
        let reconnecting = self.reconnecting.get_or_insert_with(|| {
            let attempts = attempts + 1;
            let delay = retry_in
                .take()
                .unwrap_or_else(|| reconnect.policy.delay_before(attempts));
            let config = reconnect.config.clone();
            Reconnecting {
                lost_at,
                attempts,
                attempt: Box::pin(async move {
                    tokio::time::sleep(delay).await;
                    open_socket(&config).await
                }),
            }
        });
        let Poll::Ready(result) = reconnecting.attempt.as_mut().poll(cx) else {
            return false;
        };
        let Reconnecting {
            lost_at, attempts, ..
        } = self.reconnecting.take().expect("polled above");
        self.lost = Some((lost_at, attempts));
        match result {
            Ok(socket) => {
                let address = socket.address.to_string();
                *lock_address(&reconnect.address) = address.clone();
                reconnect.down.store(false, Ordering::Release);
                self.transport = Some(socket.transport);
                self.read = socket.read;
                self.state
                    .reconnected(socket.opened.tuning, address, attempts, lost_at, now);
            }
            Err(error) => {
                let last = reconnect
                    .policy
                    .max_attempts
                    .is_some_and(|max| attempts >= max)
                    || !reconnectable(&error);
                if last {
                    self.state.give_up(attempts, error);
                } else {
                    let retry_in = reconnect.policy.delay_before(attempts + 1);
                    self.retry_in = Some(retry_in);
                    tracing::warn!(%error, attempt = attempts, ?retry_in, "reconnecting failed");
                    self.state.emit(ConnectionEvent::ReconnectFailed {
                        attempt: attempts,
                        error,
                        retry_in,
                    });
                }
            }
        }
        true
    }

    /// A delivery waits for room in its consumer's buffer.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> bool {
        if self.stall.is_none() {
            if let Some(Stall {
                channel,
                sender,
                delivery,
            }) = self.state.stall.take()
            {
                self.stall = Some((channel, sender, delivery));
            }
        }
        let Some((_, sender, _)) = &mut self.stall else {
            return false;
        };
        if sender.poll_ready(cx).is_pending() {
            return false;
        }
        let (channel, sender, delivery) = self.stall.take().expect("stall present");
        match sender.try_send(delivery) {
            Ok(()) => {}
            Err(TrySendError::Full(delivery)) => self.stall = Some((channel, sender, delivery)),
            Err(TrySendError::Closed(delivery)) => self.state.consumer_gone(channel, delivery),
        }
        true
    }

    /// Gives the places of publishes out of the task's hands back to
    /// the publishers: one semaphore update per turn, not per publish.
    fn give_back_permits(&mut self) {
        let released = self.state.publishes_released();
        if released > self.publishes_released {
            let places = (released - self.publishes_released) as usize;
            self.publishes_released = released;
            self.publish_permits.add_permits(places);
        }
    }

    fn poll_commands(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut progress = false;
        for _ in 0..COMMAND_BATCH {
            if self.write_batch > 0 && self.state.out.len() >= self.write_batch {
                // Enough for one write: it goes first, the rest next turn
                // (the write's readiness wakes the task for them).
                break;
            }
            match self.commands.poll_recv(cx) {
                Poll::Ready(Some(command)) => {
                    self.state.handle_command(command, now);
                    progress = true;
                }
                Poll::Ready(None) => {
                    // Every handle is gone: close the connection.
                    if !self.handles_gone {
                        self.handles_gone = true;
                        self.state.handle_command(
                            Command::CloseConnection {
                                code: 200,
                                text: "every handle of the connection was dropped".into(),
                                reply: None,
                            },
                            now,
                        );
                        progress = true;
                    }
                    break;
                }
                Poll::Pending => break,
            }
        }
        progress
    }

    /// Decodes buffered frames, then reads more.
    fn poll_read(&mut self, cx: &mut Context<'_>, now: Instant) -> Result<bool> {
        if matches!(self.state.phase, ConnectionPhase::Closed { .. }) {
            return Ok(false);
        }
        if self.transport.is_none() {
            return Ok(false);
        }
        let progress = self.decode_buffered(now)?;
        if self.stall.is_some() || self.state.stall.is_some() {
            return Ok(progress);
        }
        let Some(transport) = self.transport.as_mut() else {
            return Ok(progress);
        };
        if let Some(direct) = self.direct.as_mut().filter(|d| d.left > 0) {
            let mut room = (&mut direct.buffer).limit(direct.left);
            return match tokio_util::io::poll_read_buf(Pin::new(transport), cx, &mut room) {
                Poll::Pending => Ok(progress),
                Poll::Ready(Ok(0)) => Err(self.socket_closed()),
                Poll::Ready(Ok(n)) => {
                    direct.left -= n;
                    if direct.left == 0 {
                        // The frame end next, then the next frame's header
                        // (or the next message's first frames).
                        self.read_limit = if direct.after > 0 {
                            Some(amqp_wire::FRAME_OVERHEAD)
                        } else if direct.body_size >= DIRECT_HINT {
                            Some(AFTER_LARGE_BODY)
                        } else {
                            None
                        };
                    }
                    Ok(true)
                }
                Poll::Ready(Err(e)) => Err(Error::io(e)),
            };
        }
        if self.read.capacity() - self.read.len() < self.read_reserve / 4 {
            self.read.reserve(self.read_reserve);
        }
        let room = self.read.capacity() - self.read.len();
        let limit = self.read_limit.take();
        let result = match limit {
            Some(limit) => {
                let mut room = (&mut self.read).limit(limit);
                tokio_util::io::poll_read_buf(Pin::new(transport), cx, &mut room)
            }
            None => tokio_util::io::poll_read_buf(Pin::new(transport), cx, &mut self.read),
        };
        match result {
            Poll::Pending => {
                self.read_limit = limit;
                Ok(progress)
            }
            Poll::Ready(Ok(0)) => Err(self.socket_closed()),
            Poll::Ready(Ok(n)) => {
                if n == room && limit.is_none() && self.read_reserve < READ_RESERVE {
                    // The socket had more than there was room for.
                    self.read_reserve *= 2;
                }
                self.decode_buffered(now)?;
                Ok(true)
            }
            Poll::Ready(Err(e)) => Err(Error::io(e)),
        }
    }

    /// Why the socket ended with no error.
    fn socket_closed(&self) -> Error {
        match &self.state.phase {
            ConnectionPhase::Closing { error, .. } => error.clone(),
            _ => Error::io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the broker closed the socket without connection.close",
            )),
        }
    }

    fn decode_buffered(&mut self, now: Instant) -> Result<bool> {
        let mut progress = false;
        let mut large_header = false;
        while self.state.stall.is_none()
            && !matches!(self.state.phase, ConnectionPhase::Closed { .. })
        {
            if let Some(direct) = &self.direct {
                if direct.left > 0 || self.read.is_empty() {
                    // The payload, or its frame end, is still to come.
                    break;
                }
                self.finish_direct(now);
                progress = true;
                continue;
            }
            match Frame::decode_partial(&mut self.read, self.state.tuning.frame_max) {
                Ok(Decoded::Frame(frame)) => {
                    tracing::trace!(
                        channel = frame.channel(),
                        frame = crate::state::frame_name(&frame),
                        "frame in"
                    );
                    large_header = matches!(
                        &frame,
                        Frame::Header { header, .. } if header.body_size >= DIRECT_HINT
                    );
                    self.state.handle_frame(frame, now);
                    progress = true;
                }
                Ok(Decoded::Partial(partial)) => {
                    // A body frame's payload may be read straight into its
                    // message; any other frame is awaited in the buffer.
                    match self.start_direct(partial) {
                        Some(direct) => {
                            self.direct = Some(direct);
                            progress = true;
                        }
                        None => self.read.reserve(partial.encoded_len() - self.read.len()),
                    }
                    break;
                }
                Ok(Decoded::Nothing) => break,
                Err(e) => {
                    self.state.fail(Error::Decode(e), now);
                    // The stream cannot be resynchronised: drop the rest.
                    self.read.clear();
                    return Ok(true);
                }
            }
        }
        if large_header && self.read.is_empty() {
            // Its first body frame's header alone: the payload is then
            // read directly.
            self.read_limit = Some(amqp_wire::FRAME_HEADER_LEN);
        }
        if self.read.is_empty() && self.read.capacity() > 4 * READ_RESERVE {
            // Give back what a large frame needed.
            self.read = BytesMut::with_capacity(self.read_reserve);
        }
        Ok(progress)
    }

    /// When the read buffer starts with `partial`, a body frame of which
    /// at least [`DIRECT_MIN`] bytes are missing, and its channel waits
    /// for that much body: borrows the body's buffer, moves what arrived
    /// of the payload there, and reads the rest straight into it.
    fn start_direct(&mut self, partial: PartialFrame) -> Option<DirectBody> {
        let (channel, len) = (partial.channel, partial.size as usize);
        let present = self.read.len() - amqp_wire::FRAME_HEADER_LEN;
        if partial.frame_type != FrameType::Body || len.saturating_sub(present) < DIRECT_MIN {
            return None;
        }
        let (mut buffer, remaining) = self.state.lend_body_buffer(channel, len)?;
        let start = buffer.len();
        self.read.advance(amqp_wire::FRAME_HEADER_LEN);
        buffer.extend_from_slice(&self.read);
        self.read.clear();
        Some(DirectBody {
            channel,
            buffer,
            start,
            left: len - present,
            after: remaining - len as u64,
            body_size: start as u64 + remaining,
        })
    }

    /// The payload of a body frame read directly is in, and the read
    /// buffer starts with its frame end: the body's buffer goes back to
    /// its channel.
    fn finish_direct(&mut self, now: Instant) {
        let Some(direct) = self.direct.take() else {
            return;
        };
        let found = self.read.get_u8();
        if found != amqp_wire::constants::FRAME_END {
            let error = amqp_wire::DecodeError::BadFrameEnd {
                frame_type: FrameType::Body,
                channel: direct.channel,
                size: (direct.buffer.len() - direct.start) as u32,
                found,
            };
            self.state.fail(Error::Decode(error), now);
            self.read.clear();
            return;
        }
        tracing::trace!(channel = direct.channel, "body frame in, read directly");
        self.state
            .body_read_directly(direct.channel, direct.buffer, direct.start, now);
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, now: Instant) -> Result<bool> {
        let mut progress = false;
        let Some(transport) = self.transport.as_mut() else {
            return Ok(false);
        };
        while !self.state.out.is_empty() {
            let written = if self.state.out.is_contiguous() {
                Pin::new(&mut *transport).poll_write(cx, self.state.out.chunk())
            } else {
                let mut slices = [IoSlice::new(&[]); 64];
                let n = self.state.out.io_slices(&mut slices);
                Pin::new(&mut *transport).poll_write_vectored(cx, &slices[..n])
            };
            match written {
                Poll::Pending => break,
                Poll::Ready(Ok(0)) => {
                    return Err(Error::io(std::io::Error::new(
                        std::io::ErrorKind::WriteZero,
                        "the socket accepts no more bytes",
                    )))
                }
                Poll::Ready(Ok(n)) => {
                    self.state.out.advance(n);
                    self.state.on_write(now);
                    self.needs_flush = true;
                    progress = true;
                }
                Poll::Ready(Err(e)) => return Err(Error::io(e)),
            }
        }
        if self.state.out.is_empty() && self.needs_flush {
            match Pin::new(transport).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.needs_flush = false,
                Poll::Ready(Err(e)) => return Err(Error::io(e)),
                Poll::Pending => {}
            }
        }
        Ok(progress)
    }

    fn poll_timer(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let Some(deadline) = self.state.deadline() else {
            return false;
        };
        // The heartbeat deadlines move later with every read and write.
        // Re-arming the timer each time costs more than waking up early
        // once, so the timer only ever moves earlier; when it fires before
        // the deadline it is armed again for the deadline.
        if deadline < self.timer.deadline() {
            self.timer.as_mut().reset(deadline);
        }
        if self.timer.as_mut().poll(cx).is_pending() {
            return false;
        }
        if now < deadline {
            self.timer.as_mut().reset(deadline);
            // Poll again (next turn) so the timer registers its wakeup.
            return true;
        }
        let paused = self.stall.is_some();
        self.state.handle_timeout(now, paused);
        // The deadline moved (or the connection ended): poll again.
        self.state.deadline() != Some(deadline)
    }
}

/// True for the errors another attempt may not repeat: unreachable
/// brokers, timeouts, closes. A refused login or vhost ends the
/// reconnection.
fn reconnectable(error: &Error) -> bool {
    match error {
        Error::NoBrokerReachable { attempts } => {
            attempts.iter().all(|(_, error)| reconnectable(error))
        }
        Error::AuthenticationFailed { .. }
        | Error::VhostRefused { .. }
        | Error::MechanismNotOffered { .. }
        | Error::Config(_) => false,
        _ => true,
    }
}

/// Keeps the connection's close reason for handles created later.
pub(crate) fn spawn(driver: Driver, closed: Arc<std::sync::OnceLock<Error>>, span: tracing::Span) {
    // Boxed: the task's future is then a pointer and the driver is
    // allocated once at its size (inline, the future took about three
    // times its size).
    let driver = Box::new(driver);
    tokio::spawn(
        async move {
            let error = driver.run().await;
            let normal = matches!(
                &error,
                Error::ConnectionClosed(reason)
                    if reason.initiator == crate::error::Initiator::Client
                        && reason.code == amqp_wire::ReplyCode::REPLY_SUCCESS
            );
            if normal {
                tracing::debug!("connection closed by the application");
            } else {
                tracing::warn!(%error, "connection closed");
            }
            let _ = closed.set(error);
        }
        .instrument(span),
    );
}
