//! What the SQLite and MySQL stores share: every statement both backends run
//! verbatim (both use `?` placeholders and the same schema), the helpers that
//! interpret results, and [`impl_store!`], which writes the one
//! implementation of [`super::Store`] for each backend.
//!
//! A backend supplies only what differs: how a write transaction starts
//! (`BEGIN IMMEDIATE` on SQLite), how the new row id is read, and the three
//! locking reads (`... FOR UPDATE` on MySQL; SQLite holds its write lock for
//! the whole transaction instead).

use super::StoreError;

/// The columns of an account row, as [`impl_store!`]'s mapper reads them.
macro_rules! account_columns {
    () => {
        "id, email, kdf_memory_kib, kdf_iterations, kdf_parallelism, kdf_salt, auth_hash, \
         wrapped_vault_key, recovery_wrapped_vault_key, verified, totp_secret, totp_enabled, \
         totp_last_step, created_at"
    };
}

/// The columns of a session row.
macro_rules! session_columns {
    () => {
        "id, account_id, device, ip, created_at, last_used_at, revoked_at"
    };
}

pub(super) const PING: &str = "SELECT 1";

// ---- accounts ----

pub(super) const ACCOUNT_BY_EMAIL: &str = concat!(
    "SELECT ",
    account_columns!(),
    " FROM accounts WHERE email = ?"
);
pub(super) const ACCOUNT_BY_ID: &str =
    concat!("SELECT ", account_columns!(), " FROM accounts WHERE id = ?");
/// Inside the upsert transaction, after the backend's locking read of
/// `(id, verified)` by e-mail.
pub(super) const DELETE_UNVERIFIED_ACCOUNT: &str =
    "DELETE FROM accounts WHERE id = ? AND verified = 0";
pub(super) const INSERT_ACCOUNT: &str = "INSERT INTO accounts (email, kdf_memory_kib, \
     kdf_iterations, kdf_parallelism, kdf_salt, auth_hash, wrapped_vault_key, \
     recovery_wrapped_vault_key, verified, totp_secret, totp_enabled, totp_last_step, \
     created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, NULL, 0, 0, ?, ?)";
pub(super) const MARK_VERIFIED: &str =
    "UPDATE accounts SET verified = 1, updated_at = ? WHERE id = ?";
pub(super) const UPDATE_CREDENTIALS: &str = "UPDATE accounts SET kdf_memory_kib = ?, \
     kdf_iterations = ?, kdf_parallelism = ?, kdf_salt = ?, auth_hash = ?, \
     wrapped_vault_key = ?, updated_at = ? WHERE id = ?";
pub(super) const SET_TOTP: &str =
    "UPDATE accounts SET totp_secret = ?, totp_enabled = ? WHERE id = ?";
/// The guard `totp_last_step < ?` makes the step strictly increasing.
pub(super) const ADVANCE_TOTP_STEP: &str =
    "UPDATE accounts SET totp_last_step = ? WHERE id = ? AND totp_last_step < ?";

// ---- challenges ----

/// `REPLACE` (delete, then insert) is the one upsert both dialects spell the
/// same way; nothing references a challenge, so the delete cascades nowhere.
pub(super) const PUT_CHALLENGE: &str = "REPLACE INTO challenges (challenge_key, purpose, \
     account_id, code_hash, code_expires_at, expires_at, attempts, sent_at, ip) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)";
pub(super) const CHALLENGE: &str = "SELECT challenge_key, purpose, account_id, code_hash, \
     code_expires_at, expires_at, attempts, sent_at, ip FROM challenges WHERE challenge_key = ?";
/// Claims an attempt: `(key, max)`. The guard `attempts < ?` is the check,
/// `rows_affected` the answer; the row lock the update takes keeps the count
/// this caller's until its transaction ends.
pub(super) const CLAIM_ATTEMPT: &str =
    "UPDATE challenges SET attempts = attempts + 1 WHERE challenge_key = ? AND attempts < ?";
/// Inside the claim's transaction, after a successful [`CLAIM_ATTEMPT`].
pub(super) const CHALLENGE_ATTEMPTS: &str =
    "SELECT attempts FROM challenges WHERE challenge_key = ?";
pub(super) const RENEW_CHALLENGE_CODE: &str = "UPDATE challenges SET code_hash = ?, \
     code_expires_at = ?, sent_at = ? WHERE challenge_key = ?";
pub(super) const CONSUME_CHALLENGE: &str = "DELETE FROM challenges WHERE challenge_key = ?";

// ---- sessions ----

pub(super) const INSERT_SESSION: &str = "INSERT INTO sessions (id, account_id, refresh_hash, \
     device, ip, created_at, last_used_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, NULL)";
pub(super) const SESSION: &str =
    concat!("SELECT ", session_columns!(), " FROM sessions WHERE id = ?");
pub(super) const SESSIONS: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM sessions WHERE account_id = ? AND revoked_at IS NULL",
    " ORDER BY created_at DESC, id DESC"
);
pub(super) const SESSION_BY_REFRESH: &str = concat!(
    "SELECT ",
    session_columns!(),
    " FROM sessions WHERE refresh_hash = ?"
);
/// Step one of a rotation: swap the token only if it is current and the
/// session live (the guard is the check, `rows_affected` the answer).
pub(super) const ROTATE_REFRESH: &str = "UPDATE sessions SET refresh_hash = ?, last_used_at = ? \
     WHERE refresh_hash = ? AND revoked_at IS NULL";
pub(super) const INSERT_SPENT_REFRESH: &str =
    "INSERT INTO spent_refresh_tokens (refresh_hash, session_id, spent_at) VALUES (?, ?, ?)";
/// Revokes one session if it is still live: `(now, id)`.
pub(super) const REVOKE_SESSION_BY_ID: &str =
    "UPDATE sessions SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL";
pub(super) const REVOKE_SESSION: &str = "UPDATE sessions SET revoked_at = ? \
     WHERE id = ? AND account_id = ? AND revoked_at IS NULL";
pub(super) const REVOKE_SESSIONS: &str =
    "UPDATE sessions SET revoked_at = ? WHERE account_id = ? AND revoked_at IS NULL";
pub(super) const REVOKE_SESSIONS_EXCEPT: &str = "UPDATE sessions SET revoked_at = ? \
     WHERE account_id = ? AND revoked_at IS NULL AND id <> ?";

// ---- throttles ----

pub(super) const THROTTLE: &str =
    "SELECT failures, not_before FROM throttles WHERE throttle_key = ?";
/// Inside the charge transaction, after the backend's locking read found no
/// row: a concurrent first charge makes it fail (uniqueness), and the charge
/// runs again, this time finding and locking that row.
pub(super) const INSERT_THROTTLE: &str =
    "INSERT INTO throttles (throttle_key, failures, not_before) VALUES (?, ?, ?)";
/// Inside the charge transaction, after the backend's locking read: `(failures,
/// not_before, key)`.
pub(super) const UPDATE_THROTTLE: &str =
    "UPDATE throttles SET failures = ?, not_before = ? WHERE throttle_key = ?";
pub(super) const CLEAR_THROTTLE: &str = "DELETE FROM throttles WHERE throttle_key = ?";

// ---- audit log ----

pub(super) const INSERT_AUDIT: &str = "INSERT INTO audit_log (account_id, occurred_at, event, \
     ip, success, detail) VALUES (?, ?, ?, ?, ?, ?)";
pub(super) const AUDIT_EVENTS: &str = "SELECT id, occurred_at, event, ip, success, detail \
     FROM audit_log WHERE account_id = ? AND id < ? ORDER BY id DESC LIMIT ?";

// ---- helpers ----

/// A database error, with uniqueness violations reported as
/// [`StoreError::Conflict`] and foreign-key violations (a write refers to an
/// account or session that is gone) as [`StoreError::Missing`]. Every write
/// maps its errors through this.
pub(super) fn db_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict,
        sqlx::Error::Database(d) if d.is_foreign_key_violation() => StoreError::Missing,
        _ => StoreError::Database(e),
    }
}

/// A transaction lost a race it may simply run again: a deadlock or
/// serialization failure (SQLSTATE 40001, MySQL/MariaDB/TiDB), or, when
/// `unique_too`, a uniqueness violation caused by a concurrent insert.
pub(super) fn is_retryable(e: &sqlx::Error, unique_too: bool) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            (unique_too && d.is_unique_violation()) || d.code().as_deref() == Some("40001")
        }
        _ => false,
    }
}

/// How often a transaction that lost a race is run again.
pub(super) const RETRIES: u32 = 5;

/// A stored non-negative integer as `u32`.
pub(super) fn to_u32(v: i64, what: &'static str) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(what))
}

/// Runs `$attempt` (an expression yielding a future of
/// `Result<T, sqlx::Error>`) again while it fails with a retryable error.
macro_rules! retry {
    ($unique_too:expr, $attempt:expr) => {{
        let mut tries = 0u32;
        loop {
            match $attempt.await {
                Err(e)
                    if tries < $crate::store::sql::RETRIES
                        && $crate::store::sql::is_retryable(&e, $unique_too) =>
                {
                    tries += 1;
                }
                other => break other,
            }
        }
    }};
}
pub(super) use retry;

/// Implements [`super::Store`] for a backend's store type.
///
/// The type must have a field `pool` (a `sqlx::Pool` of the backend), and
/// inherent methods `begin_write(&self) -> Result<Transaction, sqlx::Error>`
/// (a transaction that may write) and `insert_id(&QueryResult) -> Result<i64,
/// StoreError>`. The arguments name the backend, its embedded migrations and
/// its three locking reads:
/// `lock_account_by_email` selects `(id, verified)` of the account with an
/// e-mail address, `lock_spent_refresh` the `session_id` of a spent
/// refresh token and `lock_throttle` the `(failures, not_before)` of a
/// throttle, each locking the row until the transaction ends.
macro_rules! impl_store {
    (
        store: $store:ty,
        db: $db:ty,
        backend: $backend:literal,
        migrator: $migrator:expr,
        lock_account_by_email: $lock_account:expr,
        lock_spent_refresh: $lock_spent:expr,
        lock_throttle: $lock_throttle:expr $(,)?
    ) => {
        // In a module of its own so its imports cannot clash with the
        // backend's; `super::*` brings in the arguments' names.
        mod store_impl {
            use super::*;
            use ::common::crypto::kdf::KdfParams;
            use ::sqlx::Row as _;
            use $crate::store::sql::{self, db_err, retry, to_u32};
            use $crate::store::{
                Account, AccountId, AuditRecord, Challenge, ChallengePurpose, Credentials,
                NewAccount, NewAuditEvent, NewSession, Rotation, Session, Store, StoreError,
                Throttle, ThrottleCharge,
            };

            type DbRow = <$db as ::sqlx::Database>::Row;

            fn account_from_row(row: &DbRow) -> Result<Account, StoreError> {
                let salt: Vec<u8> = row.try_get("kdf_salt")?;
                Ok(Account {
                    id: AccountId(row.try_get("id")?),
                    email: row.try_get("email")?,
                    credentials: Credentials {
                        kdf: KdfParams {
                            memory_kib: to_u32(row.try_get("kdf_memory_kib")?, "kdf memory")?,
                            iterations: to_u32(row.try_get("kdf_iterations")?, "kdf iterations")?,
                            parallelism: to_u32(
                                row.try_get("kdf_parallelism")?,
                                "kdf parallelism",
                            )?,
                            salt: salt
                                .try_into()
                                .map_err(|_| StoreError::Corrupt("kdf salt length"))?,
                        },
                        auth_hash: row.try_get("auth_hash")?,
                        wrapped_vault_key: row.try_get("wrapped_vault_key")?,
                    },
                    recovery_wrapped_vault_key: row.try_get("recovery_wrapped_vault_key")?,
                    verified: row.try_get("verified")?,
                    totp_secret: row.try_get("totp_secret")?,
                    totp_enabled: row.try_get("totp_enabled")?,
                    totp_last_step: row.try_get("totp_last_step")?,
                    created_at: row.try_get("created_at")?,
                })
            }

            fn challenge_from_row(row: &DbRow) -> Result<Challenge, StoreError> {
                let purpose: String = row.try_get("purpose")?;
                Ok(Challenge {
                    key: row.try_get("challenge_key")?,
                    purpose: ChallengePurpose::parse(&purpose)
                        .ok_or(StoreError::Corrupt("challenge purpose"))?,
                    account: AccountId(row.try_get("account_id")?),
                    code_hash: row.try_get("code_hash")?,
                    code_expires_at: row.try_get("code_expires_at")?,
                    expires_at: row.try_get("expires_at")?,
                    attempts: to_u32(row.try_get("attempts")?, "challenge attempts")?,
                    sent_at: row.try_get("sent_at")?,
                    ip: row.try_get("ip")?,
                })
            }

            fn session_from_row(row: &DbRow) -> Result<Session, StoreError> {
                Ok(Session {
                    id: row.try_get("id")?,
                    account: AccountId(row.try_get("account_id")?),
                    device: row.try_get("device")?,
                    ip: row.try_get("ip")?,
                    created_at: row.try_get("created_at")?,
                    last_used_at: row.try_get("last_used_at")?,
                    revoked_at: row.try_get("revoked_at")?,
                })
            }

            fn throttle_from_row(row: &DbRow) -> Result<Throttle, StoreError> {
                Ok(Throttle {
                    failures: to_u32(row.try_get("failures")?, "throttle failures")?,
                    not_before: row.try_get("not_before")?,
                })
            }

            fn audit_from_row(row: &DbRow) -> Result<AuditRecord, StoreError> {
                Ok(AuditRecord {
                    id: row.try_get("id")?,
                    at: row.try_get("occurred_at")?,
                    event: row.try_get("event")?,
                    ip: row.try_get("ip")?,
                    success: row.try_get("success")?,
                    detail: row.try_get("detail")?,
                })
            }

            impl $store {
                /// One attempt at [`Store::upsert_unverified_account`]: the outer
                /// error is one a retry may cure, the inner one is final.
                async fn try_upsert_unverified(
                    &self,
                    new: &NewAccount,
                ) -> Result<Result<AccountId, StoreError>, ::sqlx::Error> {
                    let mut tx = self.begin_write().await?;
                    let existing = ::sqlx::query($lock_account)
                        .bind(new.email.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                    if let Some(row) = existing {
                        let id: i64 = row.try_get("id")?;
                        let verified: bool = row.try_get("verified")?;
                        if verified {
                            tx.commit().await?;
                            return Ok(Err(StoreError::Conflict));
                        }
                        ::sqlx::query(sql::DELETE_UNVERIFIED_ACCOUNT)
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    let c = &new.credentials;
                    let done = ::sqlx::query(sql::INSERT_ACCOUNT)
                        .bind(new.email.as_str())
                        .bind(i64::from(c.kdf.memory_kib))
                        .bind(i64::from(c.kdf.iterations))
                        .bind(i64::from(c.kdf.parallelism))
                        .bind(c.kdf.salt.as_slice())
                        .bind(c.auth_hash.as_str())
                        .bind(c.wrapped_vault_key.as_slice())
                        .bind(new.recovery_wrapped_vault_key.as_slice())
                        .bind(new.now)
                        .bind(new.now)
                        .execute(&mut *tx)
                        .await?;
                    let id = match Self::insert_id(&done) {
                        Ok(id) => id,
                        Err(e) => return Ok(Err(e)),
                    };
                    tx.commit().await?;
                    Ok(Ok(AccountId(id)))
                }

                /// One attempt at [`Store::rotate_refresh`].
                async fn try_rotate_refresh(
                    &self,
                    old_hash: &[u8],
                    new_hash: &[u8],
                    now: i64,
                ) -> Result<Result<Rotation, StoreError>, ::sqlx::Error> {
                    let mut tx = self.begin_write().await?;
                    let swapped = ::sqlx::query(sql::ROTATE_REFRESH)
                        .bind(new_hash)
                        .bind(now)
                        .bind(old_hash)
                        .execute(&mut *tx)
                        .await?;
                    if swapped.rows_affected() == 1 {
                        let row = ::sqlx::query(sql::SESSION_BY_REFRESH)
                            .bind(new_hash)
                            .fetch_one(&mut *tx)
                            .await?;
                        let session = match session_from_row(&row) {
                            Ok(s) => s,
                            Err(e) => return Ok(Err(e)),
                        };
                        ::sqlx::query(sql::INSERT_SPENT_REFRESH)
                            .bind(old_hash)
                            .bind(session.id.as_str())
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                        tx.commit().await?;
                        return Ok(Ok(Rotation::Rotated(session)));
                    }
                    let spent = ::sqlx::query($lock_spent)
                        .bind(old_hash)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let Some(spent) = spent else {
                        tx.commit().await?;
                        return Ok(Ok(Rotation::Unknown));
                    };
                    let session_id: String = spent.try_get("session_id")?;
                    let revoked = ::sqlx::query(sql::REVOKE_SESSION_BY_ID)
                        .bind(now)
                        .bind(session_id.as_str())
                        .execute(&mut *tx)
                        .await?;
                    if revoked.rows_affected() != 1 {
                        // Already revoked: nothing more to report.
                        tx.commit().await?;
                        return Ok(Ok(Rotation::Unknown));
                    }
                    let row = ::sqlx::query(sql::SESSION)
                        .bind(session_id.as_str())
                        .fetch_one(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    Ok(session_from_row(&row).map(Rotation::Reused))
                }

                /// One attempt at [`Store::charge_throttle`].
                async fn try_charge_throttle(
                    &self,
                    key: &[u8],
                    now: i64,
                    next: &(dyn Fn(Option<Throttle>) -> Throttle + Send + Sync),
                ) -> Result<Result<ThrottleCharge, StoreError>, ::sqlx::Error> {
                    let mut tx = self.begin_write().await?;
                    let row = ::sqlx::query($lock_throttle)
                        .bind(key)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let previous = match row.as_ref().map(throttle_from_row).transpose() {
                        Ok(previous) => previous,
                        Err(e) => return Ok(Err(e)),
                    };
                    if let Some(previous) = previous
                        && previous.not_before > now
                    {
                        tx.commit().await?;
                        return Ok(Ok(ThrottleCharge::Blocked {
                            not_before: previous.not_before,
                        }));
                    }
                    let new = next(previous);
                    let write = match previous {
                        Some(_) => ::sqlx::query(sql::UPDATE_THROTTLE)
                            .bind(i64::from(new.failures))
                            .bind(new.not_before)
                            .bind(key),
                        None => ::sqlx::query(sql::INSERT_THROTTLE)
                            .bind(key)
                            .bind(i64::from(new.failures))
                            .bind(new.not_before),
                    };
                    write.execute(&mut *tx).await?;
                    tx.commit().await?;
                    Ok(Ok(ThrottleCharge::Charged(new)))
                }
            }

            #[::async_trait::async_trait]
            impl Store for $store {
                fn backend(&self) -> &'static str {
                    $backend
                }

                async fn ping(&self) -> Result<(), StoreError> {
                    ::sqlx::query(sql::PING).execute(&self.pool).await?;
                    Ok(())
                }

                async fn migrate(&self) -> Result<(), StoreError> {
                    $migrator.run(&self.pool).await?;
                    Ok(())
                }

                async fn upsert_unverified_account(
                    &self,
                    new: &NewAccount,
                ) -> Result<AccountId, StoreError> {
                    // A concurrent registration of the same address makes the
                    // insert fail (or deadlock on MySQL): run again, and this
                    // time replace that account.
                    retry!(true, self.try_upsert_unverified(new)).map_err(db_err)?
                }

                async fn account_by_email(
                    &self,
                    email: &str,
                ) -> Result<Option<Account>, StoreError> {
                    ::sqlx::query(sql::ACCOUNT_BY_EMAIL)
                        .bind(email)
                        .fetch_optional(&self.pool)
                        .await?
                        .as_ref()
                        .map(account_from_row)
                        .transpose()
                }

                async fn account_by_id(
                    &self,
                    id: AccountId,
                ) -> Result<Option<Account>, StoreError> {
                    ::sqlx::query(sql::ACCOUNT_BY_ID)
                        .bind(id.0)
                        .fetch_optional(&self.pool)
                        .await?
                        .as_ref()
                        .map(account_from_row)
                        .transpose()
                }

                async fn mark_verified(&self, id: AccountId, now: i64) -> Result<(), StoreError> {
                    ::sqlx::query(sql::MARK_VERIFIED)
                        .bind(now)
                        .bind(id.0)
                        .execute(&self.pool)
                        .await
                        .map_err(db_err)?;
                    Ok(())
                }

                async fn update_credentials(
                    &self,
                    id: AccountId,
                    creds: &Credentials,
                    now: i64,
                ) -> Result<(), StoreError> {
                    ::sqlx::query(sql::UPDATE_CREDENTIALS)
                        .bind(i64::from(creds.kdf.memory_kib))
                        .bind(i64::from(creds.kdf.iterations))
                        .bind(i64::from(creds.kdf.parallelism))
                        .bind(creds.kdf.salt.as_slice())
                        .bind(creds.auth_hash.as_str())
                        .bind(creds.wrapped_vault_key.as_slice())
                        .bind(now)
                        .bind(id.0)
                        .execute(&self.pool)
                        .await
                        .map_err(db_err)?;
                    Ok(())
                }

                async fn set_totp(
                    &self,
                    id: AccountId,
                    secret: Option<&[u8]>,
                    enabled: bool,
                ) -> Result<(), StoreError> {
                    ::sqlx::query(sql::SET_TOTP)
                        .bind(secret)
                        .bind(enabled)
                        .bind(id.0)
                        .execute(&self.pool)
                        .await
                        .map_err(db_err)?;
                    Ok(())
                }

                async fn advance_totp_step(
                    &self,
                    id: AccountId,
                    step: i64,
                ) -> Result<bool, StoreError> {
                    let done = ::sqlx::query(sql::ADVANCE_TOTP_STEP)
                        .bind(step)
                        .bind(id.0)
                        .bind(step)
                        .execute(&self.pool)
                        .await
                        .map_err(db_err)?;
                    Ok(done.rows_affected() == 1)
                }

                async fn put_challenge(&self, c: &Challenge) -> Result<(), StoreError> {
                    ::sqlx::query(sql::PUT_CHALLENGE)
                        .bind(c.key.as_slice())
                        .bind(c.purpose.as_str())
                        .bind(c.account.0)
                        .bind(c.code_hash.as_slice())
                        .bind(c.code_expires_at)
                        .bind(c.expires_at)
                        .bind(i64::from(c.attempts))
                        .bind(c.sent_at)
                        .bind(c.ip.as_deref())
                        .execute(&self.pool)
                        .await
                        .map_err(db_err)?;
                    Ok(())
                }

                async fn challenge(&self, key: &[u8]) -> Result<Option<Challenge>, StoreError> {
                    ::sqlx::query(sql::CHALLENGE)
                        .bind(key)
                        .fetch_optional(&self.pool)
                        .await?
                        .as_ref()
                        .map(challenge_from_row)
                        .transpose()
                }

                async fn claim_attempt(
                    &self,
                    key: &[u8],
                    max: u32,
                ) -> Result<Option<u32>, StoreError> {
                    // The guarded increment and the read of its result in one
                    // transaction: the number returned is this caller's.
                    let mut tx = self.begin_write().await?;
                    let claimed = ::sqlx::query(sql::CLAIM_ATTEMPT)
                        .bind(key)
                        .bind(i64::from(max))
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?;
                    if claimed.rows_affected() != 1 {
                        tx.commit().await?;
                        return Ok(None);
                    }
                    let attempts: i64 = ::sqlx::query(sql::CHALLENGE_ATTEMPTS)
                        .bind(key)
                        .fetch_one(&mut *tx)
                        .await?
                        .try_get("attempts")?;
                    tx.commit().await?;
                    to_u32(attempts, "challenge attempts").map(Some)
                }

                async fn renew_challenge_code(
                    &self,
                    key: &[u8],
                    code_hash: &[u8],
                    code_expires_at: i64,
                    sent_at: i64,
                ) -> Result<bool, StoreError> {
                    let done = ::sqlx::query(sql::RENEW_CHALLENGE_CODE)
                        .bind(code_hash)
                        .bind(code_expires_at)
                        .bind(sent_at)
                        .bind(key)
                        .execute(&self.pool)
                        .await
                        .map_err(db_err)?;
                    Ok(done.rows_affected() == 1)
                }

                async fn consume_challenge(&self, key: &[u8]) -> Result<bool, StoreError> {
                    let done = ::sqlx::query(sql::CONSUME_CHALLENGE)
                        .bind(key)
                        .execute(&self.pool)
                        .await
                        .map_err(db_err)?;
                    Ok(done.rows_affected() == 1)
                }

                async fn create_session(&self, s: &NewSession) -> Result<(), StoreError> {
                    ::sqlx::query(sql::INSERT_SESSION)
                        .bind(s.id.as_str())
                        .bind(s.account.0)
                        .bind(s.refresh_hash.as_slice())
                        .bind(s.device.as_deref())
                        .bind(s.ip.as_deref())
                        .bind(s.now)
                        .bind(s.now)
                        .execute(&self.pool)
                        .await
                        .map_err(db_err)?;
                    Ok(())
                }

                async fn session(&self, id: &str) -> Result<Option<Session>, StoreError> {
                    ::sqlx::query(sql::SESSION)
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?
                        .as_ref()
                        .map(session_from_row)
                        .transpose()
                }

                async fn sessions(&self, account: AccountId) -> Result<Vec<Session>, StoreError> {
                    ::sqlx::query(sql::SESSIONS)
                        .bind(account.0)
                        .fetch_all(&self.pool)
                        .await?
                        .iter()
                        .map(session_from_row)
                        .collect()
                }

                async fn rotate_refresh(
                    &self,
                    old_hash: &[u8],
                    new_hash: &[u8],
                    now: i64,
                ) -> Result<Rotation, StoreError> {
                    retry!(false, self.try_rotate_refresh(old_hash, new_hash, now))
                        .map_err(db_err)?
                }

                async fn revoke_session(
                    &self,
                    account: AccountId,
                    id: &str,
                    now: i64,
                ) -> Result<bool, StoreError> {
                    let done = ::sqlx::query(sql::REVOKE_SESSION)
                        .bind(now)
                        .bind(id)
                        .bind(account.0)
                        .execute(&self.pool)
                        .await
                        .map_err(db_err)?;
                    Ok(done.rows_affected() == 1)
                }

                async fn revoke_sessions(
                    &self,
                    account: AccountId,
                    keep: Option<&str>,
                    now: i64,
                ) -> Result<u64, StoreError> {
                    let query = match keep {
                        Some(keep) => ::sqlx::query(sql::REVOKE_SESSIONS_EXCEPT)
                            .bind(now)
                            .bind(account.0)
                            .bind(keep),
                        None => ::sqlx::query(sql::REVOKE_SESSIONS)
                            .bind(now)
                            .bind(account.0),
                    };
                    let done = query.execute(&self.pool).await.map_err(db_err)?;
                    Ok(done.rows_affected())
                }

                async fn throttle(&self, key: &[u8]) -> Result<Option<Throttle>, StoreError> {
                    let Some(row) = ::sqlx::query(sql::THROTTLE)
                        .bind(key)
                        .fetch_optional(&self.pool)
                        .await?
                    else {
                        return Ok(None);
                    };
                    throttle_from_row(&row).map(Some)
                }

                async fn charge_throttle(
                    &self,
                    key: &[u8],
                    now: i64,
                    next: &(dyn Fn(Option<Throttle>) -> Throttle + Send + Sync),
                ) -> Result<ThrottleCharge, StoreError> {
                    // Two first charges of a key both find no row to lock:
                    // one insert fails (or deadlocks on MySQL), and that
                    // charge runs again, now locking the other's row.
                    retry!(true, self.try_charge_throttle(key, now, next)).map_err(db_err)?
                }

                async fn clear_throttle(&self, key: &[u8]) -> Result<(), StoreError> {
                    ::sqlx::query(sql::CLEAR_THROTTLE)
                        .bind(key)
                        .execute(&self.pool)
                        .await
                        .map_err(db_err)?;
                    Ok(())
                }

                async fn audit(&self, e: &NewAuditEvent) -> Result<(), StoreError> {
                    ::sqlx::query(sql::INSERT_AUDIT)
                        .bind(e.account.map(|a| a.0))
                        .bind(e.at)
                        .bind(e.event)
                        .bind(e.ip.as_deref())
                        .bind(e.success)
                        .bind(e.detail.as_deref())
                        .execute(&self.pool)
                        .await
                        .map_err(db_err)?;
                    Ok(())
                }

                async fn audit_events(
                    &self,
                    account: AccountId,
                    before: Option<i64>,
                    limit: u32,
                ) -> Result<Vec<AuditRecord>, StoreError> {
                    ::sqlx::query(sql::AUDIT_EVENTS)
                        .bind(account.0)
                        .bind(before.unwrap_or(i64::MAX))
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await?
                        .iter()
                        .map(audit_from_row)
                        .collect()
                }
            }
        }
    };
}
pub(super) use impl_store;
