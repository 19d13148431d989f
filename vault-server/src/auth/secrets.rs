//! The server's own secret and the keys derived from it.
//!
//! One 256-bit secret (`VAULT_JWT_SECRET`, or generated once into the data
//! dir with mode 0600) is split by HKDF into one key per purpose: signing
//! access tokens, and keying the hashes of one-time codes, login tickets,
//! refresh tokens, throttle keys and the fake KDF salts of unknown accounts.
//! Keyed hashes mean a stolen database alone does not let anyone check a
//! guessed 6-digit code or token.

use std::io::Write;
use std::path::Path;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::config::JwtSecretSource;

/// What a keyed hash is for (domain separation).
#[derive(Debug, Clone, Copy)]
pub enum HashPurpose {
    /// A one-time code, salted with its challenge key.
    Code,
    /// A login ticket.
    Ticket,
    /// An e-mail verification challenge.
    Verification,
    /// A refresh token.
    Refresh,
    /// A per-account throttle key (hash of the canonical e-mail).
    Throttle,
    /// The salt of an unknown account's fake KDF parameters.
    FakeSalt,
}

impl HashPurpose {
    fn label(self) -> &'static [u8] {
        match self {
            HashPurpose::Code => b"code",
            HashPurpose::Ticket => b"ticket",
            HashPurpose::Verification => b"verification",
            HashPurpose::Refresh => b"refresh",
            HashPurpose::Throttle => b"throttle",
            HashPurpose::FakeSalt => b"fake-salt",
        }
    }
}

/// Keys derived from the server secret.
pub struct ServerKeys {
    jwt: Zeroizing<[u8; 32]>,
    hash: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for ServerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKeys(<redacted>)")
    }
}

/// Why the server secret could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Reading or writing the secret file failed.
    #[error("server secret {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The stored secret is not 64 hex digits.
    #[error("server secret {0} is not 64 hex digits")]
    Corrupt(String),
    /// No randomness.
    #[error("the operating system's random number generator failed")]
    Rng,
}

fn hkdf(secret: &[u8], info: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is always a valid HKDF-SHA256 output length.
    let _ = hkdf_expand(secret, info, out.as_mut_slice());
    out
}

fn hkdf_expand(secret: &[u8], info: &[u8], out: &mut [u8]) -> Result<(), ()> {
    ::hkdf::Hkdf::<Sha256>::new(None, secret)
        .expand(info, out)
        .map_err(|_| ())
}

impl ServerKeys {
    /// Derives the keys from a secret.
    pub fn from_secret(secret: &[u8]) -> Self {
        Self {
            jwt: hkdf(secret, b"securevault-server/v1/jwt"),
            hash: hkdf(secret, b"securevault-server/v1/keyed-hash"),
        }
    }

    /// Loads the secret from the settings, generating and storing it in the
    /// data dir on first start.
    pub fn load(source: &JwtSecretSource) -> Result<Self, SecretError> {
        match source {
            JwtSecretSource::Given(s) => Ok(Self::from_secret(s)),
            JwtSecretSource::DataDir(path) => Ok(Self::from_secret(&load_or_create(path)?)),
        }
    }

    /// The access-token signing key.
    pub fn jwt_key(&self) -> &[u8; 32] {
        &self.jwt
    }

    /// HMAC-SHA256(hash key, purpose || 0 || data).
    pub fn keyed_hash(&self, purpose: HashPurpose, data: &[u8]) -> Vec<u8> {
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(self.hash.as_slice()) else {
            return Vec::new();
        };
        mac.update(purpose.label());
        mac.update(&[0]);
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }
}

/// Constant-time equality of two hashes.
pub fn hashes_equal(a: &[u8], b: &[u8]) -> bool {
    !a.is_empty() && bool::from(a.ct_eq(b))
}

fn load_or_create(path: &Path) -> Result<Zeroizing<Vec<u8>>, SecretError> {
    let io = |source| SecretError::Io {
        path: path.display().to_string(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bytes = hex::decode(text.trim())
                .map_err(|_| SecretError::Corrupt(path.display().to_string()))?;
            if bytes.len() != 32 {
                return Err(SecretError::Corrupt(path.display().to_string()));
            }
            Ok(Zeroizing::new(bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            let mut secret = Zeroizing::new(vec![0u8; 32]);
            getrandom::fill(&mut secret).map_err(|_| SecretError::Rng)?;
            let text = Zeroizing::new(hex::encode(&*secret));
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode_0600()
                .open(path)
                .map_err(io)?;
            file.write_all(text.as_bytes()).map_err(io)?;
            file.sync_all().map_err(io)?;
            tracing::info!(path = %path.display(), "generated a new server secret");
            Ok(secret)
        }
        Err(e) => Err(io(e)),
    }
}

trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for std::fs::OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generated_secret_is_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/jwt-secret");
        let a = ServerKeys::load(&JwtSecretSource::DataDir(path.clone())).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = ServerKeys::load(&JwtSecretSource::DataDir(path.clone())).unwrap();
        assert_eq!(a.jwt_key(), b.jwt_key());
        std::fs::write(&path, "not hex").unwrap();
        assert!(ServerKeys::load(&JwtSecretSource::DataDir(path)).is_err());
    }

    #[test]
    fn keyed_hashes_are_separated_by_purpose() {
        let k = ServerKeys::from_secret(&[1; 32]);
        let a = k.keyed_hash(HashPurpose::Code, b"123456");
        assert_eq!(a, k.keyed_hash(HashPurpose::Code, b"123456"));
        assert_ne!(a, k.keyed_hash(HashPurpose::Ticket, b"123456"));
        assert_ne!(
            a,
            ServerKeys::from_secret(&[2; 32]).keyed_hash(HashPurpose::Code, b"123456")
        );
        assert!(hashes_equal(&a, &a.clone()));
        assert!(!hashes_equal(&a, &[]));
        assert_ne!(k.jwt_key(), &[0u8; 32]);
    }
}
