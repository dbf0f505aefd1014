//! Reused byte buffers for reads, chunks and restored data. They are
//! hundreds of KiB to megabytes each, and a fresh allocation of that size
//! costs the kernel faulting in and zeroing its pages: a sixth of a
//! sender's time in a profile, more than checksumming. Buffers of one kind
//! go back to a small pool instead, also when they travel as [`Bytes`].

use std::sync::Mutex;

use bytes::Bytes;

/// A few buffers of one kind, kept for reuse.
pub(crate) struct Pool {
    free: Mutex<Vec<Vec<u8>>>,
    /// How many it keeps: as many as are in use at once in steady state.
    keep: usize,
}

/// Reads a sender compresses.
pub(crate) static READS: Pool = Pool::new(8);
/// Chunks a sender writes (and raw reads, which become chunks).
pub(crate) static CHUNKS: Pool = Pool::new(8);
/// Chunks a receiver restored.
pub(crate) static RESTORED: Pool = Pool::new(3);

impl Pool {
    const fn new(keep: usize) -> Self {
        Pool {
            free: Mutex::new(Vec::new()),
            keep,
        }
    }

    /// An empty buffer with room for at least `capacity` bytes.
    pub(crate) fn take(&self, capacity: usize) -> Vec<u8> {
        let mut buffer = self.free.lock().expect("pool").pop().unwrap_or_default();
        buffer.clear();
        buffer.reserve(capacity);
        buffer
    }

    /// A buffer of `len` bytes, whatever they hold: for code that writes
    /// every byte, so reuse costs no zeroing.
    pub(crate) fn take_len(&self, len: usize) -> Vec<u8> {
        let mut buffer = self.free.lock().expect("pool").pop().unwrap_or_default();
        if buffer.len() < len {
            buffer.resize(len, 0);
        }
        buffer.truncate(len);
        buffer
    }

    /// Keeps `buffer` for reuse, unless the pool is full.
    pub(crate) fn give(&self, buffer: Vec<u8>) {
        let mut free = self.free.lock().expect("pool");
        if free.len() < self.keep && buffer.capacity() > 0 {
            free.push(buffer);
        }
    }

    /// `buffer` as [`Bytes`] that gives it back once the last slice of it
    /// is dropped.
    pub(crate) fn bytes(&'static self, buffer: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled { buffer, pool: self })
    }
}

struct Pooled {
    buffer: Vec<u8>,
    pool: &'static Pool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buffer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static POOL: Pool = Pool::new(1);

    #[test]
    fn a_buffer_comes_back_once_its_last_slice_is_dropped() {
        let mut buffer = POOL.take(1000);
        buffer.extend_from_slice(b"data");
        let address = buffer.as_ptr();
        let bytes = POOL.bytes(buffer);
        let slice = bytes.slice(1..3);
        drop(bytes);
        assert_eq!(&slice[..], b"at");
        drop(slice);
        let again = POOL.take(4);
        assert_eq!(again.as_ptr(), address);
        assert!(again.is_empty());
        POOL.give(again);
        let reused = POOL.take_len(2);
        assert_eq!((reused.as_ptr(), reused.len()), (address, 2));
    }
}
