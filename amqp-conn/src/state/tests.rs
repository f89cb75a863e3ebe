//! The protocol state without a socket: frames and commands in, frames
//! out, time paused.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use amqp_wire::*;
use bytes::{Bytes, BytesMut};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

use super::*;
use crate::command::{ConsumerEnd, ConsumerSink};
use crate::message::PublishProperties;

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
}

fn s(text: &'static str) -> ShortString {
    ShortString::from_static(text)
}

impl Harness {
    fn new(channel_max: u16, heartbeat: u16) -> Self {
        let (tx, events) = broadcast::channel(64);
        Harness {
            state: ConnectionState::new(
                tuning(channel_max, heartbeat),
                1 << 20,
                tx,
                Instant::now(),
            ),
            events,
        }
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
        let (r, _) = rx.try_recv().expect("answered").expect("opened");
        assert_eq!(r.id, channel);
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
            method: method.into(),
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
    ) -> oneshot::Receiver<PublishOutcome> {
        let (confirm, rx) = oneshot::channel();
        self.state.handle_publish(PublishCommand {
            channel,
            publish: BasicPublish {
                routing_key: s(routing_key),
                mandatory,
                ..Default::default()
            },
            properties: PublishProperties::default(),
            body: Bytes::from_static(b"body"),
            confirm: Some(confirm),
        });
        rx
    }

    fn consume(
        &mut self,
        channel: ChannelRef,
        tag: &'static str,
        buffer: usize,
    ) -> (mpsc::Receiver<Delivery>, Arc<OnceLock<ConsumerEnd>>) {
        let (tx, rx) = mpsc::channel(buffer);
        let end = Arc::new(OnceLock::new());
        let (reply, mut tag_rx) = oneshot::channel();
        self.command(Command::Call {
            channel,
            method: BasicConsume::default().into(),
            reply: Reply::Consume {
                sink: ConsumerSink {
                    deliveries: tx,
                    end: end.clone(),
                    no_ack: false,
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

fn outcome_name(rx: &mut oneshot::Receiver<PublishOutcome>) -> &'static str {
    match rx.try_recv() {
        Ok(PublishOutcome::Ack) => "ack",
        Ok(PublishOutcome::Nack) => "nack",
        Ok(PublishOutcome::Returned(_)) => "returned",
        Ok(PublishOutcome::Indeterminate(_)) => "indeterminate",
        Ok(PublishOutcome::NotConfirmed) => "not confirmed",
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
    assert!(matches!(h.state.phase, Phase::Closing { .. }));
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
    let Ok(PublishOutcome::Returned(returned)) = unroutable.try_recv() else {
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
    assert!(rx.try_recv().is_err());
    assert!(matches!(end.get(), Some(ConsumerEnd::CancelledByBroker)));
}

#[tokio::test(start_paused = true)]
async fn basic_get_with_content_and_get_empty() {
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    let (reply, mut first) = oneshot::channel();
    h.command(Command::Call {
        channel: ch,
        method: BasicGet::default().into(),
        reply: Reply::Get(reply),
    });
    let (reply, mut second) = oneshot::channel();
    h.command(Command::Call {
        channel: ch,
        method: BasicGet::default().into(),
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
        method: BasicGet::default().into(),
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
    assert!(matches!(confirm.try_recv().unwrap(), PublishOutcome::Indeterminate(e) if forced(&e)));
    assert!(matches!(end.get(), Some(ConsumerEnd::Closed(e)) if forced(e)));
    assert!(deliveries.try_recv().is_err());
    assert!(forced(&get.try_recv().unwrap().unwrap_err()));
    assert!(forced(&opening.try_recv().unwrap().unwrap_err()));
    assert!(matches!(h.state.phase, Phase::Closed { .. }));

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
    assert!(matches!(h.state.phase, Phase::Closed { .. }));
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
    let Phase::Closed {
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
        Phase::Closing {
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
    h.command(Command::Cast {
        channel,
        method: method.into(),
    });
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
async fn a_repeated_ack_goes_out_as_sent_for_the_broker_to_refuse() {
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    let (_rx, _end) = h.consume(ch, "c1", 16);
    h.deliver(ch.id, "c1", 1, b"x");
    h.deliver(ch.id, "c1", 2, b"x");
    ack(&mut h, ch, 2);
    ack(&mut h, ch, 2);
    assert_eq!(
        settlements_sent(&mut h),
        [("ack", 2, false), ("ack", 2, false)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_repeated_ack_is_never_merged_away() {
    let mut h = Harness::new(10, 0);
    let ch = h.open_channel();
    let (_rx, _end) = h.consume(ch, "c1", 16);
    h.deliver(ch.id, "c1", 1, b"x");
    h.deliver(ch.id, "c1", 2, b"x");
    ack(&mut h, ch, 1);
    ack(&mut h, ch, 1);
    ack(&mut h, ch, 2);
    // Merging 2 over the second ack of 1 would hide the broker's refusal.
    assert_eq!(
        settlements_sent(&mut h),
        [("ack", 1, false), ("ack", 1, false), ("ack", 2, false)]
    );
}
