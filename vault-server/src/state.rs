//! What every handler shares: the store, the object store, the mailer, the
//! server keys, the token codec, the rate limiter and the settings that
//! matter per request.

use std::net::IpAddr;
use std::sync::Arc;

use crate::auth::jwt::JwtCodec;
use crate::auth::ratelimit::IpLimiter;
use crate::auth::secrets::ServerKeys;
use crate::blob::BlobStore;
use crate::mail::Mailer;
use crate::store::Store;

/// Shared application state (cheap to clone).
#[derive(Debug, Clone)]
pub struct AppState {
    /// Persistent state.
    pub store: Arc<dyn Store>,
    /// Outgoing mail.
    pub mailer: Arc<dyn Mailer>,
    /// Keys derived from the server secret.
    pub keys: Arc<ServerKeys>,
    /// Access tokens.
    pub jwt: Arc<JwtCodec>,
    /// Per-IP limits on auth endpoints.
    pub limiter: Arc<IpLimiter>,
    /// Proxies whose X-Forwarded-For is believed.
    pub trusted_proxies: Arc<Vec<IpAddr>>,
    /// Ciphertext objects (`VAULT_BLOB_STORE`).
    pub blobs: Arc<dyn BlobStore>,
    /// Quota of an account without one of its own (`VAULT_QUOTA_BYTES`).
    pub quota_bytes: u64,
    /// Largest object one upload may store (`VAULT_MAX_OBJECT_BYTES`).
    pub max_object_bytes: u64,
    /// Seconds before an uncommitted upload is collected
    /// (`VAULT_GC_GRACE_SECS`).
    pub gc_grace_secs: u64,
}

/// The current time in Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
