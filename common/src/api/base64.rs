//! Binary values on the wire: unpadded base64url in JSON.

use std::fmt;

use data_encoding::BASE64URL_NOPAD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroize;

/// Bytes that serialize as unpadded base64url. Zeroized on drop, since it
/// carries auth keys and tokens; Debug shows only the length.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Base64(pub Vec<u8>);

impl Base64 {
    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Encodes to the text form.
    pub fn encode(&self) -> String {
        BASE64URL_NOPAD.encode(&self.0)
    }

    /// Decodes the text form.
    pub fn decode(text: &str) -> Option<Self> {
        BASE64URL_NOPAD.decode(text.as_bytes()).ok().map(Self)
    }
}

impl Drop for Base64 {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl From<Vec<u8>> for Base64 {
    fn from(v: Vec<u8>) -> Self {
        Self(v)
    }
}

impl fmt::Debug for Base64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Base64({} bytes)", self.0.len())
    }
}

impl Serialize for Base64 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.encode())
    }
}

impl<'de> Deserialize<'de> for Base64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::decode(&s).ok_or_else(|| serde::de::Error::custom("invalid base64url"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let b = Base64(vec![0xfb, 0xff, 0x00]);
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(json, "\"-_8A\"");
        assert_eq!(serde_json::from_str::<Base64>(&json).unwrap(), b);
        assert!(serde_json::from_str::<Base64>("\"a+b=\"").is_err());
        assert_eq!(format!("{b:?}"), "Base64(3 bytes)");
    }
}
