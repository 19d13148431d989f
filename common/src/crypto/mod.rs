//! All of SecureVault's cryptography. The byte formats are specified in
//! `docs/FORMAT.md`; this module is the reference implementation.
//!
//! Key hierarchy (one key, one purpose):
//!
//! ```text
//! password --Argon2id--> master --HKDF--+--> auth key   (sent to the server, which stores Argon2id(auth key))
//!                                       +--> key-encryption key --wraps--> vault key (random)
//! recovery key (random) --HKDF--> recovery wrapping key --wraps--> vault key
//! vault key --HKDF(label)--> name-encryption, name-tag, attribute and content keys
//! ```
//!
//! Invariants kept throughout: every key type zeroizes on drop and prints as
//! `<redacted>` in Debug; every secret comparison is constant-time; every
//! ciphertext carries a format version byte and is bound by its AAD to the
//! place it belongs (account, parent directory, node and version, file and
//! object position), so moving it anywhere else fails authentication; no
//! decoder panics or yields plaintext on malformed or tampered input.

mod aad;
pub mod attrs;
mod commitment;
pub mod content;
mod error;
mod gcm;
pub mod kdf;
mod keys;
pub mod keywrap;
pub mod local;
pub mod name;
pub mod plaintext;
pub mod recovery;
mod sealed;
pub mod subkeys;

#[cfg(test)]
mod vectors;

pub use error::CryptoError;
pub use keys::{Key32, random_array};
pub use plaintext::Plaintext;
pub use sealed::SEALED_OVERHEAD;
