//! Talking to the vault server.
//!
//! [`AccountApi`] has one method per endpoint of `common::api::auth`, with
//! the shared wire types as arguments and results, so the HTTP client
//! ([`http::HttpApi`]) and the in-memory fake ([`fake::FakeApi`]) are
//! interchangeable. Calls that need a bearer token take an [`AccessToken`];
//! [`authed::SessionClient`] supplies it, refreshing it transparently and
//! saving each rotated refresh token.
//!
//! [`VaultApi`] does the same for the encrypted tree and its objects
//! (`common::api::tree`), with [`fake_tree::FakeVault`] as its fake.
//!
//! The traits use `-> impl Future + Send` rather than `async fn` so callers
//! can rely on the futures being `Send` (a mount will run them on a
//! multi-threaded runtime).

pub mod authed;
mod error;
pub mod fake;
pub mod fake_tree;
pub mod http;
mod token;
pub mod tree;

use std::fmt;
use std::future::Future;

use common::api::{
    Accepted, AccountInfo, AccountKeys, AuditEvent, ChangePasswordRequest, LoginRequest,
    LoginResponse, LoginTicket, PreloginRequest, PreloginResponse, RefreshRequest, RegisterRequest,
    ResendCodeRequest, SessionInfo, Tokens, TotpCodeRequest, TotpEnrollment, VerifyEmailRequest,
    VerifyLoginRequest,
};
use zeroize::Zeroizing;

pub use error::{ApiError, BoxError};
pub use token::{BoxFuture, StaticToken, TokenSource};
pub use tree::{ByteRange, ListQuery, ObjectSink, VaultApi};

/// A JWT access token: a bearer secret, zeroized and never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(Zeroizing<String>);

impl AccessToken {
    /// Wraps a token from the server.
    pub fn new(token: String) -> Self {
        Self(Zeroizing::new(token))
    }

    /// The token text, for the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(<redacted>)")
    }
}

/// Which page of the audit log to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only events with a smaller id (for paging back).
    pub before: Option<i64>,
    /// At most this many events.
    pub limit: Option<u32>,
}

/// Result of an API call.
pub type ApiResult<T> = Result<T, ApiError>;

/// Every account endpoint of the server.
pub trait AccountApi: Send + Sync {
    /// `POST /v1/auth/register`.
    fn register(&self, req: &RegisterRequest) -> impl Future<Output = ApiResult<Accepted>> + Send;
    /// `POST /v1/auth/verify-email`.
    fn verify_email(
        &self,
        req: &VerifyEmailRequest,
    ) -> impl Future<Output = ApiResult<Accepted>> + Send;
    /// `POST /v1/auth/prelogin`.
    fn prelogin(
        &self,
        req: &PreloginRequest,
    ) -> impl Future<Output = ApiResult<PreloginResponse>> + Send;
    /// `POST /v1/auth/login` (step one).
    fn login(&self, req: &LoginRequest) -> impl Future<Output = ApiResult<LoginTicket>> + Send;
    /// `POST /v1/auth/login/resend`: e-mail a (new) code for a ticket.
    fn resend_code(
        &self,
        req: &ResendCodeRequest,
    ) -> impl Future<Output = ApiResult<Accepted>> + Send;
    /// `POST /v1/auth/login/verify` (step two).
    fn verify_login(
        &self,
        req: &VerifyLoginRequest,
    ) -> impl Future<Output = ApiResult<LoginResponse>> + Send;
    /// `POST /v1/auth/refresh`: rotates the refresh token.
    fn refresh(&self, req: &RefreshRequest) -> impl Future<Output = ApiResult<Tokens>> + Send;
    /// `POST /v1/auth/logout`: ends the calling session.
    fn logout(&self, token: &AccessToken) -> impl Future<Output = ApiResult<()>> + Send;
    /// `GET /v1/account`.
    fn account(&self, token: &AccessToken) -> impl Future<Output = ApiResult<AccountInfo>> + Send;
    /// `GET /v1/account/keys`: the KDF parameters and the wrapped vault key
    /// as they stand now (a password change elsewhere alters them).
    fn account_keys(
        &self,
        token: &AccessToken,
    ) -> impl Future<Output = ApiResult<AccountKeys>> + Send;
    /// `POST /v1/account/password`.
    fn change_password(
        &self,
        token: &AccessToken,
        req: &ChangePasswordRequest,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// `GET /v1/sessions`.
    fn sessions(
        &self,
        token: &AccessToken,
    ) -> impl Future<Output = ApiResult<Vec<SessionInfo>>> + Send;
    /// `DELETE /v1/sessions/{id}`.
    fn revoke_session(
        &self,
        token: &AccessToken,
        id: &str,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// `POST /v1/sessions/revoke-all`.
    fn revoke_all_sessions(
        &self,
        token: &AccessToken,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// `POST /v1/totp/enroll`.
    fn totp_enroll(
        &self,
        token: &AccessToken,
    ) -> impl Future<Output = ApiResult<TotpEnrollment>> + Send;
    /// `POST /v1/totp/activate`.
    fn totp_activate(
        &self,
        token: &AccessToken,
        req: &TotpCodeRequest,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// `POST /v1/totp/disable`.
    fn totp_disable(
        &self,
        token: &AccessToken,
        req: &TotpCodeRequest,
    ) -> impl Future<Output = ApiResult<()>> + Send;
    /// `GET /v1/audit`.
    fn audit(
        &self,
        token: &AccessToken,
        query: AuditQuery,
    ) -> impl Future<Output = ApiResult<Vec<AuditEvent>>> + Send;
}
