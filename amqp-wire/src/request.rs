//! The [`Request`] trait: synchronous methods and the reply each one gets.
//!
//! The impls are generated (see `generated.rs`) from the protocol
//! definition, which marks requests `synchronous`; the reply to
//! `class.name` is `class.name-ok`. `basic.get` has two possible replies
//! (`basic.get-ok` and `basic.get-empty`), so it has no `Request` impl:
//! use [`Method::expects_reply`] for it.

use crate::generated::Method;

/// A synchronous method: one that the peer answers with a reply method.
///
/// Implemented for every synchronous method that has exactly one reply,
/// so only those can be awaited with a reply type known at compile time.
///
/// ```
/// use amqp_wire::{Method, QueueDeclare, QueueDeclareOk, QueueBindOk, Request, ShortString};
///
/// assert_eq!(<QueueDeclare as Request>::NAME, "queue.declare");
/// let ok = QueueDeclareOk { queue: ShortString::from_static("q"), message_count: 0, consumer_count: 0 };
/// let reply: Method = ok.clone().into();
/// assert!(QueueDeclare::is_reply(&reply));
/// assert_eq!(QueueDeclare::reply_from(reply), Ok(ok));
/// let other: Method = QueueBindOk::default().into();
/// assert_eq!(QueueDeclare::reply_from(other.clone()), Err(other));
/// assert!(QueueDeclare { nowait: true, ..Default::default() }.nowait());
/// ```
///
/// `basic.get` has two replies, so it is not a `Request`:
///
/// ```compile_fail
/// fn awaitable<R: amqp_wire::Request>(_: R) {}
/// awaitable(amqp_wire::BasicGet::default());
/// ```
pub trait Request: Into<Method> {
    /// The reply method's struct (e.g. `QueueDeclareOk` for `QueueDeclare`).
    type Reply;
    /// The spec's name, e.g. "queue.declare".
    const NAME: &'static str;
    /// True when `method` is this request's reply.
    fn is_reply(method: &Method) -> bool;
    /// The reply, or the method back when it is not this request's reply.
    // The method comes back by value so the caller can hand it on; boxing
    // it would allocate for every method that is not the reply.
    #[allow(clippy::result_large_err)]
    fn reply_from(method: Method) -> Result<Self::Reply, Method>;
    /// True when the request asks for no reply (its `nowait` bit is set); always false for methods without a nowait field.
    fn nowait(&self) -> bool;
}
