//! Wrapping the vault key for storage on the server.
//!
//! `wrapped = sealed box(wrapping key, aad, vault key)` with
//! `aad = frame("securevault/v1/key-wrap", [purpose, account])`, where purpose
//! is `password` (wrapping key = the key-encryption key) or `recovery`
//! (wrapping key = HKDF of the recovery key), and account is the canonical
//! e-mail address. Binding both means a wrapped key cannot be replayed for
//! another account or passed off as the other kind. A password change
//! re-wraps the same vault key; no data is re-encrypted.

use super::aad::frame;
use super::kdf::KeyEncryptionKey;
use super::recovery::RecoveryKey;
use super::sealed::{self, SEALED_OVERHEAD};
use super::subkeys::VaultKey;
use super::{CryptoError, Key32};

/// Length of a wrapped vault key in bytes.
pub const WRAPPED_KEY_LEN: usize = 32 + SEALED_OVERHEAD;
const LABEL: &str = "securevault/v1/key-wrap";

/// What a wrapped key is wrapped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrapPurpose {
    /// By the password's key-encryption key.
    Password,
    /// By the recovery key.
    Recovery,
}

impl WrapPurpose {
    fn label(self) -> &'static [u8] {
        match self {
            WrapPurpose::Password => b"password",
            WrapPurpose::Recovery => b"recovery",
        }
    }
}

/// The account identity bound into wrapped keys: the e-mail address with
/// ASCII white space trimmed and ASCII letters lower-cased (other characters
/// are kept as they are, so every implementation agrees exactly).
pub fn canonical_account(email: &str) -> String {
    email
        .trim_matches(|c: char| c.is_ascii_whitespace())
        .to_ascii_lowercase()
}

fn aad(purpose: WrapPurpose, account: &str) -> Result<Vec<u8>, CryptoError> {
    frame(
        LABEL,
        &[purpose.label(), canonical_account(account).as_bytes()],
    )
}

#[cfg(test)]
pub(crate) fn wrap_with_salt(
    key: &Key32,
    purpose: WrapPurpose,
    account: &str,
    vault_key: &VaultKey,
    salt: &[u8; sealed::SALT_LEN],
) -> Result<Vec<u8>, CryptoError> {
    sealed::seal_with_salt(key, salt, &aad(purpose, account)?, vault_key.expose())
}

fn wrap(
    key: &Key32,
    purpose: WrapPurpose,
    account: &str,
    vault_key: &VaultKey,
) -> Result<Vec<u8>, CryptoError> {
    sealed::seal(key, &aad(purpose, account)?, vault_key.expose())
}

pub(crate) fn unwrap(
    key: &Key32,
    purpose: WrapPurpose,
    account: &str,
    wrapped: &[u8],
) -> Result<VaultKey, CryptoError> {
    if wrapped.len() != WRAPPED_KEY_LEN {
        return Err(CryptoError::Malformed {
            what: "wrapped key",
            reason: "wrong length",
        });
    }
    let plain = sealed::open(key, &aad(purpose, account)?, wrapped)?;
    let bytes: [u8; 32] = plain
        .as_slice()
        .try_into()
        .map_err(|_| CryptoError::Malformed {
            what: "wrapped key",
            reason: "wrong length",
        })?;
    Ok(VaultKey::from_bytes(bytes))
}

/// Wraps the vault key with the password's key-encryption key.
pub fn wrap_vault_key(
    kek: &KeyEncryptionKey,
    account: &str,
    vault_key: &VaultKey,
) -> Result<Vec<u8>, CryptoError> {
    wrap(&kek.0, WrapPurpose::Password, account, vault_key)
}

/// Unwraps the vault key with the password's key-encryption key. A wrong
/// password yields [`CryptoError::Authentication`].
pub fn unwrap_vault_key(
    kek: &KeyEncryptionKey,
    account: &str,
    wrapped: &[u8],
) -> Result<VaultKey, CryptoError> {
    unwrap(&kek.0, WrapPurpose::Password, account, wrapped)
}

/// Wraps the vault key a second time, with the recovery key.
pub fn wrap_vault_key_for_recovery(
    recovery: &RecoveryKey,
    account: &str,
    vault_key: &VaultKey,
) -> Result<Vec<u8>, CryptoError> {
    wrap(
        &recovery.wrapping_key()?,
        WrapPurpose::Recovery,
        account,
        vault_key,
    )
}

/// Unwraps the vault key with the recovery key.
pub fn unwrap_vault_key_with_recovery(
    recovery: &RecoveryKey,
    account: &str,
    wrapped: &[u8],
) -> Result<VaultKey, CryptoError> {
    unwrap(
        &recovery.wrapping_key()?,
        WrapPurpose::Recovery,
        account,
        wrapped,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek(b: u8) -> KeyEncryptionKey {
        KeyEncryptionKey::from_bytes([b; 32])
    }

    #[test]
    fn round_trip_and_length() {
        let vk = VaultKey::generate().unwrap();
        let w = wrap_vault_key(&kek(1), "A@Example.org ", &vk).unwrap();
        assert_eq!(w.len(), WRAPPED_KEY_LEN);
        // The account is canonicalised on both sides.
        assert_eq!(unwrap_vault_key(&kek(1), "a@example.org", &w).unwrap(), vk);
    }

    #[test]
    fn wrong_password_account_or_purpose_fails() {
        let vk = VaultKey::generate().unwrap();
        let w = wrap_vault_key(&kek(1), "a@example.org", &vk).unwrap();
        assert_eq!(
            unwrap_vault_key(&kek(2), "a@example.org", &w),
            Err(CryptoError::Authentication)
        );
        assert_eq!(
            unwrap_vault_key(&kek(1), "b@example.org", &w),
            Err(CryptoError::Authentication)
        );
        assert_eq!(
            unwrap(&kek(1).0, WrapPurpose::Recovery, "a@example.org", &w),
            Err(CryptoError::Authentication)
        );
        assert!(matches!(
            unwrap_vault_key(&kek(1), "a@example.org", &w[..w.len() - 1]),
            Err(CryptoError::Malformed { .. })
        ));
    }

    #[test]
    fn password_change_rewraps_the_same_vault_key() {
        let vk = VaultKey::generate().unwrap();
        let old = wrap_vault_key(&kek(1), "a@x", &vk).unwrap();
        let unwrapped = unwrap_vault_key(&kek(1), "a@x", &old).unwrap();
        let new = wrap_vault_key(&kek(2), "a@x", &unwrapped).unwrap();
        assert_eq!(unwrap_vault_key(&kek(2), "a@x", &new).unwrap(), vk);
    }

    #[test]
    fn recovery_key_unwraps_its_own_copy() {
        let vk = VaultKey::generate().unwrap();
        let rk = RecoveryKey::generate().unwrap();
        let w = wrap_vault_key_for_recovery(&rk, "a@x", &vk).unwrap();
        assert_eq!(unwrap_vault_key_with_recovery(&rk, "a@x", &w).unwrap(), vk);
        let other = RecoveryKey::generate().unwrap();
        assert_eq!(
            unwrap_vault_key_with_recovery(&other, "a@x", &w),
            Err(CryptoError::Authentication)
        );
    }
}
