//! Every kind of malformed input gives a typed error naming what was wrong
//! and where: never a panic, an unchecked allocation or an endless loop.

use amqp_wire::*;
use bytes::{BufMut, Bytes, BytesMut};

const FRAME_MAX: u32 = 131_072;

/// A raw frame: header, payload, frame-end octet.
fn frame(frame_type: u8, channel: u16, payload: &[u8]) -> BytesMut {
    let mut buf = BytesMut::new();
    buf.put_u8(frame_type);
    buf.put_u16(channel);
    buf.put_u32(payload.len() as u32);
    buf.put_slice(payload);
    buf.put_u8(0xCE);
    buf
}

fn method_payload(class_id: u16, method_id: u16, arguments: &[u8]) -> Vec<u8> {
    let mut payload = Vec::new();
    payload.extend_from_slice(&class_id.to_be_bytes());
    payload.extend_from_slice(&method_id.to_be_bytes());
    payload.extend_from_slice(arguments);
    payload
}

fn decode_err(mut buf: BytesMut) -> DecodeError {
    Frame::decode(&mut buf, FRAME_MAX).expect_err("malformed input is an error")
}

fn problem(err: &DecodeError) -> &Problem {
    match err {
        DecodeError::Malformed { problem, .. } => problem,
        other => panic!("expected a Malformed error, got {other:?}"),
    }
}

/// queue.declare arguments with `table` as the arguments table bytes
/// (length prefix included).
fn queue_declare_with_table(table: &[u8]) -> BytesMut {
    let mut args = vec![0, 0, 1, b'q', 0];
    args.extend_from_slice(table);
    frame(1, 1, &method_payload(50, 10, &args))
}

#[test]
fn frame_larger_than_frame_max_is_refused_from_its_header_alone() {
    // Only the 7-byte header has arrived: the size is refused before the
    // payload is buffered or any room is reserved for it.
    let mut buf = BytesMut::new();
    buf.put_u8(3);
    buf.put_u16(1);
    buf.put_u32(200_000);
    let capacity = buf.capacity();
    let err = Frame::decode(&mut buf, FRAME_MAX).unwrap_err();
    assert_eq!(
        err,
        DecodeError::FrameTooLarge {
            frame_type: FrameType::Body,
            channel: 1,
            size: 200_000,
            frame_max: FRAME_MAX
        }
    );
    assert_eq!(buf.capacity(), capacity);
    assert!(err.to_string().contains("frame_max of 131072"));
    assert_eq!(err.reply_code(), ReplyCode::FRAME_ERROR);
}

#[test]
fn frame_max_counts_header_and_frame_end() {
    // frame_max 4096 allows a payload of exactly 4088 bytes.
    let ok = frame(3, 1, &[0; 4088]);
    assert!(Frame::decode(&mut ok.clone(), 4096).unwrap().is_some());
    let too_big = frame(3, 1, &[0; 4089]);
    assert!(matches!(
        Frame::decode(&mut too_big.clone(), 4096),
        Err(DecodeError::FrameTooLarge { size: 4089, .. })
    ));
}

#[test]
fn frame_max_below_4096_is_rejected_at_tuning() {
    let tune = frame(
        1,
        0,
        &method_payload(10, 30, &[0, 0, 0, 0, 0x03, 0xE8, 0, 0]),
    );
    assert_eq!(
        decode_err(tune),
        DecodeError::FrameMaxBelowMinimum {
            method: "connection.tune",
            frame_max: 1000
        }
    );
    let tune_ok = frame(
        1,
        0,
        &method_payload(10, 31, &[0, 0, 0, 0, 0x0F, 0xFF, 0, 0]),
    );
    assert!(matches!(
        decode_err(tune_ok),
        DecodeError::FrameMaxBelowMinimum {
            method: "connection.tune-ok",
            frame_max: 4095
        }
    ));
    // 0 means "no limit" and is allowed.
    let unlimited = frame(1, 0, &method_payload(10, 30, &[0, 0, 0, 0, 0, 0, 0, 0]));
    assert!(Frame::decode(&mut unlimited.clone(), FRAME_MAX)
        .unwrap()
        .is_some());
}

#[test]
fn wrong_frame_end_octet() {
    let mut buf = frame(8, 0, &[]);
    let last = buf.len() - 1;
    buf[last] = 0xCD;
    let err = decode_err(buf);
    assert!(matches!(
        err,
        DecodeError::BadFrameEnd {
            found: 0xCD,
            frame_type: FrameType::Heartbeat,
            ..
        }
    ));
    assert!(err.to_string().contains("0xcd"));
}

#[test]
fn unknown_frame_type() {
    assert_eq!(
        decode_err(frame(4, 7, &[])),
        DecodeError::UnknownFrameType {
            frame_type: 4,
            channel: 7
        }
    );
    // 'A' not followed by "MQP" is no protocol header either.
    assert!(matches!(
        decode_err(BytesMut::from(&b"AXQP\x00\x00\x09\x01"[..])),
        DecodeError::UnknownFrameType {
            frame_type: b'A',
            ..
        }
    ));
}

#[test]
fn unknown_class_and_method_ids() {
    let err = decode_err(frame(1, 1, &method_payload(60, 99, &[])));
    assert_eq!(
        problem(&err),
        &Problem::UnknownMethod {
            class_id: 60,
            method_id: 99
        }
    );
    assert_eq!(err.reply_code(), ReplyCode::COMMAND_INVALID);
    let err = decode_err(frame(1, 1, &method_payload(99, 10, &[])));
    assert_eq!(
        problem(&err),
        &Problem::UnknownMethod {
            class_id: 99,
            method_id: 10
        }
    );
}

#[test]
fn method_frame_too_short_for_its_ids() {
    let err = decode_err(frame(1, 1, &[0, 60, 0]));
    assert!(matches!(
        problem(&err),
        Problem::Truncated {
            what: "short",
            needed: 2,
            available: 1
        }
    ));
    assert!(err.to_string().contains("method frame"), "{err}");
}

#[test]
fn short_string_length_running_past_the_frame() {
    // basic.deliver: consumer tag claims 200 bytes, 3 are there.
    let err = decode_err(frame(
        1,
        1,
        &method_payload(60, 60, &[200, b'a', b'b', b'c']),
    ));
    assert_eq!(
        problem(&err),
        &Problem::Truncated {
            what: "shortstr",
            needed: 200,
            available: 3
        }
    );
    let DecodeError::Malformed {
        context,
        offset,
        channel,
        ..
    } = &err
    else {
        unreachable!()
    };
    assert_eq!((*context, *offset, *channel), ("basic.deliver", 5, 1));
    assert_eq!(
        err.to_string(),
        "malformed basic.deliver on channel 1, at byte 5 of the frame payload: \
         shortstr needs 200 bytes but only 3 are left in the frame"
    );
}

#[test]
fn long_string_length_running_past_the_frame() {
    // connection.secure: challenge claims 1000 bytes.
    let err = decode_err(frame(
        1,
        0,
        &method_payload(10, 20, &[0, 0, 0x03, 0xE8, 1, 2]),
    ));
    assert!(matches!(
        problem(&err),
        Problem::Truncated {
            what: "longstr",
            needed: 1000,
            available: 2
        }
    ));
}

#[test]
fn table_length_running_past_the_frame() {
    let err = decode_err(queue_declare_with_table(&[0, 0, 0x10, 0]));
    assert!(matches!(
        problem(&err),
        Problem::Truncated {
            what: "field table",
            needed: 4096,
            available: 0
        }
    ));
}

#[test]
fn negative_array_length() {
    let table = [0, 0, 0, 7, 1, b'a', b'A', 0x80, 0, 0, 0];
    let err = decode_err(queue_declare_with_table(&table));
    assert_eq!(
        problem(&err),
        &Problem::NegativeLength {
            what: "field array",
            length: 0x8000_0000
        }
    );
}

#[test]
fn negative_and_oversized_byte_array_lengths() {
    let negative = [0, 0, 0, 7, 1, b'a', b'x', 0xFF, 0xFF, 0xFF, 0xFF];
    assert!(matches!(
        problem(&decode_err(queue_declare_with_table(&negative))),
        Problem::NegativeLength {
            what: "byte array",
            ..
        }
    ));
    let oversized = [0, 0, 0, 9, 1, b'a', b'x', 0, 0, 0x10, 0, 1, 2];
    assert_eq!(
        problem(&decode_err(queue_declare_with_table(&oversized))),
        &Problem::Truncated {
            what: "byte array",
            needed: 4096,
            available: 2
        }
    );
}

/// A table nesting `depth` tables: {"a": {"a": ... {} }}.
fn nested_tables(depth: usize) -> Vec<u8> {
    let mut inner: Vec<u8> = vec![0, 0, 0, 0];
    for _ in 0..depth {
        let mut outer = Vec::new();
        let entry_len = 1 + 1 + 1 + inner.len();
        outer.extend_from_slice(&(entry_len as u32).to_be_bytes());
        outer.extend_from_slice(&[1, b'a', b'F']);
        outer.extend_from_slice(&inner);
        inner = outer;
    }
    inner
}

/// An array nesting `depth` arrays: [[[...]]].
fn nested_arrays(depth: usize) -> Vec<u8> {
    let mut inner: Vec<u8> = vec![0, 0, 0, 0];
    for _ in 0..depth {
        let mut outer = Vec::new();
        outer.extend_from_slice(&((1 + inner.len()) as u32).to_be_bytes());
        outer.push(b'A');
        outer.extend_from_slice(&inner);
        inner = outer;
    }
    // The outermost array is the value of the entry "a" of a table.
    let mut table = Vec::new();
    table.extend_from_slice(&((3 + inner.len()) as u32).to_be_bytes());
    table.extend_from_slice(&[1, b'a', b'A']);
    table.extend_from_slice(&inner);
    table
}

#[test]
fn tables_nested_deeper_than_the_limit() {
    let fits = Bytes::from(nested_tables(MAX_NESTING_DEPTH - 1));
    assert!(decode_field_table(&fits).is_ok());
    let too_deep = Bytes::from(nested_tables(MAX_NESTING_DEPTH));
    let err = decode_field_table(&too_deep).unwrap_err();
    assert_eq!(problem(&err), &Problem::TooDeep { limit: 32 });
    // 5,000 levels: refused without recursing that far.
    let very_deep = Bytes::from(nested_tables(5_000));
    assert!(matches!(
        problem(&decode_field_table(&very_deep).unwrap_err()),
        Problem::TooDeep { .. }
    ));
    // The same inside a method frame.
    let err = decode_err(queue_declare_with_table(&nested_tables(40)));
    assert_eq!(problem(&err), &Problem::TooDeep { limit: 32 });
}

#[test]
fn arrays_nested_deeper_than_the_limit() {
    let too_deep = Bytes::from(nested_arrays(200));
    assert!(matches!(
        problem(&decode_field_table(&too_deep).unwrap_err()),
        Problem::TooDeep { .. }
    ));
    let fits = Bytes::from(nested_arrays(10));
    assert!(decode_field_table(&fits).is_ok());
}

#[test]
fn invalid_utf8_in_a_short_string() {
    // queue.declare with queue name 0xFF 0xFE.
    let args = [0, 0, 2, 0xFF, 0xFE, 0, 0, 0, 0, 0];
    let err = decode_err(frame(1, 1, &method_payload(50, 10, &args)));
    assert_eq!(problem(&err), &Problem::InvalidUtf8 { what: "shortstr" });
    let DecodeError::Malformed {
        context, offset, ..
    } = err
    else {
        unreachable!()
    };
    assert_eq!((context, offset), ("queue.declare", 6));
    // A table key is a short string too.
    let table = [0, 0, 0, 3, 1, 0xC0, b'V'];
    assert_eq!(
        problem(&decode_err(queue_declare_with_table(&table))),
        &Problem::InvalidUtf8 { what: "shortstr" }
    );
}

#[test]
fn unknown_field_value_type() {
    let table = [0, 0, 0, 3, 1, b'a', b'Z'];
    assert_eq!(
        problem(&decode_err(queue_declare_with_table(&table))),
        &Problem::UnknownFieldType { tag: b'Z' }
    );
}

#[test]
fn bytes_after_the_last_argument() {
    let err = decode_err(frame(1, 1, &method_payload(90, 10, &[0xAA, 0xBB])));
    assert_eq!(problem(&err), &Problem::TrailingBytes { count: 2 });
}

#[test]
fn heartbeat_off_channel_zero_or_with_payload() {
    assert_eq!(
        decode_err(frame(8, 3, &[])),
        DecodeError::BadHeartbeat {
            channel: 3,
            size: 0
        }
    );
    assert_eq!(
        decode_err(frame(8, 0, &[1])),
        DecodeError::BadHeartbeat {
            channel: 0,
            size: 1
        }
    );
}

#[test]
fn content_header_problems() {
    let header = |class: u16, weight: u16, flags: u16| {
        let mut p = Vec::new();
        p.extend_from_slice(&class.to_be_bytes());
        p.extend_from_slice(&weight.to_be_bytes());
        p.extend_from_slice(&5u64.to_be_bytes());
        p.extend_from_slice(&flags.to_be_bytes());
        frame(2, 1, &p)
    };
    assert_eq!(
        problem(&decode_err(header(50, 0, 0))),
        &Problem::UnknownContentClass { class_id: 50 }
    );
    assert_eq!(
        problem(&decode_err(header(60, 1, 0))),
        &Problem::NonZeroWeight { weight: 1 }
    );
    assert_eq!(
        problem(&decode_err(header(60, 0, 0x0001))),
        &Problem::UnknownPropertyFlags { flags: 0x0001 }
    );
    // The delivery-mode flag is set but the octet is missing.
    assert!(matches!(
        problem(&decode_err(header(60, 0, 0x1000))),
        Problem::Truncated { what: "octet", .. }
    ));
}

#[test]
fn body_frames_that_disagree_with_the_content_header() {
    let mut body = BodyAssembler::new(4, 1 << 20).unwrap();
    assert_eq!(body.push(Bytes::from_static(b"abc")).unwrap(), None);
    assert_eq!(
        body.push(Bytes::from_static(b"de")),
        Err(BodyError::Overrun {
            expected: 4,
            received: 5
        })
    );
    // The same through a lent buffer.
    let mut body = BodyAssembler::new(4, 1 << 20).unwrap();
    let mut buffer = body.lend();
    buffer.extend_from_slice(b"abcde");
    assert_eq!(
        body.give_back(buffer),
        Err(BodyError::Overrun {
            expected: 4,
            received: 5
        })
    );
    // A header announcing more than the receiver accepts is refused before
    // anything is reserved for it.
    assert_eq!(
        BodyAssembler::new(u64::MAX, 128 << 20).unwrap_err(),
        BodyError::TooLarge {
            size: u64::MAX,
            limit: 128 << 20
        }
    );
    // An empty body is complete without body frames.
    assert!(BodyAssembler::new(0, 1).unwrap().is_complete());
}

#[test]
fn protocol_header_from_a_server_that_wants_another_version() {
    let mut buf = BytesMut::from(&b"AMQP\x01\x01\x00\x0a"[..]);
    let Some(Frame::ProtocolHeader(header)) = Frame::decode(&mut buf, FRAME_MAX).unwrap() else {
        panic!("expected a protocol header");
    };
    assert_ne!(header, ProtocolHeader::AMQP_0_9_1);
    assert_eq!((header.major, header.minor, header.revision), (1, 0, 10));
}

#[test]
fn partial_input_waits_without_error() {
    let whole = frame(1, 1, &method_payload(60, 80, &[0, 0, 0, 0, 0, 0, 0, 1, 0]));
    for cut in 0..whole.len() {
        let mut part = BytesMut::from(&whole[..cut]);
        assert_eq!(
            Frame::decode(&mut part, FRAME_MAX).unwrap(),
            None,
            "cut at {cut}"
        );
        assert_eq!(part.len(), cut, "nothing consumed");
    }
}

#[test]
fn short_strings_longer_than_255_bytes_cannot_be_built() {
    assert_eq!(
        ShortString::try_from("q".repeat(256)).unwrap_err(),
        ShortStringTooLong { len: 256 }
    );
    assert_eq!(
        ShortString::try_from(Bytes::from_static(&[0xFF])).unwrap_err(),
        InvalidShortString::NotUtf8
    );
}

#[test]
fn method_or_header_too_large_for_frame_max_is_refused_on_encode() {
    let mut headers = FieldTable::new();
    headers.insert(ShortString::from_static("big"), "x".repeat(5000));
    let properties = BasicProperties {
        headers: Some(headers),
        ..Default::default()
    };
    let mut buf = BytesMut::new();
    let err = encode_publish(
        &mut buf,
        1,
        &BasicPublish::default(),
        &properties,
        b"body",
        4096,
    )
    .unwrap_err();
    assert_eq!(err.frame_type, FrameType::Header);
    assert!(buf.is_empty());
    assert!(err.to_string().contains("cannot be split"));
}
