//! The queue a worker or an RPC handler declares.

use pika::{Channel, FieldValue, Queue};

/// How [`Master::create_worker`](crate::Master::create_worker) and
/// [`Rpc::register`](crate::Rpc::register) declare their queue (aio-pika's
/// `**kwargs` to `declare_queue`).
///
/// ```
/// use pika_patterns::QueueOptions;
/// let tasks = QueueOptions::durable();                  // survives restarts
/// let calls = QueueOptions::transient().auto_delete(true);
/// let limited = QueueOptions::durable().argument("x-max-length", 10_000i64);
/// # let _ = (tasks, calls, limited);
/// ```
#[derive(Debug, Clone, Default)]
pub struct QueueOptions {
    durable: bool,
    auto_delete: bool,
    exclusive: bool,
    arguments: Vec<(String, FieldValue)>,
}

impl QueueOptions {
    /// A durable queue: tasks wait in it across broker restarts. The
    /// default of Master/Worker.
    pub fn durable() -> Self {
        QueueOptions {
            durable: true,
            ..Default::default()
        }
    }

    /// A non-durable queue. The default of RPC (a call is not worth
    /// keeping across a broker restart: its caller has given up by then).
    pub fn transient() -> Self {
        QueueOptions::default()
    }

    /// Survives a broker restart.
    pub fn with_durable(mut self, on: bool) -> Self {
        self.durable = on;
        self
    }

    /// Deleted when its last consumer goes.
    pub fn auto_delete(mut self, on: bool) -> Self {
        self.auto_delete = on;
        self
    }

    /// Only this connection may use it.
    pub fn exclusive(mut self, on: bool) -> Self {
        self.exclusive = on;
        self
    }

    /// A queue argument (`x-max-length`, `x-dead-letter-exchange`, ...).
    /// A name longer than 255 bytes is refused when the queue is declared.
    pub fn argument(mut self, key: &str, value: impl Into<FieldValue>) -> Self {
        self.arguments.push((key.to_string(), value.into()));
        self
    }

    pub(crate) async fn declare(&self, channel: &Channel, name: &str) -> pika::Result<Queue> {
        let mut declare = channel
            .declare_queue(name)
            .durable(self.durable)
            .auto_delete(self.auto_delete)
            .exclusive(self.exclusive);
        for (key, value) in &self.arguments {
            declare = declare.argument(key, value.clone());
        }
        declare.await
    }
}
