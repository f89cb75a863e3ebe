//! # amqp-wire
//!
//! A zero-copy codec for AMQP 0-9-1 with RabbitMQ's extensions: every
//! method, content headers with all 14 basic properties, field tables with
//! every value type RabbitMQ sends and accepts, and the frames that carry
//! them. No I/O and no async runtime: feed it bytes, take frames out, or
//! encode frames into any [`BufMut`](bytes::BufMut).
//!
//! ```
//! use amqp_wire::{encode_publish, BasicProperties, BasicPublish, Frame, Method, ShortString};
//! use bytes::BytesMut;
//!
//! // Encode a publish: method, content header and body frames, one buffer.
//! let publish = BasicPublish {
//!     routing_key: ShortString::from_static("tasks"),
//!     ..Default::default()
//! };
//! let mut buf = BytesMut::new();
//! encode_publish(&mut buf, 1, &publish, &BasicProperties::default(), b"hello", 131_072).unwrap();
//!
//! // Decode it back, frame by frame; `Ok(None)` would mean "need more bytes".
//! let Some(Frame::Method { channel: 1, method: Method::BasicPublish(p) }) = Frame::decode(&mut buf, 131_072)? else {
//!     panic!("expected basic.publish");
//! };
//! assert_eq!(p.routing_key, "tasks");
//! let Some(Frame::Header { header, .. }) = Frame::decode(&mut buf, 131_072)? else { panic!() };
//! assert_eq!(header.body_size, 5);
//! let Some(Frame::Body { payload, .. }) = Frame::decode(&mut buf, 131_072)? else { panic!() };
//! assert_eq!(&payload[..], b"hello");
//! assert_eq!(Frame::decode(&mut buf, 131_072)?, None);
//! # Ok::<(), amqp_wire::DecodeError>(())
//! ```
//!
//! ## Zero copy
//! [`Frame::decode`] splits each frame off the read buffer and freezes it;
//! body payloads, long strings, byte arrays and short strings are
//! [`Bytes`](bytes::Bytes) slices of that memory.
//!
//! ## Bad input
//! Malformed input gives a [`DecodeError`] that names what was wrong and
//! where; the decoder does not panic, allocates nothing from unchecked
//! lengths, and nests tables at most [`MAX_NESTING_DEPTH`] deep.

#![deny(missing_docs)]
#![deny(unsafe_code)]

mod content;
mod error;
mod frame;
pub mod generated;
mod parse;
mod put;
mod request;
mod types;

pub use content::{
    body_frame_capacity, check_publish_fits, content_len, encode_content, encode_publish,
    encode_publish_into, encode_publish_segments, publish_len, BodyAssembler, BodyError,
    ContentHeader, FrameTooLarge, BASIC_CLASS_ID,
};
pub use error::{DecodeError, Problem};
pub use frame::{
    encode_method, Decoded, Frame, FrameType, PartialFrame, ProtocolHeader, FRAME_HEADER_LEN,
    FRAME_OVERHEAD,
};
pub use generated::constants;
pub use generated::*;
pub use request::Request;
pub use types::{
    Decimal, FieldTable, FieldValue, InvalidShortString, LongString, ShortString,
    ShortStringTooLong,
};

/// How deep field tables and arrays may nest inside one another; deeper
/// input is refused with [`Problem::TooDeep`].
pub const MAX_NESTING_DEPTH: usize = 32;

/// Decodes a field table (4-byte length prefix and entries) from `bytes`,
/// which must hold exactly one table. Strings in the result are slices of
/// `bytes`.
///
/// ```
/// use amqp_wire::{decode_field_table, encode_field_table, FieldTable, ShortString};
/// let mut table = FieldTable::new();
/// table.insert(ShortString::from_static("x-priority"), 5i32);
/// let mut buf = bytes::BytesMut::new();
/// encode_field_table(&mut buf, &table);
/// assert_eq!(decode_field_table(&buf.freeze()).unwrap(), table);
/// ```
pub fn decode_field_table(bytes: &bytes::Bytes) -> Result<FieldTable, DecodeError> {
    parse::table(bytes, bytes, 0)
        .and_then(|(rest, table)| frame::expect_end(rest).map(|()| table))
        .map_err(|e| frame::malformed("field table", 0, bytes, e))
}

/// Writes a field table with its 4-byte length prefix.
pub fn encode_field_table<B: bytes::BufMut>(buf: &mut B, table: &FieldTable) {
    put::table(buf, table);
}

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
