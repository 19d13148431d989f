//! Sealing for data the client keeps on its own disk: the write-back
//! journal's staged segments and manifests.
//!
//! `sealed box(local key, frame("securevault/v1/local/" || purpose, fields),
//! plaintext)`: the same sealed box as names and records, under a key used
//! for nothing else, with the purpose and the caller's fields (file id,
//! segment index, generation) bound into the AAD, so a staged block cannot
//! be replayed at another position or into another file. Nothing sealed
//! here ever leaves the machine; the format may change between releases as
//! long as a client can read its own journal.

use super::CryptoError;
use super::aad::frame;
use super::plaintext::Plaintext;
use super::sealed;
use super::subkeys::LocalKey;

const LABEL_PREFIX: &str = "securevault/v1/local/";

fn aad(purpose: &str, fields: &[&[u8]]) -> Result<Vec<u8>, CryptoError> {
    frame(&format!("{LABEL_PREFIX}{purpose}"), fields)
}

/// Seals `plaintext` for local storage, bound to `purpose` and `fields`.
pub fn seal_local(
    key: &LocalKey,
    purpose: &str,
    fields: &[&[u8]],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    sealed::seal(&key.0, &aad(purpose, fields)?, plaintext)
}

/// [`seal_local`], appending the sealed bytes to `out` (no copy of its
/// own: the journal writes a length and then this).
pub fn seal_local_append(
    key: &LocalKey,
    purpose: &str,
    fields: &[&[u8]],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    sealed::seal_append(&key.0, &aad(purpose, fields)?, plaintext, out)
}

/// [`open_local`], appending the plaintext to `out`; on error `out` is as
/// it was.
pub fn open_local_append(
    key: &LocalKey,
    purpose: &str,
    fields: &[&[u8]],
    sealed_bytes: &[u8],
    out: &mut Plaintext,
) -> Result<(), CryptoError> {
    sealed::open_append(&key.0, &aad(purpose, fields)?, sealed_bytes, out)
}

/// Opens what [`seal_local`] sealed with the same `purpose` and `fields`.
pub fn open_local(
    key: &LocalKey,
    purpose: &str,
    fields: &[&[u8]],
    sealed_bytes: &[u8],
) -> Result<Plaintext, CryptoError> {
    sealed::open(&key.0, &aad(purpose, fields)?, sealed_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::subkeys::VaultKey;

    fn key() -> LocalKey {
        VaultKey::from_bytes([9; 32]).subkeys().unwrap().local
    }

    #[test]
    fn round_trip_and_binding() {
        let k = key();
        let sealed = seal_local(&k, "segment", &[b"file", &7u64.to_be_bytes()], b"data").unwrap();
        let plain = open_local(&k, "segment", &[b"file", &7u64.to_be_bytes()], &sealed).unwrap();
        assert_eq!(plain.as_slice(), b"data");
        // Another position, file or purpose does not open.
        assert!(open_local(&k, "segment", &[b"file", &8u64.to_be_bytes()], &sealed).is_err());
        assert!(open_local(&k, "segment", &[b"fil", &7u64.to_be_bytes()], &sealed).is_err());
        assert!(open_local(&k, "manifest", &[b"file", &7u64.to_be_bytes()], &sealed).is_err());
        let mut bad = sealed.clone();
        if let Some(b) = bad.last_mut() {
            *b ^= 1;
        }
        assert!(open_local(&k, "segment", &[b"file", &7u64.to_be_bytes()], &bad).is_err());
        let other = VaultKey::from_bytes([8; 32]).subkeys().unwrap().local;
        assert!(open_local(&other, "segment", &[b"file", &7u64.to_be_bytes()], &sealed).is_err());
    }
}
