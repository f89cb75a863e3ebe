//! Exchanges: publishing, exchange-to-exchange bindings, deletion.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

use amqp_conn::PublishOutcome;
use amqp_wire::{
    BasicPublish, ExchangeBind, ExchangeDelete, ExchangeUnbind, FieldTable, ShortString,
};

use crate::channel::Channel;
use crate::error::{with_timeout, Error, Result};
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

/// What the broker said about a publish.
#[derive(Debug, Clone)]
pub enum Confirmation {
    /// The broker took the message (`basic.ack`).
    Ack,
    /// The broker refused it (`basic.nack`), for example a full queue with
    /// `x-overflow=reject-publish`.
    Nack,
    /// Mandatory and unroutable: the broker sent it back.
    Returned(Box<ReturnedMessage>),
    /// The channel has no publisher confirms: nothing was confirmed.
    NotConfirmed,
}

impl Confirmation {
    /// True for `Ack`.
    pub fn is_ack(&self) -> bool {
        matches!(self, Confirmation::Ack)
    }
}

/// An exchange on a channel.
#[derive(Debug, Clone)]
pub struct Exchange {
    channel: Channel,
    name: ShortString,
    kind: ExchangeType,
}

impl Exchange {
    pub(crate) fn new(channel: Channel, name: ShortString, kind: ExchangeType) -> Self {
        Exchange {
            channel,
            name,
            kind,
        }
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
    pub async fn bind(&self, source: impl ExchangeName, routing_key: &str) -> Result<()> {
        self.bind_with(source, routing_key, FieldTable::new(), None)
            .await
    }

    /// [`bind`](Exchange::bind) with arguments and a timeout.
    pub async fn bind_with(
        &self,
        source: impl ExchangeName,
        routing_key: &str,
        arguments: FieldTable,
        timeout: Option<Duration>,
    ) -> Result<()> {
        let bind = ExchangeBind {
            destination: self.name.clone(),
            source: short("exchange name", source.exchange_name())?,
            routing_key: short("routing key", routing_key)?,
            arguments,
            ..Default::default()
        };
        self.channel
            .call(bind, "exchange.bind", timeout)
            .await
            .map(drop)
    }

    /// Removes a binding made with [`bind`](Exchange::bind).
    pub async fn unbind(&self, source: impl ExchangeName, routing_key: &str) -> Result<()> {
        let unbind = ExchangeUnbind {
            destination: self.name.clone(),
            source: short("exchange name", source.exchange_name())?,
            routing_key: short("routing key", routing_key)?,
            ..Default::default()
        };
        self.channel
            .call(unbind, "exchange.unbind", None)
            .await
            .map(drop)
    }

    /// Deletes the exchange; with `if_unused`, only when no queue or
    /// exchange is bound to it.
    pub async fn delete(&self, if_unused: bool) -> Result<()> {
        let delete = ExchangeDelete {
            exchange: self.name.clone(),
            if_unused,
            ..Default::default()
        };
        self.channel
            .call(delete, "exchange.delete", None)
            .await
            .map(drop)
    }
}

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

/// Builder of [`Exchange::publish`]; await it.
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
        let (properties, body) = self.message.into_parts()?;
        let publish = BasicPublish {
            exchange: self.exchange.name.clone(),
            routing_key: short("routing key", self.routing_key)?,
            mandatory: self.mandatory,
            immediate: self.immediate,
            ..Default::default()
        };
        let channel = &self.exchange.channel;
        let confirm = channel.inner.publish(publish, properties, body).await?;
        Ok(PendingConfirmation {
            confirm,
            on_return_raises: channel.on_return_raises,
        })
    }

    async fn run(self) -> Result<Confirmation> {
        let timeout = self.timeout;
        with_timeout("basic.publish", timeout, async { self.send().await?.await }).await
    }
}

impl<'a> IntoFuture for Publish<'a> {
    type Output = Result<Confirmation>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<Confirmation>> + Send + 'a>>;

    fn into_future(mut self) -> Self::IntoFuture {
        self.timeout = self.timeout.or(self.exchange.channel.default_timeout);
        match self.timeout {
            // The common case, without the timeout's layer of future state.
            None => Box::pin(async move { self.send().await?.await }),
            Some(_) => Box::pin(self.run()),
        }
    }
}

/// A queued publish whose confirmation has not been awaited yet: see
/// [`Publish::send`]. Await it for the [`Confirmation`].
#[must_use = "await it for the broker's confirmation"]
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
            PublishOutcome::Ack => Ok(Confirmation::Ack),
            PublishOutcome::Nack => Ok(Confirmation::Nack),
            PublishOutcome::NotConfirmed => Ok(Confirmation::NotConfirmed),
            PublishOutcome::Returned(returned) => {
                let returned = Box::new(ReturnedMessage::from(*returned));
                if self.on_return_raises {
                    Err(Error::DeliveryError(returned))
                } else {
                    Ok(Confirmation::Returned(returned))
                }
            }
            PublishOutcome::Indeterminate(error) => Err(Error::Indeterminate(error)),
        })
    }
}
