//! A small process-wide pool of chunk-sized buffers.
//!
//! Every 4 MiB chunk passes through a few big buffers: the plaintext held
//! while it is written, the ciphertext while it is uploaded, the ciphertext
//! of a download while it is checked and decrypted. Each is above the mmap
//! threshold (`mount/malloc.rs`), so glibc maps it fresh, the kernel
//! zero-fills its ~1000 pages on first touch, and unmaps them when it is
//! freed. In a profile of `scripts/bench.sh --workloads seq` that page
//! fault path was about a fifth of the daemon's CPU time while writing.
//! Taking those buffers from here and giving them back when done skips it.
//!
//! Invariants:
//! - the pool holds only buffers whose capacity is at least
//!   [`POOLED_CAPACITY`] (and not far beyond), at most [`MAX_IDLE`] of them:
//!   what it keeps from the system when idle is bounded (~25 MiB);
//! - an idle buffer is empty (ciphertext came back in it), or zero bytes
//!   all the way to its capacity;
//! - a plaintext buffer comes back only through [`BufferPool::recycle`], which
//!   wipes it first ([`Plaintext::into_zeroed`]); ciphertext needs no wiping.
//!   The wipe leaves zeros that [`BufferPool::plaintext_zeroed`] hands out
//!   as they are: a download decrypted into a buffer ([`common::crypto::content::ObjectOpener`])
//!   needs it zero-filled, and that fill would be a second pass over it;
//! - forgetting to give a buffer back is never wrong, only slower: it is
//!   freed as any other;
//! - a buffer given back is not in use: [`BufferPool::into_bytes`] gives it
//!   back only when the last `Bytes` over it is dropped.
//!
//! Smaller requests are not pooled: below the mmap threshold malloc's
//! arenas already reuse memory.
//!
//! [`REQUESTS`] is a second, smaller pool of the same kind for the copies
//! of big FUSE write requests (up to 1 MiB each, at the mmap threshold):
//! a chunk-sized buffer would be wiped in full for every request.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::crypto::Plaintext;
use common::crypto::content::{HEADER_LEN, SEGMENT_SIZE, TAG_LEN};

/// The plaintext bytes of a whole chunk (the mount's `vfs::file::CHUNK`,
/// which checks that it is the same).
pub(crate) const CHUNK_BYTES: usize = 4 << 20;

/// Capacity of a pooled buffer: the ciphertext of a whole chunk (so a
/// buffer fits any chunk, plaintext or ciphertext).
pub const POOLED_CAPACITY: usize = HEADER_LEN + CHUNK_BYTES + CHUNK_BYTES / SEGMENT_SIZE * TAG_LEN;

/// At most this many idle buffers are kept.
pub const MAX_IDLE: usize = 6;

/// Requests from this size up are served from the pool.
const POOLED_FROM: usize = 1024 * 1024;

/// Capacity of a [`REQUESTS`] buffer: the largest write the mount asks
/// the kernel for (`mount::fuse::MAX_IO`, which checks that it fits).
pub const REQUEST_CAPACITY: usize = 1 << 20;
/// Write requests from this size up are copied into [`REQUESTS`] buffers.
const REQUEST_FROM: usize = 512 * 1024;
/// At most this many idle request buffers are kept.
const REQUEST_IDLE: usize = 4;

/// A pool of idle buffers of one capacity; the daemon uses [`POOL`] and
/// [`REQUESTS`].
#[derive(Debug)]
pub struct BufferPool {
    idle: Mutex<Idle>,
    /// Capacity of every buffer made and kept.
    capacity: usize,
    /// Requests from this size up (and up to `capacity`) are pooled.
    from: usize,
    /// Idle buffers kept at most.
    max_idle: usize,
}

/// The idle buffers of a pool.
#[derive(Debug)]
struct Idle {
    /// Empty buffers.
    empty: Vec<Vec<u8>>,
    /// Buffers of zeros, each as long as its capacity.
    zeroed: Vec<Vec<u8>>,
}

impl Idle {
    fn len(&self) -> usize {
        self.empty.len() + self.zeroed.len()
    }
}

/// The process's pool of chunk-sized buffers.
pub static POOL: BufferPool = BufferPool::new(POOLED_CAPACITY, POOLED_FROM, MAX_IDLE);

/// The process's pool of write-request-sized buffers.
pub static REQUESTS: BufferPool = BufferPool::new(REQUEST_CAPACITY, REQUEST_FROM, REQUEST_IDLE);

impl BufferPool {
    /// An empty pool of buffers of `capacity` bytes, serving requests of
    /// `from..=capacity` bytes and keeping at most `max_idle` buffers.
    pub const fn new(capacity: usize, from: usize, max_idle: usize) -> Self {
        Self {
            idle: Mutex::new(Idle {
                empty: Vec::new(),
                zeroed: Vec::new(),
            }),
            capacity,
            from,
            max_idle,
        }
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Idle> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An empty buffer that holds `len` bytes without growing.
    pub fn take(&self, len: usize) -> Vec<u8> {
        if !(self.from..=self.capacity).contains(&len) {
            return Vec::with_capacity(len);
        }
        let mut idle = self.idle();
        if let Some(buf) = idle.empty.pop() {
            return buf;
        }
        let zeroed = idle.zeroed.pop();
        drop(idle);
        zeroed.map_or_else(
            || Vec::with_capacity(self.capacity),
            |mut buf| {
                buf.clear();
                buf
            },
        )
    }

    /// `len` zero bytes, in a pooled buffer when `len` is in the pool's
    /// range: one the last wipe left zeroed when there is one (no fill),
    /// else an empty one filled.
    pub fn plaintext_zeroed(&self, len: usize) -> Plaintext {
        if !(self.from..=self.capacity).contains(&len) {
            return Plaintext::zeroed(len);
        }
        let mut idle = self.idle();
        if let Some(mut buf) = idle.zeroed.pop() {
            drop(idle);
            buf.truncate(len);
            return Plaintext::new(buf);
        }
        let empty = idle.empty.pop();
        drop(idle);
        let mut buf = empty.unwrap_or_else(|| Vec::with_capacity(self.capacity));
        buf.resize(len, 0);
        Plaintext::new(buf)
    }

    /// An empty plaintext buffer that holds `len` bytes without growing.
    pub fn plaintext(&self, len: usize) -> Plaintext {
        Plaintext::new(self.take(len))
    }

    /// Gives `buf` back for reuse (or frees it, if it is not of the pooled
    /// size or the pool is full). Its bytes are not wiped: ciphertext only.
    pub fn give(&self, mut buf: Vec<u8>) {
        if !self.pooled(&buf) {
            return;
        }
        buf.clear();
        let mut idle = self.idle();
        if idle.len() < self.max_idle {
            idle.empty.push(buf);
        }
    }

    /// Wipes `plain` and gives its allocation back, zeroed.
    pub fn recycle(&self, plain: Plaintext) {
        if !self.pooled(&plain) {
            return;
        }
        let buf = plain.into_zeroed();
        let mut idle = self.idle();
        if idle.len() < self.max_idle {
            idle.zeroed.push(buf);
        }
    }

    /// [`Self::recycle`] if this is the last reference to `plain`;
    /// otherwise only drops this one.
    pub fn recycle_shared(&self, plain: Arc<Plaintext>) {
        if let Ok(plain) = Arc::try_unwrap(plain) {
            self.recycle(plain);
        }
    }

    /// `buf` as [`Bytes`] that give the buffer back when the last of them
    /// is dropped. Ciphertext only.
    pub fn into_bytes(&'static self, buf: Vec<u8>) -> Bytes {
        if self.pooled(&buf) {
            Bytes::from_owner(Pooled { buf, pool: self })
        } else {
            Bytes::from(buf)
        }
    }

    /// `plain` as [`Bytes`] that wipe the buffer and give it back when the
    /// last of them is dropped (an unpooled buffer is wiped and freed).
    pub fn plaintext_bytes(&'static self, plain: Plaintext) -> Bytes {
        Bytes::from_owner(PooledPlaintext {
            plain: Some(plain),
            pool: self,
        })
    }

    /// How many buffers are idle.
    pub fn idle_count(&self) -> usize {
        self.idle().len()
    }

    /// Whether `buf` is of the size the pool keeps.
    fn pooled(&self, buf: &Vec<u8>) -> bool {
        (self.capacity..=self.capacity * 2).contains(&buf.capacity())
    }
}

/// A buffer that goes back to its pool when dropped.
struct Pooled {
    buf: Vec<u8>,
    pool: &'static BufferPool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

/// Plaintext that is wiped and goes back to its pool when dropped.
struct PooledPlaintext {
    plain: Option<Plaintext>,
    pool: &'static BufferPool,
}

impl AsRef<[u8]> for PooledPlaintext {
    fn as_ref(&self) -> &[u8] {
        self.plain.as_deref().map_or(&[], |p| p.as_slice())
    }
}

impl Drop for PooledPlaintext {
    fn drop(&mut self) {
        if let Some(plain) = self.plain.take() {
            self.pool.recycle(plain);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use common::crypto::content::ciphertext_len;

    use super::*;

    fn pool() -> &'static BufferPool {
        Box::leak(Box::new(BufferPool::new(
            POOLED_CAPACITY,
            POOLED_FROM,
            MAX_IDLE,
        )))
    }

    #[test]
    fn a_given_back_buffer_is_taken_again_empty() {
        let pool = pool();
        let mut a = pool.take(POOLED_CAPACITY);
        a.extend_from_slice(b"ciphertext");
        let ptr = a.as_ptr();
        pool.give(a);
        assert_eq!(pool.idle_count(), 1);
        let again = pool.take(2 << 20);
        assert_eq!(again.as_ptr(), ptr);
        assert!(again.is_empty());
        assert!(again.capacity() >= POOLED_CAPACITY);
    }

    #[test]
    fn small_and_odd_buffers_are_not_pooled() {
        let pool = pool();
        assert!(pool.take(4096).capacity() < POOLED_FROM);
        pool.give(Vec::with_capacity(4096));
        pool.give(Vec::with_capacity(POOLED_CAPACITY * 3));
        assert_eq!(pool.idle_count(), 0);
        // Too big a request is not served from the pool either.
        pool.give(pool.take(POOLED_CAPACITY));
        assert!(pool.take(POOLED_CAPACITY + 1).capacity() > POOLED_CAPACITY);
        assert_eq!(pool.idle_count(), 1);
    }

    #[test]
    fn the_pool_keeps_at_most_max_idle() {
        let pool = pool();
        let bufs: Vec<Vec<u8>> = (0..MAX_IDLE + 3).map(|_| pool.take(2 << 20)).collect();
        bufs.into_iter().for_each(|b| pool.give(b));
        assert_eq!(pool.idle_count(), MAX_IDLE);
    }

    #[test]
    fn bytes_give_their_buffer_back_when_the_last_is_dropped() {
        let pool = pool();
        let mut buf = pool.take(POOLED_CAPACITY);
        buf.extend_from_slice(&[7; 100]);
        let ptr = buf.as_ptr();
        let b = pool.into_bytes(buf);
        let c = b.slice(10..);
        drop(b);
        assert_eq!(pool.idle_count(), 0);
        assert_eq!(&c[..], &[7; 90][..], "a slice still reads it");
        drop(c);
        let again = pool.take(POOLED_CAPACITY);
        assert_eq!(again.as_ptr(), ptr);
    }

    #[test]
    fn a_shared_plaintext_comes_back_only_from_its_last_holder() {
        let pool = pool();
        let mut p = pool.plaintext(CHUNK_BYTES);
        p.extend_from_slice(b"secret");
        let ptr = p.as_ptr();
        let shared = Arc::new(p);
        let other = shared.clone();
        pool.recycle_shared(shared);
        assert_eq!(&other[..], b"secret", "still held: not wiped");
        assert_eq!(pool.idle_count(), 0);
        pool.recycle_shared(other);
        let again = pool.take(CHUNK_BYTES);
        assert_eq!(again.as_ptr(), ptr);
        assert!(again.is_empty());
    }

    #[test]
    fn a_recycled_plaintext_comes_back_zeroed_without_a_fill_or_empty() {
        let pool = pool();
        let mut p = pool.plaintext(CHUNK_BYTES);
        p.extend_from_slice(&[0xaa; CHUNK_BYTES]);
        let ptr = p.as_ptr();
        pool.recycle(p);
        let z = pool.plaintext_zeroed(1 << 20);
        assert_eq!(z.as_ptr(), ptr, "the recycled buffer");
        assert_eq!(z.len(), 1 << 20);
        assert!(z.iter().all(|b| *b == 0), "wiped");
        assert!(z.capacity() >= POOLED_CAPACITY);
        pool.recycle(z);
        // Taken for ciphertext, the same buffer comes empty.
        let e = pool.take(2 << 20);
        assert_eq!(e.as_ptr(), ptr);
        assert!(e.is_empty());
        // Ciphertext given back is filled when taken zeroed.
        let mut c = e;
        c.extend_from_slice(&[5; 4096]);
        pool.give(c);
        let z = pool.plaintext_zeroed(CHUNK_BYTES);
        assert_eq!(z.as_ptr(), ptr);
        assert!(z.len() == CHUNK_BYTES && z.iter().all(|b| *b == 0));
        // Outside the pooled range: a plain zeroed buffer.
        assert_eq!(pool.plaintext_zeroed(10).as_slice(), &[0; 10]);
        assert_eq!(pool.idle_count(), 0);
    }

    #[test]
    fn the_pooled_capacity_fits_a_whole_chunk_of_ciphertext() {
        let ct = ciphertext_len(CHUNK_BYTES as u64).unwrap();
        assert_eq!(ct, POOLED_CAPACITY as u64);
    }

    #[test]
    fn a_request_pool_keeps_its_own_size() {
        let pool: &'static BufferPool = Box::leak(Box::new(BufferPool::new(
            REQUEST_CAPACITY,
            REQUEST_FROM,
            REQUEST_IDLE,
        )));
        let mut p = pool.plaintext(REQUEST_CAPACITY);
        assert_eq!(p.capacity(), REQUEST_CAPACITY);
        p.extend_from_slice(&[9; REQUEST_CAPACITY]);
        let ptr = p.as_ptr();
        pool.recycle(p);
        let again = pool.take(REQUEST_FROM);
        assert_eq!(again.as_ptr(), ptr, "the same buffer, taken again");
        assert!(again.is_empty());
        // A chunk-sized buffer is not this pool's, nor a small request.
        pool.give(Vec::with_capacity(POOLED_CAPACITY * 3));
        assert!(pool.take(REQUEST_FROM - 1).capacity() < REQUEST_CAPACITY);
        assert!(pool.take(REQUEST_CAPACITY + 1).capacity() > REQUEST_CAPACITY);
        assert_eq!(pool.idle_count(), 0);
    }

    #[test]
    fn plaintext_bytes_come_back_from_the_last_holder() {
        let pool = pool();
        let mut p = pool.plaintext(CHUNK_BYTES);
        p.extend_from_slice(&[7; 1000]);
        let ptr = p.as_ptr();
        let b = pool.plaintext_bytes(p);
        let part = b.slice(10..20);
        drop(b);
        assert_eq!(pool.idle_count(), 0, "a slice still holds it");
        assert_eq!(&part[..], &[7; 10]);
        drop(part);
        // Back through `recycle` (which wipes, see `Plaintext::into_wiped`).
        let again = pool.take(CHUNK_BYTES);
        assert_eq!(again.as_ptr(), ptr);
        assert!(again.is_empty());
    }
}
