//! Exchanges and bindings, confirms with nacks, mandatory returns,
//! consumer cancel by the broker, large messages.

mod support;

use std::time::Duration;

use amqp_conn::{Confirmation, ConnectionEvent, ConsumerEnd};
use amqp_wire::*;
use bytes::Bytes;
use support::*;

async fn recv(consumer: &mut amqp_conn::Consumer) -> amqp_conn::Delivery {
    tokio::time::timeout(Duration::from_secs(10), consumer.recv())
        .await
        .expect("a delivery within 10 s")
        .expect("the consumer is running")
}

#[tokio::test]
async fn publish_through_a_bound_exchange_reaches_the_queue() {
    let connection = connect().await;
    let channel = connection.open_channel().await.unwrap();
    let exchange = unique("direct");
    channel
        .call(ExchangeDeclare {
            exchange: s(&exchange),
            kind: s("direct"),
            auto_delete: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let queue = fresh_queue(&channel, "bound").await;
    channel
        .call(QueueBind {
            queue: s(&queue),
            exchange: s(&exchange),
            routing_key: s("key"),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut consumer = channel
        .consume(
            BasicConsume {
                queue: s(&queue),
                no_ack: true,
                ..Default::default()
            },
            8,
        )
        .await
        .unwrap();
    let publish = BasicPublish {
        exchange: s(&exchange),
        routing_key: s("key"),
        ..Default::default()
    };
    let mut headers = FieldTable::new();
    headers.insert(s("x-n"), 7i32);
    let props = BasicProperties {
        headers: Some(headers),
        delivery_mode: Some(2),
        ..Default::default()
    };
    channel
        .publish(publish, props, Bytes::from_static(b"routed"))
        .await
        .unwrap();
    let d = recv(&mut consumer).await;
    assert_eq!(&d.body[..], b"routed");
    assert_eq!(d.exchange, exchange.as_str());
    assert_eq!(d.routing_key, "key");
    assert_eq!(
        d.properties.headers.as_ref().unwrap().get("x-n"),
        Some(&FieldValue::LongInt(7))
    );
    channel
        .call(QueueUnbind {
            queue: s(&queue),
            exchange: s(&exchange),
            routing_key: s("key"),
            ..Default::default()
        })
        .await
        .unwrap();
    delete_queue(&channel, &queue).await;
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_full_queue_with_reject_publish_nacks_the_publish() {
    let connection = connect().await;
    let channel = connection.open_channel().await.unwrap();
    let queue = unique("max-length");
    let mut args = FieldTable::new();
    args.insert(s("x-max-length"), 2i32);
    args.insert(s("x-overflow"), "reject-publish");
    channel
        .call(QueueDeclare {
            queue: s(&queue),
            arguments: args,
            ..Default::default()
        })
        .await
        .unwrap();
    channel.confirm_select().await.unwrap();
    let mut outcomes = Vec::new();
    for n in 0..4u8 {
        let publish = BasicPublish {
            routing_key: s(&queue),
            ..Default::default()
        };
        let confirm = channel
            .publish(publish, BasicProperties::default(), Bytes::from(vec![n]))
            .await
            .unwrap();
        outcomes.push(confirm);
    }
    let mut got = Vec::new();
    for confirm in outcomes {
        got.push(match confirm.await {
            Confirmation::Ack => "ack",
            Confirmation::Nack { .. } => "nack",
            other => panic!("unexpected {other:?}"),
        });
    }
    assert_eq!(got, ["ack", "ack", "nack", "nack"]);
    delete_queue(&channel, &queue).await;
    connection.close().await.unwrap();
}

#[tokio::test]
async fn an_unroutable_mandatory_publish_is_returned_before_its_ack() {
    let connection = connect().await;
    let channel = connection.open_channel().await.unwrap();
    channel.confirm_select().await.unwrap();
    let routed_queue = fresh_queue(&channel, "routed").await;
    let nowhere = unique("nowhere");
    let routed = channel
        .publish(
            BasicPublish {
                routing_key: s(&routed_queue),
                mandatory: true,
                ..Default::default()
            },
            BasicProperties::default(),
            Bytes::from_static(b"a"),
        )
        .await
        .unwrap();
    let unroutable = channel
        .publish(
            BasicPublish {
                routing_key: s(&nowhere),
                mandatory: true,
                ..Default::default()
            },
            BasicProperties::default(),
            Bytes::from_static(b"b"),
        )
        .await
        .unwrap();
    assert!(matches!(routed.await, Confirmation::Ack));
    let Confirmation::Returned(returned) = unroutable.await else {
        panic!("expected a return")
    };
    assert_eq!(returned.reply_code, ReplyCode::NO_ROUTE);
    assert_eq!(returned.routing_key, nowhere.as_str());
    assert_eq!(&returned.body[..], b"b");
    delete_queue(&channel, &routed_queue).await;
    connection.close().await.unwrap();
}

#[tokio::test]
async fn without_confirms_returns_arrive_as_events() {
    let connection = connect().await;
    let mut events = connection.events();
    let channel = connection.open_channel().await.unwrap();
    let nowhere = unique("nowhere");
    channel
        .publish(
            BasicPublish {
                routing_key: s(&nowhere),
                mandatory: true,
                ..Default::default()
            },
            BasicProperties::default(),
            Bytes::from_static(b"c"),
        )
        .await
        .unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .unwrap()
        .unwrap();
    let ConnectionEvent::Returned {
        channel: id,
        returned,
    } = event
    else {
        panic!("{event:?}")
    };
    assert_eq!(id, channel.number());
    assert_eq!(&returned.body[..], b"c");
    connection.close().await.unwrap();
}

#[tokio::test]
async fn deleting_the_queue_cancels_its_consumer_explicitly() {
    let connection = connect().await;
    let channel = connection.open_channel().await.unwrap();
    let queue = fresh_queue(&channel, "cancelled").await;
    let mut consumer = channel
        .consume(
            BasicConsume {
                queue: s(&queue),
                ..Default::default()
            },
            8,
        )
        .await
        .unwrap();
    let other = connection.open_channel().await.unwrap();
    delete_queue(&other, &queue).await;
    let next = tokio::time::timeout(Duration::from_secs(5), consumer.recv())
        .await
        .unwrap();
    assert!(next.is_none());
    assert!(matches!(
        consumer.end(),
        Some(ConsumerEnd::CancelledByBroker)
    ));
    // The channel is still open.
    assert!(!channel.is_closed());
    connection.close().await.unwrap();
}

#[tokio::test]
async fn a_16_mib_message_crosses_many_body_frames_intact() {
    let connection = connect().await;
    let channel = connection.open_channel().await.unwrap();
    let queue = fresh_queue(&channel, "large").await;
    let body = numbered_body(0, 16 * 1024 * 1024);
    channel.confirm_select().await.unwrap();
    publish_acked(&channel, &queue, body.clone()).await;
    let mut consumer = channel
        .consume(
            BasicConsume {
                queue: s(&queue),
                ..Default::default()
            },
            1,
        )
        .await
        .unwrap();
    let d = recv(&mut consumer).await;
    assert_eq!(d.body.len(), body.len());
    assert!(d.body == body, "the body arrived intact");
    channel.ack(d.delivery_tag, false).unwrap();
    drop(consumer);
    delete_queue(&channel, &queue).await;
    connection.close().await.unwrap();
}

/// Bodies of one frame and of many, around the frame boundaries and the
/// sizes where the connection reads body frames straight into the
/// message's buffer, on two channels at once (their messages alternate on
/// the socket), a slow consumer with a buffer of one, and `basic.get`.
#[tokio::test]
async fn bodies_of_every_size_arrive_intact_on_channels_consumed_at_once() {
    const PAYLOAD: usize = 131_072 - 8;
    let sizes = [
        0,
        1,
        32 * 1024,
        PAYLOAD - 1,
        PAYLOAD,
        PAYLOAD + 1,
        2 * PAYLOAD,
        256 * 1024,
        1024 * 1024 + 7,
        3,
        3 * PAYLOAD - 5,
    ];
    let connection = connect().await;
    let publisher = connection.open_channel().await.unwrap();
    publisher.confirm_select().await.unwrap();
    let queues = [
        fresh_queue(&publisher, "sizes-a").await,
        fresh_queue(&publisher, "sizes-b").await,
    ];
    for round in 0..2u32 {
        for (seq, &len) in sizes.iter().enumerate() {
            for queue in &queues {
                let body = numbered_body(round * 100 + seq as u32, len);
                publish_acked(&publisher, queue, body).await;
            }
        }
    }
    // The first round by basic.get on the first queue.
    for (seq, &len) in sizes.iter().enumerate() {
        let got = publisher
            .get(BasicGet {
                queue: s(&queues[0]),
                no_ack: true,
                ..Default::default()
            })
            .await
            .unwrap()
            .expect("a message waits");
        assert!(
            got.body == numbered_body(seq as u32, len),
            "got message {seq} of {len} bytes intact"
        );
    }
    let mut consumers = Vec::new();
    for (i, queue) in queues.iter().enumerate() {
        let channel = connection.open_channel().await.unwrap();
        let consumer = channel
            .consume(
                BasicConsume {
                    queue: s(queue),
                    no_ack: true,
                    ..Default::default()
                },
                1,
            )
            .await
            .unwrap();
        let rounds = if i == 0 { 1..2 } else { 0..2 };
        consumers.push(tokio::spawn(async move {
            let mut consumer = consumer;
            for round in rounds {
                for (seq, &len) in sizes.iter().enumerate() {
                    let d = recv(&mut consumer).await;
                    assert!(
                        d.body == numbered_body(round * 100 + seq as u32, len),
                        "message {seq} of round {round} ({len} bytes) intact"
                    );
                    // A slow consumer: the connection waits for room.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            drop(channel);
        }));
    }
    for consumer in consumers {
        consumer.await.unwrap();
    }
    for queue in &queues {
        delete_queue(&publisher, queue).await;
    }
    connection.close().await.unwrap();
}

#[tokio::test]
async fn dropping_the_last_handle_closes_the_connection() {
    let name = unique("dropped");
    let connection = amqp_conn::Connection::open(config().with_connection_name(&name))
        .await
        .unwrap();
    let channel = connection.open_channel().await.unwrap();
    drop(connection);
    // The channel keeps the connection alive.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rabbitmqctl(&["-q", "list_connections", "client_properties"]).contains(&name));
    drop(channel);
    let mut gone = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !rabbitmqctl(&["-q", "list_connections", "client_properties"]).contains(&name) {
            gone = true;
            break;
        }
    }
    assert!(gone, "the broker still lists {name}");
}

/// Acks sent one by one are merged into multiple acks on the wire; the
/// broker must still see exactly the messages the application acked.
#[tokio::test]
async fn merged_acks_settle_exactly_the_acked_messages() {
    const N: u64 = 500;
    const HELD: u64 = 250;
    let connection = connect().await;
    let channel = connection.open_channel().await.unwrap();
    let queue = fresh_queue(&channel, "merged-acks").await;
    for n in 0..N {
        let publish = BasicPublish {
            routing_key: s(&queue),
            ..Default::default()
        };
        channel
            .publish(
                publish,
                BasicProperties::default(),
                Bytes::from(n.to_string()),
            )
            .await
            .unwrap();
    }
    let consumer_channel = connection.open_channel().await.unwrap();
    let mut consumer = consumer_channel
        .consume(
            BasicConsume {
                queue: s(&queue),
                ..Default::default()
            },
            1024,
        )
        .await
        .unwrap();
    for n in 0..N {
        let d = recv(&mut consumer).await;
        assert_eq!(d.body, n.to_string().as_bytes());
        if n != HELD {
            consumer_channel.ack(d.delivery_tag, false).unwrap();
        }
    }
    // Closing the channel requeues what it holds unacked: only HELD.
    consumer_channel.close().await.unwrap();
    let ok = channel
        .call(QueueDeclare {
            queue: s(&queue),
            passive: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(ok.message_count, 1, "only the held message is left");
    let held = channel
        .get(BasicGet {
            queue: s(&queue),
            no_ack: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .expect("the held message");
    assert_eq!(held.body, HELD.to_string().as_bytes());
    delete_queue(&channel, &queue).await;
    connection.close().await.unwrap();
}
