//! The message body every producer of pika-perf sends: an 8-byte
//! sequence number, the producer's wall clock in nanoseconds since the
//! Unix epoch (8 bytes, big-endian both), then zero padding up to the
//! message size. The clock is the wall clock so that a consumer in
//! another process on the same host can measure latency too.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes of the header at the start of each body; smaller sizes are
/// raised to this.
pub const HEADER_LEN: usize = 16;

/// The size a body of `size` bytes really has: at least [`HEADER_LEN`].
pub fn effective_size(size: usize) -> usize {
    size.max(HEADER_LEN)
}

/// Now, in nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A body of `size` bytes (at least [`HEADER_LEN`]) carrying `seq` and
/// the current time.
///
/// ```
/// let body = pika_perf::body::encode(7, 64);
/// assert_eq!(body.len(), 64);
/// assert_eq!(pika_perf::body::seq(&body), Some(7));
/// ```
pub fn encode(seq: u64, size: usize) -> Bytes {
    let size = effective_size(size);
    let mut buf = BytesMut::with_capacity(size);
    buf.put_u64(seq);
    buf.put_u64(now_ns());
    buf.resize(size, 0);
    buf.freeze()
}

/// Writes the header (`seq` and `timestamp_ns`) into the first
/// [`HEADER_LEN`] bytes of `body`, which must be at least that long.
pub fn write_header(body: &mut [u8], seq: u64, timestamp_ns: u64) {
    body[..8].copy_from_slice(&seq.to_be_bytes());
    body[8..16].copy_from_slice(&timestamp_ns.to_be_bytes());
}

/// The sequence number of a body; `None` when it is too short.
pub fn seq(body: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(body.get(..8)?.try_into().ok()?))
}

/// When the producer sent it, in nanoseconds since the Unix epoch.
pub fn timestamp_ns(body: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(body.get(8..16)?.try_into().ok()?))
}

/// Microseconds from the producer's timestamp to now; `None` when the
/// body is too short.
pub fn latency_us(body: &[u8]) -> Option<u64> {
    timestamp_ns(body).map(|sent| now_ns().saturating_sub(sent) / 1_000)
}
