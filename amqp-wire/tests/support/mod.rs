//! proptest strategies for AMQP values, shared by the round-trip tests.

#![allow(dead_code)]
// Shared by the test files of this crate: `pub` here means "for them".
#![allow(unreachable_pub)]

pub mod method_strategies;

use amqp_wire::*;
use bytes::Bytes;
use proptest::prelude::*;

/// Any short string: up to 255 bytes of UTF-8 (multi-byte characters
/// included, cut at a character boundary).
pub fn arb_short_string() -> impl Strategy<Value = ShortString> {
    "\\PC{0,80}".prop_map(|s| {
        let mut end = s.len().min(255);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        ShortString::try_from(&s[..end]).expect("at most 255 bytes")
    })
}

/// Any long string: arbitrary bytes, not only text.
pub fn arb_long_string() -> impl Strategy<Value = LongString> {
    proptest::collection::vec(any::<u8>(), 0..300).prop_map(LongString::from)
}

fn arb_leaf_value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        any::<bool>().prop_map(FieldValue::Boolean),
        any::<i8>().prop_map(FieldValue::ShortShortInt),
        any::<u8>().prop_map(FieldValue::ShortShortUInt),
        any::<i16>().prop_map(FieldValue::ShortInt),
        any::<u16>().prop_map(FieldValue::ShortUInt),
        any::<i32>().prop_map(FieldValue::LongInt),
        any::<u32>().prop_map(FieldValue::LongUInt),
        any::<i64>().prop_map(FieldValue::LongLongInt),
        any::<u32>().prop_map(|bits| FieldValue::Float(f32::from_bits(bits))),
        any::<u64>().prop_map(|bits| FieldValue::Double(f64::from_bits(bits))),
        (any::<u8>(), any::<u32>())
            .prop_map(|(scale, value)| FieldValue::Decimal(Decimal { scale, value })),
        arb_long_string().prop_map(FieldValue::LongString),
        proptest::collection::vec(any::<u8>(), 0..64)
            .prop_map(|v| FieldValue::ByteArray(Bytes::from(v))),
        any::<u64>().prop_map(FieldValue::Timestamp),
        Just(FieldValue::Void),
    ]
}

/// Any field value, tables and arrays nested a few levels deep.
pub fn arb_field_value() -> impl Strategy<Value = FieldValue> {
    arb_leaf_value().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(FieldValue::Array),
            proptest::collection::vec((arb_short_string(), inner), 0..8)
                .prop_map(|entries| FieldValue::Table(entries.into_iter().collect())),
        ]
    })
}

/// Any field table (keys may repeat: the wire allows it and order is kept).
pub fn arb_field_table() -> impl Strategy<Value = FieldTable> {
    proptest::collection::vec((arb_short_string(), arb_field_value()), 0..8)
        .prop_map(|entries| entries.into_iter().collect())
}

/// Basic properties with any subset of the 14 set.
pub fn arb_properties() -> impl Strategy<Value = BasicProperties> {
    let strings = (
        proptest::option::of(arb_short_string()),
        proptest::option::of(arb_short_string()),
        proptest::option::of(arb_short_string()),
        proptest::option::of(arb_short_string()),
        proptest::option::of(arb_short_string()),
        proptest::option::of(arb_short_string()),
        proptest::option::of(arb_short_string()),
        proptest::option::of(arb_short_string()),
        proptest::option::of(arb_short_string()),
        proptest::option::of(arb_short_string()),
    );
    let others = (
        proptest::option::of(arb_field_table()),
        proptest::option::of(any::<u8>()),
        proptest::option::of(any::<u8>()),
        proptest::option::of(any::<u64>()),
    );
    (strings, others).prop_map(
        |(
            (
                content_type,
                content_encoding,
                correlation_id,
                reply_to,
                expiration,
                message_id,
                kind,
                user_id,
                app_id,
                cluster_id,
            ),
            (headers, delivery_mode, priority, timestamp),
        )| BasicProperties {
            content_type,
            content_encoding,
            headers,
            delivery_mode,
            priority,
            correlation_id,
            reply_to,
            expiration,
            message_id,
            timestamp,
            kind,
            user_id,
            app_id,
            cluster_id,
        },
    )
}
