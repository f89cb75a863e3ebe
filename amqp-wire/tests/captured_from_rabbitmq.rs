//! Frames captured from the local RabbitMQ 3.10.8 (see tests/data/README.md
//! and tests/data/capture.py) decode to exactly what the broker sent, and
//! re-encode byte for byte.

use amqp_wire::*;
use bytes::{Bytes, BytesMut};

fn load(name: &str) -> Bytes {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}")))
}

/// Decodes every frame of a captured file and checks that encoding them
/// again gives the captured bytes.
fn decode_all(name: &str) -> Vec<Frame> {
    let captured = load(name);
    let mut buf = BytesMut::from(&captured[..]);
    let mut frames = Vec::new();
    while let Some(frame) = Frame::decode(&mut buf, 131_072).expect("captured frames decode") {
        frames.push(frame);
    }
    assert!(buf.is_empty(), "{name}: {} bytes left over", buf.len());
    let mut encoded = BytesMut::new();
    for frame in &frames {
        frame.encode(&mut encoded);
    }
    assert_eq!(
        encoded.freeze(),
        captured,
        "{name} re-encodes byte for byte"
    );
    frames
}

fn s(text: &'static str) -> ShortString {
    ShortString::from_static(text)
}

fn long(text: &str) -> FieldValue {
    FieldValue::LongString(LongString::from(text))
}

#[test]
fn connection_start_with_server_properties() {
    let frames = decode_all("connection_start.bin");
    let [Frame::Method {
        channel: 0,
        method: Method::ConnectionStart(start),
    }] = &frames[..]
    else {
        panic!("expected one connection.start, got {frames:?}");
    };
    assert_eq!((start.version_major, start.version_minor), (0, 9));
    assert_eq!(start.mechanisms.to_str(), Some("PLAIN AMQPLAIN"));
    assert_eq!(start.locales.to_str(), Some("en_US"));

    let props = &start.server_properties;
    let keys: Vec<&str> = props.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "capabilities",
            "cluster_name",
            "copyright",
            "information",
            "platform",
            "product",
            "version"
        ]
    );
    assert_eq!(props.get("product"), Some(&long("RabbitMQ")));
    assert_eq!(props.get("version"), Some(&long("3.10.8")));
    assert_eq!(props.get("platform"), Some(&long("Erlang/OTP 25.2.3")));
    assert_eq!(props.get("cluster_name"), Some(&long("rabbit@vm")));

    let Some(FieldValue::Table(capabilities)) = props.get("capabilities") else {
        panic!("capabilities is a table");
    };
    let expected = [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "consumer_priorities",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ];
    assert_eq!(capabilities.len(), expected.len());
    for (key, (name, value)) in expected.iter().zip(capabilities.iter()) {
        assert_eq!(name, key);
        assert_eq!(value, &FieldValue::Boolean(true));
    }
}

#[test]
fn connection_tune() {
    let frames = decode_all("connection_tune.bin");
    assert_eq!(
        frames,
        [Frame::Method {
            channel: 0,
            method: ConnectionTune {
                channel_max: 2047,
                frame_max: 131_072,
                heartbeat: 60
            }
            .into()
        }]
    );
}

#[test]
fn channel_close_not_found() {
    let frames = decode_all("channel_close_404.bin");
    let [Frame::Method {
        channel: 2,
        method: Method::ChannelClose(close),
    }] = &frames[..]
    else {
        panic!("expected channel.close, got {frames:?}");
    };
    assert_eq!(ReplyCode(close.reply_code), ReplyCode::NOT_FOUND);
    assert_eq!(
        close.reply_text,
        "NOT_FOUND - no queue 'capture-no-such-queue' in vhost '/'"
    );
    assert_eq!((close.class_id, close.method_id), (50, 10));
}

#[test]
fn deliver_with_headers_of_every_type() {
    let frames = decode_all("deliver_with_headers.bin");
    let [Frame::Method {
        channel: 1,
        method: Method::BasicDeliver(deliver),
    }, Frame::Header { channel: 1, header }, Frame::Body {
        channel: 1,
        payload,
    }] = &frames[..]
    else {
        panic!("expected deliver, header, body; got {frames:?}");
    };
    assert_eq!(
        deliver,
        &BasicDeliver {
            consumer_tag: s("capture-ctag"),
            delivery_tag: 1,
            redelivered: false,
            exchange: s(""),
            routing_key: s("pika-capture-ef9f91b7e18d"),
        }
    );

    assert_eq!((header.class_id, header.body_size), (60, 37));
    let p = &header.properties;
    assert_eq!(p.flags(), 0xFFF8);
    assert_eq!(p.content_type, Some(s("application/json")));
    assert_eq!(p.content_encoding, Some(s("utf-8")));
    assert_eq!(p.delivery_mode, Some(2));
    assert_eq!(p.priority, Some(5));
    assert_eq!(p.correlation_id, Some(s("corr-1")));
    assert_eq!(
        p.reply_to.as_deref(),
        Some("amq.rabbitmq.reply-to.g1h2AA1yZXBseUA5MjQ4ODg0AAAFGAAAAABrCMnq.Q0cfhEQFlez79xCryXRayA==")
    );
    assert_eq!(p.expiration, Some(s("60000")));
    assert_eq!(p.message_id, Some(s("msg-1")));
    assert_eq!(p.timestamp, Some(1_700_000_000));
    assert_eq!(p.kind, Some(s("test.type")));
    assert_eq!(p.user_id, Some(s("guest")));
    assert_eq!(p.app_id, Some(s("capture")));
    assert_eq!(p.cluster_id, None);

    let nested: FieldTable = [(s("k1"), long("v1")), (s("k2"), FieldValue::LongInt(-1))]
        .into_iter()
        .collect();
    let expected: FieldTable = [
        (s("t_bool"), FieldValue::Boolean(true)),
        (s("b_i8"), FieldValue::ShortShortInt(-100)),
        (s("B_u8"), FieldValue::ShortShortUInt(200)),
        (s("s_i16"), FieldValue::ShortInt(-30000)),
        (s("u_u16"), FieldValue::ShortUInt(60000)),
        (s("I_i32"), FieldValue::LongInt(-2_000_000_000)),
        (s("i_u32"), FieldValue::LongUInt(4_000_000_000)),
        (
            s("l_i64"),
            FieldValue::LongLongInt(-9_000_000_000_000_000_000),
        ),
        (s("f_f32"), FieldValue::Float(1.5)),
        (s("d_f64"), FieldValue::Double(2.25)),
        (
            s("D_decimal"),
            FieldValue::Decimal(Decimal {
                scale: 2,
                value: 12345,
            }),
        ),
        (s("S_longstr"), long("hello longstr")),
        (
            s("x_bytes"),
            FieldValue::ByteArray(Bytes::from_static(&[0, 1, 0xfe, 0xff])),
        ),
        (
            s("A_array"),
            FieldValue::Array(vec![
                FieldValue::LongInt(1),
                long("two"),
                FieldValue::Boolean(true),
                FieldValue::Double(2.25),
            ]),
        ),
        (s("T_timestamp"), FieldValue::Timestamp(1_700_000_001)),
        (s("F_table"), FieldValue::Table(nested)),
        (s("V_void"), FieldValue::Void),
    ]
    .into_iter()
    .collect();
    assert_eq!(p.headers.as_ref(), Some(&expected));

    assert_eq!(&payload[..], br#"{"msg":"hello from capture.py","n":1}"#);
}

#[test]
fn decoded_body_and_strings_are_slices_of_the_read_buffer() {
    let captured = load("deliver_with_headers.bin");
    let mut buf = BytesMut::from(&captured[..]);
    let start = buf.as_ptr() as usize;
    let end = start + buf.len();
    let within = |p: *const u8| (start..end).contains(&(p as usize));

    let Some(Frame::Method {
        method: Method::BasicDeliver(deliver),
        ..
    }) = Frame::decode(&mut buf, 131_072).unwrap()
    else {
        panic!()
    };
    assert!(
        within(deliver.routing_key.as_ptr()),
        "routing key is not copied"
    );
    let Some(Frame::Header { header, .. }) = Frame::decode(&mut buf, 131_072).unwrap() else {
        panic!()
    };
    let headers = header.properties.headers.unwrap();
    let Some(FieldValue::LongString(text)) = headers.get("S_longstr") else {
        panic!()
    };
    assert!(
        within(text.as_bytes().as_ptr()),
        "long string is not copied"
    );
    let Some(Frame::Body { payload, .. }) = Frame::decode(&mut buf, 131_072).unwrap() else {
        panic!()
    };
    assert!(within(payload.as_ptr()), "body is not copied");
}
