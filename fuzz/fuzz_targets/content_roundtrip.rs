//! Content objects end to end: `encrypt_object`, then whole-object and
//! ranged decryption, then tampering.
//!
//! Input: five big-endian u64 words, then a byte pattern.
//!   w0  plaintext length: by `w0 % 4`, under 1 KiB, within 512 bytes of the
//!       first or second segment boundary, or anything up to four full
//!       segments and a partial fifth; the plaintext repeats the pattern
//!   w1, w2  the plaintext range to read (offset, len): near the object when
//!       the top bit is clear, arbitrary when it is set
//!   w3  which ciphertext byte to flip, w4  the flip mask (low byte) and the
//!       object's offset in the file
//! Properties: never panics; the ciphertext has the length `ciphertext_len`
//! predicts; `decrypt_object` and `open_object` give back the plaintext;
//! `decrypt_range` of the bytes `ciphertext_range` names gives exactly the
//! clipped plaintext slice; a wrong length or binding fails; one flipped byte
//! makes the whole object fail, and makes a ranged read fail exactly when
//! the byte lies in the header or in the segments read.
#![no_main]

use std::sync::LazyLock;

use common::crypto::CryptoError;
use common::crypto::attrs::ObjectEntry;
use common::crypto::content::{
    HEADER_LEN, ObjectBinding, ObjectCheck, ObjectDecryptor, ObjectDigest, ObjectSeed, SEGMENT_SIZE, ciphertext_len,
    ciphertext_range, decrypt_object, encrypt_object, open_object, segments_for_range,
};
use common::crypto::subkeys::{ContentKey, VaultKey};
use common::{NodeId, ObjectId};
use libfuzzer_sys::fuzz_target;

const SEG: u64 = SEGMENT_SIZE as u64;
const MAX_LEN: u64 = 4 * SEG + 17;
const FILE: NodeId = NodeId::from_bytes([0xe1; 16]);
const OBJECT: ObjectId = ObjectId::from_bytes([0xf1; 16]);

static KEY: LazyLock<ContentKey> =
    LazyLock::new(|| match VaultKey::from_bytes([0x77; 32]).subkeys() {
        Ok(s) => s.content,
        Err(e) => panic!("subkeys: {e:?}"),
    });

fn usize_of(v: u64) -> usize {
    match usize::try_from(v) {
        Ok(v) => v,
        Err(_) => panic!("{v} does not fit in usize"),
    }
}

/// A range word: near `0..=len` when the top bit is clear.
fn pick(w: u64, len: u64) -> u64 {
    if w >> 63 == 1 { w } else { w % (len + 2) }
}

fuzz_target!(|data: &[u8]| {
    let mut words = [0u64; 5];
    let mut rest = data;
    for w in &mut words {
        let Some((head, tail)) = rest.split_first_chunk::<8>() else {
            return;
        };
        *w = u64::from_be_bytes(*head);
        rest = tail;
    }
    let [w0, w1, w2, w3, w4] = words;
    let pattern = rest;

    // Mostly short or near a segment boundary: big objects cost ~1 ms each.
    let len = match w0 % 4 {
        0 => (w0 >> 8) % 1024,
        1 => SEG - 512 + (w0 >> 8) % 1024,
        2 => 2 * SEG - 512 + (w0 >> 8) % 1024,
        _ => (w0 >> 8) % MAX_LEN,
    };
    let plaintext: Vec<u8> = (0..usize_of(len))
        .map(|i| match pattern.len() {
            0 => (i % 251) as u8,
            n => pattern[i % n] ^ ((i / n) as u8),
        })
        .collect();
    let binding = ObjectBinding {
        file: FILE,
        object: OBJECT,
        offset: w4,
    };

    let ct = match encrypt_object(&KEY, &binding, &plaintext) {
        Ok(ct) => ct,
        Err(e) => panic!("encrypt_object of {len} bytes: {e:?}"),
    };
    assert_eq!(Ok(ct.len() as u64), ciphertext_len(len));
    let entry = ObjectEntry {
        id: OBJECT,
        offset: w4,
        len,
        check: ObjectCheck::Digest(ObjectDigest::of(&ct)),
    };
    match open_object(&KEY, FILE, &entry, &ct) {
        // open_object checks the digest, then calls decrypt_object.
        Ok(back) => assert!(back == plaintext, "open_object gave other bytes"),
        Err(e) => panic!("open_object of a fresh object: {e:?}"),
    }
    // The same against the seed commitment a version 2 writer records.
    let seed = match ObjectSeed::of_header(&ct) {
        Ok(seed) => seed,
        Err(e) => panic!("a fresh object's header: {e:?}"),
    };
    let by_seed = ObjectEntry {
        check: ObjectCheck::Seed(seed),
        ..entry.clone()
    };
    match open_object(&KEY, FILE, &by_seed, &ct) {
        Ok(back) => assert!(back == plaintext, "open_object (seed) gave other bytes"),
        Err(e) => panic!("open_object (seed) of a fresh object: {e:?}"),
    }

    // Wrong length or binding.
    assert!(decrypt_object(&KEY, &binding, &ct, len + 1).is_err());
    if len > 0 {
        assert!(decrypt_object(&KEY, &binding, &ct, len - 1).is_err());
    }
    let moved = ObjectBinding {
        offset: w4 ^ 1,
        ..binding
    };
    assert!(decrypt_object(&KEY, &moved, &ct, len).is_err());

    // A ranged read.
    let (offset, want) = (pick(w1, len), pick(w2, len));
    let segments = segments_for_range(len, offset, want);
    let range = match ciphertext_range(len, segments.clone()) {
        Ok(r) => r,
        Err(e) => panic!("ciphertext_range({len}, {segments:?}): {e:?}"),
    };
    let (start, end) = (usize_of(range.start), usize_of(range.end));
    assert!(
        start <= end && end <= ct.len(),
        "{range:?} outside 0..{}",
        ct.len()
    );
    let dec = match ObjectDecryptor::new(&KEY, &binding, &ct[..HEADER_LEN], len) {
        Ok(d) => d,
        Err(e) => panic!("ObjectDecryptor::new of a fresh header: {e:?}"),
    };
    let lo = usize_of(offset.min(len));
    let hi = usize_of(offset.saturating_add(want).min(len));
    match dec.decrypt_range(offset, want, &ct[start..end]) {
        Ok(got) => assert!(
            got.as_slice() == &plaintext[lo..hi],
            "decrypt_range({offset}, {want}) of {len} bytes gave other bytes"
        ),
        Err(e) => panic!("decrypt_range({offset}, {want}) of {len} bytes: {e:?}"),
    }

    // One flipped byte.
    let at = usize_of(w3 % ct.len() as u64);
    let mask = (w4 as u8).max(1);
    let mut bad = ct.clone();
    bad[at] ^= mask;
    assert!(
        decrypt_object(&KEY, &binding, &bad, len).is_err(),
        "flipping byte {at} of {} went unnoticed",
        bad.len()
    );
    assert_eq!(
        open_object(&KEY, FILE, &entry, &bad),
        Err(CryptoError::DigestMismatch)
    );
    let read = ObjectDecryptor::new(&KEY, &binding, &bad[..HEADER_LEN], len)
        .and_then(|d| d.decrypt_range(offset, want, &bad[start..end]));
    let touched = !segments.is_empty() && (at < HEADER_LEN || (start..end).contains(&at));
    match read {
        Ok(got) => {
            assert!(
                !touched,
                "flipping byte {at} inside the read {range:?} went unnoticed"
            );
            assert!(got.as_slice() == &plaintext[lo..hi]);
        }
        Err(e) => assert!(
            touched || at < 4,
            "flipping byte {at} outside the read {range:?} broke it: {e:?}"
        ),
    }
});
