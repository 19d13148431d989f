//! The real `vault-server` binary on `127.0.0.1:0`, configured only through
//! its `VAULT_*` environment (every inherited `VAULT_*` variable is removed
//! first, and it runs in its own data dir so no stray `.env` is read). It is
//! ready when it prints `vault-server listening on http://127.0.0.1:PORT`,
//! and it is killed when the [`TestServer`] is dropped; its log (stderr) is
//! kept in the data dir and printed if the test fails.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sqlx::{Connection as _, MySqlConnection, SqliteConnection};

use crate::client::Api;
use crate::mail::MailReader;
use crate::mysql::TempDatabase;
use crate::services::{self, Backend, MailService, Services};

/// The server secret every test server gets (40 bytes), so tests can derive
/// its token-signing key and forge tokens.
pub const JWT_SECRET: &str = "securevault-e2e-jwt-secret-0123456789abc";

/// How long the server may take to print its listening line.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Per-server settings.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// `VAULT_AUTH_RATE_PER_MINUTE`.
    pub rate_per_minute: u32,
    /// `VAULT_AUTH_BURST`.
    pub burst: u32,
    /// More `VAULT_*` variables.
    pub env: Vec<(String, String)>,
}

impl Default for ServerOptions {
    /// Rate limits generous enough that no ordinary test reaches them.
    fn default() -> Self {
        Self {
            rate_per_minute: 6000,
            burst: 1000,
            env: Vec::new(),
        }
    }
}

impl ServerOptions {
    /// Tight per-IP limits: `burst` requests, then one a minute.
    pub fn tight(burst: u32) -> Self {
        Self {
            rate_per_minute: 1,
            burst,
            env: Vec::new(),
        }
    }
}

/// A running `vault-server`.
#[derive(Debug)]
pub struct TestServer {
    /// The backend.
    pub backend: Backend,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// A client for it.
    pub api: Api,
    /// Its mails.
    pub mail: Arc<MailReader>,
    child: Child,
    log: PathBuf,
    data_dir: Arc<tempfile::TempDir>,
    database_url: String,
    services: Services,
    options: ServerOptions,
    // Dropped after the server is killed (field order does not matter: Drop
    // kills the child first).
    db: Option<Arc<TempDatabase>>,
}

static SERVERS: AtomicUsize = AtomicUsize::new(0);

impl TestServer {
    /// Starts a server on `backend` with the default options, or answers
    /// `None` (after printing why) when the backend's services are missing.
    pub async fn start(backend: Backend) -> Option<Self> {
        Self::start_with(backend, ServerOptions::default()).await
    }

    /// Starts a server with `options`.
    pub async fn start_with(backend: Backend, options: ServerOptions) -> Option<Self> {
        let services = services::for_backend(backend)?;
        let data_dir = Arc::new(
            tempfile::Builder::new()
                .prefix("vault-e2e-")
                .tempdir()
                .expect("temp dir"),
        );
        let (db, database_url) = match backend {
            Backend::Sqlite => (
                None,
                format!(
                    "sqlite://{}",
                    data_dir.path().join("vault.sqlite").display()
                ),
            ),
            Backend::MariaDb => {
                let admin = services
                    .mysql_admin_url
                    .as_deref()
                    .expect("checked by for_backend");
                let db = TempDatabase::create(admin).await;
                let url = db.url().to_owned();
                (Some(Arc::new(db)), url)
            }
        };
        let mail = Arc::new(match &services.mail {
            MailService::Smtp { maildir, .. } => MailReader::maildir(maildir),
            MailService::Outbox => MailReader::directory(data_dir.path().join("outbox")),
        });
        Some(Self::spawn(backend, services, options, data_dir, db, database_url, mail).await)
    }

    /// A second server on the same database, data dir, secret and mail:
    /// another instance of one deployment.
    pub async fn start_sibling(&self) -> Self {
        Self::spawn(
            self.backend,
            self.services.clone(),
            self.options.clone(),
            self.data_dir.clone(),
            self.db.clone(),
            self.database_url.clone(),
            self.mail.clone(),
        )
        .await
    }

    async fn spawn(
        backend: Backend,
        services: Services,
        options: ServerOptions,
        data_dir: Arc<tempfile::TempDir>,
        db: Option<Arc<TempDatabase>>,
        database_url: String,
        mail: Arc<MailReader>,
    ) -> Self {
        let n = SERVERS.fetch_add(1, Ordering::Relaxed);
        let log = data_dir.path().join(format!("server-{n}.log"));
        let mut cmd = Command::new(crate::binary("vault-server"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("VAULT_") {
                cmd.env_remove(key);
            }
        }
        cmd.current_dir(data_dir.path())
            .env("VAULT_LISTEN", "127.0.0.1:0")
            .env("VAULT_DATA_DIR", data_dir.path())
            .env("VAULT_JWT_SECRET", JWT_SECRET)
            .env("VAULT_MAIL_FROM", "SecureVault E2E <vault-e2e@localhost>")
            .env(
                "VAULT_AUTH_RATE_PER_MINUTE",
                options.rate_per_minute.to_string(),
            )
            .env("VAULT_AUTH_BURST", options.burst.to_string())
            .env(
                "VAULT_LOG",
                // Set VAULT_TEST_SERVER_LOG (say `debug`) to see every
                // request in a failing test's server log.
                std::env::var("VAULT_TEST_SERVER_LOG").unwrap_or_else(|_| "info,sqlx=warn".into()),
            )
            .env("RUST_BACKTRACE", "1");
        if backend == Backend::MariaDb {
            cmd.env("VAULT_DATABASE_URL", &database_url);
        }
        if let MailService::Smtp { url, .. } = &services.mail {
            cmd.env("VAULT_SMTP_URL", url);
        }
        for (k, v) in &options.env {
            cmd.env(k, v);
        }
        let stderr = std::fs::File::create(&log).expect("server log file");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start vault-server: {e}"));

        // Read stdout on a thread: the listening line, then drain to EOF.
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("vault-server listening on ")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let url = tokio::task::spawn_blocking(move || rx.recv_timeout(START_TIMEOUT))
            .await
            .expect("join");
        let url = match url {
            Ok(url) => url,
            Err(e) => {
                let _ = child.kill();
                let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
                panic!(
                    "vault-server ({}) did not print its listening line ({e}; {status}):\n{}",
                    backend.name(),
                    read_log(&log)
                );
            }
        };
        assert!(
            url.starts_with("http://127.0.0.1:"),
            "unexpected listening URL {url}"
        );
        Self {
            backend,
            api: Api::new(&url),
            url,
            mail,
            child,
            log,
            data_dir,
            database_url,
            services,
            options,
            db,
        }
    }

    /// The data dir.
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        read_log(&self.log)
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Runs one statement with one bound string directly on the server's
    /// database (to move time, or look behind the API); answers the rows
    /// affected. The SQL must be valid on SQLite and MariaDB alike.
    pub async fn execute_sql(&self, sql: &'static str, arg: &str) -> u64 {
        match self.backend {
            Backend::Sqlite => {
                let mut c = SqliteConnection::connect(&self.database_url)
                    .await
                    .expect("open the test server's SQLite file");
                let n = sqlx::query(sql)
                    .bind(arg)
                    .execute(&mut c)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
                    .rows_affected();
                let _ = c.close().await;
                n
            }
            Backend::MariaDb => {
                let mut c = MySqlConnection::connect(&self.database_url)
                    .await
                    .expect("connect to the test database");
                let n = sqlx::query(sql)
                    .bind(arg)
                    .execute(&mut c)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"))
                    .rows_affected();
                let _ = c.close().await;
                n
            }
        }
    }

    /// Runs a `SELECT COUNT(*) …` with one bound string.
    pub async fn count_sql(&self, sql: &'static str, arg: &str) -> i64 {
        match self.backend {
            Backend::Sqlite => {
                let mut c = SqliteConnection::connect(&self.database_url)
                    .await
                    .expect("open the test server's SQLite file");
                let n: i64 = sqlx::query_scalar(sql)
                    .bind(arg)
                    .fetch_one(&mut c)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                let _ = c.close().await;
                n
            }
            Backend::MariaDb => {
                let mut c = MySqlConnection::connect(&self.database_url)
                    .await
                    .expect("connect to the test database");
                let n: i64 = sqlx::query_scalar(sql)
                    .bind(arg)
                    .fetch_one(&mut c)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                let _ = c.close().await;
                n
            }
        }
    }
}

fn read_log(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(80);
    lines.get(from..).unwrap_or_default().join("\n")
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- vault-server log ({}, {}) ----\n{}\n---- end of log ----",
                self.backend.name(),
                self.url,
                read_log(&self.log)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_secret_is_long_enough() {
        assert_eq!(super::JWT_SECRET.len(), 40);
    }
}
