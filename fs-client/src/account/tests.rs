//! The account flows against the fake server: what is sent, what is saved,
//! and what is refused.

use common::crypto::kdf::{KdfParams, derive_account_keys};
use common::crypto::keywrap::{unwrap_vault_key, unwrap_vault_key_with_recovery};
use common::crypto::recovery::RecoveryKey;

use super::testing::{EMAIL, PASSWORD, Scripted, logged_in, login_again, registered, server};
use super::*;
use crate::api::authed::SessionClient;
use crate::api::fake::{FAKE_SERVER, FakeApi, Injected};
use crate::api::{AccountApi, ApiError};
use crate::config::{MemoryStore, SessionStore};
use crate::error::Error;
use crate::secrets::Password;

const NEW_PASSWORD: &str = "a much better passphrase";

fn recovery_key_from(output: &str) -> RecoveryKey {
    let mut lines = output
        .lines()
        .skip_while(|l| !l.starts_with("RECOVERY KEY"));
    lines.next().unwrap();
    let key = lines.find(|l| !l.trim().is_empty()).unwrap();
    RecoveryKey::parse(key.trim()).unwrap()
}

async fn try_login(fake: &FakeApi, store: &MemoryStore, password: &str) -> Result<(), Error> {
    let mut p = Scripted::mail(fake, EMAIL, &[password]);
    login(
        fake,
        store,
        &mut p,
        &mut Vec::new(),
        &server(),
        EMAIL,
        &LoginOptions::default(),
    )
    .await
    .map(drop)
}

#[tokio::test]
async fn register_stores_only_wrapped_keys_and_shows_the_recovery_key_once() {
    let fake = FakeApi::new();
    let output = registered(&fake).await;
    assert_eq!(output.matches("RECOVERY KEY").count(), 1);
    assert!(output.contains("E-mail address verified"));

    let stored = fake.stored(EMAIL).unwrap();
    assert_eq!(stored.kdf.validate(), Ok(()));
    let keys = derive_account_keys(PASSWORD.as_bytes(), &stored.kdf).unwrap();
    assert_eq!(stored.auth_key, keys.auth.expose().to_vec());
    assert_ne!(stored.auth_key, keys.kek.expose().to_vec());
    // Both wrapped copies open to the same vault key, one with the password,
    // the other with the recovery key the user was shown.
    let by_password = unwrap_vault_key(&keys.kek, EMAIL, &stored.wrapped_vault_key).unwrap();
    let recovery = recovery_key_from(&output);
    let by_recovery =
        unwrap_vault_key_with_recovery(&recovery, EMAIL, &stored.recovery_wrapped_vault_key)
            .unwrap();
    assert_eq!(by_password, by_recovery);
}

#[tokio::test]
async fn register_asks_the_password_once_then_the_code_and_nothing_else() {
    let fake = FakeApi::new();
    let mut p = Scripted::mail(&fake, EMAIL, &[PASSWORD]);
    register(&fake, &mut p, &mut Vec::new(), "  Alice@Example.org ")
        .await
        .unwrap();
    assert_eq!(p.asked, ["Choose", "Code from the verification mail: "]);
    // The address was canonicalised before use.
    assert!(fake.stored(EMAIL).is_some());
}

#[tokio::test]
async fn a_wrong_verification_code_fails_and_verify_email_finishes_later() {
    let fake = FakeApi::new();
    let mut p = Scripted::new(&[PASSWORD], || "000000".to_owned());
    let err = register(&fake, &mut p, &mut Vec::new(), EMAIL)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WrongCode));
    // Not verified: login is refused with the way out in the message.
    let err = try_login(&fake, &MemoryStore::default(), PASSWORD)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("vault verify-email"), "{err}");
    let mut p = Scripted::mail(&fake, EMAIL, &[]);
    verify_email(&fake, &mut p, &mut Vec::new(), EMAIL)
        .await
        .unwrap();
    try_login(&fake, &MemoryStore::default(), PASSWORD)
        .await
        .unwrap();
}

#[tokio::test]
async fn login_saves_a_session_with_no_secret_but_the_refresh_token() {
    let fake = FakeApi::new();
    let store = MemoryStore::default();
    let session = logged_in(&fake, &store).await;
    assert_eq!(store.current(), Some(session.clone()));
    assert_eq!(session.server, "https://vault.example.org");
    assert_eq!(session.email, EMAIL);
    assert_eq!(fake.live_sessions(EMAIL), vec![session.session_id.clone()]);
    let stored = fake.stored(EMAIL).unwrap();
    assert_eq!(session.kdf, stored.kdf);
    assert_eq!(
        session.wrapped_vault_key.as_bytes(),
        stored.wrapped_vault_key
    );
    let json = serde_json::to_string(&session).unwrap();
    assert!(!json.contains(PASSWORD));
    let keys = derive_account_keys(PASSWORD.as_bytes(), &stored.kdf).unwrap();
    let auth_b64 = common::api::Base64(keys.auth.expose().to_vec()).encode();
    let kek_b64 = common::api::Base64(keys.kek.expose().to_vec()).encode();
    assert!(!json.contains(&auth_b64) && !json.contains(&kek_b64));
}

#[tokio::test]
async fn wrong_password_and_wrong_code_save_nothing() {
    let fake = FakeApi::new();
    registered(&fake).await;
    let store = MemoryStore::default();
    let err = try_login(&fake, &store, "not the password")
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "wrong e-mail address or password");

    let mut p = Scripted::new(&[PASSWORD], || "999999".to_owned());
    let err = login(
        &fake,
        &store,
        &mut p,
        &mut Vec::new(),
        &server(),
        EMAIL,
        &LoginOptions::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.to_string(), "wrong or expired code");
    // A script gets one try: exactly one code was asked for.
    assert_eq!(p.asked.iter().filter(|a| a.starts_with("Code")).count(), 1);
    assert_eq!(store.current(), None);
    assert_eq!(store.saves(), 0);
}

#[tokio::test]
async fn a_key_the_password_cannot_unlock_is_refused() {
    let fake = FakeApi::new();
    registered(&fake).await;
    let mut wrapped = fake.stored(EMAIL).unwrap().wrapped_vault_key;
    wrapped[20] ^= 1;
    fake.replace_wrapped_key(EMAIL, wrapped);
    let store = MemoryStore::default();
    let err = try_login(&fake, &store, PASSWORD).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "the server returned a key this password cannot unlock"
    );
    assert_eq!(store.current(), None);
}

#[tokio::test]
async fn downgraded_kdf_parameters_are_refused_before_the_password_is_used() {
    let fake = FakeApi::new();
    registered(&fake).await;
    let mut weak = fake.stored(EMAIL).unwrap().kdf;
    weak.memory_kib = 1024;
    weak.iterations = 1;
    fake.replace_kdf(EMAIL, weak);
    let mut p = Scripted::mail(&fake, EMAIL, &[PASSWORD]);
    let err = login(
        &fake,
        &MemoryStore::default(),
        &mut p,
        &mut Vec::new(),
        &server(),
        EMAIL,
        &LoginOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::UnsafeKdf(_)), "{err:?}");
    assert!(p.asked.is_empty(), "asked {:?}", p.asked);
}

#[tokio::test]
async fn errors_from_the_server_become_sentences() {
    let fake = FakeApi::new();
    registered(&fake).await;
    fake.fail_next(Injected::RateLimited(30));
    let err = try_login(&fake, &MemoryStore::default(), PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "too many attempts; try again in 30 s");
    fake.fail_next(Injected::Unreachable);
    let err = try_login(&fake, &MemoryStore::default(), PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("cannot reach the server at {FAKE_SERVER}")
    );
}

#[tokio::test]
async fn password_change_rewraps_the_same_vault_key() {
    let fake = FakeApi::new();
    let store = MemoryStore::default();
    let session = logged_in(&fake, &store).await;
    let before = fake.stored(EMAIL).unwrap();
    let old_keys = derive_account_keys(PASSWORD.as_bytes(), &before.kdf).unwrap();
    let original = unwrap_vault_key(&old_keys.kek, EMAIL, &before.wrapped_vault_key).unwrap();

    // A second session elsewhere, which the change must end.
    let other_store = MemoryStore::default();
    try_login(&fake, &other_store, PASSWORD).await.unwrap();
    assert_eq!(fake.live_sessions(EMAIL).len(), 2);

    let client = SessionClient::new(&fake, &store, session.clone());
    let mut p = Scripted::new(&[PASSWORD, NEW_PASSWORD], String::new);
    let mut out = Vec::new();
    change_password(&client, &mut p, &mut out).await.unwrap();
    assert_eq!(p.asked, ["Current", "ChooseNew"]);

    let after = fake.stored(EMAIL).unwrap();
    assert_ne!(after.kdf.salt, before.kdf.salt);
    assert_ne!(after.wrapped_vault_key, before.wrapped_vault_key);
    assert_eq!(
        after.recovery_wrapped_vault_key,
        before.recovery_wrapped_vault_key
    );
    let new_keys = derive_account_keys(NEW_PASSWORD.as_bytes(), &after.kdf).unwrap();
    assert_eq!(after.auth_key, new_keys.auth.expose().to_vec());
    let unwrapped = unwrap_vault_key(&new_keys.kek, EMAIL, &after.wrapped_vault_key).unwrap();
    assert_eq!(unwrapped, original);
    assert!(unwrap_vault_key(&old_keys.kek, EMAIL, &after.wrapped_vault_key).is_err());

    // The session's cache follows; only this session survives.
    let saved = store.current().unwrap();
    assert_eq!(saved.kdf, after.kdf);
    assert_eq!(saved.wrapped_vault_key.as_bytes(), after.wrapped_vault_key);
    assert_eq!(fake.live_sessions(EMAIL), vec![session.session_id.clone()]);
    assert!(client.account().await.is_ok());

    // The old password no longer logs in; the new one does.
    assert!(matches!(
        try_login(&fake, &MemoryStore::default(), PASSWORD).await,
        Err(Error::WrongPassword)
    ));
    try_login(&fake, &MemoryStore::default(), NEW_PASSWORD)
        .await
        .unwrap();
}

#[tokio::test]
async fn account_keys_follow_a_password_change_made_elsewhere() {
    let fake = FakeApi::new();
    let store = MemoryStore::default();
    let session = logged_in(&fake, &store).await;
    let client = SessionClient::new(&fake, &store, session.clone());
    let keys = client.account_keys().await.unwrap();
    assert_eq!(keys.kdf, session.kdf);
    assert_eq!(keys.wrapped_vault_key, session.wrapped_vault_key);

    // Another device changes the password; this session learns the new
    // parameters and wrapped key by asking (it is ended by the change).
    let other_store = MemoryStore::default();
    let other = login_again(&fake, &other_store).await;
    let other_client = SessionClient::new(&fake, &other_store, other);
    let mut p = Scripted::new(&[PASSWORD, NEW_PASSWORD], String::new);
    change_password(&other_client, &mut p, &mut Vec::new())
        .await
        .unwrap();
    let after = fake.stored(EMAIL).unwrap();
    let keys = other_client.account_keys().await.unwrap();
    assert_eq!(keys.kdf, after.kdf);
    assert_eq!(keys.wrapped_vault_key.as_bytes(), after.wrapped_vault_key);
    assert!(matches!(
        client.account_keys().await,
        Err(ApiError::NotLoggedIn)
    ));
}

#[tokio::test]
async fn a_wrong_current_password_is_caught_before_the_server_is_asked() {
    let fake = FakeApi::new();
    let store = MemoryStore::default();
    let session = logged_in(&fake, &store).await;
    let before = fake.stored(EMAIL).unwrap();
    let client = SessionClient::new(&fake, &store, session);
    // Were the server asked, this injected failure would be the answer.
    fake.fail_next(Injected::Unreachable);
    let mut p = Scripted::new(&["wrong password", NEW_PASSWORD], String::new);
    let err = change_password(&client, &mut p, &mut Vec::new())
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "wrong password");
    assert_eq!(p.asked, ["Current"], "the new password was asked for");
    assert_eq!(
        fake.stored(EMAIL).unwrap().wrapped_vault_key,
        before.wrapped_vault_key
    );
}

#[tokio::test]
async fn totp_enable_then_login_with_the_app_or_an_emailed_code() {
    let fake = FakeApi::new();
    let store = MemoryStore::default();
    let session = logged_in(&fake, &store).await;
    let client = SessionClient::new(&fake, &store, session);
    let mut p = Scripted::new(&[], || fake.totp_code(EMAIL).unwrap());
    let mut out = Vec::new();
    totp_enable(&client, &mut p, &mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("JBSWY3DPEHPK3PXP"));
    assert!(out.contains('▀') || out.contains('▄') || out.contains('█'));
    assert!(client.account().await.unwrap().totp_enabled);

    // Login now asks for the app's code.
    let mut p = Scripted::new(&[PASSWORD], || fake.totp_code(EMAIL).unwrap());
    let mails = fake.mails_to(EMAIL);
    login(
        &fake,
        &MemoryStore::default(),
        &mut p,
        &mut Vec::new(),
        &server(),
        EMAIL,
        &LoginOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(p.asked[1], "Code from your authenticator app: ");
    assert_eq!(fake.mails_to(EMAIL), mails, "a code was mailed anyway");

    // --email-code: the resend endpoint mails one, which is accepted.
    let mut p = Scripted::mail(&fake, EMAIL, &[PASSWORD]);
    login(
        &fake,
        &MemoryStore::default(),
        &mut p,
        &mut Vec::new(),
        &server(),
        EMAIL,
        &LoginOptions {
            email_code: true,
            device: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(fake.mails_to(EMAIL), mails + 1);
    assert!(p.asked[1].starts_with("Code from the e-mail"));

    // Disabling needs a current code; a wrong one is refused.
    let mut p = Scripted::new(&[], || "000000".to_owned());
    assert!(matches!(
        totp_disable(&client, &mut p, &mut Vec::new()).await,
        Err(Error::WrongCode)
    ));
    let mut p = Scripted::new(&[], || fake.totp_code(EMAIL).unwrap());
    totp_disable(&client, &mut p, &mut Vec::new())
        .await
        .unwrap();
    assert!(!client.account().await.unwrap().totp_enabled);
}

#[tokio::test]
async fn an_expired_access_token_is_refreshed_once_and_the_new_refresh_token_saved() {
    let fake = FakeApi::new();
    let store = MemoryStore::default();
    let session = logged_in(&fake, &store).await;
    let client = SessionClient::new(&fake, &store, session.clone());
    // No access token is kept between commands: the first call refreshes.
    client.account().await.unwrap();
    assert_eq!(fake.refreshes(), 1);
    client.sessions().await.unwrap();
    assert_eq!(fake.refreshes(), 1, "a valid token was refreshed");
    let first = store.current().unwrap().refresh_token;
    assert_ne!(first, session.refresh_token);

    fake.expire_access_tokens();
    let list = client.sessions().await.unwrap();
    assert_eq!(list.len(), 1);
    assert!(list[0].current);
    assert_eq!(fake.refreshes(), 2);
    let second = store.current().unwrap().refresh_token;
    assert_ne!(second, first);
    assert_eq!(client.session().await.refresh_token, second);
}

#[tokio::test]
async fn a_token_near_expiry_is_refreshed_before_use() {
    let fake = FakeApi::new();
    fake.set_access_lifetime(10); // under the client's 30 s margin
    let store = MemoryStore::default();
    let session = logged_in(&fake, &store).await;
    let client = SessionClient::new(&fake, &store, session);
    client.account().await.unwrap();
    client.account().await.unwrap();
    assert_eq!(fake.refreshes(), 2);
}

#[tokio::test]
async fn two_processes_share_the_rotating_refresh_token_without_tripping_reuse_detection() {
    let fake = FakeApi::new();
    let store = MemoryStore::default();
    let session = logged_in(&fake, &store).await;
    // Two clients loaded the same session file.
    let a = SessionClient::new(&fake, &store, session.clone());
    let b = SessionClient::new(&fake, &store, session);
    a.account().await.unwrap();
    // b still holds the now spent token in memory; it must use the saved one.
    b.account().await.unwrap();
    a.account().await.unwrap();
    assert_eq!(fake.refreshes(), 2);
    assert_eq!(fake.live_sessions(EMAIL).len(), 1);
}

#[tokio::test]
async fn a_revoked_session_means_not_logged_in_and_is_forgotten() {
    let fake = FakeApi::new();
    let store = MemoryStore::default();
    let session = logged_in(&fake, &store).await;
    let client = SessionClient::new(&fake, &store, session);
    client.account().await.unwrap();

    // Log out everywhere from another device.
    let other = MemoryStore::default();
    try_login(&fake, &other, PASSWORD).await.unwrap();
    let other_client = SessionClient::from_store(&fake, &other).unwrap();
    other_client.revoke_all_sessions().await.unwrap();

    let err = client.account().await.unwrap_err();
    assert!(matches!(err, ApiError::NotLoggedIn), "{err:?}");
    assert_eq!(store.current(), None);
    assert_eq!(
        Error::from(err).to_string(),
        "not logged in: run `vault login`"
    );
    assert!(matches!(
        SessionClient::from_store(&fake, &store),
        Err(ApiError::NotLoggedIn)
    ));
}

#[tokio::test]
async fn the_fake_detects_refresh_token_reuse() {
    // Guards the premise of the shared-store design above.
    let fake = FakeApi::new();
    let store = MemoryStore::default();
    let session = logged_in(&fake, &store).await;
    let req = common::api::RefreshRequest {
        refresh_token: session.refresh_token.expose().into(),
    };
    fake.refresh(&req).await.unwrap();
    assert!(fake.refresh(&req).await.unwrap_err().is_unauthorized());
    assert!(fake.live_sessions(EMAIL).is_empty());
}

#[tokio::test]
async fn derive_keys_refuses_unsafe_parameters() {
    let mut weak = KdfParams::generate().unwrap();
    weak.iterations = 1;
    let err = derive_keys(Password::new("pw".into()), weak)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the server sent unsafe key-derivation parameters"
    );
}

#[tokio::test]
async fn updating_the_session_keeps_a_refresh_token_rotated_by_another_process() {
    let fake = FakeApi::new();
    let store = MemoryStore::default();
    let session = logged_in(&fake, &store).await;
    let a = SessionClient::new(&fake, &store, session.clone());
    let b = SessionClient::new(&fake, &store, session);
    a.account().await.unwrap();
    b.account().await.unwrap(); // rotates past a's in-memory token
    let newest = store.current().unwrap().refresh_token;
    a.update_session(|s| s.kdf.iterations = 4).await.unwrap();
    let saved = store.current().unwrap();
    assert_eq!(saved.refresh_token, newest);
    assert_eq!(saved.kdf.iterations, 4);
    // A logged-out session is not brought back by an update.
    store.remove().unwrap();
    a.update_session(|s| s.kdf.iterations = 5).await.unwrap();
    assert_eq!(store.current(), None);
}
