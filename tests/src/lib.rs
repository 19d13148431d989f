//! Shared harness for the end-to-end tests in `tests/tests/`: building and
//! locating the workspace's binaries, and finding the services that
//! `scripts/test.sh` starts.
//!
//! The binaries are built once per test process with the same cargo and
//! profile that built the test, so an end-to-end test can never run a stale
//! `vault` or `vault-server`.

// A test harness: failing loudly with a message is the point.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// The directory holding this profile's binaries (`target/<profile>`).
fn profile_dir() -> PathBuf {
    let mut dir = std::env::current_exe().unwrap_or_default();
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Builds `vault` and `vault-server` (once) and returns the path of `name`.
///
/// Panics with cargo's output if the build fails: there is nothing to test.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let dir = profile_dir();
    let built = BUILT.get_or_init(|| {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--bins", "-p", "vault-server", "-p", "fs-client"]);
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
        panic!("building the binaries failed:\n{e}");
    }
    dir.join(name)
}
