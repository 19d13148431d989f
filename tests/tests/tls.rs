//! The server speaks HTTPS with `VAULT_TLS_CERT`/`VAULT_TLS_KEY` (rustls on
//! aws-lc-rs), and a client that trusts the certificate gets through while
//! plain HTTP on the same port does not.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();

    let mut child = Command::new(tests::binary("vault-server"))
        .env_clear()
        .env("VAULT_LISTEN", "127.0.0.1:0")
        .env("VAULT_DATA_DIR", dir.path().join("data"))
        .env("VAULT_TLS_CERT", &cert_path)
        .env("VAULT_TLS_KEY", &key_path)
        .env("VAULT_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Killed(child);
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .unwrap()
    .unwrap();
    let url = line
        .trim()
        .strip_prefix("vault-server listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let ok = trusting.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.text().await.unwrap(), "ok\n");

    // A client that does not trust the certificate is refused by TLS.
    let strict = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    assert!(strict.get(format!("{url}/healthz")).send().await.is_err());

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = url.replacen("https://", "http://", 1);
    let answer = strict.get(format!("{plain}/healthz")).send().await;
    assert!(answer.is_err() || answer.is_ok_and(|r| r.status() != 200));
    drop(server);
}
