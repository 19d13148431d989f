//! Access tokens: HS256 JWTs of at most 15 minutes, with the algorithm
//! pinned and issuer, audience, expiry and `typ` all checked. A refresh token
//! is opaque (not a JWT), so it can never pass as an access token.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// The audience every access token names.
pub const AUDIENCE: &str = "securevault-api";
/// The `typ` claim of access tokens.
pub const ACCESS_TYP: &str = "access";

/// What an access token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer: the server's public URL.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// The account id.
    pub sub: String,
    /// The session id.
    pub sid: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expires at (Unix seconds).
    pub exp: i64,
    /// Token type: always `access`.
    pub typ: String,
}

/// Signs and checks access tokens.
pub struct JwtCodec {
    encoding: EncodingKey,
    decoding: DecodingKey,
    issuer: String,
    ttl: u64,
}

impl std::fmt::Debug for JwtCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtCodec")
            .field("issuer", &self.issuer)
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl JwtCodec {
    /// A codec with this key, issuer and lifetime.
    pub fn new(key: &[u8], issuer: String, ttl: u64) -> Self {
        Self {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            issuer,
            ttl,
        }
    }

    /// Lifetime of new tokens in seconds.
    pub fn ttl(&self) -> u64 {
        self.ttl
    }

    /// A token for `account`'s session `sid`, issued at `now`.
    pub fn issue(&self, account: i64, sid: &str, now: i64) -> Result<String, ApiError> {
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: AUDIENCE.into(),
            sub: account.to_string(),
            sid: sid.into(),
            iat: now,
            exp: now.saturating_add(i64::try_from(self.ttl).unwrap_or(900)),
            typ: ACCESS_TYP.into(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ApiError::Internal(e.to_string()))
    }

    /// Checks a token: signature with HS256 only, issuer, audience, expiry
    /// (no leeway beyond 5 s) and `typ`.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        let mut v = Validation::new(Algorithm::HS256);
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[AUDIENCE]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.leeway = 5;
        let data = decode::<Claims>(token, &self.decoding, &v)
            .map_err(|_| ApiError::Unauthorized("invalid or expired access token"))?;
        if data.claims.typ != ACCESS_TYP {
            return Err(ApiError::Unauthorized("not an access token"));
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use data_encoding::BASE64URL_NOPAD;

    fn codec() -> JwtCodec {
        JwtCodec::new(&[3; 32], "http://127.0.0.1:1".into(), 900)
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    #[test]
    fn round_trip() {
        let t = codec().issue(42, "s1", now()).unwrap();
        let c = codec().verify(&t).unwrap();
        assert_eq!(
            (c.sub.as_str(), c.sid.as_str(), c.typ.as_str()),
            ("42", "s1", "access")
        );
        assert!(c.exp - c.iat <= 900);
    }

    #[test]
    fn forged_expired_foreign_and_alg_none_tokens_fail() {
        let t = codec().issue(42, "s1", now()).unwrap();
        // Signed with another key.
        let other = JwtCodec::new(&[4; 32], "http://127.0.0.1:1".into(), 900);
        assert!(other.verify(&t).is_err());
        // Expired.
        assert!(
            codec()
                .verify(&codec().issue(42, "s1", now() - 2000).unwrap())
                .is_err()
        );
        // Another issuer.
        let elsewhere = JwtCodec::new(&[3; 32], "http://evil".into(), 900);
        assert!(
            codec()
                .verify(&elsewhere.issue(42, "s1", now()).unwrap())
                .is_err()
        );
        // alg=none with the same claims.
        let parts: Vec<&str> = t.split('.').collect();
        let none_header = BASE64URL_NOPAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(
            codec()
                .verify(&format!("{none_header}.{}.", parts[1]))
                .is_err()
        );
        // A modified payload.
        let mut claims: serde_json::Value =
            serde_json::from_slice(&BASE64URL_NOPAD.decode(parts[1].as_bytes()).unwrap()).unwrap();
        claims["sub"] = serde_json::json!("1");
        let forged = BASE64URL_NOPAD.encode(claims.to_string().as_bytes());
        assert!(
            codec()
                .verify(&format!("{}.{forged}.{}", parts[0], parts[2]))
                .is_err()
        );
        // Garbage and an opaque refresh token.
        assert!(codec().verify("svr_abcdef").is_err());
        assert!(codec().verify("").is_err());
    }
}
