//! Accounts and sessions: registration with a verified e-mail address, the
//! two-step login (auth key, then an e-mailed or TOTP code), rotating refresh
//! tokens, TOTP enrolment, password change, sessions and the audit log.
//!
//! The server never sees the password or a key: only the auth key, which it
//! stores as an Argon2id hash. All login state lives in the database, so any
//! instance can serve any step.

pub mod account;
pub mod codes;
pub mod jwt;
pub mod login;
pub mod password;
pub mod ratelimit;
pub mod register;
pub mod secrets;
pub mod session;
pub mod totp;

use axum::middleware::from_fn_with_state;
use common::api::Base64;
use common::crypto::keywrap::canonical_account;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::state::{AppState, now};
use crate::store::{AccountId, Challenge, NewAuditEvent};
use secrets::{HashPurpose, hashes_equal};

/// Seconds a code and a login ticket stay valid.
pub const CODE_TTL: i64 = 600;
/// Wrong codes allowed per ticket.
pub const MAX_CODE_ATTEMPTS: u32 = 5;
/// Seconds between two e-mailed codes for one ticket.
pub const RESEND_INTERVAL: i64 = 60;

/// The account routes. The unauthenticated ones are rate limited per IP.
/// Each handler's `#[utoipa::path]` gives both its route and its OpenAPI
/// operation ([`routes!`]), so the two cannot differ.
pub fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    let public = OpenApiRouter::new()
        .routes(routes!(register::register))
        .routes(routes!(register::verify_email))
        .routes(routes!(register::prelogin))
        .routes(routes!(login::login))
        .routes(routes!(login::resend))
        .routes(routes!(login::verify))
        .routes(routes!(login::refresh))
        .route_layer(from_fn_with_state(state.clone(), ratelimit::limit_by_ip));
    let private = OpenApiRouter::new()
        .routes(routes!(login::logout))
        .routes(routes!(account::info))
        .routes(routes!(account::change_password))
        .routes(routes!(account::keys))
        .routes(routes!(account::sessions))
        .routes(routes!(account::revoke_session))
        .routes(routes!(account::revoke_all))
        .routes(routes!(account::totp_enroll))
        .routes(routes!(account::totp_activate))
        .routes(routes!(account::totp_disable))
        .routes(routes!(account::audit_log));
    public.merge(private)
}

/// Validates and canonicalises an e-mail address.
pub fn canonical_email(raw: &str) -> Result<String, ApiError> {
    let email = canonical_account(raw);
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(email)
    } else {
        Err(ApiError::BadRequest("not a valid e-mail address".into()))
    }
}

/// Checks the shape of an auth key.
pub fn auth_key_bytes(key: &Base64) -> Result<Vec<u8>, ApiError> {
    if key.as_bytes().len() == 32 {
        Ok(key.as_bytes().to_vec())
    } else {
        Err(ApiError::BadRequest("auth_key must be 32 bytes".into()))
    }
}

/// Appends to the audit log; a failure is logged, not fatal.
pub async fn audit(
    state: &AppState,
    account: Option<AccountId>,
    event: &'static str,
    ip: std::net::IpAddr,
    success: bool,
    detail: Option<String>,
) {
    let e = NewAuditEvent {
        account,
        at: now(),
        event,
        ip: Some(ip.to_string()),
        success,
        detail,
    };
    metrics::counter!("vault_auth_events_total", "event" => event, "outcome" => if success { "success" } else { "failure" })
        .increment(1);
    if let Err(err) = state.store.audit(&e).await {
        tracing::error!(error = %err, event, "cannot write the audit log");
    }
}

/// The keyed hash of `code` for the challenge under `key`: a code only ever
/// counts for its own challenge.
pub fn code_hash(state: &AppState, key: &[u8], code: &str) -> Vec<u8> {
    let mut data = key.to_vec();
    data.extend_from_slice(code.as_bytes());
    state.keys.keyed_hash(HashPurpose::Code, &data)
}

/// True when `code` is the challenge's current, unexpired e-mailed code.
pub fn email_code_matches(state: &AppState, c: &Challenge, code: &str, now: i64) -> bool {
    codes::is_code_shaped(code)
        && c.code_expires_at > now
        && hashes_equal(&c.code_hash, &code_hash(state, &c.key, code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_canonicalised_and_checked() {
        assert_eq!(
            canonical_email("  Bob@Example.ORG ").unwrap(),
            "bob@example.org"
        );
        for bad in ["", "nobody", "@x", "a@", "a b@c", "a@b@c", "a@b\u{0}"] {
            assert!(canonical_email(bad).is_err(), "{bad:?}");
        }
        assert!(canonical_email(&format!("{}@x.org", "a".repeat(260))).is_err());
    }
}
