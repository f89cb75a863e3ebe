//! Channels: declaring exchanges and queues, quality of service,
//! transactions.

use std::time::Duration;

use amqp_wire::{BasicQos, ExchangeDeclare, FieldTable, FieldValue, QueueDeclare, Request};

use crate::builder::{flag_setters, into_future, timeout_for, with_timeout};
use crate::error::{Error, Result};
use crate::exchange::{Exchange, ExchangeType};
use crate::message::short;
use crate::queue::Queue;
use crate::transaction::Transaction;

/// An AMQP channel: where exchanges and queues are declared and messages
/// published and consumed.
///
/// Cheap to clone; exchanges, queues and incoming messages hold clones.
/// When the last one is dropped the channel closes (without waiting).
#[derive(Debug, Clone)]
pub struct Channel {
    pub(crate) inner: amqp_conn::Channel,
    pub(crate) on_return_raises: bool,
    /// Timeout of every operation that waits for the broker, unless the
    /// operation sets its own.
    pub(crate) default_timeout: Option<Duration>,
}

impl Channel {
    pub(crate) fn new(
        inner: amqp_conn::Channel,
        on_return_raises: bool,
        default_timeout: Option<Duration>,
    ) -> Self {
        Channel {
            inner,
            on_return_raises,
            default_timeout,
        }
    }

    /// The timeout of operations that set none (see
    /// [`OpenChannel::operation_timeout`](crate::OpenChannel::operation_timeout)).
    pub fn operation_timeout(&self) -> Option<Duration> {
        self.default_timeout
    }

    /// The channel number.
    pub fn number(&self) -> u16 {
        self.inner.number()
    }

    /// True when publishes are confirmed by the broker.
    pub fn publisher_confirms(&self) -> bool {
        self.inner.is_confirm_mode()
    }

    /// True once the channel is closed.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Why it closed, once it has.
    pub fn close_reason(&self) -> Option<Error> {
        self.inner.close_reason().map(Error::from)
    }

    /// Closes the channel: first waits (at most 5 seconds) for the
    /// confirms of publishes already sent, so that each ends with the
    /// broker's answer, then closes and waits for the broker's close-ok.
    /// Bounded by the channel's operation timeout, if set.
    ///
    /// # Cancel safety
    /// Dropping the future (or a timeout) does not stop the close.
    pub async fn close(&self) -> Result<()> {
        let inner = &self.inner;
        with_timeout("channel.close", self.default_timeout, async {
            Ok(inner.close().await?)
        })
        .await
    }

    /// The timeout of an operation that sets `own` (or none).
    pub(crate) fn timeout(&self, own: Option<Duration>) -> Option<Duration> {
        timeout_for(own, self.default_timeout)
    }

    /// Declares an exchange (type `direct` unless set).
    ///
    /// ```no_run
    /// # async fn example(channel: pika::Channel) -> pika::Result<()> {
    /// use pika::ExchangeType;
    /// let logs = channel.declare_exchange("logs").kind(ExchangeType::Fanout).durable(true).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn declare_exchange(&self, name: &str) -> DeclareExchange<'_> {
        DeclareExchange {
            channel: self,
            name: name.to_string(),
            kind: ExchangeType::Direct,
            durable: false,
            auto_delete: false,
            internal: false,
            passive: false,
            arguments: FieldTable::new(),
            invalid: None,
            timeout: None,
            robust: true,
        }
    }

    /// An existing exchange (a passive declare): fails with 404 when it
    /// does not exist, which closes the channel.
    ///
    /// # Cancel safety
    /// Dropping the future only stops waiting: the declare still goes out.
    pub async fn get_exchange(&self, name: &str) -> Result<Exchange> {
        self.declare_exchange(name).passive(true).await
    }

    /// The default exchange (`""`): routes to the queue named by the
    /// routing key.
    pub fn default_exchange(&self) -> Exchange {
        Exchange::new(
            self.clone(),
            amqp_wire::ShortString::default(),
            ExchangeType::Direct,
        )
    }

    /// Declares a queue; an empty name lets the broker choose one.
    ///
    /// ```no_run
    /// # async fn example(channel: pika::Channel) -> pika::Result<()> {
    /// let tasks = channel.declare_queue("tasks").durable(true).await?;
    /// let private = channel.declare_queue("").exclusive(true).await?;
    /// println!("{}", private.name());
    /// # Ok(())
    /// # }
    /// ```
    pub fn declare_queue(&self, name: &str) -> DeclareQueue<'_> {
        DeclareQueue {
            channel: self,
            name: name.to_string(),
            durable: false,
            exclusive: false,
            passive: false,
            auto_delete: false,
            arguments: FieldTable::new(),
            invalid: None,
            timeout: None,
            robust: true,
        }
    }

    /// An existing queue (a passive declare): fails with 404 when it does
    /// not exist, which closes the channel.
    ///
    /// # Cancel safety
    /// Dropping the future only stops waiting: the declare still goes out.
    pub async fn get_queue(&self, name: &str) -> Result<Queue> {
        self.declare_queue(name).passive(true).await
    }

    /// A handle to the queue `name` without declaring it (aio-pika's
    /// `get_queue(name, ensure=False)`): for queues that exist by other
    /// means, such as RabbitMQ's `amq.rabbitmq.reply-to`. Operations on
    /// it fail with 404 if the queue does not exist.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a name longer than 255 bytes.
    pub fn queue_handle(&self, name: &str) -> Result<Queue> {
        Ok(Queue::new(self.clone(), short("queue name", name)?, 0, 0))
    }

    /// Limits unacknowledged deliveries (`basic.qos`).
    ///
    /// ```no_run
    /// # async fn example(channel: pika::Channel) -> pika::Result<()> {
    /// channel.set_qos().prefetch_count(100).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_qos(&self) -> SetQos<'_> {
        SetQos {
            channel: self,
            qos: BasicQos::default(),
            timeout: None,
        }
    }

    /// A transaction on this channel (which must not use publisher
    /// confirms): `select`, then `commit` or `rollback`.
    pub fn transaction(&self) -> Result<Transaction> {
        if self.publisher_confirms() {
            return Err(Error::TransactionWithConfirms);
        }
        Ok(Transaction::new(self.clone()))
    }

    /// Sends a synchronous request pika does not wrap and returns its
    /// reply, typed by the request (`QueueDeclare` gives
    /// `QueueDeclareOk`). `timeout` falls back to the channel's operation
    /// timeout.
    ///
    /// ```no_run
    /// # async fn example(channel: pika::Channel) -> pika::Result<()> {
    /// use pika::amqp_wire::{BasicRecover};
    /// channel.call(BasicRecover { requeue: true }, None).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// Dropping the future (or a timeout) only stops waiting: the request
    /// still goes out, and the broker acts on it.
    pub async fn call<R>(&self, request: R, timeout: Option<Duration>) -> Result<R::Reply>
    where
        R: Request + Send,
        R::Reply: Send,
    {
        self.call_restored(request, timeout, true).await
    }

    /// [`Channel::call`]; with `restored` off, a robust connection does
    /// not declare or bind it again when it reconnects.
    pub(crate) async fn call_restored<R>(
        &self,
        request: R,
        timeout: Option<Duration>,
        restored: bool,
    ) -> Result<R::Reply>
    where
        R: Request + Send,
        R::Reply: Send,
    {
        let inner = &self.inner;
        with_timeout(R::NAME, self.timeout(timeout), async {
            Ok(if restored {
                inner.call(request).await?
            } else {
                inner.call_not_restored(request).await?
            })
        })
        .await
    }

    /// The connection layer's channel underneath.
    pub fn amqp(&self) -> &amqp_conn::Channel {
        &self.inner
    }
}

/// Builder of [`Channel::declare_exchange`]; await it.
///
/// # Cancel safety
/// Dropping the future (or a timeout) only stops waiting: once sent, the
/// declare goes ahead, so the exchange may still be created.
#[must_use = "nothing is declared until the builder is awaited"]
#[derive(Debug)]
pub struct DeclareExchange<'a> {
    channel: &'a Channel,
    name: String,
    kind: ExchangeType,
    durable: bool,
    auto_delete: bool,
    internal: bool,
    passive: bool,
    arguments: FieldTable,
    /// The first invalid argument given, reported when awaited.
    invalid: Option<Error>,
    timeout: Option<Duration>,
    robust: bool,
}

impl<'a> DeclareExchange<'a> {
    /// On a [robust connection](crate::connect_robust), restore this
    /// when the connection is restored (default on); off: aio-pika's
    /// `robust=False`, the broker's state after a reconnection is left as
    /// it is.
    pub fn robust(mut self, on: bool) -> Self {
        self.robust = on;
        self
    }

    /// The exchange type (default direct).
    pub fn kind(mut self, kind: impl Into<ExchangeType>) -> Self {
        self.kind = kind.into();
        self
    }

    flag_setters! {
        /// Survives a broker restart.
        durable,
        /// Deleted when its last binding goes.
        auto_delete,
        /// Only other exchanges can publish to it.
        internal,
        /// Only check that it exists.
        passive,
    }

    /// An argument, such as `alternate-exchange`.
    pub fn argument(mut self, key: &str, value: impl Into<FieldValue>) -> Self {
        match short("argument name", key) {
            Ok(key) => self.arguments.insert(key, value),
            Err(error) => {
                self.invalid.get_or_insert(error);
            }
        }
        self
    }

    /// All arguments at once.
    pub fn arguments(mut self, arguments: FieldTable) -> Self {
        self.arguments = arguments;
        self
    }

    /// Give up after this long.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    async fn run(self) -> Result<Exchange> {
        if let Some(error) = self.invalid {
            return Err(error);
        }
        let name = short("exchange name", &self.name)?;
        let declare = ExchangeDeclare {
            exchange: name.clone(),
            kind: short("exchange type", self.kind.as_str())?,
            passive: self.passive,
            durable: self.durable,
            auto_delete: self.auto_delete,
            internal: self.internal,
            nowait: false,
            arguments: self.arguments,
            ..Default::default()
        };
        self.channel
            .call_restored(declare, self.timeout, self.robust)
            .await?;
        Ok(Exchange::new(self.channel.clone(), name, self.kind))
    }
}

into_future!(DeclareExchange => Exchange);

/// Builder of [`Channel::declare_queue`]; await it.
///
/// # Cancel safety
/// Dropping the future (or a timeout) only stops waiting: once sent, the
/// declare goes ahead, so the queue may still be created (for `""`, under
/// a name the broker chose and you never learn).
#[must_use = "nothing is declared until the builder is awaited"]
#[derive(Debug)]
pub struct DeclareQueue<'a> {
    channel: &'a Channel,
    name: String,
    durable: bool,
    exclusive: bool,
    passive: bool,
    auto_delete: bool,
    arguments: FieldTable,
    /// The first invalid argument given, reported when awaited.
    invalid: Option<Error>,
    timeout: Option<Duration>,
    robust: bool,
}

impl<'a> DeclareQueue<'a> {
    /// On a [robust connection](crate::connect_robust), restore this
    /// when the connection is restored (default on); off: aio-pika's
    /// `robust=False`, the broker's state after a reconnection is left as
    /// it is.
    pub fn robust(mut self, on: bool) -> Self {
        self.robust = on;
        self
    }

    flag_setters! {
        /// Survives a broker restart.
        durable,
        /// Only this connection may use it; deleted when it closes.
        exclusive,
        /// Only check that it exists.
        passive,
        /// Deleted when its last consumer goes.
        auto_delete,
    }

    /// An argument, such as `x-max-length` or `x-queue-type`: for those
    /// RabbitMQ defines, the typed setters ([`queue_type`](Self::queue_type),
    /// [`max_length`](Self::max_length), ...) write the broker's name and
    /// value type for you.
    pub fn argument(mut self, key: &str, value: impl Into<FieldValue>) -> Self {
        match short("argument name", key) {
            Ok(key) => self.arguments.insert(key, value),
            Err(error) => {
                self.invalid.get_or_insert(error);
            }
        }
        self
    }

    /// All arguments at once (replacing those set before).
    pub fn arguments(mut self, arguments: FieldTable) -> Self {
        self.arguments = arguments;
        self
    }

    /// Give up after this long.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Records the first invalid argument, reported when awaited.
    pub(crate) fn invalid(mut self, error: Error) -> Self {
        self.invalid.get_or_insert(error);
        self
    }

    async fn run(self) -> Result<Queue> {
        if let Some(error) = self.invalid {
            return Err(error);
        }
        let declare = QueueDeclare {
            queue: short("queue name", &self.name)?,
            passive: self.passive,
            durable: self.durable,
            exclusive: self.exclusive,
            auto_delete: self.auto_delete,
            nowait: false,
            arguments: self.arguments,
            ..Default::default()
        };
        let server_named = declare.queue.is_empty();
        let ok = self
            .channel
            .call_restored(declare, self.timeout, self.robust)
            .await?;
        let make = if server_named {
            Queue::server_named
        } else {
            Queue::new
        };
        Ok(make(
            self.channel.clone(),
            ok.queue,
            ok.message_count,
            ok.consumer_count,
        ))
    }
}

into_future!(DeclareQueue => Queue);

/// Builder of [`Channel::set_qos`]; await it.
///
/// # Cancel safety
/// Dropping the future (or a timeout) only stops waiting: once sent, the
/// limit applies all the same.
#[must_use = "nothing is set until the builder is awaited"]
#[derive(Debug)]
pub struct SetQos<'a> {
    channel: &'a Channel,
    qos: BasicQos,
    timeout: Option<Duration>,
}

impl<'a> SetQos<'a> {
    /// At most this many unacknowledged messages (0: no limit).
    pub fn prefetch_count(mut self, count: u16) -> Self {
        self.qos.prefetch_count = count;
        self
    }

    /// At most this many bytes of unacknowledged messages (RabbitMQ does
    /// not implement it; 0).
    pub fn prefetch_size(mut self, size: u32) -> Self {
        self.qos.prefetch_size = size;
        self
    }

    /// For RabbitMQ: share the limit among all consumers of the channel
    /// instead of applying it to each.
    pub fn global(mut self, global: bool) -> Self {
        self.qos.global = global;
        self
    }

    /// Give up after this long.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    async fn run(self) -> Result<()> {
        self.channel.call(self.qos, self.timeout).await.map(drop)
    }
}

into_future!(SetQos => ());
