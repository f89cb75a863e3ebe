//! The protocol state without a socket: frames and commands in, frames
//! out, time paused.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use amqp_wire::*;
use bytes::{Bytes, BytesMut};
use tokio::sync::{broadcast, oneshot};
use tokio::time::Instant;

use super::*;
use crate::command::{ConsumerEnd, ConsumerSink};
use crate::delivery_queue::{delivery_queue, DeliveryReceiver};
use crate::message::{Confirmation, PublishProperties};

fn tuning(channel_max: u16, heartbeat: u16) -> Tuning {
    Tuning {
        channel_max,
        frame_max: 131_072,
        heartbeat,
    }
}

struct Harness {
    state: ConnectionState,
    events: broadcast::Receiver<ConnectionEvent>,
    /// Publishes handed to the state.
    published: u64,
    /// What each opened channel shares with its handles.
    shared: Vec<(ChannelRef, Arc<ChannelShared>)>,
}

fn s(text: &'static str) -> ShortString {
    ShortString::from_static(text)
}

impl Harness {
    fn new(channel_max: u16, heartbeat: u16) -> Self {
        let tx = crate::events::EventSender::default();
        let events = tx.subscribe();
        Harness {
            state: ConnectionState::new(
                tuning(channel_max, heartbeat),
                1 << 20,
                tx,
                Instant::now(),
            ),
            events,
            published: 0,
            shared: Vec::new(),
        }
    }

    /// Settles as a handle does: in the channel's book, then queued.
    fn settle(&mut self, channel: ChannelRef, method: impl Into<Method>) -> Result<()> {
        let method = method.into();
        let (tag, multiple) = match &method {
            Method::BasicAck(a) => (a.delivery_tag, a.multiple),
            Method::BasicNack(n) => (n.delivery_tag, n.multiple),
            Method::BasicReject(r) => (r.delivery_tag, false),
            other => panic!("not a settlement: {}", other.name()),
        };
        let shared = self.channel_shared(channel);
        let mut queued = None;
        crate::channel::settle(&shared, channel, tag, multiple, method, |command| {
            queued = Some(command);
            Ok(())
        })?;
        self.command(queued.expect("queued"));
        Ok(())
    }

    fn channel_shared(&self, channel: ChannelRef) -> Arc<ChannelShared> {
        self.shared
            .iter()
            .find(|(r, _)| *r == channel)
            .map(|(_, shared)| shared.clone())
            .expect("an opened channel")
    }

    /// Publishes whose places in flight the driver would not give back
    /// yet (held by the state).
    fn permits_out(&self) -> u64 {
        self.published - self.state.publishes_released()
    }

    /// Frames the state wrote since the last call.
    fn sent(&mut self) -> Vec<Frame> {
        let mut bytes = BytesMut::new();
        while !self.state.out.is_empty() {
            let len = {
                let mut slices = [std::io::IoSlice::new(&[]); 64];
                let n = self.state.out.io_slices(&mut slices);
                for slice in &slices[..n] {
                    bytes.extend_from_slice(slice);
                }
                slices[..n].iter().map(|s| s.len()).sum::<usize>()
            };
            self.state.out.advance(len);
        }
        let mut frames = Vec::new();
        while let Some(frame) = Frame::decode(&mut bytes, u32::MAX).unwrap() {
            frames.push(frame);
        }
        frames
    }

    fn sent_methods(&mut self) -> Vec<(u16, &'static str)> {
        self.sent()
            .iter()
            .filter_map(|f| match f {
                Frame::Method { channel, method } => Some((*channel, method.name())),
                _ => None,
            })
            .collect()
    }

    fn feed(&mut self, channel: u16, method: impl Into<Method>) {
        self.state.handle_frame(
            Frame::Method {
                channel,
                method: method.into(),
            },
            Instant::now(),
        );
    }

    fn feed_content(&mut self, channel: u16, properties: BasicProperties, body: &'static [u8]) {
        self.state.handle_frame(
            Frame::Header {
                channel,
                header: ContentHeader::new(body.len() as u64, properties),
            },
            Instant::now(),
        );
        if !body.is_empty() {
            self.state.handle_frame(
                Frame::Body {
                    channel,
                    payload: Bytes::from_static(body),
                },
                Instant::now(),
            );
        }
    }

    fn command(&mut self, command: Command) {
        self.state.handle_command(command, Instant::now());
    }

    /// Opens a channel and returns its reference.
    fn open_channel(&mut self) -> ChannelRef {
        let (reply, mut rx) = oneshot::channel();
        self.command(Command::OpenChannel { id: None, reply });
        let sent = self.sent();
        let [Frame::Method {
            channel,
            method: Method::ChannelOpen(_),
        }] = sent[..]
        else {
            panic!("expected channel.open, got {sent:?}");
        };
        self.feed(channel, ChannelOpenOk::default());
        let (r, shared) = rx.try_recv().expect("answered").expect("opened");
        assert_eq!(r.id, channel);
        self.shared.push((r, shared));
        r
    }

    fn call(
        &mut self,
        channel: ChannelRef,
        method: impl Into<Method>,
    ) -> oneshot::Receiver<Result<Method>> {
        let (reply, rx) = oneshot::channel();
        self.command(Command::Call {
            channel,
            method: Box::new(method.into()),
            reply: Reply::Method(reply),
        });
        rx
    }

    fn confirm_mode(&mut self, channel: ChannelRef) {
        let mut rx = self.call(channel, ConfirmSelect::default());
        self.sent();
        self.feed(channel.id, ConfirmSelectOk::default());
        assert!(rx.try_recv().unwrap().is_ok());
    }

    fn publish(
        &mut self,
        channel: ChannelRef,
        routing_key: &'static str,
        mandatory: bool,
    ) -> oneshot::Receiver<Confirmation> {
        self.publish_body(channel, routing_key, mandatory, Bytes::from_static(b"body"))
    }

    fn publish_body(
        &mut self,
        channel: ChannelRef,
        routing_key: &'static str,
        mandatory: bool,
        body: Bytes,
    ) -> oneshot::Receiver<Confirmation> {
        let (confirm, rx) = oneshot::channel();
        self.published += 1;
        self.command(Command::Publish(PublishCommand {
            channel,
            publish: BasicPublish {
                routing_key: s(routing_key),
                mandatory,
                ..Default::default()
            },
            properties: PublishProperties::default(),
            body,
            confirm: Some(confirm),
        }));
        rx
    }

    fn consume(
        &mut self,
        channel: ChannelRef,
        tag: &'static str,
        buffer: usize,
    ) -> (DeliveryReceiver, Arc<OnceLock<ConsumerEnd>>) {
        self.consume_from(channel, "", tag, buffer)
    }

    fn consume_from(
        &mut self,
        channel: ChannelRef,
        queue: &'static str,
        tag: &'static str,
        buffer: usize,
    ) -> (DeliveryReceiver, Arc<OnceLock<ConsumerEnd>>) {
        let (tx, rx) = delivery_queue(buffer);
        let end = Arc::new(OnceLock::new());
        let (reply, mut tag_rx) = oneshot::channel();
        self.command(Command::Call {
            channel,
            method: Box::new(
                BasicConsume {
                    queue: s(queue),
                    ..Default::default()
                }
                .into(),
            ),
            reply: Reply::Consume {
                sink: ConsumerSink {
                    deliveries: tx,
                    end: end.clone(),
                    no_ack: false,
                    restored: true,
                },
                reply,
            },
        });
        self.sent();
        self.feed(
            channel.id,
            BasicConsumeOk {
                consumer_tag: s(tag),
            },
        );
        assert_eq!(tag_rx.try_recv().unwrap().unwrap(), tag);
        (rx, end)
    }

    fn deliver(&mut self, channel: u16, tag: &'static str, delivery_tag: u64, body: &'static [u8]) {
        self.feed(
            channel,
            BasicDeliver {
                consumer_tag: s(tag),
                delivery_tag,
                redelivered: false,
                exchange: s(""),
                routing_key: s("q"),
            },
        );
        self.feed_content(channel, BasicProperties::default(), body);
    }
}

fn outcome_name(rx: &mut oneshot::Receiver<Confirmation>) -> &'static str {
    match rx.try_recv() {
        Ok(Confirmation::Ack) => "ack",
        Ok(Confirmation::Nack { .. }) => "nack",
        Ok(Confirmation::Returned(_)) => "returned",
        Ok(Confirmation::Indeterminate(_)) => "indeterminate",
        Ok(Confirmation::NotConfirmed) => "not confirmed",
        Ok(Confirmation::Refused(_)) => "refused",
        Err(_) => "pending",
    }
}

#[tokio::test(start_paused = true)]
async fn synchronous_requests_on_a_channel_go_out_one_at_a_time_in_order() {
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    let mut first = h.call(
        ch,
        QueueDeclare {
            queue: s("a"),
            ..Default::default()
        },
    );
    let mut second = h.call(
        ch,
        QueueBind {
            queue: s("a"),
            exchange: s("x"),
            ..Default::default()
        },
    );
    let mut third = h.call(
        ch,
        BasicQos {
            prefetch_count: 1,
            ..Default::default()
        },
    );
    assert_eq!(h.sent_methods(), [(ch.id, "queue.declare")]);

    h.feed(
        ch.id,
        QueueDeclareOk {
            queue: s("a"),
            message_count: 0,
            consumer_count: 0,
        },
    );
    assert!(matches!(
        first.try_recv().unwrap().unwrap(),
        Method::QueueDeclareOk(_)
    ));
    assert_eq!(h.sent_methods(), [(ch.id, "queue.bind")]);
    assert!(second.try_recv().is_err(), "not answered yet");

    h.feed(ch.id, QueueBindOk::default());
    assert!(matches!(
        second.try_recv().unwrap().unwrap(),
        Method::QueueBindOk(_)
    ));
    assert_eq!(h.sent_methods(), [(ch.id, "basic.qos")]);
    h.feed(ch.id, BasicQosOk::default());
    assert!(third.try_recv().unwrap().is_ok());
    assert!(h.sent().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_reply_that_answers_nothing_closes_the_connection() {
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    h.feed(ch.id, QueueBindOk::default());
    assert!(matches!(h.state.phase, ConnectionPhase::Closing { .. }));
    let sent = h.sent();
    let [Frame::Method {
        channel: 0,
        method: Method::ConnectionClose(close),
    }] = &sent[..]
    else {
        panic!("expected connection.close, got {sent:?}")
    };
    assert_eq!(ReplyCode(close.reply_code), ReplyCode::UNEXPECTED_FRAME);
}

#[tokio::test(start_paused = true)]
async fn channel_numbers_are_reused_after_close_ok_and_limited_by_channel_max() {
    let mut h = Harness::new(2, 0);
    let one = h.open_channel();
    let two = h.open_channel();
    assert_eq!((one.id, two.id), (1, 2));
    let (reply, mut rx) = oneshot::channel();
    h.command(Command::OpenChannel { id: None, reply });
    assert!(matches!(
        rx.try_recv().unwrap(),
        Err(Error::ChannelLimitReached { channel_max: 2 })
    ));

    // Closing frees the number only when close-ok arrives.
    let (reply, mut closed) = oneshot::channel();
    h.command(Command::CloseChannel {
        channel: one,
        reply: Some(reply),
    });
    assert_eq!(h.sent_methods(), [(1, "channel.close")]);
    let (reply, mut rx) = oneshot::channel();
    h.command(Command::OpenChannel { id: None, reply });
    assert!(matches!(
        rx.try_recv().unwrap(),
        Err(Error::ChannelLimitReached { .. })
    ));
    h.feed(1, ChannelCloseOk::default());
    assert!(closed.try_recv().unwrap().is_ok());
    let again = h.open_channel();
    assert_eq!(again.id, 1);
    assert_ne!(again.generation, one.generation);

    // A stale handle of the old channel 1 cannot reach the new one.
    let mut stale = h.call(one, QueueDeclare::default());
    assert!(matches!(
        stale.try_recv().unwrap(),
        Err(Error::ChannelClosed { channel: 1, .. })
    ));
    assert!(h.sent().is_empty());
}

#[tokio::test(start_paused = true)]
async fn explicit_channel_numbers() {
    let mut h = Harness::new(10, 0);
    let (reply, _rx) = oneshot::channel();
    h.command(Command::OpenChannel { id: Some(7), reply });
    assert_eq!(h.sent_methods(), [(7, "channel.open")]);
    let (reply, mut rx) = oneshot::channel();
    h.command(Command::OpenChannel { id: Some(7), reply });
    assert!(matches!(
        rx.try_recv().unwrap(),
        Err(Error::ChannelUnavailable { channel: 7, .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn confirms_multiple_acks_nacks_and_out_of_order() {
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    h.confirm_mode(ch);
    let mut rx: Vec<_> = (0..5).map(|_| h.publish(ch, "q", false)).collect();
    assert_eq!(h.sent_methods().len(), 5);
    h.feed(
        ch.id,
        BasicAck {
            delivery_tag: 2,
            multiple: true,
        },
    );
    h.feed(
        ch.id,
        BasicNack {
            delivery_tag: 4,
            multiple: false,
            requeue: false,
        },
    );
    let got: Vec<_> = rx.iter_mut().map(outcome_name).collect();
    assert_eq!(got, ["ack", "ack", "pending", "nack", "pending"]);
    h.feed(
        ch.id,
        BasicAck {
            delivery_tag: 5,
            multiple: false,
        },
    );
    h.feed(
        ch.id,
        BasicAck {
            delivery_tag: 3,
            multiple: false,
        },
    );
    assert_eq!(outcome_name(&mut rx[2]), "ack");
    assert_eq!(outcome_name(&mut rx[4]), "ack");
}

#[tokio::test(start_paused = true)]
async fn a_return_before_the_ack_is_the_outcome_of_that_publish() {
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    h.confirm_mode(ch);
    let mut routed = h.publish(ch, "routed", true);
    let mut unroutable = h.publish(ch, "nowhere", true);
    h.feed(
        ch.id,
        BasicReturn {
            reply_code: 312,
            reply_text: s("NO_ROUTE"),
            exchange: s(""),
            routing_key: s("nowhere"),
        },
    );
    h.feed_content(ch.id, BasicProperties::default(), b"body");
    h.feed(
        ch.id,
        BasicAck {
            delivery_tag: 2,
            multiple: true,
        },
    );
    assert_eq!(outcome_name(&mut routed), "ack");
    let Ok(Confirmation::Returned(returned)) = unroutable.try_recv() else {
        panic!()
    };
    assert_eq!(returned.reply_code, ReplyCode::NO_ROUTE);
    assert_eq!(&returned.body[..], b"body");
}

#[tokio::test(start_paused = true)]
async fn without_confirms_a_return_is_an_event() {
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    let mut rx = h.publish(ch, "nowhere", true);
    assert_eq!(outcome_name(&mut rx), "not confirmed");
    h.feed(
        ch.id,
        BasicReturn {
            reply_code: 312,
            reply_text: s("NO_ROUTE"),
            exchange: s(""),
            routing_key: s("nowhere"),
        },
    );
    h.feed_content(ch.id, BasicProperties::default(), b"");
    assert!(
        matches!(h.events.try_recv().unwrap(), ConnectionEvent::Returned { channel, .. } if channel == ch.id)
    );
}

#[tokio::test(start_paused = true)]
async fn deliveries_reach_their_consumer_and_a_full_buffer_stalls_reading() {
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    let (mut rx, _end) = h.consume(ch, "c1", 1);
    h.deliver(ch.id, "c1", 1, b"one");
    assert_eq!(&rx.try_recv().unwrap().body[..], b"one");
    h.deliver(ch.id, "c1", 2, b"two");
    assert!(h.state.stall.is_none());
    h.deliver(ch.id, "c1", 3, b"three");
    let stall = h
        .state
        .stall
        .take()
        .expect("buffer of 1 is full: reading stalls");
    assert_eq!(stall.delivery.delivery_tag, 3);
    assert_eq!(&rx.try_recv().unwrap().body[..], b"two");
}

#[tokio::test(start_paused = true)]
async fn a_delivery_for_a_dropped_consumer_is_requeued_and_the_consumer_cancelled() {
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    let (rx, _end) = h.consume(ch, "c1", 4);
    drop(rx);
    h.deliver(ch.id, "c1", 9, b"x");
    let sent = h.sent();
    assert!(
        matches!(&sent[0], Frame::Method { method: Method::BasicReject(r), .. } if r.delivery_tag == 9 && r.requeue)
    );
    assert!(
        matches!(&sent[1], Frame::Method { method: Method::BasicCancel(c), .. } if c.consumer_tag == "c1")
    );
}

#[tokio::test(start_paused = true)]
async fn broker_cancel_ends_the_consumer_explicitly() {
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    let (mut rx, end) = h.consume(ch, "c1", 4);
    h.feed(
        ch.id,
        BasicCancel {
            consumer_tag: s("c1"),
            nowait: false,
        },
    );
    assert_eq!(h.sent_methods(), [(ch.id, "basic.cancel-ok")]);
    assert!(rx.try_recv().is_none());
    assert!(matches!(end.get(), Some(ConsumerEnd::CancelledByBroker)));
}

#[tokio::test(start_paused = true)]
async fn basic_get_with_content_and_get_empty() {
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    let (reply, mut first) = oneshot::channel();
    h.command(Command::Call {
        channel: ch,
        method: Box::new(BasicGet::default().into()),
        reply: Reply::Get(reply),
    });
    let (reply, mut second) = oneshot::channel();
    h.command(Command::Call {
        channel: ch,
        method: Box::new(BasicGet::default().into()),
        reply: Reply::Get(reply),
    });
    assert_eq!(h.sent_methods(), [(ch.id, "basic.get")]);
    h.feed(
        ch.id,
        BasicGetOk {
            delivery_tag: 1,
            redelivered: false,
            exchange: s(""),
            routing_key: s("q"),
            message_count: 3,
        },
    );
    assert!(first.try_recv().is_err(), "waits for the content");
    h.feed_content(ch.id, BasicProperties::default(), b"payload");
    let got = first.try_recv().unwrap().unwrap().unwrap();
    assert_eq!(
        (&got.body[..], got.message_count),
        (&b"payload"[..], Some(3))
    );
    assert_eq!(h.sent_methods(), [(ch.id, "basic.get")]);
    h.feed(ch.id, BasicGetEmpty::default());
    assert!(second.try_recv().unwrap().unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_broker_channel_close_fails_that_channel_only() {
    let mut h = Harness::new(10, 0);
    let a = h.open_channel();
    let b = h.open_channel();
    let mut pending = h.call(
        a,
        QueueDeclare {
            queue: s("q"),
            passive: true,
            ..Default::default()
        },
    );
    h.sent();
    h.feed(
        a.id,
        ChannelClose {
            reply_code: 404,
            reply_text: s("NOT_FOUND - no queue 'q'"),
            class_id: 50,
            method_id: 10,
        },
    );
    assert_eq!(h.sent_methods(), [(a.id, "channel.close-ok")]);
    let err = pending.try_recv().unwrap().unwrap_err();
    assert_eq!(err.reply_code(), Some(ReplyCode::NOT_FOUND));
    assert!(
        matches!(h.events.try_recv().unwrap(), ConnectionEvent::ChannelClosed { channel, .. } if channel == a.id)
    );
    // The other channel works.
    let mut ok = h.call(b, BasicQos::default());
    h.feed(b.id, BasicQosOk::default());
    assert!(ok.try_recv().unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn every_pending_waiter_resolves_when_the_broker_closes_the_connection() {
    let mut h = Harness::new(10, 0);
    let a = h.open_channel();
    let b = h.open_channel();
    h.confirm_mode(b);
    let mut call = h.call(a, QueueDeclare::default());
    let mut queued = h.call(a, QueueDeclare::default());
    let mut confirm = h.publish(b, "q", false);
    let (mut deliveries, end) = h.consume(b, "c", 4);
    let (reply, mut get) = oneshot::channel();
    let c = h.open_channel();
    h.command(Command::Call {
        channel: c,
        method: Box::new(BasicGet::default().into()),
        reply: Reply::Get(reply),
    });
    let (reply, mut opening) = oneshot::channel();
    h.command(Command::OpenChannel { id: None, reply });
    h.sent();

    h.feed(
        0,
        ConnectionClose {
            reply_code: 320,
            reply_text: s("CONNECTION_FORCED - shutdown"),
            class_id: 0,
            method_id: 0,
        },
    );
    assert_eq!(h.sent_methods(), [(0, "connection.close-ok")]);
    let forced = |e: &Error| e.reply_code() == Some(ReplyCode::CONNECTION_FORCED);
    assert!(forced(&call.try_recv().unwrap().unwrap_err()));
    assert!(forced(&queued.try_recv().unwrap().unwrap_err()));
    assert!(matches!(confirm.try_recv().unwrap(), Confirmation::Indeterminate(e) if forced(&e)));
    assert!(matches!(end.get(), Some(ConsumerEnd::Closed(e)) if forced(e)));
    assert!(deliveries.try_recv().is_none());
    assert!(forced(&get.try_recv().unwrap().unwrap_err()));
    assert!(forced(&opening.try_recv().unwrap().unwrap_err()));
    assert!(matches!(h.state.phase, ConnectionPhase::Closed { .. }));

    // Requests after the close fail at once with the same reason.
    let mut late = h.call(a, QueueDeclare::default());
    assert!(forced(&late.try_recv().unwrap().unwrap_err()));
}

#[tokio::test(start_paused = true)]
async fn closing_the_connection_waits_for_close_ok_then_answers() {
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    let mut pending = h.call(ch, QueueDeclare::default());
    h.sent();
    let (reply, mut closed) = oneshot::channel();
    h.command(Command::CloseConnection {
        code: 200,
        text: "bye".into(),
        reply: Some(reply),
    });
    assert_eq!(h.sent_methods(), [(0, "connection.close")]);
    assert!(
        matches!(pending.try_recv().unwrap(), Err(Error::ConnectionClosed(r)) if r.initiator == Initiator::Client)
    );
    assert!(closed.try_recv().is_err());
    // Frames still arriving for channels are dropped quietly.
    h.feed(
        ch.id,
        QueueDeclareOk {
            queue: s("q"),
            message_count: 0,
            consumer_count: 0,
        },
    );
    h.feed(0, ConnectionCloseOk::default());
    assert!(closed.try_recv().unwrap().is_ok());
    assert!(matches!(h.state.phase, ConnectionPhase::Closed { .. }));
}

#[tokio::test(start_paused = true)]
async fn a_close_that_gets_no_answer_ends_after_the_timeout() {
    let mut h = Harness::new(10, 0);
    let (reply, mut closed) = oneshot::channel();
    h.command(Command::CloseConnection {
        code: 200,
        text: "bye".into(),
        reply: Some(reply),
    });
    let deadline = h.state.deadline().unwrap();
    assert_eq!(deadline, Instant::now() + CLOSE_TIMEOUT);
    tokio::time::advance(CLOSE_TIMEOUT).await;
    h.state.handle_timeout(Instant::now(), false);
    assert!(closed.try_recv().unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn heartbeats_are_sent_when_idle_and_silence_kills_the_connection() {
    let mut h = Harness::new(10, 10);
    let ch = h.open_channel();
    let mut pending = h.call(ch, QueueDeclare::default());
    h.sent();
    let start = Instant::now();
    assert_eq!(h.state.deadline(), Some(start + Duration::from_secs(5)));
    tokio::time::advance(Duration::from_secs(5)).await;
    h.state.handle_timeout(Instant::now(), false);
    assert_eq!(h.sent(), [Frame::Heartbeat]);
    // The broker's heartbeat keeps the connection alive.
    h.state.handle_frame(Frame::Heartbeat, Instant::now());
    tokio::time::advance(Duration::from_secs(19)).await;
    h.state.handle_timeout(Instant::now(), false);
    assert!(h.state.is_open());
    tokio::time::advance(Duration::from_secs(1)).await;
    h.state.handle_timeout(Instant::now(), false);
    let ConnectionPhase::Closed {
        error: Error::HeartbeatTimeout { interval, .. },
    } = &h.state.phase
    else {
        panic!("expected a heartbeat timeout, got {:?}", h.state.phase)
    };
    assert_eq!(*interval, Duration::from_secs(10));
    assert!(matches!(
        pending.try_recv().unwrap(),
        Err(Error::HeartbeatTimeout { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn a_blocked_connection_is_not_declared_dead() {
    let mut h = Harness::new(10, 10);
    h.feed(
        0,
        ConnectionBlocked {
            reason: s("low on memory"),
        },
    );
    assert!(
        matches!(h.events.try_recv().unwrap(), ConnectionEvent::Blocked { reason } if reason == "low on memory")
    );
    for _ in 0..20 {
        tokio::time::advance(Duration::from_secs(5)).await;
        h.state.handle_timeout(Instant::now(), false);
    }
    assert!(h.state.is_open());
    h.feed(0, ConnectionUnblocked::default());
    assert!(matches!(
        h.events.try_recv().unwrap(),
        ConnectionEvent::Unblocked
    ));
    assert!(!h.state.blocked);
}

#[tokio::test(start_paused = true)]
async fn a_body_larger_than_announced_is_a_protocol_error() {
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    let (_rx, _end) = h.consume(ch, "c", 4);
    h.feed(
        ch.id,
        BasicDeliver {
            consumer_tag: s("c"),
            delivery_tag: 1,
            redelivered: false,
            exchange: s(""),
            routing_key: s("q"),
        },
    );
    h.state.handle_frame(
        Frame::Header {
            channel: ch.id,
            header: ContentHeader::new(2, BasicProperties::default()),
        },
        Instant::now(),
    );
    h.state.handle_frame(
        Frame::Body {
            channel: ch.id,
            payload: Bytes::from_static(b"abc"),
        },
        Instant::now(),
    );
    assert!(matches!(
        &h.state.phase,
        ConnectionPhase::Closing {
            error: Error::Body(_),
            ..
        }
    ));
}

/// The acks (tag, multiple) and rejects (tag) the state wrote.
fn settlements_sent(h: &mut Harness) -> Vec<(&'static str, u64, bool)> {
    h.sent()
        .into_iter()
        .filter_map(|frame| match frame {
            Frame::Method {
                method: Method::BasicAck(a),
                ..
            } => Some(("ack", a.delivery_tag, a.multiple)),
            Frame::Method {
                method: Method::BasicNack(n),
                ..
            } => Some(("nack", n.delivery_tag, n.multiple)),
            Frame::Method {
                method: Method::BasicReject(r),
                ..
            } => Some(("reject", r.delivery_tag, false)),
            _ => None,
        })
        .collect()
}

fn cast(h: &mut Harness, channel: ChannelRef, method: impl Into<Method>) {
    h.settle(channel, method).expect("settled");
}

fn ack(h: &mut Harness, channel: ChannelRef, delivery_tag: u64) {
    cast(
        h,
        channel,
        BasicAck {
            delivery_tag,
            multiple: false,
        },
    );
}

#[tokio::test(start_paused = true)]
async fn in_order_acks_queued_together_go_out_as_one_multiple_ack() {
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    let (_rx, _end) = h.consume(ch, "c1", 16);
    for tag in 1..=5 {
        h.deliver(ch.id, "c1", tag, b"x");
    }
    for tag in 1..=3 {
        ack(&mut h, ch, tag);
    }
    // Tag 1 alone (nothing before it to merge with), then 2 and 3 merged.
    assert_eq!(settlements_sent(&mut h), [("ack", 3, true)]);
    // Once written, an ack is never rewritten: the next one goes alone.
    ack(&mut h, ch, 4);
    assert_eq!(settlements_sent(&mut h), [("ack", 4, false)]);
}

#[tokio::test(start_paused = true)]
async fn acks_never_merge_over_a_delivery_the_application_still_holds() {
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    let (_rx, _end) = h.consume(ch, "c1", 16);
    for tag in 1..=4 {
        h.deliver(ch.id, "c1", tag, b"x");
    }
    ack(&mut h, ch, 2);
    ack(&mut h, ch, 3);
    // Tag 1 is unsettled: a multiple ack of 3 would ack it too.
    assert_eq!(
        settlements_sent(&mut h),
        [("ack", 2, false), ("ack", 3, false)]
    );
    ack(&mut h, ch, 1);
    ack(&mut h, ch, 4);
    // Now every tag up to 4 is settled: 4 may replace the ack of 1.
    assert_eq!(settlements_sent(&mut h), [("ack", 4, true)]);
}

#[tokio::test(start_paused = true)]
async fn a_reject_between_acks_keeps_its_place_and_is_not_merged_over() {
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    let (_rx, _end) = h.consume(ch, "c1", 16);
    for tag in 1..=4 {
        h.deliver(ch.id, "c1", tag, b"x");
    }
    ack(&mut h, ch, 1);
    cast(
        &mut h,
        ch,
        BasicReject {
            delivery_tag: 2,
            requeue: true,
        },
    );
    ack(&mut h, ch, 3);
    ack(&mut h, ch, 4);
    assert_eq!(
        settlements_sent(&mut h),
        [("ack", 1, false), ("reject", 2, false), ("ack", 4, true)]
    );
}

#[tokio::test(start_paused = true)]
async fn acks_on_different_channels_do_not_merge() {
    let mut h = Harness::new(10, 0);
    let a = h.open_channel();
    let b = h.open_channel();
    let (_rx_a, _end_a) = h.consume(a, "ca", 16);
    let (_rx_b, _end_b) = h.consume(b, "cb", 16);
    h.deliver(a.id, "ca", 1, b"x");
    h.deliver(b.id, "cb", 1, b"x");
    h.deliver(b.id, "cb", 2, b"x");
    ack(&mut h, a, 1);
    ack(&mut h, b, 2);
    // b's tag 1 is unsettled, and a's ack is on another channel.
    assert_eq!(
        settlements_sent(&mut h),
        [("ack", 1, false), ("ack", 2, false)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_second_settlement_is_refused_locally_and_nothing_is_sent() {
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    let (_rx, _end) = h.consume(ch, "c1", 16);
    h.deliver(ch.id, "c1", 1, b"x");
    h.deliver(ch.id, "c1", 2, b"x");
    ack(&mut h, ch, 2);
    let again = h.settle(
        ch,
        BasicReject {
            delivery_tag: 2,
            requeue: true,
        },
    );
    assert!(matches!(
        again,
        Err(Error::AlreadySettled {
            delivery_tag: 2,
            ..
        })
    ));
    assert_eq!(settlements_sent(&mut h), [("ack", 2, false)]);
    let never = h.settle(
        ch,
        BasicAck {
            delivery_tag: 9,
            multiple: false,
        },
    );
    assert!(matches!(
        never,
        Err(Error::UnknownDeliveryTag {
            delivery_tag: 9,
            ..
        })
    ));
    assert_eq!(settlements_sent(&mut h), []);
}

#[tokio::test(start_paused = true)]
async fn an_ack_of_a_tag_covered_by_a_multiple_ack_is_refused_locally() {
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    let (_rx, _end) = h.consume(ch, "c1", 16);
    for tag in 1..=3 {
        h.deliver(ch.id, "c1", tag, b"x");
    }
    h.settle(
        ch,
        BasicAck {
            delivery_tag: 3,
            multiple: true,
        },
    )
    .unwrap();
    for tag in 1..=3 {
        let again = h.settle(
            ch,
            BasicAck {
                delivery_tag: tag,
                multiple: false,
            },
        );
        assert!(matches!(again, Err(Error::AlreadySettled { .. })), "{tag}");
    }
    assert_eq!(settlements_sent(&mut h), [("ack", 3, true)]);
    // The channel stays open: nothing the broker would refuse went out.
    assert!(h.state.is_open());
}

#[tokio::test(start_paused = true)]
async fn a_refused_second_ack_does_not_stop_the_next_ack_merging() {
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    let (_rx, _end) = h.consume(ch, "c1", 16);
    h.deliver(ch.id, "c1", 1, b"x");
    h.deliver(ch.id, "c1", 2, b"x");
    ack(&mut h, ch, 1);
    assert!(h
        .settle(
            ch,
            BasicAck {
                delivery_tag: 1,
                multiple: false
            }
        )
        .is_err());
    ack(&mut h, ch, 2);
    assert_eq!(settlements_sent(&mut h), [("ack", 2, true)]);
}

// ---- order on a channel, held publishes, closes that wait for confirms ----

/// (method name, routing key of a publish) for each method frame sent.
fn sent_in_order(h: &mut Harness) -> Vec<(u16, String)> {
    h.sent()
        .into_iter()
        .filter_map(|frame| match frame {
            Frame::Method {
                channel,
                method: Method::BasicPublish(p),
            } => Some((channel, format!("publish {}", p.routing_key))),
            Frame::Method { channel, method } => Some((channel, method.name().to_string())),
            _ => None,
        })
        .collect()
}

fn block(h: &mut Harness) {
    h.feed(
        0,
        ConnectionBlocked {
            reason: s("low on memory"),
        },
    );
}

fn unblock(h: &mut Harness) {
    h.feed(0, ConnectionUnblocked::default());
    h.state.release_held(Instant::now());
}

fn close_connection(h: &mut Harness) -> oneshot::Receiver<Result<()>> {
    let (reply, rx) = oneshot::channel();
    h.command(Command::CloseConnection {
        code: 200,
        text: "bye".into(),
        reply: Some(reply),
    });
    rx
}

#[tokio::test(start_paused = true)]
async fn commands_wait_behind_publishes_held_while_blocked_in_call_order() {
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    let (_rx, _end) = h.consume(ch, "c1", 16);
    h.deliver(ch.id, "c1", 1, b"x");
    block(&mut h);
    h.publish(ch, "a", false);
    ack(&mut h, ch, 1);
    let _rollback = h.call(ch, TxRollback::default());
    h.publish(ch, "b", false);
    let mut commit = h.call(ch, TxCommit::default());
    // Blocked: the publish waits, and everything after it on the channel.
    assert_eq!(sent_in_order(&mut h), []);
    assert_eq!(h.permits_out(), 2);
    unblock(&mut h);
    assert_eq!(
        sent_in_order(&mut h),
        [
            (ch.id, "publish a".to_string()),
            (ch.id, "basic.ack".to_string()),
            (ch.id, "tx.rollback".to_string()),
            (ch.id, "publish b".to_string()),
        ]
    );
    // Encoded publishes give their permits back.
    assert_eq!(h.permits_out(), 0);
    h.feed(ch.id, TxRollbackOk::default());
    assert_eq!(sent_in_order(&mut h), [(ch.id, "tx.commit".to_string())]);
    h.feed(ch.id, TxCommitOk::default());
    assert!(commit.try_recv().unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_publish_after_a_command_never_overtakes_it() {
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    let _select = h.call(ch, TxSelect::default());
    h.feed(ch.id, TxSelectOk::default());
    h.sent();
    // The transaction scope's case: publish A, roll back (the scope was
    // dropped), publish B, commit. B is committed, A is not.
    h.publish(ch, "a", false);
    let _rollback = h.call(ch, TxRollback::default());
    h.publish(ch, "b", false);
    let _commit = h.call(ch, TxCommit::default());
    assert_eq!(
        sent_in_order(&mut h),
        [
            (ch.id, "publish a".to_string()),
            (ch.id, "tx.rollback".to_string()),
            (ch.id, "publish b".to_string()),
        ]
    );
    h.feed(ch.id, TxRollbackOk::default());
    assert_eq!(sent_in_order(&mut h), [(ch.id, "tx.commit".to_string())]);
}

#[tokio::test(start_paused = true)]
async fn publishes_held_on_one_channel_hold_nothing_of_another() {
    let mut h = Harness::new(10, 0);
    let a = h.open_channel();
    let b = h.open_channel();
    let (_rx, _end) = h.consume(b, "cb", 16);
    h.deliver(b.id, "cb", 1, b"x");
    block(&mut h);
    h.publish(a, "held", false);
    ack(&mut h, b, 1);
    let _declare = h.call(b, QueueDeclare::default());
    assert_eq!(
        sent_in_order(&mut h),
        [
            (b.id, "basic.ack".to_string()),
            (b.id, "queue.declare".to_string())
        ]
    );
    unblock(&mut h);
    assert_eq!(sent_in_order(&mut h), [(a.id, "publish held".to_string())]);
}

#[tokio::test(start_paused = true)]
async fn publishes_wait_at_the_write_high_water_mark_and_keep_their_order() {
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    let (_rx, _end) = h.consume(ch, "c1", 16);
    h.deliver(ch.id, "c1", 1, b"x");
    h.sent();
    let large = Bytes::from(vec![7u8; WRITE_HIGH_WATER + 1]);
    h.publish_body(ch, "large", false, large);
    assert!(!h.state.can_publish());
    h.publish(ch, "y", false);
    ack(&mut h, ch, 1);
    h.publish(ch, "z", false);
    // The write queue holds only the large message: y, the ack and z wait.
    assert_eq!(
        sent_in_order(&mut h),
        [(ch.id, "publish large".to_string())]
    );
    assert_eq!(h.permits_out(), 2);
    h.state.release_held(Instant::now());
    assert_eq!(
        sent_in_order(&mut h),
        [
            (ch.id, "publish y".to_string()),
            (ch.id, "basic.ack".to_string()),
            (ch.id, "publish z".to_string()),
        ]
    );
    assert_eq!(h.permits_out(), 0);
}

#[tokio::test(start_paused = true)]
async fn closing_the_connection_first_waits_for_the_confirms_of_sent_publishes() {
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    h.confirm_mode(ch);
    let mut confirms: Vec<_> = (0..3).map(|_| h.publish(ch, "q", false)).collect();
    h.sent();
    let mut closed = close_connection(&mut h);
    // Not yet: three publishes wait for their confirms.
    assert_eq!(sent_in_order(&mut h), []);
    h.feed(
        ch.id,
        BasicAck {
            delivery_tag: 2,
            multiple: true,
        },
    );
    assert_eq!(sent_in_order(&mut h), []);
    h.feed(
        ch.id,
        BasicAck {
            delivery_tag: 3,
            multiple: false,
        },
    );
    assert_eq!(sent_in_order(&mut h), [(0, "connection.close".to_string())]);
    let outcomes: Vec<_> = confirms.iter_mut().map(outcome_name).collect();
    assert_eq!(outcomes, ["ack", "ack", "ack"]);
    // Publishes after the close was asked for are refused.
    let mut late = h.publish(ch, "q", false);
    assert_eq!(outcome_name(&mut late), "indeterminate");
    h.feed(0, ConnectionCloseOk::default());
    assert!(closed.try_recv().unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_close_that_waits_for_confirms_gives_up_at_its_deadline() {
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    h.confirm_mode(ch);
    let mut confirm = h.publish(ch, "q", false);
    h.sent();
    let _closed = close_connection(&mut h);
    assert_eq!(h.state.deadline(), Some(Instant::now() + CLOSE_TIMEOUT));
    tokio::time::advance(CLOSE_TIMEOUT).await;
    h.state.handle_timeout(Instant::now(), false);
    assert_eq!(sent_in_order(&mut h), [(0, "connection.close".to_string())]);
    assert_eq!(outcome_name(&mut confirm), "indeterminate");
}

#[tokio::test(start_paused = true)]
async fn a_connection_whose_handles_are_all_gone_closes_at_once() {
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    h.confirm_mode(ch);
    let mut confirm = h.publish(ch, "q", false);
    h.sent();
    h.command(Command::CloseConnection {
        code: 200,
        text: "dropped".into(),
        reply: None,
    });
    assert_eq!(sent_in_order(&mut h), [(0, "connection.close".to_string())]);
    assert_eq!(outcome_name(&mut confirm), "indeterminate");
}

#[tokio::test(start_paused = true)]
async fn publishes_held_while_blocked_go_out_before_the_connection_closes() {
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    h.confirm_mode(ch);
    block(&mut h);
    let mut confirm = h.publish(ch, "held", false);
    let _closed = close_connection(&mut h);
    assert_eq!(sent_in_order(&mut h), []);
    unblock(&mut h);
    assert_eq!(sent_in_order(&mut h), [(ch.id, "publish held".to_string())]);
    h.feed(
        ch.id,
        BasicAck {
            delivery_tag: 1,
            multiple: false,
        },
    );
    assert_eq!(outcome_name(&mut confirm), "ack");
    assert_eq!(sent_in_order(&mut h), [(0, "connection.close".to_string())]);
}

#[tokio::test(start_paused = true)]
async fn closing_a_channel_first_waits_for_the_confirms_of_sent_publishes() {
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    h.confirm_mode(ch);
    let mut confirm = h.publish(ch, "q", false);
    h.sent();
    let (reply, mut closed) = oneshot::channel();
    h.command(Command::CloseChannel {
        channel: ch,
        reply: Some(reply),
    });
    assert_eq!(sent_in_order(&mut h), []);
    h.feed(
        ch.id,
        BasicAck {
            delivery_tag: 1,
            multiple: false,
        },
    );
    assert_eq!(outcome_name(&mut confirm), "ack");
    assert_eq!(
        sent_in_order(&mut h),
        [(ch.id, "channel.close".to_string())]
    );
    h.feed(ch.id, ChannelCloseOk::default());
    assert!(closed.try_recv().unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_channel_close_that_waits_for_confirms_gives_up_at_its_deadline() {
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    h.confirm_mode(ch);
    let mut confirm = h.publish(ch, "q", false);
    h.sent();
    let (reply, _closed) = oneshot::channel();
    h.command(Command::CloseChannel {
        channel: ch,
        reply: Some(reply),
    });
    tokio::time::advance(CLOSE_TIMEOUT).await;
    h.state.handle_timeout(Instant::now(), false);
    assert_eq!(
        sent_in_order(&mut h),
        [(ch.id, "channel.close".to_string())]
    );
    assert_eq!(outcome_name(&mut confirm), "indeterminate");
}

#[tokio::test(start_paused = true)]
async fn held_publishes_of_a_channel_the_broker_closes_end_and_free_their_places() {
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    h.confirm_mode(ch);
    block(&mut h);
    let mut held: Vec<_> = (0..2).map(|_| h.publish(ch, "q", false)).collect();
    assert_eq!(h.permits_out(), 2);
    h.feed(
        ch.id,
        ChannelClose {
            reply_code: 406,
            reply_text: s("PRECONDITION_FAILED"),
            class_id: 0,
            method_id: 0,
        },
    );
    let outcomes: Vec<_> = held.iter_mut().map(outcome_name).collect();
    assert_eq!(outcomes, ["indeterminate", "indeterminate"]);
    assert_eq!(h.permits_out(), 0);
    unblock(&mut h);
    assert_eq!(
        sent_in_order(&mut h),
        [(ch.id, "channel.close-ok".to_string())]
    );
}

// ---- robust connections -------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_robust_channel_closed_by_the_broker_reopens_with_its_consumer_once() {
    let mut h = Harness::new(10, 0);
    h.state.set_robust(true);
    let a = h.open_channel();
    h.confirm_mode(a);
    let (_deliveries, end) = h.consume(a, "t1", 8);
    let mut refused = h.call(
        a,
        QueueDeclare {
            queue: s("q"),
            passive: true,
            ..Default::default()
        },
    );
    h.sent();
    let close = ChannelClose {
        reply_code: 404,
        reply_text: s("NOT_FOUND - no queue 'q'"),
        class_id: 50,
        method_id: 10,
    };
    h.feed(a.id, close.clone());
    // The caller gets the refusal; the channel opens again at once.
    let err = refused.try_recv().unwrap().unwrap_err();
    assert_eq!(err.reply_code(), Some(ReplyCode::NOT_FOUND));
    assert_eq!(
        h.sent_methods(),
        [(a.id, "channel.close-ok"), (a.id, "channel.open")]
    );
    // A publish meanwhile waits for the reopened channel.
    let mut confirm = h.publish(a, "q", false);
    assert_eq!(h.sent_methods(), []);
    h.feed(a.id, ChannelOpenOk::default());
    assert_eq!(h.sent_methods(), [(a.id, "confirm.select")]);
    h.feed(a.id, ConfirmSelectOk::default());
    let sent = h.sent();
    let [Frame::Method {
        method: Method::BasicConsume(consume),
        ..
    }] = &sent[..]
    else {
        panic!("expected basic.consume, got {sent:?}");
    };
    assert_eq!(consume.consumer_tag, "t1");
    h.feed(
        a.id,
        BasicConsumeOk {
            consumer_tag: s("t1"),
        },
    );
    h.state.release_held(Instant::now());
    assert_eq!(h.sent_methods(), [(a.id, "basic.publish")]);
    h.feed(
        a.id,
        BasicAck {
            delivery_tag: 1,
            multiple: false,
        },
    );
    assert_eq!(outcome_name(&mut confirm), "ack");
    assert!(end.get().is_none(), "the consumer lives on");

    // A refusal during the reopening is final: no loop.
    h.feed(a.id, close.clone());
    assert_eq!(
        h.sent_methods(),
        [(a.id, "channel.close-ok"), (a.id, "channel.open")]
    );
    h.feed(a.id, ChannelOpenOk::default());
    h.feed(a.id, ConfirmSelectOk::default());
    h.sent();
    h.feed(a.id, close);
    assert_eq!(h.sent_methods(), [(a.id, "channel.close-ok")]);
    assert!(matches!(end.get(), Some(ConsumerEnd::Closed(_))));
}

#[tokio::test(start_paused = true)]
async fn a_lost_connection_keeps_its_channels_and_replays_its_topology() {
    let mut h = Harness::new(10, 0);
    h.state.set_robust(true);
    let a = h.open_channel();
    h.confirm_mode(a);
    // A server-named queue, bound, consumed.
    let mut declared = h.call(a, QueueDeclare::default());
    h.sent();
    h.feed(
        a.id,
        QueueDeclareOk {
            queue: s("amq.gen-1"),
            message_count: 0,
            consumer_count: 0,
        },
    );
    assert!(declared.try_recv().unwrap().is_ok());
    let mut bound = h.call(
        a,
        QueueBind {
            queue: s("amq.gen-1"),
            exchange: s("logs"),
            routing_key: s("k"),
            ..Default::default()
        },
    );
    h.sent();
    h.feed(a.id, QueueBindOk::default());
    assert!(bound.try_recv().unwrap().is_ok());
    let (mut deliveries, end) = h.consume_from(a, "amq.gen-1", "t1", 8);
    h.deliver(a.id, "t1", 1, b"before");
    assert_eq!(deliveries.try_recv().unwrap().delivery_tag, 1);
    let mut in_flight = h.publish(a, "q", false);
    h.sent();

    // The socket goes.
    let lost_at = Instant::now();
    h.state.shutdown(
        Error::io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        )),
        lost_at,
    );
    assert!(h.state.is_reconnecting());
    assert!(matches!(
        h.events.try_recv().unwrap(),
        ConnectionEvent::Disconnected { .. }
    ));
    // The pending confirm ends at once; the delivery can no longer be
    // acked; a publish meanwhile waits; nothing is written.
    assert_eq!(outcome_name(&mut in_flight), "indeterminate");
    assert!(matches!(
        h.settle(
            a,
            BasicAck {
                delivery_tag: 1,
                multiple: false
            }
        ),
        Err(Error::StaleDelivery {
            delivery_tag: 1,
            ..
        })
    ));
    let mut waiting = h.publish(a, "q", false);
    assert_eq!(h.sent_methods(), []);
    assert!(end.get().is_none());

    // A new socket: the channel, the replay channel, then the topology in
    // order on the replay channel, the consumer on its own.
    h.state
        .reconnected(tuning(10, 0), "b:5672".into(), 1, lost_at, Instant::now());
    assert_eq!(
        h.sent_methods(),
        [(a.id, "channel.open"), (2, "channel.open")]
    );
    h.feed(a.id, ChannelOpenOk::default());
    assert_eq!(h.sent_methods(), [(a.id, "confirm.select")]);
    h.feed(2, ChannelOpenOk::default());
    assert_eq!(h.sent_methods(), []);
    h.feed(a.id, ConfirmSelectOk::default());
    let sent = h.sent();
    let [Frame::Method {
        channel: 2,
        method: Method::QueueDeclare(declare),
    }] = &sent[..]
    else {
        panic!("expected queue.declare on the replay channel, got {sent:?}");
    };
    assert_eq!(declare.queue, "");
    h.feed(
        2,
        QueueDeclareOk {
            queue: s("amq.gen-2"),
            message_count: 0,
            consumer_count: 0,
        },
    );
    let sent = h.sent();
    let [Frame::Method {
        channel: 2,
        method: Method::QueueBind(bind),
    }] = &sent[..]
    else {
        panic!("expected queue.bind, got {sent:?}");
    };
    assert_eq!(bind.queue, "amq.gen-2", "the binding follows the new name");
    h.feed(2, QueueBindOk::default());
    let sent = h.sent();
    let [Frame::Method {
        channel,
        method: Method::BasicConsume(consume),
    }] = &sent[..]
    else {
        panic!("expected basic.consume, got {sent:?}");
    };
    assert_eq!(
        (
            *channel,
            consume.queue.as_str(),
            consume.consumer_tag.as_str()
        ),
        (a.id, "amq.gen-2", "t1")
    );
    h.feed(
        a.id,
        BasicConsumeOk {
            consumer_tag: s("t1"),
        },
    );
    // Restored: the replay channel closes, the held publish goes.
    assert_eq!(
        h.sent_methods(),
        [(2, "channel.close"), (a.id, "basic.publish")]
    );
    let renamed = std::iter::from_fn(|| h.events.try_recv().ok())
        .find_map(|event| match event {
            ConnectionEvent::QueueRenamed { old, new } => Some((old, new)),
            _ => None,
        })
        .expect("a QueueRenamed event");
    assert_eq!(renamed, (s("amq.gen-1"), s("amq.gen-2")));
    assert!(!h.state.is_recovering());
    h.feed(
        a.id,
        BasicAck {
            delivery_tag: 1,
            multiple: false,
        },
    );
    assert_eq!(outcome_name(&mut waiting), "ack");
    // The new connection's first delivery is numbered after the old ones,
    // and acking it sends the broker's own tag.
    h.deliver(a.id, "t1", 1, b"after");
    let delivery = deliveries.try_recv().unwrap();
    assert_eq!(delivery.delivery_tag, 2);
    h.settle(
        a,
        BasicAck {
            delivery_tag: 2,
            multiple: false,
        },
    )
    .unwrap();
    assert_eq!(settlements_sent(&mut h), [("ack", 1, false)]);
}

#[tokio::test(start_paused = true)]
async fn closing_while_reconnecting_ends_everything_at_once() {
    let mut h = Harness::new(10, 0);
    h.state.set_robust(true);
    let a = h.open_channel();
    h.state.shutdown(
        Error::io(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "gone")),
        Instant::now(),
    );
    let mut waiting = h.call(a, BasicQos::default());
    let mut closed = close_connection(&mut h);
    assert!(closed.try_recv().unwrap().is_ok());
    assert!(waiting.try_recv().unwrap().is_err());
    assert!(matches!(h.state.phase, ConnectionPhase::Closed { .. }));
}

#[tokio::test(start_paused = true)]
async fn a_consumer_cancelled_by_the_broker_waits_for_its_queue_and_consumes_again() {
    let mut h = Harness::new(10, 0);
    h.state.set_robust(true);
    let a = h.open_channel();
    let (mut deliveries, end) = h.consume_from(a, "q", "t1", 8);
    h.feed(
        a.id,
        BasicCancel {
            consumer_tag: s("t1"),
            nowait: true,
        },
    );
    assert!(end.get().is_none(), "the consumer waits");
    assert!(matches!(
        h.events.try_recv().unwrap(),
        ConnectionEvent::ConsumerCancelled { resuming: true, .. }
    ));
    assert_eq!(h.sent_methods(), []);
    // The first look, after 250 ms: the queue is not there.
    tokio::time::advance(Duration::from_millis(300)).await;
    h.state.handle_timeout(Instant::now(), false);
    assert_eq!(h.sent_methods(), [(2, "channel.open")]);
    h.feed(2, ChannelOpenOk::default());
    assert_eq!(h.sent_methods(), [(2, "queue.declare")]);
    h.feed(
        2,
        ChannelClose {
            reply_code: 404,
            reply_text: s("NOT_FOUND - no queue 'q'"),
            class_id: 50,
            method_id: 10,
        },
    );
    assert_eq!(h.sent_methods(), [(2, "channel.close-ok")]);
    // The next look comes later (500 ms), on a channel of its own; the
    // queue is back.
    tokio::time::advance(Duration::from_millis(300)).await;
    h.state.handle_timeout(Instant::now(), false);
    assert_eq!(h.sent_methods(), []);
    tokio::time::advance(Duration::from_millis(300)).await;
    h.state.handle_timeout(Instant::now(), false);
    let [(probe, "channel.open")] = h.sent_methods()[..] else {
        panic!("expected a probe's channel.open");
    };
    assert_ne!(probe, a.id);
    h.feed(probe, ChannelOpenOk::default());
    assert_eq!(h.sent_methods(), [(probe, "queue.declare")]);
    h.feed(
        probe,
        QueueDeclareOk {
            queue: s("q"),
            message_count: 0,
            consumer_count: 0,
        },
    );
    assert_eq!(
        h.sent_methods(),
        [(probe, "channel.close"), (a.id, "basic.consume")]
    );
    h.feed(
        a.id,
        BasicConsumeOk {
            consumer_tag: s("t1"),
        },
    );
    h.feed(probe, ChannelCloseOk::default());
    h.deliver(a.id, "t1", 1, b"again");
    assert_eq!(deliveries.try_recv().unwrap().body.as_ref(), b"again");
    assert!(matches!(h.state.phase, ConnectionPhase::Open));
}

#[tokio::test(start_paused = true)]
async fn a_channel_reopens_after_a_soft_error_even_when_an_earlier_recovery_was_cut_short() {
    let mut h = Harness::new(10, 0);
    h.state.set_robust(true);
    let a = h.open_channel();
    h.confirm_mode(a);
    // Lost and reconnected (the reopening sent, not answered), twice.
    let lose_and_reconnect = |h: &mut Harness, attempts: u32| {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        h.state.shutdown(Error::io(reset), Instant::now());
        let now = Instant::now();
        h.state
            .reconnected(tuning(10, 0), "b:5672".into(), attempts, now, now);
    };
    lose_and_reconnect(&mut h, 1);
    h.sent();
    // The next socket restores everything.
    lose_and_reconnect(&mut h, 2);
    let sent = h.sent_methods();
    let Some(&(replay, _)) = sent.iter().find(|(c, _)| *c != a.id) else {
        panic!("expected the replay channel's open, got {sent:?}");
    };
    h.feed(a.id, ChannelOpenOk::default());
    h.feed(replay, ChannelOpenOk::default());
    h.feed(a.id, ConfirmSelectOk::default());
    h.feed(replay, ChannelCloseOk::default());
    assert!(!h.state.is_recovering());
    h.sent();
    // A soft error now reopens the channel: nothing of the cut recovery
    // is still counted as waiting.
    h.feed(
        a.id,
        ChannelClose {
            reply_code: 404,
            reply_text: s("NOT_FOUND - no exchange 'x'"),
            class_id: 60,
            method_id: 40,
        },
    );
    assert_eq!(
        h.sent_methods(),
        [(a.id, "channel.close-ok"), (a.id, "channel.open")]
    );
}

#[tokio::test(start_paused = true)]
async fn deliveries_find_their_consumer_among_many_after_one_ends() {
    const TAGS: [&str; 12] = [
        "c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9", "c10", "c11",
    ];
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    let mut consumers: Vec<_> = TAGS.iter().map(|tag| h.consume(ch, tag, 4)).collect();
    for (i, tag) in TAGS.iter().enumerate() {
        h.deliver(ch.id, tag, i as u64 + 1, tag.as_bytes());
    }
    for ((rx, _), tag) in consumers.iter_mut().zip(TAGS) {
        assert_eq!(&rx.try_recv().unwrap().body[..], tag.as_bytes());
    }
    // A consumer that starts once the tag map is built is found by it.
    let (mut late, _late_end) = h.consume(ch, "late", 4);
    h.deliver(ch.id, "late", 50, b"late");
    h.deliver(ch.id, "c0", 51, b"c0");
    assert_eq!(&late.try_recv().unwrap().body[..], b"late");
    assert_eq!(&consumers[0].0.try_recv().unwrap().body[..], b"c0");
    // The broker cancels c3 (a plain connection: it ends); the places of
    // the later consumers move, and their deliveries still find them.
    h.feed(
        ch.id,
        BasicCancel {
            consumer_tag: s("c3"),
            nowait: false,
        },
    );
    h.sent();
    assert!(matches!(
        consumers[3].1.get(),
        Some(ConsumerEnd::CancelledByBroker)
    ));
    for (i, tag) in TAGS.iter().enumerate().skip(4) {
        h.deliver(ch.id, tag, 100 + i as u64, tag.as_bytes());
    }
    for ((rx, _), tag) in consumers.iter_mut().zip(TAGS).skip(4) {
        assert_eq!(&rx.try_recv().unwrap().body[..], tag.as_bytes());
        assert!(rx.try_recv().is_none());
    }
}
