//! Newtype identifiers for nodes and ciphertext objects.
//!
//! Both are 16 random bytes chosen by the client, so that content, names and
//! attribute records can be bound to an id before the server has seen them.
//! They are written as 32 lowercase hex digits in JSON and URLs. The root
//! directory of every vault has the all-zero id [`NodeId::ROOT`]; keys differ
//! per account, so roots of different accounts are still distinct in the
//! cryptography.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::crypto::{CryptoError, random_array};

/// Length in bytes of every identifier.
pub const ID_LEN: usize = 16;

/// The error for an identifier that is not 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an id is 32 hexadecimal digits")]
pub struct ParseIdError;

macro_rules! define_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name([u8; ID_LEN]);

        impl $name {
            /// Wraps raw bytes.
            pub const fn from_bytes(bytes: [u8; ID_LEN]) -> Self {
                Self(bytes)
            }

            /// A fresh id from the operating system's CSPRNG.
            pub fn random() -> Result<Self, CryptoError> {
                Ok(Self(random_array()?))
            }

            /// The raw bytes, as bound into AADs and tags.
            pub const fn as_bytes(&self) -> &[u8; ID_LEN] {
                &self.0
            }

            /// Reads an id from exactly 16 bytes.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                <[u8; ID_LEN]>::try_from(bytes).ok().map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let mut bytes = [0u8; ID_LEN];
                hex::decode_to_slice(s, &mut bytes).map_err(|_| ParseIdError)?;
                Ok(Self(bytes))
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

define_id!(
    /// A file, directory or symlink. Hard links share one node.
    NodeId
);
define_id!(
    /// One immutable ciphertext object: a piece of one version of a file.
    ObjectId
);

impl NodeId {
    /// The root directory of every vault.
    pub const ROOT: NodeId = NodeId([0u8; ID_LEN]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        let id = NodeId::from_bytes([0xab; ID_LEN]);
        let s = id.to_string();
        assert_eq!(s, "ab".repeat(16));
        assert_eq!(s.parse::<NodeId>(), Ok(id));
    }

    #[test]
    fn parse_rejects_wrong_length_and_non_hex() {
        assert_eq!("abcd".parse::<ObjectId>(), Err(ParseIdError));
        assert_eq!("zz".repeat(16).parse::<ObjectId>(), Err(ParseIdError));
        assert_eq!("00".repeat(17).parse::<ObjectId>(), Err(ParseIdError));
    }

    #[test]
    fn random_ids_differ() {
        let a = ObjectId::random().unwrap();
        let b = ObjectId::random().unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn serde_uses_hex_strings() {
        let id = NodeId::from_bytes([1; ID_LEN]);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", "01".repeat(16)));
        let back: NodeId = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
        assert!(serde_json::from_str::<NodeId>("\"xyz\"").is_err());
    }
}
