//! AES-256-GCM, the format's one AEAD, from aws-lc-rs.
//!
//! aws-lc-rs is already the tree's TLS provider; its AES-GCM (AES-NI with
//! VAES/VPCLMULQDQ where the CPU has them) runs at 3.7 GiB/s on the 2-core
//! bench machine against 2.0 GiB/s for the RustCrypto `aes-gcm` crate, and a
//! written file is sealed three times on its way to the server (journal,
//! read back, object), so this is most of the client's crypto time
//! (issue 6). The algorithm and every byte of the format are unchanged: the
//! test vectors in `vectors` pin them.
//!
//! The key schedule lives in memory aws-lc allocates and wipes
//! (`OPENSSL_cleanse`) when the key is dropped. Every nonce is built by the
//! caller from a per-message or per-object key and a counter, so a
//! (key, nonce) pair is never used twice.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

use super::CryptoError;

/// GCM tag length.
pub(crate) const TAG_LEN: usize = 16;
/// GCM nonce length.
pub(crate) const NONCE_LEN: usize = 12;

/// An AES-256-GCM key.
pub(crate) struct Gcm(LessSafeKey);

impl Gcm {
    /// A key from its 32 bytes.
    pub(crate) fn new(key: &[u8]) -> Result<Self, CryptoError> {
        UnboundKey::new(&AES_256_GCM, key)
            .map(|k| Self(LessSafeKey::new(k)))
            .map_err(|_| CryptoError::OutOfRange)
    }

    /// Encrypts `buf` in place; returns the tag.
    pub(crate) fn seal(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], CryptoError> {
        let tag = self
            .0
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), buf)
            .map_err(|_| CryptoError::OutOfRange)?;
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Authenticates `ciphertext` and `tag` and decrypts into `out`, which
    /// must be as long as `ciphertext`. On failure `out` holds no plaintext
    /// (it is zeroed).
    pub(crate) fn open(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        ciphertext: &[u8],
        tag: &[u8],
        out: &mut [u8],
    ) -> Result<(), CryptoError> {
        if tag.len() != TAG_LEN || out.len() != ciphertext.len() {
            return Err(CryptoError::Authentication);
        }
        let res = self.0.open_separate_gather(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            ciphertext,
            tag,
            out,
        );
        if res.is_err() {
            out.fill(0);
            return Err(CryptoError::Authentication);
        }
        Ok(())
    }

    /// Authenticates and decrypts `in_out[from..]` (ciphertext, then its
    /// tag) in place and moves the plaintext to the front of `in_out`. On
    /// failure all of `in_out` is zeroed (aws-lc leaves it unspecified,
    /// possibly part plaintext).
    pub(crate) fn open_within(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
        from: usize,
    ) -> Result<(), CryptoError> {
        let res = self.0.open_within(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            in_out,
            from..,
        );
        if res.is_err() {
            in_out.fill(0);
            return Err(CryptoError::Authentication);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test Case 14 of the GCM specification (McGrew and Viega): a zero
    /// key, nonce and block give a known ciphertext and tag.
    #[test]
    fn matches_the_specification() {
        let key = [0u8; 32];
        let nonce = [0u8; NONCE_LEN];
        let pt = [0u8; 16];
        let gcm = Gcm::new(&key).unwrap();
        let mut buf = pt;
        let tag = gcm.seal(nonce, b"", &mut buf).unwrap();
        assert_eq!(hex::encode(buf), "cea7403d4d606b6e074ec5d3baf39d18");
        assert_eq!(hex::encode(tag), "d0d1c8a799996bf0265b98b5d48ab919");
        let mut back = vec![0u8; buf.len()];
        gcm.open(nonce, b"", &buf, &tag, &mut back).unwrap();
        assert_eq!(back, pt);
        // A flipped bit anywhere fails and leaves no plaintext.
        let mut bad = buf;
        bad[0] ^= 1;
        let mut out = vec![7u8; buf.len()];
        assert!(gcm.open(nonce, b"", &bad, &tag, &mut out).is_err());
        assert!(out.iter().all(|&b| b == 0));
        assert!(gcm.open(nonce, b"x", &buf, &tag, &mut out).is_err());
        assert!(gcm.open(nonce, b"", &buf, &tag[..15], &mut out).is_err());
    }
}
