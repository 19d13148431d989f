//! Round trips and every tamper case of the threat model for content objects.

#![allow(clippy::cast_possible_truncation)]

use proptest::prelude::*;

use super::*;
use crate::crypto::subkeys::VaultKey;

fn key() -> ContentKey {
    VaultKey::from_bytes([0x42; 32]).subkeys().unwrap().content
}

const FILE: NodeId = NodeId::from_bytes([1; 16]);

fn binding() -> ObjectBinding {
    ObjectBinding {
        file: FILE,
        object: ObjectId::from_bytes([2; 16]),
        offset: 0,
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Splits an object into its header and segment ciphertexts.
fn split(ct: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let (h, body) = ct.split_at(HEADER_LEN);
    (
        h.to_vec(),
        body.chunks(SEGMENT_CIPHERTEXT_SIZE)
            .map(<[u8]>::to_vec)
            .collect(),
    )
}

fn join(header: &[u8], segments: &[Vec<u8>]) -> Vec<u8> {
    let mut out = header.to_vec();
    for s in segments {
        out.extend_from_slice(s);
    }
    out
}

/// Decrypts trusting only the ciphertext's own length (what a reader gets
/// from a hostile server if it did not check the object list).
fn decrypt_self_described(ct: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let len = plaintext_len(ct.len() as u64)?;
    decrypt_object(&key(), &binding(), ct, len)
}

#[test]
fn encrypt_into_appends_a_whole_object_to_a_reused_buffer() {
    let plain = pattern(SEGMENT_SIZE * 2 + 5);
    let mut out = Vec::with_capacity(4);
    out.extend_from_slice(b"old!");
    encrypt_object_into(&key(), &binding(), &plain, &mut out).unwrap();
    assert_eq!(&out[..4], b"old!", "what was there stays");
    let ct = &out[4..];
    assert_eq!(ct.len() as u64, ciphertext_len(plain.len() as u64).unwrap());
    assert_eq!(decrypt_self_described(ct).unwrap(), plain);
}

#[test]
fn round_trips_at_every_interesting_size() {
    for len in [
        0,
        1,
        SEGMENT_SIZE - 1,
        SEGMENT_SIZE,
        SEGMENT_SIZE + 1,
        3 * SEGMENT_SIZE,
        3 * SEGMENT_SIZE + 17,
        5 << 20,
    ] {
        let pt = pattern(len);
        let ct = encrypt_object(&key(), &binding(), &pt).unwrap();
        assert_eq!(
            ct.len() as u64,
            ciphertext_len(len as u64).unwrap(),
            "len {len}"
        );
        assert_eq!(plaintext_len(ct.len() as u64).unwrap(), len as u64);
        assert_eq!(
            decrypt_object(&key(), &binding(), &ct, len as u64).unwrap(),
            pt,
            "len {len}"
        );
    }
}

#[test]
fn lengths_of_the_format_are_pinned() {
    assert_eq!(HEADER_LEN, 28);
    assert_eq!(ciphertext_len(0).unwrap(), 28 + 16);
    assert_eq!(ciphertext_len(1).unwrap(), 28 + 1 + 16);
    assert_eq!(ciphertext_len(65536).unwrap(), 28 + 65536 + 16);
    assert_eq!(ciphertext_len(65537).unwrap(), 28 + 65537 + 32);
    // Lengths no object can have.
    for bad in [0, 27, 28, 43, 28 + 65552 + 16, 28 + 2 * 65552 + 16] {
        assert!(plaintext_len(bad).is_err(), "{bad}");
    }
}

#[test]
fn objects_are_randomized() {
    let a = encrypt_object(&key(), &binding(), b"same").unwrap();
    let b = encrypt_object(&key(), &binding(), b"same").unwrap();
    assert_ne!(a, b);
    assert_eq!(&a[..4], b"SVC\x01");
}

#[test]
fn modified_byte_anywhere_fails_and_yields_nothing() {
    let pt = pattern(2 * SEGMENT_SIZE + 100);
    let ct = encrypt_object(&key(), &binding(), &pt).unwrap();
    let step = 997;
    for i in (HEADER_LEN..ct.len()).step_by(step).chain([ct.len() - 1]) {
        let mut t = ct.clone();
        t[i] ^= 0x80;
        let seg = ((i - HEADER_LEN) / SEGMENT_CIPHERTEXT_SIZE) as u64;
        assert_eq!(
            decrypt_object(&key(), &binding(), &t, pt.len() as u64),
            Err(CryptoError::SegmentAuthentication { index: seg })
        );
    }
    // A modified seed derives another key: the first segment fails.
    let mut seed = ct.clone();
    seed[10] ^= 1;
    assert_eq!(
        decrypt_object(&key(), &binding(), &seed, pt.len() as u64),
        Err(CryptoError::SegmentAuthentication { index: 0 })
    );
}

#[test]
fn downgraded_or_foreign_header_is_rejected() {
    let ct = encrypt_object(&key(), &binding(), b"x").unwrap();
    let mut v2 = ct.clone();
    v2[3] = 2;
    assert_eq!(
        decrypt_object(&key(), &binding(), &v2, 1),
        Err(CryptoError::UnsupportedVersion(2))
    );
    let mut magic = ct.clone();
    magic[0] = b'X';
    assert!(matches!(
        decrypt_object(&key(), &binding(), &magic, 1),
        Err(CryptoError::Malformed { .. })
    ));
}

#[test]
fn reordered_segments_fail() {
    let pt = pattern(3 * SEGMENT_SIZE);
    let (h, mut segs) = split(&encrypt_object(&key(), &binding(), &pt).unwrap());
    segs.swap(0, 1);
    assert_eq!(
        decrypt_object(&key(), &binding(), &join(&h, &segs), pt.len() as u64),
        Err(CryptoError::SegmentAuthentication { index: 0 })
    );
}

#[test]
fn dropped_segment_fails() {
    let pt = pattern(3 * SEGMENT_SIZE);
    let (h, mut segs) = split(&encrypt_object(&key(), &binding(), &pt).unwrap());
    segs.remove(1);
    let ct = join(&h, &segs);
    // Against the authenticated length it is the wrong size...
    assert!(matches!(
        decrypt_object(&key(), &binding(), &ct, pt.len() as u64),
        Err(CryptoError::CiphertextLength { .. })
    ));
    // ...and even trusting its own size, segment 2 is not segment 1.
    assert_eq!(
        decrypt_self_described(&ct),
        Err(CryptoError::SegmentAuthentication { index: 1 })
    );
}

#[test]
fn truncation_at_every_segment_boundary_fails() {
    let pt = pattern(3 * SEGMENT_SIZE + 5);
    let ct = encrypt_object(&key(), &binding(), &pt).unwrap();
    for keep in 1..4 {
        let cut = &ct[..HEADER_LEN + keep * SEGMENT_CIPHERTEXT_SIZE];
        // The new last segment was sealed as "not last".
        assert_eq!(
            decrypt_self_described(cut),
            Err(CryptoError::SegmentAuthentication {
                index: keep as u64 - 1
            })
        );
        assert!(decrypt_object(&key(), &binding(), cut, pt.len() as u64).is_err());
    }
    assert!(decrypt_self_described(&ct[..HEADER_LEN]).is_err());
    assert!(decrypt_self_described(&ct[..HEADER_LEN - 1]).is_err());
}

#[test]
fn appended_segment_fails() {
    let pt = pattern(2 * SEGMENT_SIZE);
    let (h, mut segs) = split(&encrypt_object(&key(), &binding(), &pt).unwrap());
    segs.push(segs[0].clone());
    assert_eq!(
        decrypt_self_described(&join(&h, &segs)),
        Err(CryptoError::SegmentAuthentication { index: 1 })
    );
    // Appending a short final segment after the real (full, last) one.
    let (h, mut segs) = split(&encrypt_object(&key(), &binding(), &pt).unwrap());
    let other = encrypt_object(&key(), &binding(), &pattern(SEGMENT_SIZE + 3)).unwrap();
    segs.push(split(&other).1[1].clone());
    assert!(decrypt_self_described(&join(&h, &segs)).is_err());
}

#[test]
fn object_moved_to_another_file_object_or_position_fails() {
    let pt = pattern(SEGMENT_SIZE + 1);
    let ct = encrypt_object(&key(), &binding(), &pt).unwrap();
    let moved = [
        ObjectBinding {
            file: NodeId::from_bytes([9; 16]),
            ..binding()
        },
        ObjectBinding {
            object: ObjectId::from_bytes([9; 16]),
            ..binding()
        },
        ObjectBinding {
            offset: 4 << 20,
            ..binding()
        },
    ];
    for b in moved {
        assert_eq!(
            decrypt_object(&key(), &b, &ct, pt.len() as u64),
            Err(CryptoError::SegmentAuthentication { index: 0 })
        );
    }
}

#[test]
fn segment_from_another_object_fails() {
    let pt = pattern(2 * SEGMENT_SIZE);
    let (h, mut segs) = split(&encrypt_object(&key(), &binding(), &pt).unwrap());
    // Same file, same binding, same plaintext, but another object (new seed).
    let (_, other) = split(&encrypt_object(&key(), &binding(), &pt).unwrap());
    segs[1] = other[1].clone();
    assert_eq!(
        decrypt_object(&key(), &binding(), &join(&h, &segs), pt.len() as u64),
        Err(CryptoError::SegmentAuthentication { index: 1 })
    );
}

#[test]
fn older_object_replayed_in_place_of_current_fails_the_digest() {
    let b = binding();
    let old = encrypt_object(&key(), &b, b"version one").unwrap();
    let new = encrypt_object(&key(), &b, b"version two").unwrap();
    let entry = ObjectEntry {
        id: b.object,
        offset: 0,
        len: 11,
        check: ObjectCheck::Digest(ObjectDigest::of(&new)),
    };
    assert_eq!(
        open_object(&key(), FILE, &entry, &new).unwrap(),
        b"version two"
    );
    assert_eq!(
        open_object(&key(), FILE, &entry, &old),
        Err(CryptoError::DigestMismatch)
    );
}

#[test]
fn older_object_replayed_in_place_of_current_fails_the_seed_whole_or_by_range() {
    let b = binding();
    let old = encrypt_object(&key(), &b, &pattern(200_000)).unwrap();
    let new = encrypt_object(&key(), &b, &pattern(200_000)).unwrap();
    let entry = ObjectEntry {
        id: b.object,
        offset: b.offset,
        len: 200_000,
        check: ObjectCheck::Seed(ObjectSeed::of_header(&new).unwrap()),
    };
    assert_eq!(
        open_object(&key(), FILE, &entry, &new).unwrap(),
        pattern(200_000)
    );
    assert_eq!(
        open_object(&key(), FILE, &entry, &old),
        Err(CryptoError::SeedMismatch)
    );
    // A range read checks the header it fetches.
    let dec = ObjectDecryptor::for_entry(&key(), FILE, &entry, &new[..HEADER_LEN]).unwrap();
    let r = ciphertext_range(200_000, segments_for_range(200_000, 70_000, 10)).unwrap();
    assert_eq!(
        dec.decrypt_range(70_000, 10, &new[r.start as usize..r.end as usize])
            .unwrap(),
        pattern(200_000)[70_000..70_010]
    );
    assert_eq!(
        ObjectDecryptor::for_entry(&key(), FILE, &entry, &old[..HEADER_LEN]).unwrap_err(),
        CryptoError::SeedMismatch
    );
}

#[test]
fn two_files_swapped_fail() {
    let a = ObjectBinding {
        file: NodeId::from_bytes([0xa; 16]),
        ..binding()
    };
    let b = ObjectBinding {
        file: NodeId::from_bytes([0xb; 16]),
        ..binding()
    };
    let ct_a = encrypt_object(&key(), &a, b"contents of a").unwrap();
    let entry = ObjectEntry {
        id: a.object,
        offset: 0,
        len: 13,
        check: ObjectCheck::Digest(ObjectDigest::of(&ct_a)),
    };
    // Served as file b's object, with b's (forged) entry carrying a's digest.
    assert_eq!(
        open_object(&key(), b.file, &entry, &ct_a),
        Err(CryptoError::SegmentAuthentication { index: 0 })
    );
}

#[test]
fn failed_segment_leaves_output_untouched() {
    let pt = pattern(100);
    let ct = encrypt_object(&key(), &binding(), &pt).unwrap();
    let dec = ObjectDecryptor::new(&key(), &binding(), &ct[..HEADER_LEN], 100).unwrap();
    let mut t = ct[HEADER_LEN..].to_vec();
    t[0] ^= 1;
    let mut out = b"kept".to_vec();
    assert!(dec.open_segment(0, &t, &mut out).is_err());
    assert_eq!(out, b"kept");
    assert!(dec.open_segment(1, &ct[HEADER_LEN..], &mut out).is_err());
}

#[test]
fn encryptor_refuses_misuse() {
    let mut enc = ObjectEncryptor::new(&key(), &binding()).unwrap();
    let mut out = Vec::new();
    assert!(
        enc.seal_segment(&[0; 10], false, &mut out).is_err(),
        "short non-last"
    );
    assert!(
        enc.seal_segment(&vec![0; SEGMENT_SIZE + 1], true, &mut out)
            .is_err()
    );
    enc.seal_segment(&vec![0; SEGMENT_SIZE], false, &mut out)
        .unwrap();
    assert!(
        enc.seal_segment(&[], true, &mut out).is_err(),
        "empty last after data"
    );
    enc.seal_segment(&[1], true, &mut out).unwrap();
    assert!(enc.is_finished());
    assert!(
        enc.seal_segment(&[1], true, &mut out).is_err(),
        "sealing after the end"
    );
}

#[test]
fn range_math_is_exact() {
    let s = SEGMENT_SIZE as u64;
    assert_eq!(segments_for_range(0, 0, 10), 0..0);
    assert_eq!(segments_for_range(10, 10, 1), 0..0);
    assert_eq!(segments_for_range(3 * s, 0, 1), 0..1);
    assert_eq!(segments_for_range(3 * s, s - 1, 2), 0..2);
    assert_eq!(segments_for_range(3 * s, s, s), 1..2);
    assert_eq!(segments_for_range(3 * s, 2 * s, u64::MAX), 2..3);
    assert_eq!(
        ciphertext_range(3 * s, 1..2).unwrap(),
        28 + s + 16..28 + 2 * (s + 16)
    );
    assert_eq!(
        ciphertext_range(s + 1, 1..2).unwrap(),
        28 + s + 16..28 + s + 16 + 17
    );
    assert!(ciphertext_range(s, 0..2).is_err());
    // Empty ranges at the end stay inside the object (found by fuzzing).
    assert_eq!(ciphertext_range(0, 1..1).unwrap(), 44..44);
    assert_eq!(
        ciphertext_range(3_182_783, 49..49).unwrap(),
        3_183_595..3_183_595
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_range_of_any_size_decrypts_to_the_same_bytes(
        len in 0usize..(4 * SEGMENT_SIZE + 3),
        offset in 0u64..(5 * SEGMENT_SIZE as u64),
        want in 0u64..(3 * SEGMENT_SIZE as u64),
    ) {
        let pt = pattern(len);
        let ct = encrypt_object(&key(), &binding(), &pt).unwrap();
        prop_assert_eq!(&decrypt_object(&key(), &binding(), &ct, len as u64).unwrap(), &pt);
        let dec = ObjectDecryptor::new(&key(), &binding(), &ct[..HEADER_LEN], len as u64).unwrap();
        let segs = segments_for_range(len as u64, offset, want);
        let r = ciphertext_range(len as u64, segs).unwrap();
        let got = dec.decrypt_range(offset, want, &ct[r.start as usize..r.end as usize]).unwrap();
        let start = (offset as usize).min(len);
        let end = (offset.saturating_add(want) as usize).min(len);
        prop_assert_eq!(got.as_slice(), &pt[start..end.max(start)]);
    }

    #[test]
    fn arbitrary_bytes_never_decrypt(bytes in proptest::collection::vec(any::<u8>(), 0..400), len in 0u64..400) {
        prop_assert!(decrypt_object(&key(), &binding(), &bytes, len).is_err());
    }

    #[test]
    fn length_functions_are_inverse(pt in 0u64..(1u64 << 40)) {
        let ct = ciphertext_len(pt).unwrap();
        prop_assert_eq!(plaintext_len(ct).unwrap(), pt);
    }
}

fn open_in_place(ct: &[u8], len: u64) -> (Result<(), CryptoError>, Vec<u8>) {
    let dec =
        ObjectDecryptor::new(&key(), &binding(), &ct[..HEADER_LEN.min(ct.len())], len).unwrap();
    let mut buf = ct.to_vec();
    let r = dec.open_object_in_place(&mut buf);
    (r, buf)
}

#[test]
fn a_whole_object_opens_in_place_to_its_plaintext() {
    for len in [
        0,
        1,
        SEGMENT_SIZE - 1,
        SEGMENT_SIZE,
        SEGMENT_SIZE + 1,
        3 * SEGMENT_SIZE + 17,
        4 << 20,
    ] {
        let pt = pattern(len);
        let ct = encrypt_object(&key(), &binding(), &pt).unwrap();
        let (r, buf) = open_in_place(&ct, len as u64);
        r.unwrap();
        assert!(buf == pt, "len {len}");
    }
}

#[test]
fn a_tampered_object_opened_in_place_leaves_nothing() {
    let len = 3 * SEGMENT_SIZE + 5;
    let pt = pattern(len);
    let ct = encrypt_object(&key(), &binding(), &pt).unwrap();
    // In the last segment: the segments before it did authenticate, and
    // their plaintext must not be left behind either.
    for at in [HEADER_LEN + 1, ct.len() - TAG_LEN - 1, ct.len() - 1] {
        let mut bad = ct.clone();
        bad[at] ^= 1;
        let mut buf = bad.clone();
        let dec = ObjectDecryptor::new(&key(), &binding(), &bad[..HEADER_LEN], len as u64).unwrap();
        let r = dec.open_object_in_place(&mut buf);
        assert!(
            matches!(r, Err(CryptoError::SegmentAuthentication { .. })),
            "byte {at}: {r:?}"
        );
        assert_eq!(buf.len(), bad.len(), "byte {at}");
        assert!(buf.iter().all(|b| *b == 0), "byte {at}: not wiped");
    }
    // A ciphertext of the wrong length for the listed plaintext length.
    let (r, buf) = open_in_place(&ct[..ct.len() - 1], len as u64);
    assert!(
        matches!(r, Err(CryptoError::CiphertextLength { .. })),
        "{r:?}"
    );
    assert!(buf.iter().all(|b| *b == 0));
    let (r, _) = open_in_place(&ct, len as u64 + 1);
    assert!(r.is_err(), "a longer listed length");
}
