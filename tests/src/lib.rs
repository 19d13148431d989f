//! Shared harness for the end-to-end tests in `tests/tests/`: building and
//! locating the workspace's binaries, and finding the services that
//! `scripts/test.sh` starts.
//!
//! The binaries are built once per test process with the same cargo and
//! profile that built the test, so an end-to-end test can never run a stale
//! `vault` or `vault-server`.
//!
//! The modules:
//! - [`services`]: the backends and the test services named by
//!   `VAULT_TEST_*` variables (skip, or fail under
//!   `VAULT_TEST_REQUIRE_SERVICES=1`);
//! - [`server`]: the real `vault-server` on `127.0.0.1:0`, killed on drop;
//! - [`mysql`]: a fresh MariaDB database per test, dropped at the end;
//! - [`mail`]: one-time codes read from the SMTP server's Maildir;
//! - [`client`]: a small typed HTTP client over the `common::api` types;
//! - [`tree`]: the tree endpoints for one logged-in account, typed;
//! - [`account`]: test accounts with the real client-side crypto, and the
//!   register / login flows;
//! - [`mount`]: a real FUSE mount through `vault login` / `vault mount`
//!   (unmounted on drop), the syscalls std lacks, test data, tree
//!   snapshots and the plaintext-marker scan;
//! - [`forge`]: access tokens made outside the server (alg=none, other keys,
//!   bad claims) and TOTP codes computed from an enrolment's secret.

// A test harness: failing loudly with a message is the point.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

pub mod account;
pub mod client;
pub mod forge;
pub mod mail;
pub mod mount;
pub mod mysql;
pub mod objects;
pub mod server;
pub mod services;
pub mod tree;

pub use account::{LoggedIn, TestAccount};
pub use client::{Api, Resp};
pub use server::{ServerOptions, TestServer};
pub use services::Backend;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

/// The directory holding this profile's binaries (`target/<profile>`).
fn profile_dir() -> PathBuf {
    let mut dir = std::env::current_exe().unwrap_or_default();
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// The package that builds a binary.
fn package_of(name: &str) -> &'static str {
    match name {
        "vault-server" => "vault-server",
        "vault" => "fs-client",
        other => panic!("unknown binary {other}"),
    }
}

/// Builds the package of binary `name` (once per package and process) and
/// returns the binary's path. Each package is built on its own, so a test of
/// the server does not depend on the client compiling, and vice versa.
///
/// With `VAULT_TEST_PREBUILT=1` (set by scripts/test.sh, which has just run
/// `cargo build --workspace --all-targets`) nothing is built: `cargo build
/// -p` unifies dependency features differently from a workspace build and
/// would rebuild half the tree once more for nothing.
///
/// Panics with cargo's output if the build fails: there is nothing to test.
pub fn binary(name: &str) -> PathBuf {
    type Builds = Mutex<HashMap<&'static str, Arc<OnceLock<Result<(), String>>>>>;
    static BUILDS: OnceLock<Builds> = OnceLock::new();
    let dir = profile_dir();
    let package = package_of(name);
    let once = BUILDS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .entry(package)
        .or_default()
        .clone();
    let built = once.get_or_init(|| {
        if std::env::var("VAULT_TEST_PREBUILT").is_ok_and(|v| v == "1") {
            let path = dir.join(name);
            return if path.is_file() {
                Ok(())
            } else {
                Err(format!(
                    "VAULT_TEST_PREBUILT=1 but {} does not exist",
                    path.display()
                ))
            };
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--bins", "-p", package]);
        if dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        match cmd.output() {
            Ok(out) if out.status.success() => Ok(()),
            Ok(out) => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
            Err(e) => Err(e.to_string()),
        }
    });
    if let Err(e) = built {
        panic!("building {package} failed:\n{e}");
    }
    dir.join(name)
}

/// Random lower-case hex, for unique names (accounts, databases).
pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).expect("OS randomness");
    data_encoding::HEXLOWER.encode(&b)
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    i64::try_from(secs).expect("time fits i64")
}

/// Writes each test twice, once per backend: `on_both_backends!(a, b)`
/// expects `async fn a(backend: Backend)` (and `b`) in scope and defines
/// `sqlite::a` and `mariadb::a` as `#[tokio::test]`s.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::Backend::Sqlite).await;
                }
            )+
        }
        mod mariadb {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::Backend::MariaDb).await;
                }
            )+
        }
    };
}
