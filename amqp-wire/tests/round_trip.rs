//! `decode(encode(x)) == x` for every method, every property subset, and
//! arbitrary nested field tables; and the encoding is byte-for-byte stable.

mod support;

use amqp_wire::*;
use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use support::method_strategies::arb_method;
use support::{arb_field_table, arb_properties};

const FRAME_MAX: u32 = u32::MAX;

fn round_trip(frame: &Frame) -> Frame {
    let mut buf = BytesMut::new();
    frame.encode(&mut buf);
    assert_eq!(
        buf.len(),
        frame.encoded_len(),
        "encoded_len agrees with encode"
    );
    let bytes = buf.clone().freeze();
    let decoded = Frame::decode(&mut buf, FRAME_MAX)
        .expect("decodes")
        .expect("a whole frame");
    assert!(buf.is_empty(), "the frame is consumed exactly");
    // Re-encoding what was decoded gives the same bytes.
    let mut again = BytesMut::new();
    decoded.encode(&mut again);
    assert_eq!(again.freeze(), bytes);
    decoded
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn every_method_round_trips(method in arb_method(), channel in any::<u16>()) {
        let frame = Frame::Method { channel, method };
        prop_assert_eq!(round_trip(&frame), frame);
    }
}

proptest! {
    #[test]
    fn properties_with_any_subset_of_flags_round_trip(properties in arb_properties(), body_size in any::<u64>(), channel in any::<u16>()) {
        let frame = Frame::Header { channel, header: ContentHeader::new(body_size, properties) };
        prop_assert_eq!(round_trip(&frame), frame);
    }

    #[test]
    fn nested_field_tables_round_trip(table in arb_field_table()) {
        let mut buf = BytesMut::new();
        encode_field_table(&mut buf, &table);
        prop_assert_eq!(buf.len(), 4 + table.encoded_len());
        let bytes = buf.freeze();
        let decoded = decode_field_table(&bytes).expect("decodes");
        prop_assert_eq!(&decoded, &table);
        let mut again = BytesMut::new();
        encode_field_table(&mut again, &decoded);
        prop_assert_eq!(again.freeze(), bytes);
    }

    #[test]
    fn body_frames_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..5000), channel in any::<u16>()) {
        let frame = Frame::Body { channel, payload: Bytes::from(payload) };
        prop_assert_eq!(round_trip(&frame), frame);
    }

    #[test]
    fn publish_splits_at_frame_max_and_reassembles(
        body in proptest::collection::vec(any::<u8>(), 0..20_000),
        frame_max in 4096u32..9000,
        properties in arb_properties(),
        lent in any::<u64>(),
    ) {
        let publish = BasicPublish { routing_key: ShortString::from_static("rk"), mandatory: true, ..Default::default() };
        let mut buf = BytesMut::new();
        if let Err(err) = encode_publish(&mut buf, 3, &publish, &properties, &body, frame_max) {
            // Properties cannot be split: a header that does not fit is refused.
            prop_assert_eq!(err.frame_type, FrameType::Header);
            prop_assert!(err.size > frame_max as usize);
            prop_assert!(buf.is_empty());
            return Ok(());
        }
        prop_assert_eq!(buf.len(), publish_len(&publish, &properties, body.len(), frame_max));

        // The vectored encoding is the same bytes, with the body not copied.
        let shared_body = Bytes::from(body.clone());
        let mut segments = Vec::new();
        encode_publish_segments(&mut BytesMut::new(), 3, &publish, &properties, &shared_body, frame_max, &mut segments).unwrap();
        prop_assert_eq!(segments.concat(), buf.to_vec());
        let body_range = shared_body.as_ptr() as usize..shared_body.as_ptr() as usize + shared_body.len();
        let body_segments = segments.iter().filter(|s| !s.is_empty() && body_range.contains(&(s.as_ptr() as usize))).count();
        prop_assert_eq!(body_segments, body.len().div_ceil(body_frame_capacity(frame_max)));

        let first = Frame::decode(&mut buf, frame_max).unwrap().unwrap();
        prop_assert_eq!(first, Frame::Method { channel: 3, method: publish.into() });
        let Some(Frame::Header { channel: 3, header }) = Frame::decode(&mut buf, frame_max).unwrap() else {
            panic!("expected a content header");
        };
        prop_assert_eq!(&*header.properties, &properties);
        let mut assembler = BodyAssembler::new(header.body_size, u64::MAX).unwrap();
        let mut whole = if assembler.is_complete() { Some(assembler.take()) } else { None };
        // Frames pushed, or read straight into the lent buffer (bit n of
        // `lent` for frame n): the same body either way.
        let mut n = 0;
        while let Some(frame) = Frame::decode(&mut buf, frame_max).unwrap() {
            let Frame::Body { channel: 3, payload } = frame else { panic!("expected a body frame") };
            prop_assert!(payload.len() + FRAME_OVERHEAD <= frame_max as usize);
            prop_assert!(payload.len() as u64 <= assembler.remaining());
            whole = if lent >> (n % 64) & 1 == 1 {
                let mut buffer = assembler.lend();
                buffer.extend_from_slice(&payload);
                assembler.give_back(buffer).unwrap()
            } else {
                assembler.push(payload).unwrap()
            };
            n += 1;
        }
        prop_assert_eq!(whole.expect("complete body"), Bytes::from(body));
    }

    #[test]
    fn decoding_byte_by_byte_waits_for_whole_frames(method in arb_method()) {
        let frame = Frame::Method { channel: 9, method };
        let mut encoded = BytesMut::new();
        frame.encode(&mut encoded);
        let mut buf = BytesMut::new();
        for (n, byte) in encoded.iter().enumerate() {
            buf.extend_from_slice(&[*byte]);
            let result = Frame::decode(&mut buf, FRAME_MAX).unwrap();
            if n + 1 < encoded.len() {
                prop_assert_eq!(result, None);
            } else {
                prop_assert_eq!(result, Some(frame.clone()));
            }
        }
    }
}

#[test]
fn heartbeat_and_protocol_header_round_trip() {
    assert_eq!(round_trip(&Frame::Heartbeat), Frame::Heartbeat);
    let header = Frame::ProtocolHeader(ProtocolHeader::AMQP_0_9_1);
    let mut buf = BytesMut::new();
    header.encode(&mut buf);
    assert_eq!(&buf[..], b"AMQP\x00\x00\x09\x01");
    assert_eq!(Frame::decode(&mut buf, 4096).unwrap(), Some(header));
}

#[test]
fn consecutive_bits_pack_into_one_octet() {
    // queue.declare: passive, durable, exclusive, auto-delete, nowait.
    let method: Method = QueueDeclare {
        queue: ShortString::from_static("q"),
        passive: true,
        durable: false,
        exclusive: true,
        auto_delete: false,
        nowait: true,
        ..Default::default()
    }
    .into();
    let mut buf = BytesMut::new();
    method.encode(&mut buf);
    // class, method, ticket, "q", one octet of bits, empty table.
    assert_eq!(
        &buf[..],
        &[0, 50, 0, 10, 0, 0, 1, b'q', 0b10101, 0, 0, 0, 0][..]
    );
}

#[test]
fn spec_defaults_are_the_struct_defaults() {
    assert!(BasicReject::default().requeue);
    assert!(BasicNack::default().requeue);
    assert_eq!(ExchangeDeclare::default().kind, "direct");
    assert_eq!(ConnectionStartOk::default().mechanism, "PLAIN");
    assert_eq!(ConnectionOpen::default().virtual_host, "/");
}

#[test]
fn reply_codes_are_classed_soft_and_hard() {
    for soft in [311, 312, 313, 403, 404, 405, 406] {
        assert!(ReplyCode(soft).is_soft_error(), "{soft}");
        assert!(!ReplyCode(soft).is_hard_error(), "{soft}");
    }
    for hard in [320, 402, 501, 502, 503, 504, 505, 506, 530, 540, 541] {
        assert!(ReplyCode(hard).is_hard_error(), "{hard}");
    }
    assert!(!ReplyCode::REPLY_SUCCESS.is_hard_error());
    assert!(!ReplyCode::REPLY_SUCCESS.is_soft_error());
    assert_eq!(
        ReplyCode::PRECONDITION_FAILED.name(),
        Some("PRECONDITION_FAILED")
    );
}

#[test]
fn rabbitmq_extension_methods_have_their_ids() {
    let ids = |m: Method| (m.class_id(), m.method_id(), m.name());
    assert_eq!(
        ids(ConnectionBlocked::default().into()),
        (10, 60, "connection.blocked")
    );
    assert_eq!(
        ids(ConnectionUnblocked::default().into()),
        (10, 61, "connection.unblocked")
    );
    assert_eq!(
        ids(ConnectionUpdateSecret::default().into()),
        (10, 70, "connection.update-secret")
    );
    assert_eq!(
        ids(ExchangeBind::default().into()),
        (40, 30, "exchange.bind")
    );
    assert_eq!(
        ids(ExchangeUnbindOk::default().into()),
        (40, 51, "exchange.unbind-ok")
    );
    assert_eq!(ids(BasicNack::default().into()), (60, 120, "basic.nack"));
    assert_eq!(
        ids(ConfirmSelect::default().into()),
        (85, 10, "confirm.select")
    );
}
