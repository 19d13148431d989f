//! What a file's object list commits to for each object (FORMAT.md 8.3,
//! 9.10): the exact ciphertext its writer produced, so a server cannot serve
//! an older or foreign object in its place.
//!
//! Two forms, told apart by the record that carries them:
//!
//! - [`ObjectSeed`] (record version 2, what writers produce): the object's
//!   24-byte random seed, the one in its header. The object key and nonce
//!   prefix are derived from it, so once the header's seed equals the
//!   committed one, every segment's GCM tag authenticates the object. The
//!   check costs a 24-byte comparison where a digest costs a pass of SHA-256
//!   over the whole object (the slowest step of reading a file: 1.4 GiB/s
//!   with SHA-NI against 2.7 GiB/s for AES-GCM), and a range read gets it
//!   too, from the header it fetches anyway.
//! - [`ObjectDigest`] (record version 1, still read): the SHA-256 of the
//!   whole ciphertext. Only a reader holding the whole object can check it.
//!
//! Both comparisons are constant-time.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::CryptoError;
use super::content::{HEADER_LEN, MAGIC, SEED_LEN};

/// SHA-256 of an object's whole ciphertext.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjectDigest(#[serde(with = "hex::serde")] [u8; 32]);

impl ObjectDigest {
    /// Wraps raw digest bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Hashes a whole ciphertext.
    pub fn of(ciphertext: &[u8]) -> Self {
        Self(Sha256::digest(ciphertext).into())
    }

    /// Finishes an incremental hash (for streamed objects).
    pub fn from_hasher(hasher: Sha256) -> Self {
        Self(hasher.finalize().into())
    }

    /// Constant-time check of a finished incremental hash of a streamed
    /// ciphertext against this digest.
    pub fn verify_hash(&self, hasher: Sha256) -> Result<(), CryptoError> {
        if bool::from(Self::from_hasher(hasher).0.ct_eq(&self.0)) {
            Ok(())
        } else {
            Err(CryptoError::DigestMismatch)
        }
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Constant-time check of `ciphertext` against this digest.
    pub fn verify(&self, ciphertext: &[u8]) -> Result<(), CryptoError> {
        self.verify_hash(Sha256::new_with_prefix(ciphertext))
    }
}

impl std::fmt::Debug for ObjectDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectDigest({})", hex::encode(self.0))
    }
}

/// The random seed in an object's header (FORMAT.md 9.1). Not secret: it is
/// stored in the clear at the start of every object.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ObjectSeed([u8; SEED_LEN]);

impl ObjectSeed {
    /// Wraps raw seed bytes.
    pub const fn from_bytes(bytes: [u8; SEED_LEN]) -> Self {
        Self(bytes)
    }

    /// The seed in the header at the start of `ciphertext` (a whole object,
    /// or at least its header). Checks the magic and version.
    pub fn of_header(ciphertext: &[u8]) -> Result<Self, CryptoError> {
        let header = ciphertext.get(..HEADER_LEN).ok_or(CryptoError::Malformed {
            what: "content object",
            reason: "header too short",
        })?;
        let (magic, seed) = header.split_at(MAGIC.len());
        if magic.get(..3) != MAGIC.get(..3) {
            return Err(CryptoError::Malformed {
                what: "content object",
                reason: "bad magic",
            });
        }
        if magic != MAGIC {
            return Err(CryptoError::UnsupportedVersion(
                magic.get(3).copied().unwrap_or(0),
            ));
        }
        let mut out = [0u8; SEED_LEN];
        out.copy_from_slice(seed);
        Ok(Self(out))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; SEED_LEN] {
        &self.0
    }

    /// Constant-time check that `header` (an object's first bytes) carries
    /// this seed.
    pub fn verify_header(&self, header: &[u8]) -> Result<(), CryptoError> {
        let found = Self::of_header(header)?;
        if bool::from(found.0.ct_eq(&self.0)) {
            Ok(())
        } else {
            Err(CryptoError::SeedMismatch)
        }
    }
}

impl std::fmt::Debug for ObjectSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectSeed({})", hex::encode(self.0))
    }
}

/// What an object list entry commits to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ObjectCheck {
    /// The SHA-256 of the whole ciphertext (record version 1).
    Digest(ObjectDigest),
    /// The seed in the object's header (record version 2).
    Seed(ObjectSeed),
}

impl ObjectCheck {
    /// Checks a whole downloaded object against the commitment.
    pub fn verify_whole(&self, ciphertext: &[u8]) -> Result<(), CryptoError> {
        match self {
            Self::Digest(d) => d.verify(ciphertext),
            Self::Seed(s) => s.verify_header(ciphertext),
        }
    }

    /// Checks what a range read can: an object's header against a seed
    /// commitment. A digest covers the whole object, so a range read cannot
    /// check it; such a read relies on the object id in every segment's AAD
    /// (FORMAT.md 9.9).
    pub fn verify_header(&self, header: &[u8]) -> Result<(), CryptoError> {
        match self {
            Self::Digest(_) => Ok(()),
            Self::Seed(s) => s.verify_header(header),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(seed: [u8; SEED_LEN]) -> Vec<u8> {
        let mut h = MAGIC.to_vec();
        h.extend_from_slice(&seed);
        h.extend_from_slice(b"segments follow");
        h
    }

    #[test]
    fn a_seed_commitment_accepts_only_its_own_header() {
        let seed = ObjectSeed::from_bytes([7; SEED_LEN]);
        assert_eq!(ObjectSeed::of_header(&header([7; SEED_LEN])).unwrap(), seed);
        seed.verify_header(&header([7; SEED_LEN])).unwrap();
        let mut other = [7; SEED_LEN];
        other[23] ^= 1;
        assert!(matches!(
            seed.verify_header(&header(other)),
            Err(CryptoError::SeedMismatch)
        ));
        let check = ObjectCheck::Seed(seed);
        check.verify_whole(&header([7; SEED_LEN])).unwrap();
        assert!(check.verify_whole(&header(other)).is_err());
        assert!(check.verify_header(&header(other)).is_err());
    }

    #[test]
    fn a_seed_check_refuses_short_or_foreign_headers() {
        let seed = ObjectSeed::from_bytes([7; SEED_LEN]);
        let h = header([7; SEED_LEN]);
        assert!(matches!(
            seed.verify_header(&h[..HEADER_LEN - 1]),
            Err(CryptoError::Malformed { .. })
        ));
        let mut bad_magic = h.clone();
        bad_magic[0] = b'X';
        assert!(matches!(
            seed.verify_header(&bad_magic),
            Err(CryptoError::Malformed { .. })
        ));
        let mut v9 = h;
        v9[3] = 9;
        assert!(matches!(
            seed.verify_header(&v9),
            Err(CryptoError::UnsupportedVersion(9))
        ));
    }

    #[test]
    fn a_digest_commitment_checks_the_whole_object_only() {
        let ct = header([1; SEED_LEN]);
        let check = ObjectCheck::Digest(ObjectDigest::of(&ct));
        check.verify_whole(&ct).unwrap();
        let mut changed = ct.clone();
        *changed.last_mut().unwrap() ^= 1;
        assert!(matches!(
            check.verify_whole(&changed),
            Err(CryptoError::DigestMismatch)
        ));
        // Nothing to check from a header alone.
        check.verify_header(&changed).unwrap();
    }

    #[test]
    fn debug_shows_hex() {
        let s = format!("{:?}", ObjectSeed::from_bytes([0xab; SEED_LEN]));
        assert!(s.starts_with("ObjectSeed(abab"), "{s}");
    }
}
