//! Bytes waiting to be written: small frames are encoded into one buffer
//! so many of them go out in one write; large bodies are queued as slices
//! of the caller's buffer and written vectored, never copied.

use std::collections::VecDeque;
use std::io::IoSlice;

use amqp_wire::{BasicAck, BasicProperties, BasicPublish};
use bytes::{Buf, Bytes, BytesMut};

use super::LARGE_BODY;
use crate::command::ChannelRef;

/// Capacity the encode buffer starts with: a connection that sends a few
/// requests never needs more.
const BUFFER_MIN: usize = 2 * 1024;
/// Capacity the encode buffer grows to, doubling each time a buffer fills
/// up, and shrinks back to after a burst of large frames.
const BUFFER_CAPACITY: usize = 64 * 1024;

/// Segments and the tail buffer, in wire order: every segment comes
/// before `buf`.
#[derive(Debug)]
pub(crate) struct WriteQueue {
    /// Where frames are encoded.
    pub(crate) buf: BytesMut,
    segments: VecDeque<Bytes>,
    segment_bytes: usize,
    scratch: Vec<Bytes>,
    /// A written buffer kept for the next [`WriteQueue::make_room`]: its
    /// pages are mapped and likely in cache, unlike a new allocation's.
    spare: Option<BytesMut>,
    /// The last frame in `buf`, when it is a `basic.ack` no byte of which
    /// was written yet: a later ack on its channel may replace it.
    last_ack: Option<QueuedAck>,
    /// The capacity of the next buffer: from [`BUFFER_MIN`] up to
    /// [`BUFFER_CAPACITY`] as buffers fill up.
    capacity: usize,
}

/// Where a queued `basic.ack` sits in the buffer.
#[derive(Debug, Clone, Copy)]
struct QueuedAck {
    channel: ChannelRef,
    delivery_tag: u64,
    start: usize,
    end: usize,
}

impl WriteQueue {
    pub(crate) fn new() -> Self {
        WriteQueue {
            buf: BytesMut::with_capacity(BUFFER_MIN),
            segments: VecDeque::new(),
            segment_bytes: 0,
            scratch: Vec::new(),
            spare: None,
            last_ack: None,
            capacity: BUFFER_MIN,
        }
    }

    /// Bytes waiting.
    pub(crate) fn len(&self) -> usize {
        self.segment_bytes + self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Queues a publish: copied into the buffer when small, by reference
    /// to `body` when large.
    pub(crate) fn publish(
        &mut self,
        channel: u16,
        publish: &BasicPublish,
        properties: &BasicProperties,
        body: &Bytes,
        frame_max: u32,
    ) {
        if body.len() < LARGE_BODY {
            let len = amqp_wire::publish_len(publish, properties, body.len(), frame_max);
            self.make_room(len);
            amqp_wire::encode_publish_into(
                &mut self.buf,
                channel,
                publish,
                properties,
                body,
                frame_max,
            );
            return;
        }
        self.seal();
        let mut scratch = std::mem::take(&mut self.scratch);
        let fits = amqp_wire::encode_publish_segments(
            &mut self.buf,
            channel,
            publish,
            properties,
            body,
            frame_max,
            &mut scratch,
        );
        debug_assert!(fits.is_ok(), "checked by the channel");
        for segment in scratch.drain(..) {
            self.segment_bytes += segment.len();
            self.segments.push_back(segment);
        }
        self.scratch = scratch;
    }

    /// Queues `basic.ack`. With `merge`, and when the last frame queued is
    /// an unwritten ack of a lower tag on the same channel, that frame is
    /// replaced by one ack of `delivery_tag` with `multiple` set. The
    /// caller passes `merge` only when every tag up to `delivery_tag` is
    /// settled, so the merged ack acks exactly what the two did.
    pub(crate) fn ack(
        &mut self,
        channel: ChannelRef,
        delivery_tag: u64,
        multiple: bool,
        merge: bool,
    ) {
        let mut ack = BasicAck {
            delivery_tag,
            multiple,
        };
        let start = match self.last_ack {
            Some(last)
                if merge
                    && last.end == self.buf.len()
                    && last.channel == channel
                    && last.delivery_tag < delivery_tag =>
            {
                self.buf.truncate(last.start);
                ack.multiple = true;
                last.start
            }
            _ => self.buf.len(),
        };
        amqp_wire::encode_method(&mut self.buf, channel.id, &ack.into());
        self.last_ack = Some(QueuedAck {
            channel,
            delivery_tag,
            start,
            end: self.buf.len(),
        });
    }

    /// Makes room for `len` more bytes in `buf` without moving bytes that
    /// wait to be written: growing the buffer in place would copy them
    /// (and a socket that takes part of a batch would have the rest moved
    /// on every write). A full buffer is queued as a segment instead and a
    /// new one started.
    fn make_room(&mut self, len: usize) {
        if self.buf.capacity() - self.buf.len() >= len {
            return;
        }
        // A full buffer: the connection sends more than a few requests.
        self.capacity = (self.capacity * 2).min(BUFFER_CAPACITY);
        if self.buf.is_empty() {
            // Everything was written: reuse the allocation from its start.
            self.buf.reserve(len.max(self.capacity));
            return;
        }
        self.seal();
        self.buf = match self.spare.take() {
            Some(spare) if spare.capacity() >= len => spare,
            _ => BytesMut::with_capacity(len.max(self.capacity)),
        };
    }

    /// Keeps a written segment's allocation as the spare buffer when
    /// nothing else refers to it.
    fn recycle(&mut self, written: Bytes) {
        if self.spare.is_some() {
            return;
        }
        if let Ok(mut buf) = written.try_into_mut() {
            buf.clear();
            // Reclaims the allocation from its start; nothing to copy.
            buf.reserve(self.capacity);
            if buf.capacity() <= 4 * BUFFER_CAPACITY {
                self.spare = Some(buf);
            }
        }
    }

    /// Moves what is in the buffer to the segment queue, keeping order
    /// when a segment is queued after it.
    fn seal(&mut self) {
        self.last_ack = None;
        if !self.buf.is_empty() {
            let bytes = self.buf.split().freeze();
            self.segment_bytes += bytes.len();
            self.segments.push_back(bytes);
        }
    }

    /// True when a plain write of [`WriteQueue::chunk`] covers everything.
    pub(crate) fn is_contiguous(&self) -> bool {
        self.segments.is_empty()
    }

    /// The buffer, when there are no segments.
    pub(crate) fn chunk(&self) -> &[u8] {
        &self.buf
    }

    /// Fills `slices` for a vectored write; returns how many were set.
    pub(crate) fn io_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for segment in &self.segments {
            if n == slices.len() {
                break;
            }
            if !segment.is_empty() {
                slices[n] = IoSlice::new(segment);
                n += 1;
            }
        }
        if n < slices.len() && !self.buf.is_empty() {
            slices[n] = IoSlice::new(&self.buf);
            n += 1;
        }
        n
    }

    /// Drops `n` written bytes from the front.
    pub(crate) fn advance(&mut self, mut n: usize) {
        // Written bytes may belong to the last ack: it stays as it is.
        self.last_ack = None;
        while n > 0 {
            let Some(front) = self.segments.front_mut() else {
                break;
            };
            let take = n.min(front.len());
            front.advance(take);
            self.segment_bytes -= take;
            n -= take;
            if front.is_empty() {
                let written = self.segments.pop_front().expect("the front segment");
                self.recycle(written);
            }
        }
        self.buf.advance(n);
        if self.buf.is_empty() && self.buf.capacity() > 4 * BUFFER_CAPACITY {
            // Give back the memory a burst needed.
            self.buf = BytesMut::with_capacity(self.capacity);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amqp_wire::ShortString;

    fn drain(queue: &mut WriteQueue) -> Vec<u8> {
        let mut written = Vec::new();
        while !queue.is_empty() {
            let mut slices = [IoSlice::new(&[]); 4];
            let n = queue.io_slices(&mut slices);
            // Write only part of the first slice each time.
            let part = slices[..n].iter().map(|s| s.len()).sum::<usize>().min(1000);
            let mut left = part;
            for s in &slices[..n] {
                let take = left.min(s.len());
                written.extend_from_slice(&s[..take]);
                left -= take;
            }
            queue.advance(part);
        }
        written
    }

    #[test]
    fn large_bodies_are_queued_by_reference_in_order() {
        let publish = BasicPublish {
            routing_key: ShortString::from_static("q"),
            ..Default::default()
        };
        let props = BasicProperties::default();
        let small = Bytes::from_static(b"small");
        let large = Bytes::from(vec![7u8; 200_000]);
        let mut queue = WriteQueue::new();
        queue.publish(1, &publish, &props, &small, 131_072);
        queue.publish(1, &publish, &props, &large, 131_072);
        queue.publish(1, &publish, &props, &small, 131_072);
        assert!(!queue.is_contiguous());

        let mut expected = BytesMut::new();
        for body in [&small, &large, &small] {
            amqp_wire::encode_publish(&mut expected, 1, &publish, &props, body, 131_072).unwrap();
        }
        assert_eq!(queue.len(), expected.len());
        assert_eq!(drain(&mut queue), expected.to_vec());
        assert!(queue.is_empty());
    }

    #[test]
    fn partial_writes_between_publishes_keep_every_byte_in_order() {
        let publish = BasicPublish {
            routing_key: ShortString::from_static("q"),
            ..Default::default()
        };
        let props = BasicProperties::default();
        let mut queue = WriteQueue::new();
        let mut expected = BytesMut::new();
        let mut written = Vec::new();
        for n in 0..2_000u32 {
            let body = Bytes::from(vec![(n % 251) as u8; 100 + (n as usize * 37) % 4000]);
            queue.publish(1, &publish, &props, &body, 131_072);
            amqp_wire::encode_publish(&mut expected, 1, &publish, &props, &body, 131_072).unwrap();
            if n % 7 == 0 {
                // The socket takes part of what waits, as a full one does.
                let mut slices = [IoSlice::new(&[]); 64];
                let count = queue.io_slices(&mut slices);
                let take = (queue.len() / 3).min(slices[0].len());
                written.extend_from_slice(&slices[..count][0][..take]);
                queue.advance(take);
            }
        }
        written.extend(drain(&mut queue));
        assert_eq!(written, expected.to_vec());
        // Buffers filled and written are reused, not grown.
        assert!(queue.buf.capacity() <= 4 * BUFFER_CAPACITY);
    }
}
