//! The whole account path through the `vault` binary against the real
//! server: `vault register`, `vault login`, `vault status`, `vault logout`,
//! with the password and each mailed code given as lines on standard input
//! (as a script would), and the session kept in a per-test
//! `VAULT_CONFIG_DIR`.

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use common::api::{LoginResponse, PreloginResponse, SessionInfo};
use common::crypto::keywrap::unwrap_vault_key;
use serde_json::Value;
use tests::account::{derive, unique_email};
use tests::{Backend, TestServer};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

tests::on_both_backends!(cli_register_login_status_logout);

const TIMEOUT: Duration = Duration::from_secs(120);

/// `vault ARGS` against `srv`, with its session in `config`.
fn vault(srv: &TestServer, config: &Path, args: &[&str]) -> Child {
    let mut cmd = Command::new(tests::binary("vault"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("VAULT_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("VAULT_CONFIG_DIR", config)
        .env("VAULT_SERVER", &srv.url)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd.spawn().expect("start vault")
}

/// Writes `line` and a newline to the child's standard input.
async fn say(child: &mut Child, line: &str) {
    let stdin = child.stdin.as_mut().expect("piped stdin");
    stdin
        .write_all(format!("{line}\n").as_bytes())
        .await
        .expect("write to vault's stdin");
    stdin.flush().await.expect("flush");
}

/// Closes standard input and waits; panics unless it succeeded.
async fn finish(mut child: Child, what: &str) -> Output {
    drop(child.stdin.take());
    let out = tokio::time::timeout(TIMEOUT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`vault {what}` did not finish in {TIMEOUT:?}"))
        .expect("wait for vault");
    assert!(
        out.status.success(),
        "`vault {what}` failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every session of the account, seen through a login of our own.
async fn server_sessions(
    srv: &TestServer,
    email: &str,
    password: &str,
) -> (Vec<SessionInfo>, String) {
    let pre: PreloginResponse = srv.api.prelogin(email).await.ok(200);
    let keys = derive(password, &pre.kdf).await;
    let ticket: common::api::LoginTicket = srv.api.login(email, keys.auth.expose()).await.ok(200);
    let code = srv.login_code(email).await;
    let resp: LoginResponse = srv
        .api
        .verify_login(ticket.ticket.expose(), &code, Some("e2e observer"))
        .await
        .ok(200);
    let list: Vec<SessionInfo> = srv
        .api
        .sessions(resp.tokens.access_token.expose())
        .await
        .ok(200);
    (list, resp.session_id)
}

async fn cli_register_login_status_logout(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let config = tempfile::tempdir().expect("temp dir");
    let config_dir = config.path().join("securevault");
    let email = unique_email("cli");
    let password = format!("cli passphrase {}", tests::random_hex(4));

    // Register: the password, then the mailed verification code.
    let mut reg = vault(&srv, &config_dir, &["register", "--email", &email]);
    say(&mut reg, &password).await;
    let code = srv.verification_code(&email).await;
    say(&mut reg, &code).await;
    let out = finish(reg, "register").await;
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        shown.to_lowercase().contains("recovery"),
        "no recovery key shown:\n{shown}"
    );

    // Log in: the password, then the mailed login code.
    let mut login = vault(&srv, &config_dir, &["login", "--email", &email]);
    say(&mut login, &password).await;
    let code = srv.login_code(&email).await;
    say(&mut login, &code).await;
    finish(login, "login").await;

    // The session file: private, no password, and a wrapped vault key that
    // the password opens.
    let path = config_dir.join("session.json");
    let mode = std::fs::metadata(&path)
        .expect("session.json after login")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "session.json mode {mode:o}");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!text.contains(&password), "the password is on disk");
    let session: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(session["email"], email.as_str());
    let kdf = serde_json::from_value(session["kdf"].clone()).unwrap();
    let wrapped: common::api::Base64 =
        serde_json::from_value(session["wrapped_vault_key"].clone()).unwrap();
    let keys = derive(&password, &kdf).await;
    unwrap_vault_key(&keys.kek, &email, wrapped.as_bytes()).expect("the saved wrapped key opens");
    let cli_session = session["session_id"].as_str().unwrap().to_owned();

    // Status shows the server and the account.
    let out = finish(vault(&srv, &config_dir, &["status"]), "status").await;
    let status = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(status.contains(&email), "status: {status}");
    assert!(status.contains(&srv.url), "status: {status}");

    // The server knows the CLI's session...
    let (list, _) = server_sessions(&srv, &email, &password).await;
    assert!(list.iter().any(|s| s.id == cli_session), "{list:#?}");

    // ...until logout ends it.
    finish(vault(&srv, &config_dir, &["logout"]), "logout").await;
    let (list, mine) = server_sessions(&srv, &email, &password).await;
    assert!(!list.iter().any(|s| s.id == cli_session), "{list:#?}");
    assert!(list.iter().any(|s| s.id == mine));
    if let Ok(text) = std::fs::read_to_string(&path) {
        let after: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert_ne!(
            after["session_id"],
            cli_session.as_str(),
            "the session file survived logout"
        );
    }
    // And status now says so, failing.
    let mut child = vault(&srv, &config_dir, &["status"]);
    drop(child.stdin.take());
    let out = child.wait_with_output().await.unwrap();
    assert!(!out.status.success(), "status after logout succeeded");
}
