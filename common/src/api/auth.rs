//! Accounts, login, sessions, TOTP and the audit log.
//!
//! The login is two steps bound by a ticket: `POST /v1/auth/login` (e-mail +
//! auth key) answers a [`LoginTicket`]; `POST /v1/auth/login/verify` (ticket +
//! 6-digit code from e-mail or TOTP) answers [`Tokens`] and the wrapped vault
//! key. The server never receives the password or any encryption key.

use serde::{Deserialize, Serialize};

use super::{Base64, SecretText};
use crate::crypto::kdf::KdfParams;

/// Paths of the account endpoints.
pub mod paths {
    /// `POST` [`super::RegisterRequest`] → 202 [`super::Accepted`].
    pub const REGISTER: &str = "/v1/auth/register";
    /// `POST` [`super::VerifyEmailRequest`] → 200 [`super::Accepted`].
    pub const VERIFY_EMAIL: &str = "/v1/auth/verify-email";
    /// `POST` [`super::PreloginRequest`] → 200 [`super::PreloginResponse`].
    pub const PRELOGIN: &str = "/v1/auth/prelogin";
    /// `POST` [`super::LoginRequest`] → 200 [`super::LoginTicket`].
    pub const LOGIN: &str = "/v1/auth/login";
    /// `POST` [`super::ResendCodeRequest`] → 202 [`super::Accepted`].
    pub const LOGIN_RESEND: &str = "/v1/auth/login/resend";
    /// `POST` [`super::VerifyLoginRequest`] → 200 [`super::LoginResponse`].
    pub const LOGIN_VERIFY: &str = "/v1/auth/login/verify";
    /// `POST` [`super::RefreshRequest`] → 200 [`super::Tokens`].
    pub const REFRESH: &str = "/v1/auth/refresh";
    /// `POST` (bearer) → 204: ends the calling session.
    pub const LOGOUT: &str = "/v1/auth/logout";
    /// `GET` (bearer) → 200 [`super::AccountInfo`].
    pub const ACCOUNT: &str = "/v1/account";
    /// `POST` (bearer) [`super::ChangePasswordRequest`] → 204.
    pub const PASSWORD: &str = "/v1/account/password";
    /// `GET` (bearer) → 200 [`super::AccountKeys`]: what unlocking the vault
    /// needs (the mount asks for it; a password change alters it).
    pub const ACCOUNT_KEYS: &str = "/v1/account/keys";
    /// `GET` (bearer) → 200 `Vec<`[`super::SessionInfo`]`>`.
    pub const SESSIONS: &str = "/v1/sessions";
    /// `DELETE /v1/sessions/{id}` (bearer) → 204.
    pub const SESSION: &str = "/v1/sessions/{id}";
    /// `POST` (bearer) → 204: revokes every session of the account.
    pub const SESSIONS_REVOKE_ALL: &str = "/v1/sessions/revoke-all";
    /// `POST` (bearer) → 200 [`super::TotpEnrollment`].
    pub const TOTP_ENROLL: &str = "/v1/totp/enroll";
    /// `POST` (bearer) [`super::TotpCodeRequest`] → 204.
    pub const TOTP_ACTIVATE: &str = "/v1/totp/activate";
    /// `POST` (bearer) [`super::TotpCodeRequest`] → 204.
    pub const TOTP_DISABLE: &str = "/v1/totp/disable";
    /// `GET` (bearer) `?before=ID&limit=N` → 200 `Vec<`[`super::AuditEvent`]`>`.
    pub const AUDIT: &str = "/v1/audit";
}

/// A request the server took on without saying more (no enumeration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Accepted {
    /// Always `"accepted"`.
    pub status: String,
}

impl Default for Accepted {
    fn default() -> Self {
        Self {
            status: "accepted".into(),
        }
    }
}

/// Creates an account; its e-mail must then be verified.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterRequest {
    /// The account's e-mail address.
    pub email: String,
    /// Argon2id parameters and salt the client used.
    pub kdf: KdfParams,
    /// The auth key (32 bytes).
    pub auth_key: Base64,
    /// The vault key wrapped by the key-encryption key.
    pub wrapped_vault_key: Base64,
    /// The vault key wrapped by the recovery key.
    pub recovery_wrapped_vault_key: Base64,
}

/// Confirms an e-mail address with the code sent to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyEmailRequest {
    /// The address.
    pub email: String,
    /// The 6-digit code.
    pub code: SecretText,
}

/// Asks for an account's KDF parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PreloginRequest {
    /// The address.
    pub email: String,
}

/// The KDF parameters: real ones, or deterministic fake ones for an unknown
/// address, indistinguishable to the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PreloginResponse {
    /// Parameters and salt.
    pub kdf: KdfParams,
}

/// Step one of login.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginRequest {
    /// The address.
    pub email: String,
    /// The auth key derived from the password.
    pub auth_key: Base64,
}

/// Which second factor a ticket waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SecondFactor {
    /// A 6-digit code was e-mailed.
    Email,
    /// A code from the authenticator app (an e-mailed code can be requested).
    Totp,
}

/// The answer to step one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginTicket {
    /// Opaque; binds step two to this step.
    pub ticket: SecretText,
    /// What the second step expects.
    pub second_factor: SecondFactor,
    /// Seconds until the ticket expires.
    pub expires_in: u64,
}

/// Asks for a (new) e-mailed code for a ticket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResendCodeRequest {
    /// The ticket from step one.
    pub ticket: SecretText,
}

/// Step two of login.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyLoginRequest {
    /// The ticket from step one.
    pub ticket: SecretText,
    /// The 6-digit code.
    pub code: SecretText,
    /// A label for the session list (e.g. the host name).
    #[serde(default)]
    pub device: Option<String>,
}

/// An access token and its refresh token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tokens {
    /// JWT for `Authorization: Bearer`.
    pub access_token: SecretText,
    /// Seconds the access token is valid.
    pub expires_in: u64,
    /// Opaque, single use: exchanged for new tokens at [`paths::REFRESH`].
    pub refresh_token: SecretText,
}

/// The answer to step two.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginResponse {
    /// The session's tokens.
    pub tokens: Tokens,
    /// The session's id.
    pub session_id: String,
    /// The vault key wrapped by the key-encryption key.
    pub wrapped_vault_key: Base64,
    /// The KDF parameters (to re-derive the key-encryption key).
    pub kdf: KdfParams,
    /// The account.
    pub account: AccountInfo,
}

/// Exchanges a refresh token.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefreshRequest {
    /// The current refresh token.
    pub refresh_token: SecretText,
}

/// The logged-in account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountInfo {
    /// Account id.
    pub id: String,
    /// E-mail address.
    pub email: String,
    /// Whether TOTP is the second factor.
    pub totp_enabled: bool,
    /// Creation time, Unix seconds.
    pub created_at: i64,
}

/// The wrapped vault key and the KDF parameters that unwrap it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountKeys {
    /// Parameters and salt of the password KDF.
    pub kdf: KdfParams,
    /// The vault key wrapped by the key-encryption key.
    pub wrapped_vault_key: Base64,
}

/// Changes the password: the client re-wrapped the same vault key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangePasswordRequest {
    /// The auth key from the current password.
    pub current_auth_key: Base64,
    /// New parameters and salt.
    pub new_kdf: KdfParams,
    /// The new auth key.
    pub new_auth_key: Base64,
    /// The vault key wrapped by the new key-encryption key.
    pub new_wrapped_vault_key: Base64,
}

/// One session of the account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionInfo {
    /// Session id.
    pub id: String,
    /// Device label given at login.
    pub device: Option<String>,
    /// Client IP at login.
    pub ip: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last refresh.
    pub last_used_at: i64,
    /// True for the session making this request.
    pub current: bool,
}

/// A TOTP secret waiting for its first code.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TotpEnrollment {
    /// The secret in base32 (for manual entry).
    pub secret: SecretText,
    /// The `otpauth://totp/...` URI to show as a QR code.
    pub otpauth_uri: SecretText,
}

/// A TOTP code.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TotpCodeRequest {
    /// The 6-digit code.
    pub code: SecretText,
}

/// One entry of the audit log. Never holds a secret, a code or a file name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    /// Monotonic id (for paging).
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    /// What happened, e.g. `login.password`, `session.revoke`.
    pub event: String,
    /// Client IP.
    pub ip: Option<String>,
    /// `success` or `failure`.
    pub outcome: String,
    /// Non-secret detail (a session id, a reason).
    pub detail: Option<String>,
}
