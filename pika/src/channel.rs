//! Channels: declaring exchanges and queues, quality of service,
//! transactions.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

use amqp_wire::{BasicQos, ExchangeDeclare, FieldTable, FieldValue, Method, QueueDeclare};

use crate::error::{with_timeout, Error, Result};
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
        self.inner.id()
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

    /// Closes the channel and waits for the broker's answer.
    pub async fn close(&self) -> Result<()> {
        let inner = &self.inner;
        with_timeout("channel.close", self.default_timeout, async {
            Ok(inner.close().await?)
        })
        .await
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
        }
    }

    /// An existing exchange (a passive declare): fails with 404 when it
    /// does not exist, which closes the channel.
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
        }
    }

    /// An existing queue (a passive declare): fails with 404 when it does
    /// not exist, which closes the channel.
    pub async fn get_queue(&self, name: &str) -> Result<Queue> {
        self.declare_queue(name).passive(true).await
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

    /// Sends any synchronous method and returns its reply (for what pika
    /// does not wrap); `timeout` falls back to the channel's operation
    /// timeout.
    pub async fn call(
        &self,
        method: impl Into<Method>,
        operation: &'static str,
        timeout: Option<Duration>,
    ) -> Result<Method> {
        let method = method.into();
        let timeout = timeout.or(self.default_timeout);
        with_timeout(operation, timeout, async {
            Ok(self.inner.call(method).await?)
        })
        .await
    }

    /// The connection layer's channel underneath.
    pub fn amqp(&self) -> &amqp_conn::Channel {
        &self.inner
    }
}

macro_rules! into_future {
    ($builder:ident => $output:ty) => {
        impl<'a> IntoFuture for $builder<'a> {
            type Output = Result<$output>;
            type IntoFuture = Pin<Box<dyn Future<Output = Result<$output>> + Send + 'a>>;

            fn into_future(self) -> Self::IntoFuture {
                Box::pin(self.run())
            }
        }
    };
}
pub(crate) use into_future;

macro_rules! flag_setters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, on: bool) -> Self {
                self.$name = on;
                self
            }
        )*
    };
}
pub(crate) use flag_setters;

/// Builder of [`Channel::declare_exchange`]; await it.
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
}

impl<'a> DeclareExchange<'a> {
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
            .call(declare, "exchange.declare", self.timeout)
            .await?;
        Ok(Exchange::new(self.channel.clone(), name, self.kind))
    }
}

into_future!(DeclareExchange => Exchange);

/// Builder of [`Channel::declare_queue`]; await it.
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
}

impl<'a> DeclareQueue<'a> {
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

    /// An argument, such as `x-max-length` or `x-queue-type`.
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
        match self
            .channel
            .call(declare, "queue.declare", self.timeout)
            .await?
        {
            Method::QueueDeclareOk(ok) => Ok(Queue::new(
                self.channel.clone(),
                ok.queue,
                ok.message_count,
                ok.consumer_count,
            )),
            other => Err(amqp_conn::Error::UnexpectedFrame {
                channel: self.channel.number(),
                got: other.name(),
                state: "waiting for queue.declare-ok",
            }
            .into()),
        }
    }
}

into_future!(DeclareQueue => Queue);

/// Builder of [`Channel::set_qos`]; await it.
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
        self.channel
            .call(self.qos, "basic.qos", self.timeout)
            .await
            .map(drop)
    }
}

into_future!(SetQos => ());
