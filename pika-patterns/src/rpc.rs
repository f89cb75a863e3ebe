//! RPC: calls published to a queue named after the method, replies over
//! RabbitMQ's direct reply-to (or a private callback queue).

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{FutureExt, StreamExt};
use pika::{Channel, Confirmation, DeliveryMode, IncomingMessage, Message, Queue, QueueIterator};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::error::PatternError;
use crate::queue_options::QueueOptions;
use crate::serializer::{self, Json, Serializer};

/// RabbitMQ's pseudo-queue for replies without a reply queue: consumed
/// with `no_ack` on the channel that publishes the calls.
pub const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// The `type` property of a reply carrying the handler's result.
const RESULT: &str = "result";
/// The `type` property of a reply carrying the handler's error.
const ERROR: &str = "error";
/// The `type` property of a call.
const CALL: &str = "call";

/// Where replies come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ReplyQueue {
    /// RabbitMQ's direct reply-to: no queue to declare, replies go
    /// straight to this channel's consumer (the default).
    #[default]
    DirectReplyTo,
    /// A private, exclusive, server-named callback queue.
    Private,
}

/// Remote procedure calls on one channel (aio-pika's `RPC`): the same
/// `Rpc` can call and serve, and many calls may be in flight at once.
///
/// Callee:
///
/// ```no_run
/// # async fn example(channel: pika::Channel) -> Result<(), pika_patterns::PatternError> {
/// use pika_patterns::{QueueOptions, Rpc};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Multiply { x: i64, y: i64 }
///
/// let rpc = Rpc::create(channel).await?;
/// rpc.register("multiply", |args: Multiply| async move {
///     Ok::<i64, std::convert::Infallible>(args.x * args.y)
/// }, QueueOptions::transient().auto_delete(true)).await?;
/// # Ok(()) }
/// ```
///
/// Caller (aio-pika's `await rpc.proxy.multiply(x=100, y=i)`):
///
/// ```no_run
/// # async fn example(channel: pika::Channel) -> Result<(), pika_patterns::PatternError> {
/// # #[derive(serde::Serialize)] struct Multiply { x: i64, y: i64 }
/// use std::time::Duration;
/// use pika_patterns::Rpc;
///
/// let rpc = Rpc::create(channel).await?;
/// let product: i64 = rpc
///     .call("multiply", &Multiply { x: 100, y: 7 })
///     .timeout(Duration::from_secs(5))
///     .await?;
/// assert_eq!(product, 700);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Rpc<S = Json> {
    inner: Arc<RpcInner<S>>,
}

impl<S> Clone for Rpc<S> {
    fn clone(&self) -> Self {
        Rpc {
            inner: self.inner.clone(),
        }
    }
}

#[derive(Debug)]
struct RpcInner<S> {
    channel: Channel,
    serializer: Arc<S>,
    replies: Arc<Replies>,
    /// The queue replies are consumed from, and the consumer's tag.
    reply_queue: Queue,
    reply_consumer_tag: String,
    /// The routing key callees reply to.
    reply_to: String,
    /// The registered handlers: method name to (queue, consumer tag).
    handlers: Mutex<HashMap<String, (Queue, String)>>,
    dispatcher: tokio::task::JoinHandle<()>,
}

impl<S> Drop for RpcInner<S> {
    fn drop(&mut self) {
        self.dispatcher.abort();
    }
}

/// The calls waiting for replies, shared with the dispatcher task.
#[derive(Debug)]
struct Replies {
    state: Mutex<ReplyState>,
    /// Correlation ids are `PREFIX.N`: the prefix tells our replies from
    /// strays, N finds the waiting call.
    prefix: String,
    next_id: AtomicU64,
    unknown: AtomicU64,
}

#[derive(Debug, Default)]
struct ReplyState {
    waiting: HashMap<u64, oneshot::Sender<IncomingMessage>>,
    /// Why replies can no longer arrive, once they cannot.
    closed: Option<String>,
}

impl Replies {
    fn lock(&self) -> std::sync::MutexGuard<'_, ReplyState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Hands a reply to its call; counts and drops a reply nobody waits for.
    fn route(&self, message: IncomingMessage) {
        let id = message
            .correlation_id()
            .and_then(|cid| cid.strip_prefix(self.prefix.as_str()))
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|n| n.parse::<u64>().ok());
        let waiter = id.and_then(|id| self.lock().waiting.remove(&id));
        match waiter {
            Some(waiter) => {
                // The call may have given up (timeout) in the meantime.
                let _ = waiter.send(message);
            }
            None => {
                self.unknown.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    correlation_id = message.correlation_id().unwrap_or(""),
                    "RPC reply for no waiting call dropped"
                );
            }
        }
    }

    /// Ends every waiting call: replies cannot arrive any more.
    fn close(&self, reason: String) {
        let waiting = {
            let mut state = self.lock();
            state.closed.get_or_insert(reason);
            std::mem::take(&mut state.waiting)
        };
        // Dropping the senders wakes each call with the reason.
        drop(waiting);
    }

    fn closed_reason(&self) -> Option<String> {
        self.lock().closed.clone()
    }
}

/// Removes a call's entry when the call ends early (timeout, dropped).
struct Waiting<'a> {
    replies: &'a Replies,
    id: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.replies.lock().waiting.remove(&self.id);
    }
}

/// Routes replies until the reply consumer ends, then fails every call
/// still waiting.
async fn dispatch(mut stream: QueueIterator, replies: Arc<Replies>) {
    let reason = loop {
        match stream.next().await {
            Some(Ok(message)) => replies.route(message),
            Some(Err(error)) => break crate::Chain(&error).to_string(),
            None => break "the reply consumer was cancelled".to_string(),
        }
    };
    replies.close(reason);
}

impl Rpc<Json> {
    /// Starts RPC on `channel` with JSON payloads and replies over direct
    /// reply-to. Use a channel of its own: direct reply-to ties the
    /// replies to the channel that publishes the calls.
    ///
    /// # Cancel safety
    /// Dropped midway, the reply consumer may stay on the channel until
    /// the channel closes.
    pub async fn create(channel: Channel) -> Result<Self, PatternError> {
        Rpc::create_with(channel, Json, ReplyQueue::DirectReplyTo).await
    }
}

impl<S: Serializer> Rpc<S> {
    /// Starts RPC on `channel` with `serializer`, replies coming back
    /// through `reply_queue`.
    ///
    /// # Cancel safety
    /// As [`create`](Rpc::create).
    pub async fn create_with(
        channel: Channel,
        serializer: S,
        reply_queue: ReplyQueue,
    ) -> Result<Self, PatternError> {
        let queue = match reply_queue {
            ReplyQueue::DirectReplyTo => channel.queue_handle(DIRECT_REPLY_TO)?,
            ReplyQueue::Private => {
                channel
                    .declare_queue("")
                    .exclusive(true)
                    .auto_delete(true)
                    .await?
            }
        };
        let stream = queue.iterator().no_ack(true).await?;
        let reply_consumer_tag = stream.consumer_tag().to_string();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let replies = Arc::new(Replies {
            state: Mutex::default(),
            prefix: format!("{:x}.{}", nanos, std::process::id()),
            next_id: AtomicU64::new(1),
            unknown: AtomicU64::new(0),
        });
        let dispatcher = tokio::spawn(dispatch(stream, replies.clone()));
        Ok(Rpc {
            inner: Arc::new(RpcInner {
                reply_to: queue.name().to_string(),
                channel,
                serializer: Arc::new(serializer),
                replies,
                reply_queue: queue,
                reply_consumer_tag,
                handlers: Mutex::default(),
                dispatcher,
            }),
        })
    }

    /// The channel calls and replies go through.
    pub fn channel(&self) -> &Channel {
        &self.inner.channel
    }

    /// Replies that arrived for no waiting call (a call that timed out,
    /// or a stray message) and were dropped.
    pub fn unknown_replies(&self) -> u64 {
        self.inner.replies.unknown.load(Ordering::Relaxed)
    }

    /// Calls `method` with `args` and waits for its reply, a `R`.
    /// Set a timeout: without one (and without an expiration) a call whose
    /// handler never answers waits as long as the channel lives.
    ///
    /// # Errors
    /// [`PatternError::Remote`] when the handler failed,
    /// [`PatternError::Timeout`], [`PatternError::NoRoute`] when no queue
    /// of that name exists (on a channel with publisher confirms), and
    /// [`PatternError::Closed`] at once when the channel closes while the
    /// call waits.
    pub fn call<'a, A, R>(&'a self, method: &'a str, args: &'a A) -> Call<'a, S, A, R>
    where
        A: Serialize + ?Sized,
    {
        Call {
            rpc: self,
            method,
            args,
            timeout: None,
            expiration: None,
            priority: None,
            delivery_mode: DeliveryMode::NotPersistent,
            reply: PhantomData,
        }
    }

    /// Serves `method`: declares the queue named `method` with `options`
    /// and consumes it; each call's arguments (an `A`) go to `handler`,
    /// whose result goes back to the caller: `Ok` as the reply, `Err` as a
    /// [`PatternError::Remote`] with the error's message. A panic is
    /// reported to the caller as a remote error too. Calls run
    /// concurrently (up to the channel's prefetch count, if set).
    ///
    /// # Cancel safety
    /// Dropped after the consumer started, it keeps serving until the
    /// channel closes, without being listed for
    /// [`unregister`](Self::unregister).
    pub async fn register<A, R, E, F, Fut>(
        &self,
        method: &str,
        handler: F,
        options: QueueOptions,
    ) -> Result<(), PatternError>
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        E: std::fmt::Display + Send + 'static,
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
    {
        if self.handlers().contains_key(method) {
            return Err(PatternError::AlreadyRegistered {
                method: method.into(),
            });
        }
        let queue = options.declare(&self.inner.channel, method).await?;
        let handler = Arc::new(handler);
        let serializer = self.inner.serializer.clone();
        let channel = self.inner.channel.clone();
        let method_name = Arc::<str>::from(method);
        let tag = queue
            .consume(move |message: IncomingMessage| {
                let handler = handler.clone();
                let serializer = serializer.clone();
                let channel = channel.clone();
                let method = method_name.clone();
                async move { serve(&*serializer, &*handler, &channel, &method, message).await }
            })
            .await?;
        // Registered meanwhile by a concurrent call: one handler serves a
        // method, so this consumer goes again.
        let taken = {
            let mut handlers = self.handlers();
            let taken = handlers.contains_key(method);
            if !taken {
                handlers.insert(method.to_string(), (queue.clone(), tag.clone()));
            }
            taken
        };
        if taken {
            queue.cancel(&tag).await?;
            return Err(PatternError::AlreadyRegistered {
                method: method.into(),
            });
        }
        Ok(())
    }

    /// Stops serving `method` (cancels its consumer; calls already taken
    /// are still answered). The queue stays unless it was auto-delete.
    ///
    /// # Cancel safety
    /// Dropping the future only stops waiting: the cancel still goes out.
    pub async fn unregister(&self, method: &str) -> Result<(), PatternError> {
        let Some((queue, tag)) = self.handlers().remove(method) else {
            return Err(PatternError::NotRegistered {
                method: method.into(),
            });
        };
        queue.cancel(&tag).await?;
        Ok(())
    }

    /// Stops serving every method, stops taking replies, and ends every
    /// call still waiting with [`PatternError::Closed`].
    ///
    /// # Cancel safety
    /// Dropping the future only stops waiting: the cancels still go out.
    pub async fn close(&self) -> Result<(), PatternError> {
        // Waiting calls end first, whatever the cancels below meet.
        self.inner.replies.close("the Rpc was closed".into());
        let handlers: Vec<_> = self.handlers().drain().collect();
        let mut first_error = None;
        for (_, (queue, tag)) in handlers {
            if let Err(error) = queue.cancel(&tag).await {
                first_error.get_or_insert(error);
            }
        }
        if let Err(error) = self
            .inner
            .reply_queue
            .cancel(&self.inner.reply_consumer_tag)
            .await
        {
            first_error.get_or_insert(error);
        }
        match first_error {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }

    fn handlers(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Queue, String)>> {
        self.inner
            .handlers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A handler's error as it travels back to the caller.
#[derive(Debug, Serialize, Deserialize)]
struct RemoteError {
    kind: String,
    message: String,
}

/// Answers one call.
async fn serve<S, A, R, E, F, Fut>(
    serializer: &S,
    handler: &F,
    channel: &Channel,
    method: &str,
    message: IncomingMessage,
) where
    S: Serializer,
    A: DeserializeOwned,
    R: Serialize,
    E: std::fmt::Display,
    F: Fn(A) -> Fut,
    Fut: Future<Output = Result<R, E>>,
{
    let Some(reply_to) = message.reply_to().map(str::to_string) else {
        tracing::warn!(method, "RPC call without reply_to rejected");
        let _ = message.reject(false);
        return;
    };
    let outcome = match serializer::read::<S, A>(serializer, &message) {
        Err(error) => Err(RemoteError {
            kind: "pika_patterns::PatternError".into(),
            message: crate::Chain(&error).to_string(),
        }),
        Ok(args) => match AssertUnwindSafe(async { handler(args).await })
            .catch_unwind()
            .await
        {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(error)) => Err(RemoteError {
                kind: std::any::type_name::<E>().into(),
                message: error.to_string(),
            }),
            Err(_) => Err(RemoteError {
                kind: "panic".into(),
                message: "the handler panicked".into(),
            }),
        },
    };
    let serialized = match outcome {
        Ok(result) => serializer.serialize(&result).map(|body| (RESULT, body)),
        Err(remote) => serializer.serialize(&remote).map(|body| (ERROR, body)),
    };
    let (kind, body) = match serialized {
        Ok(reply) => reply,
        // The result (or the error) has no form in this format: the
        // caller learns that instead of waiting for its timeout.
        Err(error) => {
            let remote = RemoteError {
                kind: "pika_patterns::PatternError".into(),
                message: format!("could not serialize the reply: {error}"),
            };
            match serializer.serialize(&remote) {
                Ok(body) => (ERROR, body),
                Err(_) => {
                    tracing::warn!(
                        method,
                        "an RPC reply cannot be serialized; the call is dropped"
                    );
                    let _ = message.reject(false);
                    return;
                }
            }
        }
    };
    let mut reply = serializer::label(serializer, Message::new(body)).message_type(kind);
    if let Some(correlation_id) = message.correlation_id() {
        reply = reply.correlation_id(correlation_id);
    }
    let sent = channel
        .default_exchange()
        .publish(reply, &reply_to)
        .mandatory(false)
        .await;
    let settled = match sent {
        Ok(_) => message.ack(false),
        Err(error) => {
            tracing::warn!(method, %error, "could not send an RPC reply; the call is dropped");
            message.reject(false)
        }
    };
    if let Err(error) = settled {
        tracing::warn!(method, %error, "could not settle an RPC call");
    }
}

/// Builder of [`Rpc::call`]; await it for the reply.
///
/// # Cancel safety
/// Dropped after the call was published, the call still runs on the
/// callee; its reply is dropped (and counted in
/// [`Rpc::unknown_replies`]).
#[must_use = "nothing is called until the builder is awaited"]
pub struct Call<'a, S, A: ?Sized, R> {
    rpc: &'a Rpc<S>,
    method: &'a str,
    args: &'a A,
    timeout: Option<Duration>,
    expiration: Option<Duration>,
    priority: Option<u8>,
    delivery_mode: DeliveryMode,
    reply: PhantomData<fn() -> R>,
}

impl<S, A: ?Sized, R> std::fmt::Debug for Call<'_, S, A, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("method", &self.method)
            .field("timeout", &self.timeout)
            .field("expiration", &self.expiration)
            .field("priority", &self.priority)
            .field("delivery_mode", &self.delivery_mode)
            .finish_non_exhaustive()
    }
}

impl<'a, S: Serializer, A: Serialize + ?Sized + Sync, R: DeserializeOwned + Send + 'a>
    Call<'a, S, A, R>
{
    /// Give up waiting for the reply after this long (and let the request
    /// expire in the queue then, unless an expiration is set).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The request expires in the queue if no handler takes it within
    /// this long; the call then ends with a timeout when it has none.
    pub fn expiration(mut self, expiration: Duration) -> Self {
        self.expiration = Some(expiration);
        self
    }

    /// The request's priority (for a queue with `x-max-priority`).
    pub fn priority(mut self, priority: u8) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Whether the request is persistent (default: not).
    pub fn delivery_mode(mut self, mode: DeliveryMode) -> Self {
        self.delivery_mode = mode;
        self
    }

    async fn run(self) -> Result<R, PatternError> {
        let inner = &self.rpc.inner;
        let replies = &inner.replies;
        let method = self.method;
        let closed = |reason: String| PatternError::Closed {
            method: method.into(),
            reason,
        };
        let body = inner
            .serializer
            .serialize(self.args)
            .map_err(PatternError::serialize)?;

        let id = replies.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, reply) = oneshot::channel();
        {
            let mut state = replies.lock();
            if let Some(reason) = &state.closed {
                return Err(closed(reason.clone()));
            }
            state.waiting.insert(id, sender);
        }
        let _waiting = Waiting { replies, id };

        let expiration = self.expiration.or(self.timeout);
        let wait = self.timeout.or(self.expiration);
        let mut message = serializer::label(&*inner.serializer, Message::new(body))
            .correlation_id(format!("{}.{id}", replies.prefix))
            .reply_to(&inner.reply_to)
            .message_type(CALL)
            .delivery_mode(self.delivery_mode);
        if let Some(expiration) = expiration {
            message = message.expiration(expiration);
        }
        if let Some(priority) = self.priority {
            message = message.priority(priority);
        }
        let reply = async {
            let published = inner
                .channel
                .default_exchange()
                .publish(message, method)
                .mandatory(true)
                .await;
            match published {
                Ok(Confirmation::Returned(_)) | Err(pika::Error::DeliveryError(_)) => {
                    return Err(PatternError::NoRoute {
                        name: method.into(),
                    })
                }
                Ok(_) => {}
                Err(error) => return Err(error.into()),
            }
            match reply.await {
                Ok(reply) => Ok(reply),
                Err(_) => Err(closed(
                    replies
                        .closed_reason()
                        .unwrap_or_else(|| "the Rpc was dropped".into()),
                )),
            }
        };
        let reply =
            match wait {
                None => reply.await?,
                Some(after) => tokio::time::timeout(after, reply).await.map_err(|_| {
                    PatternError::Timeout {
                        method: method.into(),
                        after,
                    }
                })??,
            };
        if reply.properties().kind.as_ref().map(|kind| kind.as_str()) == Some(ERROR) {
            let remote: RemoteError = serializer::read(&*inner.serializer, &reply)?;
            return Err(PatternError::Remote {
                method: method.into(),
                kind: remote.kind,
                message: remote.message,
            });
        }
        serializer::read(&*inner.serializer, &reply)
    }
}

impl<'a, S: Serializer, A: Serialize + ?Sized + Sync, R: DeserializeOwned + Send + 'a> IntoFuture
    for Call<'a, S, A, R>
{
    type Output = Result<R, PatternError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<R, PatternError>> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}
