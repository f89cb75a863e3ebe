//! Messages: properties, get, consume, iterator, ack/nack/reject and
//! process() against the real broker.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pika::{Channel, DeliveryMode, Error, FieldValue, IncomingMessage, Message, Queue};
use support::*;

async fn queue_with(channel: &Channel, prefix: &str, bodies: &[&str]) -> Queue {
    let queue = channel
        .declare_queue(&unique(prefix))
        .exclusive(true)
        .await
        .unwrap();
    for body in bodies {
        let confirmation = channel
            .default_exchange()
            .publish(Message::new(body.to_string()), queue.name())
            .await
            .unwrap();
        assert!(confirmation.is_ack());
    }
    queue
}

#[tokio::test]
async fn all_message_properties_arrive() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = queue_with(&channel, "props", &[]).await;
    let stamp = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let message = Message::new("body")
        .content_type("application/json")
        .content_encoding("utf-8")
        .header("int", 7)
        .header("text", "value")
        .header("flag", true)
        .delivery_mode(DeliveryMode::Persistent)
        .priority(3)
        .correlation_id("corr")
        .reply_to("replies")
        .expiration(Duration::from_secs(60))
        .message_id("id-1")
        .timestamp(stamp)
        .message_type("test.type")
        .user_id("guest")
        .app_id("pika-tests");
    let _ = channel
        .default_exchange()
        .publish(message, queue.name())
        .await
        .unwrap();
    let got = queue.get().await.unwrap().unwrap();
    let info = got.info();
    assert_eq!(info.body_size, 4);
    assert_eq!(info.content_type.as_deref(), Some("application/json"));
    assert_eq!(info.content_encoding.as_deref(), Some("utf-8"));
    assert_eq!(info.headers.get("int"), Some(&FieldValue::LongInt(7)));
    assert_eq!(
        info.headers.get("text").and_then(FieldValue::as_str),
        Some("value")
    );
    assert_eq!(info.headers.get("flag"), Some(&FieldValue::Boolean(true)));
    assert_eq!(info.delivery_mode, Some(DeliveryMode::Persistent));
    assert_eq!(info.priority, Some(3));
    assert_eq!(info.correlation_id.as_deref(), Some("corr"));
    assert_eq!(info.reply_to.as_deref(), Some("replies"));
    assert_eq!(info.expiration.as_deref(), Some("60000"));
    assert_eq!(info.message_id.as_deref(), Some("id-1"));
    assert_eq!(info.timestamp, Some(stamp));
    assert_eq!(info.message_type.as_deref(), Some("test.type"));
    assert_eq!(info.user_id.as_deref(), Some("guest"));
    assert_eq!(info.app_id.as_deref(), Some("pika-tests"));
    assert_eq!(got.message_count(), Some(0));
    assert_eq!(got.routing_key(), queue.name());
    got.ack(false).unwrap();
    connection.close().await.unwrap();
}

#[tokio::test]
async fn expiration_at_a_past_time_expires_at_once() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = queue_with(&channel, "expired", &[]).await;
    let past = SystemTime::now() - Duration::from_secs(10);
    let _ = channel
        .default_exchange()
        .publish(Message::new("old").expiration_at(past), queue.name())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(queue.get().fail(false).await.unwrap().is_none());
    connection.close().await.unwrap();
}

#[tokio::test]
async fn get_on_empty_queue_with_fail_returns_queue_empty() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = queue_with(&channel, "empty", &[]).await;
    let err = queue.get().await.unwrap_err();
    assert!(
        matches!(&err, Error::QueueEmpty { queue: name } if name == queue.name()),
        "{err:?}"
    );
    assert!(queue.get().fail(false).await.unwrap().is_none());
    assert!(!channel.is_closed());
    connection.close().await.unwrap();
}

#[tokio::test]
async fn get_with_no_ack_needs_no_ack_and_refuses_one() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = queue_with(&channel, "noack", &["a"]).await;
    let got = queue.get().no_ack(true).await.unwrap().unwrap();
    assert!(matches!(got.ack(false), Err(Error::NoAck { .. })));
    assert!(queue.get().fail(false).await.unwrap().is_none());
    connection.close().await.unwrap();
}

#[tokio::test]
async fn acking_twice_is_a_local_error_and_the_channel_survives() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = queue_with(&channel, "twice", &["a", "b"]).await;
    let message = queue.get().await.unwrap().unwrap();
    message.ack(false).unwrap();
    let err = message.ack(false).unwrap_err();
    assert!(matches!(err, Error::AlreadyProcessed { .. }), "{err:?}");
    assert!(matches!(
        message.reject(true),
        Err(Error::AlreadyProcessed { .. })
    ));
    // The channel is fine.
    let second = queue.get().await.unwrap().unwrap();
    assert_eq!(&second.body()[..], b"b");
    second.ack(false).unwrap();
    assert!(!channel.is_closed());
    connection.close().await.unwrap();
}

#[tokio::test]
async fn nack_with_requeue_redelivers_and_reject_without_requeue_drops() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = queue_with(&channel, "nack", &["a"]).await;
    let first = queue.get().await.unwrap().unwrap();
    first.nack(false, true).unwrap();
    let again = queue.get().await.unwrap().unwrap();
    assert!(again.redelivered());
    again.reject(false).unwrap();
    assert!(queue.get().fail(false).await.unwrap().is_none());
    connection.close().await.unwrap();
}

#[tokio::test]
async fn consume_runs_an_async_callback_per_message_and_cancel_stops_it() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = queue_with(&channel, "consume", &["1", "2", "3"]).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let tag = queue
        .consume(move |message: IncomingMessage| {
            let tx = tx.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                tx.send(String::from_utf8_lossy(message.body()).into_owned())
                    .unwrap();
                message.ack(false).unwrap();
            }
        })
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    got.sort();
    assert_eq!(got, ["1", "2", "3"]);
    queue.cancel(&tag).await.unwrap();
    let _ = channel
        .default_exchange()
        .publish(Message::new("after cancel"), queue.name())
        .await
        .unwrap();
    // The consumer's task ended with its callback: nothing more arrives.
    assert!(matches!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv()).await,
        Err(_) | Ok(None)
    ));
    assert_eq!(
        &queue.get().await.unwrap().unwrap().body()[..],
        b"after cancel"
    );
    connection.close().await.unwrap();
}

#[tokio::test]
async fn iterator_yields_messages_and_ends_cleanly_on_cancel() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = queue_with(&channel, "iter", &["a", "b"]).await;
    let mut messages = queue.iterator().await.unwrap();
    for expected in ["a", "b"] {
        let message = next(&mut messages).await.unwrap().unwrap();
        assert_eq!(&message.body()[..], expected.as_bytes());
        message.ack(false).unwrap();
    }
    messages.close().await.unwrap();
    assert!(next(&mut messages).await.is_none());
    connection.close().await.unwrap();
}

#[tokio::test]
async fn iterator_ends_when_the_queue_is_deleted() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = channel.declare_queue(&unique("deleted")).await.unwrap();
    let mut messages = queue.iterator().await.unwrap();
    let other = connection.channel().await.unwrap();
    other
        .get_queue(queue.name())
        .await
        .unwrap()
        .delete()
        .if_unused(false)
        .await
        .unwrap();
    assert!(next(&mut messages).await.is_none());
    connection.close().await.unwrap();
}

#[tokio::test]
async fn iterator_yields_an_error_when_the_channel_closes() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = queue_with(&channel, "closing", &[]).await;
    let mut messages = queue.iterator().await.unwrap();
    // A passive declare of a missing queue closes the channel (404).
    let _ = channel.get_queue(&unique("missing")).await;
    let item = next(&mut messages).await.expect("an error item");
    assert_eq!(
        item.unwrap_err().reply_code(),
        Some(pika::ReplyCode::NOT_FOUND)
    );
    assert!(next(&mut messages).await.is_none());
    connection.close().await.unwrap();
}

#[tokio::test]
async fn process_acks_when_work_succeeds() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = queue_with(&channel, "process-ok", &["job"]).await;
    let message = queue.get().await.unwrap().unwrap();
    let result = message
        .process()
        .run(|m| async move { Ok::<_, Error>(m.body().len()) })
        .await
        .unwrap();
    assert_eq!(result, 3);
    channel.close().await.unwrap();
    let channel = connection.channel().await.unwrap();
    let queue = channel.get_queue(queue.name()).await.unwrap();
    assert!(
        queue.get().fail(false).await.unwrap().is_none(),
        "acked: not requeued when the channel closed"
    );
    connection.close().await.unwrap();
}

#[tokio::test]
async fn process_rejects_and_requeues_when_work_fails() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = queue_with(&channel, "process-fail", &["job"]).await;
    let message = queue.get().await.unwrap().unwrap();
    let err = message
        .process()
        .requeue(true)
        .run(|_| async {
            Err::<(), Error>(Error::InvalidArgument {
                what: "job",
                reason: "failed".into(),
            })
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }));
    let again = queue.get().await.unwrap().unwrap();
    assert!(again.redelivered());
    // Without requeue, a failure drops the message.
    again
        .process()
        .run(|_| async { Err::<(), Error>(Error::TransactionWithConfirms) })
        .await
        .unwrap_err();
    assert!(queue.get().fail(false).await.unwrap().is_none());
    connection.close().await.unwrap();
}

#[tokio::test]
async fn process_rejects_when_the_work_panics() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = queue_with(&channel, "process-panic", &["job"]).await;
    let message = queue.get().await.unwrap().unwrap();
    let task = tokio::spawn(async move {
        message
            .process()
            .requeue(true)
            .run(|_| async {
                panic!("the work panicked");
                #[allow(unreachable_code)]
                Ok::<(), Error>(())
            })
            .await
    });
    assert!(task.await.unwrap_err().is_panic());
    let again = queue.get().await.unwrap().unwrap();
    assert!(again.redelivered(), "rejected with requeue while unwinding");
    again.ack(false).unwrap();
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_dropped_process_guard_rejects_its_message() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = queue_with(&channel, "guard", &["job"]).await;
    let message = queue.get().await.unwrap().unwrap();
    let guard = message.process().requeue(true).guard();
    assert_eq!(&guard.body()[..], b"job");
    drop(guard);
    let again = queue.get().await.unwrap().unwrap();
    assert!(again.redelivered());
    let guard = again.process().guard();
    guard.ack().unwrap();
    assert!(queue.get().fail(false).await.unwrap().is_none());
    connection.close().await.unwrap();
}

#[tokio::test]
async fn process_with_reject_on_redelivered_drops_a_failing_redelivered_message() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = queue_with(&channel, "poison", &["poison"]).await;
    let fail = |m: IncomingMessage| async move {
        Err::<(), Error>(Error::QueueEmpty {
            queue: m.routing_key().to_string(),
        })
    };
    let first = queue.get().await.unwrap().unwrap();
    first
        .process()
        .requeue(true)
        .reject_on_redelivered(true)
        .run(fail)
        .await
        .unwrap_err();
    let second = queue.get().await.unwrap().unwrap();
    assert!(second.redelivered());
    second
        .process()
        .requeue(true)
        .reject_on_redelivered(true)
        .run(fail)
        .await
        .unwrap_err();
    assert!(
        queue.get().fail(false).await.unwrap().is_none(),
        "the redelivered failure was not requeued"
    );
    connection.close().await.unwrap();
}

#[tokio::test]
async fn process_with_ignore_processed_allows_a_manual_ack_inside() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = queue_with(&channel, "manual", &["a", "b"]).await;
    let first = queue.get().await.unwrap().unwrap();
    first
        .process()
        .ignore_processed(true)
        .run(|m| async move {
            m.reject(false)?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    // Without ignore_processed, settling twice is reported, not sent.
    let second = queue.get().await.unwrap().unwrap();
    let err = second
        .process()
        .run(|m| async move {
            m.ack(false)?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyProcessed { .. }), "{err:?}");
    assert!(!channel.is_closed());
    assert!(queue.get().fail(false).await.unwrap().is_none());
    connection.close().await.unwrap();
}

#[tokio::test]
async fn prefetch_bounds_concurrent_callbacks() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    channel.set_qos().prefetch_count(2).await.unwrap();
    let bodies: Vec<String> = (0..8).map(|n| n.to_string()).collect();
    let refs: Vec<&str> = bodies.iter().map(String::as_str).collect();
    let queue = queue_with(&channel, "concurrency", &refs).await;
    let running = Arc::new(Mutex::new((0usize, 0usize, 0usize)));
    let state = running.clone();
    queue
        .consume(move |message: IncomingMessage| {
            let state = state.clone();
            async move {
                {
                    let mut s = state.lock().unwrap();
                    s.0 += 1;
                    s.1 = s.1.max(s.0);
                }
                tokio::time::sleep(Duration::from_millis(30)).await;
                {
                    let mut s = state.lock().unwrap();
                    s.0 -= 1;
                    s.2 += 1;
                }
                message.ack(false).unwrap();
            }
        })
        .await
        .unwrap();
    for _ in 0..100 {
        if running.lock().unwrap().2 == 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, max_running, done) = *running.lock().unwrap();
    assert_eq!(done, 8);
    assert!(
        max_running <= 2,
        "at most prefetch_count callbacks at once, saw {max_running}"
    );
    connection.close().await.unwrap();
}
