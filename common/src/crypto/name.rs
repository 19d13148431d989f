//! Directory-entry names: a randomized encryption for the client and a keyed
//! deterministic tag for the server's index.
//!
//! * `tag = HMAC-SHA256(name-tag key, parent id || name)`: 32 bytes. The server
//!   looks entries up and enforces uniqueness by (parent, tag) without
//!   learning the name.
//! * `encrypted = sealed box(name-encryption key, aad, padded name)` with
//!   `aad = frame("securevault/v1/name", [parent id, child id])`, so an entry's
//!   name cannot be moved to another directory or attached to another node.
//!   The name is padded (ISO/IEC 7816-4: `0x80` then zeros) to a multiple of
//!   32 bytes, hiding its exact length.
//!
//! When listing, the client checks that the decrypted name re-derives the
//! entry's tag, so a server cannot pair one entry's name with another's tag.
//! Names are byte strings (Linux allows any bytes but `/` and NUL), 1 to 255
//! bytes long.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::CryptoError;
use super::aad::frame;
use super::sealed;
use super::subkeys::{NameEncryptionKey, NameTagKey};
use crate::ids::NodeId;

/// The longest name accepted, in bytes (Linux's NAME_MAX).
pub const MAX_NAME_LEN: usize = 255;
/// Names are padded to a multiple of this many bytes before encryption.
pub const NAME_PAD_BLOCK: usize = 32;
const LABEL: &str = "securevault/v1/name";

/// The deterministic, keyed tag of a name in one directory.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NameTag(#[serde(with = "hex::serde")] [u8; 32]);

impl NameTag {
    /// Wraps raw tag bytes (as stored by the server).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for NameTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NameTag({})", hex::encode(self.0))
    }
}

/// Checks that `name` can be a directory entry.
pub fn validate_name(name: &[u8]) -> Result<(), CryptoError> {
    if name.is_empty() {
        return Err(CryptoError::InvalidName("empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(CryptoError::InvalidName("longer than 255 bytes"));
    }
    if name == b"." || name == b".." {
        return Err(CryptoError::InvalidName("`.` and `..` are reserved"));
    }
    if name.iter().any(|&b| b == b'/' || b == 0) {
        return Err(CryptoError::InvalidName("contains `/` or NUL"));
    }
    Ok(())
}

/// The tag of `name` in directory `parent`.
pub fn name_tag(key: &NameTagKey, parent: NodeId, name: &[u8]) -> Result<NameTag, CryptoError> {
    validate_name(name)?;
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.expose())
        .map_err(|_| CryptoError::OutOfRange)?;
    mac.update(parent.as_bytes());
    mac.update(name);
    Ok(NameTag(mac.finalize().into_bytes().into()))
}

pub(crate) fn aad(parent: NodeId, child: NodeId) -> Result<Vec<u8>, CryptoError> {
    frame(LABEL, &[parent.as_bytes(), child.as_bytes()])
}

pub(crate) fn pad(name: &[u8]) -> Zeroizing<Vec<u8>> {
    let padded_len = (name.len() / NAME_PAD_BLOCK + 1) * NAME_PAD_BLOCK;
    let mut out = Zeroizing::new(Vec::with_capacity(padded_len));
    out.extend_from_slice(name);
    out.push(0x80);
    out.resize(padded_len, 0);
    out
}

fn unpad(padded: &[u8]) -> Result<&[u8], CryptoError> {
    let bad = CryptoError::Malformed {
        what: "encrypted name",
        reason: "bad padding",
    };
    if padded.is_empty() || !padded.len().is_multiple_of(NAME_PAD_BLOCK) {
        return Err(bad);
    }
    let end = padded.iter().rposition(|&b| b != 0).ok_or(bad.clone())?;
    if padded.get(end) != Some(&0x80) || padded.len() - end > NAME_PAD_BLOCK {
        return Err(bad);
    }
    padded.get(..end).ok_or(bad)
}

#[cfg(test)]
pub(crate) fn encrypt_name_with_salt(
    key: &NameEncryptionKey,
    parent: NodeId,
    child: NodeId,
    name: &[u8],
    salt: &[u8; sealed::SALT_LEN],
) -> Result<Vec<u8>, CryptoError> {
    validate_name(name)?;
    sealed::seal_with_salt(&key.0, salt, &aad(parent, child)?, &pad(name))
}

/// Encrypts `name` for the entry in `parent` that points at `child`.
pub fn encrypt_name(
    key: &NameEncryptionKey,
    parent: NodeId,
    child: NodeId,
    name: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    validate_name(name)?;
    sealed::seal(&key.0, &aad(parent, child)?, &pad(name))
}

/// Decrypts an entry's name and checks it against the entry's tag.
pub fn decrypt_name(
    enc_key: &NameEncryptionKey,
    tag_key: &NameTagKey,
    parent: NodeId,
    child: NodeId,
    encrypted: &[u8],
    tag: &NameTag,
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let padded = sealed::open(&enc_key.0, &aad(parent, child)?, encrypted)?;
    let name = unpad(&padded)?;
    validate_name(name)?;
    let expected = name_tag(tag_key, parent, name)?;
    if !bool::from(expected.0.ct_eq(&tag.0)) {
        return Err(CryptoError::NameTagMismatch);
    }
    Ok(Zeroizing::new(name.to_vec()))
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;
    use crate::crypto::subkeys::VaultKey;

    fn keys() -> (NameEncryptionKey, NameTagKey) {
        let s = VaultKey::from_bytes([4; 32]).subkeys().unwrap();
        (s.name_encryption, s.name_tag)
    }

    const P: NodeId = NodeId::from_bytes([1; 16]);
    const C: NodeId = NodeId::from_bytes([2; 16]);

    #[test]
    fn round_trip_all_lengths() {
        let (ek, tk) = keys();
        for len in 1..=MAX_NAME_LEN {
            let name: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let enc = encrypt_name(&ek, P, C, &name).unwrap();
            assert_eq!(
                (enc.len() - crate::crypto::SEALED_OVERHEAD) % NAME_PAD_BLOCK,
                0
            );
            let tag = name_tag(&tk, P, &name).unwrap();
            let back = decrypt_name(&ek, &tk, P, C, &enc, &tag).unwrap();
            assert_eq!(back.as_slice(), name.as_slice());
        }
    }

    #[test]
    fn non_utf8_names_are_fine() {
        let (ek, tk) = keys();
        let name = [0xff, 0xfe, 0x80, b'x'];
        let enc = encrypt_name(&ek, P, C, &name).unwrap();
        let tag = name_tag(&tk, P, &name).unwrap();
        assert_eq!(
            decrypt_name(&ek, &tk, P, C, &enc, &tag).unwrap().as_slice(),
            &name
        );
    }

    #[test]
    fn invalid_names_are_refused() {
        let (ek, tk) = keys();
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b", &[b'x'; 256]] {
            assert!(matches!(
                encrypt_name(&ek, P, C, bad),
                Err(CryptoError::InvalidName(_))
            ));
            assert!(matches!(
                name_tag(&tk, P, bad),
                Err(CryptoError::InvalidName(_))
            ));
        }
    }

    #[test]
    fn tags_are_deterministic_and_bound_to_parent() {
        let (_, tk) = keys();
        assert_eq!(
            name_tag(&tk, P, b"a").unwrap(),
            name_tag(&tk, P, b"a").unwrap()
        );
        assert_ne!(
            name_tag(&tk, P, b"a").unwrap(),
            name_tag(&tk, C, b"a").unwrap()
        );
        assert_ne!(
            name_tag(&tk, P, b"a").unwrap(),
            name_tag(&tk, P, b"b").unwrap()
        );
    }

    #[test]
    fn encryption_is_randomized() {
        let (ek, _) = keys();
        assert_ne!(
            encrypt_name(&ek, P, C, b"same").unwrap(),
            encrypt_name(&ek, P, C, b"same").unwrap()
        );
    }

    #[test]
    fn moved_name_or_swapped_tag_is_detected() {
        let (ek, tk) = keys();
        let enc = encrypt_name(&ek, P, C, b"report.pdf").unwrap();
        let tag = name_tag(&tk, P, b"report.pdf").unwrap();
        let other = NodeId::from_bytes([3; 16]);
        // Moved to another directory, or re-attached to another node.
        assert_eq!(
            decrypt_name(&ek, &tk, other, C, &enc, &tag).unwrap_err(),
            CryptoError::Authentication
        );
        assert_eq!(
            decrypt_name(&ek, &tk, P, other, &enc, &tag).unwrap_err(),
            CryptoError::Authentication
        );
        // Paired with another entry's tag.
        let wrong_tag = name_tag(&tk, P, b"other.pdf").unwrap();
        assert_eq!(
            decrypt_name(&ek, &tk, P, C, &enc, &wrong_tag).unwrap_err(),
            CryptoError::NameTagMismatch
        );
    }

    #[test]
    fn unpad_rejects_malformed_padding() {
        assert!(unpad(&[]).is_err());
        assert!(unpad(&[0u8; 32]).is_err());
        let mut no_marker = vec![b'a'; 31];
        no_marker.push(1);
        assert!(unpad(&no_marker).is_err());
        let mut too_much = vec![b'a'];
        too_much.push(0x80);
        too_much.resize(64, 0);
        assert!(unpad(&too_much).is_err());
        let mut good = vec![b'a'];
        good.push(0x80);
        good.resize(32, 0);
        assert_eq!(unpad(&good).unwrap(), b"a");
    }
}
