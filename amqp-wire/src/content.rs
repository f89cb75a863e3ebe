//! Content: the header frame (class, body size, properties), the body
//! frames that follow it, encoding a whole publish, and checking that the
//! body frames add up to the announced size.

use bytes::{BufMut, Bytes, BytesMut};

use crate::constants::{FRAME_END, FRAME_HEADER, FRAME_MIN_SIZE};
use crate::error::{DecodeError, Problem};
use crate::frame::{
    encode_body, expect_end, malformed, put_frame_header, FrameType, FRAME_OVERHEAD,
};
use crate::generated::{BasicProperties, BasicPublish};
use crate::parse;

/// The class that carries content in AMQP 0-9-1: `basic`.
pub const BASIC_CLASS_ID: u16 = 60;

/// A content header: which class the content belongs to, the size of the
/// body that follows in body frames, and the message properties.
///
/// ```
/// use amqp_wire::{BasicProperties, ContentHeader};
/// let header = ContentHeader::new(11, BasicProperties::default());
/// assert_eq!(header.class_id, 60);
/// assert_eq!(header.encoded_len(), 14);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ContentHeader {
    /// The class of the method the content belongs to (always 60, `basic`).
    pub class_id: u16,
    /// Total size of the body, summed over the body frames that follow.
    pub body_size: u64,
    /// The message properties, boxed: they are a few hundred bytes, and
    /// a decoded message keeps them while the header itself stays small
    /// and moves cheaply.
    pub properties: Box<BasicProperties>,
}

impl BasicProperties {
    /// Properties with nothing set, shared: a message without properties
    /// can refer to these instead of allocating its own.
    ///
    /// ```
    /// use amqp_wire::BasicProperties;
    /// assert_eq!(BasicProperties::none(), &BasicProperties::default());
    /// assert_eq!(BasicProperties::none().flags(), 0);
    /// ```
    pub fn none() -> &'static BasicProperties {
        static NONE: std::sync::LazyLock<BasicProperties> =
            std::sync::LazyLock::new(BasicProperties::default);
        &NONE
    }
}

impl ContentHeader {
    /// A `basic` content header.
    pub fn new(body_size: u64, properties: impl Into<Box<BasicProperties>>) -> Self {
        ContentHeader {
            class_id: BASIC_CLASS_ID,
            body_size,
            properties: properties.into(),
        }
    }

    /// Encoded payload length: class, weight, body size and properties.
    pub fn encoded_len(&self) -> usize {
        12 + self.properties.encoded_len()
    }

    /// Writes the header frame's payload.
    pub fn encode<B: BufMut>(&self, buf: &mut B) {
        buf.put_u16(self.class_id);
        buf.put_u16(0);
        buf.put_u64(self.body_size);
        self.properties.encode(buf);
    }

    /// Decodes a header frame's payload; the properties are decoded in
    /// place in their box.
    pub(crate) fn decode(channel: u16, payload: &Bytes) -> Result<ContentHeader, DecodeError> {
        const CONTEXT: &str = "content header";
        let err = |e| malformed(CONTEXT, channel, payload, e);
        let (i, class_id) = parse::short(payload).map_err(err)?;
        if class_id != BASIC_CLASS_ID {
            return Err(err(parse::fail(
                payload,
                Problem::UnknownContentClass { class_id },
            )));
        }
        let (i, weight) = parse::short(i).map_err(err)?;
        if weight != 0 {
            return Err(err(parse::fail(
                &payload[2..],
                Problem::NonZeroWeight { weight },
            )));
        }
        let (i, body_size) = parse::longlong(i).map_err(err)?;
        let mut header = ContentHeader::new(body_size, Box::<BasicProperties>::default());
        let (i, ()) = header.properties.decode_into(payload, i).map_err(err)?;
        expect_end(i).map_err(err)?;
        Ok(header)
    }
}

/// True for the shared empty properties of [`BasicProperties::none`]
/// (what a message without properties is published with).
fn is_none(properties: &BasicProperties) -> bool {
    std::ptr::eq(properties, BasicProperties::none())
}

/// The encoded length of `properties`. The shared empty ones are two
/// bytes of flags: no need to look at their fourteen fields, three times
/// per publish (the check, the length and the header).
fn properties_len(properties: &BasicProperties) -> usize {
    if is_none(properties) {
        EMPTY_PROPERTIES_LEN
    } else {
        properties.encoded_len()
    }
}

/// Encoded length of properties with no field set: the flags.
const EMPTY_PROPERTIES_LEN: usize = 2;

/// Bytes that [`encode_content`] writes for these properties and body.
pub fn content_len(properties: &BasicProperties, body_len: usize, frame_max: u32) -> usize {
    let per_frame = body_frame_capacity(frame_max);
    let body_frames = body_len.div_ceil(per_frame);
    FRAME_OVERHEAD + 12 + properties_len(properties) + body_frames * FRAME_OVERHEAD + body_len
}

/// Bytes of body one body frame carries under `frame_max`.
pub fn body_frame_capacity(frame_max: u32) -> usize {
    frame_max.max(FRAME_MIN_SIZE) as usize - FRAME_OVERHEAD
}

/// Writes a content header frame and the body frames of `body`, split so
/// that no frame exceeds `frame_max` (an empty body has no body frames).
pub fn encode_content<B: BufMut>(
    buf: &mut B,
    channel: u16,
    properties: &BasicProperties,
    body: &[u8],
    frame_max: u32,
) {
    encode_content_header(buf, channel, properties, body.len() as u64);
    for chunk in body.chunks(body_frame_capacity(frame_max)) {
        encode_body(buf, channel, chunk);
    }
}

/// Writes a whole `basic` content header frame announcing `body_size`.
pub(crate) fn encode_content_header<B: BufMut>(
    buf: &mut B,
    channel: u16,
    properties: &BasicProperties,
    body_size: u64,
) {
    put_frame_header(buf, FRAME_HEADER, channel, 12 + properties_len(properties));
    buf.put_u16(BASIC_CLASS_ID);
    buf.put_u16(0);
    buf.put_u64(body_size);
    if is_none(properties) {
        buf.put_u16(0);
    } else {
        properties.encode(buf);
    }
    buf.put_u8(FRAME_END);
}

/// Bytes that [`encode_publish`] writes.
pub fn publish_len(
    publish: &BasicPublish,
    properties: &BasicProperties,
    body_len: usize,
    frame_max: u32,
) -> usize {
    FRAME_OVERHEAD + 4 + publish.arguments_len() + content_len(properties, body_len, frame_max)
}

/// A method or content header frame does not fit in the negotiated
/// `frame_max`: unlike bodies, they cannot be split across frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{frame_type} frame of {size} bytes does not fit in the negotiated frame_max of \
     {frame_max} bytes (method arguments and message properties cannot be split \
     across frames: shorten names, headers or other properties)"
)]
pub struct FrameTooLarge {
    /// The frame that does not fit.
    pub frame_type: FrameType,
    /// Its size, header and frame-end octet included.
    pub size: usize,
    /// The negotiated limit.
    pub frame_max: u32,
}

fn check_fits(
    frame_type: FrameType,
    payload_len: usize,
    frame_max: u32,
) -> Result<(), FrameTooLarge> {
    let size = payload_len + FRAME_OVERHEAD;
    if size > frame_max.max(FRAME_MIN_SIZE) as usize {
        return Err(FrameTooLarge {
            frame_type,
            size,
            frame_max,
        });
    }
    Ok(())
}

/// Encodes a whole publish, `basic.publish` + content header + body
/// frames split at `frame_max`, into one contiguous buffer after a single
/// reservation.
///
/// Fails, writing nothing, when the method or the content header frame
/// would be larger than `frame_max`.
///
/// ```
/// use amqp_wire::{encode_publish, BasicProperties, BasicPublish, Frame, ShortString};
/// use bytes::BytesMut;
///
/// let publish = BasicPublish { routing_key: ShortString::from_static("tasks"), ..Default::default() };
/// let body = vec![7u8; 10_000];
/// let mut buf = BytesMut::new();
/// encode_publish(&mut buf, 1, &publish, &BasicProperties::default(), &body, 4096).unwrap();
/// // method, header, and three body frames of at most 4088 bytes
/// let mut frames = 0;
/// while let Some(_) = Frame::decode(&mut buf, 4096).unwrap() { frames += 1; }
/// assert_eq!(frames, 5);
/// ```
pub fn encode_publish(
    buf: &mut BytesMut,
    channel: u16,
    publish: &BasicPublish,
    properties: &BasicProperties,
    body: &[u8],
    frame_max: u32,
) -> Result<(), FrameTooLarge> {
    check_publish_fits(publish, properties, frame_max)?;
    buf.reserve(publish_len(publish, properties, body.len(), frame_max));
    encode_publish_into(buf, channel, publish, properties, body, frame_max);
    Ok(())
}

/// Checks that the `basic.publish` method frame and the content header
/// frame each fit in `frame_max`.
pub fn check_publish_fits(
    publish: &BasicPublish,
    properties: &BasicProperties,
    frame_max: u32,
) -> Result<(), FrameTooLarge> {
    check_fits(FrameType::Method, 4 + publish.arguments_len(), frame_max)?;
    check_fits(
        FrameType::Header,
        12 + properties_len(properties),
        frame_max,
    )
}

/// [`encode_publish`] into any `BufMut`, without checks or reservation: the
/// caller has called [`check_publish_fits`] and made room for
/// [`publish_len`] bytes.
pub fn encode_publish_into<B: BufMut>(
    buf: &mut B,
    channel: u16,
    publish: &BasicPublish,
    properties: &BasicProperties,
    body: &[u8],
    frame_max: u32,
) {
    encode_publish_method(buf, channel, publish);
    encode_content(buf, channel, properties, body, frame_max);
}

/// Writes the `basic.publish` method frame (without building a `Method`).
fn encode_publish_method<B: BufMut>(buf: &mut B, channel: u16, publish: &BasicPublish) {
    put_frame_header(
        buf,
        crate::constants::FRAME_METHOD,
        channel,
        4 + publish.arguments_len(),
    );
    buf.put_u16(BasicPublish::CLASS_ID);
    buf.put_u16(BasicPublish::METHOD_ID);
    publish.encode_arguments(buf);
    buf.put_u8(FRAME_END);
}

/// Encodes a publish for a vectored write, without copying the body:
/// frame headers, the method and the properties are written into `buf`,
/// and `segments` receives, in wire order, slices of `buf` and of `body`
/// (`Bytes::slice`, no copy) that together are exactly the bytes
/// [`encode_publish`] would write.
///
/// Worth it for large bodies, where copying the body into a write buffer
/// is the whole cost of encoding; small messages are cheaper to copy into
/// one buffer and write together.
///
/// ```
/// use amqp_wire::{encode_publish, encode_publish_segments, BasicProperties, BasicPublish};
/// use bytes::{Bytes, BytesMut};
///
/// let body = Bytes::from(vec![1u8; 10_000]);
/// let (publish, props) = (BasicPublish::default(), BasicProperties::default());
/// let mut segments = Vec::new();
/// encode_publish_segments(&mut BytesMut::new(), 1, &publish, &props, &body, 4096, &mut segments).unwrap();
/// let mut contiguous = BytesMut::new();
/// encode_publish(&mut contiguous, 1, &publish, &props, &body, 4096).unwrap();
/// assert_eq!(segments.concat(), contiguous.to_vec());
/// ```
pub fn encode_publish_segments(
    buf: &mut BytesMut,
    channel: u16,
    publish: &BasicPublish,
    properties: &BasicProperties,
    body: &Bytes,
    frame_max: u32,
    segments: &mut Vec<Bytes>,
) -> Result<(), FrameTooLarge> {
    check_publish_fits(publish, properties, frame_max)?;
    let chunk = body_frame_capacity(frame_max);
    let frames = body.len().div_ceil(chunk);
    buf.reserve(publish_len(publish, properties, 0, frame_max) + frames * FRAME_OVERHEAD);
    encode_publish_method(buf, channel, publish);
    encode_content_header(buf, channel, properties, body.len() as u64);
    for start in (0..body.len()).step_by(chunk) {
        let end = (start + chunk).min(body.len());
        put_frame_header(buf, crate::constants::FRAME_BODY, channel, end - start);
        segments.push(buf.split().freeze());
        segments.push(body.slice(start..end));
        buf.put_u8(FRAME_END);
    }
    segments.push(buf.split().freeze());
    Ok(())
}

/// Collects the body frames of one message and checks them against the
/// size its content header announced.
///
/// A body that arrives in one frame is handed back as that frame's slice
/// of the read buffer (no copy); a body in several frames is joined into
/// one buffer reserved once at the announced size, which is first checked
/// against `max_body_size`.
///
/// ```
/// use amqp_wire::{BodyAssembler, BodyError};
/// use bytes::Bytes;
///
/// let mut body = BodyAssembler::new(5, 1 << 20).unwrap();
/// assert_eq!(body.push(Bytes::from_static(b"hel")).unwrap(), None);
/// assert_eq!(body.push(Bytes::from_static(b"lo")).unwrap(), Some(Bytes::from_static(b"hello")));
///
/// let mut body = BodyAssembler::new(2, 1 << 20).unwrap();
/// assert!(matches!(body.push(Bytes::from_static(b"abc")), Err(BodyError::Overrun { .. })));
/// ```
#[derive(Debug)]
pub struct BodyAssembler {
    expected: u64,
    received: u64,
    first: Option<Bytes>,
    joined: Option<BytesMut>,
}

/// The body frames of a message disagree with its content header, or the
/// body is too large to accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// Body frames carry more bytes than the header announced.
    #[error("body frames carry {received} bytes but the content header announced {expected}")]
    Overrun {
        /// Size from the content header.
        expected: u64,
        /// Bytes received so far, including the frame that overran.
        received: u64,
    },
    /// The announced body is larger than this side accepts.
    #[error(
        "content header announces a body of {size} bytes, more than the limit of {limit} bytes"
    )]
    TooLarge {
        /// Size from the content header.
        size: u64,
        /// The limit.
        limit: u64,
    },
}

impl BodyAssembler {
    /// Starts a body of `body_size` bytes, refusing sizes above `max_body_size`.
    pub fn new(body_size: u64, max_body_size: u64) -> Result<Self, BodyError> {
        if body_size > max_body_size {
            return Err(BodyError::TooLarge {
                size: body_size,
                limit: max_body_size,
            });
        }
        Ok(BodyAssembler {
            expected: body_size,
            received: 0,
            first: None,
            joined: None,
        })
    }

    /// True when the whole body has arrived (at once for an empty body).
    pub fn is_complete(&self) -> bool {
        self.received == self.expected
    }

    /// Size the content header announced.
    pub fn expected(&self) -> u64 {
        self.expected
    }

    /// Adds one body frame's payload; returns the whole body once complete.
    pub fn push(&mut self, payload: Bytes) -> Result<Option<Bytes>, BodyError> {
        let received = self.received + payload.len() as u64;
        if received > self.expected {
            return Err(BodyError::Overrun {
                expected: self.expected,
                received,
            });
        }
        self.received = received;
        match (&mut self.joined, self.first.take()) {
            (Some(joined), _) => joined.extend_from_slice(&payload),
            (None, None) => self.first = Some(payload),
            (None, Some(first)) => {
                // `expected` was checked against the caller's limit.
                let mut joined = BytesMut::with_capacity(self.expected as usize);
                joined.extend_from_slice(&first);
                joined.extend_from_slice(&payload);
                self.joined = Some(joined);
            }
        }
        if !self.is_complete() {
            return Ok(None);
        }
        Ok(Some(self.take()))
    }

    /// Body bytes still to come.
    pub fn remaining(&self) -> u64 {
        self.expected - self.received
    }

    /// Lends the buffer the body is joined in (reserved at the announced
    /// size, holding what arrived so far) to a reader that reads body
    /// frame payloads from its source straight into it, rather than into
    /// its frame buffer and then here: for a body of many frames that
    /// saves the one copy. Append at most [`remaining`](Self::remaining)
    /// bytes, then hand it back with [`give_back`](Self::give_back).
    ///
    /// ```
    /// use amqp_wire::BodyAssembler;
    /// use bytes::Bytes;
    ///
    /// let mut body = BodyAssembler::new(5, 1 << 20).unwrap();
    /// body.push(Bytes::from_static(b"he")).unwrap();
    /// let mut buffer = body.lend();
    /// buffer.extend_from_slice(b"llo"); // a read from the socket
    /// assert_eq!(body.give_back(buffer).unwrap(), Some(Bytes::from_static(b"hello")));
    /// ```
    pub fn lend(&mut self) -> BytesMut {
        self.lend_with(BytesMut::with_capacity)
    }

    /// [`lend`](Self::lend), with the buffer (empty, of at least the
    /// size given) made by `make` when the body has none yet: a reader
    /// that reuses the buffers of bodies it handed out before.
    pub fn lend_with(&mut self, make: impl FnOnce(usize) -> BytesMut) -> BytesMut {
        match (self.joined.take(), self.first.take()) {
            (Some(joined), _) => joined,
            (None, first) => {
                // `expected` was checked against the caller's limit.
                let mut joined = make(self.expected as usize);
                joined.clear();
                joined.reserve(self.expected as usize);
                if let Some(first) = first {
                    joined.extend_from_slice(&first);
                }
                joined
            }
        }
    }

    /// Takes back the buffer [`lend`](Self::lend) gave, with what was
    /// appended to it; returns the whole body once complete.
    pub fn give_back(&mut self, buffer: BytesMut) -> Result<Option<Bytes>, BodyError> {
        Ok(self.give_back_unfrozen(buffer)?.map(BytesMut::freeze))
    }

    /// [`give_back`](Self::give_back), with the whole body as the buffer
    /// itself: for a reader that wraps it in its own [`Bytes`] (one that
    /// takes the buffer back when the application drops it).
    pub fn give_back_unfrozen(&mut self, buffer: BytesMut) -> Result<Option<BytesMut>, BodyError> {
        let received = buffer.len() as u64;
        if received > self.expected {
            return Err(BodyError::Overrun {
                expected: self.expected,
                received,
            });
        }
        self.received = received;
        self.first = None;
        if !self.is_complete() {
            self.joined = Some(buffer);
            return Ok(None);
        }
        Ok(Some(buffer))
    }

    /// The whole body of an empty message, or whatever arrived so far.
    pub fn take(&mut self) -> Bytes {
        match (self.joined.take(), self.first.take()) {
            (Some(joined), _) => joined.freeze(),
            (None, Some(first)) => first,
            (None, None) => Bytes::new(),
        }
    }
}

#[cfg(test)]
mod empty_properties_tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn the_shared_empty_properties_encode_as_any_empty_properties() {
        let none = BasicProperties::none();
        let other = BasicProperties::default();
        assert!(is_none(none) && !is_none(&other));
        assert_eq!(properties_len(none), other.encoded_len());
        let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
        encode_content(&mut a, 3, none, b"body", 4096);
        encode_content(&mut b, 3, &other, b"body", 4096);
        assert_eq!(a, b);
        assert_eq!(content_len(none, 4, 4096), a.len());
    }
}
