//! The typed queue and consumer arguments, each against the real broker:
//! the broker must act on what the setter wrote (a wrong name or value
//! type is silently ignored by RabbitMQ, so only behaviour proves it).

mod support;

use std::time::Duration;

use pika::{DeathReason, Error, Message, Overflow, QueueType, StreamOffset};
use support::*;

/// The next message of `queue` within 5 s (basic.get, polling).
async fn get_within(queue: &pika::Queue, what: &str) -> pika::IncomingMessage {
    for _ in 0..100 {
        if let Some(message) = queue.get().fail(false).await.unwrap() {
            return message;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {what} in queue {} within 5 s", queue.name());
}

#[tokio::test]
async fn a_rejected_message_reaches_the_dead_letter_exchange_with_a_readable_x_death() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let dlx = channel
        .declare_exchange(&unique("dlx"))
        .kind(pika::ExchangeType::Fanout)
        .auto_delete(true)
        .await
        .unwrap();
    let dead = channel
        .declare_queue(&unique("dead"))
        .exclusive(true)
        .await
        .unwrap();
    dead.bind(&dlx, "").await.unwrap();
    let work = channel
        .declare_queue(&unique("work"))
        .exclusive(true)
        .dead_letter_exchange(dlx.name())
        .dead_letter_routing_key("died")
        .await
        .unwrap();
    channel
        .default_exchange()
        .publish(Message::new("poison"), work.name())
        .await
        .unwrap()
        .ensure_routed()
        .unwrap();
    get_within(&work, "message").await.reject(false).unwrap();

    let died = get_within(&dead, "dead-lettered message").await;
    assert_eq!(died.body().as_ref(), b"poison");
    assert_eq!(died.routing_key(), "died");
    let deaths = died.x_death().unwrap();
    assert_eq!(deaths.len(), 1, "{deaths:?}");
    assert_eq!(deaths[0].queue, work.name());
    assert_eq!(deaths[0].reason, DeathReason::Rejected);
    assert_eq!(deaths[0].count, 1);
    assert_eq!(deaths[0].exchange, "");
    assert_eq!(deaths[0].routing_keys, vec![work.name().to_string()]);
    assert!(deaths[0].time.is_some());
    died.ack(false).unwrap();
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_message_past_its_ttl_is_dead_lettered_as_expired() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let dead = channel
        .declare_queue(&unique("expired"))
        .exclusive(true)
        .await
        .unwrap();
    let work = channel
        .declare_queue(&unique("ttl"))
        .exclusive(true)
        .message_ttl(Duration::from_millis(100))
        .dead_letter_exchange("")
        .dead_letter_routing_key(dead.name())
        .await
        .unwrap();
    channel
        .default_exchange()
        .publish(Message::new("short-lived"), work.name())
        .await
        .unwrap()
        .ensure_routed()
        .unwrap();
    let died = get_within(&dead, "expired message").await;
    let deaths = died.x_death().unwrap();
    assert_eq!(deaths[0].reason, DeathReason::Expired);
    assert_eq!(deaths[0].queue, work.name());
    assert!(work.get().fail(false).await.unwrap().is_none());
    connection.close().await.unwrap();
}

#[tokio::test]
async fn max_length_with_reject_publish_refuses_the_extra_publish_with_a_nack() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = channel
        .declare_queue(&unique("full"))
        .exclusive(true)
        .max_length(2)
        .overflow(Overflow::RejectPublish)
        .await
        .unwrap();
    let exchange = channel.default_exchange();
    for n in 0..2 {
        exchange
            .publish(Message::new(format!("m{n}")), queue.name())
            .await
            .unwrap()
            .ensure_routed()
            .unwrap();
    }
    let refused = exchange.publish(Message::new("m2"), queue.name()).await;
    assert!(matches!(refused, Err(Error::Nacked { .. })), "{refused:?}");
    connection.close().await.unwrap();
}

#[tokio::test]
async fn max_length_bytes_drops_the_oldest_by_default() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = channel
        .declare_queue(&unique("bytes"))
        .exclusive(true)
        .max_length_bytes(10)
        .overflow(Overflow::DropHead)
        .await
        .unwrap();
    let exchange = channel.default_exchange();
    for body in ["aaaaa", "bbbbb", "ccccc"] {
        exchange
            .publish(Message::new(body), queue.name())
            .await
            .unwrap()
            .ensure_routed()
            .unwrap();
    }
    // 15 bytes do not fit in 10: the oldest went.
    let first = get_within(&queue, "message").await;
    assert_eq!(first.body().as_ref(), b"bbbbb");
    first.ack(false).unwrap();
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_priority_queue_delivers_higher_priorities_first() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = channel
        .declare_queue(&unique("priority"))
        .exclusive(true)
        .max_priority(10)
        .await
        .unwrap();
    let exchange = channel.default_exchange();
    for (body, priority) in [("low", 1), ("high", 9), ("middle", 5)] {
        exchange
            .publish(Message::new(body).priority(priority), queue.name())
            .await
            .unwrap()
            .ensure_routed()
            .unwrap();
    }
    let mut order = Vec::new();
    for _ in 0..3 {
        let message = get_within(&queue, "message").await;
        order.push(String::from_utf8(message.body().to_vec()).unwrap());
        message.ack(false).unwrap();
    }
    assert_eq!(order, ["high", "middle", "low"]);
    connection.close().await.unwrap();
}

#[tokio::test]
async fn an_unused_queue_expires() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let name = unique("expires");
    channel
        .declare_queue(&name)
        .expires(Duration::from_millis(300))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let gone = channel.get_queue(&name).await;
    assert_eq!(
        gone.unwrap_err().reply_code(),
        Some(pika::ReplyCode::NOT_FOUND)
    );
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_single_active_consumer_hands_over_when_it_cancels() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = channel
        .declare_queue(&unique("sac"))
        .exclusive(true)
        .single_active_consumer(true)
        .await
        .unwrap();
    let mut first = queue.iterator().consumer_tag("first").await.unwrap();
    let mut second = queue.iterator().consumer_tag("second").await.unwrap();
    let exchange = channel.default_exchange();
    exchange
        .publish(Message::new("one"), queue.name())
        .await
        .unwrap()
        .ensure_routed()
        .unwrap();
    let got = next(&mut first).await.unwrap().unwrap();
    assert_eq!(got.body().as_ref(), b"one");
    got.ack(false).unwrap();
    // The second consumer is not active: it gets nothing.
    assert!(
        tokio::time::timeout(
            Duration::from_millis(300),
            futures_util::StreamExt::next(&mut second)
        )
        .await
        .is_err(),
        "the inactive consumer received a message"
    );
    first.close().await.unwrap();
    exchange
        .publish(Message::new("two"), queue.name())
        .await
        .unwrap()
        .ensure_routed()
        .unwrap();
    let got = next(&mut second).await.unwrap().unwrap();
    assert_eq!(got.body().as_ref(), b"two");
    got.ack(false).unwrap();
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_consumer_of_higher_priority_is_served_first() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let queue = channel
        .declare_queue(&unique("consumer-priority"))
        .exclusive(true)
        .await
        .unwrap();
    let mut low = queue.iterator().priority(0).await.unwrap();
    let mut high = queue.iterator().priority(10).await.unwrap();
    let exchange = channel.default_exchange();
    for n in 0..5 {
        exchange
            .publish(Message::new(format!("m{n}")), queue.name())
            .await
            .unwrap()
            .ensure_routed()
            .unwrap();
    }
    for _ in 0..5 {
        next(&mut high).await.unwrap().unwrap().ack(false).unwrap();
    }
    assert!(
        tokio::time::timeout(
            Duration::from_millis(300),
            futures_util::StreamExt::next(&mut low)
        )
        .await
        .is_err(),
        "the low-priority consumer was served while the high one had room"
    );
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_quorum_queue_dead_letters_past_its_delivery_limit() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let dead = channel
        .declare_queue(&unique("limit-dead"))
        .exclusive(true)
        .await
        .unwrap();
    let name = unique("quorum-limit");
    let work = channel
        .declare_queue(&name)
        .durable(true)
        .queue_type(QueueType::Quorum)
        .delivery_limit(1)
        .dead_letter_exchange("")
        .dead_letter_routing_key(dead.name())
        .await
        .unwrap();
    channel
        .default_exchange()
        .publish(Message::new("flaky"), work.name())
        .await
        .unwrap()
        .ensure_routed()
        .unwrap();
    // Returned to the queue again and again: past the limit it dies.
    let mut returns = 0;
    let died = loop {
        if let Some(message) = dead.get().fail(false).await.unwrap() {
            break message;
        }
        if let Some(message) = work.get().fail(false).await.unwrap() {
            message.reject(true).unwrap();
            returns += 1;
            assert!(returns <= 5, "still redelivered after {returns} returns");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(died.body().as_ref(), b"flaky");
    assert_eq!(
        died.x_death().unwrap()[0].reason,
        DeathReason::DeliveryLimit
    );
    // Quorum queues do not support if-unused (540, closing the connection).
    work.delete()
        .if_unused(false)
        .if_empty(false)
        .await
        .unwrap();
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_stream_consumer_resumes_after_the_last_offset_it_processed() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    channel.set_qos().prefetch_count(100).await.unwrap();
    let name = unique("stream");
    let stream = channel
        .declare_queue(&name)
        .durable(true)
        .queue_type(QueueType::Stream)
        .stream_max_age(Duration::from_secs(3600))
        .stream_max_segment_size_bytes(1_000_000)
        .await
        .unwrap();
    let exchange = channel.default_exchange();
    for n in 0..10 {
        exchange
            .publish(Message::new(format!("m{n}")), stream.name())
            .await
            .unwrap()
            .ensure_routed()
            .unwrap();
    }

    // Read the first four from the start, remembering the offset.
    let mut reader = stream
        .iterator()
        .stream_offset(StreamOffset::First)
        .await
        .unwrap();
    let mut last_offset = None;
    for n in 0..4 {
        let message = next(&mut reader).await.unwrap().unwrap();
        assert_eq!(message.body().as_ref(), format!("m{n}").as_bytes());
        last_offset = Some(
            message
                .stream_offset()
                .expect("a stream delivery has an offset"),
        );
        message.ack(false).unwrap();
    }
    reader.close().await.unwrap();

    // A new consumer from the stored offset + 1 gets the rest, in order.
    let from = last_offset.unwrap() + 1;
    let mut resumed = stream
        .iterator()
        .stream_offset(StreamOffset::Offset(from))
        .await
        .unwrap();
    for n in 4..10 {
        let message = next(&mut resumed).await.unwrap().unwrap();
        assert_eq!(message.body().as_ref(), format!("m{n}").as_bytes());
        message.ack(false).unwrap();
    }
    resumed.close().await.unwrap();

    // The stream arguments reached the broker.
    let listed = rabbitmqctl(&["-q", "list_queues", "name", "arguments"]);
    let line = listed
        .lines()
        .find(|line| line.starts_with(&name))
        .expect("the stream is listed");
    assert!(
        line.contains("x-max-age") && line.contains("3600s"),
        "{line}"
    );
    assert!(line.contains("x-stream-max-segment-size-bytes"), "{line}");
    stream
        .delete()
        .if_unused(false)
        .if_empty(false)
        .await
        .unwrap();
    connection.close().await.unwrap();
}

#[tokio::test]
async fn invalid_typed_arguments_are_refused_before_anything_is_sent() {
    let connection = connect().await;
    let channel = connection.channel().await.unwrap();
    let refused = channel
        .declare_queue(&unique("invalid"))
        .max_priority(0)
        .await
        .unwrap_err();
    assert!(refused.to_string().contains("x-max-priority"), "{refused}");
    let refused = channel
        .declare_queue(&unique("invalid"))
        .stream_max_age(Duration::from_millis(5))
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("under one second"),
        "{refused}"
    );
    assert!(!channel.is_closed());
    connection.close().await.unwrap();
}
