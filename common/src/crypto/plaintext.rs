//! [`Plaintext`]: a byte buffer of decrypted (or not yet encrypted) data
//! that is wiped when dropped.
//!
//! `zeroize` wipes with one volatile store per byte, so that the compiler
//! cannot drop the stores. That costs about a nanosecond a byte: on the
//! path of a sequential write (4 MiB chunks, 64 KiB segments), where every
//! byte passes through several such buffers, the wiping was ~10% of the
//! daemon's CPU time. This wipes with one `memset` of the whole allocation
//! (the spare capacity too) followed by an optimisation barrier on the
//! buffer ([`std::hint::black_box`]), the "memset plus compiler barrier"
//! idiom of `explicit_bzero`: the stores cannot be removed as dead, since
//! the barrier may read them.
//!
//! Invariant: the buffer never reallocates behind the wipe's back in a way
//! this type can see; growing it through `DerefMut` (push, extend) may
//! move it, as with `Zeroizing<Vec<u8>>`, which leaves the old allocation
//! unwiped. Callers that grow a buffer reserve its final size first.

use std::ops::{Deref, DerefMut};

/// Bytes wiped on drop (see the module note).
#[derive(Default, Clone, PartialEq, Eq)]
pub struct Plaintext(Vec<u8>);

impl Plaintext {
    /// Takes ownership of `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// An empty buffer that can hold `capacity` bytes without moving.
    pub fn with_capacity(capacity: usize) -> Self {
        Self(Vec::with_capacity(capacity))
    }

    /// `len` zero bytes.
    pub fn zeroed(len: usize) -> Self {
        Self(vec![0; len])
    }

    /// Wipes the buffer as a drop would and hands back its allocation,
    /// empty, for reuse.
    pub fn into_wiped(self) -> Vec<u8> {
        let mut buf = self.into_zeroed();
        buf.clear();
        std::hint::black_box(&mut buf);
        buf
    }

    /// Wipes the buffer as a drop would and hands back its allocation full
    /// of the zeros (its length is its capacity): a buffer that must be
    /// zero-filled next (say, to decrypt into) needs no second pass.
    pub fn into_zeroed(mut self) -> Vec<u8> {
        let mut buf = std::mem::take(&mut self.0);
        buf.fill(0);
        buf.resize(buf.capacity(), 0);
        std::hint::black_box(&mut buf);
        buf
    }
}

/// Overwrites all of `buf`'s allocation (length and spare capacity) with
/// zeros, in a way the optimiser keeps.
fn wipe(buf: &mut Vec<u8>) {
    buf.fill(0);
    for b in buf.spare_capacity_mut() {
        b.write(0);
    }
    std::hint::black_box(buf.as_mut_ptr());
    std::hint::black_box(&mut *buf);
}

impl Drop for Plaintext {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

impl Deref for Plaintext {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for Plaintext {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl AsRef<[u8]> for Plaintext {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Plaintext {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

impl std::fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Plaintext({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn into_wiped_hands_back_a_wiped_empty_allocation() {
        let mut p = Plaintext::with_capacity(64);
        p.extend_from_slice(b"secret contents");
        let ptr = p.as_ptr();
        let v = p.into_wiped();
        assert!(v.is_empty());
        assert!(v.capacity() >= 64);
        assert_eq!(v.as_ptr(), ptr, "the same allocation");
    }

    #[test]
    fn into_zeroed_hands_back_the_whole_allocation_as_zeros() {
        let mut p = Plaintext::with_capacity(64);
        p.extend_from_slice(b"secret contents");
        let (ptr, cap) = (p.as_ptr(), p.capacity());
        let v = p.into_zeroed();
        assert_eq!(v.as_ptr(), ptr, "the same allocation");
        assert_eq!(v.len(), cap, "all of it");
        assert!(v.iter().all(|&b| b == 0));
    }

    #[test]
    fn wipe_clears_the_bytes() {
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(b"secret contents");
        wipe(&mut v);
        assert_eq!(v.len(), 15, "the length is kept");
        assert!(v.iter().all(|&b| b == 0));
    }

    #[test]
    fn derefs_and_debug_shows_no_bytes() {
        let mut p = Plaintext::with_capacity(8);
        p.extend_from_slice(b"abc");
        assert_eq!(p.as_slice(), b"abc");
        assert_eq!(Plaintext::zeroed(3).as_slice(), &[0, 0, 0]);
        assert_eq!(format!("{p:?}"), "Plaintext(3 bytes)");
        assert_eq!(Plaintext::from(b"x".to_vec()).as_ref(), b"x");
    }
}
