//! Exchanges: publishing, exchange-to-exchange bindings, deletion.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

use amqp_conn::Confirmation as Outcome;
use amqp_conn::{TryPublishError, UnsentMessage};

use amqp_wire::{
    BasicPublish, ExchangeBind, ExchangeDelete, ExchangeUnbind, FieldTable, ShortString,
};

use crate::builder::{into_future, with_timeout};
use crate::channel::Channel;
use crate::error::{Error, Result};
use crate::message::{short, Message, ReturnedMessage};

/// The type of an exchange: how it routes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum ExchangeType {
    /// To queues whose binding key equals the routing key.
    #[default]
    Direct,
    /// To every bound queue.
    Fanout,
    /// By pattern on dot-separated words (`*` one word, `#` any).
    Topic,
    /// By header values.
    Headers,
    /// `x-delayed-message` (needs the delayed message plugin).
    XDelayedMessage,
    /// `x-consistent-hash` (needs the consistent hash plugin).
    XConsistentHash,
    /// `x-modulus-hash` (needs the sharding plugin).
    XModulusHash,
    /// Any other type a plugin provides.
    Custom(String),
}

impl ExchangeType {
    /// The type name on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            ExchangeType::Direct => "direct",
            ExchangeType::Fanout => "fanout",
            ExchangeType::Topic => "topic",
            ExchangeType::Headers => "headers",
            ExchangeType::XDelayedMessage => "x-delayed-message",
            ExchangeType::XConsistentHash => "x-consistent-hash",
            ExchangeType::XModulusHash => "x-modulus-hash",
            ExchangeType::Custom(name) => name,
        }
    }
}

impl fmt::Display for ExchangeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&str> for ExchangeType {
    fn from(name: &str) -> Self {
        match name {
            "direct" => ExchangeType::Direct,
            "fanout" => ExchangeType::Fanout,
            "topic" => ExchangeType::Topic,
            "headers" => ExchangeType::Headers,
            "x-delayed-message" => ExchangeType::XDelayedMessage,
            "x-consistent-hash" => ExchangeType::XConsistentHash,
            "x-modulus-hash" => ExchangeType::XModulusHash,
            other => ExchangeType::Custom(other.to_string()),
        }
    }
}

/// What the broker said about a publish it did not refuse.
///
/// A refusal is an error, never a `Confirmation`: a nack is
/// [`Error::Nacked`], a publish whose channel closed before the answer is
/// [`Error::Indeterminate`], and a returned message is
/// [`Error::DeliveryError`] on a channel opened with
/// `on_return_raises(true)`. Without that option a returned message is
/// [`Confirmation::Returned`]: check for it, or use `on_return_raises`.
#[derive(Debug, Clone)]
#[non_exhaustive]
#[must_use = "a Returned confirmation means no queue got the message"]
pub enum Confirmation {
    /// The broker took the message (`basic.ack`).
    Ack,
    /// Mandatory and unroutable: the broker sent it back (on a channel
    /// without `on_return_raises`).
    Returned(Box<ReturnedMessage>),
    /// The channel has no publisher confirms: nothing was confirmed.
    NotConfirmed,
}

impl Confirmation {
    /// True for `Ack`.
    pub fn is_ack(&self) -> bool {
        matches!(self, Confirmation::Ack)
    }

    /// `Ok` unless the message came back unrouted, which becomes
    /// [`Error::DeliveryError`]: for code that needs the message in a
    /// queue and has nothing else to do with the confirmation.
    ///
    /// ```no_run
    /// # async fn example(channel: pika::Channel) -> pika::Result<()> {
    /// use pika::Message;
    /// channel.default_exchange().publish(Message::new("work"), "tasks").await?.ensure_routed()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn ensure_routed(self) -> Result<()> {
        match self {
            Confirmation::Returned(returned) => Err(Error::DeliveryError(returned)),
            _ => Ok(()),
        }
    }
}

/// An exchange on a channel.
#[derive(Debug)]
pub struct Exchange {
    channel: Channel,
    name: ShortString,
    kind: ExchangeType,
    routing_keys: std::sync::Mutex<RoutingKeys>,
}

impl Clone for Exchange {
    fn clone(&self) -> Self {
        Exchange::new(self.channel.clone(), self.name.clone(), self.kind.clone())
    }
}

/// The routing key a handle publishes with again and again, kept so that
/// a publish takes a reference to it instead of a copy of the text.
#[derive(Debug, Default)]
struct RoutingKeys {
    /// The key of the last publish.
    seen: String,
    /// A shared copy of it, made when it came twice in a row.
    kept: Option<ShortString>,
}

impl Exchange {
    pub(crate) fn new(channel: Channel, name: ShortString, kind: ExchangeType) -> Self {
        Exchange {
            channel,
            name,
            kind,
            routing_keys: std::sync::Mutex::default(),
        }
    }

    /// `key` as a short string: the kept copy when the key is the same
    /// as before (no allocation), else a copy. The lock is only tried:
    /// handles used from several tasks at once just copy.
    fn routing_key(&self, key: &str) -> Result<ShortString> {
        let Ok(mut keys) = self.routing_keys.try_lock() else {
            return short("routing key", key);
        };
        if let Some(kept) = keys
            .kept
            .as_ref()
            .filter(|kept| kept.as_bytes() == key.as_bytes())
        {
            return Ok(kept.clone());
        }
        let fresh = short("routing key", key)?;
        if keys.seen == key {
            keys.kept = Some(fresh.clone());
        } else {
            keys.seen.clear();
            keys.seen.push_str(key);
        }
        Ok(fresh)
    }

    /// The exchange's name (`""` for the default exchange).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The exchange's type, as declared.
    pub fn kind(&self) -> &ExchangeType {
        &self.kind
    }

    /// The channel it was declared on.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Publishes `message` with `routing_key`. With publisher confirms
    /// (the default) it waits for the broker's answer.
    ///
    /// ```no_run
    /// # async fn example(channel: pika::Channel) -> pika::Result<()> {
    /// use pika::{Confirmation, Message};
    /// let confirmation = channel.default_exchange().publish(Message::new("hi"), "tasks").await?;
    /// assert!(matches!(confirmation, Confirmation::Ack | Confirmation::Returned(_)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn publish<'a>(&'a self, message: Message, routing_key: &'a str) -> Publish<'a> {
        Publish {
            exchange: self,
            message,
            routing_key,
            mandatory: true,
            immediate: false,
            timeout: None,
        }
    }

    /// Binds this exchange to `source`: messages published to `source`
    /// that match `routing_key` also reach this exchange.
    ///
    /// ```no_run
    /// # async fn example(audit: pika::Exchange, logs: pika::Exchange) -> pika::Result<()> {
    /// audit.bind(&logs, "billing.#").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn bind<'a>(&'a self, source: impl ExchangeName, routing_key: &str) -> BindExchange<'a> {
        BindExchange {
            exchange: self,
            source: source.exchange_name().to_string(),
            routing_key: routing_key.to_string(),
            arguments: FieldTable::new(),
            invalid: None,
            unbind: false,
            robust: true,
            timeout: None,
        }
    }

    /// Removes a binding made with [`bind`](Exchange::bind) (same source,
    /// routing key and arguments).
    pub fn unbind<'a>(&'a self, source: impl ExchangeName, routing_key: &str) -> BindExchange<'a> {
        BindExchange {
            unbind: true,
            robust: true,
            ..self.bind(source, routing_key)
        }
    }

    /// Deletes the exchange (with `if_unused(true)`, only when nothing is
    /// bound to it).
    pub fn delete(&self) -> DeleteExchange<'_> {
        DeleteExchange {
            exchange: self,
            if_unused: false,
            timeout: None,
        }
    }
}

/// Builder of [`Exchange::bind`] and [`Exchange::unbind`]; await it.
///
/// # Cancel safety
/// Dropping the future (or a timeout) only stops waiting: once sent, the
/// binding is made or removed all the same.
#[must_use = "nothing is bound until the builder is awaited"]
#[derive(Debug)]
pub struct BindExchange<'a> {
    exchange: &'a Exchange,
    source: String,
    routing_key: String,
    arguments: FieldTable,
    invalid: Option<Error>,
    unbind: bool,
    timeout: Option<Duration>,
    robust: bool,
}

impl<'a> BindExchange<'a> {
    /// On a [robust connection](crate::connect_robust), restore this
    /// when the connection is restored (default on); off: aio-pika's
    /// `robust=False`, the broker's state after a reconnection is left as
    /// it is.
    pub fn robust(mut self, on: bool) -> Self {
        self.robust = on;
        self
    }

    /// A binding argument (headers exchanges match on these).
    pub fn argument(mut self, key: &str, value: impl Into<amqp_wire::FieldValue>) -> Self {
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

    /// Give up waiting after this long (default: the channel's operation
    /// timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    async fn run(self) -> Result<()> {
        if let Some(error) = self.invalid {
            return Err(error);
        }
        let destination = self.exchange.name.clone();
        let source = short("exchange name", &self.source)?;
        let routing_key = short("routing key", &self.routing_key)?;
        let channel = &self.exchange.channel;
        if self.unbind {
            let unbind = ExchangeUnbind {
                destination,
                source,
                routing_key,
                arguments: self.arguments,
                ..Default::default()
            };
            channel.call(unbind, self.timeout).await.map(drop)
        } else {
            let bind = ExchangeBind {
                destination,
                source,
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

into_future!(BindExchange => ());

/// Builder of [`Exchange::delete`]; await it.
///
/// # Cancel safety
/// Dropping the future (or a timeout) only stops waiting: once sent, the
/// exchange is deleted all the same.
#[must_use = "nothing is deleted until the builder is awaited"]
#[derive(Debug)]
pub struct DeleteExchange<'a> {
    exchange: &'a Exchange,
    if_unused: bool,
    timeout: Option<Duration>,
}

impl<'a> DeleteExchange<'a> {
    /// Only when no queue or exchange is bound to it (default false; a
    /// refusal is 406 and closes the channel).
    pub fn if_unused(mut self, on: bool) -> Self {
        self.if_unused = on;
        self
    }

    /// Give up waiting after this long (default: the channel's operation
    /// timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    async fn run(self) -> Result<()> {
        let delete = ExchangeDelete {
            exchange: self.exchange.name.clone(),
            if_unused: self.if_unused,
            ..Default::default()
        };
        self.exchange
            .channel
            .call(delete, self.timeout)
            .await
            .map(drop)
    }
}

into_future!(DeleteExchange => ());

/// Something that names an exchange: an [`Exchange`] or a `&str`.
pub trait ExchangeName {
    /// The name.
    fn exchange_name(&self) -> &str;
}

impl ExchangeName for &Exchange {
    fn exchange_name(&self) -> &str {
        &self.name
    }
}

impl ExchangeName for &str {
    fn exchange_name(&self) -> &str {
        self
    }
}

impl ExchangeName for &String {
    fn exchange_name(&self) -> &str {
        self
    }
}

/// Builder of [`Exchange::publish`]; await it for the [`Confirmation`]
/// (a nack is [`Error::Nacked`]).
///
/// # Cancel safety
/// Dropped before the message is queued (while it waits for room), it
/// publishes nothing; dropped (or timed out) after, the message is
/// published all the same and only its confirmation is not awaited.
#[must_use = "nothing is published until the builder is awaited"]
#[derive(Debug)]
pub struct Publish<'a> {
    exchange: &'a Exchange,
    message: Message,
    routing_key: &'a str,
    mandatory: bool,
    immediate: bool,
    timeout: Option<Duration>,
}

impl<'a> Publish<'a> {
    /// Return the message if no queue gets it (default on).
    pub fn mandatory(mut self, mandatory: bool) -> Self {
        self.mandatory = mandatory;
        self
    }

    /// Return the message if no consumer can take it at once. RabbitMQ
    /// does not support it and closes the connection (540).
    pub fn immediate(mut self, immediate: bool) -> Self {
        self.immediate = immediate;
        self
    }

    /// Give up waiting for the confirm after this long (the message may
    /// still arrive).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Queues the message for the socket and returns at once with a
    /// [`PendingConfirmation`] to await later, so that one task can keep
    /// many publishes in flight (awaiting the builder itself waits for each
    /// confirm in turn).
    ///
    /// ```no_run
    /// # async fn example(exchange: pika::Exchange) -> pika::Result<()> {
    /// use pika::Message;
    /// let mut pending = Vec::new();
    /// for n in 0..100 {
    ///     pending.push(exchange.publish(Message::new(format!("{n}")), "tasks").send().await?);
    /// }
    /// for confirmation in pending {
    ///     assert!(confirmation.await?.is_ack());
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Cancel safety
    /// Dropping the future before it completes publishes nothing; once it
    /// returned, the message is queued and dropping the
    /// `PendingConfirmation` only stops waiting for the broker's answer.
    pub async fn send(self) -> Result<PendingConfirmation> {
        // Awaited inline by its caller (no future of its own to box): the
        // plain path (going through try_publish cost 2% more instructions
        // in pika-perf's publish_confirm).
        let (exchange, publish, properties, body) = self.into_parts()?;
        let channel = &exchange.channel;
        let confirm = channel.inner.publish(publish, properties, body).await?;
        Ok(PendingConfirmation {
            confirm,
            on_return_raises: channel.on_return_raises,
        })
    }

    /// The exchange, the `basic.publish`, the properties and the body.
    /// Inlined: the parts would otherwise be copied out of a call.
    #[inline(always)]
    fn into_parts(
        self,
    ) -> Result<(
        &'a Exchange,
        BasicPublish,
        amqp_conn::PublishProperties,
        bytes::Bytes,
    )> {
        let (properties, body) = self.message.into_parts()?;
        let publish = BasicPublish {
            exchange: self.exchange.name.clone(),
            routing_key: self.exchange.routing_key(self.routing_key)?,
            mandatory: self.mandatory,
            immediate: self.immediate,
            ..Default::default()
        };
        Ok((self.exchange, publish, properties, body))
    }

    async fn run(self) -> Result<Confirmation> {
        let timeout = self.timeout;
        with_timeout("basic.publish", timeout, async { self.send().await?.await }).await
    }
}

impl<'a> IntoFuture for Publish<'a> {
    type Output = Result<Confirmation>;
    type IntoFuture = PublishFuture<'a>;

    fn into_future(mut self) -> Self::IntoFuture {
        self.timeout = self.timeout.or(self.exchange.channel.default_timeout);
        PublishFuture {
            state: PublishState::Start(self),
        }
    }
}

/// The future of an awaited [`Publish`]: the message is queued on the
/// first poll (with no future of its own when the connection has room,
/// the common case: a boxed future per publish cost an allocation and a
/// copy of its state), then its confirmation is awaited.
#[must_use = "futures do nothing unless awaited"]
pub struct PublishFuture<'a> {
    state: PublishState<'a>,
}

enum PublishState<'a> {
    Start(Publish<'a>),
    Confirming(PendingConfirmation),
    /// With a timeout, or waiting for room.
    Waiting(Pin<Box<dyn Future<Output = Result<Confirmation>> + Send + 'a>>),
    Done,
}

impl fmt::Debug for PublishFuture<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            PublishState::Start(_) => "not queued",
            PublishState::Confirming(_) => "queued, waiting for the confirmation",
            PublishState::Waiting(_) => "waiting",
            PublishState::Done => "done",
        };
        f.debug_struct("PublishFuture")
            .field("state", &state)
            .finish()
    }
}

impl Future for PublishFuture<'_> {
    type Output = Result<Confirmation>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        loop {
            match &mut self.state {
                PublishState::Start(_) => {
                    let PublishState::Start(publish) =
                        std::mem::replace(&mut self.state, PublishState::Done)
                    else {
                        unreachable!("matched above")
                    };
                    if publish.timeout.is_some() {
                        self.state = PublishState::Waiting(Box::pin(publish.run()));
                        continue;
                    }
                    let (exchange, publish, properties, body) = match publish.into_parts() {
                        Ok(parts) => parts,
                        Err(error) => return std::task::Poll::Ready(Err(error)),
                    };
                    let channel = &exchange.channel;
                    let (inner, on_return_raises) = (&channel.inner, channel.on_return_raises);
                    // Queued now when the connection has room, without a
                    // future of its own; else a future waits for room.
                    self.state = match inner.try_publish(publish, properties, body) {
                        Ok(confirm) => PublishState::Confirming(PendingConfirmation {
                            confirm,
                            on_return_raises,
                        }),
                        Err(TryPublishError::Full(unsent)) => {
                            PublishState::Waiting(Box::pin(async move {
                                let UnsentMessage {
                                    publish,
                                    properties,
                                    body,
                                } = *unsent;
                                let confirm = inner.publish(publish, properties, body).await?;
                                PendingConfirmation {
                                    confirm,
                                    on_return_raises,
                                }
                                .await
                            }))
                        }
                        Err(TryPublishError::Failed(error)) => {
                            return std::task::Poll::Ready(Err(error.into()))
                        }
                    };
                }
                PublishState::Confirming(pending) => {
                    let outcome = std::task::ready!(Pin::new(pending).poll(cx));
                    self.state = PublishState::Done;
                    return std::task::Poll::Ready(outcome);
                }
                PublishState::Waiting(future) => {
                    let outcome = std::task::ready!(future.as_mut().poll(cx));
                    self.state = PublishState::Done;
                    return std::task::Poll::Ready(outcome);
                }
                PublishState::Done => panic!("PublishFuture polled after it completed"),
            }
        }
    }
}

/// A queued publish whose confirmation has not been awaited yet: see
/// [`Publish::send`]. Await it for the [`Confirmation`]; a nack is
/// [`Error::Nacked`].
///
/// # Cancel safety
/// Dropping it only stops waiting: the message is published all the same.
#[must_use = "await it for the broker's confirmation: a nack is an error"]
#[derive(Debug)]
pub struct PendingConfirmation {
    confirm: amqp_conn::PublishConfirm,
    on_return_raises: bool,
}

impl Future for PendingConfirmation {
    type Output = Result<Confirmation>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let outcome = std::task::ready!(Pin::new(&mut self.confirm).poll(cx));
        std::task::Poll::Ready(match outcome {
            Outcome::Ack => Ok(Confirmation::Ack),
            Outcome::Nack {
                exchange,
                routing_key,
            } => Err(Error::Nacked {
                exchange: exchange.to_string(),
                routing_key: routing_key.to_string(),
            }),
            Outcome::NotConfirmed => Ok(Confirmation::NotConfirmed),
            Outcome::Returned(returned) => {
                let returned = Box::new(ReturnedMessage::from(*returned));
                if self.on_return_raises {
                    Err(Error::DeliveryError(returned))
                } else {
                    Ok(Confirmation::Returned(returned))
                }
            }
            Outcome::Indeterminate(error) => Err(Error::Indeterminate(error)),
            Outcome::Refused(error) => Err(Error::PublishRefused(error)),
            // A later kind of outcome: never taken for success.
            _ => Err(Error::Indeterminate(amqp_conn::Error::ConnectionClosed(
                amqp_conn::CloseReason::library(
                    amqp_wire::ReplyCode::INTERNAL_ERROR,
                    "a publish outcome this version of pika does not know",
                ),
            ))),
        })
    }
}
