//! File contents: a chunked AEAD in the style of age's STREAM.
//!
//! A file version is a list of immutable objects, each covering a plaintext
//! range of the file. One object is
//!
//! ```text
//! header = "SVC" || 0x01 || seed[24]                       (28 bytes)
//! segment i = AES-256-GCM(k, prefix || u32be(i) || last, aad, plaintext_i) || tag[16]
//! ```
//!
//! with `k || prefix = HKDF-SHA256(ikm = content key, salt = seed, info =
//! "securevault/v1/object-key", 39 bytes)` and `aad = frame(
//! "securevault/v1/content", [file id, object id, u64be(object offset)])`. The
//! random seed gives every object its own key and nonce prefix, so nonces
//! never repeat even if an object id were reused; the counter orders segments
//! and the last-segment flag (1 only on the final segment) makes truncation at
//! a segment boundary and appended segments fail; the AAD ties every segment
//! to its file, its object and the object's position, and (through the label)
//! to format version 1.
//!
//! Segments hold [`SEGMENT_SIZE`] = 64 KiB of plaintext; only the last may be
//! shorter, and it is empty only when the whole object is. 64 KiB keeps the
//! tag overhead at 0.024 %, matches the 64-128 KiB requests the kernel sends
//! through FUSE, and bounds a random read's amplification to one segment
//! (gocryptfs's 4 KiB blocks cost 0.8 % in nonces and tags and 16 times the
//! AEAD calls;
//! age and rclone crypt also use 64 KiB). Any plaintext range is read with
//! the header plus the segments that cover it ([`segments_for_range`]).
//!
//! Every object MUST get a fresh random [`ObjectId`] and seed: the id in every
//! segment's AAD stops an older object from being served in place of the
//! current one (the server also refuses to overwrite an existing object id).
//!
//! The file's attribute record also commits to each object
//! ([`ObjectCheck`]): to its seed (record version 2), which a reader checks
//! against the header of the object, whole or a range, before opening any
//! segment; or, in version 1 records, to the SHA-256 of its whole
//! ciphertext. Either way a server cannot substitute another object.

use std::ops::Range;

use zeroize::Zeroizing;

use super::aad::frame;
use super::attrs::ObjectEntry;
pub use super::commitment::{ObjectCheck, ObjectDigest, ObjectSeed};
use super::gcm::{Gcm, NONCE_LEN};
use super::keys::hkdf_sha256;
use super::subkeys::ContentKey;
use super::{CryptoError, random_array};
use crate::ids::{NodeId, ObjectId};

/// Plaintext bytes per segment.
pub const SEGMENT_SIZE: usize = 64 * 1024;
/// AES-GCM tag length.
pub const TAG_LEN: usize = super::gcm::TAG_LEN;
/// Ciphertext bytes of a full segment.
pub const SEGMENT_CIPHERTEXT_SIZE: usize = SEGMENT_SIZE + TAG_LEN;
/// Magic and format version at the start of every object.
pub const MAGIC: [u8; 4] = *b"SVC\x01";
/// Length of the random per-object seed.
pub const SEED_LEN: usize = 24;
/// Length of an object header.
pub const HEADER_LEN: usize = MAGIC.len() + SEED_LEN;
/// The most segments one object may have (the counter is 32 bits).
pub const MAX_SEGMENTS: u64 = 1 << 32;
const NONCE_PREFIX_LEN: usize = 7;
const OBJECT_KEY_INFO: &[u8] = b"securevault/v1/object-key";
const LABEL: &str = "securevault/v1/content";
const SEG: u64 = SEGMENT_SIZE as u64;
const SEG_CT: u64 = SEGMENT_CIPHERTEXT_SIZE as u64;
const HDR: u64 = HEADER_LEN as u64;
const TAG: u64 = TAG_LEN as u64;

/// Where an object belongs: bound into every segment's AAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjectBinding {
    /// The file (node) the object is part of.
    pub file: NodeId,
    /// The object's own id.
    pub object: ObjectId,
    /// Plaintext offset of the object within the file.
    pub offset: u64,
}

impl ObjectBinding {
    fn aad(&self) -> Result<Vec<u8>, CryptoError> {
        frame(
            LABEL,
            &[
                self.file.as_bytes(),
                self.object.as_bytes(),
                &self.offset.to_be_bytes(),
            ],
        )
    }
}

/// How many segments an object of `plaintext_len` bytes has (at least one).
pub fn segment_count(plaintext_len: u64) -> u64 {
    plaintext_len.div_ceil(SEG).max(1)
}

/// The ciphertext length of an object of `plaintext_len` bytes.
pub fn ciphertext_len(plaintext_len: u64) -> Result<u64, CryptoError> {
    let n = segment_count(plaintext_len);
    if n > MAX_SEGMENTS {
        return Err(CryptoError::OutOfRange);
    }
    HDR.checked_add(plaintext_len)
        .and_then(|x| x.checked_add(n * TAG))
        .ok_or(CryptoError::OutOfRange)
}

/// The plaintext length of an object of `ciphertext_len` bytes, if that is a
/// length an object can have.
pub fn plaintext_len(ciphertext_len: u64) -> Result<u64, CryptoError> {
    let bad = CryptoError::Malformed {
        what: "content object",
        reason: "impossible ciphertext length",
    };
    let body = ciphertext_len.checked_sub(HDR).ok_or(bad.clone())?;
    if body < TAG {
        return Err(bad);
    }
    let n = body.div_ceil(SEG_CT);
    let pt = body - n * TAG;
    if segment_count(pt) != n || n > MAX_SEGMENTS {
        return Err(bad);
    }
    Ok(pt)
}

/// The segments of an object of `plaintext_len` bytes that cover the
/// plaintext range `offset..offset + len` (clipped to the object). Empty when
/// the range is empty or starts at or past the end.
pub fn segments_for_range(plaintext_len: u64, offset: u64, len: u64) -> Range<u64> {
    let end = offset.saturating_add(len).min(plaintext_len);
    if offset >= end {
        return 0..0;
    }
    offset / SEG..end.div_ceil(SEG)
}

/// The byte range, within the object's ciphertext, of `segments`.
pub fn ciphertext_range(
    plaintext_len: u64,
    segments: Range<u64>,
) -> Result<Range<u64>, CryptoError> {
    let total = ciphertext_len(plaintext_len)?;
    if segments.start > segments.end || segments.end > segment_count(plaintext_len) {
        return Err(CryptoError::OutOfRange);
    }
    // Both ends are clamped: the last segment may be short, and an empty
    // range at the end must not point past the object.
    let start = (HDR + segments.start * SEG_CT).min(total);
    let end = (HDR + segments.end * SEG_CT).min(total);
    Ok(start..end)
}

/// The per-object AEAD state shared by encryption and decryption.
struct SegmentCipher {
    cipher: Gcm,
    prefix: [u8; NONCE_PREFIX_LEN],
    aad: Vec<u8>,
}

impl SegmentCipher {
    fn new(key: &ContentKey, seed: &[u8], binding: &ObjectBinding) -> Result<Self, CryptoError> {
        let mut okm = Zeroizing::new([0u8; 32 + NONCE_PREFIX_LEN]);
        hkdf_sha256(
            key.expose(),
            Some(seed),
            OBJECT_KEY_INFO,
            okm.as_mut_slice(),
        )?;
        let (k, p) = okm.split_at(32);
        let cipher = Gcm::new(k)?;
        let mut prefix = [0u8; NONCE_PREFIX_LEN];
        prefix.copy_from_slice(p);
        Ok(Self {
            cipher,
            prefix,
            aad: binding.aad()?,
        })
    }

    fn nonce(&self, index: u64, last: bool) -> Result<[u8; NONCE_LEN], CryptoError> {
        let counter = u32::try_from(index).map_err(|_| CryptoError::OutOfRange)?;
        let mut n = [0u8; NONCE_LEN];
        let (p, rest) = n.split_at_mut(NONCE_PREFIX_LEN);
        p.copy_from_slice(&self.prefix);
        let (c, flag) = rest.split_at_mut(4);
        c.copy_from_slice(&counter.to_be_bytes());
        flag.fill(u8::from(last));
        Ok(n)
    }
}

/// Encrypts one object, segment by segment, front to back.
///
/// The counter only moves forward, so a segment index is never sealed twice
/// under one key; an object that must change is written anew as another
/// object with a fresh seed.
pub struct ObjectEncryptor {
    cipher: SegmentCipher,
    header: [u8; HEADER_LEN],
    next: u64,
    finished: bool,
}

impl std::fmt::Debug for ObjectEncryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectEncryptor")
            .field("next", &self.next)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl ObjectEncryptor {
    /// Starts a new object with a fresh random seed.
    pub fn new(key: &ContentKey, binding: &ObjectBinding) -> Result<Self, CryptoError> {
        Self::with_seed(key, binding, &random_array()?)
    }

    pub(crate) fn with_seed(
        key: &ContentKey,
        binding: &ObjectBinding,
        seed: &[u8; SEED_LEN],
    ) -> Result<Self, CryptoError> {
        let mut header = [0u8; HEADER_LEN];
        let (m, s) = header.split_at_mut(MAGIC.len());
        m.copy_from_slice(&MAGIC);
        s.copy_from_slice(seed);
        Ok(Self {
            cipher: SegmentCipher::new(key, seed, binding)?,
            header,
            next: 0,
            finished: false,
        })
    }

    /// The object header, which precedes the first segment.
    pub fn header(&self) -> &[u8; HEADER_LEN] {
        &self.header
    }

    /// True once the last segment has been sealed.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Encrypts the next segment and appends its ciphertext and tag to `out`.
    /// `plaintext` must be exactly [`SEGMENT_SIZE`] bytes unless `last`; a
    /// last segment holds 1 to `SEGMENT_SIZE` bytes, or 0 when it is also the
    /// first (an empty object).
    pub fn seal_segment(
        &mut self,
        plaintext: &[u8],
        last: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        if self.finished {
            return Err(CryptoError::OutOfRange);
        }
        let len_ok = if last {
            plaintext.len() <= SEGMENT_SIZE && (!plaintext.is_empty() || self.next == 0)
        } else {
            plaintext.len() == SEGMENT_SIZE
        };
        if !len_ok || self.next >= MAX_SEGMENTS {
            return Err(CryptoError::OutOfRange);
        }
        let nonce = self.cipher.nonce(self.next, last)?;
        let start = out.len();
        out.extend_from_slice(plaintext);
        let body = out.get_mut(start..).ok_or(CryptoError::OutOfRange)?;
        let tag = self.cipher.cipher.seal(nonce, &self.cipher.aad, body)?;
        out.extend_from_slice(&tag);
        self.next += 1;
        self.finished = last;
        Ok(())
    }
}

/// Encrypts a whole object held in memory.
pub fn encrypt_object(
    key: &ContentKey,
    binding: &ObjectBinding,
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    seal_all(ObjectEncryptor::new(key, binding)?, plaintext)
}

/// Encrypts a whole object held in memory, appending its ciphertext to
/// `out` (a buffer to reuse; it is grown to fit when it is too small).
pub fn encrypt_object_into(
    key: &ContentKey,
    binding: &ObjectBinding,
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    seal_all_into(ObjectEncryptor::new(key, binding)?, plaintext, out)
}

pub(crate) fn seal_all(enc: ObjectEncryptor, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut out = Vec::new();
    seal_all_into(enc, plaintext, &mut out)?;
    Ok(out)
}

fn seal_all_into(
    mut enc: ObjectEncryptor,
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    let total = ciphertext_len(plaintext.len() as u64)?;
    out.reserve(usize::try_from(total).map_err(|_| CryptoError::OutOfRange)?);
    out.extend_from_slice(enc.header());
    let mut chunks = plaintext.chunks(SEGMENT_SIZE).peekable();
    if chunks.peek().is_none() {
        enc.seal_segment(&[], true, out)?;
    }
    while let Some(chunk) = chunks.next() {
        enc.seal_segment(chunk, chunks.peek().is_none(), out)?;
    }
    Ok(())
}

/// Decrypts segments of one object, in any order.
pub struct ObjectDecryptor {
    cipher: SegmentCipher,
    plaintext_len: u64,
    segments: u64,
}

impl std::fmt::Debug for ObjectDecryptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectDecryptor")
            .field("plaintext_len", &self.plaintext_len)
            .finish_non_exhaustive()
    }
}

impl ObjectDecryptor {
    /// Prepares to decrypt the object with this `header` whose authenticated
    /// plaintext length (from the file's object list) is `plaintext_len`.
    pub fn new(
        key: &ContentKey,
        binding: &ObjectBinding,
        header: &[u8],
        plaintext_len: u64,
    ) -> Result<Self, CryptoError> {
        let seed = ObjectSeed::of_header(header)?;
        if header.len() != HEADER_LEN {
            return Err(CryptoError::Malformed {
                what: "content object",
                reason: "header length",
            });
        }
        let segments = segment_count(plaintext_len);
        if segments > MAX_SEGMENTS {
            return Err(CryptoError::OutOfRange);
        }
        Ok(Self {
            cipher: SegmentCipher::new(key, seed.as_bytes(), binding)?,
            plaintext_len,
            segments,
        })
    }

    /// Prepares to decrypt segments of the object listed as `entry` in
    /// `file`'s object list, whose `header` a range read fetched: checks the
    /// header against the entry's seed commitment first (FORMAT.md 9.9).
    pub fn for_entry(
        key: &ContentKey,
        file: NodeId,
        entry: &ObjectEntry,
        header: &[u8],
    ) -> Result<Self, CryptoError> {
        entry.check.verify_header(header)?;
        let binding = ObjectBinding {
            file,
            object: entry.id,
            offset: entry.offset,
        };
        Self::new(key, &binding, header, entry.len)
    }

    /// The number of segments in the object.
    pub fn segment_count(&self) -> u64 {
        self.segments
    }

    fn segment_plaintext_len(&self, index: u64) -> u64 {
        if index + 1 == self.segments {
            self.plaintext_len - index * SEG
        } else {
            SEG
        }
    }

    /// Authenticates and decrypts segment `index`, appending its plaintext to
    /// `out`. On any error `out` is left as it was.
    pub fn open_segment(
        &self,
        index: u64,
        ciphertext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptoError> {
        let len = self.checked_segment_len(index, ciphertext)?;
        let start = out.len();
        out.resize(start + len, 0);
        let result = match out.get_mut(start..) {
            Some(buf) => self.open_segment_into(index, ciphertext, buf),
            None => Err(CryptoError::OutOfRange),
        };
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    /// Authenticates and decrypts segment `index` into `out`, which must be
    /// exactly as long as its plaintext. On any error `out` is all zeros.
    pub fn open_segment_into(
        &self,
        index: u64,
        ciphertext: &[u8],
        out: &mut [u8],
    ) -> Result<(), CryptoError> {
        let len = self.checked_segment_len(index, ciphertext)?;
        if out.len() != len {
            out.fill(0);
            return Err(CryptoError::OutOfRange);
        }
        let (body, tag) = ciphertext.split_at(len);
        let nonce = self.cipher.nonce(index, index + 1 == self.segments)?;
        self.cipher
            .cipher
            .open(nonce, &self.cipher.aad, body, tag, out)
            .map_err(|_| CryptoError::SegmentAuthentication { index })
    }

    /// The plaintext length of segment `index`, after checking that the
    /// segment exists and `ciphertext` is as long as it must be.
    fn checked_segment_len(&self, index: u64, ciphertext: &[u8]) -> Result<usize, CryptoError> {
        if index >= self.segments {
            return Err(CryptoError::OutOfRange);
        }
        let expected = self.segment_plaintext_len(index) + TAG;
        if ciphertext.len() as u64 != expected {
            return Err(CryptoError::CiphertextLength {
                expected,
                actual: ciphertext.len() as u64,
            });
        }
        usize::try_from(expected - TAG).map_err(|_| CryptoError::OutOfRange)
    }

    /// Authenticates and decrypts a whole object in place: `buf` holds its
    /// ciphertext, header first, and afterwards holds its plaintext, all of
    /// it, from the start. Each segment's plaintext moves down over the
    /// header and the tags before it, so no second buffer is needed (nor
    /// zero-filled). On any error every byte of `buf` is zero (its length
    /// unchanged): no plaintext is left from the segments that did
    /// authenticate either.
    pub fn open_object_in_place(&self, buf: &mut Vec<u8>) -> Result<(), CryptoError> {
        let result = self.open_all_within(buf);
        match result {
            Ok(()) => buf.truncate(usize::try_from(self.plaintext_len).unwrap_or(0)),
            Err(_) => buf.fill(0),
        }
        result
    }

    fn open_all_within(&self, buf: &mut [u8]) -> Result<(), CryptoError> {
        let expected = ciphertext_len(self.plaintext_len)?;
        if buf.len() as u64 != expected {
            return Err(CryptoError::CiphertextLength {
                expected,
                actual: buf.len() as u64,
            });
        }
        let seg = usize::try_from(SEG).map_err(|_| CryptoError::OutOfRange)?;
        for index in 0..self.segments {
            let i = usize::try_from(index).map_err(|_| CryptoError::OutOfRange)?;
            let len = usize::try_from(self.segment_plaintext_len(index))
                .map_err(|_| CryptoError::OutOfRange)?;
            // Plaintext goes to `i * SEG`; its ciphertext starts after the
            // header and the `i` full segments (with tags) before it.
            let to = i * seg;
            let at = HEADER_LEN + i * (seg + TAG_LEN);
            let in_out = buf
                .get_mut(to..at + len + TAG_LEN)
                .ok_or(CryptoError::OutOfRange)?;
            let nonce = self.cipher.nonce(index, index + 1 == self.segments)?;
            self.cipher
                .cipher
                .open_within(nonce, &self.cipher.aad, in_out, at - to)
                .map_err(|_| CryptoError::SegmentAuthentication { index })?;
        }
        Ok(())
    }

    /// Decrypts the plaintext range `offset..offset + len` (clipped to the
    /// object) from `ciphertext`, which must be exactly the bytes
    /// [`ciphertext_range`] names for [`segments_for_range`] of that range.
    pub fn decrypt_range(
        &self,
        offset: u64,
        len: u64,
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let segments = segments_for_range(self.plaintext_len, offset, len);
        let range = ciphertext_range(self.plaintext_len, segments.clone())?;
        let expected = range.end - range.start;
        if ciphertext.len() as u64 != expected {
            return Err(CryptoError::CiphertextLength {
                expected,
                actual: ciphertext.len() as u64,
            });
        }
        let mut plain = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
        let mut rest = ciphertext;
        for index in segments.clone() {
            let seg_len = usize::try_from(self.segment_plaintext_len(index) + TAG)
                .map_err(|_| CryptoError::OutOfRange)?;
            let (seg, tail) = rest
                .split_at_checked(seg_len)
                .ok_or(CryptoError::OutOfRange)?;
            self.open_segment(index, seg, &mut plain)?;
            rest = tail;
        }
        // Cut the whole segments down to the requested bytes.
        let first = segments.start * SEG;
        let end = offset.saturating_add(len).min(self.plaintext_len);
        let skip =
            usize::try_from(offset.saturating_sub(first)).map_err(|_| CryptoError::OutOfRange)?;
        let keep =
            usize::try_from(end.saturating_sub(offset)).map_err(|_| CryptoError::OutOfRange)?;
        plain.drain(..skip.min(plain.len()));
        plain.truncate(keep);
        Ok(plain)
    }
}

/// Decrypts a whole object whose authenticated plaintext length is
/// `plaintext_len`.
pub fn decrypt_object(
    key: &ContentKey,
    binding: &ObjectBinding,
    ciphertext: &[u8],
    plaintext_len: u64,
) -> Result<Vec<u8>, CryptoError> {
    let expected = ciphertext_len(plaintext_len)?;
    if ciphertext.len() as u64 != expected {
        return Err(CryptoError::CiphertextLength {
            expected,
            actual: ciphertext.len() as u64,
        });
    }
    let (header, body) = ciphertext
        .split_at_checked(HEADER_LEN)
        .ok_or(CryptoError::OutOfRange)?;
    let dec = ObjectDecryptor::new(key, binding, header, plaintext_len)?;
    // Every segment is authenticated, including the single empty segment of
    // an empty object.
    let mut plain = Vec::with_capacity(usize::try_from(plaintext_len).unwrap_or(0));
    let mut rest = body;
    for index in 0..dec.segment_count() {
        let seg_len = usize::try_from(dec.segment_plaintext_len(index) + TAG)
            .map_err(|_| CryptoError::OutOfRange)?;
        let (seg, tail) = rest
            .split_at_checked(seg_len)
            .ok_or(CryptoError::OutOfRange)?;
        dec.open_segment(index, seg, &mut plain)?;
        rest = tail;
    }
    Ok(plain)
}

/// Verifies a downloaded object against its entry in the file's object list
/// (the commitment first, then every segment) and decrypts it.
pub fn open_object(
    key: &ContentKey,
    file: NodeId,
    entry: &ObjectEntry,
    ciphertext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    entry.check.verify_whole(ciphertext)?;
    let binding = ObjectBinding {
        file,
        object: entry.id,
        offset: entry.offset,
    };
    decrypt_object(key, &binding, ciphertext, entry.len)
}

mod opener;
#[cfg(test)]
mod tests;

pub use opener::ObjectOpener;
