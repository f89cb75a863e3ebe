//! Master/Worker: tasks published to a durable queue named after the
//! task, taken by as many workers as run.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use pika::{Channel, Confirmation, DeliveryMode, IncomingMessage, Message, Queue};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::PatternError;
use crate::queue_options::QueueOptions;
use crate::serializer::{self, Json, Serializer};

/// Creates tasks and workers on one channel (aio-pika's `Master`).
///
/// ```no_run
/// # async fn example(channel: pika::Channel) -> Result<(), pika_patterns::PatternError> {
/// use pika_patterns::{Master, QueueOptions, TaskError};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct Resize { image_id: u64 }
///
/// let master = Master::new(channel);
/// let worker = master
///     .create_worker("resize", |task: Resize| async move {
///         println!("resizing {}", task.image_id);
///         Ok::<(), TaskError>(())
///     }, QueueOptions::durable())
///     .await?;
/// master.create_task("resize", &Resize { image_id: 7 }).await?;
/// # worker.close().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Master<S = Json> {
    channel: Channel,
    serializer: Arc<S>,
    requeue_on_failure: bool,
}

impl Master<Json> {
    /// A master that writes tasks as JSON.
    pub fn new(channel: Channel) -> Self {
        Master::with_serializer(channel, Json)
    }
}

impl<S: Serializer> Master<S> {
    /// A master that writes tasks with `serializer`.
    pub fn with_serializer(channel: Channel, serializer: S) -> Self {
        Master {
            channel,
            serializer: Arc::new(serializer),
            requeue_on_failure: false,
        }
    }

    /// Whether a task whose handler fails (an error other than
    /// [`RejectMessage`]/[`NackMessage`], or a panic) goes back to the
    /// queue for another try. Off by default: a task that always fails
    /// would otherwise come back forever. Dead-letter failed tasks with
    /// [`QueueOptions::argument`] `x-dead-letter-exchange` to keep them.
    pub fn requeue_on_failure(mut self, requeue: bool) -> Self {
        self.requeue_on_failure = requeue;
        self
    }

    /// The channel tasks go through.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Publishes a task: `payload` in the serializer's format, persistent,
    /// through the default exchange to the queue named `name`.
    ///
    /// # Errors
    /// [`PatternError::NoRoute`] when no queue of that name exists (no
    /// worker declared it yet), and the broker's refusals
    /// ([`pika::Error::Nacked`], ...) as [`PatternError::Amqp`]. Both need
    /// a channel with publisher confirms (pika's default, or
    /// `on_return_raises(true)`): without them `Ok` only means the task
    /// was handed to the connection, and a returned task arrives as a
    /// connection event.
    ///
    /// # Cancel safety
    /// Dropped after the publish went out, the task is published all the
    /// same.
    pub async fn create_task<T: Serialize + ?Sized>(
        &self,
        name: &str,
        payload: &T,
    ) -> Result<(), PatternError> {
        let body = self
            .serializer
            .serialize(payload)
            .map_err(PatternError::serialize)?;
        let message = serializer::label(&*self.serializer, Message::new(body))
            .delivery_mode(DeliveryMode::Persistent);
        let published = self
            .channel
            .default_exchange()
            .publish(message, name)
            .mandatory(true)
            .await;
        match published {
            Ok(Confirmation::Returned(_)) | Err(pika::Error::DeliveryError(_)) => {
                Err(PatternError::NoRoute { name: name.into() })
            }
            Ok(_) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Declares the queue `name` with `options` and consumes its tasks:
    /// `handler` runs for each (concurrently, up to the channel's prefetch
    /// count), and its result settles the message: `Ok` acks,
    /// [`RejectMessage`] rejects and [`NackMessage`] nacks (each with its
    /// `requeue`), any other error or a panic rejects (requeued if
    /// [`requeue_on_failure`](Self::requeue_on_failure)) and the worker
    /// goes on. A message that is not a `T` in this master's format is
    /// rejected without requeue and logged.
    ///
    /// # Cancel safety
    /// Dropped after the consumer started, the consumer stays: cancel it
    /// with [`Queue::cancel`] on the queue named `name`.
    pub async fn create_worker<T, F, Fut>(
        &self,
        name: &str,
        handler: F,
        options: QueueOptions,
    ) -> Result<Worker, PatternError>
    where
        T: DeserializeOwned + Send + 'static,
        F: Fn(T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), TaskError>> + Send + 'static,
    {
        let queue = options.declare(&self.channel, name).await?;
        let handler = Arc::new(handler);
        let serializer = self.serializer.clone();
        let requeue_on_failure = self.requeue_on_failure;
        let task = Arc::<str>::from(name);
        let consumer_tag = queue
            .consume(move |message: IncomingMessage| {
                let handler = handler.clone();
                let serializer = serializer.clone();
                let task = task.clone();
                async move {
                    run_task(&*serializer, &*handler, &task, message, requeue_on_failure).await;
                }
            })
            .await?;
        Ok(Worker {
            queue,
            consumer_tag,
        })
    }
}

/// Runs one task and settles its message by the outcome.
async fn run_task<S, T, F, Fut>(
    serializer: &S,
    handler: &F,
    task: &str,
    message: IncomingMessage,
    requeue_on_failure: bool,
) where
    S: Serializer,
    T: DeserializeOwned,
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<(), TaskError>>,
{
    let payload: T = match serializer::read(serializer, &message) {
        Ok(payload) => payload,
        Err(error) => {
            tracing::warn!(task, error = %crate::Chain(&error), "task rejected: its payload cannot be read");
            settle(task, message.reject(false));
            return;
        }
    };
    let outcome = AssertUnwindSafe(async { handler(payload).await })
        .catch_unwind()
        .await;
    let settled = match outcome {
        Ok(Ok(())) => message.ack(false),
        Ok(Err(TaskError::Reject(RejectMessage { requeue }))) => message.reject(requeue),
        Ok(Err(TaskError::Nack(NackMessage { requeue }))) => message.nack(false, requeue),
        Ok(Err(TaskError::Failed(error))) => {
            tracing::warn!(task, %error, requeue = requeue_on_failure, "task failed");
            message.reject(requeue_on_failure)
        }
        Err(_) => {
            tracing::warn!(task, requeue = requeue_on_failure, "task handler panicked");
            message.reject(requeue_on_failure)
        }
    };
    settle(task, settled);
}

fn settle(task: &str, settled: pika::Result<()>) {
    if let Err(error) = settled {
        tracing::warn!(task, %error, "could not settle a task's message");
    }
}

/// A running worker: consumes until [`close`](Worker::close)d or its
/// channel closes.
#[derive(Debug)]
pub struct Worker {
    queue: Queue,
    consumer_tag: String,
}

impl Worker {
    /// The queue it consumes.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Stops taking tasks (cancels the consumer); tasks already taken
    /// still finish and are settled.
    ///
    /// # Cancel safety
    /// Dropping the future only stops waiting: the cancel still goes out.
    pub async fn close(&self) -> Result<(), PatternError> {
        self.queue.cancel(&self.consumer_tag).await?;
        Ok(())
    }
}

/// Ask for the task's message to be rejected (aio-pika's `RejectMessage`):
/// `return Err(RejectMessage { requeue: false }.into())`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RejectMessage {
    /// Put it back in the queue.
    pub requeue: bool,
}

/// Ask for the task's message to be nacked (aio-pika's `NackMessage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NackMessage {
    /// Put it back in the queue.
    pub requeue: bool,
}

/// How a task handler did not succeed. Any error converts into
/// [`TaskError::Failed`] with `?`.
#[derive(Debug)]
#[non_exhaustive]
pub enum TaskError {
    /// Reject the message.
    Reject(RejectMessage),
    /// Nack the message.
    Nack(NackMessage),
    /// The handler failed: the message is rejected (requeued if the
    /// master says so).
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

impl From<RejectMessage> for TaskError {
    fn from(reject: RejectMessage) -> Self {
        TaskError::Reject(reject)
    }
}

impl From<NackMessage> for TaskError {
    fn from(nack: NackMessage) -> Self {
        TaskError::Nack(nack)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for TaskError {
    fn from(error: E) -> Self {
        TaskError::Failed(Box::new(error))
    }
}
