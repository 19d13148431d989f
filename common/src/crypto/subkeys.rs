//! The vault key and the purpose keys derived from it.
//!
//! `subkey = HKDF-SHA256(ikm = vault key, salt = empty, info = label)` with
//! one label per primitive, so no key ever serves two primitives: AES-GCM for
//! names, HMAC-SHA256 for name tags, AES-GCM for attribute records, and the
//! content key that per-object keys are derived from.

use super::keys::define_key;
use super::{CryptoError, Key32};

/// HKDF labels of the purpose keys, in the order of [`VaultSubkeys`].
pub const LABEL_NAME_ENCRYPTION: &str = "securevault/v1/subkey/name-encryption";
/// Label of the name-tag (HMAC) key.
pub const LABEL_NAME_TAG: &str = "securevault/v1/subkey/name-tag";
/// Label of the attribute-record key.
pub const LABEL_ATTRIBUTES: &str = "securevault/v1/subkey/attributes";
/// Label of the content key.
pub const LABEL_CONTENT: &str = "securevault/v1/subkey/content";
/// Label of the local key: seals what the client keeps on its own disk
/// (the write-back journal); never used for anything sent to the server.
pub const LABEL_LOCAL: &str = "securevault/v1/subkey/local";

define_key!(
    /// The random root of all data keys. Stored on the server only wrapped.
    VaultKey
);
define_key!(
    /// Encrypts directory-entry names (sealed boxes).
    NameEncryptionKey
);
define_key!(
    /// Keys the HMAC that makes deterministic name tags.
    NameTagKey
);
define_key!(
    /// Encrypts node attribute records (sealed boxes).
    AttributeKey
);
define_key!(
    /// The root of the per-object content keys.
    ContentKey
);
define_key!(
    /// Seals the client's local write-back journal.
    LocalKey
);

impl VaultKey {
    /// A fresh vault key, for a new account.
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(Self(Key32::random()?))
    }

    /// Derives every purpose key.
    pub fn subkeys(&self) -> Result<VaultSubkeys, CryptoError> {
        Ok(VaultSubkeys {
            name_encryption: NameEncryptionKey(self.0.derive(LABEL_NAME_ENCRYPTION.as_bytes())?),
            name_tag: NameTagKey(self.0.derive(LABEL_NAME_TAG.as_bytes())?),
            attributes: AttributeKey(self.0.derive(LABEL_ATTRIBUTES.as_bytes())?),
            content: ContentKey(self.0.derive(LABEL_CONTENT.as_bytes())?),
            local: LocalKey(self.0.derive(LABEL_LOCAL.as_bytes())?),
        })
    }
}

/// Every key a mounted vault needs, derived once at unlock.
#[derive(Debug, Clone)]
pub struct VaultSubkeys {
    /// For encrypted names.
    pub name_encryption: NameEncryptionKey,
    /// For name tags.
    pub name_tag: NameTagKey,
    /// For attribute records.
    pub attributes: AttributeKey,
    /// For file contents.
    pub content: ContentKey,
    /// For the local journal.
    pub local: LocalKey,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subkey_is_distinct_and_deterministic() {
        let vk = VaultKey::from_bytes([0x11; 32]);
        let a = vk.subkeys().unwrap();
        let b = vk.subkeys().unwrap();
        let all = [
            a.name_encryption.expose(),
            a.name_tag.expose(),
            a.attributes.expose(),
            a.content.expose(),
            a.local.expose(),
            vk.expose(),
        ];
        for (i, x) in all.iter().enumerate() {
            for y in all.iter().skip(i + 1) {
                assert_ne!(x, y);
            }
        }
        assert_eq!(a.content, b.content);
        assert_ne!(VaultKey::generate().unwrap(), VaultKey::generate().unwrap());
    }
}
