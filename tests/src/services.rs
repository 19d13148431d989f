//! The database backends and the test services named by the variables that
//! `scripts/test.sh` exports:
//!
//! - `VAULT_TEST_MYSQL_ADMIN_URL`: `mysql://user:pass@127.0.0.1:PORT`, a
//!   MariaDB account allowed to create and drop databases;
//! - `VAULT_TEST_SMTP_URL` and `VAULT_TEST_MAILDIR`: an SMTP server on
//!   loopback delivering into that Maildir;
//! - `VAULT_TEST_REQUIRE_SERVICES=1`: a missing service fails the test
//!   instead of skipping it.
//!
//! Without the SMTP variables (and without `VAULT_TEST_REQUIRE_SERVICES`)
//! the server runs with its development outbox (`.eml` files in its data
//! dir) so the SQLite tests still run; without the MariaDB variable the
//! MariaDB tests are skipped with a line saying so.

use std::io::Write as _;
use std::path::PathBuf;

/// Which database a test server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default: an SQLite file in the data dir.
    Sqlite,
    /// A fresh database on the test MariaDB.
    MariaDb,
}

impl Backend {
    /// `sqlite` or `mariadb`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::MariaDb => "mariadb",
        }
    }
}

/// Where mail goes.
#[derive(Debug, Clone)]
pub enum MailService {
    /// A real SMTP server delivering into a Maildir.
    Smtp {
        /// `smtp://127.0.0.1:PORT`.
        url: String,
        /// The Maildir (with `new/`).
        maildir: PathBuf,
    },
    /// No SMTP server: the server's own outbox in its data dir.
    Outbox,
}

/// The services a test server needs.
#[derive(Debug, Clone)]
pub struct Services {
    /// Mail.
    pub mail: MailService,
    /// The MariaDB admin URL (for [`Backend::MariaDb`]).
    pub mysql_admin_url: Option<String>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// True when `VAULT_TEST_REQUIRE_SERVICES=1`.
pub fn required() -> bool {
    var("VAULT_TEST_REQUIRE_SERVICES").as_deref() == Some("1")
}

/// The current test's name, for skip lines.
fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_owned()
}

/// Skips (prints a line, answers `None`) or, under
/// `VAULT_TEST_REQUIRE_SERVICES=1`, fails.
fn missing(what: &str) -> Option<Services> {
    let msg = format!(
        "{what} is not set: start the test services with `scripts/test.sh --services-only` \
         and export the variables it prints"
    );
    if required() {
        panic!("VAULT_TEST_REQUIRE_SERVICES=1 but {msg}");
    }
    // Straight to stderr, past the test harness's output capture, so the
    // skip shows in a passing run.
    let _ = writeln!(std::io::stderr(), "SKIPPED {}: {msg}", test_name());
    None
}

/// The services for `backend`, or `None` when the test must be skipped.
pub fn for_backend(backend: Backend) -> Option<Services> {
    let mail = match (var("VAULT_TEST_SMTP_URL"), var("VAULT_TEST_MAILDIR")) {
        (Some(url), Some(maildir)) => MailService::Smtp {
            url,
            maildir: PathBuf::from(maildir),
        },
        (None, _) if required() => return missing("VAULT_TEST_SMTP_URL"),
        (Some(_), None) if required() => return missing("VAULT_TEST_MAILDIR"),
        _ => MailService::Outbox,
    };
    let mysql_admin_url = var("VAULT_TEST_MYSQL_ADMIN_URL");
    if backend == Backend::MariaDb && mysql_admin_url.is_none() {
        return missing("VAULT_TEST_MYSQL_ADMIN_URL");
    }
    Some(Services {
        mail,
        mysql_admin_url,
    })
}
