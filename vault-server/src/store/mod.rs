//! Persistent state behind one trait, [`Store`], with two sqlx
//! implementations: SQLite (the embedded default) and MySQL/MariaDB/TiDB,
//! each with its own migrations under `vault-server/migrations/<backend>/`.
//!
//! Invariants every implementation keeps:
//! - every check-and-change that must be atomic (single-use tickets and
//!   codes, refresh-token rotation, TOTP step replay, quota) is one statement
//!   or one transaction, so any number of server instances can share the
//!   database;
//! - secrets are stored only as hashes (auth key: Argon2id PHC string; codes,
//!   tickets and refresh tokens: keyed hashes); the store never sees a
//!   password, a key or a plaintext file name;
//! - times are Unix seconds (`i64`), set by the caller.
//!
//! The tree's own invariants are listed in [`TreeStore`]'s module.

mod mysql;
mod records;
mod sql;
mod sqlite;
#[cfg(test)]
mod tests;
mod tree;
mod tree_sql;
#[cfg(test)]
mod tree_tests;

pub use mysql::MySqlStore;
pub use records::*;
pub use sqlite::SqliteStore;
pub use tree::*;

use std::sync::Arc;

use async_trait::async_trait;

use crate::blob::DbPool;

/// Opens the store a database URL names: SQLite for `sqlite:` URLs (e.g.
/// `sqlite:///var/lib/vault/db.sqlite` or `sqlite:vault.db?mode=rwc`; the
/// file is created if missing), MySQL/MariaDB/TiDB for `mysql://` (or
/// `mariadb://`) URLs. Connects, and does nothing else: run
/// [`Store::migrate`] to create or update the tables.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    Ok(connect_with_pool(url).await?.store)
}

/// A connected store together with its connection pool, which the `db`
/// object store ([`crate::blob::DbStore`]) shares.
#[derive(Debug, Clone)]
pub struct Connected {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Its pool.
    pub pool: DbPool,
}

/// [`connect`], also answering the store's pool.
pub async fn connect_with_pool(url: &str) -> Result<Connected, StoreError> {
    if url.starts_with("sqlite:") {
        let store = SqliteStore::connect(url).await?;
        let pool = DbPool::from(&store);
        Ok(Connected {
            store: Arc::new(store),
            pool,
        })
    } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
        let store = MySqlStore::connect(url).await?;
        let pool = DbPool::from(&store);
        Ok(Connected {
            store: Arc::new(store),
            pool,
        })
    } else {
        // Only the scheme: the rest of a URL may hold a password.
        let scheme = url.split_once(':').map_or("none", |(scheme, _)| scheme);
        Err(StoreError::Database(sqlx::Error::Configuration(
            format!("unsupported database URL scheme `{scheme}` (expected sqlite: or mysql://)")
                .into(),
        )))
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness constraint was violated.
    #[error("already exists")]
    Conflict,
    /// A row the write refers to is gone (a foreign-key violation: e.g. the
    /// account was replaced by a concurrent registration).
    #[error("the referenced row is gone")]
    Missing,
    /// The database is unreachable or failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value does not decode.
    #[error("corrupt stored value: {0}")]
    Corrupt(&'static str),
}

/// The server's persistent state: accounts here, the encrypted tree in
/// [`TreeStore`], so that one `Arc<dyn Store>` serves both.
#[async_trait]
pub trait Store: TreeStore + Send + Sync + std::fmt::Debug + 'static {
    /// Which backend this is (`sqlite` or `mysql`), for logs and metrics.
    fn backend(&self) -> &'static str;

    /// Succeeds when the database answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Applies pending migrations.
    async fn migrate(&self) -> Result<(), StoreError>;

    // ---- accounts ----

    /// Creates an unverified account, replacing an existing *unverified* one
    /// with the same e-mail (its owner never proved the address). Fails with
    /// [`StoreError::Conflict`] when a verified account has the address.
    async fn upsert_unverified_account(&self, new: &NewAccount) -> Result<AccountId, StoreError>;

    /// The account with this canonical e-mail address.
    async fn account_by_email(&self, email: &str) -> Result<Option<Account>, StoreError>;

    /// The account with this id.
    async fn account_by_id(&self, id: AccountId) -> Result<Option<Account>, StoreError>;

    /// Marks the address verified.
    async fn mark_verified(&self, id: AccountId, now: i64) -> Result<(), StoreError>;

    /// Replaces the login credentials after a password change.
    async fn update_credentials(
        &self,
        id: AccountId,
        creds: &Credentials,
        now: i64,
    ) -> Result<(), StoreError>;

    /// Stores a TOTP secret (pending until enabled), or clears it.
    async fn set_totp(
        &self,
        id: AccountId,
        secret: Option<&[u8]>,
        enabled: bool,
    ) -> Result<(), StoreError>;

    /// Records that TOTP time step `step` was used, only if it is later than
    /// the last one used: returns false for a replayed (or older) code.
    async fn advance_totp_step(&self, id: AccountId, step: i64) -> Result<bool, StoreError>;

    // ---- one-time codes (e-mail verification and login) ----

    /// Stores a challenge: a code hash for a purpose (`verify` or `login`)
    /// under a key (the ticket hash, or the account for verification).
    async fn put_challenge(&self, c: &Challenge) -> Result<(), StoreError>;

    /// The challenge under `key`.
    async fn challenge(&self, key: &[u8]) -> Result<Option<Challenge>, StoreError>;

    /// Claims one attempt at the challenge's code *before* the code is
    /// checked: atomically increments `attempts` only while it is below
    /// `max`, and returns the attempt number claimed (1..=max), or `None` when
    /// the challenge is gone or its attempts are used up. Concurrent callers
    /// can never claim more than `max` attempts in total.
    async fn claim_attempt(&self, key: &[u8], max: u32) -> Result<Option<u32>, StoreError>;

    /// Replaces the code of an existing challenge (a resend), resetting
    /// nothing else. Returns false if the challenge is gone.
    async fn renew_challenge_code(
        &self,
        key: &[u8],
        code_hash: &[u8],
        code_expires_at: i64,
        sent_at: i64,
    ) -> Result<bool, StoreError>;

    /// Deletes the challenge if it is still there: true for exactly one caller
    /// (single use across server instances).
    async fn consume_challenge(&self, key: &[u8]) -> Result<bool, StoreError>;

    // ---- sessions and refresh tokens ----

    /// Creates a session.
    async fn create_session(&self, s: &NewSession) -> Result<(), StoreError>;

    /// The session with this id.
    async fn session(&self, id: &str) -> Result<Option<Session>, StoreError>;

    /// The sessions of an account, newest first (revoked ones excluded).
    async fn sessions(&self, account: AccountId) -> Result<Vec<Session>, StoreError>;

    /// Rotates a refresh token: if `old_hash` is the session's current token,
    /// replaces it with `new_hash` and returns [`Rotation::Rotated`]; if it is
    /// a spent token of a session, revokes that session and returns
    /// [`Rotation::Reused`]; otherwise [`Rotation::Unknown`]. A revoked
    /// session knows no tokens: after the one `Reused`, its tokens are all
    /// `Unknown`. Of concurrent calls with the same current token exactly one
    /// rotates; the next one counts as reuse (the store cannot tell a racing
    /// client from a thief). A `new_hash` already in use is a
    /// [`StoreError::Conflict`].
    async fn rotate_refresh(
        &self,
        old_hash: &[u8],
        new_hash: &[u8],
        now: i64,
    ) -> Result<Rotation, StoreError>;

    /// Revokes one session of `account`; false if there was none.
    async fn revoke_session(
        &self,
        account: AccountId,
        id: &str,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Revokes every session of `account` except `keep`.
    async fn revoke_sessions(
        &self,
        account: AccountId,
        keep: Option<&str>,
        now: i64,
    ) -> Result<u64, StoreError>;

    // ---- per-account throttling ----

    /// The back-off state under `key` (a keyed hash of the e-mail address).
    async fn throttle(&self, key: &[u8]) -> Result<Option<Throttle>, StoreError>;

    /// Charges one attempt against the back-off under `key`, atomically
    /// (a locked read-modify-write): if the stored `not_before` is in the
    /// future the attempt is refused with [`ThrottleCharge::Blocked`] and
    /// nothing changes; otherwise the state becomes `next(previous)` and the
    /// attempt may proceed. Concurrent callers are serialised, so none is lost
    /// and none slips past a back-off another one just started.
    async fn charge_throttle(
        &self,
        key: &[u8],
        now: i64,
        next: &(dyn Fn(Option<Throttle>) -> Throttle + Send + Sync),
    ) -> Result<ThrottleCharge, StoreError>;

    /// Forgets the back-off state under `key`.
    async fn clear_throttle(&self, key: &[u8]) -> Result<(), StoreError>;

    // ---- audit log ----

    /// Appends an event.
    async fn audit(&self, e: &NewAuditEvent) -> Result<(), StoreError>;

    /// Events of an account, newest first, with ids below `before`.
    async fn audit_events(
        &self,
        account: AccountId,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError>;
}
