//! Declare, bind, publish, consume, get, ack, nack and reject against the
//! real broker.

mod support;

use std::time::Duration;

use amqp_conn::{Confirmation, ConsumerEnd, Error};
use amqp_wire::*;
use bytes::Bytes;
use support::*;

fn publish_to(queue: &str) -> BasicPublish {
    BasicPublish {
        routing_key: s(queue),
        ..Default::default()
    }
}

#[tokio::test]
async fn handshake_negotiates_and_reports_the_server() {
    let connection = connect().await;
    let tuning = connection.tuning();
    assert_eq!(tuning.frame_max, 131_072);
    assert_eq!(tuning.heartbeat, 60);
    assert!(tuning.channel_max > 0);
    let product = connection
        .server_properties()
        .get("product")
        .and_then(FieldValue::as_str);
    assert_eq!(product, Some("RabbitMQ"));
    connection.close().await.unwrap();
    assert!(connection.is_closed() || connection.close_reason().is_none());
}

#[tokio::test]
async fn publish_with_confirm_then_get_and_ack() {
    let connection = connect().await;
    let channel = connection.open_channel().await.unwrap();
    let queue = fresh_queue(&channel, "get").await;
    channel.confirm_select().await.unwrap();
    let props = BasicProperties {
        content_type: Some(s("text/plain")),
        ..Default::default()
    };
    let confirm = channel
        .publish(publish_to(&queue), props, Bytes::from_static(b"hello"))
        .await
        .unwrap();
    assert!(matches!(confirm.await, Confirmation::Ack));

    let got = channel
        .get(BasicGet {
            queue: s(&queue),
            ..Default::default()
        })
        .await
        .unwrap()
        .expect("a message");
    assert_eq!(&got.body[..], b"hello");
    assert_eq!(got.properties.content_type.as_deref(), Some("text/plain"));
    assert_eq!(got.message_count, Some(0));
    channel.ack(got.delivery_tag, false).unwrap();

    let empty = channel
        .get(BasicGet {
            queue: s(&queue),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(empty.is_none());
    delete_queue(&channel, &queue).await;
    connection.close().await.unwrap();
}

#[tokio::test]
async fn consume_receives_in_order_and_nack_requeues() {
    let connection = connect().await;
    let channel = connection.open_channel().await.unwrap();
    let queue = fresh_queue(&channel, "consume").await;
    for n in 0..10u8 {
        channel
            .publish(
                publish_to(&queue),
                BasicProperties::default(),
                Bytes::from(vec![n]),
            )
            .await
            .unwrap();
    }
    channel
        .call(BasicQos {
            prefetch_count: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut consumer = channel
        .consume(
            BasicConsume {
                queue: s(&queue),
                ..Default::default()
            },
            16,
        )
        .await
        .unwrap();
    for n in 0..10u8 {
        let d = tokio::time::timeout(Duration::from_secs(5), consumer.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&d.body[..], &[n]);
        assert!(!d.redelivered);
        if n == 9 {
            channel.nack(d.delivery_tag, false, true).unwrap();
        } else {
            channel.ack(d.delivery_tag, false).unwrap();
        }
    }
    let again = tokio::time::timeout(Duration::from_secs(5), consumer.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&again.body[..], &[9]);
    assert!(again.redelivered);
    channel.reject(again.delivery_tag, false).unwrap();
    consumer.cancel().await.unwrap();
    assert!(consumer.recv().await.is_none());
    assert!(matches!(consumer.end(), Some(ConsumerEnd::Cancelled)));
    delete_queue(&channel, &queue).await;
    connection.close().await.unwrap();
}

#[tokio::test]
async fn missing_queue_gives_a_structured_404_and_the_connection_stays_usable() {
    let connection = connect().await;
    let channel = connection.open_channel().await.unwrap();
    let err = channel
        .call(QueueDeclare {
            queue: s(&unique("missing")),
            passive: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    let Error::ChannelClosed { reason, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(reason.code, ReplyCode::NOT_FOUND);
    assert_eq!(reason.method_name(), Some("queue.declare"));
    assert!(err.is_channel_error());
    assert!(channel.is_closed());
    // Later requests on the closed channel fail with the same reason.
    let again = channel.call(QueueDeclare::default()).await.unwrap_err();
    assert_eq!(again.reply_code(), Some(ReplyCode::NOT_FOUND));
    // The connection is fine.
    let other = connection.open_channel().await.unwrap();
    let q = fresh_queue(&other, "after-404").await;
    delete_queue(&other, &q).await;
    connection.close().await.unwrap();
}
