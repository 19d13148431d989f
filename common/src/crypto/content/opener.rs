//! [`ObjectOpener`]: opens one whole object while its ciphertext streams
//! in, front to back, in pieces of any size (the chunks a network read
//! hands over).
//!
//! Each segment is authenticated and decrypted out of place, from the
//! piece it arrived in straight into the plaintext buffer, as soon as its
//! last byte is there: a download is not first copied into a ciphertext
//! buffer and read again to be decrypted, and the decryption overlaps the
//! transfer. Only a segment (or the header) split across two pieces is
//! gathered in a small buffer first.
//!
//! Invariants:
//! - the header is checked against the entry's commitment before any
//!   segment is opened (a seed commitment, FORMAT.md 9.9); a digest
//!   commitment (record version 1) is checked over every byte received
//!   before [`ObjectOpener::finish`] hands out any plaintext;
//! - the plaintext is handed out only whole: every segment authenticated,
//!   the last one flagged last, nothing missing and nothing extra;
//! - after the first error every later call fails with it, and the
//!   plaintext buffer is wiped at once (and again when dropped).

use std::borrow::Borrow;

use sha2::{Digest, Sha256};

use super::{
    CryptoError, HEADER_LEN, ObjectBinding, ObjectCheck, ObjectDecryptor, SEG, TAG, TAG_LEN,
};
use crate::crypto::Plaintext;
use crate::crypto::attrs::ObjectEntry;
use crate::crypto::subkeys::ContentKey;
use crate::ids::NodeId;

/// Opens one whole object streamed in order (see the module note).
pub struct ObjectOpener<K> {
    key: K,
    file: NodeId,
    entry: ObjectEntry,
    /// Set once the header arrived and matched the commitment.
    dec: Option<ObjectDecryptor>,
    /// The header, or the segment, whose bytes arrived only in part.
    partial: Vec<u8>,
    /// The next segment to open.
    next: u64,
    /// The plaintext: `entry.len` bytes, filled segment by segment.
    out: Plaintext,
    /// Over every byte received, for a digest commitment.
    hasher: Option<Sha256>,
    failed: Option<CryptoError>,
}

impl<K> std::fmt::Debug for ObjectOpener<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectOpener")
            .field("object", &self.entry.id)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl<K: Borrow<ContentKey>> ObjectOpener<K> {
    /// Prepares to open the object listed as `entry` in `file`'s object
    /// list. `out`, empty or all zeros, receives the plaintext: it is cut
    /// or zero-filled to `entry.len` bytes (a zeroed buffer of that length
    /// costs nothing). The caller bounds `entry.len`: this holds all of it.
    pub fn new(key: K, file: NodeId, entry: &ObjectEntry, mut out: Plaintext) -> Self {
        let failed = match usize::try_from(entry.len) {
            Ok(len) if out.len() >= len => {
                out.truncate(len);
                None
            }
            Ok(len) => {
                out.resize(len, 0);
                None
            }
            Err(_) => Some(CryptoError::OutOfRange),
        };
        Self {
            key,
            file,
            entry: entry.clone(),
            dec: None,
            partial: Vec::with_capacity(HEADER_LEN),
            next: 0,
            out,
            hasher: matches!(entry.check, ObjectCheck::Digest(_)).then(Sha256::new),
            failed,
        }
    }

    /// Takes the next `data` of the ciphertext. Fails (and keeps failing)
    /// on a header, segment or length that does not check out.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), CryptoError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if let Some(h) = &mut self.hasher {
            h.update(data);
        }
        match self.open_from(data) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.out.fill(0);
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    /// The plaintext, once all of the object arrived and checked out.
    pub fn finish(mut self) -> Result<Plaintext, CryptoError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        let segments = self.dec.as_ref().map_or(0, ObjectDecryptor::segment_count);
        if self.dec.is_none() || self.next != segments || !self.partial.is_empty() {
            return Err(CryptoError::CiphertextLength {
                expected: super::ciphertext_len(self.entry.len)?,
                actual: self.received(),
            });
        }
        if let (Some(h), ObjectCheck::Digest(want)) = (self.hasher.take(), &self.entry.check) {
            want.verify_hash(h)?;
        }
        Ok(std::mem::take(&mut self.out))
    }

    /// Ciphertext bytes taken so far (for an error message).
    fn received(&self) -> u64 {
        match &self.dec {
            None => self.partial.len() as u64,
            Some(dec) => {
                let done: u64 = (0..self.next)
                    .map(|i| dec.segment_plaintext_len(i) + TAG)
                    .sum();
                HEADER_LEN as u64 + done + self.partial.len() as u64
            }
        }
    }

    fn open_from(&mut self, mut data: &[u8]) -> Result<(), CryptoError> {
        while !data.is_empty() {
            let Some(dec) = &self.dec else {
                let take = (HEADER_LEN - self.partial.len()).min(data.len());
                let (head, rest) = data.split_at(take);
                self.partial.extend_from_slice(head);
                data = rest;
                if self.partial.len() == HEADER_LEN {
                    let binding = ObjectBinding {
                        file: self.file,
                        object: self.entry.id,
                        offset: self.entry.offset,
                    };
                    self.entry.check.verify_header(&self.partial)?;
                    let dec = ObjectDecryptor::new(
                        self.key.borrow(),
                        &binding,
                        &self.partial,
                        self.entry.len,
                    )?;
                    self.partial = Vec::new();
                    self.dec = Some(dec);
                }
                continue;
            };
            let index = self.next;
            if index >= dec.segment_count() {
                return Err(CryptoError::CiphertextLength {
                    expected: super::ciphertext_len(self.entry.len)?,
                    actual: self.received() + data.len() as u64,
                });
            }
            let seg_len = usize::try_from(dec.segment_plaintext_len(index) + TAG)
                .map_err(|_| CryptoError::OutOfRange)?;
            let to = usize::try_from(index * SEG).map_err(|_| CryptoError::OutOfRange)?;
            let out = self
                .out
                .get_mut(to..to + seg_len - TAG_LEN)
                .ok_or(CryptoError::OutOfRange)?;
            if self.partial.is_empty() && data.len() >= seg_len {
                // The common case: the whole segment is in this piece.
                let (seg, rest) = data.split_at(seg_len);
                dec.open_segment_into(index, seg, out)?;
                data = rest;
            } else {
                self.partial
                    .reserve_exact(seg_len.saturating_sub(self.partial.len()));
                let take = (seg_len - self.partial.len()).min(data.len());
                let (head, rest) = data.split_at(take);
                self.partial.extend_from_slice(head);
                data = rest;
                if self.partial.len() < seg_len {
                    continue;
                }
                dec.open_segment_into(index, &self.partial, out)?;
                self.partial.clear();
            }
            self.next += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::cast_possible_truncation)]

    use proptest::prelude::*;

    use super::*;
    use crate::crypto::content::{
        ObjectDigest, ObjectSeed, SEGMENT_CIPHERTEXT_SIZE, SEGMENT_SIZE, encrypt_object,
        open_object,
    };
    use crate::crypto::subkeys::VaultKey;
    use crate::ids::ObjectId;

    fn key() -> ContentKey {
        VaultKey::from_bytes([0x42; 32]).subkeys().unwrap().content
    }

    const FILE: NodeId = NodeId::from_bytes([1; 16]);

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    /// An object of `len` bytes at offset 8 MiB and its entry, committed by
    /// seed or (`digest`) by SHA-256.
    fn object(len: usize, digest: bool) -> (ObjectEntry, Vec<u8>) {
        let b = ObjectBinding {
            file: FILE,
            object: ObjectId::from_bytes([2; 16]),
            offset: 8 << 20,
        };
        let ct = encrypt_object(&key(), &b, &pattern(len)).unwrap();
        let check = if digest {
            ObjectCheck::Digest(ObjectDigest::of(&ct))
        } else {
            ObjectCheck::Seed(ObjectSeed::of_header(&ct).unwrap())
        };
        let entry = ObjectEntry {
            id: b.object,
            offset: b.offset,
            len: len as u64,
            check,
        };
        (entry, ct)
    }

    /// Feeds `ct` in pieces of the given sizes (cycled; the rest at once
    /// when `sizes` is empty).
    fn stream(
        entry: &ObjectEntry,
        ct: &[u8],
        sizes: &[usize],
        out: Plaintext,
    ) -> Result<Vec<u8>, CryptoError> {
        let mut opener = ObjectOpener::new(key(), FILE, entry, out);
        let mut rest = ct;
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes
                .get(i % sizes.len().max(1))
                .copied()
                .unwrap_or(rest.len())
                .clamp(1, rest.len());
            let (piece, tail) = rest.split_at(n);
            opener.feed(piece)?;
            rest = tail;
            i += 1;
        }
        opener.finish().map(|p| p.to_vec())
    }

    #[test]
    fn streamed_pieces_of_any_size_open_to_the_plaintext() {
        let seg = SEGMENT_CIPHERTEXT_SIZE;
        for len in [
            0,
            1,
            SEGMENT_SIZE - 1,
            SEGMENT_SIZE,
            SEGMENT_SIZE + 1,
            3 * SEGMENT_SIZE + 17,
        ] {
            for digest in [false, true] {
                let (entry, ct) = object(len, digest);
                for sizes in [
                    vec![],
                    vec![1],
                    vec![HEADER_LEN],
                    vec![7, seg - 3],
                    vec![seg],
                    vec![seg + HEADER_LEN],
                    vec![100_000],
                ] {
                    let got = stream(&entry, &ct, &sizes, Plaintext::default()).unwrap();
                    assert!(
                        got == pattern(len),
                        "len {len}, digest {digest}, pieces {sizes:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_zeroed_buffer_of_the_right_length_or_longer_is_used_as_it_is() {
        let (entry, ct) = object(2 * SEGMENT_SIZE + 9, false);
        for extra in [0, 1000] {
            let out = Plaintext::new(vec![0; 2 * SEGMENT_SIZE + 9 + extra]);
            assert!(stream(&entry, &ct, &[50_000], out).unwrap() == pattern(2 * SEGMENT_SIZE + 9));
        }
    }

    #[test]
    fn what_the_whole_object_opener_refuses_the_stream_refuses() {
        let len = 3 * SEGMENT_SIZE + 5;
        for digest in [false, true] {
            let (entry, ct) = object(len, digest);
            for at in [
                0,
                5,
                HEADER_LEN,
                HEADER_LEN + 1,
                SEGMENT_CIPHERTEXT_SIZE + HEADER_LEN,
                ct.len() - 1,
            ] {
                let mut bad = ct.clone();
                bad[at] ^= 1;
                let whole = open_object(&key(), FILE, &entry, &bad);
                let streamed = stream(&entry, &bad, &[40_000], Plaintext::default());
                assert!(
                    whole.is_err() && streamed.is_err(),
                    "byte {at}, digest {digest}: {streamed:?}"
                );
            }
            // Cut short at a segment boundary, cut inside one, one byte more.
            for cut in [
                HEADER_LEN,
                HEADER_LEN + SEGMENT_CIPHERTEXT_SIZE,
                ct.len() - 1,
            ] {
                let r = stream(&entry, &ct[..cut], &[], Plaintext::default());
                assert!(
                    matches!(r, Err(CryptoError::CiphertextLength { .. })),
                    "cut {cut}: {r:?}"
                );
            }
            let mut longer = ct.clone();
            longer.push(0);
            assert!(matches!(
                stream(&entry, &longer, &[], Plaintext::default()),
                Err(CryptoError::CiphertextLength { .. })
            ));
        }
        // Another object of the same file and place (a replay) fails on the
        // header, before any segment.
        let (entry, _) = object(len, false);
        let (_, other) = object(len, false);
        assert_eq!(
            stream(&entry, &other, &[10], Plaintext::default()).unwrap_err(),
            CryptoError::SeedMismatch
        );
        let (entry, _) = object(len, true);
        let (_, other) = object(len, true);
        assert_eq!(
            stream(&entry, &other, &[], Plaintext::default()).unwrap_err(),
            CryptoError::DigestMismatch
        );
    }

    #[test]
    fn after_an_error_nothing_is_opened_and_the_buffer_is_wiped() {
        let len = 3 * SEGMENT_SIZE;
        let (entry, ct) = object(len, false);
        let mut opener = ObjectOpener::new(key(), FILE, &entry, Plaintext::default());
        // Two good segments, then a bad one.
        let good = HEADER_LEN + 2 * SEGMENT_CIPHERTEXT_SIZE;
        opener.feed(&ct[..good]).unwrap();
        assert!(
            opener.out.iter().any(|b| *b != 0),
            "the good segments were opened"
        );
        let mut bad = ct[good..].to_vec();
        bad[3] ^= 1;
        assert_eq!(
            opener.feed(&bad),
            Err(CryptoError::SegmentAuthentication { index: 2 })
        );
        assert!(opener.failed.is_some());
        assert!(opener.out.iter().all(|b| *b == 0), "plaintext left behind");
        assert!(opener.feed(&[]).is_err(), "stays failed");
        assert!(opener.finish().is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn any_split_opens_like_the_whole(len in 0usize..200_000, a in 1usize..70_000, b in 1usize..70_000) {
            let (entry, ct) = object(len, false);
            let streamed = stream(&entry, &ct, &[a, b], Plaintext::default()).unwrap();
            prop_assert!(streamed == open_object(&key(), FILE, &entry, &ct).unwrap());
        }
    }
}
