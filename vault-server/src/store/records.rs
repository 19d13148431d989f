//! The rows the [`super::Store`] reads and writes.

use common::crypto::kdf::KdfParams;

/// An account's numeric id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId(pub i64);

/// What logs an account in and unlocks its vault key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Argon2id parameters and salt of the password KDF.
    pub kdf: KdfParams,
    /// Argon2id PHC string of the auth key.
    pub auth_hash: String,
    /// The vault key wrapped by the key-encryption key.
    pub wrapped_vault_key: Vec<u8>,
}

/// A new, unverified account.
#[derive(Debug, Clone)]
pub struct NewAccount {
    /// Canonical e-mail address.
    pub email: String,
    /// Login credentials.
    pub credentials: Credentials,
    /// The vault key wrapped by the recovery key.
    pub recovery_wrapped_vault_key: Vec<u8>,
    /// Unix seconds.
    pub now: i64,
}

/// A stored account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Id.
    pub id: AccountId,
    /// Canonical e-mail address.
    pub email: String,
    /// Login credentials.
    pub credentials: Credentials,
    /// The vault key wrapped by the recovery key.
    pub recovery_wrapped_vault_key: Vec<u8>,
    /// Whether the address has been verified.
    pub verified: bool,
    /// The TOTP secret, if one is enrolled (pending or enabled).
    pub totp_secret: Option<Vec<u8>>,
    /// Whether TOTP is the second factor.
    pub totp_enabled: bool,
    /// The last TOTP time step accepted (replay protection).
    pub totp_last_step: i64,
    /// Unix seconds.
    pub created_at: i64,
}

/// What a challenge is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengePurpose {
    /// Confirming the e-mail address after registration.
    VerifyEmail,
    /// Step two of a login.
    Login,
}

impl ChallengePurpose {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            ChallengePurpose::VerifyEmail => "verify",
            ChallengePurpose::Login => "login",
        }
    }

    /// Reads the stored text.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "verify" => Some(ChallengePurpose::VerifyEmail),
            "login" => Some(ChallengePurpose::Login),
            _ => None,
        }
    }
}

/// A pending one-time code: a login ticket or an e-mail verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Lookup key: keyed hash of the login ticket, or of the account id for
    /// e-mail verification.
    pub key: Vec<u8>,
    /// What it is for.
    pub purpose: ChallengePurpose,
    /// The account it belongs to.
    pub account: AccountId,
    /// Keyed hash of the current e-mailed code (empty until one is sent).
    pub code_hash: Vec<u8>,
    /// When the current code stops working (Unix seconds).
    pub code_expires_at: i64,
    /// When the whole challenge stops working (Unix seconds).
    pub expires_at: i64,
    /// Wrong codes so far.
    pub attempts: u32,
    /// When a code was last sent (for resend throttling).
    pub sent_at: i64,
    /// The client IP that started it.
    pub ip: Option<String>,
}

/// A new session.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Random id (hex).
    pub id: String,
    /// Owner.
    pub account: AccountId,
    /// Keyed hash of the current refresh token.
    pub refresh_hash: Vec<u8>,
    /// Device label.
    pub device: Option<String>,
    /// Client IP.
    pub ip: Option<String>,
    /// Unix seconds.
    pub now: i64,
}

/// A stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Random id (hex).
    pub id: String,
    /// Owner.
    pub account: AccountId,
    /// Device label.
    pub device: Option<String>,
    /// Client IP at login.
    pub ip: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last refresh.
    pub last_used_at: i64,
    /// Set once revoked.
    pub revoked_at: Option<i64>,
}

/// The outcome of [`super::Store::rotate_refresh`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The token was current; the new one replaces it.
    Rotated(Session),
    /// The token was already spent: the session is now revoked.
    Reused(Session),
    /// No session knows the token (or it is revoked).
    Unknown,
}

/// Per-account back-off after failed logins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    /// Consecutive failures.
    pub failures: u32,
    /// No attempt is considered before this time (Unix seconds).
    pub not_before: i64,
}

/// The outcome of [`super::Store::charge_throttle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleCharge {
    /// The attempt was counted and may proceed.
    Charged(Throttle),
    /// A back-off is running until `not_before`: the attempt is refused.
    Blocked {
        /// When attempts are considered again (Unix seconds).
        not_before: i64,
    },
}

/// An audit event to append.
#[derive(Debug, Clone)]
pub struct NewAuditEvent {
    /// The account, when known.
    pub account: Option<AccountId>,
    /// Unix seconds.
    pub at: i64,
    /// Event name, e.g. `login.password`.
    pub event: &'static str,
    /// Client IP.
    pub ip: Option<String>,
    /// Whether it succeeded.
    pub success: bool,
    /// Non-secret detail.
    pub detail: Option<String>,
}

/// A stored audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Monotonic id.
    pub id: i64,
    /// Unix seconds.
    pub at: i64,
    /// Event name.
    pub event: String,
    /// Client IP.
    pub ip: Option<String>,
    /// Whether it succeeded.
    pub success: bool,
    /// Non-secret detail.
    pub detail: Option<String>,
}
