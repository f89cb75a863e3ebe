//! AMQP's data types: short and long strings, decimals, field values,
//! field tables.

use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

/// A `shortstr`: UTF-8 text of at most 255 bytes, such as a queue name,
/// routing key, consumer tag or table key.
///
/// Backed by [`Bytes`]: a decoded short string is a slice of the read
/// buffer, and cloning it only bumps a reference count. It dereferences to
/// `&str`.
///
/// ```
/// use amqp_wire::ShortString;
/// let queue = ShortString::try_from("tasks").unwrap();
/// assert_eq!(&*queue, "tasks");
/// assert!(ShortString::try_from("x".repeat(256)).is_err());
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShortString(Bytes);

/// The text given for a [`ShortString`] is longer than 255 bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("short string of {len} bytes is longer than the 255 bytes AMQP allows (names, routing keys, tags and table keys are short strings)")]
pub struct ShortStringTooLong {
    /// The length of the text that was refused.
    pub len: usize,
}

impl ShortString {
    /// The longest short string, in bytes.
    pub const MAX_LEN: usize = 255;

    /// A short string from a static string.
    ///
    /// # Panics
    /// When `s` is longer than 255 bytes: meant for literals, where that is
    /// a bug in the program. Use `try_from` for anything else.
    pub const fn from_static(s: &'static str) -> Self {
        assert!(
            s.len() <= Self::MAX_LEN,
            "ShortString::from_static: longer than 255 bytes"
        );
        ShortString(Bytes::from_static(s.as_bytes()))
    }

    /// Wraps bytes that are already known to be at most 255 bytes long,
    /// if they are valid UTF-8.
    pub(crate) fn from_utf8(bytes: Bytes) -> Option<Self> {
        std::str::from_utf8(&bytes).ok()?;
        Some(ShortString(bytes))
    }

    /// The text.
    #[allow(unsafe_code)]
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor checks that the bytes are UTF-8
        // (`from_static` and the `&str`/`String` conversions take a str,
        // `from_utf8` and `TryFrom<Bytes>` validate), and the bytes are
        // immutable. Skipping a second validation on each access keeps
        // names and routing keys zero-cost to read on the deliver path.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// The UTF-8 bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The underlying buffer.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl Deref for ShortString {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ShortString {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for ShortString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ShortString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for ShortString {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ShortString {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl TryFrom<&str> for ShortString {
    type Error = ShortStringTooLong;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        if s.len() > Self::MAX_LEN {
            return Err(ShortStringTooLong { len: s.len() });
        }
        Ok(ShortString(Bytes::copy_from_slice(s.as_bytes())))
    }
}

impl TryFrom<String> for ShortString {
    type Error = ShortStringTooLong;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s.len() > Self::MAX_LEN {
            return Err(ShortStringTooLong { len: s.len() });
        }
        Ok(ShortString(Bytes::from(s)))
    }
}

/// Why bytes could not become a [`ShortString`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidShortString {
    /// More than 255 bytes.
    #[error(transparent)]
    TooLong(#[from] ShortStringTooLong),
    /// Not UTF-8.
    #[error("short string is not valid UTF-8")]
    NotUtf8,
}

impl TryFrom<Bytes> for ShortString {
    type Error = InvalidShortString;
    fn try_from(bytes: Bytes) -> Result<Self, Self::Error> {
        if bytes.len() > Self::MAX_LEN {
            return Err(ShortStringTooLong { len: bytes.len() }.into());
        }
        ShortString::from_utf8(bytes).ok_or(InvalidShortString::NotUtf8)
    }
}

/// A `longstr`: bytes with a 32-bit length (text or binary).
///
/// Backed by [`Bytes`]: decoding slices the read buffer.
///
/// ```
/// use amqp_wire::LongString;
/// let s = LongString::from("PLAIN AMQPLAIN");
/// assert_eq!(s.to_str(), Some("PLAIN AMQPLAIN"));
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LongString(Bytes);

impl LongString {
    /// A long string from static bytes.
    pub const fn from_static(bytes: &'static [u8]) -> Self {
        LongString(Bytes::from_static(bytes))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes as text, if they are UTF-8.
    pub fn to_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The underlying buffer.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl fmt::Debug for LongString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_str() {
            Some(s) => fmt::Debug::fmt(s, f),
            None => write!(f, "b{:?}", self.0),
        }
    }
}

impl From<Bytes> for LongString {
    fn from(bytes: Bytes) -> Self {
        LongString(bytes)
    }
}

impl From<&str> for LongString {
    fn from(s: &str) -> Self {
        LongString(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for LongString {
    fn from(s: String) -> Self {
        LongString(Bytes::from(s))
    }
}

impl From<Vec<u8>> for LongString {
    fn from(v: Vec<u8>) -> Self {
        LongString(Bytes::from(v))
    }
}

/// A decimal field value: `value` × 10<sup>−`scale`</sup>.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decimal {
    /// Number of decimal digits after the point.
    pub scale: u8,
    /// The unscaled value.
    pub value: u32,
}

/// A value in a field table or array, with every type RabbitMQ sends and
/// accepts.
///
/// The variant names follow RabbitMQ's; the wire tag of each is in its
/// doc. Floats compare by their bits, so a decoded NaN equals the NaN
/// that was encoded.
///
/// ```
/// use amqp_wire::FieldValue;
/// assert_eq!(FieldValue::from(42i32), FieldValue::LongInt(42));
/// assert_eq!(FieldValue::from("text").tag(), b'S');
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum FieldValue {
    /// `t`: boolean.
    Boolean(bool),
    /// `b`: signed 8-bit integer.
    ShortShortInt(i8),
    /// `B`: unsigned 8-bit integer.
    ShortShortUInt(u8),
    /// `s`: signed 16-bit integer.
    ShortInt(i16),
    /// `u`: unsigned 16-bit integer.
    ShortUInt(u16),
    /// `I`: signed 32-bit integer.
    LongInt(i32),
    /// `i`: unsigned 32-bit integer.
    LongUInt(u32),
    /// `l`: signed 64-bit integer.
    LongLongInt(i64),
    /// `f`: 32-bit float.
    Float(f32),
    /// `d`: 64-bit float.
    Double(f64),
    /// `D`: decimal.
    Decimal(Decimal),
    /// `S`: long string.
    LongString(LongString),
    /// `x`: byte array.
    ByteArray(Bytes),
    /// `A`: array of values.
    Array(Vec<FieldValue>),
    /// `T`: timestamp, seconds since the Unix epoch.
    Timestamp(u64),
    /// `F`: nested table.
    Table(FieldTable),
    /// `V`: no value.
    Void,
}

impl FieldValue {
    /// The type tag octet on the wire.
    pub fn tag(&self) -> u8 {
        match self {
            FieldValue::Boolean(_) => b't',
            FieldValue::ShortShortInt(_) => b'b',
            FieldValue::ShortShortUInt(_) => b'B',
            FieldValue::ShortInt(_) => b's',
            FieldValue::ShortUInt(_) => b'u',
            FieldValue::LongInt(_) => b'I',
            FieldValue::LongUInt(_) => b'i',
            FieldValue::LongLongInt(_) => b'l',
            FieldValue::Float(_) => b'f',
            FieldValue::Double(_) => b'd',
            FieldValue::Decimal(_) => b'D',
            FieldValue::LongString(_) => b'S',
            FieldValue::ByteArray(_) => b'x',
            FieldValue::Array(_) => b'A',
            FieldValue::Timestamp(_) => b'T',
            FieldValue::Table(_) => b'F',
            FieldValue::Void => b'V',
        }
    }

    /// Encoded length: tag octet and value.
    pub fn encoded_len(&self) -> usize {
        1 + match self {
            FieldValue::Boolean(_)
            | FieldValue::ShortShortInt(_)
            | FieldValue::ShortShortUInt(_) => 1,
            FieldValue::ShortInt(_) | FieldValue::ShortUInt(_) => 2,
            FieldValue::LongInt(_) | FieldValue::LongUInt(_) | FieldValue::Float(_) => 4,
            FieldValue::LongLongInt(_) | FieldValue::Double(_) | FieldValue::Timestamp(_) => 8,
            FieldValue::Decimal(_) => 5,
            FieldValue::LongString(s) => 4 + s.len(),
            FieldValue::ByteArray(b) => 4 + b.len(),
            FieldValue::Array(values) => 4 + crate::put::array_len(values),
            FieldValue::Table(t) => 4 + t.encoded_len(),
            FieldValue::Void => 0,
        }
    }

    /// The text of a long string value, if this is one and it is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            FieldValue::LongString(s) => s.to_str(),
            _ => None,
        }
    }

    /// The value of any integer type that fits in an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            FieldValue::ShortShortInt(v) => Some(v.into()),
            FieldValue::ShortShortUInt(v) => Some(v.into()),
            FieldValue::ShortInt(v) => Some(v.into()),
            FieldValue::ShortUInt(v) => Some(v.into()),
            FieldValue::LongInt(v) => Some(v.into()),
            FieldValue::LongUInt(v) => Some(v.into()),
            FieldValue::LongLongInt(v) => Some(v),
            _ => None,
        }
    }

    /// The value of a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            FieldValue::Boolean(v) => Some(v),
            _ => None,
        }
    }
}

impl PartialEq for FieldValue {
    fn eq(&self, other: &Self) -> bool {
        use FieldValue::*;
        match (self, other) {
            (Boolean(a), Boolean(b)) => a == b,
            (ShortShortInt(a), ShortShortInt(b)) => a == b,
            (ShortShortUInt(a), ShortShortUInt(b)) => a == b,
            (ShortInt(a), ShortInt(b)) => a == b,
            (ShortUInt(a), ShortUInt(b)) => a == b,
            (LongInt(a), LongInt(b)) => a == b,
            (LongUInt(a), LongUInt(b)) => a == b,
            (LongLongInt(a), LongLongInt(b)) => a == b,
            (Float(a), Float(b)) => a.to_bits() == b.to_bits(),
            (Double(a), Double(b)) => a.to_bits() == b.to_bits(),
            (Decimal(a), Decimal(b)) => a == b,
            (LongString(a), LongString(b)) => a == b,
            (ByteArray(a), ByteArray(b)) => a == b,
            (Array(a), Array(b)) => a == b,
            (Timestamp(a), Timestamp(b)) => a == b,
            (Table(a), Table(b)) => a == b,
            (Void, Void) => true,
            _ => false,
        }
    }
}

macro_rules! field_value_from {
    ($($ty:ty => $variant:ident),* $(,)?) => {
        $(impl From<$ty> for FieldValue {
            fn from(v: $ty) -> Self {
                FieldValue::$variant(v.into())
            }
        })*
    };
}

field_value_from! {
    bool => Boolean,
    i8 => ShortShortInt,
    u8 => ShortShortUInt,
    i16 => ShortInt,
    u16 => ShortUInt,
    i32 => LongInt,
    u32 => LongUInt,
    i64 => LongLongInt,
    f32 => Float,
    f64 => Double,
    Decimal => Decimal,
    LongString => LongString,
    &str => LongString,
    String => LongString,
    Vec<FieldValue> => Array,
    FieldTable => Table,
}

/// A field table: an ordered list of named values.
///
/// Keeps the order (and any repeated keys) of the wire, so a decoded table
/// re-encodes byte for byte. [`insert`](FieldTable::insert) replaces an
/// existing key in place.
///
/// ```
/// use amqp_wire::{FieldTable, FieldValue, ShortString};
/// let mut args = FieldTable::new();
/// args.insert(ShortString::from_static("x-max-length"), 10i32);
/// args.insert(ShortString::from_static("x-overflow"), "reject-publish");
/// assert_eq!(args.get("x-max-length"), Some(&FieldValue::LongInt(10)));
/// assert_eq!(args.len(), 2);
/// ```
#[derive(Clone, Default, PartialEq)]
pub struct FieldTable {
    entries: Vec<(ShortString, FieldValue)>,
}

impl FieldTable {
    /// An empty table.
    pub const fn new() -> Self {
        FieldTable {
            entries: Vec::new(),
        }
    }

    /// Sets `key` to `value`: replaces the first entry with that key, or
    /// appends one.
    pub fn insert(&mut self, key: ShortString, value: impl Into<FieldValue>) {
        let value = value.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(entry) => entry.1 = value,
            None => self.entries.push((key, value)),
        }
    }

    /// Appends an entry without looking for an existing key (decoding keeps
    /// the wire's entries as they are).
    pub fn push(&mut self, key: ShortString, value: FieldValue) {
        self.entries.push((key, value));
    }

    /// The value of the first entry named `key`.
    pub fn get(&self, key: &str) -> Option<&FieldValue> {
        self.entries
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v)
    }

    /// Removes every entry named `key` and returns the first one's value.
    pub fn remove(&mut self, key: &str) -> Option<FieldValue> {
        let position = self.entries.iter().position(|(k, _)| k.as_str() == key)?;
        let (_, value) = self.entries.remove(position);
        self.entries.retain(|(k, _)| k.as_str() != key);
        Some(value)
    }

    /// True when an entry is named `key`.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in wire order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&ShortString, &FieldValue)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Encoded length of the entries (without the 4-byte length prefix).
    pub fn encoded_len(&self) -> usize {
        self.entries
            .iter()
            .map(|(k, v)| 1 + k.len() + v.encoded_len())
            .sum()
    }
}

impl fmt::Debug for FieldTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl FromIterator<(ShortString, FieldValue)> for FieldTable {
    fn from_iter<I: IntoIterator<Item = (ShortString, FieldValue)>>(iter: I) -> Self {
        FieldTable {
            entries: iter.into_iter().collect(),
        }
    }
}

impl IntoIterator for FieldTable {
    type Item = (ShortString, FieldValue);
    type IntoIter = std::vec::IntoIter<(ShortString, FieldValue)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<'a> IntoIterator for &'a FieldTable {
    type Item = &'a (ShortString, FieldValue);
    type IntoIter = std::slice::Iter<'a, (ShortString, FieldValue)>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}
