//! Content objects as a hostile server serves them: `decrypt_object`,
//! `ObjectDecryptor` and the length/range arithmetic on arbitrary input.
//!
//! Input: eight big-endian u64 words, then the ciphertext.
//!   w0  plaintext length: `w0 % (4 << 20)`, or, when its top bit is set, the
//!       plaintext length the ciphertext's own length implies (so the fuzzer
//!       reaches the AEAD instead of the length check)
//!   w1, w2  a plaintext range (offset, len), w3, w4  a segment range
//!   w5  a segment index, w6  the binding's offset
//!   w7  an unbounded length for the pure arithmetic
//! Properties: never panics; nothing decrypts (no plaintext from forged
//! bytes, except the empty read of an empty range); `ciphertext_len` and
//! `plaintext_len` are inverse wherever either succeeds; `segments_for_range`
//! covers exactly the requested, clipped range; `ciphertext_range` stays
//! inside the object and matches the segments it names.
#![no_main]

use std::ops::Range;
use std::sync::LazyLock;

use common::crypto::CryptoError;
use common::crypto::attrs::ObjectEntry;
use common::crypto::content::{
    HEADER_LEN, ObjectBinding, ObjectCheck, ObjectDecryptor, ObjectDigest, ObjectSeed, SEGMENT_CIPHERTEXT_SIZE,
    SEGMENT_SIZE, TAG_LEN, ciphertext_len, ciphertext_range, decrypt_object, open_object,
    plaintext_len, segment_count, segments_for_range,
};
use common::crypto::subkeys::{ContentKey, VaultKey};
use common::{NodeId, ObjectId};
use libfuzzer_sys::fuzz_target;

const SEG: u64 = SEGMENT_SIZE as u64;
const SEG_CT: u64 = SEGMENT_CIPHERTEXT_SIZE as u64;
const HDR: u64 = HEADER_LEN as u64;
const TAG: u64 = TAG_LEN as u64;
const FILE: NodeId = NodeId::from_bytes([0xe0; 16]);
const OBJECT: ObjectId = ObjectId::from_bytes([0xf0; 16]);

static KEY: LazyLock<ContentKey> =
    LazyLock::new(|| match VaultKey::from_bytes([0x33; 32]).subkeys() {
        Ok(s) => s.content,
        Err(e) => panic!("subkeys: {e:?}"),
    });

/// The length arithmetic for one plaintext length `p` and ciphertext length `c`.
fn check_lengths(p: u64, c: u64) {
    if let Ok(ct) = ciphertext_len(p) {
        let n = segment_count(p);
        assert_eq!(ct, HDR + p + n * TAG, "ciphertext_len({p})");
        assert_eq!(
            plaintext_len(ct),
            Ok(p),
            "plaintext_len(ciphertext_len({p}))"
        );
    }
    if let Ok(pt) = plaintext_len(c) {
        assert!(pt < c);
        assert_eq!(
            ciphertext_len(pt),
            Ok(c),
            "ciphertext_len(plaintext_len({c}))"
        );
    }
}

/// `segments_for_range` and `ciphertext_range` for one object of `p` bytes.
fn check_ranges(p: u64, offset: u64, len: u64, segs: Range<u64>) {
    let n = segment_count(p);
    let end = offset.saturating_add(len).min(p);
    let r = segments_for_range(p, offset, len);
    if offset >= end {
        assert_eq!(r, 0..0, "segments_for_range({p}, {offset}, {len})");
    } else {
        assert!(
            r.start < r.end && r.end <= n,
            "segments_for_range({p}, {offset}, {len}) = {r:?}"
        );
        // In u128: a segment boundary past the last one may exceed u64.
        let (seg, offset, end) = (u128::from(SEG), u128::from(offset), u128::from(end));
        let (first, last) = (u128::from(r.start), u128::from(r.end));
        assert!(first * seg <= offset && offset < (first + 1) * seg);
        assert!((last - 1) * seg < end && end <= last * seg);
    }
    let Ok(total) = ciphertext_len(p) else {
        assert_eq!(ciphertext_range(p, r), Err(CryptoError::OutOfRange));
        return;
    };
    // The range the decryptor asks for: exactly the named segments.
    match ciphertext_range(p, r.clone()) {
        Ok(cr) => {
            assert!(
                cr.start <= cr.end && cr.end <= total,
                "{cr:?} outside 0..{total}"
            );
            // Every segment but the object's last is full.
            let expected = match r.end.checked_sub(1) {
                Some(last) if !r.is_empty() => {
                    (last - r.start) * SEG_CT + (p - last * SEG).min(SEG) + TAG
                }
                _ => 0,
            };
            assert_eq!(
                cr.end - cr.start,
                expected,
                "ciphertext_range({p}, {r:?}) = {cr:?}"
            );
            if !r.is_empty() {
                assert_eq!(cr.start, HDR + r.start * SEG_CT);
            }
        }
        Err(e) => panic!("ciphertext_range({p}, {r:?}) of segments_for_range: {e:?}"),
    }
    // Arbitrary segment ranges: an error, or a range inside the object.
    if let Ok(cr) = ciphertext_range(p, segs.clone()) {
        assert!(segs.start <= segs.end && segs.end <= n);
        assert!(
            cr.start <= cr.end && cr.end <= total && cr.start <= total,
            "ciphertext_range({p}, {segs:?}) = {cr:?} is outside the object (0..{total})"
        );
    } else {
        assert!(segs.start > segs.end || segs.end > n);
    }
}

fuzz_target!(|data: &[u8]| {
    let mut words = [0u64; 8];
    let mut rest = data;
    for w in &mut words {
        let Some((head, tail)) = rest.split_first_chunk::<8>() else {
            return;
        };
        *w = u64::from_be_bytes(*head);
        rest = tail;
    }
    let ct = rest;
    let [w0, w1, w2, w3, w4, w5, w6, w7] = words;

    // Pure arithmetic, over the whole u64 range.
    check_lengths(w7, w7);
    check_lengths(w0, ct.len() as u64);
    check_ranges(w7, w1, w2, w3..w4);
    // The same with small, realistic values (the segment range near the end).
    let small = w0 % (4 << 20);
    let n = segment_count(small);
    check_ranges(
        small,
        w1 % (small + 2),
        w2 % (small + 2),
        w3 % (n + 2)..w4 % (n + 2),
    );

    let p = if w0 >> 63 == 1 {
        plaintext_len(ct.len() as u64).unwrap_or(small)
    } else {
        small
    };
    let binding = ObjectBinding {
        file: FILE,
        object: OBJECT,
        offset: w6,
    };

    match decrypt_object(&KEY, &binding, ct, p) {
        Ok(plain) => panic!(
            "decrypt_object accepted forged input ({} bytes of plaintext)",
            plain.len()
        ),
        Err(
            CryptoError::CiphertextLength { .. }
            | CryptoError::Malformed { .. }
            | CryptoError::UnsupportedVersion(_)
            | CryptoError::SegmentAuthentication { .. }
            | CryptoError::OutOfRange,
        ) => {}
        Err(other) => panic!("unexpected error kind: {other:?}"),
    }
    let entry = ObjectEntry {
        id: OBJECT,
        offset: w6,
        len: p,
        check: ObjectCheck::Digest(ObjectDigest::of(ct)),
    };
    assert!(open_object(&KEY, FILE, &entry, ct).is_err());
    // Against a seed commitment (the header's own seed, when it has one).
    if let Ok(seed) = ObjectSeed::of_header(ct) {
        let entry = ObjectEntry {
            check: ObjectCheck::Seed(seed),
            ..entry
        };
        assert!(open_object(&KEY, FILE, &entry, ct).is_err());
    }

    // Segment-wise decryption.
    let (header, body) = ct.split_at(HEADER_LEN.min(ct.len()));
    let Ok(dec) = ObjectDecryptor::new(&KEY, &binding, header, p) else {
        return;
    };
    assert_eq!(dec.segment_count(), segment_count(p));
    let mut out = vec![0xAA];
    assert!(
        dec.open_segment(w5 % (dec.segment_count() + 1), body, &mut out)
            .is_err()
    );
    assert_eq!(out, [0xAA], "open_segment changed its output on error");
    let (offset, len) = (w1 % (p + 2), w2 % (p + 2));
    if let Ok(plain) = dec.decrypt_range(offset, len, body) {
        assert!(plain.is_empty(), "decrypt_range returned forged plaintext");
        assert!(segments_for_range(p, offset, len).is_empty());
    }
    if let Ok(plain) = dec.decrypt_range(w1, w2, body) {
        assert!(plain.is_empty(), "decrypt_range returned forged plaintext");
    }
});
