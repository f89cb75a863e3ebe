//! Queues: bindings, consumers, `get`, purge, delete, iterators.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use amqp_conn::ConsumerEnd;
use amqp_wire::{
    BasicCancel, BasicConsume, BasicGet, FieldTable, FieldValue, QueueBind, QueueDelete,
    QueuePurge, QueueUnbind, ShortString,
};
use tokio::sync::Semaphore;

use crate::builder::{flag_setters, into_future, with_timeout};
use crate::channel::Channel;
use crate::error::{Error, Result};
use crate::exchange::ExchangeName;
use crate::incoming::IncomingMessage;
use crate::message::short;

/// How many messages a consumer buffers before the connection stops
/// reading; and how many callbacks of one consumer run at once.
const CONSUMER_BUFFER: usize = 1024;

/// A queue's name, and the name it has after a reconnection renamed it
/// (a chain: each rename adds a link, so `Queue::name` can hand out a
/// `&str` that stays valid).
#[derive(Debug)]
struct QueueName {
    name: ShortString,
    /// Named by the broker: may be renamed on reconnection.
    server_named: bool,
    renamed: OnceLock<Arc<QueueName>>,
}

impl QueueName {
    fn new(name: ShortString, server_named: bool) -> Self {
        QueueName {
            name,
            server_named,
            renamed: OnceLock::new(),
        }
    }
}

/// A queue on a channel.
#[derive(Debug, Clone)]
pub struct Queue {
    channel: Channel,
    name: Arc<QueueName>,
    declared_messages: u32,
    declared_consumers: u32,
}

impl Queue {
    pub(crate) fn new(channel: Channel, name: ShortString, messages: u32, consumers: u32) -> Self {
        Self::with_name(channel, QueueName::new(name, false), messages, consumers)
    }

    fn with_name(channel: Channel, name: QueueName, messages: u32, consumers: u32) -> Self {
        Queue {
            channel,
            name: Arc::new(name),
            declared_messages: messages,
            declared_consumers: consumers,
        }
    }

    /// A queue the broker named (declared with `""`): on a robust
    /// connection its name changes when it is declared again after a
    /// reconnection.
    pub(crate) fn server_named(
        channel: Channel,
        name: ShortString,
        messages: u32,
        consumers: u32,
    ) -> Self {
        Self::with_name(channel, QueueName::new(name, true), messages, consumers)
    }

    /// The queue's name (chosen by the broker when declared with `""`).
    ///
    /// On a connection made with [`connect_robust`](crate::connect_robust)
    /// a queue the broker named is declared again after a reconnection and
    /// gets a new name from the broker: this is then the new name (and
    /// this queue's bindings and consumers use it already).
    pub fn name(&self) -> &str {
        self.current_name()
    }

    /// The name now, following renames on reconnection.
    fn current_name(&self) -> &ShortString {
        let mut cell: &QueueName = &self.name;
        loop {
            if let Some(next) = cell.renamed.get() {
                cell = next;
                continue;
            }
            if !cell.server_named {
                return &cell.name;
            }
            match self.channel.inner.renamed_queue(&cell.name) {
                Some(new) if new != cell.name => {
                    let _ = cell.renamed.set(Arc::new(QueueName::new(new, true)));
                }
                _ => return &cell.name,
            }
        }
    }

    /// Messages in the queue when it was declared.
    pub fn declared_message_count(&self) -> u32 {
        self.declared_messages
    }

    /// Consumers of the queue when it was declared.
    pub fn declared_consumer_count(&self) -> u32 {
        self.declared_consumers
    }

    /// The channel it was declared on.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Binds the queue to `exchange` with `routing_key` (a binding key;
    /// patterns for topic exchanges).
    pub fn bind<'a>(&'a self, exchange: impl ExchangeName, routing_key: &str) -> Bind<'a> {
        Bind {
            queue: self,
            exchange: exchange.exchange_name().to_string(),
            routing_key: routing_key.to_string(),
            arguments: FieldTable::new(),
            invalid: None,
            unbind: false,
            robust: true,
            timeout: None,
        }
    }

    /// Removes a binding.
    pub fn unbind<'a>(&'a self, exchange: impl ExchangeName, routing_key: &str) -> Bind<'a> {
        Bind {
            unbind: true,
            robust: true,
            ..self.bind(exchange, routing_key)
        }
    }

    /// Starts consuming: `callback` runs for each message, in its own task
    /// (at most 1024 at once per consumer; the prefetch count set with
    /// `set_qos` usually limits it first). Returns the consumer tag.
    ///
    /// ```no_run
    /// # async fn example(queue: pika::Queue) -> pika::Result<()> {
    /// let tag = queue
    ///     .consume(|message: pika::IncomingMessage| async move {
    ///         let _ = message.process().run(|m| async move { println!("{:?}", m.body()); Ok::<_, pika::Error>(()) }).await;
    ///     })
    ///     .await?;
    /// queue.cancel(&tag).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn consume<F, Fut>(&self, callback: F) -> Consume<'_, F>
    where
        F: Fn(IncomingMessage) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Consume {
            queue: self,
            callback,
            options: ConsumeOptions::default(),
        }
    }

    /// Stops the consumer `consumer_tag` (aio-pika's
    /// `cancel(consumer_tag, timeout=None, nowait=False)`); messages
    /// already delivered to it still run their callbacks.
    ///
    /// ```no_run
    /// # async fn example(queue: pika::Queue, tag: String) -> pika::Result<()> {
    /// queue.cancel(&tag).timeout(std::time::Duration::from_secs(2)).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn cancel<'a>(&'a self, consumer_tag: &str) -> Cancel<'a> {
        Cancel {
            queue: self,
            consumer_tag: consumer_tag.to_string(),
            nowait: false,
            timeout: None,
        }
    }

    /// Fetches one message (`basic.get`). With `fail(true)` (the default)
    /// an empty queue is [`Error::QueueEmpty`], else `Ok(None)`. Times out
    /// as every operation does: its own `timeout`, else the channel's
    /// operation timeout.
    pub fn get(&self) -> Get<'_> {
        Get {
            queue: self,
            no_ack: false,
            fail: true,
            timeout: None,
        }
    }

    /// Removes every ready message (aio-pika's
    /// `purge(no_wait=False, timeout=None)`); await it for how many
    /// (`None` with `no_wait`, when the broker does not say).
    pub fn purge(&self) -> Purge<'_> {
        Purge {
            queue: self,
            no_wait: false,
            timeout: None,
        }
    }

    /// Deletes the queue. aio-pika's defaults: only if unused and empty
    /// (a queue with consumers or messages is refused with 406, which
    /// closes the channel); set both to `false` to delete regardless.
    /// Quorum queues refuse `if_unused` with 540 NOT_IMPLEMENTED, which
    /// closes the connection: delete them with `.if_unused(false)`.
    pub fn delete(&self) -> Delete<'_> {
        Delete {
            queue: self,
            if_unused: true,
            if_empty: true,
            timeout: None,
        }
    }

    /// Consumes into a [`Stream`](futures_core::Stream) of messages that
    /// ends when the consumer is cancelled.
    ///
    /// ```no_run
    /// # async fn example(queue: pika::Queue) -> pika::Result<()> {
    /// use futures_util::StreamExt;
    /// let mut messages = queue.iterator().await?;
    /// while let Some(message) = messages.next().await {
    ///     let message = message?;
    ///     message.ack(false)?;
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn iterator(&self) -> IterateQueue<'_> {
        IterateQueue {
            queue: self,
            options: ConsumeOptions::default(),
        }
    }

    async fn start_consumer(&self, options: &ConsumeOptions) -> Result<amqp_conn::Consumer> {
        if let Some(error) = &options.invalid {
            return Err(error.clone());
        }
        let consume = BasicConsume {
            queue: self.current_name().clone(),
            consumer_tag: match &options.consumer_tag {
                Some(tag) => short("consumer tag", tag)?,
                None => ShortString::default(),
            },
            no_ack: options.no_ack,
            exclusive: options.exclusive,
            arguments: options.arguments.clone(),
            ..Default::default()
        };
        let channel = &self.channel.inner;
        with_timeout(
            "basic.consume",
            self.channel.timeout(options.timeout),
            async {
                Ok(if options.not_restored {
                    channel
                        .consume_not_restored(consume, CONSUMER_BUFFER)
                        .await?
                } else {
                    channel.consume(consume, CONSUMER_BUFFER).await?
                })
            },
        )
        .await
    }
}

/// Options shared by [`Queue::consume`] and [`Queue::iterator`].
#[derive(Debug, Clone, Default)]
struct ConsumeOptions {
    no_ack: bool,
    exclusive: bool,
    arguments: FieldTable,
    consumer_tag: Option<String>,
    /// The first invalid argument given, reported when awaited.
    invalid: Option<Error>,
    timeout: Option<Duration>,
    /// `robust(false)`: a robust connection does not restore it.
    not_restored: bool,
}

macro_rules! consume_setters {
    () => {
        /// On a [robust connection](crate::connect_robust), consume again
        /// when the connection is restored (default on); off: aio-pika's
        /// `robust=False`, a lost connection ends the consumer.
        pub fn robust(mut self, on: bool) -> Self {
            self.options.not_restored = !on;
            self
        }

        /// Messages need no ack: the broker forgets them when sent.
        pub fn no_ack(mut self, no_ack: bool) -> Self {
            self.options.no_ack = no_ack;
            self
        }

        /// Be the queue's only consumer.
        pub fn exclusive(mut self, exclusive: bool) -> Self {
            self.options.exclusive = exclusive;
            self
        }

        /// A consumer argument, such as `x-priority` or `x-stream-offset`.
        pub fn argument(mut self, key: &str, value: impl Into<FieldValue>) -> Self {
            match short("argument name", key) {
                Ok(key) => self.options.arguments.insert(key, value),
                Err(error) => {
                    self.options.invalid.get_or_insert(error);
                }
            }
            self
        }

        /// The consumer's priority (`x-priority`): while it has room
        /// (prefetch), it gets messages before consumers of lower priority.
        pub fn priority(self, priority: i32) -> Self {
            self.argument("x-priority", priority)
        }

        /// Stream queues: where to start reading (`x-stream-offset`). The
        /// channel needs a prefetch limit and the consumer manual acks.
        pub fn stream_offset(mut self, offset: crate::arguments::StreamOffset) -> Self {
            match offset.to_value() {
                Ok(value) => self.argument("x-stream-offset", value),
                Err(error) => {
                    self.options.invalid.get_or_insert(error);
                    self
                }
            }
        }

        /// Use this consumer tag instead of one chosen by the broker.
        pub fn consumer_tag(mut self, tag: impl Into<String>) -> Self {
            self.options.consumer_tag = Some(tag.into());
            self
        }

        /// Give up starting the consumer after this long.
        pub fn timeout(mut self, timeout: Duration) -> Self {
            self.options.timeout = Some(timeout);
            self
        }
    };
}

/// Builder of [`Queue::consume`]; await it for the consumer tag.
///
/// # Cancel safety
/// Dropped (or timed out) after `basic.consume` went out, the consumer
/// still starts on the broker: its first delivery finds nobody, is given
/// back (rejected with requeue) and the consumer is cancelled then.
#[must_use = "nothing is consumed until the builder is awaited"]
pub struct Consume<'a, F> {
    queue: &'a Queue,
    callback: F,
    options: ConsumeOptions,
}

impl<F> std::fmt::Debug for Consume<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consume")
            .field("queue", &self.queue.name())
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<'a, F, Fut> Consume<'a, F>
where
    F: Fn(IncomingMessage) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    consume_setters!();

    async fn run(self) -> Result<String> {
        let mut consumer = self.queue.start_consumer(&self.options).await?;
        let tag = consumer.tag().to_string();
        let channel = consumer.channel().clone();
        let no_ack = self.options.no_ack;
        let callback = Arc::new(self.callback);
        let limit = Arc::new(Semaphore::new(CONSUMER_BUFFER));
        tokio::spawn(async move {
            loop {
                let Ok(permit) = limit.clone().acquire_owned().await else {
                    break;
                };
                let Some(delivery) = consumer.recv().await else {
                    break;
                };
                let message = IncomingMessage::new(delivery, channel.clone(), no_ack);
                let callback = callback.clone();
                tokio::spawn(async move {
                    callback(message).await;
                    drop(permit);
                });
            }
            if let Some(ConsumerEnd::Closed(error)) = consumer.end() {
                tracing::warn!(%error, "consumer stopped: its channel closed");
            }
        });
        Ok(tag)
    }
}

impl<'a, F, Fut> IntoFuture for Consume<'a, F>
where
    F: Fn(IncomingMessage) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    type Output = Result<String>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<String>> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// Builder of [`Queue::iterator`]; await it for the [`QueueIterator`].
///
/// # Cancel safety
/// As [`Consume`]: dropped after `basic.consume` went out, the consumer
/// is cancelled at its first delivery, which is given back.
#[must_use = "nothing is consumed until the builder is awaited"]
#[derive(Debug)]
pub struct IterateQueue<'a> {
    queue: &'a Queue,
    options: ConsumeOptions,
}

impl<'a> IterateQueue<'a> {
    consume_setters!();

    async fn run(self) -> Result<QueueIterator> {
        let consumer = self.queue.start_consumer(&self.options).await?;
        Ok(QueueIterator {
            consumer,
            no_ack: self.options.no_ack,
            done: false,
        })
    }
}

into_future!(IterateQueue => QueueIterator);

/// Messages of a queue as a [`Stream`](futures_core::Stream).
///
/// Yields `Ok(message)` for each message; ends (`None`) when the consumer
/// is cancelled (by [`close`](QueueIterator::close) or by the broker when
/// the queue is deleted); yields one `Err` and ends when the channel or
/// connection closes. Dropping it cancels the consumer and requeues the
/// messages it buffered.
#[derive(Debug)]
pub struct QueueIterator {
    consumer: amqp_conn::Consumer,
    no_ack: bool,
    done: bool,
}

impl QueueIterator {
    /// The consumer tag.
    pub fn consumer_tag(&self) -> &str {
        self.consumer.tag()
    }

    /// Cancels the consumer; messages already buffered are still yielded,
    /// then the stream ends.
    ///
    /// # Cancel safety
    /// Dropping the future only stops waiting: the cancel still goes out.
    pub async fn close(&self) -> Result<()> {
        Ok(self.consumer.cancel().await?)
    }
}

impl futures_core::Stream for QueueIterator {
    type Item = Result<IncomingMessage>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.consumer.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(delivery)) => {
                let channel = self.consumer.channel().clone();
                Poll::Ready(Some(Ok(IncomingMessage::new(
                    delivery,
                    channel,
                    self.no_ack,
                ))))
            }
            Poll::Ready(None) => {
                self.done = true;
                match self.consumer.end() {
                    Some(ConsumerEnd::Closed(error)) => Poll::Ready(Some(Err(Error::from(error)))),
                    _ => Poll::Ready(None),
                }
            }
        }
    }
}

/// Builder of [`Queue::bind`] and [`Queue::unbind`]; await it.
///
/// # Cancel safety
/// Dropping the future (or a timeout) only stops waiting: once sent, the
/// binding is made or removed all the same.
#[must_use = "nothing is bound until the builder is awaited"]
#[derive(Debug)]
pub struct Bind<'a> {
    queue: &'a Queue,
    exchange: String,
    routing_key: String,
    arguments: FieldTable,
    invalid: Option<Error>,
    unbind: bool,
    timeout: Option<Duration>,
    robust: bool,
}

impl<'a> Bind<'a> {
    /// On a [robust connection](crate::connect_robust), restore this
    /// when the connection is restored (default on); off: aio-pika's
    /// `robust=False`, the broker's state after a reconnection is left as
    /// it is.
    pub fn robust(mut self, on: bool) -> Self {
        self.robust = on;
        self
    }

    /// A binding argument (headers exchanges match on these).
    pub fn argument(mut self, key: &str, value: impl Into<FieldValue>) -> Self {
        match short("argument name", key) {
            Ok(key) => self.arguments.insert(key, value),
            Err(error) => {
                self.invalid.get_or_insert(error);
            }
        }
        self
    }

    /// Give up after this long.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    async fn run(self) -> Result<()> {
        if let Some(error) = self.invalid {
            return Err(error);
        }
        let exchange = short("exchange name", &self.exchange)?;
        let routing_key = short("routing key", &self.routing_key)?;
        let queue = self.queue.current_name().clone();
        let channel = &self.queue.channel;
        if self.unbind {
            let unbind = QueueUnbind {
                queue,
                exchange,
                routing_key,
                arguments: self.arguments,
                ..Default::default()
            };
            channel.call(unbind, self.timeout).await.map(drop)
        } else {
            let bind = QueueBind {
                queue,
                exchange,
                routing_key,
                arguments: self.arguments,
                ..Default::default()
            };
            channel
                .call_restored(bind, self.timeout, self.robust)
                .await
                .map(drop)
        }
    }
}

into_future!(Bind => ());

/// Builder of [`Queue::get`]; await it.
///
/// # Cancel safety
/// Dropped (or timed out) after `basic.get` went out, a message that then
/// arrives for it is given back to the queue (rejected with requeue).
#[must_use = "nothing is fetched until the builder is awaited"]
#[derive(Debug)]
pub struct Get<'a> {
    queue: &'a Queue,
    no_ack: bool,
    fail: bool,
    timeout: Option<Duration>,
}

impl<'a> Get<'a> {
    flag_setters! {
        /// The message needs no ack.
        no_ack,
        /// An empty queue is an error (default) rather than `None`.
        fail,
    }

    /// Give up after this long (default: the channel's operation timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    async fn run(self) -> Result<Option<IncomingMessage>> {
        let get = BasicGet {
            queue: self.queue.current_name().clone(),
            no_ack: self.no_ack,
            ..Default::default()
        };
        let channel = &self.queue.channel.inner;
        let timeout = self.queue.channel.timeout(self.timeout);
        let delivery =
            with_timeout("basic.get", timeout, async { Ok(channel.get(get).await?) }).await?;
        match delivery {
            Some(delivery) => Ok(Some(IncomingMessage::new(
                delivery,
                channel.clone(),
                self.no_ack,
            ))),
            None if self.fail => Err(Error::QueueEmpty {
                queue: self.queue.name().to_string(),
            }),
            None => Ok(None),
        }
    }
}

into_future!(Get => Option<IncomingMessage>);

/// Builder of [`Queue::delete`]; await it for the number of messages
/// deleted with the queue.
///
/// # Cancel safety
/// Dropping the future (or a timeout) only stops waiting: once sent, the
/// queue is deleted all the same.
#[must_use = "nothing is deleted until the builder is awaited"]
#[derive(Debug)]
pub struct Delete<'a> {
    queue: &'a Queue,
    if_unused: bool,
    if_empty: bool,
    timeout: Option<Duration>,
}

impl<'a> Delete<'a> {
    flag_setters! {
        /// Only when it has no consumers (default true, as in aio-pika).
        if_unused,
        /// Only when it has no messages (default true, as in aio-pika).
        if_empty,
    }

    /// Give up after this long.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    async fn run(self) -> Result<u32> {
        let delete = QueueDelete {
            queue: self.queue.current_name().clone(),
            if_unused: self.if_unused,
            if_empty: self.if_empty,
            ..Default::default()
        };
        let ok = self.queue.channel.call(delete, self.timeout).await?;
        Ok(ok.message_count)
    }
}

into_future!(Delete => u32);

/// Builder of [`Queue::purge`]; await it for the number of messages
/// removed (`None` with `no_wait`).
///
/// # Cancel safety
/// Dropping the future (or a timeout) only stops waiting: once sent, the
/// queue is purged all the same.
#[must_use = "nothing is purged until the builder is awaited"]
#[derive(Debug)]
pub struct Purge<'a> {
    queue: &'a Queue,
    no_wait: bool,
    timeout: Option<Duration>,
}

impl<'a> Purge<'a> {
    flag_setters! {
        /// Do not wait for the broker's answer (nor learn the count).
        no_wait,
    }

    /// Give up after this long (default: the channel's operation timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    async fn run(self) -> Result<Option<u32>> {
        let purge = QueuePurge {
            queue: self.queue.current_name().clone(),
            nowait: self.no_wait,
            ..Default::default()
        };
        let channel = &self.queue.channel;
        if self.no_wait {
            channel.inner.send_nowait(purge)?;
            return Ok(None);
        }
        let ok = channel.call(purge, self.timeout).await?;
        Ok(Some(ok.message_count))
    }
}

into_future!(Purge => Option<u32>);

/// Builder of [`Queue::cancel`]; await it.
///
/// # Cancel safety
/// Dropping the future (or a timeout) only stops waiting: once sent, the
/// consumer is cancelled all the same.
#[must_use = "nothing is cancelled until the builder is awaited"]
#[derive(Debug)]
pub struct Cancel<'a> {
    queue: &'a Queue,
    consumer_tag: String,
    nowait: bool,
    timeout: Option<Duration>,
}

impl<'a> Cancel<'a> {
    flag_setters! {
        /// Do not wait for the broker's answer.
        nowait,
    }

    /// Give up after this long (default: the channel's operation timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    async fn run(self) -> Result<()> {
        let cancel = BasicCancel {
            consumer_tag: short("consumer tag", &self.consumer_tag)?,
            nowait: self.nowait,
        };
        let channel = &self.queue.channel;
        // The consumer's task ends when its stream of deliveries does.
        if self.nowait {
            return Ok(channel.inner.send_nowait(cancel)?);
        }
        channel.call(cancel, self.timeout).await.map(drop)
    }
}

into_future!(Cancel => ());
