//! The one error type of the crypto core. Every variant is safe to show: none
//! carries key material or plaintext.

use crate::codec::CodecError;

/// Why a cryptographic operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The operating system could not supply random bytes.
    #[error("the operating system's random number generator failed")]
    Rng,
    /// An AEAD tag did not verify: the data was modified, belongs somewhere
    /// else (another account, directory, node or version), or the key is wrong.
    #[error("authentication failed: data modified, misplaced, or wrong key")]
    Authentication,
    /// One segment of a content object failed authentication: modified,
    /// reordered, moved from another object or position, or its last-segment
    /// flag does not match (truncation or an appended segment).
    #[error("segment {index} of a content object failed authentication")]
    SegmentAuthentication {
        /// The segment's index within its object.
        index: u64,
    },
    /// The format version byte (or magic) is not one this build understands.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u8),
    /// A structure does not parse.
    #[error("malformed {what}: {reason}")]
    Malformed {
        /// Which structure.
        what: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A ciphertext is not the length its plaintext length implies: an object
    /// was truncated or extended, or does not belong to this entry.
    #[error("ciphertext is {actual} bytes where {expected} were expected")]
    CiphertextLength {
        /// The length implied by the authenticated metadata.
        expected: u64,
        /// The length received.
        actual: u64,
    },
    /// An object's SHA-256 differs from the digest the file's object list
    /// commits to: an old or foreign object was served.
    #[error("object digest does not match the file's object list")]
    DigestMismatch,
    /// An object's header carries another seed than the one the file's
    /// object list commits to: an old or foreign object was served.
    #[error("object seed does not match the file's object list")]
    SeedMismatch,
    /// A directory entry's name tag does not belong to its encrypted name.
    #[error("directory entry name tag does not match its name")]
    NameTagMismatch,
    /// A file name that cannot be stored (empty, too long, `.`/`..`, or
    /// containing `/` or NUL).
    #[error("invalid file name: {0}")]
    InvalidName(&'static str),
    /// Key-derivation parameters outside the accepted bounds (a downgrade, or
    /// a denial of service by a hostile server).
    #[error("key derivation parameters rejected: {0}")]
    KdfParams(&'static str),
    /// A recovery key string that does not parse or whose checksum fails.
    #[error("recovery key: {0}")]
    RecoveryKey(&'static str),
    /// A read outside the object's plaintext, or a size beyond the format's limits.
    #[error("offset or length outside the limits of the format")]
    OutOfRange,
}

impl CryptoError {
    pub(crate) fn malformed(what: &'static str) -> impl Fn(CodecError) -> CryptoError {
        move |e| CryptoError::Malformed {
            what,
            reason: match e {
                CodecError::UnexpectedEnd => "input ends early",
                CodecError::TrailingData(_) => "trailing data",
            },
        }
    }
}
