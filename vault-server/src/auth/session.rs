//! The authenticated caller: a valid access token whose session is still
//! live. Checking the session on every request is what makes logout, "log
//! out everywhere" and a password change take effect at once rather than
//! when the token expires.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{AccountId, InSession};

/// The caller of an authenticated endpoint.
#[derive(Debug, Clone)]
pub struct AuthSession {
    /// The account.
    pub account: AccountId,
    /// The session the token belongs to.
    pub session_id: String,
}

/// A valid access token whose session is not checked yet: for a handler
/// that reads the session together with what it serves, in one query, and
/// then passes that read to [`AccessToken::found`] before it answers.
#[derive(Debug, Clone)]
pub struct AccessToken {
    account: AccountId,
    session_id: String,
}

impl AccessToken {
    /// The session the token names.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The caller, given what the store holds for the token's session: its
    /// account and whether it was revoked (`None`: no such session).
    pub fn live(self, session: Option<(AccountId, bool)>) -> Result<AuthSession, ApiError> {
        match session {
            Some((account, false)) if account == self.account => Ok(AuthSession {
                account,
                session_id: self.session_id,
            }),
            _ => Err(ApiError::Unauthorized(
                "the session has ended; log in again",
            )),
        }
    }

    /// What a `*_in_session` store read found, once the session it read
    /// along is found live ([`AccessToken::live`]).
    pub fn found<T>(self, read: Option<InSession<T>>) -> Result<Option<T>, ApiError> {
        self.live(read.as_ref().map(|r| (r.account, r.revoked)))?;
        Ok(read.and_then(|r| r.found))
    }
}

impl FromRequestParts<AppState> for AccessToken {
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
        Ok(AccessToken {
            account,
            session_id: claims.sid,
        })
    }
}

impl FromRequestParts<AppState> for AuthSession {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = AccessToken::from_request_parts(parts, state).await?;
        let session = state
            .store
            .session(&token.session_id)
            .await?
            .map(|s| (s.account, s.revoked_at.is_some()));
        token.live(session)
    }
}
