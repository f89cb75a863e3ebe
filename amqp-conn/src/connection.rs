//! The connection handle: cheap to clone, talks to the connection task by
//! message.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use amqp_wire::{FieldTable, ShortString};
use bytes::BytesMut;
use tokio::sync::{broadcast, mpsc, oneshot, Semaphore};
use tokio::time::Instant;
use tracing::Instrument;

use crate::channel::Channel;
use crate::command::Command;
use crate::config::{BrokerAddress, ConnectionConfig};
use crate::driver::{self, Driver};
use crate::error::{CloseReason, Error, Initiator, Result};
use crate::events::{ConnectionEvent, EventSender};
use crate::handshake::Opened;
use crate::state::ConnectionState;
use crate::transport::{self, Transport};
use crate::tuning::Tuning;

/// How many publishes may wait for the connection task (queued, or held
/// while the connection is blocked or the socket slow) before `publish`
/// waits: the backpressure a slow socket or a blocked connection puts on
/// publishers.
const PUBLISH_QUEUE: usize = 1024;

/// What the handles of one connection share.
pub(crate) struct ConnectionInner {
    /// `host:port` (changed by the task when it reconnects elsewhere), the
    /// virtual host and the connection name, for Debug output and
    /// messages.
    pub(crate) address: Arc<Mutex<String>>,
    pub(crate) vhost: String,
    pub(crate) name: Option<String>,
    /// Every command, publishes included, in one queue: the order of the
    /// calls is the order the task sees.
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    /// A publish takes one before it is queued; the task gives it back
    /// when the publish is encoded or failed.
    pub(crate) publish_permits: Arc<Semaphore>,
    events: EventSender,
    /// Set by the task when it ends.
    pub(crate) closed: Arc<OnceLock<Error>>,
    pub(crate) tuning: Tuning,
    /// Encoded; decoded into `server_properties_table` when asked for.
    server_properties: bytes::Bytes,
    server_properties_table: OnceLock<FieldTable>,
    pub(crate) max_body_size: u64,
    /// Server-named queues declared again under a new name.
    renames: crate::state::QueueRenames,
    /// The connection reconnects when lost.
    robust: bool,
    /// Fail at once while reconnecting (`ReconnectPolicy::fail_fast`).
    fail_fast: bool,
    /// True while the socket is lost (set by the task).
    down: Arc<AtomicBool>,
}

impl std::fmt::Debug for ConnectionInner {
    /// Where it goes and whether it is open: no secrets, no internals.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = f.debug_struct("Connection");
        s.field("address", &self.address())
            .field("vhost", &self.vhost);
        if let Some(name) = &self.name {
            s.field("name", name);
        }
        match self.closed.get() {
            None => s.field("state", &"open"),
            Some(error) => s.field("state", &format_args!("closed: {error}")),
        };
        s.finish()
    }
}

/// A socket with the AMQP handshake done, ready for the connection task.
pub(crate) struct OpenedSocket {
    pub(crate) transport: Transport,
    pub(crate) opened: Opened,
    /// What was read past the handshake.
    pub(crate) read: BytesMut,
    /// The broker that answered.
    pub(crate) address: BrokerAddress,
}

/// Opens a socket to one of `config`'s addresses: TCP (and TLS), the AMQP
/// handshake, tuning and the virtual host, each address within
/// `config.connection_timeout`.
///
/// An address that cannot be reached moves on to the next; a refusal
/// that every node would repeat (wrong password, unknown vhost) ends at
/// once. When none answers, the error is [`Error::NoBrokerReachable`]
/// with every attempt (with one address, that attempt's error).
pub(crate) async fn open_socket(config: &ConnectionConfig) -> Result<OpenedSocket> {
    let addresses = config.addresses();
    let several = addresses.len() > 1;
    let mut attempts = Vec::with_capacity(addresses.len());
    for address in addresses {
        match open_one(config.for_address(&address)).await {
            Ok((transport, opened, read)) => {
                return Ok(OpenedSocket {
                    transport,
                    opened,
                    read,
                    address,
                })
            }
            Err(error) if several && error.is_connection_error() => {
                attempts.push((address.to_string(), error));
            }
            Err(error) => return Err(error),
        }
    }
    Err(Error::NoBrokerReachable { attempts })
}

/// Opens a socket to `config`'s `host:port`.
async fn open_one(config: ConnectionConfig) -> Result<(Transport, Opened, BytesMut)> {
    let span =
        tracing::info_span!("amqp_connection", address = %config.address(), vhost = %config.vhost);
    let opened = open_in(&config).instrument(span.clone()).await;
    match &opened {
        // The address is in the span; the error never holds a password.
        Err(error) => span.in_scope(|| tracing::warn!(%error, "could not open the connection")),
        Ok((_, opened, _)) => span.in_scope(|| {
            tracing::info!(
                channel_max = opened.tuning.channel_max,
                frame_max = opened.tuning.frame_max,
                heartbeat = opened.tuning.heartbeat,
                "connection open"
            )
        }),
    }
    opened
}

async fn open_in(config: &ConnectionConfig) -> Result<(Transport, Opened, BytesMut)> {
    let timeout = config.connection_timeout;
    let stage = Arc::new(OnceLock::new());
    let opening = async {
        let mut transport = transport::connect(config).await?;
        let _ = stage.set("AMQP handshake");
        let (opened, read) = driver::handshake(&mut transport, config).await?;
        Ok::<_, Error>((transport, opened, read))
    };
    match tokio::time::timeout(timeout, opening).await {
        Ok(result) => result,
        Err(_) => Err(Error::ConnectTimeout {
            address: config.address(),
            after: timeout,
            stage: stage
                .get()
                .copied()
                .unwrap_or("TCP connect or TLS handshake"),
        }),
    }
}

impl ConnectionInner {
    /// The broker the connection is on now (`host:port`).
    pub(crate) fn address(&self) -> String {
        lock_address(&self.address).clone()
    }

    /// The name the server-named queue first declared as `name` has now.
    /// Nothing to look at on a plain connection; no allocation either way.
    pub(crate) fn renamed_queue(&self, name: &str) -> Option<ShortString> {
        if !self.robust {
            return None;
        }
        let renames = self
            .renames
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut current = renames.get(name)?;
        // Renamed at each reconnection: follow to the last name.
        for _ in 0..renames.len() {
            match renames.get(current.as_str()) {
                Some(next) => current = next,
                None => break,
            }
        }
        Some(current.clone())
    }

    /// `Err(Reconnecting)` while the connection is down and its policy
    /// says to fail fast.
    pub(crate) fn check_up(&self) -> Result<()> {
        if self.fail_fast && self.down.load(Ordering::Acquire) {
            return Err(Error::Reconnecting);
        }
        Ok(())
    }

    /// The error to report when the task is gone.
    pub(crate) fn closed_error(&self) -> Error {
        self.closed
            .get()
            .cloned()
            .unwrap_or_else(|| Error::ConnectionClosed(CloseReason::normal(Initiator::Client)))
    }

    /// Sends a command; fails with the close reason when the task is gone.
    pub(crate) fn send(&self, command: Command) -> Result<()> {
        self.commands.send(command).map_err(|_| self.closed_error())
    }
}

impl Drop for ConnectionInner {
    fn drop(&mut self) {
        // Dropping the last handle closes the connection; the task also
        // notices the closed command queue, this only says it sooner.
        let _ = self.commands.send(Command::CloseConnection {
            code: 200,
            text: "every handle of the connection was dropped".into(),
            reply: None,
        });
    }
}

/// The current address; a poisoned lock holds a whole string still.
pub(crate) fn lock_address(address: &Mutex<String>) -> MutexGuard<'_, String> {
    address
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An open AMQP connection.
///
/// Cheap to clone: every clone (and every [`Channel`]) talks to the same
/// connection task. When the last handle of the connection and of its
/// channels is dropped, the connection closes with code 200 (the drop
/// does not wait for it).
///
/// ```no_run
/// # async fn example() -> Result<(), amqp_conn::Error> {
/// use amqp_conn::{Connection, ConnectionConfig};
///
/// let connection = Connection::open(ConnectionConfig::from_url("amqp://guest:guest@localhost:5672/%2f")?).await?;
/// let channel = connection.open_channel().await?;
/// // ...
/// channel.close().await?;
/// connection.close().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Connection {
    pub(crate) inner: Arc<ConnectionInner>,
}

/// `Connection { address: "127.0.0.1:5672", vhost: "/", state: "open" }`.
impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl Connection {
    /// Opens a connection: TCP (and TLS), the AMQP handshake, tuning and
    /// the virtual host, all within `config.connection_timeout`.
    ///
    /// With fallback addresses (the nodes of a cluster, see
    /// [`ConnectionConfig::addresses`]) it tries each in turn, each within
    /// `connection_timeout`, and opens the first that answers. An address
    /// that cannot be reached moves on to the next; a refusal that every
    /// node would repeat (wrong password, unknown vhost) ends at once. When
    /// none answers, the error is [`Error::NoBrokerReachable`] with every
    /// attempt.
    ///
    /// # Cancel safety
    /// Dropping the future before it completes drops the half-open
    /// socket; nothing is left running.
    pub async fn open(config: ConnectionConfig) -> Result<Connection> {
        config.validate()?;
        let socket = open_socket(&config).await?;
        let address = socket.address.to_string();
        let span =
            tracing::info_span!("amqp_connection", address = %address, vhost = %config.vhost);
        let OpenedSocket {
            transport,
            opened,
            read,
            ..
        } = socket;
        let events = EventSender::default();
        let (commands_tx, commands_rx) = mpsc::unbounded_channel();
        let publish_permits = Arc::new(Semaphore::new(PUBLISH_QUEUE));
        let closed = Arc::new(OnceLock::new());
        let current_address = Arc::new(Mutex::new(address));
        let mut state = ConnectionState::new(
            opened.tuning,
            config.max_body_size,
            events.clone(),
            Instant::now(),
        );
        state.set_robust(config.reconnect.is_some());
        let renames = state.renames();
        let down = Arc::new(AtomicBool::new(false));
        let reconnect = config.reconnect.clone().map(|policy| driver::Reconnect {
            config: config.clone(),
            policy,
            address: current_address.clone(),
            down: down.clone(),
        });
        driver::spawn(
            Driver::new(
                transport,
                read,
                state,
                commands_rx,
                publish_permits.clone(),
                reconnect,
                config.write_batch,
            ),
            closed.clone(),
            span,
        );
        Ok(Connection {
            inner: Arc::new(ConnectionInner {
                address: current_address,
                vhost: config.vhost.clone(),
                name: config.connection_name.clone(),
                commands: commands_tx,
                publish_permits,
                events,
                closed,
                tuning: opened.tuning,
                server_properties: opened.server_properties,
                server_properties_table: OnceLock::new(),
                max_body_size: config.max_body_size,
                renames,
                robust: config.reconnect.is_some(),
                fail_fast: config.reconnect.as_ref().is_some_and(|p| p.fail_fast),
                down,
            }),
        })
    }

    /// Opens a channel with the lowest free number.
    ///
    /// # Cancel safety
    /// If the future is dropped after the request was sent, the channel
    /// still opens and is closed again when its handle is dropped.
    pub async fn open_channel(&self) -> Result<Channel> {
        self.open_channel_inner(None).await
    }

    /// Opens channel number `id` (1 to channel_max); fails with
    /// [`Error::ChannelUnavailable`] when it is in use.
    pub async fn open_channel_with_id(&self, id: u16) -> Result<Channel> {
        self.open_channel_inner(Some(id)).await
    }

    async fn open_channel_inner(&self, id: Option<u16>) -> Result<Channel> {
        self.inner.check_up()?;
        let (reply, rx) = oneshot::channel();
        self.inner.send(Command::OpenChannel { id, reply })?;
        let (r, shared) = rx.await.map_err(|_| self.inner.closed_error())??;
        Ok(Channel::new(r, shared, self.inner.clone()))
    }

    /// Closes the connection with code 200. First waits (at most 5
    /// seconds) until publishes held back (blocked connection, full write
    /// buffer) are written and the confirms of publishes sent arrive, so
    /// each publish ends with the broker's answer; then sends
    /// `connection.close` and waits for close-ok (at most 5 seconds). What
    /// is still pending then ends with [`Error::ConnectionClosed`].
    ///
    /// # Cancel safety
    /// Dropping the future does not stop the close.
    pub async fn close(&self) -> Result<()> {
        self.close_with(200, "closed by the application").await
    }

    /// Closes the connection with a reply code and text of your choice.
    pub async fn close_with(&self, code: u16, text: &str) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        if self
            .inner
            .send(Command::CloseConnection {
                code,
                text: text.to_string(),
                reply: Some(reply),
            })
            .is_err()
        {
            return Ok(());
        }
        rx.await.unwrap_or(Ok(()))
    }

    /// Subscribes to the connection's events: blocked/unblocked, channels
    /// closed by the broker, returned messages without confirms, close.
    /// A subscriber that falls more than 256 events behind misses the
    /// oldest ones (`RecvError::Lagged`).
    pub fn events(&self) -> broadcast::Receiver<ConnectionEvent> {
        self.inner.events.subscribe()
    }

    /// Why the connection closed, once it has.
    pub fn close_reason(&self) -> Option<Error> {
        self.inner.closed.get().cloned()
    }

    /// True once the connection task has ended.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.get().is_some() || self.inner.commands.is_closed()
    }

    /// The broker's `host:port` (never the credentials): with several
    /// addresses, the one connected to now.
    pub fn address(&self) -> String {
        self.inner.address()
    }

    /// The virtual host.
    pub fn vhost(&self) -> &str {
        &self.inner.vhost
    }

    /// The negotiated limits.
    pub fn tuning(&self) -> Tuning {
        self.inner.tuning
    }

    /// What the broker confirmed this connection declared, bound and
    /// consumes, in the order it confirmed it: exchanges and queues (not
    /// passive declares; a queue declared with `""` under the name the
    /// broker chose), queue and exchange bindings, consumers with their
    /// tags. A delete, unbind or cancel removes what it undoes (a queue
    /// takes its bindings and consumers with it, an auto-delete queue
    /// goes with its last consumer), and a closed channel its consumers.
    /// This is what a reconnection replays.
    ///
    /// ```no_run
    /// # async fn example(connection: amqp_conn::Connection) -> amqp_conn::Result<()> {
    /// for entry in connection.topology().await? {
    ///     println!("{entry:?}");
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Cancel safety
    /// Dropping the future only stops waiting.
    pub async fn topology(&self) -> Result<Vec<crate::TopologyEntry>> {
        let (reply, rx) = oneshot::channel();
        self.inner.send(Command::Topology { reply })?;
        rx.await.map_err(|_| self.inner.closed_error())?
    }

    /// True when the connection reconnects when lost (it was opened with
    /// a [`ReconnectPolicy`](crate::ReconnectPolicy)).
    pub fn is_robust(&self) -> bool {
        self.inner.robust
    }

    /// The name a queue the broker named `name` has now: after a
    /// reconnection, a server-named queue is declared again and the broker
    /// names it anew (see [`ConnectionEvent::QueueRenamed`]). `None` when
    /// it was not renamed.
    pub fn renamed_queue(&self, name: &str) -> Option<ShortString> {
        self.inner.renamed_queue(name)
    }

    /// What the broker said about itself (product, version, capabilities).
    pub fn server_properties(&self) -> &FieldTable {
        let inner = &self.inner;
        inner.server_properties_table.get_or_init(|| {
            // Encoded by the handshake from a table it decoded.
            amqp_wire::decode_field_table(&inner.server_properties).unwrap_or_default()
        })
    }
}
