//! nom parsers for AMQP's primitive types.
//!
//! Every parser takes `i`, a slice of the frame payload `src`; strings,
//! byte arrays and tables come back as `Bytes` slices of `src`
//! (`Bytes::slice_ref`), so nothing is copied. Every length is checked
//! against the bytes that are actually left before anything is taken, and
//! collections grow only as values are parsed, so no allocation is sized by
//! a length read off the wire.

use bytes::Bytes;
use nom::number::complete::{
    be_f32, be_f64, be_i16, be_i32, be_i64, be_i8, be_u16, be_u32, be_u64, be_u8,
};

use crate::error::Problem;
use crate::types::{Decimal, FieldTable, FieldValue, LongString, ShortString};
use crate::MAX_NESTING_DEPTH;

/// A parse failure: the problem and the address where it was found.
#[derive(Debug)]
pub(crate) struct WireError {
    /// Address of the first byte of the input where the problem was found
    /// (pointer arithmetic turns it into an offset into the payload).
    pub(crate) at: usize,
    pub(crate) problem: Problem,
}

impl nom::error::ParseError<&[u8]> for WireError {
    fn from_error_kind(input: &[u8], _kind: nom::error::ErrorKind) -> Self {
        // Only reached from nom's number parsers, which we call after
        // checking the length, so this is a safety net.
        WireError {
            at: input.as_ptr() as usize,
            problem: Problem::Truncated {
                what: "value",
                needed: 1,
                available: input.len(),
            },
        }
    }

    fn append(_: &[u8], _: nom::error::ErrorKind, other: Self) -> Self {
        other
    }
}

pub(crate) type PResult<'a, T> = nom::IResult<&'a [u8], T, WireError>;

/// A failure at `i` (no backtracking: every failure is final).
pub(crate) fn fail(i: &[u8], problem: Problem) -> nom::Err<WireError> {
    nom::Err::Failure(WireError {
        at: i.as_ptr() as usize,
        problem,
    })
}

fn need(i: &[u8], needed: u64, what: &'static str) -> Result<(), nom::Err<WireError>> {
    if (i.len() as u64) < needed {
        Err(fail(
            i,
            Problem::Truncated {
                what,
                needed,
                available: i.len(),
            },
        ))
    } else {
        Ok(())
    }
}

macro_rules! fixed {
    ($(#[$doc:meta])* $name:ident, $ty:ty, $nom:ident, $what:literal) => {
        $(#[$doc])*
        pub(crate) fn $name(i: &[u8]) -> PResult<'_, $ty> {
            need(i, std::mem::size_of::<$ty>() as u64, $what)?;
            $nom(i)
        }
    };
}

fixed!(/// An `octet`.
    octet, u8, be_u8, "octet");
fixed!(/// A `short`.
    short, u16, be_u16, "short");
fixed!(/// A `long`.
    long, u32, be_u32, "long");
fixed!(/// A `longlong` or `timestamp`.
    longlong, u64, be_u64, "longlong");
fixed!(i8_, i8, be_i8, "short-short-int");
fixed!(i16_, i16, be_i16, "short-int");
fixed!(i32_, i32, be_i32, "long-int");
fixed!(i64_, i64, be_i64, "long-long-int");
fixed!(f32_, f32, be_f32, "float");
fixed!(f64_, f64, be_f64, "double");

/// Takes `len` bytes as a slice of `src`.
fn take_bytes<'a>(src: &Bytes, i: &'a [u8], len: u64, what: &'static str) -> PResult<'a, Bytes> {
    need(i, len, what)?;
    // `len <= i.len()` was checked, so it fits in usize.
    let (head, rest) = i.split_at(len as usize);
    Ok((rest, src.slice_ref(head)))
}

/// A 32-bit length that must not be negative as a signed integer.
fn length32<'a>(i: &'a [u8], what: &'static str) -> PResult<'a, u32> {
    let (rest, length) = long(i)?;
    if length > i32::MAX as u32 {
        return Err(fail(i, Problem::NegativeLength { what, length }));
    }
    Ok((rest, length))
}

/// A `shortstr`: length octet and UTF-8 text.
pub(crate) fn shortstr<'a>(src: &Bytes, i: &'a [u8]) -> PResult<'a, ShortString> {
    let (rest, len) = octet(i)?;
    let (rest, bytes) = take_bytes(src, rest, u64::from(len), "shortstr")?;
    match ShortString::from_utf8(bytes) {
        Some(s) => Ok((rest, s)),
        None => Err(fail(i, Problem::InvalidUtf8 { what: "shortstr" })),
    }
}

/// A `longstr`: 32-bit length and bytes.
pub(crate) fn longstr<'a>(src: &Bytes, i: &'a [u8]) -> PResult<'a, LongString> {
    let (rest, len) = length32(i, "longstr")?;
    let (rest, bytes) = take_bytes(src, rest, u64::from(len), "longstr")?;
    Ok((rest, LongString::from(bytes)))
}

/// A field table: 32-bit byte length, then key/value pairs.
///
/// `depth` counts the tables and arrays around this one.
pub(crate) fn table<'a>(src: &Bytes, i: &'a [u8], depth: usize) -> PResult<'a, FieldTable> {
    if depth >= MAX_NESTING_DEPTH {
        return Err(fail(
            i,
            Problem::TooDeep {
                limit: MAX_NESTING_DEPTH,
            },
        ));
    }
    let (rest, len) = length32(i, "field table")?;
    need(rest, u64::from(len), "field table")?;
    let (mut body, rest) = rest.split_at(len as usize);
    let mut table = FieldTable::new();
    while !body.is_empty() {
        let (after_key, key) = shortstr(src, body)?;
        let (after_value, value) = field_value(src, after_key, depth + 1)?;
        table.push(key, value);
        body = after_value;
    }
    Ok((rest, table))
}

/// A field array: 32-bit byte length, then values.
fn array<'a>(src: &Bytes, i: &'a [u8], depth: usize) -> PResult<'a, Vec<FieldValue>> {
    if depth >= MAX_NESTING_DEPTH {
        return Err(fail(
            i,
            Problem::TooDeep {
                limit: MAX_NESTING_DEPTH,
            },
        ));
    }
    let (rest, len) = length32(i, "field array")?;
    need(rest, u64::from(len), "field array")?;
    let (mut body, rest) = rest.split_at(len as usize);
    let mut values = Vec::new();
    while !body.is_empty() {
        let (after, value) = field_value(src, body, depth + 1)?;
        values.push(value);
        body = after;
    }
    Ok((rest, values))
}

/// A tagged field value. `depth` counts the tables and arrays around it.
pub(crate) fn field_value<'a>(src: &Bytes, i: &'a [u8], depth: usize) -> PResult<'a, FieldValue> {
    let (rest, tag) = octet(i)?;
    match tag {
        b't' => octet(rest).map(|(r, v)| (r, FieldValue::Boolean(v != 0))),
        b'b' => i8_(rest).map(|(r, v)| (r, FieldValue::ShortShortInt(v))),
        b'B' => octet(rest).map(|(r, v)| (r, FieldValue::ShortShortUInt(v))),
        b's' => i16_(rest).map(|(r, v)| (r, FieldValue::ShortInt(v))),
        b'u' => short(rest).map(|(r, v)| (r, FieldValue::ShortUInt(v))),
        b'I' => i32_(rest).map(|(r, v)| (r, FieldValue::LongInt(v))),
        b'i' => long(rest).map(|(r, v)| (r, FieldValue::LongUInt(v))),
        b'l' => i64_(rest).map(|(r, v)| (r, FieldValue::LongLongInt(v))),
        b'f' => f32_(rest).map(|(r, v)| (r, FieldValue::Float(v))),
        b'd' => f64_(rest).map(|(r, v)| (r, FieldValue::Double(v))),
        b'D' => {
            let (r, scale) = octet(rest)?;
            let (r, value) = long(r)?;
            Ok((r, FieldValue::Decimal(Decimal { scale, value })))
        }
        b'S' => longstr(src, rest).map(|(r, v)| (r, FieldValue::LongString(v))),
        b'x' => {
            let (r, len) = length32(rest, "byte array")?;
            take_bytes(src, r, u64::from(len), "byte array")
                .map(|(r, v)| (r, FieldValue::ByteArray(v)))
        }
        b'A' => array(src, rest, depth).map(|(r, v)| (r, FieldValue::Array(v))),
        b'T' => longlong(rest).map(|(r, v)| (r, FieldValue::Timestamp(v))),
        b'F' => table(src, rest, depth).map(|(r, v)| (r, FieldValue::Table(v))),
        b'V' => Ok((rest, FieldValue::Void)),
        tag => Err(fail(i, Problem::UnknownFieldType { tag })),
    }
}
