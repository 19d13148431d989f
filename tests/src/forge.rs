//! Made outside the server: access tokens (signed with the server's own key
//! derived exactly as `vault-server/src/auth/secrets.rs` does, with another
//! key, or not at all) and TOTP codes from an enrolment's secret.

use data_encoding::BASE64URL_NOPAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;
use sha2::Sha256;

/// HKDF-SHA256 (no salt) of the server secret with the token-signing info:
/// the server's HS256 key.
pub fn server_jwt_key(secret: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    hkdf::Hkdf::<Sha256>::new(None, secret)
        .expand(b"securevault-server/v1/jwt", &mut out)
        .expect("32 bytes is a valid HKDF output");
    out
}

/// The claims of a token, unverified.
pub fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    let bytes = BASE64URL_NOPAD
        .decode(payload.as_bytes())
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// The header of a token, unverified.
pub fn header(token: &str) -> Value {
    let head = token.split('.').next().expect("a JWT has a header");
    serde_json::from_slice(&BASE64URL_NOPAD.decode(head.as_bytes()).expect("base64url"))
        .expect("JSON header")
}

/// `claims` signed with `key` using `alg` (an HMAC algorithm).
pub fn sign(alg: Algorithm, claims: &Value, key: &[u8]) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(key))
        .expect("sign a token")
}

/// `claims` signed with the test servers' key (HS256).
pub fn sign_as_server(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        claims,
        &server_jwt_key(crate::server::JWT_SECRET.as_bytes()),
    )
}

/// `claims` with `{"alg":"none"}` and an empty signature.
pub fn unsigned(claims: &Value) -> String {
    let head = BASE64URL_NOPAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = BASE64URL_NOPAD.encode(claims.to_string().as_bytes());
    format!("{head}.{body}.")
}

/// TOTP codes (RFC 6238: SHA-1, 6 digits, 30 s) for a base32 secret.
#[derive(Debug)]
pub struct TotpCodes {
    totp: totp_rs::Totp,
}

/// The TOTP time step length.
pub const TOTP_STEP: u64 = 30;

impl TotpCodes {
    /// From the `secret` of an enrolment.
    pub fn from_base32(secret: &str) -> Self {
        let secret = totp_rs::Secret::try_from_base32(secret).expect("base32 TOTP secret");
        let totp = totp_rs::Builder::new()
            .with_algorithm(totp_rs::Algorithm::SHA1)
            .with_digits(6)
            .with_step_duration(TOTP_STEP)
            .with_secret(secret)
            .build()
            .expect("TOTP parameters");
        Self { totp }
    }

    /// The code of time step `step`.
    pub fn at_step(&self, step: u64) -> String {
        self.totp.generate(step * TOTP_STEP).to_string()
    }

    /// The current time step.
    pub fn current_step() -> u64 {
        u64::try_from(crate::unix_now()).expect("positive time") / TOTP_STEP
    }

    /// Waits, if needed, until at least `margin` seconds remain in the
    /// current step, and answers it: the server accepts this step and its
    /// two neighbours, so a test that starts here has the steps
    /// `current - 1 ..= current + 1` for at least `margin + 30` seconds.
    pub async fn settle(margin: u64) -> u64 {
        loop {
            let now = u64::try_from(crate::unix_now()).expect("positive time");
            let left = TOTP_STEP - now % TOTP_STEP;
            if left > margin {
                return now / TOTP_STEP;
            }
            tokio::time::sleep(std::time::Duration::from_secs(left)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_sha1_vector() {
        // RFC 6238 appendix B: secret "12345678901234567890", T = 59 s.
        let secret = data_encoding::BASE32_NOPAD.encode(b"12345678901234567890");
        assert_eq!(TotpCodes::from_base32(&secret).at_step(1), "287082");
    }

    #[test]
    fn forged_tokens_round_trip() {
        let c = serde_json::json!({"sub": "1", "aud": "x"});
        let t = sign_as_server(&c);
        assert_eq!(claims(&t), c);
        assert_eq!(header(&t)["alg"], "HS256");
        assert_eq!(header(&unsigned(&c))["alg"], "none");
        assert!(unsigned(&c).ends_with('.'));
    }
}
