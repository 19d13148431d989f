//! TOTP (RFC 6238: SHA-1, 6 digits, 30 s) for authenticator apps.
//!
//! [`matching_step`] returns the time step a code belongs to (now, or one
//! step either side for clock drift); the caller records it with
//! `Store::advance_totp_step`, which only moves forward, so a code is never
//! accepted twice.

use totp_rs::{Algorithm, Builder, Totp};

use crate::error::ApiError;

const STEP: u64 = 30;
const ISSUER: &str = "SecureVault";

fn totp(secret: &[u8], account: &str) -> Result<Totp, ApiError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(STEP)
        .with_secret(secret.to_vec())
        .with_issuer(Some(ISSUER))
        .with_account_name(account)
        .build()
        .map_err(|e| ApiError::Internal(format!("totp: {e}")))
}

/// A fresh 160-bit secret.
pub fn new_secret() -> Result<Vec<u8>, ApiError> {
    let mut s = vec![0u8; 20];
    getrandom::fill(&mut s).map_err(|_| ApiError::Internal("no randomness".into()))?;
    Ok(s)
}

/// The secret in base32 and the `otpauth://` URI for a QR code.
pub fn enrollment(secret: &[u8], account: &str) -> Result<(String, String), ApiError> {
    let t = totp(secret, account)?;
    let uri = t
        .to_url()
        .map_err(|e| ApiError::Internal(format!("totp: {e}")))?;
    Ok((t.secret().to_base32(), uri))
}

/// The time step `code` is valid for at `now` (allowing one step of drift),
/// compared in constant time.
pub fn matching_step(
    secret: &[u8],
    account: &str,
    code: &str,
    now: u64,
) -> Result<Option<i64>, ApiError> {
    let t = totp(secret, account)?;
    let current = now / STEP;
    let mut found = None;
    for step in [current.saturating_sub(1), current, current + 1] {
        let expected = t.generate(step * STEP).to_string();
        if bool::from(subtle::ConstantTimeEq::ct_eq(
            expected.as_bytes(),
            code.as_bytes(),
        )) {
            found = i64::try_from(step).ok();
        }
    }
    Ok(found)
}

/// The code for `now` (tests and the CLI's tests).
pub fn code_at(secret: &[u8], now: u64) -> Result<String, ApiError> {
    Ok(totp(secret, "x")?.generate(now).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_their_step_with_one_step_of_drift() {
        let s = new_secret().unwrap();
        let now = 1_763_000_000;
        let code = code_at(&s, now).unwrap();
        assert_eq!(
            matching_step(&s, "a@b", &code, now).unwrap(),
            Some((now / 30) as i64)
        );
        assert!(matching_step(&s, "a@b", &code, now + 30).unwrap().is_some());
        assert_eq!(matching_step(&s, "a@b", &code, now + 95).unwrap(), None);
        assert_eq!(matching_step(&s, "a@b", "000000x", now).unwrap(), None);
    }

    #[test]
    fn rfc6238_sha1_vector() {
        // RFC 6238 appendix B, SHA-1, T = 59 s, truncated to 6 digits.
        let secret = b"12345678901234567890";
        assert_eq!(code_at(secret, 59).unwrap(), "287082");
    }

    #[test]
    fn uri_names_issuer_and_account() {
        let (b32, uri) = enrollment(&new_secret().unwrap(), "a@example.org").unwrap();
        assert!(
            uri.starts_with("otpauth://totp/SecureVault:a%40example.org?"),
            "{uri}"
        );
        assert!(uri.contains(&b32));
    }
}
