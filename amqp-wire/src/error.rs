//! Decode errors: what was wrong with the bytes, and where.

use crate::frame::FrameType;

/// A frame or value could not be decoded.
///
/// Every malformed input a peer (or a fuzzer) can send ends here: the
/// decoder never panics, never allocates from an unchecked length and
/// never loops without consuming input. A connection that gets one of
/// these should close with [`ReplyCode::FRAME_ERROR`] or
/// [`ReplyCode::SYNTAX_ERROR`] (see [`DecodeError::reply_code`]).
///
/// ```
/// use amqp_wire::{DecodeError, Frame};
/// use bytes::BytesMut;
///
/// // A heartbeat frame whose frame-end octet is wrong.
/// let mut buf = BytesMut::from(&[8u8, 0, 0, 0, 0, 0, 0, 0x00][..]);
/// let err = Frame::decode(&mut buf, 4096).unwrap_err();
/// assert!(matches!(err, DecodeError::BadFrameEnd { found: 0x00, .. }));
/// ```
///
/// [`ReplyCode::FRAME_ERROR`]: crate::ReplyCode::FRAME_ERROR
/// [`ReplyCode::SYNTAX_ERROR`]: crate::ReplyCode::SYNTAX_ERROR
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame header announces a payload larger than the negotiated
    /// `frame_max` allows.
    #[error(
        "{frame_type} frame on channel {channel} announces {size} payload bytes, \
         more than the negotiated frame_max of {frame_max} bytes allows \
         (frame_max counts the 8 bytes of frame header and end too)"
    )]
    FrameTooLarge {
        /// The frame's type.
        frame_type: FrameType,
        /// The frame's channel.
        channel: u16,
        /// Payload size from the frame header.
        size: u32,
        /// The negotiated limit, header and frame-end included.
        frame_max: u32,
    },
    /// The octet after the payload is not the frame-end octet `0xCE`.
    #[error(
        "{frame_type} frame on channel {channel} of {size} payload bytes ends with \
         {found:#04x} instead of the frame-end octet 0xce: the stream is out of sync"
    )]
    BadFrameEnd {
        /// The frame's type.
        frame_type: FrameType,
        /// The frame's channel.
        channel: u16,
        /// Payload size from the frame header.
        size: u32,
        /// The octet found where 0xCE belongs.
        found: u8,
    },
    /// The frame-type octet is none of method (1), header (2), body (3),
    /// heartbeat (8).
    #[error("unknown frame type {frame_type} on channel {channel}")]
    UnknownFrameType {
        /// The frame-type octet.
        frame_type: u8,
        /// The channel from the frame header.
        channel: u16,
    },
    /// The peer sent `AMQP` followed by a version other than 0-9-1, which
    /// is how a server refuses the protocol version a client asked for.
    #[error(
        "the peer answered with protocol header AMQP {0:?}: it does not speak \
         AMQP 0-9-1 (is this an AMQP 1.0 or 0-8 server?)"
    )]
    UnsupportedProtocol(crate::frame::ProtocolHeader),
    /// Bytes that start like a protocol header (`AMQP`) but are not one.
    #[error("malformed protocol header {0:02x?}")]
    BadProtocolHeader([u8; 8]),
    /// A heartbeat frame on a channel other than 0, or with a payload.
    #[error("heartbeat frame on channel {channel} with {size} payload bytes: heartbeats belong on channel 0 and are empty")]
    BadHeartbeat {
        /// The channel from the frame header.
        channel: u16,
        /// Payload size from the frame header.
        size: u32,
    },
    /// `connection.tune` or `tune-ok` proposes a `frame_max` below the
    /// protocol minimum of 4096 bytes (0 means "no limit" and is allowed).
    #[error("{method} proposes frame_max {frame_max}, below the protocol minimum of 4096 bytes")]
    FrameMaxBelowMinimum {
        /// `connection.tune` or `connection.tune-ok`.
        method: &'static str,
        /// The proposed value.
        frame_max: u32,
    },
    /// The payload of a method or content header frame is malformed.
    #[error("malformed {context} on channel {channel}, at byte {offset} of the frame payload: {problem}")]
    Malformed {
        /// What was being decoded: a method name such as `basic.deliver`,
        /// `method frame` before the ids are known, or `content header`.
        context: &'static str,
        /// The frame's channel.
        channel: u16,
        /// Offset in the frame payload where the problem was found.
        offset: usize,
        /// What was wrong.
        problem: Problem,
    },
}

impl DecodeError {
    /// The reply code a connection should close with after this error:
    /// `FRAME_ERROR` (501) for framing problems, `SYNTAX_ERROR` (502) for
    /// malformed method payloads, `COMMAND_INVALID` (503) for unknown
    /// methods.
    pub fn reply_code(&self) -> crate::ReplyCode {
        use crate::ReplyCode;
        match self {
            DecodeError::Malformed {
                problem: Problem::UnknownMethod { .. },
                ..
            } => ReplyCode::COMMAND_INVALID,
            DecodeError::Malformed { .. } | DecodeError::FrameMaxBelowMinimum { .. } => {
                ReplyCode::SYNTAX_ERROR
            }
            _ => ReplyCode::FRAME_ERROR,
        }
    }
}

/// What was wrong inside a frame payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// A value needs more bytes than the frame has left.
    #[error("{what} needs {needed} bytes but only {available} are left in the frame")]
    Truncated {
        /// The kind of value: `shortstr`, `long`, `field table`, ...
        what: &'static str,
        /// Bytes the value needs.
        needed: u64,
        /// Bytes left in the frame (or in the enclosing table or array).
        available: usize,
    },
    /// A length that is negative when read as the signed 32-bit integer
    /// other implementations use.
    #[error("{what} length {length:#010x} is negative as a signed 32-bit length")]
    NegativeLength {
        /// The kind of value.
        what: &'static str,
        /// The raw length.
        length: u32,
    },
    /// A short string (names, tags, reply texts, table keys) that is not
    /// valid UTF-8.
    #[error("{what} is not valid UTF-8")]
    InvalidUtf8 {
        /// The kind of value.
        what: &'static str,
    },
    /// A class/method id pair that AMQP 0-9-1 with RabbitMQ's extensions
    /// does not define.
    #[error("unknown method: class {class_id}, method {method_id}")]
    UnknownMethod {
        /// The class id.
        class_id: u16,
        /// The method id.
        method_id: u16,
    },
    /// A content header for a class that carries no content (only
    /// `basic`, class 60, does).
    #[error("content header for class {class_id}, but only basic (60) carries content")]
    UnknownContentClass {
        /// The class id.
        class_id: u16,
    },
    /// A content header whose weight field is not zero.
    #[error("content header weight is {weight}, must be 0")]
    NonZeroWeight {
        /// The weight found.
        weight: u16,
    },
    /// A property-flags word with bits that name no property (or the
    /// continuation bit, which `basic` never needs).
    #[error("property flags {flags:#06x} set bits that name no basic property")]
    UnknownPropertyFlags {
        /// The flags word.
        flags: u16,
    },
    /// A field value with a type tag outside `t b B s u I i l f d D S x A T F V`.
    #[error("unknown field value type {tag:#04x} ({})", char::from(*tag).escape_default())]
    UnknownFieldType {
        /// The type octet.
        tag: u8,
    },
    /// Field tables and arrays nested deeper than [`MAX_NESTING_DEPTH`].
    ///
    /// [`MAX_NESTING_DEPTH`]: crate::MAX_NESTING_DEPTH
    #[error("field tables and arrays nested deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// Bytes left over after the last argument of a method or property.
    #[error("{count} unexpected bytes after the last field")]
    TrailingBytes {
        /// How many bytes were left.
        count: usize,
    },
}
