//! Account keys: the password-derived master key and its two branches.
//!
//! `master = Argon2id v1.3(password, salt[16], m, t, p, 32 bytes)`;
//! `auth key = HKDF-SHA256(master, info "securevault/v1/auth-key")` is the
//! only login secret the server ever receives; `kek = HKDF-SHA256(master,
//! info "securevault/v1/key-encryption-key")` wraps the vault key and never
//! leaves the client. The master key itself is dropped (and zeroized) as soon
//! as both branches exist.
//!
//! Parameters come from the server at login, so they are checked against
//! fixed bounds before use: below the minimum is a downgrade attack, above the
//! maximum a denial of service against the client.

use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};

use super::keys::{KEY_LEN, define_key};
use super::{CryptoError, Key32, random_array};

/// Default memory cost: 64 MiB.
pub const DEFAULT_MEMORY_KIB: u32 = 64 * 1024;
/// Default number of passes.
pub const DEFAULT_ITERATIONS: u32 = 3;
/// Default number of lanes.
pub const DEFAULT_PARALLELISM: u32 = 4;
/// The least memory accepted (OWASP's floor for Argon2id: 19 MiB with t=2).
pub const MIN_MEMORY_KIB: u32 = 19 * 1024;
/// The fewest passes accepted.
pub const MIN_ITERATIONS: u32 = 2;
/// The most memory a server may ask a client to spend: 2 GiB.
pub const MAX_MEMORY_KIB: u32 = 2 * 1024 * 1024;
/// The most passes a server may ask for.
pub const MAX_ITERATIONS: u32 = 32;
/// The most lanes a server may ask for.
pub const MAX_PARALLELISM: u32 = 16;
/// Length of the per-account salt.
pub const SALT_LEN: usize = 16;

const AUTH_KEY_INFO: &[u8] = b"securevault/v1/auth-key";
const KEK_INFO: &[u8] = b"securevault/v1/key-encryption-key";

/// Argon2id parameters and salt, stored with the account (not secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KdfParams {
    /// Memory cost in KiB.
    pub memory_kib: u32,
    /// Number of passes.
    pub iterations: u32,
    /// Number of lanes.
    pub parallelism: u32,
    /// Per-account random salt (16 bytes as 32 hex digits).
    #[serde(with = "hex::serde")]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = String, pattern = "^[0-9a-fA-F]{32}$")
    )]
    pub salt: [u8; SALT_LEN],
}

impl KdfParams {
    /// The default parameters with a fresh random salt, for a new account or
    /// a password change.
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(Self {
            memory_kib: DEFAULT_MEMORY_KIB,
            iterations: DEFAULT_ITERATIONS,
            parallelism: DEFAULT_PARALLELISM,
            salt: random_array()?,
        })
    }

    /// Rejects parameters outside the accepted bounds.
    pub fn validate(&self) -> Result<(), CryptoError> {
        if self.memory_kib < MIN_MEMORY_KIB {
            return Err(CryptoError::KdfParams("memory cost below the minimum"));
        }
        if self.memory_kib > MAX_MEMORY_KIB {
            return Err(CryptoError::KdfParams("memory cost above the maximum"));
        }
        if self.iterations < MIN_ITERATIONS {
            return Err(CryptoError::KdfParams("too few iterations"));
        }
        if self.iterations > MAX_ITERATIONS {
            return Err(CryptoError::KdfParams("too many iterations"));
        }
        if self.parallelism == 0 || self.parallelism > MAX_PARALLELISM {
            return Err(CryptoError::KdfParams("parallelism out of range"));
        }
        if self.memory_kib < 8 * self.parallelism {
            return Err(CryptoError::KdfParams("memory below 8 KiB per lane"));
        }
        Ok(())
    }
}

define_key!(
    /// Proves knowledge of the password to the server. The server stores only
    /// Argon2id(auth key) and compares in constant time.
    AuthKey
);
define_key!(
    /// Wraps and unwraps the vault key. Never leaves the client.
    KeyEncryptionKey
);

/// Both branches of the master key.
#[derive(Debug)]
pub struct AccountKeys {
    /// The login secret.
    pub auth: AuthKey,
    /// The key that wraps the vault key.
    pub kek: KeyEncryptionKey,
}

/// Runs Argon2id over the password and splits the master key. Takes about a
/// third of a second with the default parameters: call it off async threads.
pub fn derive_account_keys(
    password: &[u8],
    params: &KdfParams,
) -> Result<AccountKeys, CryptoError> {
    params.validate()?;
    let argon_params = Params::new(
        params.memory_kib,
        params.iterations,
        params.parallelism,
        Some(KEY_LEN),
    )
    .map_err(|_| CryptoError::KdfParams("rejected by Argon2"))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params);
    let mut master = Key32::from_bytes([0u8; KEY_LEN]);
    argon
        .hash_password_into(password, &params.salt, master.expose_mut())
        .map_err(|_| CryptoError::KdfParams("rejected by Argon2"))?;
    Ok(AccountKeys {
        auth: AuthKey(master.derive(AUTH_KEY_INFO)?),
        kek: KeyEncryptionKey(master.derive(KEK_INFO)?),
    })
}

#[cfg(test)]
#[allow(clippy::type_complexity)]
mod tests {
    use super::*;

    fn fast_params() -> KdfParams {
        KdfParams {
            memory_kib: MIN_MEMORY_KIB,
            iterations: MIN_ITERATIONS,
            parallelism: 1,
            salt: [3; SALT_LEN],
        }
    }

    #[test]
    fn branches_differ_and_are_deterministic() {
        let a = derive_account_keys(b"correct horse", &fast_params()).unwrap();
        let b = derive_account_keys(b"correct horse", &fast_params()).unwrap();
        assert_eq!(a.auth, b.auth);
        assert_eq!(a.kek, b.kek);
        assert_ne!(a.auth.expose(), a.kek.expose());
        let c = derive_account_keys(b"correct horsf", &fast_params()).unwrap();
        assert_ne!(a.auth, c.auth);
        let mut other_salt = fast_params();
        other_salt.salt[0] ^= 1;
        assert_ne!(
            a.auth,
            derive_account_keys(b"correct horse", &other_salt)
                .unwrap()
                .auth
        );
    }

    #[test]
    fn generate_uses_defaults_and_random_salt() {
        let a = KdfParams::generate().unwrap();
        let b = KdfParams::generate().unwrap();
        assert_eq!(a.memory_kib, 65536);
        assert_eq!((a.iterations, a.parallelism), (3, 4));
        assert_ne!(a.salt, b.salt);
        assert_eq!(a.validate(), Ok(()));
    }

    #[test]
    fn weak_or_hostile_parameters_are_rejected() {
        let cases: [(fn(&mut KdfParams), &str); 6] = [
            (
                |p| p.memory_kib = MIN_MEMORY_KIB - 1,
                "memory cost below the minimum",
            ),
            (
                |p| p.memory_kib = MAX_MEMORY_KIB + 1,
                "memory cost above the maximum",
            ),
            (|p| p.iterations = 1, "too few iterations"),
            (|p| p.iterations = MAX_ITERATIONS + 1, "too many iterations"),
            (|p| p.parallelism = 0, "parallelism out of range"),
            (|p| p.parallelism = 17, "parallelism out of range"),
        ];
        for (mutate, why) in cases {
            let mut p = fast_params();
            mutate(&mut p);
            assert_eq!(
                derive_account_keys(b"pw", &p).err(),
                Some(CryptoError::KdfParams(why))
            );
        }
    }

    #[test]
    fn debug_redacts_keys() {
        let keys = derive_account_keys(b"pw", &fast_params()).unwrap();
        let shown = format!("{keys:?}");
        assert!(shown.contains("AuthKey(<redacted>)"));
        assert!(!shown.contains(&hex::encode(keys.auth.expose())[..8]));
    }

    #[test]
    fn params_serialize_salt_as_hex() {
        let json = serde_json::to_value(fast_params()).unwrap();
        assert_eq!(json["salt"], "03".repeat(16));
        assert_eq!(json["memory_kib"], 19456);
    }
}
