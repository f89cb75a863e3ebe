//! Pools of connections and channels: aio-pika's `Pool`, on
//! [deadpool](https://docs.rs/deadpool)'s managed pool. Everything public
//! here is re-exported at the crate root; [`Pool`] documents it.

use std::fmt;
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::time::Duration;

use deadpool::managed::{self, Manager, Metrics, ObjectId, RecycleError, RecycleResult};
use deadpool::{Runtime, Status};
use pika::{Channel, ConnectOptions, Connection};

/// The pool crate these pools are built on, for its [`Manager`] trait and
/// [`Status`].
pub use deadpool;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A pool of connections, made by a [`ConnectionManager`].
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use pika_patterns::ConnectionPool;
///
/// let pool = ConnectionPool::from_url("amqp://guest:guest@127.0.0.1/", 2)?;
/// let connection = pool.acquire().await?;
/// let channel = connection.channel().await?;
/// // `connection` goes back to the pool when dropped.
/// # Ok(())
/// # }
/// ```
pub type ConnectionPool = Pool<Connection>;

/// A pool of channels, made by a [`ChannelManager`] (on the connections
/// of a [`ConnectionPool`]).
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use pika::Message;
/// use pika_patterns::{ChannelPool, ConnectionPool};
///
/// let connections = ConnectionPool::from_url("amqp://guest:guest@127.0.0.1/", 2)?;
/// let channels = ChannelPool::from_connections(connections, 10);
///
/// let channel = channels.acquire().await?;
/// channel
///     .default_exchange()
///     .publish(Message::new("hello"), "pool_queue")
///     .await?;
/// # Ok(())
/// # }
/// ```
pub type ChannelPool = Pool<Channel>;

/// Whether a pooled item can still be used. The pools check it each time
/// they hand an item out: an unusable one is dropped and replaced.
///
/// Implement it for the items of a [`Pool::new`] factory (wrap a foreign
/// type in a type of your own if needed):
///
/// ```
/// use pika_patterns::Health;
///
/// struct Publisher {
///     channel: pika::Channel,
/// }
///
/// impl Health for Publisher {
///     fn is_usable(&self) -> bool {
///         self.channel.is_usable()
///     }
/// }
/// ```
pub trait Health {
    /// True while the item works; false once it is closed or broken.
    fn is_usable(&self) -> bool;
}

/// Usable while open.
impl Health for Connection {
    fn is_usable(&self) -> bool {
        !self.is_closed()
    }
}

/// Usable while open: neither the channel nor its connection closed.
impl Health for Channel {
    fn is_usable(&self) -> bool {
        !self.is_closed()
    }
}

impl<T: Health + ?Sized> Health for Box<T> {
    fn is_usable(&self) -> bool {
        (**self).is_usable()
    }
}

impl<T: Health + ?Sized> Health for std::sync::Arc<T> {
    fn is_usable(&self) -> bool {
        (**self).is_usable()
    }
}

/// The recycle of every manager here: keep a usable item, drop the rest.
fn check<T: Health, E>(item: &T) -> RecycleResult<E> {
    if item.is_usable() {
        Ok(())
    } else {
        Err(RecycleError::message("closed"))
    }
}

/// Why [`Pool::acquire`] gave no item. `E` is the error of creating one:
/// [`pika::Error`] for connection and channel pools.
///
/// Its `Display` says what happened in one line; the cause of
/// [`Create`](PoolError::Create) is its [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError<E = pika::Error> {
    /// Every item stayed in use, the pool at its maximum size, for the
    /// whole wait timeout ([`Pool::wait_timeout`]).
    #[error("all {max_size} pooled {item}s stayed in use for {waited:?}: give them back sooner, or raise max_size or the wait timeout")]
    Timeout {
        /// What the pool holds: `connection`, `channel` or `item`.
        item: &'static str,
        /// The pool's maximum size.
        max_size: usize,
        /// How long `acquire` waited.
        waited: Duration,
    },
    /// Creating a new item took longer than the create timeout
    /// ([`Pool::create_timeout`]).
    #[error("creating a new pooled {item} took longer than {after:?}")]
    CreateTimeout {
        /// What the pool holds.
        item: &'static str,
        /// The create timeout.
        after: Duration,
    },
    /// Creating a new item failed: connecting, opening a channel, or the
    /// factory returned an error.
    #[error("could not create a new pooled item")]
    Create(#[source] E),
    /// The pool was closed ([`Pool::close`]).
    #[error("the {item} pool is closed")]
    Closed {
        /// What the pool held.
        item: &'static str,
    },
}

/// A failure to create an item.
impl<E> From<E> for PoolError<E> {
    fn from(error: E) -> Self {
        PoolError::Create(error)
    }
}

impl<E> PoolError<E> {
    /// True for [`Timeout`](PoolError::Timeout) and
    /// [`CreateTimeout`](PoolError::CreateTimeout).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            PoolError::Timeout { .. } | PoolError::CreateTimeout { .. }
        )
    }
}

/// A pool of items of type `T` (connections, channels, or anything a
/// factory makes) whose creation fails with `E`.
///
/// [`acquire`](Pool::acquire) hands out an idle item, or creates one while
/// the pool has fewer than `max_size` items, or waits for one to be given
/// back. The [`Pooled`] guard dereferences to the item and gives it back
/// when dropped. Items are handed out oldest-returned first, so that use
/// spreads over all of them. An item is checked ([`Health`], or the
/// manager's `recycle`) when it is handed out: a closed one is dropped,
/// and another taken or created in its place.
///
/// Cheap to clone: clones share the items. Built on deadpool's
/// [`managed::Pool`].
///
/// aio-pika's example, with a factory as there:
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use pika_patterns::{Pool, PoolError};
///
/// let connection_pool = Pool::new(
///     || pika::connect("amqp://guest:guest@127.0.0.1/"),
///     2,
/// );
/// let connections = connection_pool.clone();
/// let channel_pool = Pool::new(
///     move || {
///         let connections = connections.clone();
///         async move {
///             let connection = connections.acquire().await?;
///             // A failure to open the channel is a PoolError::Create too.
///             Ok::<_, PoolError>(connection.channel().await?)
///         }
///     },
///     10,
/// );
/// let channel = channel_pool.acquire().await?;
/// # Ok(())
/// # }
/// ```
///
/// [`ConnectionPool::from_url`] and [`ChannelPool::from_connections`] do
/// the same with typed errors. For code that builds deadpool pools itself,
/// the deadpool managers behind these pools are public:
/// [`ConnectionManager`], [`ChannelManager`] and [`FactoryManager`].
///
/// Unlike aio-pika's pool, these never hand out a connection or channel
/// that was already closed when `acquire` returned it.
pub struct Pool<T, E = pika::Error>
where
    T: Send + 'static,
    E: Send + 'static,
{
    inner: managed::Pool<Erased<T, E>>,
    item: &'static str,
    wait_timeout: Option<Duration>,
    create_timeout: Option<Duration>,
}

impl<T, E> Pool<T, E>
where
    T: Send + 'static,
    E: Send + 'static,
{
    /// A pool of at most `max_size` items made by `factory`
    /// (aio-pika's `Pool(factory, max_size=...)`). The items must say
    /// whether they are still usable ([`Health`]).
    ///
    /// A `max_size` of 0 makes a pool whose `acquire` never gives anything.
    pub fn new<F, Fut>(factory: F, max_size: usize) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Health,
    {
        Pool::from_manager(FactoryManager::new(factory), max_size)
    }

    /// A pool of at most `max_size` items made and checked by a deadpool
    /// [`Manager`].
    pub fn from_manager<M>(manager: M, max_size: usize) -> Self
    where
        M: Manager<Type = T> + 'static,
        M::Error: Into<PoolError<E>>,
    {
        Pool::with_item(manager, max_size, "item")
    }

    fn with_item<M>(manager: M, max_size: usize, item: &'static str) -> Self
    where
        M: Manager<Type = T> + 'static,
        M::Error: Into<PoolError<E>>,
    {
        let manager = Erased {
            inner: Box::new(manager),
        };
        let inner = managed::Pool::builder(manager)
            .max_size(max_size)
            .runtime(Runtime::Tokio1)
            .build()
            // Building fails only for timeouts without a runtime.
            .expect("a pool with a runtime builds");
        Pool {
            inner,
            item,
            wait_timeout: None,
            create_timeout: None,
        }
    }

    /// Makes [`acquire`](Pool::acquire) give up with
    /// [`PoolError::Timeout`] when no item comes free within `timeout`
    /// (default: it waits as long as it takes, as in aio-pika). Zero
    /// means: do not wait at all.
    pub fn wait_timeout(mut self, timeout: Duration) -> Self {
        self.wait_timeout = Some(timeout);
        self
    }

    /// Makes [`acquire`](Pool::acquire) give up with
    /// [`PoolError::CreateTimeout`] when creating a new item takes longer
    /// than `timeout` (default: none here; connecting has its own timeout,
    /// [`ConnectOptions::timeout`]).
    pub fn create_timeout(mut self, timeout: Duration) -> Self {
        self.create_timeout = Some(timeout);
        self
    }

    /// An item: an idle one, a new one while the pool is not full, or the
    /// next one given back. Idle items are checked first: closed ones are
    /// dropped.
    ///
    /// # Errors
    /// [`PoolError::Timeout`] after the wait timeout,
    /// [`PoolError::CreateTimeout`] after the create timeout,
    /// [`PoolError::Create`] when creating an item failed,
    /// [`PoolError::Closed`] once the pool is closed.
    ///
    /// # Cancel safety
    /// Dropping the future gives up the place in the queue; an item being
    /// created is dropped with it.
    pub async fn acquire(&self) -> Result<Pooled<T, E>, PoolError<E>> {
        let timeouts = managed::Timeouts {
            wait: self.wait_timeout,
            create: self.create_timeout,
            recycle: None,
        };
        match self.inner.timeout_get(&timeouts).await {
            Ok(object) => Ok(Pooled { object }),
            Err(error) => Err(self.error(error)),
        }
    }

    fn error(&self, error: managed::PoolError<PoolError<E>>) -> PoolError<E> {
        use managed::TimeoutType;
        let item = self.item;
        match error {
            // Already ours: a failed create, or the error of the
            // connection pool that a channel pool takes connections from.
            managed::PoolError::Backend(error) => error,
            managed::PoolError::Timeout(TimeoutType::Wait) => PoolError::Timeout {
                item,
                max_size: self.inner.status().max_size,
                waited: self.wait_timeout.unwrap_or_default(),
            },
            managed::PoolError::Timeout(TimeoutType::Create) => PoolError::CreateTimeout {
                item,
                after: self.create_timeout.unwrap_or_default(),
            },
            managed::PoolError::Closed => PoolError::Closed { item },
            // Recycling has no timeout, a runtime is always set, and no
            // hooks are installed: deadpool returns none of these here.
            managed::PoolError::Timeout(TimeoutType::Recycle) => {
                unreachable!("deadpool recycle timeout without one set")
            }
            managed::PoolError::NoRuntimeSpecified => unreachable!("the pool has a runtime"),
            managed::PoolError::PostCreateHook(_) => unreachable!("the pool has no hooks"),
        }
    }

    /// How many items there are, idle, and waited for.
    pub fn status(&self) -> Status {
        self.inner.status()
    }

    /// Closes the pool: every waiting and later [`acquire`](Pool::acquire)
    /// fails with [`PoolError::Closed`], and items given back from now on
    /// are dropped. Returns the idle items, to close them properly
    /// (dropping a connection closes it too, without waiting):
    ///
    /// ```no_run
    /// # async fn example(pool: pika_patterns::ConnectionPool) -> pika::Result<()> {
    /// for connection in pool.close() {
    ///     connection.close().await?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn close(&self) -> Vec<T> {
        let idle = self.inner.retain(|_, _| false).removed;
        self.inner.close();
        idle
    }

    /// True once [`close`](Pool::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }
}

impl Pool<Connection> {
    /// A pool of at most `max_size` connections to `url`.
    ///
    /// # Errors
    /// When the URL is invalid; nothing connects before the first
    /// [`acquire`](Pool::acquire).
    pub fn from_url(url: &str, max_size: usize) -> pika::Result<Self> {
        Ok(ConnectionPool::from_options(
            ConnectOptions::from_url(url)?,
            max_size,
        ))
    }

    /// A pool of at most `max_size` connections made with `options`.
    pub fn from_options(options: ConnectOptions, max_size: usize) -> Self {
        Pool::with_item(ConnectionManager::new(options), max_size, "connection")
    }
}

impl Pool<Channel> {
    /// A pool of at most `max_size` channels opened on the connections of
    /// `connections` (with publisher confirms, as
    /// [`Connection::channel`] opens them).
    pub fn from_connections(connections: ConnectionPool, max_size: usize) -> Self {
        ChannelPool::from_channel_manager(ChannelManager::new(connections), max_size)
    }

    /// A pool of at most `max_size` channels made by `manager` (to choose
    /// the channels' options, or where their connections come from).
    pub fn from_channel_manager(manager: ChannelManager, max_size: usize) -> Self {
        Pool::with_item(manager, max_size, "channel")
    }
}

impl<T, E> Clone for Pool<T, E>
where
    T: Send + 'static,
    E: Send + 'static,
{
    fn clone(&self) -> Self {
        Pool {
            inner: self.inner.clone(),
            item: self.item,
            wait_timeout: self.wait_timeout,
            create_timeout: self.create_timeout,
        }
    }
}

/// `Pool { item: "channel", max_size: 10, size: 3, available: 2, waiting: 0, .. }`
impl<T, E> fmt::Debug for Pool<T, E>
where
    T: Send + 'static,
    E: Send + 'static,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.inner.status();
        f.debug_struct("Pool")
            .field("item", &self.item)
            .field("max_size", &status.max_size)
            .field("size", &status.size)
            .field("available", &status.available)
            .field("waiting", &status.waiting)
            .field("closed", &self.inner.is_closed())
            .field("wait_timeout", &self.wait_timeout)
            .field("create_timeout", &self.create_timeout)
            .finish()
    }
}

/// An item taken from a [`Pool`]: dereferences to it, and gives it back
/// to the pool when dropped.
pub struct Pooled<T, E = pika::Error>
where
    T: Send + 'static,
    E: Send + 'static,
{
    object: managed::Object<Erased<T, E>>,
}

impl<T, E> Pooled<T, E>
where
    T: Send + 'static,
    E: Send + 'static,
{
    /// Takes the item out of the pool for good: the pool forgets it and
    /// makes room for a new one.
    pub fn take(this: Self) -> T {
        managed::Object::take(this.object)
    }

    /// The item's number in its pool, unique in the pool.
    pub fn id(this: &Self) -> ObjectId {
        managed::Object::id(&this.object)
    }

    /// When the item was created, last handed out again, and how often it
    /// was.
    pub fn metrics(this: &Self) -> &Metrics {
        managed::Object::metrics(&this.object)
    }
}

impl<T, E> Deref for Pooled<T, E>
where
    T: Send + 'static,
    E: Send + 'static,
{
    type Target = T;

    fn deref(&self) -> &T {
        &self.object
    }
}

impl<T, E> DerefMut for Pooled<T, E>
where
    T: Send + 'static,
    E: Send + 'static,
{
    fn deref_mut(&mut self) -> &mut T {
        &mut self.object
    }
}

/// The item's Debug.
impl<T, E> fmt::Debug for Pooled<T, E>
where
    T: Send + fmt::Debug + 'static,
    E: Send + 'static,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        T::fmt(self, f)
    }
}

/// A deadpool [`Manager`] of connections: connects with the options it
/// was given, and drops closed connections.
///
/// For [`ConnectionPool`], or for a deadpool pool of one's own:
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use pika_patterns::{deadpool, ConnectionManager};
///
/// let manager = ConnectionManager::from_url("amqp://guest:guest@127.0.0.1/")?;
/// let pool: deadpool::managed::Pool<ConnectionManager> =
///     deadpool::managed::Pool::builder(manager).max_size(2).build()?;
/// let connection = pool.get().await?;
/// let channel = connection.channel().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct ConnectionManager {
    options: ConnectOptions,
}

impl ConnectionManager {
    /// Connects with `options`.
    pub fn new(options: ConnectOptions) -> Self {
        ConnectionManager { options }
    }

    /// Connects to `url`.
    ///
    /// # Errors
    /// When the URL is invalid.
    pub fn from_url(url: &str) -> pika::Result<Self> {
        Ok(ConnectionManager::new(ConnectOptions::from_url(url)?))
    }

    /// The options it connects with.
    pub fn options(&self) -> &ConnectOptions {
        &self.options
    }
}

impl Manager for ConnectionManager {
    type Type = Connection;
    type Error = pika::Error;

    async fn create(&self) -> pika::Result<Connection> {
        pika::connect_with(self.options.clone()).await
    }

    async fn recycle(
        &self,
        connection: &mut Connection,
        _: &Metrics,
    ) -> RecycleResult<pika::Error> {
        check(connection)
    }
}

/// A deadpool [`Manager`] of channels: opens them on a connection of a
/// [`ConnectionPool`] (given back right after), or of a factory, and drops
/// closed channels (a channel closes with its connection, too).
///
/// Its error is the connection pool's [`PoolError`]: no connection came
/// free, connecting failed, or opening the channel failed
/// ([`PoolError::Create`]).
///
/// ```no_run
/// # async fn example(connections: pika_patterns::ConnectionPool) {
/// use pika_patterns::{ChannelManager, ChannelPool};
///
/// // Channels without publisher confirms.
/// let manager = ChannelManager::new(connections).publisher_confirms(false);
/// let channels = ChannelPool::from_channel_manager(manager, 10);
/// # }
/// ```
pub struct ChannelManager {
    source: ConnectionSource,
    publisher_confirms: bool,
    operation_timeout: Option<Duration>,
}

type ConnectionFactory =
    Box<dyn Fn() -> BoxFuture<'static, pika::Result<Connection>> + Send + Sync>;

enum ConnectionSource {
    Pool(ConnectionPool),
    Factory(ConnectionFactory),
}

impl ChannelManager {
    /// Opens channels on the connections of `connections`.
    pub fn new(connections: ConnectionPool) -> Self {
        ChannelManager::with_source(ConnectionSource::Pool(connections))
    }

    /// Opens each channel on the connection `factory` gives, for
    /// connections that come from elsewhere: one the application already
    /// has, or its own reconnecting logic.
    ///
    /// ```no_run
    /// # async fn example() -> pika::Result<()> {
    /// use pika_patterns::{ChannelManager, ChannelPool};
    ///
    /// // Every channel of the pool on one connection.
    /// let connection = pika::connect("amqp://guest:guest@127.0.0.1/").await?;
    /// let manager = ChannelManager::from_factory(move || {
    ///     let connection = connection.clone();
    ///     async move { Ok(connection) }
    /// });
    /// let channels = ChannelPool::from_channel_manager(manager, 10);
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_factory<F, Fut>(factory: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = pika::Result<Connection>> + Send + 'static,
    {
        ChannelManager::with_source(ConnectionSource::Factory(Box::new(move || {
            Box::pin(factory())
        })))
    }

    fn with_source(source: ConnectionSource) -> Self {
        ChannelManager {
            source,
            publisher_confirms: true,
            operation_timeout: None,
        }
    }

    /// Opens the channels with publisher confirms or without (default:
    /// with; see [`OpenChannel::publisher_confirms`](pika::OpenChannel::publisher_confirms)).
    pub fn publisher_confirms(mut self, on: bool) -> Self {
        self.publisher_confirms = on;
        self
    }

    /// Opens the channels with this operation timeout (see
    /// [`OpenChannel::operation_timeout`](pika::OpenChannel::operation_timeout)).
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = Some(timeout);
        self
    }

    async fn open(&self, connection: &Connection) -> pika::Result<Channel> {
        let mut open = connection
            .channel()
            .publisher_confirms(self.publisher_confirms);
        if let Some(timeout) = self.operation_timeout {
            open = open.operation_timeout(timeout);
        }
        open.await
    }
}

impl Manager for ChannelManager {
    type Type = Channel;
    type Error = PoolError;

    async fn create(&self) -> Result<Channel, PoolError> {
        match &self.source {
            // As in aio-pika: the connection is taken from its pool while
            // the channel opens, then given back. The channel keeps the
            // connection open.
            ConnectionSource::Pool(pool) => {
                let connection = pool.acquire().await?;
                Ok(self.open(&connection).await?)
            }
            ConnectionSource::Factory(factory) => {
                let connection = factory().await?;
                Ok(self.open(&connection).await?)
            }
        }
    }

    async fn recycle(&self, channel: &mut Channel, _: &Metrics) -> RecycleResult<PoolError> {
        check(channel)
    }
}

impl fmt::Debug for ChannelManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("ChannelManager");
        match &self.source {
            ConnectionSource::Pool(pool) => debug.field("connections", pool),
            ConnectionSource::Factory(_) => debug.field("connections", &"factory"),
        };
        debug
            .field("publisher_confirms", &self.publisher_confirms)
            .field("operation_timeout", &self.operation_timeout)
            .finish()
    }
}

/// A deadpool [`Manager`] of the items an async factory makes: calls the
/// factory to create one, and drops those no longer usable ([`Health`]).
/// [`Pool::new`] is a [`Pool`] of this manager.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use pika_patterns::{deadpool, FactoryManager};
///
/// let manager = FactoryManager::new(|| pika::connect("amqp://guest:guest@127.0.0.1/"));
/// let pool: deadpool::managed::Pool<FactoryManager<_>> =
///     deadpool::managed::Pool::builder(manager).max_size(2).build()?;
/// let connection = pool.get().await?;
/// let channel = connection.channel().await?;
/// # Ok(())
/// # }
/// ```
pub struct FactoryManager<F> {
    factory: F,
}

impl<F> FactoryManager<F> {
    /// Creates items with `factory`.
    pub fn new(factory: F) -> Self {
        FactoryManager { factory }
    }
}

impl<F, Fut, T, E> Manager for FactoryManager<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<T, E>> + Send,
    T: Health + Send,
    E: Send,
{
    type Type = T;
    type Error = E;

    async fn create(&self) -> Result<T, E> {
        (self.factory)().await
    }

    async fn recycle(&self, item: &mut T, _: &Metrics) -> RecycleResult<E> {
        check(item)
    }
}

impl<F> fmt::Debug for FactoryManager<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FactoryManager").finish_non_exhaustive()
    }
}

/// Any [`Manager`] whose error becomes a [`PoolError<E>`], behind one type
/// per item and error type, so that `Pool<Channel>` is one type whatever
/// makes the channels.
struct Erased<T, E> {
    inner: Box<dyn DynManager<T, E>>,
}

trait DynManager<T, E>: Send + Sync {
    fn create(&self) -> BoxFuture<'_, Result<T, PoolError<E>>>;

    fn recycle<'a>(
        &'a self,
        item: &'a mut T,
        metrics: &'a Metrics,
    ) -> BoxFuture<'a, RecycleResult<PoolError<E>>>;
}

impl<M, E> DynManager<M::Type, E> for M
where
    M: Manager,
    M::Error: Into<PoolError<E>>,
{
    fn create(&self) -> BoxFuture<'_, Result<M::Type, PoolError<E>>> {
        Box::pin(async move { Manager::create(self).await.map_err(Into::into) })
    }

    fn recycle<'a>(
        &'a self,
        item: &'a mut M::Type,
        metrics: &'a Metrics,
    ) -> BoxFuture<'a, RecycleResult<PoolError<E>>> {
        Box::pin(async move {
            Manager::recycle(self, item, metrics)
                .await
                .map_err(|error| match error {
                    RecycleError::Message(message) => RecycleError::Message(message),
                    RecycleError::Backend(error) => RecycleError::Backend(error.into()),
                })
        })
    }
}

impl<T: Send, E: Send> Manager for Erased<T, E> {
    type Type = T;
    type Error = PoolError<E>;

    async fn create(&self) -> Result<T, PoolError<E>> {
        self.inner.create().await
    }

    async fn recycle(&self, item: &mut T, metrics: &Metrics) -> RecycleResult<PoolError<E>> {
        self.inner.recycle(item, metrics).await
    }
}
