//! [`MySqlStore`]: the networked backend, for MySQL, MariaDB and TiDB, so
//! that any number of server instances can share one database.
//!
//! Connections run at `READ COMMITTED`: the atomic operations rely on row
//! locks and guarded `UPDATE`s, never on snapshots, and without
//! REPEATABLE READ's gap locks two registrations, refreshes or first
//! throttle charges rarely deadlock (those that still do are retried). The
//! locking reads inside transactions are `SELECT ... FOR UPDATE`, which
//! always read the latest committed row; one that finds no row locks
//! nothing, so two first inserts race and the loser runs again.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlQueryResult};
use sqlx::{Executor as _, MySql, Transaction};

use super::StoreError;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/mysql");

/// Connections in the pool.
const MAX_CONNECTIONS: u32 = 16;
/// How long a caller waits for a free connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Prepared statements each connection keeps: every statement text the
/// server makes (multi-row ones in a few shapes, see `tree_sql::shaped`),
/// so none is evicted. An eviction costs a round trip, and a 40 ms stall
/// while sqlx does not set `TCP_NODELAY`. 16 connections x 512 stays well
/// under MariaDB's default `max_prepared_stmt_count` (16382).
const STATEMENT_CACHE: usize = 512;

const LOCK_ACCOUNT_BY_EMAIL: &str = "SELECT id, verified FROM accounts WHERE email = ? FOR UPDATE";
const LOCK_SPENT_REFRESH: &str =
    "SELECT session_id FROM spent_refresh_tokens WHERE refresh_hash = ? FOR UPDATE";
const LOCK_THROTTLE: &str =
    "SELECT failures, not_before FROM throttles WHERE throttle_key = ? FOR UPDATE";
const SET_ISOLATION: &str = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED";

/// The store on a MySQL, MariaDB or TiDB database.
#[derive(Debug, Clone)]
pub struct MySqlStore {
    pool: MySqlPool,
}

impl MySqlStore {
    /// Connects to a `mysql://user:password@host:port/database` URL (the
    /// database must exist). Runs no migrations.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = MySqlConnectOptions::from_str(url)?
            .charset("utf8mb4")
            .statement_cache_capacity(STATEMENT_CACHE);
        let pool = MySqlPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(SET_ISOLATION).await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    /// The connection pool, for code that adds tables of its own.
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin_write(&self) -> Result<Transaction<'static, MySql>, sqlx::Error> {
        self.pool.begin().await
    }

    fn insert_id(done: &MySqlQueryResult) -> Result<i64, StoreError> {
        i64::try_from(done.last_insert_id()).map_err(|_| StoreError::Corrupt("account id"))
    }
}

super::sql::impl_store! {
    store: MySqlStore,
    db: MySql,
    backend: "mysql",
    migrator: MIGRATOR,
    lock_account_by_email: LOCK_ACCOUNT_BY_EMAIL,
    lock_spent_refresh: LOCK_SPENT_REFRESH,
    lock_throttle: LOCK_THROTTLE,
}

super::tree_sql::impl_tree_store! {
    store: MySqlStore,
    db: MySql,
}
