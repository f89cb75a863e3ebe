//! The message body every producer of pika-perf sends: an 8-byte
//! sequence number, the producer's wall clock in nanoseconds since the
//! Unix epoch (8 bytes, big-endian both), then zero padding up to the
//! message size. The clock is the wall clock so that a consumer in
//! another process on the same host can measure latency too.

use std::sync::{Arc, Mutex};
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

/// Where a producer's bodies come from: made new for each message
/// ([`encode`]), or written into buffers used again ([`RecycledBodies`]).
///
/// `large` recycles: a new buffer of megabytes per message costs page
/// faults and zeroing in the kernel that every client would pay, and
/// that an application moving large messages would not pay twice, so
/// the harness would measure its allocator rather than the clients. The
/// other scenarios make each body new, as they always have.
///
/// ```
/// use pika_perf::body::{self, Bodies};
/// let bodies = Bodies::recycled(4096);
/// let first = bodies.body(1);
/// assert_eq!((first.len(), body::seq(&first)), (4096, Some(1)));
/// drop(first);
/// assert_eq!(body::seq(&bodies.body(2)), Some(2));
/// assert_eq!(body::seq(&Bodies::Fresh(64).body(3)), Some(3));
/// ```
#[derive(Clone, Debug)]
pub enum Bodies {
    /// A new buffer of this size for each body ([`encode`]).
    Fresh(usize),
    /// Buffers that come back when the last handle to a body drops.
    Recycled(RecycledBodies),
}

impl Bodies {
    /// Bodies of `size` bytes written into recycled buffers.
    pub fn recycled(size: usize) -> Bodies {
        Bodies::Recycled(RecycledBodies::new(size))
    }

    /// The body of message `seq`, carrying the current time.
    pub fn body(&self, seq: u64) -> Bytes {
        match self {
            Bodies::Fresh(size) => encode(seq, *size),
            Bodies::Recycled(recycled) => recycled.body(seq),
        }
    }
}

/// Bodies of one size written into a few buffers used again and again:
/// a body's buffer comes back (zero padding intact, only the header is
/// rewritten) when the last [`Bytes`] of it is dropped, be it the
/// producer's after a client copied it or a client's own after it wrote
/// it to the socket. At most [`RecycledBodies::KEEP`] buffers wait here.
#[derive(Clone, Debug)]
pub struct RecycledBodies {
    shelf: Arc<Shelf>,
}

/// The free buffers of a [`RecycledBodies`].
#[derive(Debug)]
struct Shelf {
    size: usize,
    free: Mutex<Vec<Box<[u8]>>>,
}

/// A buffer lent to a body; back on its shelf when dropped.
struct Lent {
    buffer: Option<Box<[u8]>>,
    shelf: Arc<Shelf>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_deref().unwrap_or_default()
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let (Some(buffer), Ok(mut free)) = (self.buffer.take(), self.shelf.free.lock()) {
            if free.len() < RecycledBodies::KEEP {
                free.push(buffer);
            }
        }
    }
}

impl RecycledBodies {
    /// Free buffers kept at most.
    pub const KEEP: usize = 16;

    /// Bodies of `size` bytes (at least [`HEADER_LEN`]).
    pub fn new(size: usize) -> RecycledBodies {
        RecycledBodies {
            shelf: Arc::new(Shelf {
                size: effective_size(size),
                free: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The body of message `seq`, carrying the current time, in a free
    /// buffer or a new zeroed one.
    pub fn body(&self, seq: u64) -> Bytes {
        let free = self.shelf.free.lock().ok().and_then(|mut free| free.pop());
        let mut buffer = free.unwrap_or_else(|| vec![0; self.shelf.size].into_boxed_slice());
        write_header(&mut buffer, seq, now_ns());
        Bytes::from_owner(Lent {
            buffer: Some(buffer),
            shelf: Arc::clone(&self.shelf),
        })
    }
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

/// The header that carries the producer's clock (nanoseconds since the
/// Unix epoch, a signed 64-bit integer) when the body is not pika-perf's
/// own: with `--json-body` the body is a JSON document.
pub const SENT_AT_HEADER: &str = "pika-perf-sent-at-ns";

/// Microseconds from `sent_ns` (nanoseconds since the Unix epoch) to now.
pub fn latency_since_us(sent_ns: u64) -> u64 {
    now_ns().saturating_sub(sent_ns) / 1_000
}

/// `count` JSON documents of about `size` bytes each (at least `{ }`), as
/// PerfTest's `--json-body` makes them: objects of random lowercase field
/// names and random alphanumeric string values, drawn from a shared pool
/// so that documents look alike, as an application's would. `seed` makes
/// them reproducible.
///
/// ```
/// let bodies = pika_perf::body::json_bodies(200, 3, 7);
/// assert_eq!(bodies.len(), 3);
/// let text = std::str::from_utf8(&bodies[0]).unwrap();
/// assert!(text.starts_with("{ \"") && text.ends_with(" }"));
/// assert!(bodies[0].len() >= 200);
/// ```
pub fn json_bodies(size: usize, count: usize, seed: u64) -> Vec<Bytes> {
    const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
    const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const POOL: usize = 100;
    let mut random = XorShift(seed | 1);
    let fields: Vec<String> = (0..POOL).map(|_| random.word(LOWER, 30)).collect();
    let values: Vec<String> = (0..POOL).map(|_| random.word(ALPHANUMERIC, 60)).collect();
    (0..count)
        .map(|_| {
            let mut text = String::from("{ ");
            loop {
                let field = &fields[random.below(POOL)];
                let value = &values[random.below(POOL)];
                text.push_str(&format!("\"{field}\" : \"{value}\""));
                if text.len() + 2 >= size {
                    break;
                }
                text.push_str(", ");
            }
            text.push_str(" }");
            Bytes::from(text)
        })
        .collect()
}

/// A small pseudo-random generator (xorshift64): JSON bodies need
/// variety, not quality.
struct XorShift(u64);

impl XorShift {
    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    /// A word of 5 to `max` characters from `alphabet`.
    fn word(&mut self, alphabet: &[u8], max: usize) -> String {
        let len = 5 + self.below(max - 4);
        (0..len)
            .map(|_| char::from(alphabet[self.below(alphabet.len())]))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recycled_body_reuses_the_buffer_of_a_dropped_one_and_keeps_its_padding_zero() {
        let bodies = RecycledBodies::new(1 << 20);
        let first = bodies.body(1);
        let held = bodies.body(2);
        assert_ne!(
            first.as_ptr(),
            held.as_ptr(),
            "a held body is not lent twice"
        );
        let address = first.as_ptr();
        drop(first);
        let again = bodies.body(3);
        assert_eq!(again.as_ptr(), address);
        assert_eq!((seq(&again), seq(&held)), (Some(3), Some(2)));
        assert!(again[HEADER_LEN..].iter().all(|&byte| byte == 0));
        let slice = again.slice(100..200);
        drop(again);
        assert_ne!(bodies.body(4).as_ptr(), address, "a slice still holds it");
        drop(slice);
        assert_eq!(bodies.body(5).as_ptr(), address);

        let many: Vec<Bytes> = (0..RecycledBodies::KEEP as u64 + 4)
            .map(|seq| bodies.body(seq))
            .collect();
        drop(many);
        let kept = bodies.shelf.free.lock().map(|free| free.len()).ok();
        assert_eq!(
            kept,
            Some(RecycledBodies::KEEP),
            "at most KEEP buffers wait"
        );
    }

    #[test]
    fn json_bodies_are_json_objects_of_about_the_size_asked() {
        for size in [0, 16, 100, 1000, 4096] {
            for body in json_bodies(size, 5, 42) {
                let value: serde_json::Value =
                    serde_json::from_slice(&body).expect("a JSON document");
                assert!(value.is_object());
                assert!(body.len() >= size, "{} < {size}", body.len());
                // One field more than needed at most.
                assert!(body.len() < size + 100, "{} for {size}", body.len());
            }
        }
    }

    #[test]
    fn json_bodies_are_reproducible_from_the_seed() {
        assert_eq!(json_bodies(300, 2, 9), json_bodies(300, 2, 9));
        assert_ne!(json_bodies(300, 2, 9), json_bodies(300, 2, 10));
    }
}
