//! Directory-entry names: `decrypt_name` on arbitrary encrypted bytes and
//! tags (what a hostile server can send in a listing), and `validate_name` /
//! `encrypt_name` / `name_tag` on arbitrary names.
//!
//! Input: parent id (16), child id (16), tag (32), one byte `n`, then `n`
//! bytes of name (fewer if the input ends) and the rest as the encrypted name.
//! Properties: never panics; `decrypt_name` never succeeds on forged input;
//! `validate_name` accepts exactly the names the format allows (1..=255
//! bytes, not `.`/`..`, no `/` or NUL); for valid names the tag is
//! deterministic and bound to the parent, encryption round-trips, the
//! ciphertext is padded to 32-byte blocks, and a wrong tag, another parent
//! or child, or any flipped byte is rejected; invalid names are refused by
//! `name_tag` and `encrypt_name` too.
#![no_main]

use std::sync::LazyLock;

use common::NodeId;
use common::crypto::name::{
    MAX_NAME_LEN, NAME_PAD_BLOCK, NameTag, decrypt_name, encrypt_name, name_tag, validate_name,
};
use common::crypto::subkeys::{VaultKey, VaultSubkeys};
use common::crypto::{CryptoError, SEALED_OVERHEAD};
use libfuzzer_sys::fuzz_target;

static KEYS: LazyLock<VaultSubkeys> =
    LazyLock::new(|| match VaultKey::from_bytes([0x24; 32]).subkeys() {
        Ok(s) => s,
        Err(e) => panic!("subkeys: {e:?}"),
    });

fn flip(id: NodeId) -> NodeId {
    let mut b = *id.as_bytes();
    b[15] ^= 0x80;
    NodeId::from_bytes(b)
}

fn allowed(name: &[u8]) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name != b"."
        && name != b".."
        && !name.contains(&b'/')
        && !name.contains(&0)
}

fuzz_target!(|data: &[u8]| {
    let Some((parent, rest)) = data.split_first_chunk::<16>() else {
        return;
    };
    let Some((child, rest)) = rest.split_first_chunk::<16>() else {
        return;
    };
    let Some((tag, rest)) = rest.split_first_chunk::<32>() else {
        return;
    };
    let Some((&n, rest)) = rest.split_first() else {
        return;
    };
    let (name, encrypted) = rest.split_at(usize::from(n).min(rest.len()));
    let parent = NodeId::from_bytes(*parent);
    let child = NodeId::from_bytes(*child);
    let tag = NameTag::from_bytes(*tag);
    let (ek, tk) = (&KEYS.name_encryption, &KEYS.name_tag);

    // Forged ciphertext (and the name bytes as a second forgery) never opens.
    for forged in [encrypted, name, rest] {
        match decrypt_name(ek, tk, parent, child, forged, &tag) {
            Ok(plain) => panic!(
                "decrypt_name accepted forged input: {:02x?}",
                plain.as_slice()
            ),
            Err(
                CryptoError::Malformed { .. }
                | CryptoError::UnsupportedVersion(_)
                | CryptoError::Authentication,
            ) => {}
            Err(other) => panic!("unexpected error kind: {other:?}"),
        }
    }

    // validate_name against the specification.
    let valid = validate_name(name);
    assert_eq!(
        valid.is_ok(),
        allowed(name),
        "validate_name disagrees: {valid:?}"
    );
    if valid.is_err() {
        assert!(matches!(valid, Err(CryptoError::InvalidName(_))));
        assert!(matches!(
            name_tag(tk, parent, name),
            Err(CryptoError::InvalidName(_))
        ));
        assert!(matches!(
            encrypt_name(ek, parent, child, name),
            Err(CryptoError::InvalidName(_))
        ));
        return;
    }

    // Tags: deterministic, bound to the parent.
    let real_tag = match name_tag(tk, parent, name) {
        Ok(t) => t,
        Err(e) => panic!("name_tag of a valid name: {e:?}"),
    };
    assert_eq!(name_tag(tk, parent, name).as_ref(), Ok(&real_tag));
    assert_ne!(name_tag(tk, flip(parent), name).as_ref(), Ok(&real_tag));

    // Encryption: padded, round-trips, bound to everything.
    let enc = match encrypt_name(ek, parent, child, name) {
        Ok(e) => e,
        Err(err) => panic!("encrypt_name of a valid name: {err:?}"),
    };
    let padded = enc.len() - SEALED_OVERHEAD;
    assert_eq!(padded % NAME_PAD_BLOCK, 0);
    assert!(padded > name.len() && padded - name.len() <= NAME_PAD_BLOCK);
    match decrypt_name(ek, tk, parent, child, &enc, &real_tag) {
        Ok(back) => assert_eq!(back.as_slice(), name),
        Err(e) => panic!("round trip failed: {e:?}"),
    }
    if tag != real_tag {
        assert_eq!(
            decrypt_name(ek, tk, parent, child, &enc, &tag),
            Err(CryptoError::NameTagMismatch)
        );
    }
    assert_eq!(
        decrypt_name(ek, tk, flip(parent), child, &enc, &real_tag),
        Err(CryptoError::Authentication)
    );
    assert_eq!(
        decrypt_name(ek, tk, parent, flip(child), &enc, &real_tag),
        Err(CryptoError::Authentication)
    );
    let at = usize::from(n) % enc.len();
    let mut tampered = enc.clone();
    tampered[at] ^= encrypted.first().copied().unwrap_or(1).max(1);
    assert!(decrypt_name(ek, tk, parent, child, &tampered, &real_tag).is_err());
    assert!(decrypt_name(ek, tk, parent, child, &enc[..enc.len() - 1], &real_tag).is_err());
});
