//! The authenticated caller: a valid access token whose session is still
//! live. Checking the session on every request is what makes logout, "log
//! out everywhere" and a password change take effect at once rather than
//! when the token expires.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::AccountId;

/// The caller of an authenticated endpoint.
#[derive(Debug, Clone)]
pub struct AuthSession {
    /// The account.
    pub account: AccountId,
    /// The session the token belongs to.
    pub session_id: String,
}

impl FromRequestParts<AppState> for AuthSession {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized("missing bearer token"))?;
        let claims = state.jwt.verify(token)?;
        let account = claims
            .sub
            .parse::<i64>()
            .map(AccountId)
            .map_err(|_| ApiError::Unauthorized("invalid access token"))?;
        match state.store.session(&claims.sid).await? {
            Some(s) if s.account == account && s.revoked_at.is_none() => Ok(AuthSession {
                account,
                session_id: claims.sid,
            }),
            _ => Err(ApiError::Unauthorized(
                "the session has ended; log in again",
            )),
        }
    }
}
