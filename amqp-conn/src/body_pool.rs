//! The buffers of large bodies, used again.
//!
//! A body read straight from the socket (see the driver's `DirectBody`)
//! is one buffer of the body's size. Freed when the application drops the
//! message and allocated afresh for the next one, each such buffer's
//! pages were faulted in and zeroed by the kernel again: with 1 MiB and
//! 16 MiB bodies that was most of the connection's CPU. The buffer of a
//! dropped body comes back here instead, for the next large body.
//!
//! Bounded: at most [`POOL_BUFFERS`] buffers and [`POOL_BYTES`] bytes are
//! kept per connection, and only buffers of [`POOL_MIN`] bytes or more
//! (smaller ones are cheap to allocate).

use std::sync::{Arc, Mutex, Weak};

use bytes::{Bytes, BytesMut};

/// Smallest buffer worth keeping.
pub(crate) const POOL_MIN: usize = 256 * 1024;
/// Most buffers kept.
const POOL_BUFFERS: usize = 4;
/// Most bytes kept, all buffers together.
const POOL_BYTES: usize = 64 * 1024 * 1024;

/// Buffers of large bodies the application has dropped.
#[derive(Debug, Default)]
pub(crate) struct BodyPool {
    free: Mutex<Vec<BytesMut>>,
}

impl BodyPool {
    fn free(&self) -> std::sync::MutexGuard<'_, Vec<BytesMut>> {
        self.free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An empty buffer of at least `size` bytes: a kept one not more than
    /// twice as large, or a new one.
    pub(crate) fn take(&self, size: usize) -> BytesMut {
        if size >= POOL_MIN {
            let mut free = self.free();
            if let Some(i) = free
                .iter()
                .position(|b| b.capacity() >= size && b.capacity() / 2 <= size)
            {
                let mut buffer = free.swap_remove(i);
                buffer.clear();
                return buffer;
            }
        }
        BytesMut::with_capacity(size)
    }

    /// The body in `buffer` as [`Bytes`] that give the buffer back here
    /// when the last of them is dropped (large buffers; others are frozen
    /// as they are).
    pub(crate) fn wrap(self: &Arc<Self>, buffer: BytesMut) -> Bytes {
        if buffer.capacity() < POOL_MIN {
            return buffer.freeze();
        }
        Bytes::from_owner(Pooled {
            buffer,
            pool: Arc::downgrade(self),
        })
    }

    fn put(&self, buffer: BytesMut) {
        let mut free = self.free();
        let kept: usize = free.iter().map(BytesMut::capacity).sum();
        if free.len() < POOL_BUFFERS && kept + buffer.capacity() <= POOL_BYTES {
            free.push(buffer);
        }
    }

    #[cfg(test)]
    fn kept(&self) -> usize {
        self.free().len()
    }
}

/// A body's buffer, back to its pool when dropped (if the connection is
/// still there).
struct Pooled {
    buffer: BytesMut,
    pool: Weak<BodyPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.put(std::mem::take(&mut self.buffer));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_large_body_lends_its_buffer_to_the_next() {
        let pool = Arc::new(BodyPool::default());
        let mut buffer = pool.take(POOL_MIN);
        buffer.extend_from_slice(&vec![7; POOL_MIN]);
        let address = buffer.as_ptr();
        let body = pool.wrap(buffer);
        let slice = body.slice(10..20);
        drop(body);
        assert_eq!(pool.kept(), 0, "a slice still holds it");
        assert_eq!(&slice[..], &[7; 10]);
        drop(slice);
        assert_eq!(pool.kept(), 1);
        let again = pool.take(POOL_MIN);
        assert_eq!(again.as_ptr(), address);
        assert!(again.is_empty() && again.capacity() >= POOL_MIN);
        // Too large for it: a new one.
        assert_ne!(pool.take(4 * POOL_MIN).as_ptr(), address);
    }

    #[test]
    fn small_bodies_are_not_kept_and_the_pool_is_bounded() {
        let pool = Arc::new(BodyPool::default());
        let mut small = pool.take(100);
        small.extend_from_slice(b"small");
        drop(pool.wrap(small));
        assert_eq!(pool.kept(), 0);
        let bodies: Vec<Bytes> = (0..POOL_BUFFERS + 2)
            .map(|_| {
                let mut buffer = pool.take(POOL_MIN);
                buffer.extend_from_slice(&[1]);
                pool.wrap(buffer)
            })
            .collect();
        drop(bodies);
        assert_eq!(pool.kept(), POOL_BUFFERS);
        // The connection is gone: a body dropped later is freed.
        let mut buffer = pool.take(POOL_MIN);
        buffer.extend_from_slice(&[1]);
        let body = pool.wrap(buffer);
        drop(pool);
        drop(body);
    }
}
