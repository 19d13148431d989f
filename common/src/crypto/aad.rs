//! Associated-data framing shared by every AEAD in the format.
//!
//! `AAD = label || 0x00 || for each field: u32be(len) || field`. Labels are
//! ASCII without NUL, so the framing is unambiguous; every label starts with
//! `securevault/v1/`, which binds the format version into every tag.

use super::CryptoError;
use crate::codec::Writer;

/// Builds an AAD from a label and length-prefixed fields. A field of 4 GiB or
/// more cannot be framed and is an error.
pub(crate) fn frame(label: &str, fields: &[&[u8]]) -> Result<Vec<u8>, CryptoError> {
    let len = label.len() + 1 + fields.iter().map(|f| 4 + f.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.put_bytes(label.as_bytes());
    out.put_u8(0);
    for field in fields {
        out.put_u32(u32::try_from(field.len()).map_err(|_| CryptoError::OutOfRange)?);
        out.put_bytes(field);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_is_length_prefixed() {
        assert_eq!(
            frame("x", &[b"ab", b""]).unwrap(),
            vec![b'x', 0, 0, 0, 0, 2, b'a', b'b', 0, 0, 0, 0]
        );
        // Moving a byte between fields changes the AAD.
        assert_ne!(
            frame("x", &[b"ab", b"c"]).unwrap(),
            frame("x", &[b"a", b"bc"]).unwrap()
        );
    }
}
