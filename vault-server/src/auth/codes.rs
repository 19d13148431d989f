//! One-time codes and opaque tokens from the OS CSPRNG.

use data_encoding::BASE64URL_NOPAD;

use crate::error::ApiError;

/// Digits in a one-time code.
pub const CODE_DIGITS: usize = 6;

fn random_u32() -> Result<u32, ApiError> {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).map_err(|_| ApiError::Internal("no randomness".into()))?;
    Ok(u32::from_le_bytes(b))
}

/// A uniformly random 6-digit code (rejection sampling, no modulo bias).
pub fn new_code() -> Result<String, ApiError> {
    const RANGE: u32 = 1_000_000;
    let limit = u32::MAX - (u32::MAX % RANGE);
    loop {
        let v = random_u32()?;
        if v < limit {
            return Ok(format!("{:06}", v % RANGE));
        }
    }
}

/// True if `code` looks like a code (6 ASCII digits), before any hashing.
pub fn is_code_shaped(code: &str) -> bool {
    code.len() == CODE_DIGITS && code.bytes().all(|b| b.is_ascii_digit())
}

/// An opaque token: `prefix` + 32 random bytes in base64url.
pub fn new_token(prefix: &str) -> Result<String, ApiError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|_| ApiError::Internal("no randomness".into()))?;
    Ok(format!("{prefix}{}", BASE64URL_NOPAD.encode(&b)))
}

/// A random id: 16 bytes in hex.
pub fn new_id() -> Result<String, ApiError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|_| ApiError::Internal("no randomness".into()))?;
    Ok(hex::encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_and_vary() {
        let codes: std::collections::HashSet<String> =
            (0..200).map(|_| new_code().unwrap()).collect();
        assert!(codes.len() > 190);
        assert!(codes.iter().all(|c| is_code_shaped(c)));
        assert!(!is_code_shaped("12345"));
        assert!(!is_code_shaped("12345a"));
        assert!(!is_code_shaped("１２３４５６"));
    }

    #[test]
    fn tokens_are_prefixed_and_long() {
        let t = new_token("svr_").unwrap();
        assert!(t.starts_with("svr_") && t.len() == 4 + 43);
        assert_ne!(t, new_token("svr_").unwrap());
        assert_eq!(new_id().unwrap().len(), 32);
    }
}
