//! Codec benchmarks, amqp-wire side by side with lapin's codec
//! (amq-protocol) in the same run:
//!
//! - `publish_encode`: basic.publish + content header + body frames for
//!   64 B, 4 KiB and 128 KiB bodies, into a reused buffer (`amqp-wire`),
//!   or as segments for a vectored write that leave the body in place
//!   (`amqp-wire-segments`).
//! - `deliver_decode`: basic.deliver + content header + body frames, 32
//!   deliveries to a read buffer (times are per buffer; divide by 32).
//! - `field_table_decode`: a 20-entry table.
//!
//! Run: `cargo bench -p amqp-wire --bench codec`. Compare the two clients
//! within one run, as ratios: absolute times move on shared machines.
//!
//! Both sides do what a client must do for one message with its library's
//! public API. amq-protocol's body frames own a `Vec<u8>`, so its publish
//! includes copying the body into one, and its parser copies each body
//! into a new `Vec`; amqp-wire writes from the caller's slice and hands
//! out slices of the read buffer.

use std::hint::black_box;

use amq_protocol::frame::{gen_frame, parse_frame, AMQPContentHeader, AMQPFrame, WriteContext};
use amq_protocol::protocol::{basic as amq_basic, AMQPClass};
use amq_protocol::types::{
    parsing::parse_field_table as amq_parse_field_table, AMQPValue, FieldTable as AmqFieldTable,
    LongString as AmqLongString, ShortString as AmqShortString,
};
use amqp_wire::{
    decode_field_table, encode_field_table, encode_method, encode_publish, encode_publish_segments,
    BasicDeliver, BasicProperties, BasicPublish, FieldTable, FieldValue, Frame, Method,
    ShortString,
};
use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

const FRAME_MAX: u32 = 131_072;
const SIZES: [usize; 3] = [64, 4 * 1024, 128 * 1024];

fn s(text: &'static str) -> ShortString {
    ShortString::from_static(text)
}

fn wire_properties() -> BasicProperties {
    let mut headers = FieldTable::new();
    headers.insert(s("x-bench-id"), 42i64);
    headers.insert(s("x-source"), "criterion");
    headers.insert(s("x-flag"), true);
    BasicProperties {
        content_type: Some(s("application/octet-stream")),
        delivery_mode: Some(2),
        headers: Some(headers),
        ..Default::default()
    }
}

fn amq_properties() -> amq_basic::AMQPProperties {
    let mut headers = AmqFieldTable::default();
    headers.insert("x-bench-id".into(), AMQPValue::LongLongInt(42));
    headers.insert(
        "x-source".into(),
        AMQPValue::LongString(AmqLongString::from("criterion")),
    );
    headers.insert("x-flag".into(), AMQPValue::Boolean(true));
    amq_basic::AMQPProperties::default()
        .with_content_type(AmqShortString::from("application/octet-stream"))
        .with_delivery_mode(2)
        .with_headers(headers)
}

fn amq_write(buf: Vec<u8>, frame: &AMQPFrame) -> Vec<u8> {
    gen_frame(frame)(WriteContext::from(buf))
        .expect("gen_frame")
        .into_inner()
        .0
}

fn amq_encode_publish(
    mut buf: Vec<u8>,
    body: &[u8],
    properties: &amq_basic::AMQPProperties,
) -> Vec<u8> {
    let method = AMQPFrame::Method(
        1,
        AMQPClass::Basic(amq_basic::AMQPMethod::Publish(amq_basic::Publish {
            exchange: "".into(),
            routing_key: "bench-queue".into(),
            mandatory: false,
            immediate: false,
        })),
    );
    buf = amq_write(buf, &method);
    let header = AMQPFrame::Header(
        1,
        AMQPContentHeader {
            class_id: 60,
            body_size: body.len() as u64,
            properties: properties.clone(),
        },
    );
    buf = amq_write(buf, &header);
    for chunk in body.chunks(FRAME_MAX as usize - 8) {
        buf = amq_write(buf, &AMQPFrame::Body(1, chunk.to_vec()));
    }
    buf
}

fn publish_encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish_encode");
    let publish = BasicPublish {
        routing_key: s("bench-queue"),
        ..Default::default()
    };
    let wire_props = wire_properties();
    let amq_props = amq_properties();
    for size in SIZES {
        let body = vec![0xA5u8; size];
        group.throughput(Throughput::Elements(1));
        let mut buf = BytesMut::with_capacity(size + 1024);
        group.bench_with_input(BenchmarkId::new("amqp-wire", size), &body, |b, body| {
            b.iter(|| {
                buf.clear();
                encode_publish(
                    &mut buf,
                    1,
                    &publish,
                    &wire_props,
                    black_box(body),
                    FRAME_MAX,
                )
                .unwrap();
                black_box(buf.len())
            })
        });
        let shared_body = Bytes::from(body.clone());
        let mut head = BytesMut::with_capacity(1024);
        let mut segments = Vec::with_capacity(8);
        group.bench_with_input(
            BenchmarkId::new("amqp-wire-segments", size),
            &shared_body,
            |b, body| {
                b.iter(|| {
                    segments.clear();
                    encode_publish_segments(
                        &mut head,
                        1,
                        &publish,
                        &wire_props,
                        black_box(body),
                        FRAME_MAX,
                        &mut segments,
                    )
                    .unwrap();
                    black_box(segments.len())
                })
            },
        );
        let mut vec = Vec::with_capacity(size + 1024);
        group.bench_with_input(BenchmarkId::new("amq-protocol", size), &body, |b, body| {
            b.iter(|| {
                vec.clear();
                vec = amq_encode_publish(std::mem::take(&mut vec), black_box(body), &amq_props);
                black_box(vec.len())
            })
        });
    }
    group.finish();
}

/// How many deliveries one read buffer holds in the decode benchmark: a
/// client decodes whatever one socket read brought, often many messages.
const BATCH: usize = 32;

/// The bytes of `BATCH` times basic.deliver + content header + body frame(s).
fn deliver_bytes(size: usize) -> Bytes {
    let mut buf = BytesMut::new();
    for tag in 0..BATCH as u64 {
        let deliver: Method = BasicDeliver {
            consumer_tag: s("amq.ctag-bench"),
            delivery_tag: tag + 1,
            redelivered: false,
            exchange: s(""),
            routing_key: s("bench-queue"),
        }
        .into();
        encode_method(&mut buf, 1, &deliver);
        amqp_wire::encode_content(
            &mut buf,
            1,
            &wire_properties(),
            &vec![0x5Au8; size],
            FRAME_MAX,
        );
    }
    buf.freeze()
}

fn deliver_decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("deliver_decode");
    for size in SIZES {
        let bytes = deliver_bytes(size);
        let frames = BATCH * (2 + size.div_ceil(FRAME_MAX as usize - 8));
        // Reported per delivery (method + header + body frames).
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_with_input(BenchmarkId::new("amqp-wire", size), &bytes, |b, bytes| {
            // A fresh read buffer per iteration, filled outside the timing.
            b.iter_batched(
                || BytesMut::from(&bytes[..]),
                |mut buf| {
                    let mut n = 0;
                    while let Some(frame) = Frame::decode(&mut buf, FRAME_MAX).unwrap() {
                        black_box(&frame);
                        n += 1;
                    }
                    assert_eq!(n, frames);
                    buf
                },
                BatchSize::LargeInput,
            )
        });
        group.bench_with_input(
            BenchmarkId::new("amq-protocol", size),
            &bytes,
            |b, bytes| {
                b.iter(|| {
                    let mut input: &[u8] = black_box(&bytes[..]);
                    let mut n = 0;
                    while !input.is_empty() {
                        let (rest, frame) = parse_frame(input).expect("parses");
                        black_box(&frame);
                        input = rest;
                        n += 1;
                    }
                    assert_eq!(n, frames);
                })
            },
        );
    }
    group.finish();
}

fn field_table_decode(c: &mut Criterion) {
    let mut table = FieldTable::new();
    let mut amq_table = AmqFieldTable::default();
    for i in 0..20u32 {
        let key = format!("key-{i:02}");
        let (wire, amq) = match i % 5 {
            0 => (
                FieldValue::from(format!("value-{i}")),
                AMQPValue::LongString(AmqLongString::from(format!("value-{i}"))),
            ),
            1 => (
                FieldValue::LongInt(i as i32 * 1000),
                AMQPValue::LongInt(i as i32 * 1000),
            ),
            2 => (
                FieldValue::Boolean(i % 2 == 0),
                AMQPValue::Boolean(i % 2 == 0),
            ),
            3 => (
                FieldValue::LongLongInt(i as i64 * 1_000_000_007),
                AMQPValue::LongLongInt(i as i64 * 1_000_000_007),
            ),
            _ => (
                FieldValue::Timestamp(1_700_000_000 + u64::from(i)),
                AMQPValue::Timestamp(1_700_000_000 + u64::from(i)),
            ),
        };
        table.insert(ShortString::try_from(key.as_str()).unwrap(), wire);
        amq_table.insert(key.into(), amq);
    }
    let mut buf = BytesMut::new();
    encode_field_table(&mut buf, &table);
    let bytes = buf.freeze();

    let mut group = c.benchmark_group("field_table_decode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("amqp-wire/20", |b| {
        b.iter(|| black_box(decode_field_table(black_box(&bytes)).unwrap()))
    });
    group.bench_function("amq-protocol/20", |b| {
        b.iter(|| {
            let (rest, table) = amq_parse_field_table(black_box(&bytes[..])).expect("parses");
            assert!(rest.is_empty());
            black_box(table)
        })
    });
    group.finish();
    // The two encodings agree on what the table holds.
    let (_, parsed) = amq_parse_field_table(&bytes[..]).expect("parses");
    assert_eq!(parsed.inner().len(), 20);
    assert_eq!(parsed, amq_table);
}

criterion_group!(benches, publish_encode, deliver_decode, field_table_decode);
criterion_main!(benches);
