//! Frames: the protocol header, method, content header, body and
//! heartbeat frames, with the 7-byte frame header and the frame-end octet.
//!
//! ```text
//! +------+---------+---------+ +-------------+ +-----------+
//! | type | channel |  size   | |   payload   | | frame-end |
//! +------+---------+---------+ +-------------+ +-----------+
//!  octet   short      long      'size' octets    octet 0xCE
//! ```

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::constants::{
    FRAME_BODY, FRAME_END, FRAME_HEADER, FRAME_HEARTBEAT, FRAME_METHOD, FRAME_MIN_SIZE,
};
use crate::content::ContentHeader;
use crate::error::{DecodeError, Problem};
use crate::generated::Method;
use crate::parse::{self, WireError};

/// Bytes of the frame header: type, channel, payload size.
pub const FRAME_HEADER_LEN: usize = 7;

/// Bytes a frame adds around its payload: the header and the frame-end octet.
pub const FRAME_OVERHEAD: usize = FRAME_HEADER_LEN + 1;

/// The kind of a frame, from its type octet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameType {
    /// 1: a method.
    Method,
    /// 2: a content header.
    Header,
    /// 3: a piece of content body.
    Body,
    /// 8: a heartbeat.
    Heartbeat,
}

impl FrameType {
    /// The type octet.
    pub fn octet(self) -> u8 {
        match self {
            FrameType::Method => FRAME_METHOD,
            FrameType::Header => FRAME_HEADER,
            FrameType::Body => FRAME_BODY,
            FrameType::Heartbeat => FRAME_HEARTBEAT,
        }
    }

    fn from_octet(octet: u8) -> Option<Self> {
        match octet {
            FRAME_METHOD => Some(FrameType::Method),
            FRAME_HEADER => Some(FrameType::Header),
            FRAME_BODY => Some(FrameType::Body),
            FRAME_HEARTBEAT => Some(FrameType::Heartbeat),
            _ => None,
        }
    }
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameType::Method => "method",
            FrameType::Header => "content header",
            FrameType::Body => "body",
            FrameType::Heartbeat => "heartbeat",
        })
    }
}

/// The protocol header `AMQP` 0 0 9 1 a client sends first, and a server
/// sends back (with the version it speaks) to refuse another version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProtocolHeader {
    /// Protocol id octet (0 for AMQP 0-9-1).
    pub protocol_id: u8,
    /// Major version.
    pub major: u8,
    /// Minor version.
    pub minor: u8,
    /// Revision.
    pub revision: u8,
}

impl ProtocolHeader {
    /// AMQP 0-9-1: the bytes `AMQP\x00\x00\x09\x01`.
    pub const AMQP_0_9_1: ProtocolHeader = ProtocolHeader {
        protocol_id: 0,
        major: 0,
        minor: 9,
        revision: 1,
    };

    /// The 8 bytes on the wire.
    pub fn to_bytes(self) -> [u8; 8] {
        [
            b'A',
            b'M',
            b'Q',
            b'P',
            self.protocol_id,
            self.major,
            self.minor,
            self.revision,
        ]
    }
}

/// One AMQP frame.
///
/// ```
/// use amqp_wire::{BasicAck, Frame};
/// use bytes::BytesMut;
///
/// let frame = Frame::Method { channel: 1, method: BasicAck { delivery_tag: 3, multiple: false }.into() };
/// let mut buf = BytesMut::new();
/// frame.encode(&mut buf);
/// assert_eq!(buf.len(), frame.encoded_len());
/// assert_eq!(Frame::decode(&mut buf, 131_072).unwrap(), Some(frame));
/// assert!(buf.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// The protocol header (not a frame on the wire, but it comes first on
    /// the same byte stream).
    ProtocolHeader(ProtocolHeader),
    /// A method frame.
    Method {
        /// The channel; 0 is the connection itself.
        channel: u16,
        /// The method and its arguments.
        method: Method,
    },
    /// A content header frame.
    Header {
        /// The channel.
        channel: u16,
        /// Class, body size and properties.
        header: ContentHeader,
    },
    /// A body frame: a slice of the read buffer, never copied.
    Body {
        /// The channel.
        channel: u16,
        /// This frame's piece of the message body.
        payload: Bytes,
    },
    /// A heartbeat frame (always on channel 0).
    Heartbeat,
}

/// What [`Frame::decode_partial`] found at the front of a buffer.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// A whole frame, removed from the buffer.
    Frame(Frame),
    /// The header of a frame whose payload has not all arrived; nothing
    /// was removed.
    Partial(PartialFrame),
    /// Not a whole frame header yet.
    Nothing,
}

/// The header of a frame that has not all arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartialFrame {
    /// The frame's type.
    pub frame_type: FrameType,
    /// The frame's channel.
    pub channel: u16,
    /// Its payload size (within `frame_max`: checked).
    pub size: u32,
}

impl PartialFrame {
    /// Bytes the whole frame takes: header, payload and frame end.
    pub fn encoded_len(&self) -> usize {
        self.size as usize + FRAME_OVERHEAD
    }
}

impl Frame {
    /// Decodes one frame from the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` does not yet hold a whole frame (after
    /// reserving room for the rest of it), `Ok(Some(frame))` after removing
    /// the frame's bytes from `buf`, or an error for malformed input; the
    /// stream cannot be resynchronised after an error, so the connection
    /// must be closed.
    ///
    /// `frame_max` is the negotiated maximum frame size, header and
    /// frame-end octet included. A value below the protocol minimum of 4096
    /// (including 0, "no limit") is raised to 4096 before tuning is done,
    /// since every peer must accept frames of that size; pass the
    /// negotiated value afterwards. Frames larger than `frame_max` are
    /// refused as soon as their header is read, before their payload is
    /// buffered.
    ///
    /// Body payloads, long strings and byte arrays in the result are slices
    /// of `buf`'s memory: nothing is copied.
    pub fn decode(buf: &mut BytesMut, frame_max: u32) -> Result<Option<Frame>, DecodeError> {
        match Self::decode_partial(buf, frame_max)? {
            Decoded::Frame(frame) => Ok(Some(frame)),
            Decoded::Partial(partial) => {
                buf.reserve(partial.encoded_len() - buf.len());
                Ok(None)
            }
            Decoded::Nothing => Ok(None),
        }
    }

    /// [`Frame::decode`], telling what it knows of a frame that has not
    /// all arrived, and reserving nothing: for a reader that may read the
    /// rest of a body frame's payload elsewhere (straight into the buffer
    /// its message is joined in).
    ///
    /// ```
    /// use amqp_wire::{Decoded, Frame, FrameType};
    /// use bytes::BytesMut;
    ///
    /// // The header of a body frame of 5 bytes on channel 3, 2 bytes of it.
    /// let mut buf = BytesMut::from(&[3, 0, 3, 0, 0, 0, 5, b'h', b'e'][..]);
    /// let Decoded::Partial(partial) = Frame::decode_partial(&mut buf, 4096).unwrap() else {
    ///     panic!("a partial frame");
    /// };
    /// assert_eq!((partial.frame_type, partial.channel, partial.size), (FrameType::Body, 3, 5));
    /// assert_eq!(partial.encoded_len(), 13);
    /// assert_eq!(buf.len(), 9, "nothing removed");
    /// ```
    #[inline]
    pub fn decode_partial(buf: &mut BytesMut, frame_max: u32) -> Result<Decoded, DecodeError> {
        if buf.is_empty() {
            return Ok(Decoded::Nothing);
        }
        if buf[0] == b'A' {
            return Ok(decode_protocol_header(buf)?.map_or(Decoded::Nothing, Decoded::Frame));
        }
        if buf.len() < FRAME_HEADER_LEN {
            return Ok(Decoded::Nothing);
        }
        let type_octet = buf[0];
        let channel = u16::from_be_bytes([buf[1], buf[2]]);
        let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]);
        let frame_type =
            FrameType::from_octet(type_octet).ok_or(DecodeError::UnknownFrameType {
                frame_type: type_octet,
                channel,
            })?;
        let frame_max = frame_max.max(FRAME_MIN_SIZE);
        if u64::from(size) + FRAME_OVERHEAD as u64 > u64::from(frame_max) {
            return Err(DecodeError::FrameTooLarge {
                frame_type,
                channel,
                size,
                frame_max,
            });
        }
        // Fits in usize: size + 8 <= frame_max <= u32::MAX.
        let total = size as usize + FRAME_OVERHEAD;
        if buf.len() < total {
            return Ok(Decoded::Partial(PartialFrame {
                frame_type,
                channel,
                size,
            }));
        }
        let found = buf[total - 1];
        if found != FRAME_END {
            return Err(DecodeError::BadFrameEnd {
                frame_type,
                channel,
                size,
                found,
            });
        }
        let mut frame = buf.split_to(total);
        frame.advance(FRAME_HEADER_LEN);
        frame.truncate(size as usize);
        let payload = frame.freeze();
        let frame = match frame_type {
            FrameType::Method => Frame::Method {
                channel,
                method: decode_method(channel, &payload)?,
            },
            FrameType::Header => Frame::Header {
                channel,
                header: ContentHeader::decode(channel, &payload)?,
            },
            FrameType::Body => Frame::Body { channel, payload },
            FrameType::Heartbeat if channel == 0 && size == 0 => Frame::Heartbeat,
            FrameType::Heartbeat => return Err(DecodeError::BadHeartbeat { channel, size }),
        };
        Ok(Decoded::Frame(frame))
    }

    /// The frame's channel (0 for heartbeats and the protocol header).
    pub fn channel(&self) -> u16 {
        match self {
            Frame::Method { channel, .. }
            | Frame::Header { channel, .. }
            | Frame::Body { channel, .. } => *channel,
            Frame::ProtocolHeader(_) | Frame::Heartbeat => 0,
        }
    }

    /// Bytes the encoded frame takes.
    pub fn encoded_len(&self) -> usize {
        match self {
            Frame::ProtocolHeader(_) => 8,
            Frame::Method { method, .. } => FRAME_OVERHEAD + method.encoded_len(),
            Frame::Header { header, .. } => FRAME_OVERHEAD + header.encoded_len(),
            Frame::Body { payload, .. } => FRAME_OVERHEAD + payload.len(),
            Frame::Heartbeat => FRAME_OVERHEAD,
        }
    }

    /// Writes the frame into `buf`.
    ///
    /// The caller keeps frames within the negotiated `frame_max`: a method
    /// frame cannot be split, and [`encode_content`](crate::encode_content)
    /// splits bodies.
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        match self {
            Frame::ProtocolHeader(header) => buf.put_slice(&header.to_bytes()),
            Frame::Method { channel, method } => encode_method(buf, *channel, method),
            Frame::Header { channel, header } => {
                put_frame_header(buf, FRAME_HEADER, *channel, header.encoded_len());
                header.encode(buf);
                buf.put_u8(FRAME_END);
            }
            Frame::Body { channel, payload } => encode_body(buf, *channel, payload),
            Frame::Heartbeat => {
                put_frame_header(buf, FRAME_HEARTBEAT, 0, 0);
                buf.put_u8(FRAME_END);
            }
        }
    }
}

impl From<ProtocolHeader> for Frame {
    fn from(header: ProtocolHeader) -> Self {
        Frame::ProtocolHeader(header)
    }
}

/// Writes the 7-byte frame header.
pub(crate) fn put_frame_header<B: BufMut>(buf: &mut B, frame_type: u8, channel: u16, size: usize) {
    buf.put_u8(frame_type);
    buf.put_u16(channel);
    buf.put_u32(size as u32);
}

/// Writes a whole method frame.
pub fn encode_method<B: BufMut>(buf: &mut B, channel: u16, method: &Method) {
    put_frame_header(buf, FRAME_METHOD, channel, method.encoded_len());
    method.encode(buf);
    buf.put_u8(FRAME_END);
}

/// Writes a whole body frame carrying `payload`.
pub(crate) fn encode_body<B: BufMut>(buf: &mut B, channel: u16, payload: &[u8]) {
    put_frame_header(buf, FRAME_BODY, channel, payload.len());
    buf.put_slice(payload);
    buf.put_u8(FRAME_END);
}

fn decode_protocol_header(buf: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
    let known = buf.len().min(4);
    if buf[..known] != b"AMQP"[..known] {
        return Err(DecodeError::UnknownFrameType {
            frame_type: b'A',
            channel: 0,
        });
    }
    if buf.len() < 8 {
        return Ok(None);
    }
    let bytes = buf.split_to(8);
    let header = ProtocolHeader {
        protocol_id: bytes[4],
        major: bytes[5],
        minor: bytes[6],
        revision: bytes[7],
    };
    Ok(Some(Frame::ProtocolHeader(header)))
}

/// Turns a parse failure into a [`DecodeError`] with its offset in `payload`.
pub(crate) fn malformed(
    context: &'static str,
    channel: u16,
    payload: &[u8],
    err: nom::Err<WireError>,
) -> DecodeError {
    let err = match err {
        nom::Err::Error(e) | nom::Err::Failure(e) => e,
        // Only complete parsers are used, which never ask for more input.
        nom::Err::Incomplete(_) => WireError {
            at: payload.as_ptr() as usize + payload.len(),
            problem: Problem::Truncated {
                what: "value",
                needed: 1,
                available: 0,
            },
        },
    };
    DecodeError::Malformed {
        context,
        channel,
        offset: err
            .at
            .saturating_sub(payload.as_ptr() as usize)
            .min(payload.len()),
        problem: err.problem,
    }
}

/// Fails with `TrailingBytes` when `rest` is not empty.
pub(crate) fn expect_end(rest: &[u8]) -> Result<(), nom::Err<WireError>> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(parse::fail(
            rest,
            Problem::TrailingBytes { count: rest.len() },
        ))
    }
}

fn decode_method(channel: u16, payload: &Bytes) -> Result<Method, DecodeError> {
    let (i, class_id) =
        parse::short(payload).map_err(|e| malformed("method frame", channel, payload, e))?;
    let (i, method_id) =
        parse::short(i).map_err(|e| malformed("method frame", channel, payload, e))?;
    let context = Method::name_of(class_id, method_id).unwrap_or("method frame");
    let method = Method::decode_arguments(class_id, method_id, payload, i)
        .and_then(|(rest, method)| expect_end(rest).map(|()| method))
        .map_err(|e| malformed(context, channel, payload, e))?;
    check_tuning(&method)?;
    Ok(method)
}

/// `connection.tune`/`tune-ok` must not propose a frame_max below 4096.
fn check_tuning(method: &Method) -> Result<(), DecodeError> {
    let (name, frame_max) = match method {
        Method::ConnectionTune(t) => ("connection.tune", t.frame_max),
        Method::ConnectionTuneOk(t) => ("connection.tune-ok", t.frame_max),
        _ => return Ok(()),
    };
    if frame_max != 0 && frame_max < FRAME_MIN_SIZE {
        return Err(DecodeError::FrameMaxBelowMinimum {
            method: name,
            frame_max,
        });
    }
    Ok(())
}
