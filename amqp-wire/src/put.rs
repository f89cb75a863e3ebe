//! Encoders for AMQP's variable-length types, writing into any `BufMut`.

use bytes::BufMut;

use crate::types::{FieldTable, FieldValue, LongString, ShortString};

/// A `shortstr`: length octet and bytes (its type keeps it within 255).
pub(crate) fn shortstr<B: BufMut>(buf: &mut B, s: &ShortString) {
    buf.put_u8(s.len() as u8);
    buf.put_slice(s.as_bytes());
}

/// A `longstr`: 32-bit length and bytes.
pub(crate) fn longstr<B: BufMut>(buf: &mut B, s: &LongString) {
    buf.put_u32(s.len() as u32);
    buf.put_slice(s.as_bytes());
}

/// A field table: 32-bit byte length, then key/value pairs.
pub(crate) fn table<B: BufMut>(buf: &mut B, table: &FieldTable) {
    buf.put_u32(table.encoded_len() as u32);
    for (key, value) in table.iter() {
        shortstr(buf, key);
        field_value(buf, value);
    }
}

/// A tagged field value.
pub(crate) fn field_value<B: BufMut>(buf: &mut B, value: &FieldValue) {
    buf.put_u8(value.tag());
    match value {
        FieldValue::Boolean(v) => buf.put_u8(u8::from(*v)),
        FieldValue::ShortShortInt(v) => buf.put_i8(*v),
        FieldValue::ShortShortUInt(v) => buf.put_u8(*v),
        FieldValue::ShortInt(v) => buf.put_i16(*v),
        FieldValue::ShortUInt(v) => buf.put_u16(*v),
        FieldValue::LongInt(v) => buf.put_i32(*v),
        FieldValue::LongUInt(v) => buf.put_u32(*v),
        FieldValue::LongLongInt(v) => buf.put_i64(*v),
        FieldValue::Float(v) => buf.put_f32(*v),
        FieldValue::Double(v) => buf.put_f64(*v),
        FieldValue::Decimal(d) => {
            buf.put_u8(d.scale);
            buf.put_u32(d.value);
        }
        FieldValue::LongString(s) => longstr(buf, s),
        FieldValue::ByteArray(b) => {
            buf.put_u32(b.len() as u32);
            buf.put_slice(b);
        }
        FieldValue::Array(values) => {
            buf.put_u32(array_len(values) as u32);
            for v in values {
                field_value(buf, v);
            }
        }
        FieldValue::Timestamp(v) => buf.put_u64(*v),
        FieldValue::Table(t) => table(buf, t),
        FieldValue::Void => {}
    }
}

/// Encoded length of an array's values (without its length prefix).
pub(crate) fn array_len(values: &[FieldValue]) -> usize {
    values.iter().map(FieldValue::encoded_len).sum()
}
