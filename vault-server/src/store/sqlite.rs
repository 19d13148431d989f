//! [`SqliteStore`]: the embedded backend, one database file.
//!
//! The file is opened in WAL mode (readers do not block the writer) with
//! `synchronous = NORMAL`, foreign keys on and a 5 s busy timeout. Every
//! transaction that writes starts with `BEGIN IMMEDIATE`, so it holds the
//! database's single write lock from its first statement: a read inside it
//! cannot go stale and no upgrade from reader to writer can fail with
//! `SQLITE_BUSY`. That is also why this backend's locking reads are plain
//! `SELECT`s.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteQueryResult,
    SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

use super::StoreError;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// Connections in the pool: SQLite has one writer at a time; a few
/// connections let reads proceed beside it.
const MAX_CONNECTIONS: u32 = 4;
/// Bytes the WAL file is cut back to after a checkpoint (64 MiB).
const JOURNAL_SIZE_LIMIT: u64 = 64 << 20;
/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a caller waits for a free connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

const LOCK_ACCOUNT_BY_EMAIL: &str = "SELECT id, verified FROM accounts WHERE email = ?";
const LOCK_SPENT_REFRESH: &str =
    "SELECT session_id FROM spent_refresh_tokens WHERE refresh_hash = ?";
const LOCK_THROTTLE: &str = "SELECT failures, not_before FROM throttles WHERE throttle_key = ?";

/// The store on an SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at an `sqlite:` URL, e.g.
    /// `sqlite:///var/lib/vault/db.sqlite` or `sqlite:vault.db?mode=rwc`.
    /// Runs no migrations.
    ///
    /// An in-memory URL (`sqlite::memory:`) gets a single connection that
    /// is never closed, because the database lives only as long as it does;
    /// use it for throwaway runs only.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            // The WAL is truncated back to this after a checkpoint; without
            // it, a burst of writes leaves a file of its largest size.
            .pragma("journal_size_limit", JOURNAL_SIZE_LIMIT.to_string());
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let pool = if in_memory {
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(MAX_CONNECTIONS)
        }
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await?;
        Ok(Self { pool })
    }

    /// The connection pool, for code that adds tables of its own.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Closes every connection (checkpointing the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    fn insert_id(done: &SqliteQueryResult) -> Result<i64, StoreError> {
        Ok(done.last_insert_rowid())
    }
}

super::sql::impl_store! {
    store: SqliteStore,
    db: Sqlite,
    backend: "sqlite",
    migrator: MIGRATOR,
    lock_account_by_email: LOCK_ACCOUNT_BY_EMAIL,
    lock_spent_refresh: LOCK_SPENT_REFRESH,
    lock_throttle: LOCK_THROTTLE,
}

super::tree_sql::impl_tree_store! {
    store: SqliteStore,
    db: Sqlite,
}
