//! The sealed box: the randomized AEAD used for wrapped keys, encrypted names
//! and attribute records.
//!
//! `sealed = 0x01 || salt[24] || AES-256-GCM(k, n, aad, plaintext) || tag[16]`
//! with `k || n = HKDF-SHA256(ikm = purpose key, salt = salt, info =
//! "securevault/v1/message-key", 44 bytes)`. A fresh 192-bit salt per message
//! gives every message its own key and nonce, so the usual 2^32-messages limit
//! of random 96-bit GCM nonces under one key does not apply.

use zeroize::{Zeroize, Zeroizing};

use super::gcm::{Gcm, NONCE_LEN, TAG_LEN};
use super::keys::hkdf_sha256;
use super::{CryptoError, Key32, Plaintext, random_array};

/// Version byte of the sealed-box format.
pub(crate) const SEALED_VERSION: u8 = 1;
/// Length of the per-message random salt.
pub(crate) const SALT_LEN: usize = 24;
/// Bytes a sealed box adds to its plaintext.
pub const SEALED_OVERHEAD: usize = 1 + SALT_LEN + TAG_LEN;
const MESSAGE_KEY_INFO: &[u8] = b"securevault/v1/message-key";

/// The cipher and nonce for one message.
fn message_cipher(key: &Key32, salt: &[u8]) -> Result<(Gcm, [u8; NONCE_LEN]), CryptoError> {
    let mut okm = Zeroizing::new([0u8; 44]);
    hkdf_sha256(
        key.expose(),
        Some(salt),
        MESSAGE_KEY_INFO,
        okm.as_mut_slice(),
    )?;
    let (k, n) = okm.split_at(32);
    let nonce = <[u8; NONCE_LEN]>::try_from(n).map_err(|_| CryptoError::OutOfRange)?;
    Ok((Gcm::new(k)?, nonce))
}

/// Seals with an explicit salt: for test vectors only.
#[cfg(test)]
pub(crate) fn seal_with_salt(
    key: &Key32,
    salt: &[u8; SALT_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut out = Vec::with_capacity(plaintext.len() + SEALED_OVERHEAD);
    seal_into(key, salt, aad, plaintext, &mut out)?;
    Ok(out)
}

/// Appends the sealed box of `plaintext` to `out` (one copy of the
/// plaintext, encrypted in place). On error `out` is as it was.
fn seal_into(
    key: &Key32,
    salt: &[u8; SALT_LEN],
    aad: &[u8],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    let (cipher, nonce) = message_cipher(key, salt)?;
    let start = out.len();
    out.reserve(plaintext.len() + SEALED_OVERHEAD);
    out.push(SEALED_VERSION);
    out.extend_from_slice(salt);
    out.extend_from_slice(plaintext);
    let sealed = out
        .get_mut(start + 1 + SALT_LEN..)
        .ok_or(CryptoError::OutOfRange)
        .and_then(|body| cipher.seal(nonce, aad, body));
    match sealed {
        Ok(tag) => {
            out.extend_from_slice(&tag);
            Ok(())
        }
        Err(e) => {
            // The plaintext copied in must not stay behind.
            if let Some(body) = out.get_mut(start..) {
                body.fill(0);
            }
            out.truncate(start);
            Err(e)
        }
    }
}

/// [`seal`], appending to `out`.
pub(crate) fn seal_append(
    key: &Key32,
    aad: &[u8],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    let mut salt = random_array::<SALT_LEN>()?;
    let res = seal_into(key, &salt, aad, plaintext, out);
    salt.zeroize();
    res
}

/// Seals `plaintext` under `key`, bound to `aad`, with a fresh random salt.
pub(crate) fn seal(key: &Key32, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut out = Vec::with_capacity(plaintext.len() + SEALED_OVERHEAD);
    seal_append(key, aad, plaintext, &mut out)?;
    Ok(out)
}

/// Opens a sealed box; the plaintext is wiped when dropped.
pub(crate) fn open(key: &Key32, aad: &[u8], sealed: &[u8]) -> Result<Plaintext, CryptoError> {
    let mut out = Plaintext::with_capacity(sealed.len().saturating_sub(SEALED_OVERHEAD));
    open_append(key, aad, sealed, &mut out)?;
    Ok(out)
}

/// [`open`], appending the plaintext to `out`. On error `out` is as it
/// was (what was decrypted before the tag failed is wiped).
pub(crate) fn open_append(
    key: &Key32,
    aad: &[u8],
    sealed: &[u8],
    out: &mut Plaintext,
) -> Result<(), CryptoError> {
    let (&version, rest) = sealed.split_first().ok_or(CryptoError::Malformed {
        what: "sealed box",
        reason: "empty",
    })?;
    if version != SEALED_VERSION {
        return Err(CryptoError::UnsupportedVersion(version));
    }
    if rest.len() < SALT_LEN + TAG_LEN {
        return Err(CryptoError::Malformed {
            what: "sealed box",
            reason: "shorter than its overhead",
        });
    }
    let (salt, rest) = rest.split_at(SALT_LEN);
    let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
    let (cipher, nonce) = message_cipher(key, salt)?;
    let start = out.len();
    out.resize(start + body.len(), 0);
    let opened = out
        .get_mut(start..)
        .ok_or(CryptoError::OutOfRange)
        .and_then(|dst| cipher.open(nonce, aad, body, tag, dst));
    if let Err(e) = opened {
        if let Some(dst) = out.get_mut(start..) {
            dst.fill(0);
        }
        out.truncate(start);
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Key32 {
        Key32::from_bytes([9; 32])
    }

    #[test]
    fn append_variants_add_to_the_buffer_and_leave_it_alone_on_failure() {
        let k = key();
        let mut out = b"head".to_vec();
        seal_append(&k, b"aad", b"hello", &mut out).unwrap();
        assert_eq!(out.len(), 4 + 5 + SEALED_OVERHEAD);
        assert_eq!(&out[..4], b"head");
        let sealed = out[4..].to_vec();
        assert_eq!(open(&k, b"aad", &sealed).unwrap().as_slice(), b"hello");
        let mut plain = Plaintext::new(b">".to_vec());
        open_append(&k, b"aad", &sealed, &mut plain).unwrap();
        assert_eq!(plain.as_slice(), b">hello");
        // Wrong AAD or a flipped byte: an error, and the buffer as it was.
        assert!(open_append(&k, b"other", &sealed, &mut plain).is_err());
        let mut bad = sealed.clone();
        bad[1 + SALT_LEN] ^= 1;
        assert!(open_append(&k, b"aad", &bad, &mut plain).is_err());
        assert_eq!(plain.as_slice(), b">hello");
    }

    #[test]
    fn round_trip_and_overhead() {
        for len in [0usize, 1, 31, 1000] {
            let pt = vec![0x5a; len];
            let s = seal(&key(), b"aad", &pt).unwrap();
            assert_eq!(s.len(), len + SEALED_OVERHEAD);
            assert_eq!(open(&key(), b"aad", &s).unwrap().as_slice(), pt.as_slice());
        }
    }

    #[test]
    fn salts_are_fresh() {
        let a = seal(&key(), b"", b"same").unwrap();
        let b = seal(&key(), b"", b"same").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn every_tamper_fails() {
        let s = seal(&key(), b"aad", b"secret").unwrap();
        assert_eq!(open(&key(), b"other", &s), Err(CryptoError::Authentication));
        assert_eq!(
            open(&Key32::from_bytes([8; 32]), b"aad", &s),
            Err(CryptoError::Authentication)
        );
        for i in 1..s.len() {
            let mut t = s.clone();
            t[i] ^= 1;
            assert_eq!(open(&key(), b"aad", &t), Err(CryptoError::Authentication));
        }
        let mut v = s.clone();
        v[0] = 2;
        assert_eq!(
            open(&key(), b"aad", &v),
            Err(CryptoError::UnsupportedVersion(2))
        );
        for cut in 0..SEALED_OVERHEAD {
            assert!(open(&key(), b"aad", &s[..cut]).is_err());
        }
        assert!(open(&key(), b"aad", &s[..s.len() - 1]).is_err());
    }
}
