//! Secret strings on the wire (tokens, tickets, one-time codes, TOTP
//! secrets): serialized as plain JSON strings, but zeroized on drop and
//! shown as `<redacted>` by Debug, so logging a request or response struct
//! cannot leak them.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// A secret string.
#[derive(Clone, Default)]
pub struct SecretText(String);

impl SecretText {
    /// Wraps a string.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret; do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretText {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for SecretText {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl PartialEq for SecretText {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for SecretText {}

impl Drop for SecretText {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for SecretText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_plainly_but_debug_redacts() {
        let t = SecretText::from("svr_abc");
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"svr_abc\"");
        assert_eq!(
            serde_json::from_str::<SecretText>("\"svr_abc\"").unwrap(),
            t
        );
        assert_eq!(format!("{t:?}"), "<redacted>");
        assert_eq!(t.expose(), "svr_abc");
        assert_ne!(t, SecretText::from("svr_abd"));
    }
}
