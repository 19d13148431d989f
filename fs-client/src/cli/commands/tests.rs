//! The command handlers against the fake server.

use super::*;
use crate::account::testing::{EMAIL, Scripted, logged_in, login_again, server};
use crate::api::fake::{FakeApi, Injected};
use crate::config::MemoryStore;

fn text(out: Vec<u8>) -> String {
    String::from_utf8(out).unwrap()
}

#[test]
fn the_server_comes_from_the_flag_then_the_saved_session() {
    let saved = Session::new(
        "https://saved.example".into(),
        EMAIL.into(),
        "acc".into(),
        "sess".into(),
        crate::config::RefreshToken::new("r".into()),
        common::crypto::kdf::KdfParams::generate().unwrap(),
        common::api::Base64(vec![0; 60]),
    );
    assert_eq!(
        server_for_new(Some("https://flag.example/"), Some(&saved))
            .unwrap()
            .as_str(),
        "https://flag.example"
    );
    assert_eq!(
        server_for_new(None, Some(&saved)).unwrap().as_str(),
        "https://saved.example"
    );
    assert!(matches!(server_for_new(None, None), Err(Error::NoServer)));
    assert!(matches!(
        server_for_new(Some("http://example.org"), None),
        Err(Error::Url(_))
    ));

    assert!(session_for(None, Some(saved.clone())).is_ok());
    assert!(session_for(Some("https://saved.example/"), Some(saved.clone())).is_ok());
    let err = session_for(Some("https://other.example"), Some(saved.clone())).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("logged in to https://saved.example, not https://other.example")
    );
    assert!(matches!(session_for(None, None), Err(Error::NotLoggedIn)));

    // The login address: flag, else the saved one for that server, else a
    // question only a person is asked.
    let mut p = Scripted::new(&[], String::new);
    let same = ServerUrl::parse("https://saved.example").unwrap();
    assert_eq!(
        login_email(Some("b@x"), Some(&saved), &same, &mut p).unwrap(),
        "b@x"
    );
    assert_eq!(
        login_email(None, Some(&saved), &same, &mut p).unwrap(),
        EMAIL
    );
    let err = login_email(None, Some(&saved), &server(), &mut p).unwrap_err();
    assert!(err.to_string().contains("--email"), "{err}");
}

#[tokio::test]
async fn status_shows_the_server_and_the_account() {
    let fake = FakeApi::new();
    let store = MemoryStore::default();
    let session = logged_in(&fake, &store).await;
    let client = SessionClient::new(&fake, &store, session.clone());
    let mut out = Vec::new();
    status(&client, &[], &mut out).await.unwrap();
    let out = text(out);
    assert!(
        out.contains("Server:         https://vault.example.org\n"),
        "{out}"
    );
    assert!(out.contains(&format!("Account:        {EMAIL}\n")));
    assert!(out.contains("Second factor:  e-mailed code\n"));
    assert!(out.contains("Mounts:         none\n"));

    let mut out = Vec::new();
    let mounts =
        vec!["/mnt/v  (a@example.org)  pending uploads: 0 file(s), 0 B  cache: 0 B".to_owned()];
    status(&client, &mounts, &mut out).await.unwrap();
    let out = text(out);
    assert!(
        out.contains("Mounts:\n  /mnt/v  (a@example.org)  pending uploads"),
        "{out}"
    );
}

#[test]
fn status_mounts_lists_only_the_mounts() {
    let mut out = Vec::new();
    write_mounts(&[], &mut out).unwrap();
    assert_eq!(text(out), "Mounts:         none\n");
    let mut out = Vec::new();
    let line = "/mnt/v  (a@example.org)  pending uploads: 3 file(s), 12 B  cache: 0 B";
    write_mounts(&[line.to_owned()], &mut out).unwrap();
    assert_eq!(text(out), format!("Mounts:\n  {line}\n"));
}

#[tokio::test]
async fn sessions_are_listed_and_the_current_one_marked() {
    let fake = FakeApi::new();
    let store = MemoryStore::default();
    let session = logged_in(&fake, &store).await;
    let client = SessionClient::new(&fake, &store, session.clone());
    let mut out = Vec::new();
    sessions(&client, &mut out).await.unwrap();
    let out = text(out);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("ID"));
    assert!(lines[1].starts_with(&format!("{} *", session.session_id)));
    assert!(lines[1].contains("2023-11-14 22:13:20"));
}

#[tokio::test]
async fn revoking_another_session_keeps_this_one_and_revoking_this_one_logs_out() {
    let fake = FakeApi::new();
    let store = MemoryStore::default();
    let session = logged_in(&fake, &store).await;
    let other = MemoryStore::default();
    let mut p = Scripted::mail(&fake, EMAIL, &[account::testing::PASSWORD]);
    let other_session = account::login(
        &fake,
        &other,
        &mut p,
        &mut Vec::new(),
        &server(),
        EMAIL,
        &LoginOptions::default(),
    )
    .await
    .unwrap();
    let client = SessionClient::new(&fake, &store, session.clone());

    let err = revoke(&client, &store, "no-such", &mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "no session with ID no-such");

    revoke(&client, &store, &other_session.session_id, &mut Vec::new())
        .await
        .unwrap();
    assert_eq!(fake.live_sessions(EMAIL), vec![session.session_id.clone()]);
    assert!(store.current().is_some());

    let mut out = Vec::new();
    revoke(&client, &store, &session.session_id, &mut out)
        .await
        .unwrap();
    assert!(text(out).contains("logged out"));
    assert!(store.current().is_none());
}

#[tokio::test]
async fn logout_ends_the_server_session_and_forgets_the_local_one() {
    let fake = FakeApi::new();
    let store = MemoryStore::default();
    let session = logged_in(&fake, &store).await;
    let client = SessionClient::new(&fake, &store, session);
    logout(&client, &store, false, &mut Vec::new())
        .await
        .unwrap();
    assert!(store.current().is_none());
    assert!(fake.live_sessions(EMAIL).is_empty());
}

#[tokio::test]
async fn logout_all_and_an_unreachable_server() {
    let fake = FakeApi::new();
    let store = MemoryStore::default();
    logged_in(&fake, &store).await;
    let second = MemoryStore::default();
    let session = login_again(&fake, &second).await;
    assert_eq!(fake.live_sessions(EMAIL).len(), 2);
    let client = SessionClient::new(&fake, &second, session);
    logout(&client, &second, true, &mut Vec::new())
        .await
        .unwrap();
    assert!(fake.live_sessions(EMAIL).is_empty());

    let session = login_again(&fake, &store).await;
    let client = SessionClient::new(&fake, &store, session);
    fake.fail_next(Injected::Unreachable);
    let err = logout(&client, &store, false, &mut Vec::new())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("logged out on this computer only; the server was not told: cannot reach"),
        "{err}"
    );
    assert!(store.current().is_none());
}

#[tokio::test]
async fn audit_is_a_table_newest_first() {
    let fake = FakeApi::new();
    let store = MemoryStore::default();
    let session = logged_in(&fake, &store).await;
    let client = SessionClient::new(&fake, &store, session);
    let mut out = Vec::new();
    audit(
        &client,
        AuditQuery {
            before: None,
            limit: Some(2),
        },
        &mut out,
    )
    .await
    .unwrap();
    let out = text(out);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("ID"));
    assert!(lines[1].contains("login.code") && lines[1].contains("success"));
}

#[tokio::test]
async fn a_new_login_ends_the_session_it_replaces() {
    let fake = FakeApi::new();
    let store = MemoryStore::default();
    let old = logged_in(&fake, &store).await;
    let new = login_again(&fake, &store).await;
    assert_eq!(fake.live_sessions(EMAIL).len(), 2);
    end_replaced_session(&fake, old).await;
    assert_eq!(fake.live_sessions(EMAIL), vec![new.session_id.clone()]);
    assert_eq!(store.current(), Some(new));
}
