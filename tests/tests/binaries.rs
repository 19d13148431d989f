//! Both binaries build and describe themselves.

use std::process::Command;

#[test]
fn both_binaries_answer_help() {
    for (bin, words) in [("vault", "encrypted"), ("vault-server", "server")] {
        let out = Command::new(tests::binary(bin))
            .arg("--help")
            .output()
            .unwrap();
        assert!(out.status.success(), "{bin} --help failed");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(words), "{bin} --help: {text}");
        assert!(text.contains("Usage:"), "{bin} --help: {text}");
    }
}

#[test]
fn migrate_reads_dotenv_and_creates_the_embedded_database() {
    let dir = tempfile::tempdir().unwrap();
    // A .env in the working directory supplies the data dir; a variable that
    // is really set wins over it.
    std::fs::write(
        dir.path().join(".env"),
        "VAULT_DATA_DIR=from-dotenv\nVAULT_LISTEN=not-an-address\n",
    )
    .unwrap();
    let out = Command::new(tests::binary("vault-server"))
        .arg("migrate")
        .current_dir(dir.path())
        .env_clear()
        .env("VAULT_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "migrations applied\n");
    assert!(dir.path().join("from-dotenv/vault.sqlite").is_file());

    // A bad setting is one clear line naming it, and a failure exit.
    let bad = Command::new(tests::binary("vault-server"))
        .arg("migrate")
        .current_dir(dir.path())
        .env_clear()
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.starts_with("error: VAULT_LISTEN:"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}
