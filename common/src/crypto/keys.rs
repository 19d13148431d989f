//! Secret key material: [`Key32`], the one container every key type wraps,
//! and the random-byte source.
//!
//! A `Key32` zeroizes itself on drop, prints as `<redacted>`, and compares in
//! constant time. Typed keys ([`define_key!`]) wrap it so that a name key can
//! never be passed where a content key is expected.

use std::fmt;

use hkdf::Hkdf;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::CryptoError;

/// Length in bytes of every symmetric key.
pub const KEY_LEN: usize = 32;

/// 32 bytes of secret key material.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Key32([u8; KEY_LEN]);

impl Key32 {
    /// Wraps raw key bytes (the caller should zeroize its own copy).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// A fresh key from the OS CSPRNG.
    pub fn random() -> Result<Self, CryptoError> {
        let mut k = Self([0u8; KEY_LEN]);
        getrandom::fill(&mut k.0).map_err(|_| CryptoError::Rng)?;
        Ok(k)
    }

    /// The raw bytes. Only for feeding a primitive or the wire.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Mutable access, for primitives that write a key in place.
    pub(crate) fn expose_mut(&mut self) -> &mut [u8; KEY_LEN] {
        &mut self.0
    }

    /// HKDF-SHA256 with an empty salt: a subkey of this key for one purpose.
    pub(crate) fn derive(&self, info: &[u8]) -> Result<Key32, CryptoError> {
        let mut out = Key32([0u8; KEY_LEN]);
        hkdf_sha256(&self.0, None, info, &mut out.0)?;
        Ok(out)
    }
}

impl ConstantTimeEq for Key32 {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

impl PartialEq for Key32 {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other).into()
    }
}

impl Eq for Key32 {}

impl fmt::Debug for Key32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key32(<redacted>)")
    }
}

/// HKDF-SHA256 (RFC 5869), extract then expand.
pub(crate) fn hkdf_sha256(
    ikm: &[u8],
    salt: Option<&[u8]>,
    info: &[u8],
    out: &mut [u8],
) -> Result<(), CryptoError> {
    Hkdf::<Sha256>::new(salt, ikm)
        .expand(info, out)
        .map_err(|_| CryptoError::OutOfRange)
}

/// `N` bytes from the OS CSPRNG.
pub fn random_array<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|_| CryptoError::Rng)?;
    Ok(out)
}

/// Declares a typed key: a newtype over [`Key32`] with a redacted Debug.
macro_rules! define_key {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(pub(crate) $crate::crypto::Key32);

        impl $name {
            /// Wraps raw key bytes.
            pub fn from_bytes(bytes: [u8; $crate::crypto::keys::KEY_LEN]) -> Self {
                Self($crate::crypto::Key32::from_bytes(bytes))
            }

            /// The raw key bytes; handle with care.
            pub fn expose(&self) -> &[u8; $crate::crypto::keys::KEY_LEN] {
                self.0.expose()
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}
pub(crate) use define_key;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_key_bytes() {
        let k = Key32::from_bytes([0x41; KEY_LEN]);
        let shown = format!("{k:?}");
        assert_eq!(shown, "Key32(<redacted>)");
        assert!(!shown.contains("41") && !shown.contains("65"));
    }

    #[test]
    fn derive_is_deterministic_and_label_separated() {
        let k = Key32::from_bytes([7; KEY_LEN]);
        assert_eq!(k.derive(b"a").unwrap(), k.derive(b"a").unwrap());
        assert_ne!(k.derive(b"a").unwrap(), k.derive(b"b").unwrap());
    }

    #[test]
    fn hkdf_matches_rfc5869_case_1() {
        // RFC 5869 A.1 (SHA-256), truncated to 32 bytes.
        let ikm = [0x0b; 22];
        let salt: Vec<u8> = (0x00..=0x0c).collect();
        let info: Vec<u8> = (0xf0..=0xf9).collect();
        let mut okm = [0u8; 42];
        hkdf_sha256(&ikm, Some(&salt), &info, &mut okm).unwrap();
        assert_eq!(
            hex::encode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }
}
