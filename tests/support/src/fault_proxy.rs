//! [`FaultProxy`]: a TCP proxy between a client and a broker that breaks
//! the network on demand (FIN, RST, silence, latency, a cut after so many
//! bytes, refused connects), and [`FreezableProxy`], the older proxy that
//! only goes silent, now a thin wrapper over it.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

/// The most bytes read from a socket at once: one forwarded chunk.
const CHUNK_SIZE: usize = 64 * 1024;
/// Chunks read but not yet written, per direction of a connection (they
/// wait there while delayed or black-holed).
const CHUNKS_IN_FLIGHT: usize = 64;
/// How long a connection closed with FIN keeps reading (and dropping)
/// what its peers still send, so that closing the socket does not turn
/// the FIN into an RST (Linux resets a socket closed with unread data).
const DRAIN_AFTER_FIN: Duration = Duration::from_secs(1);
/// The listen backlog.
const BACKLOG: u32 = 1024;

/// Which way bytes travel through a [`FaultProxy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the client that connected to the proxy to the target (the
    /// broker).
    ClientToBroker,
    /// From the target (the broker) back to the client.
    BrokerToClient,
}

impl Direction {
    fn index(self) -> usize {
        match self {
            Direction::ClientToBroker => 0,
            Direction::BrokerToClient => 1,
        }
    }
}

/// A TCP proxy from `127.0.0.1:PORT` (a free port) to a target
/// `host:port`, that injects network faults while it runs.
///
/// Each accepted client gets its own connection to the target and one
/// tokio task that forwards both ways. Every fault is switched at run time
/// through this handle, which is cheap to clone (all clones control the
/// same proxy):
///
/// | fault | what the client and the broker see |
/// | --- | --- |
/// | [`cut`](Self::cut) | FIN: a clean end of stream on every open connection |
/// | [`reset`](Self::reset) | RST: `ECONNRESET` on every open connection |
/// | [`black_hole`](Self::black_hole) | nothing arrives either way, nothing closes |
/// | [`delay`](Self::delay) | every chunk arrives that much later |
/// | [`cut_after_bytes`](Self::cut_after_bytes) | the next connection ends (FIN) after exactly that many bytes one way |
/// | [`refuse`](Self::refuse) | new connects fail with `ECONNREFUSED` |
///
/// Dropping the last handle stops the proxy: the port stops listening and
/// every connection is closed with FIN. The proxy's tasks run on the tokio
/// runtime that [`start`](Self::start) was called on, and end with it.
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use pika_test_support::FaultProxy;
/// let proxy = FaultProxy::start("127.0.0.1:5672").await?;
/// let url = proxy.url(); // connect the client under test here
/// proxy.cut().await; // every open connection gets a FIN
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct FaultProxy {
    handle: Arc<ProxyHandle>,
}

/// What the handles share; dropping it (with the last handle) stops the
/// proxy. The tasks hold only [`Shared`], never this.
struct ProxyHandle {
    address: SocketAddr,
    target: String,
    shared: Arc<Shared>,
    /// To the accept task; dropping it ends that task.
    listener_commands: mpsc::UnboundedSender<ListenerCommand>,
}

/// The state the handle and the tasks share.
struct Shared {
    black_hole: watch::Sender<bool>,
    delay_nanos: AtomicU64,
    cut_after: Mutex<Option<CutAfter>>,
    connections: Mutex<Connections>,
    accepted: AtomicU64,
    open: AtomicU64,
    bytes: [AtomicU64; 2],
}

/// The connections being forwarded, by id, each with the channel that
/// tells it to close.
#[derive(Default)]
struct Connections {
    /// Set when the last handle is dropped: no connection is added after.
    stopped: bool,
    next_id: u64,
    orders: HashMap<u64, mpsc::UnboundedSender<CloseOrder>>,
}

/// An armed [`FaultProxy::cut_after_bytes`]: the next `connections`
/// accepted connections are cut after `bytes` bytes one way.
#[derive(Debug, Clone, Copy)]
struct CutAfter {
    bytes: u64,
    direction: Direction,
    connections: usize,
}

/// How a connection is closed.
#[derive(Debug, Clone, Copy)]
enum CloseKind {
    /// Shut down writing (FIN) to both peers, then drop.
    Fin,
    /// `SO_LINGER` 0, then drop: RST to both peers.
    Reset,
}

/// Tells one connection to close; `done` is answered once it has.
struct CloseOrder {
    kind: CloseKind,
    done: Option<oneshot::Sender<()>>,
}

enum ListenerCommand {
    Refuse {
        on: bool,
        done: oneshot::Sender<io::Result<()>>,
    },
}

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1:0` to `target` (`host:port`, connected
    /// to afresh for every accepted client), forwarding faithfully until
    /// told otherwise.
    ///
    /// Must be called within a tokio runtime (it spawns the proxy's
    /// tasks). Fails only when no local port can be bound.
    pub async fn start(target: &str) -> io::Result<FaultProxy> {
        let listener = listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        let address = listener.local_addr()?;
        let shared = Arc::new(Shared {
            black_hole: watch::Sender::new(false),
            delay_nanos: AtomicU64::new(0),
            cut_after: Mutex::new(None),
            connections: Mutex::new(Connections::default()),
            accepted: AtomicU64::new(0),
            open: AtomicU64::new(0),
            bytes: [AtomicU64::new(0), AtomicU64::new(0)],
        });
        let (listener_commands, commands) = mpsc::unbounded_channel();
        tokio::spawn(accept_connections(
            listener,
            address,
            Arc::from(target),
            shared.clone(),
            commands,
        ));
        Ok(FaultProxy {
            handle: Arc::new(ProxyHandle {
                address,
                target: target.to_string(),
                shared,
                listener_commands,
            }),
        })
    }

    /// The port the proxy listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.handle.address.port()
    }

    /// `127.0.0.1:PORT`, the address to connect to instead of the target.
    pub fn address(&self) -> String {
        self.handle.address.to_string()
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`: the local broker's URL
    /// through the proxy.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.handle.address)
    }

    /// The `host:port` the proxy forwards to.
    pub fn target(&self) -> &str {
        &self.handle.target
    }

    /// Closes every connection open now with FIN: the proxy shuts down
    /// writing to the client and to the target, so both read a clean end
    /// of stream, then drops the sockets. Bytes read but not yet forwarded
    /// (delayed or held by a black hole) are dropped. Connections accepted
    /// later are not affected.
    ///
    /// Returns, once every FIN is sent, how many connections it closed.
    pub async fn cut(&self) -> usize {
        self.close_all(CloseKind::Fin).await
    }

    /// Closes every connection open now with RST: `SO_LINGER` 0, then the
    /// sockets are dropped, so the client and the target read
    /// `ECONNRESET` (`io::ErrorKind::ConnectionReset`). Connections
    /// accepted later are not affected.
    ///
    /// Returns, once the sockets are closed, how many connections it
    /// reset.
    pub async fn reset(&self) -> usize {
        self.close_all(CloseKind::Reset).await
    }

    async fn close_all(&self, kind: CloseKind) -> usize {
        let mut answers = Vec::new();
        for order in lock(&self.handle.shared.connections).orders.values() {
            let (done, answer) = oneshot::channel();
            if order
                .send(CloseOrder {
                    kind,
                    done: Some(done),
                })
                .is_ok()
            {
                answers.push(answer);
            }
        }
        let mut closed = 0;
        for answer in answers {
            if answer.await.is_ok() {
                closed += 1;
            }
        }
        closed
    }

    /// Turns the black hole on or off. While on, nothing is forwarded in
    /// either direction on any connection, open or new, and nothing is
    /// closed: the sockets stay open and silent, as when a cable is pulled
    /// or a firewall starts dropping packets. The proxy stops reading, so
    /// the peers' unsent bytes wait in their socket buffers (a writer that
    /// fills them blocks), and it does not notice a peer closing either.
    ///
    /// When turned off, forwarding resumes where it stopped, with nothing
    /// lost, as when a partition heals before TCP gives up. (A chunk that
    /// was being written at the moment it was turned on still arrives.)
    pub fn black_hole(&self, on: bool) {
        self.handle.shared.black_hole.send_replace(on);
    }

    /// True while the black hole is on.
    pub fn is_black_hole(&self) -> bool {
        *self.handle.shared.black_hole.borrow()
    }

    /// Sets the latency added to every forwarded chunk, both ways, on
    /// every connection: a chunk read at instant T is written at
    /// T + `latency` (or later), and chunks keep their order. A close
    /// (FIN) passed on from one side is delayed the same way.
    /// `Duration::ZERO` removes the latency.
    pub fn delay(&self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.handle
            .shared
            .delay_nanos
            .store(nanos, Ordering::SeqCst);
    }

    /// The latency [`delay`](Self::delay) set.
    pub fn current_delay(&self) -> Duration {
        self.handle.shared.delay()
    }

    /// Arms a cut for the next connection the proxy accepts: once `bytes`
    /// bytes have been forwarded in `direction` (exactly: a chunk that
    /// crosses the limit is split), the connection is closed with FIN
    /// both ways, as by [`cut`](Self::cut). With 0 it is closed as soon as
    /// it is connected to the target, before any byte passes.
    ///
    /// Connections open now and the ones after the next are not affected,
    /// which suits a sweep of cut points (a client that reconnects gets a
    /// healthy connection). Replaces any cut armed before.
    pub fn cut_after_bytes(&self, bytes: u64, direction: Direction) {
        self.cut_connections_after_bytes(1, bytes, direction);
    }

    /// Like [`cut_after_bytes`](Self::cut_after_bytes), for each of the
    /// next `connections` connections the proxy accepts (`usize::MAX`:
    /// every one until [`clear_cut_after_bytes`](Self::clear_cut_after_bytes)).
    pub fn cut_connections_after_bytes(
        &self,
        connections: usize,
        bytes: u64,
        direction: Direction,
    ) {
        *lock(&self.handle.shared.cut_after) = (connections > 0).then_some(CutAfter {
            bytes,
            direction,
            connections,
        });
    }

    /// Disarms a cut set by [`cut_after_bytes`](Self::cut_after_bytes)
    /// that has not been used up. Connections already accepted keep
    /// theirs.
    pub fn clear_cut_after_bytes(&self) {
        *lock(&self.handle.shared.cut_after) = None;
    }

    /// Refuses new connections (`on`), or accepts them again. While
    /// refusing, the proxy's port does not listen, so a connect fails at
    /// once with `ECONNREFUSED`, as when the broker is down (the port
    /// stays bound, not listening, so that no other socket takes it);
    /// connects waiting in the listen backlog when it is turned on are
    /// reset. Open connections are not affected.
    ///
    /// Returns once the port is closed or listens again. Fails when the
    /// port cannot be listened on again.
    pub async fn refuse(&self, on: bool) -> io::Result<()> {
        let (done, answer) = oneshot::channel();
        self.handle
            .listener_commands
            .send(ListenerCommand::Refuse { on, done })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Turns every fault off: no black hole, no delay, no armed cut, and
    /// new connections accepted. Connections already closed stay closed.
    pub async fn heal(&self) -> io::Result<()> {
        self.black_hole(false);
        self.delay(Duration::ZERO);
        self.clear_cut_after_bytes();
        self.refuse(false).await
    }

    /// How many connections the proxy has accepted since it started
    /// (including ones it could not connect to the target, and ones cut
    /// at once).
    pub fn connections_accepted(&self) -> u64 {
        self.handle.shared.accepted.load(Ordering::SeqCst)
    }

    /// How many connections the proxy is forwarding now (accepted and not
    /// yet closed by a peer or a fault).
    pub fn connections_open(&self) -> u64 {
        self.handle.shared.open.load(Ordering::SeqCst)
    }

    /// How many bytes the proxy has forwarded in `direction`, over all
    /// connections since it started (bytes dropped by a cut do not count).
    pub fn bytes_forwarded(&self, direction: Direction) -> u64 {
        self.handle.shared.bytes[direction.index()].load(Ordering::SeqCst)
    }
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("address", &self.handle.address)
            .field("target", &self.handle.target)
            .field("black_hole", &self.is_black_hole())
            .field("delay", &self.current_delay())
            .field("accepted", &self.connections_accepted())
            .field("open", &self.connections_open())
            .finish()
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        // The accept task ends when `listener_commands` is dropped, with
        // this; the connections are told to close here.
        let mut connections = lock(&self.shared.connections);
        connections.stopped = true;
        for (_, order) in connections.orders.drain() {
            let _ = order.send(CloseOrder {
                kind: CloseKind::Fin,
                done: None,
            });
        }
    }
}

impl Shared {
    fn delay(&self) -> Duration {
        Duration::from_nanos(self.delay_nanos.load(Ordering::SeqCst))
    }

    /// The cut armed for the connection being accepted, if any.
    fn take_cut_after(&self) -> Option<CutAfter> {
        let mut armed = lock(&self.cut_after);
        let cut = (*armed)?;
        *armed = match cut.connections {
            1 => None,
            usize::MAX => Some(cut),
            n => Some(CutAfter {
                connections: n - 1,
                ..cut
            }),
        };
        Some(cut)
    }

    /// Adds a connection; `None` once the proxy is stopped.
    fn register(&self) -> Option<(u64, mpsc::UnboundedReceiver<CloseOrder>)> {
        let mut connections = lock(&self.connections);
        if connections.stopped {
            return None;
        }
        let id = connections.next_id;
        connections.next_id += 1;
        let (order, orders) = mpsc::unbounded_channel();
        connections.orders.insert(id, order);
        self.open.fetch_add(1, Ordering::SeqCst);
        Some((id, orders))
    }

    fn unregister(&self, id: u64) {
        lock(&self.connections).orders.remove(&id);
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Locks a mutex, ignoring poisoning (the data stays consistent: every
/// critical section is a few assignments).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn stopped() -> io::Error {
    io::Error::other("the fault proxy's accept task has stopped")
}

/// A listening socket on `address`, with `SO_REUSEADDR` so that the port
/// can be listened on again after [`FaultProxy::refuse`].
fn listen(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(BACKLOG)
}

/// A socket bound to `address` and not listening: connects to it are
/// refused, and no other socket takes the port meanwhile.
fn reserve(address: SocketAddr) -> io::Result<TcpSocket> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    Ok(socket)
}

/// The accept task: accepts clients and spawns one task per connection,
/// closes and reopens the port for [`FaultProxy::refuse`], and ends when
/// the last handle is dropped.
async fn accept_connections(
    listener: TcpListener,
    address: SocketAddr,
    target: Arc<str>,
    shared: Arc<Shared>,
    mut commands: mpsc::UnboundedReceiver<ListenerCommand>,
) {
    let mut listener = Some(listener);
    // While refusing: the port, bound and not listening.
    let mut reserved: Option<TcpSocket> = None;
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => return,
                Some(ListenerCommand::Refuse { on: true, done }) => {
                    if let Some(closed) = listener.take() {
                        drop(closed);
                        // Refused either way; the reservation only keeps the port.
                        if let Ok(socket) = reserve(address) {
                            reserved.replace(socket);
                        }
                    }
                    let _ = done.send(Ok(()));
                }
                Some(ListenerCommand::Refuse { on: false, done }) => {
                    let result = match listener {
                        Some(_) => Ok(()),
                        None => {
                            drop(reserved.take());
                            listen(address).map(|reopened| listener = Some(reopened))
                        }
                    };
                    let _ = done.send(result);
                }
            },
            accepted = accept(listener.as_ref()) => match accepted {
                Ok(client) => {
                    shared.accepted.fetch_add(1, Ordering::SeqCst);
                    let cut_after = shared.take_cut_after();
                    match shared.register() {
                        Some((id, orders)) => {
                            tokio::spawn(run_connection(
                                client,
                                target.clone(),
                                shared.clone(),
                                id,
                                orders,
                                cut_after,
                            ));
                        }
                        None => drop(client),
                    }
                }
                // Out of file descriptors or similar: try again shortly.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
        }
    }
}

/// The next client, or never while the port is closed.
async fn accept(listener: Option<&TcpListener>) -> io::Result<TcpStream> {
    match listener {
        Some(listener) => listener.accept().await.map(|(client, _)| client),
        None => std::future::pending().await,
    }
}

/// How forwarding a connection ended.
enum Ending {
    /// Both peers closed (FIN), each passed on to the other.
    Closed,
    /// A peer reset or a write failed: reset the other.
    Broken,
    /// Told by the handle, by an armed cut, or because the proxy stopped.
    Close(CloseOrder),
}

/// One connection: connects to the target, forwards both ways until a
/// peer closes or a fault closes it.
async fn run_connection(
    mut client: TcpStream,
    target: Arc<str>,
    shared: Arc<Shared>,
    id: u64,
    mut orders: mpsc::UnboundedReceiver<CloseOrder>,
    cut_after: Option<CutAfter>,
) {
    let _ = client.set_nodelay(true);
    let connected = tokio::select! {
        connected = TcpStream::connect(&*target) => connected.map_err(|_| None),
        order = orders.recv() => Err(order),
    };
    let mut server = match connected {
        Ok(server) => server,
        Err(order) => {
            shared.unregister(id);
            match order {
                Some(CloseOrder {
                    kind: CloseKind::Fin,
                    done,
                }) => {
                    let _ = client.shutdown().await;
                    answer_done(done);
                }
                // Reset, or the target refused: the client sees a reset.
                Some(CloseOrder {
                    kind: CloseKind::Reset,
                    done,
                }) => {
                    let _ = client.set_zero_linger();
                    drop(client);
                    answer_done(done);
                }
                None => {
                    let _ = client.set_zero_linger();
                }
            }
            return;
        }
    };
    let _ = server.set_nodelay(true);
    let ending = relay(&mut client, &mut server, &shared, &mut orders, cut_after).await;
    shared.unregister(id);
    // Orders sent just before the unregistration: this connection is
    // closing anyway.
    orders.close();
    while let Ok(order) = orders.try_recv() {
        answer_done(order.done);
    }
    match ending {
        Ending::Closed => {}
        Ending::Broken => reset_both(client, server),
        Ending::Close(CloseOrder {
            kind: CloseKind::Reset,
            done,
        }) => {
            reset_both(client, server);
            answer_done(done);
        }
        Ending::Close(CloseOrder {
            kind: CloseKind::Fin,
            done,
        }) => {
            let _ = client.shutdown().await;
            let _ = server.shutdown().await;
            answer_done(done);
            let _ = tokio::time::timeout(DRAIN_AFTER_FIN, async {
                tokio::join!(drain(&mut client), drain(&mut server))
            })
            .await;
        }
    }
}

fn answer_done(done: Option<oneshot::Sender<()>>) {
    if let Some(done) = done {
        let _ = done.send(());
    }
}

fn reset_both(client: TcpStream, server: TcpStream) {
    let _ = client.set_zero_linger();
    let _ = server.set_zero_linger();
}

/// Reads and drops until end of stream or an error.
async fn drain(stream: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    while let Ok(1..) = stream.read(&mut sink).await {}
}

/// Forwards both ways until the connection ends one way or another.
async fn relay(
    client: &mut TcpStream,
    server: &mut TcpStream,
    shared: &Shared,
    orders: &mut mpsc::UnboundedReceiver<CloseOrder>,
    cut_after: Option<CutAfter>,
) -> Ending {
    let limit = |direction| {
        cut_after
            .filter(|cut| cut.direction == direction)
            .map(|cut| cut.bytes)
    };
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    let upstream = forward(
        &mut client_read,
        &mut server_write,
        Direction::ClientToBroker,
        shared,
        limit(Direction::ClientToBroker),
    );
    let downstream = forward(
        &mut server_read,
        &mut client_write,
        Direction::BrokerToClient,
        shared,
        limit(Direction::BrokerToClient),
    );
    tokio::pin!(upstream, downstream);
    let (mut upstream_ended, mut downstream_ended) = (false, false);
    while !(upstream_ended && downstream_ended) {
        let flow = tokio::select! {
            order = orders.recv() => {
                // No sender left: the proxy stopped.
                return Ending::Close(order.unwrap_or(CloseOrder {
                    kind: CloseKind::Fin,
                    done: None,
                }));
            }
            flow = &mut upstream, if !upstream_ended => {
                upstream_ended = true;
                flow
            }
            flow = &mut downstream, if !downstream_ended => {
                downstream_ended = true;
                flow
            }
        };
        match flow {
            Flow::Ended => {}
            Flow::Broken => return Ending::Broken,
            Flow::LimitReached => {
                return Ending::Close(CloseOrder {
                    kind: CloseKind::Fin,
                    done: None,
                })
            }
        }
    }
    Ending::Closed
}

/// How one direction of a connection ended.
enum Flow {
    /// The sender closed (FIN); the FIN was passed on.
    Ended,
    /// A read or write failed (a reset, most likely).
    Broken,
    /// An armed cut's byte count was forwarded.
    LimitReached,
}

/// What the reading half of a direction hands to the writing half.
enum Chunk {
    /// Bytes, and when they were read.
    Bytes(Instant, Vec<u8>),
    /// End of stream, and when it was read.
    End(Instant),
    /// The read failed.
    Broken,
}

/// Forwards one direction: a reader and a writer joined by a bounded
/// queue of chunks, so that a delay is added to each chunk from when it
/// was read rather than piled up. `limit`: cut after that many bytes.
async fn forward(
    from: &mut ReadHalf<'_>,
    to: &mut WriteHalf<'_>,
    direction: Direction,
    shared: &Shared,
    limit: Option<u64>,
) -> Flow {
    if limit == Some(0) {
        return Flow::LimitReached;
    }
    let (chunks, mut queued) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let read = async {
        let mut black_hole = shared.black_hole.subscribe();
        let mut buffer = vec![0u8; CHUNK_SIZE];
        loop {
            wait_until_open(&mut black_hole).await;
            let chunk = match from.read(&mut buffer).await {
                Ok(0) => Chunk::End(Instant::now()),
                Ok(n) => Chunk::Bytes(Instant::now(), buffer[..n].to_vec()),
                Err(_) => Chunk::Broken,
            };
            let last = !matches!(chunk, Chunk::Bytes(..));
            if chunks.send(chunk).await.is_err() || last {
                // The writer decides how this direction ends.
                return std::future::pending::<Flow>().await;
            }
        }
    };
    let write = async {
        let mut black_hole = shared.black_hole.subscribe();
        let mut remaining = limit;
        while let Some(chunk) = queued.recv().await {
            match chunk {
                Chunk::Bytes(read_at, bytes) => {
                    wait_for_delay(shared, read_at).await;
                    wait_until_open(&mut black_hole).await;
                    let n = match remaining {
                        Some(left) => bytes.len().min(usize::try_from(left).unwrap_or(usize::MAX)),
                        None => bytes.len(),
                    };
                    if to.write_all(&bytes[..n]).await.is_err() {
                        return Flow::Broken;
                    }
                    shared.bytes[direction.index()].fetch_add(n as u64, Ordering::SeqCst);
                    if let Some(left) = remaining.as_mut() {
                        *left -= n as u64;
                        if *left == 0 {
                            return Flow::LimitReached;
                        }
                    }
                }
                Chunk::End(read_at) => {
                    wait_for_delay(shared, read_at).await;
                    wait_until_open(&mut black_hole).await;
                    let _ = to.shutdown().await;
                    return Flow::Ended;
                }
                Chunk::Broken => return Flow::Broken,
            }
        }
        // The reader ends with End or Broken before dropping the queue.
        Flow::Broken
    };
    tokio::select! {
        flow = write => flow,
        flow = read => flow,
    }
}

/// Waits while the black hole is on.
async fn wait_until_open(black_hole: &mut watch::Receiver<bool>) {
    // The sender lives in `Shared`, which outlives this connection.
    let _ = black_hole.wait_for(|on| !*on).await;
}

/// Waits until the chunk read at `read_at` is due.
async fn wait_for_delay(shared: &Shared, read_at: Instant) {
    let delay = shared.delay();
    if delay.is_zero() {
        return;
    }
    let due = read_at + delay;
    if due > Instant::now() {
        tokio::time::sleep_until(due).await;
    }
}

/// A TCP proxy to the broker that can stop forwarding in both directions
/// while keeping the sockets open: the network goes silent, as when a
/// cable is pulled or a firewall drops packets.
///
/// The first proxy of these tests, kept for the tests written with it: a
/// thin wrapper over [`FaultProxy`], whose [`black_hole`](FaultProxy::black_hole)
/// it turns on. New tests use [`FaultProxy`].
#[derive(Debug)]
pub struct FreezableProxy {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    proxy: FaultProxy,
}

impl FreezableProxy {
    /// Starts a proxy to `target` (`host:port`).
    ///
    /// # Panics
    /// When no local port can be bound (the test cannot go on).
    pub async fn start(target: &str) -> FreezableProxy {
        let proxy = FaultProxy::start(target)
            .await
            .expect("bind the proxy on 127.0.0.1");
        FreezableProxy {
            port: proxy.port(),
            proxy,
        }
    }

    /// Stops forwarding in both directions, for good; the sockets stay
    /// open.
    pub fn freeze(&self) {
        self.proxy.black_hole(true);
    }

    /// The [`FaultProxy`] underneath, for the other faults.
    pub fn fault_proxy(&self) -> &FaultProxy {
        &self.proxy
    }
}
