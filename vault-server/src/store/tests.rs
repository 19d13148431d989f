//! One suite of [`Store`] contract tests, run against every backend.
//!
//! Each suite function takes the store as a trait object and knows nothing
//! of the backend; [`suite!`] runs each one twice: on SQLite (a fresh file
//! in a temporary directory) and on MySQL/MariaDB (a fresh database
//! `vault_t_<random>` created through `VAULT_TEST_MYSQL_ADMIN_URL` and
//! dropped afterwards, even when the test fails). Without that variable the
//! MySQL runs are skipped with a message, or fail when
//! `VAULT_TEST_REQUIRE_SERVICES=1` (as `scripts/test.sh` sets it).

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use common::crypto::kdf::KdfParams;
use sqlx::Connection as _;

use super::*;

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

/// Awaits a spawned test body and re-raises its panic, after `cleanup`.
async fn run_body<Fut>(body: Fut, cleanup: impl Future<Output = ()>)
where
    Fut: Future<Output = ()> + Send + 'static,
{
    let outcome = tokio::spawn(body).await;
    cleanup.await;
    if let Err(e) = outcome {
        match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => panic!("test task failed: {e}"),
        }
    }
}

pub(super) async fn run_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("vault.sqlite").display());
    let store = connect(&url).await.unwrap();
    assert_eq!(store.backend(), "sqlite");
    store.migrate().await.unwrap();
    run_body(test(store), async move { drop(dir) }).await;
}

/// `admin` (a server URL, possibly with a database and parameters) with
/// its database replaced by `db`.
pub(super) fn with_database(admin: &str, db: &str) -> String {
    let (base, params) = match admin.split_once('?') {
        Some((base, params)) => (base, Some(params)),
        None => (admin, None),
    };
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[host_start..].find('/') {
        Some(i) => &base[..host_start + i],
        None => base,
    };
    match params {
        Some(params) => format!("{base}/{db}?{params}"),
        None => format!("{base}/{db}"),
    }
}

pub(super) async fn admin_exec(admin: &str, statement: String) {
    let mut conn = sqlx::MySqlConnection::connect(admin)
        .await
        .unwrap_or_else(|e| panic!("cannot connect with VAULT_TEST_MYSQL_ADMIN_URL: {e}"));
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

pub(super) async fn run_mysql<F, Fut>(name: &str, test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let admin = match std::env::var("VAULT_TEST_MYSQL_ADMIN_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            if std::env::var("VAULT_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!(
                    "VAULT_TEST_MYSQL_ADMIN_URL is not set but VAULT_TEST_REQUIRE_SERVICES=1: \
                     start MariaDB with `scripts/test.sh --services-only` and export the \
                     variables it prints"
                );
            }
            eprintln!(
                "store::tests::mysql::{name}: skipped (VAULT_TEST_MYSQL_ADMIN_URL is not set; \
                 `scripts/test.sh --services-only` starts a MariaDB)"
            );
            return;
        }
    };
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).unwrap();
    let db = format!("vault_t_{}", hex::encode(suffix));
    admin_exec(
        &admin,
        format!("CREATE DATABASE {db} CHARACTER SET utf8mb4"),
    )
    .await;

    let drop_db = {
        let (admin, db) = (admin.clone(), db.clone());
        async move { admin_exec(&admin, format!("DROP DATABASE IF EXISTS {db}")).await }
    };
    let store = match connect(&with_database(&admin, &db)).await {
        Ok(store) => store,
        Err(e) => {
            drop_db.await;
            panic!("cannot connect to the test database: {e}");
        }
    };
    assert_eq!(store.backend(), "mysql");
    if let Err(e) = store.migrate().await {
        drop_db.await;
        panic!("migrations failed: {e}");
    }
    run_body(test(store), drop_db).await;
}

/// Runs every listed suite function on both backends. `plain` functions
/// take `&dyn Store`; `shared` ones take `Arc<dyn Store>` to hand it to
/// concurrent tasks.
macro_rules! suite {
    (plain: [$($plain:ident),* $(,)?], shared: [$($shared:ident),* $(,)?] $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $plain() {
                    super::run_sqlite(|s| async move { super::$plain(&*s).await }).await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $shared() {
                    super::run_sqlite(super::$shared).await;
                }
            )*
        }
        mod mysql {
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $plain() {
                    super::run_mysql(stringify!($plain), |s| async move {
                        super::$plain(&*s).await
                    })
                    .await;
                }
            )*
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $shared() {
                    super::run_mysql(stringify!($shared), super::$shared).await;
                }
            )*
        }
    };
}

pub(super) use suite;

suite! {
    plain: [
        migrate_is_idempotent,
        account_round_trip,
        unverified_account_is_replaced,
        verified_account_conflicts,
        email_matches_exactly,
        credentials_are_replaced,
        totp_secret_set_and_cleared,
        totp_step_only_advances,
        challenge_lifecycle,
        claim_attempt_stops_at_max,
        writes_for_a_deleted_account_are_missing,
        sessions_listed_newest_first,
        session_uniqueness_and_owner,
        refresh_rotation_and_reuse,
        revoke_one_and_all_but_current,
        throttle_charge_get_clear,
        audit_paging,
        sql_metacharacters_round_trip,
    ],
    shared: [
        consume_challenge_once_concurrently,
        claim_attempt_at_most_max_concurrently,
        charge_throttle_serialised_concurrently,
        totp_step_once_concurrently,
        rotate_refresh_once_concurrently,
        register_same_address_concurrently,
    ],
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Text that breaks naive SQL quoting; NUL-free (valid in every text column).
const EVIL: &[&str] = &[
    "'; DROP TABLE accounts; --",
    "Robert'); DROP TABLE sessions;--",
    "\"double\" 'single' `back`",
    "back\\slash \\' \\\" \\0 %_",
    "ünïcødé ✓ 日本語 🔐",
    "line\nbreak\ttab\r",
];

fn kdf(salt: u8) -> KdfParams {
    KdfParams {
        memory_kib: 64 * 1024,
        iterations: 3,
        parallelism: 4,
        salt: [salt; 16],
    }
}

fn new_account(email: &str, seed: u8) -> NewAccount {
    NewAccount {
        email: email.to_owned(),
        credentials: Credentials {
            kdf: kdf(seed),
            auth_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$seed{seed}$hash"),
            wrapped_vault_key: vec![seed; 72],
        },
        recovery_wrapped_vault_key: vec![seed ^ 0xff; 72],
        now: 1_000 + i64::from(seed),
    }
}

pub(super) async fn register(s: &dyn Store, email: &str) -> AccountId {
    s.upsert_unverified_account(&new_account(email, 1))
        .await
        .unwrap()
}

fn challenge(key: &[u8], account: AccountId) -> Challenge {
    Challenge {
        key: key.to_vec(),
        purpose: ChallengePurpose::Login,
        account,
        code_hash: vec![0xc0; 32],
        code_expires_at: 2_600,
        expires_at: 2_900,
        attempts: 0,
        sent_at: 2_000,
        ip: Some("192.0.2.1".into()),
    }
}

fn new_session(id: &str, account: AccountId, refresh: &[u8], now: i64) -> NewSession {
    NewSession {
        id: id.to_owned(),
        account,
        refresh_hash: refresh.to_vec(),
        device: Some("laptop".into()),
        ip: Some("2001:db8::1".into()),
        now,
    }
}

fn event(account: Option<AccountId>, at: i64, detail: &str) -> NewAuditEvent {
    NewAuditEvent {
        account,
        at,
        event: "login.password",
        ip: Some("198.51.100.7".into()),
        success: at % 2 == 0,
        detail: Some(detail.to_owned()),
    }
}

// ---------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------

async fn migrate_is_idempotent(s: &dyn Store) {
    // The fixture has migrated once already.
    s.migrate().await.unwrap();
    s.migrate().await.unwrap();
    s.ping().await.unwrap();
    let id = register(s, "a@example.org").await;
    s.migrate().await.unwrap();
    assert!(s.account_by_id(id).await.unwrap().is_some());
}

async fn account_round_trip(s: &dyn Store) {
    let new = new_account("alice@example.org", 7);
    let id = s.upsert_unverified_account(&new).await.unwrap();
    let expected = Account {
        id,
        email: new.email.clone(),
        credentials: new.credentials.clone(),
        recovery_wrapped_vault_key: new.recovery_wrapped_vault_key.clone(),
        verified: false,
        totp_secret: None,
        totp_enabled: false,
        totp_last_step: 0,
        created_at: new.now,
    };
    assert_eq!(s.account_by_id(id).await.unwrap(), Some(expected.clone()));
    assert_eq!(
        s.account_by_email("alice@example.org").await.unwrap(),
        Some(expected)
    );
    assert_eq!(s.account_by_email("bob@example.org").await.unwrap(), None);
    assert_eq!(s.account_by_id(AccountId(id.0 + 1000)).await.unwrap(), None);

    s.mark_verified(id, 5_000).await.unwrap();
    let account = s.account_by_id(id).await.unwrap().unwrap();
    assert!(account.verified);
    assert_eq!(account.created_at, new.now);

    let other = register(s, "bob@example.org").await;
    assert_ne!(other, id);
    assert!(!s.account_by_id(other).await.unwrap().unwrap().verified);
}

async fn unverified_account_is_replaced(s: &dyn Store) {
    let first = s
        .upsert_unverified_account(&new_account("carol@example.org", 1))
        .await
        .unwrap();
    // Rows of the abandoned registration go with it.
    s.put_challenge(&challenge(b"verify-first", first))
        .await
        .unwrap();
    s.create_session(&new_session("s-first", first, b"r-first", 10))
        .await
        .unwrap();
    s.audit(&event(Some(first), 10, "registered"))
        .await
        .unwrap();

    let second = s
        .upsert_unverified_account(&new_account("carol@example.org", 2))
        .await
        .unwrap();
    assert_ne!(second, first, "a replaced account gets a new id");
    assert_eq!(s.account_by_id(first).await.unwrap(), None);
    let account = s
        .account_by_email("carol@example.org")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(account.id, second);
    assert_eq!(account.credentials, new_account("", 2).credentials);
    assert_eq!(s.challenge(b"verify-first").await.unwrap(), None);
    assert_eq!(s.session("s-first").await.unwrap(), None);
    assert_eq!(
        s.rotate_refresh(b"r-first", b"r-next", 11).await.unwrap(),
        Rotation::Unknown
    );
    assert!(s.audit_events(first, None, 10).await.unwrap().is_empty());
    assert!(s.audit_events(second, None, 10).await.unwrap().is_empty());
}

async fn verified_account_conflicts(s: &dyn Store) {
    let id = register(s, "dave@example.org").await;
    s.mark_verified(id, 2_000).await.unwrap();
    let before = s.account_by_id(id).await.unwrap().unwrap();

    let err = s
        .upsert_unverified_account(&new_account("dave@example.org", 9))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict), "got {err:?}");
    assert_eq!(s.account_by_id(id).await.unwrap(), Some(before));
}

async fn email_matches_exactly(s: &dyn Store) {
    // The store compares canonical addresses byte for byte (MySQL's default
    // collations would fold case and accents).
    let lower = register(s, "erin@example.org").await;
    s.mark_verified(lower, 1).await.unwrap();
    let upper = register(s, "Erin@example.org").await;
    let accent = register(s, "érin@example.org").await;
    assert_eq!(
        HashSet::from([lower, upper, accent]).len(),
        3,
        "three distinct accounts"
    );
    assert_eq!(s.account_by_email("ERIN@EXAMPLE.ORG").await.unwrap(), None);
    assert_eq!(
        s.account_by_email("érin@example.org")
            .await
            .unwrap()
            .map(|a| a.id),
        Some(accent)
    );
}

async fn credentials_are_replaced(s: &dyn Store) {
    let id = register(s, "frank@example.org").await;
    s.mark_verified(id, 1_500).await.unwrap();
    let before = s.account_by_id(id).await.unwrap().unwrap();
    let creds = Credentials {
        kdf: KdfParams {
            memory_kib: 128 * 1024,
            iterations: 4,
            parallelism: 2,
            salt: [0x5a; 16],
        },
        auth_hash: "$argon2id$v=19$m=131072,t=4,p=2$new$new".into(),
        wrapped_vault_key: vec![0x11; 88],
    };
    s.update_credentials(id, &creds, 3_000).await.unwrap();
    let after = s.account_by_id(id).await.unwrap().unwrap();
    assert_eq!(after.credentials, creds);
    assert_eq!(
        after.recovery_wrapped_vault_key,
        before.recovery_wrapped_vault_key
    );
    assert!(after.verified);
    assert_eq!(after.created_at, before.created_at);
}

async fn totp_secret_set_and_cleared(s: &dyn Store) {
    let id = register(s, "grace@example.org").await;
    let secret = [0x00, b'\'', b'\\', b'"', 0xff, 0x42];
    s.set_totp(id, Some(&secret), false).await.unwrap();
    let a = s.account_by_id(id).await.unwrap().unwrap();
    assert_eq!(a.totp_secret.as_deref(), Some(&secret[..]));
    assert!(!a.totp_enabled);

    s.set_totp(id, Some(&secret), true).await.unwrap();
    assert!(s.account_by_id(id).await.unwrap().unwrap().totp_enabled);

    s.set_totp(id, None, false).await.unwrap();
    let a = s.account_by_id(id).await.unwrap().unwrap();
    assert_eq!(a.totp_secret, None);
    assert!(!a.totp_enabled);
}

async fn totp_step_only_advances(s: &dyn Store) {
    let id = register(s, "heidi@example.org").await;
    let other = register(s, "ivan@example.org").await;
    assert!(s.advance_totp_step(id, 58_000_000).await.unwrap());
    assert!(
        !s.advance_totp_step(id, 58_000_000).await.unwrap(),
        "replay"
    );
    assert!(!s.advance_totp_step(id, 57_999_999).await.unwrap(), "older");
    assert!(s.advance_totp_step(id, 58_000_001).await.unwrap());
    assert_eq!(
        s.account_by_id(id).await.unwrap().unwrap().totp_last_step,
        58_000_001
    );
    // Per account.
    assert!(s.advance_totp_step(other, 58_000_000).await.unwrap());
    // No such account: nothing advances.
    assert!(
        !s.advance_totp_step(AccountId(id.0 + 1000), 1)
            .await
            .unwrap()
    );
}

async fn challenge_lifecycle(s: &dyn Store) {
    let account = register(s, "judy@example.org").await;
    let key = [0xab; 32];
    assert_eq!(s.challenge(&key).await.unwrap(), None);

    let mut c = challenge(&key, account);
    c.purpose = ChallengePurpose::VerifyEmail;
    c.code_hash = Vec::new(); // no code sent yet
    s.put_challenge(&c).await.unwrap();
    assert_eq!(s.challenge(&key).await.unwrap(), Some(c.clone()));

    assert_eq!(s.claim_attempt(&key, 5).await.unwrap(), Some(1));
    assert_eq!(s.claim_attempt(&key, 5).await.unwrap(), Some(2));

    // A resend replaces the code and nothing else.
    assert!(
        s.renew_challenge_code(&key, &[0xd0; 32], 3_600, 3_000)
            .await
            .unwrap()
    );
    let renewed = s.challenge(&key).await.unwrap().unwrap();
    assert_eq!(
        renewed,
        Challenge {
            code_hash: vec![0xd0; 32],
            code_expires_at: 3_600,
            sent_at: 3_000,
            attempts: 2,
            ..c.clone()
        }
    );
    // Renewing with identical values still finds the challenge.
    assert!(
        s.renew_challenge_code(&key, &[0xd0; 32], 3_600, 3_000)
            .await
            .unwrap()
    );

    // Putting under the same key replaces the challenge.
    let login = challenge(&key, account);
    s.put_challenge(&login).await.unwrap();
    assert_eq!(s.challenge(&key).await.unwrap(), Some(login));

    let other_key = [0xcd; 32];
    s.put_challenge(&challenge(&other_key, account))
        .await
        .unwrap();

    assert!(s.consume_challenge(&key).await.unwrap());
    assert!(!s.consume_challenge(&key).await.unwrap(), "single use");
    assert_eq!(s.challenge(&key).await.unwrap(), None);
    assert_eq!(s.claim_attempt(&key, 5).await.unwrap(), None, "gone");
    assert!(
        !s.renew_challenge_code(&key, &[1; 32], 1, 1).await.unwrap(),
        "gone"
    );
    assert!(
        s.challenge(&other_key).await.unwrap().is_some(),
        "other challenges untouched"
    );
}

async fn claim_attempt_stops_at_max(s: &dyn Store) {
    let account = register(s, "judith@example.org").await;
    let key = [0xa1; 32];
    assert_eq!(
        s.claim_attempt(&key, 3).await.unwrap(),
        None,
        "no challenge"
    );
    s.put_challenge(&challenge(&key, account)).await.unwrap();
    for n in 1..=3 {
        assert_eq!(s.claim_attempt(&key, 3).await.unwrap(), Some(n));
    }
    assert_eq!(s.claim_attempt(&key, 3).await.unwrap(), None, "used up");
    assert_eq!(s.claim_attempt(&key, 3).await.unwrap(), None, "still");
    assert_eq!(
        s.challenge(&key).await.unwrap().unwrap().attempts,
        3,
        "a refused claim counts nothing"
    );
    // The bound is the caller's: a larger one allows more.
    assert_eq!(s.claim_attempt(&key, 4).await.unwrap(), Some(4));
    assert_eq!(s.claim_attempt(&key, 0).await.unwrap(), None);

    // A challenge stored with its attempts already used up.
    let other = [0xa2; 32];
    let spent = Challenge {
        attempts: 5,
        ..challenge(&other, account)
    };
    s.put_challenge(&spent).await.unwrap();
    assert_eq!(s.claim_attempt(&other, 5).await.unwrap(), None);
    assert_eq!(s.challenge(&other).await.unwrap(), Some(spent));
    // Claims are per challenge.
    assert_eq!(s.challenge(&key).await.unwrap().unwrap().attempts, 4);

    // The extreme bound.
    let wide = [0xa3; 32];
    let near = Challenge {
        attempts: u32::MAX - 1,
        ..challenge(&wide, account)
    };
    s.put_challenge(&near).await.unwrap();
    assert_eq!(
        s.claim_attempt(&wide, u32::MAX).await.unwrap(),
        Some(u32::MAX)
    );
    assert_eq!(s.claim_attempt(&wide, u32::MAX).await.unwrap(), None);
}

async fn writes_for_a_deleted_account_are_missing(s: &dyn Store) {
    // A re-registration of an unverified address deletes the old account:
    // writes that still refer to it are `Missing`, and store nothing.
    let gone = register(s, "kim@example.org").await;
    let current = s
        .upsert_unverified_account(&new_account("kim@example.org", 2))
        .await
        .unwrap();
    assert_ne!(gone, current);

    let err = s
        .put_challenge(&challenge(b"for-gone", gone))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Missing), "{err:?}");
    assert_eq!(s.challenge(b"for-gone").await.unwrap(), None);
    // Replacing an existing challenge with one for a gone account.
    s.put_challenge(&challenge(b"kept", current)).await.unwrap();
    let err = s
        .put_challenge(&challenge(b"kept", gone))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Missing), "{err:?}");
    assert_eq!(
        s.challenge(b"kept").await.unwrap().map(|c| c.account),
        Some(current),
        "the failed replace changes nothing"
    );

    let err = s
        .create_session(&new_session("s-gone", gone, b"r-gone", 5))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Missing), "{err:?}");
    assert_eq!(s.session("s-gone").await.unwrap(), None);

    let err = s.audit(&event(Some(gone), 6, "late")).await.unwrap_err();
    assert!(matches!(err, StoreError::Missing), "{err:?}");
    assert!(s.audit_events(gone, None, 10).await.unwrap().is_empty());

    // The current account is unaffected.
    s.put_challenge(&challenge(b"for-current", current))
        .await
        .unwrap();
    s.create_session(&new_session("s-current", current, b"r-current", 7))
        .await
        .unwrap();
}

async fn sessions_listed_newest_first(s: &dyn Store) {
    let a = register(s, "ken@example.org").await;
    let b = register(s, "lea@example.org").await;
    s.create_session(&new_session("s1", a, b"r1", 100))
        .await
        .unwrap();
    s.create_session(&new_session("s3", a, b"r3", 300))
        .await
        .unwrap();
    s.create_session(&new_session("s2", a, b"r2", 200))
        .await
        .unwrap();
    s.create_session(&new_session("sb", b, b"rb", 400))
        .await
        .unwrap();

    let ids: Vec<String> = s
        .sessions(a)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, ["s3", "s2", "s1"]);

    let s2 = s.session("s2").await.unwrap().unwrap();
    assert_eq!(
        s2,
        Session {
            id: "s2".into(),
            account: a,
            device: Some("laptop".into()),
            ip: Some("2001:db8::1".into()),
            created_at: 200,
            last_used_at: 200,
            revoked_at: None,
        }
    );
    assert_eq!(s.session("nope").await.unwrap(), None);

    // Revoked sessions drop out of the list but can still be read.
    assert!(s.revoke_session(a, "s3", 500).await.unwrap());
    let ids: Vec<String> = s
        .sessions(a)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, ["s2", "s1"]);
    assert_eq!(
        s.session("s3").await.unwrap().unwrap().revoked_at,
        Some(500)
    );
    let no_device = NewSession {
        device: None,
        ip: None,
        ..new_session("s4", b, b"r4", 600)
    };
    s.create_session(&no_device).await.unwrap();
    let s4 = s.session("s4").await.unwrap().unwrap();
    assert_eq!((s4.device, s4.ip), (None, None));
}

async fn session_uniqueness_and_owner(s: &dyn Store) {
    let a = register(s, "mallory@example.org").await;
    s.create_session(&new_session("dup", a, b"hash-1", 1))
        .await
        .unwrap();
    let err = s
        .create_session(&new_session("dup", a, b"hash-2", 2))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict), "same id: {err:?}");
    let err = s
        .create_session(&new_session("other", a, b"hash-1", 2))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict),
        "same refresh hash: {err:?}"
    );
    // The owner must exist (foreign keys are enforced).
    let err = s
        .create_session(&new_session("orphan", AccountId(a.0 + 1000), b"hash-3", 2))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Missing), "{err:?}");
    assert_eq!(s.session("orphan").await.unwrap(), None);
}

async fn refresh_rotation_and_reuse(s: &dyn Store) {
    let a = register(s, "niaj@example.org").await;
    s.create_session(&new_session("sess", a, b"h1", 100))
        .await
        .unwrap();
    s.create_session(&new_session("bystander", a, b"x1", 100))
        .await
        .unwrap();

    let Rotation::Rotated(rotated) = s.rotate_refresh(b"h1", b"h2", 110).await.unwrap() else {
        panic!("h1 is current");
    };
    assert_eq!(rotated.id, "sess");
    assert_eq!(rotated.last_used_at, 110);
    assert_eq!(rotated.created_at, 100);
    assert_eq!(rotated.revoked_at, None);
    assert!(matches!(
        s.rotate_refresh(b"h2", b"h3", 120).await.unwrap(),
        Rotation::Rotated(_)
    ));
    assert_eq!(
        s.rotate_refresh(b"never-issued", b"h9", 125).await.unwrap(),
        Rotation::Unknown
    );

    // h1 was spent two rotations ago: theft. The session is revoked.
    let Rotation::Reused(reused) = s.rotate_refresh(b"h1", b"h4", 130).await.unwrap() else {
        panic!("h1 is spent");
    };
    assert_eq!(reused.id, "sess");
    assert_eq!(reused.revoked_at, Some(130));
    assert_eq!(
        s.session("sess").await.unwrap().unwrap().revoked_at,
        Some(130)
    );
    // The current token of the revoked session is dead too, and further
    // replays of spent ones are just unknown.
    assert_eq!(
        s.rotate_refresh(b"h3", b"h5", 140).await.unwrap(),
        Rotation::Unknown
    );
    assert_eq!(
        s.rotate_refresh(b"h2", b"h6", 150).await.unwrap(),
        Rotation::Unknown
    );
    // Other sessions are untouched.
    assert!(matches!(
        s.rotate_refresh(b"x1", b"x2", 160).await.unwrap(),
        Rotation::Rotated(_)
    ));

    // A session revoked by its owner: its current token is unknown.
    s.create_session(&new_session("gone", a, b"g1", 200))
        .await
        .unwrap();
    assert!(s.revoke_session(a, "gone", 210).await.unwrap());
    assert_eq!(
        s.rotate_refresh(b"g1", b"g2", 220).await.unwrap(),
        Rotation::Unknown
    );

    // A new token that collides with an existing one is refused.
    s.create_session(&new_session("c", a, b"c1", 300))
        .await
        .unwrap();
    let err = s.rotate_refresh(b"c1", b"x2", 310).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    assert!(matches!(
        s.rotate_refresh(b"c1", b"c2", 320).await.unwrap(),
        Rotation::Rotated(_)
    ));
}

async fn revoke_one_and_all_but_current(s: &dyn Store) {
    let a = register(s, "olivia@example.org").await;
    let b = register(s, "peggy@example.org").await;
    for (id, hash) in [("a1", "ha1"), ("a2", "ha2"), ("a3", "ha3"), ("a4", "ha4")] {
        s.create_session(&new_session(id, a, hash.as_bytes(), 10))
            .await
            .unwrap();
    }
    s.create_session(&new_session("b1", b, b"hb1", 10))
        .await
        .unwrap();

    assert!(s.revoke_session(a, "a1", 20).await.unwrap());
    assert!(!s.revoke_session(a, "a1", 21).await.unwrap(), "already");
    assert!(!s.revoke_session(a, "zz", 21).await.unwrap(), "no such");
    assert!(
        !s.revoke_session(a, "b1", 21).await.unwrap(),
        "another account's session"
    );
    assert_eq!(s.session("b1").await.unwrap().unwrap().revoked_at, None);
    assert_eq!(s.session("a1").await.unwrap().unwrap().revoked_at, Some(20));

    // Everything but the current session; a1 is already revoked.
    assert_eq!(s.revoke_sessions(a, Some("a3"), 30).await.unwrap(), 2);
    let live: Vec<String> = s
        .sessions(a)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(live, ["a3"]);
    assert_eq!(
        s.session("a1").await.unwrap().unwrap().revoked_at,
        Some(20),
        "first revocation time kept"
    );
    assert_eq!(s.revoke_sessions(a, Some("a3"), 31).await.unwrap(), 0);

    // Everything.
    assert_eq!(s.revoke_sessions(a, None, 40).await.unwrap(), 1);
    assert!(s.sessions(a).await.unwrap().is_empty());
    assert_eq!(s.sessions(b).await.unwrap().len(), 1, "other account kept");
}

/// A `next` for [`Store::charge_throttle`] that stores `t` whatever came
/// before, counting its calls and recording the last `previous` it got.
struct Recorder {
    calls: AtomicU32,
    previous: std::sync::Mutex<Option<Option<Throttle>>>,
}

impl Recorder {
    fn new() -> Self {
        Self {
            calls: AtomicU32::new(0),
            previous: std::sync::Mutex::new(None),
        }
    }

    /// The `next` that answers `t`.
    fn to(&self, t: Throttle) -> impl Fn(Option<Throttle>) -> Throttle + Send + Sync + '_ {
        move |previous| {
            self.calls.fetch_add(1, Ordering::SeqCst);
            *self.previous.lock().unwrap() = Some(previous);
            t
        }
    }

    /// Calls so far, and the `previous` of the last one (taken).
    fn take(&self) -> (u32, Option<Option<Throttle>>) {
        (
            self.calls.swap(0, Ordering::SeqCst),
            self.previous.lock().unwrap().take(),
        )
    }
}

async fn throttle_charge_get_clear(s: &dyn Store) {
    let key = [0x7e; 32];
    let other = [0x7f; 32];
    let rec = Recorder::new();
    assert_eq!(s.throttle(&key).await.unwrap(), None);

    // The first charge starts from nothing.
    let t1 = Throttle {
        failures: 1,
        not_before: 0,
    };
    assert_eq!(
        s.charge_throttle(&key, 100, &rec.to(t1)).await.unwrap(),
        ThrottleCharge::Charged(t1)
    );
    assert_eq!(rec.take(), (1, Some(None)));
    assert_eq!(s.throttle(&key).await.unwrap(), Some(t1));

    // The next one sees the stored state; a back-off ending exactly now
    // does not block.
    let t2 = Throttle {
        failures: 2,
        not_before: 200,
    };
    assert_eq!(
        s.charge_throttle(&key, 100, &rec.to(t2)).await.unwrap(),
        ThrottleCharge::Charged(t2)
    );
    assert_eq!(rec.take(), (1, Some(Some(t1))));
    let t3 = Throttle {
        failures: 3,
        not_before: 300,
    };
    assert_eq!(
        s.charge_throttle(&key, 200, &rec.to(t3)).await.unwrap(),
        ThrottleCharge::Charged(t3)
    );
    assert_eq!(rec.take(), (1, Some(Some(t2))));

    // While a back-off runs, a charge is refused and changes nothing.
    let never = Throttle {
        failures: 99,
        not_before: 0,
    };
    assert_eq!(
        s.charge_throttle(&key, 299, &rec.to(never)).await.unwrap(),
        ThrottleCharge::Blocked { not_before: 300 }
    );
    assert_eq!(rec.take(), (0, None), "next is not consulted");
    assert_eq!(s.throttle(&key).await.unwrap(), Some(t3));

    // Extreme values round-trip.
    let max = Throttle {
        failures: u32::MAX,
        not_before: i64::MAX,
    };
    assert_eq!(
        s.charge_throttle(&key, 300, &rec.to(max)).await.unwrap(),
        ThrottleCharge::Charged(max)
    );
    assert_eq!(s.throttle(&key).await.unwrap(), Some(max));
    assert_eq!(
        s.charge_throttle(&key, i64::MAX - 1, &rec.to(never))
            .await
            .unwrap(),
        ThrottleCharge::Blocked {
            not_before: i64::MAX
        }
    );

    // Per key.
    assert_eq!(
        s.charge_throttle(&other, 300, &rec.to(t1)).await.unwrap(),
        ThrottleCharge::Charged(t1)
    );
    assert_eq!(rec.take().1, Some(None), "another key starts from nothing");

    s.clear_throttle(&key).await.unwrap();
    assert_eq!(s.throttle(&key).await.unwrap(), None);
    s.clear_throttle(&key).await.unwrap();
    assert_eq!(s.throttle(&other).await.unwrap(), Some(t1));
    // After a clear, the next charge starts from nothing again.
    assert_eq!(
        s.charge_throttle(&key, 400, &rec.to(t2)).await.unwrap(),
        ThrottleCharge::Charged(t2)
    );
    assert_eq!(rec.take(), (1, Some(None)));
}

async fn audit_paging(s: &dyn Store) {
    let a = register(s, "quentin@example.org").await;
    let b = register(s, "rupert@example.org").await;
    for i in 0..25 {
        s.audit(&event(Some(a), i, &format!("a{i}"))).await.unwrap();
        if i % 5 == 0 {
            s.audit(&event(Some(b), i, &format!("b{i}"))).await.unwrap();
            s.audit(&event(None, i, "anonymous")).await.unwrap();
        }
    }

    let mut seen = Vec::new();
    let mut before = None;
    let mut pages = Vec::new();
    loop {
        let page = s.audit_events(a, before, 10).await.unwrap();
        if page.is_empty() {
            break;
        }
        pages.push(page.len());
        before = page.last().map(|e| e.id);
        seen.extend(page);
    }
    assert_eq!(pages, [10, 10, 5]);
    let details: Vec<String> = seen.iter().filter_map(|e| e.detail.clone()).collect();
    let expected: Vec<String> = (0..25).rev().map(|i| format!("a{i}")).collect();
    assert_eq!(details, expected, "newest first, only the owner's");
    assert!(seen.windows(2).all(|w| w[0].id > w[1].id));

    let newest = &seen[0];
    assert_eq!(newest.at, 24);
    assert_eq!(newest.event, "login.password");
    assert_eq!(newest.ip.as_deref(), Some("198.51.100.7"));
    assert!(newest.success);
    assert!(!seen[1].success);

    let b_events = s.audit_events(b, None, 100).await.unwrap();
    assert_eq!(b_events.len(), 5);
    assert!(
        b_events
            .iter()
            .all(|e| e.detail.as_deref().is_some_and(|d| d.starts_with('b')))
    );
    assert!(s.audit_events(a, None, 0).await.unwrap().is_empty());
    let oldest_id = seen.last().map(|e| e.id).unwrap();
    assert!(
        s.audit_events(a, Some(oldest_id), 10)
            .await
            .unwrap()
            .is_empty()
    );

    let bare = NewAuditEvent {
        ip: None,
        detail: None,
        ..event(Some(b), 99, "")
    };
    s.audit(&bare).await.unwrap();
    let events = s.audit_events(b, None, 1).await.unwrap();
    let latest = &events[0];
    assert_eq!(
        (latest.ip.as_deref(), latest.detail.as_deref()),
        (None, None)
    );
}

async fn sql_metacharacters_round_trip(s: &dyn Store) {
    let blob = b"'\\\0\"; DROP TABLE accounts; --\x00\xff".to_vec();
    for (i, text) in EVIL.iter().copied().enumerate() {
        let n = u8::try_from(i).unwrap();
        let mut new = new_account(text, n);
        new.credentials.auth_hash = text.to_owned();
        new.credentials.wrapped_vault_key = blob.clone();
        new.recovery_wrapped_vault_key = blob.clone();
        let id = s.upsert_unverified_account(&new).await.unwrap();
        let account = s.account_by_email(text).await.unwrap().unwrap();
        assert_eq!(account.id, id);
        assert_eq!(account.email, text);
        assert_eq!(account.credentials.auth_hash, text);
        assert_eq!(account.credentials.wrapped_vault_key, blob);
        assert_eq!(account.recovery_wrapped_vault_key, blob);

        let mut c = challenge(&[&blob[..], &[n]].concat(), id);
        c.ip = Some(text.to_owned());
        c.code_hash = blob.clone();
        s.put_challenge(&c).await.unwrap();
        assert_eq!(s.challenge(&c.key).await.unwrap(), Some(c.clone()));

        let session = NewSession {
            device: Some(text.to_owned()),
            ip: Some(text.to_owned()),
            ..new_session(text, id, &[&blob[..], &[n]].concat(), 5)
        };
        s.create_session(&session).await.unwrap();
        let stored = s.session(text).await.unwrap().unwrap();
        assert_eq!(stored.id, text);
        assert_eq!(stored.device.as_deref(), Some(text));
        assert_eq!(stored.ip.as_deref(), Some(text));
        assert_eq!(s.sessions(id).await.unwrap().len(), 1);
        assert!(s.revoke_session(id, text, 6).await.unwrap());

        s.audit(&NewAuditEvent {
            account: Some(id),
            at: 7,
            event: EVIL[0],
            ip: Some(text.to_owned()),
            success: true,
            detail: Some(text.to_owned()),
        })
        .await
        .unwrap();
        let events = s.audit_events(id, None, 1).await.unwrap();
        let e = &events[0];
        assert_eq!(e.event, EVIL[0]);
        assert_eq!(e.ip.as_deref(), Some(text));
        assert_eq!(e.detail.as_deref(), Some(text));

        let key = [text.as_bytes(), &[0, n]].concat();
        let t = Throttle {
            failures: 1,
            not_before: 2,
        };
        assert_eq!(
            s.charge_throttle(&key, 0, &|_| t).await.unwrap(),
            ThrottleCharge::Charged(t)
        );
        assert_eq!(s.throttle(&key).await.unwrap(), Some(t));
    }
    // Every table is still there.
    assert!(s.account_by_email(EVIL[0]).await.unwrap().is_some());
    assert!(s.session(EVIL[1]).await.unwrap().is_some());
}

// ---- concurrency ----

/// Runs `n` copies of `task` (given their index) at once on the runtime's
/// worker threads, and returns their results in index order.
pub(super) async fn concurrently<T, F, Fut>(n: usize, task: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let barrier = barrier.clone();
            let fut = task(i);
            tokio::spawn(async move {
                barrier.wait().await;
                fut.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

async fn consume_challenge_once_concurrently(s: Arc<dyn Store>) {
    let account = register(&*s, "sybil@example.org").await;
    let key = [0x33; 32];
    s.put_challenge(&challenge(&key, account)).await.unwrap();
    let wins = concurrently(20, |_| {
        let s = s.clone();
        async move { s.consume_challenge(&key).await.unwrap() }
    })
    .await;
    assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{wins:?}");
    assert_eq!(s.challenge(&key).await.unwrap(), None);
}

/// Opens the pool's connections, so that the tasks [`concurrently`] starts
/// next run their statements at once instead of waiting for connections
/// to be opened one after another.
pub(super) async fn open_connections(s: &Arc<dyn Store>) {
    concurrently(20, |_| {
        let s = s.clone();
        async move { s.ping().await.unwrap() }
    })
    .await;
}

async fn claim_attempt_at_most_max_concurrently(s: Arc<dyn Store>) {
    let account = register(&*s, "trent@example.org").await;
    let key = [0x44; 32];
    s.put_challenge(&challenge(&key, account)).await.unwrap();
    open_connections(&s).await;
    let claims = concurrently(20, |_| {
        let s = s.clone();
        async move { s.claim_attempt(&key, 5).await.unwrap() }
    })
    .await;
    let mut won: Vec<u32> = claims.iter().flatten().copied().collect();
    won.sort_unstable();
    assert_eq!(won, [1, 2, 3, 4, 5], "each number once: {claims:?}");
    assert_eq!(claims.iter().filter(|c| c.is_none()).count(), 15);
    assert_eq!(s.challenge(&key).await.unwrap().unwrap().attempts, 5);
}

async fn charge_throttle_serialised_concurrently(s: Arc<dyn Store>) {
    // The key has no row yet: the first charges race to create it.
    open_connections(&s).await;
    let key = [0x55; 32];
    let now = 1_000;
    let charges = concurrently(20, |_| {
        let s = s.clone();
        async move {
            let next = |previous: Option<Throttle>| {
                let failures = previous.map_or(0, |t| t.failures) + 1;
                Throttle {
                    failures,
                    not_before: if failures > 5 { now + 10 } else { 0 },
                }
            };
            s.charge_throttle(&key, now, &next).await.unwrap()
        }
    })
    .await;
    let mut charged: Vec<u32> = charges
        .iter()
        .filter_map(|c| match c {
            ThrottleCharge::Charged(t) => Some(t.failures),
            ThrottleCharge::Blocked { .. } => None,
        })
        .collect();
    charged.sort_unstable();
    assert_eq!(charged, [1, 2, 3, 4, 5, 6], "none lost: {charges:?}");
    let blocked = charges
        .iter()
        .filter(|c| {
            **c == ThrottleCharge::Blocked {
                not_before: now + 10,
            }
        })
        .count();
    assert_eq!(blocked, 14, "{charges:?}");
    assert_eq!(
        s.throttle(&key).await.unwrap(),
        Some(Throttle {
            failures: 6,
            not_before: now + 10
        })
    );
}

async fn totp_step_once_concurrently(s: Arc<dyn Store>) {
    let id = register(&*s, "uma@example.org").await;
    let wins = concurrently(20, |_| {
        let s = s.clone();
        async move { s.advance_totp_step(id, 58_000_000).await.unwrap() }
    })
    .await;
    assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{wins:?}");
}

async fn rotate_refresh_once_concurrently(s: Arc<dyn Store>) {
    let a = register(&*s, "victor@example.org").await;
    s.create_session(&new_session("raced", a, b"current", 1))
        .await
        .unwrap();
    let outcomes = concurrently(20, |i| {
        let s = s.clone();
        async move {
            let new = format!("next-{i}");
            s.rotate_refresh(b"current", new.as_bytes(), 2)
                .await
                .unwrap()
        }
    })
    .await;
    let rotated = outcomes
        .iter()
        .filter(|o| matches!(o, Rotation::Rotated(_)))
        .count();
    let reused = outcomes
        .iter()
        .filter(|o| matches!(o, Rotation::Reused(_)))
        .count();
    // One caller wins; the first to come after it presents a spent token
    // (theft, as far as the store can tell) and revokes the session; the
    // rest find it revoked.
    assert_eq!(rotated, 1, "{outcomes:?}");
    assert_eq!(reused, 1, "{outcomes:?}");
    assert_eq!(outcomes.len() - rotated - reused, 18);
    assert!(
        s.session("raced")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
}

async fn register_same_address_concurrently(s: Arc<dyn Store>) {
    let outcomes = concurrently(8, |i| {
        let s = s.clone();
        async move {
            let seed = u8::try_from(i).unwrap();
            s.upsert_unverified_account(&new_account("walter@example.org", seed))
                .await
        }
    })
    .await;
    let mut ids = HashSet::new();
    for outcome in &outcomes {
        match outcome {
            Ok(id) => {
                ids.insert(*id);
            }
            // Losing every retry to other registrations of the address.
            Err(StoreError::Conflict) => {}
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert!(!ids.is_empty(), "{outcomes:?}");
    let survivor = s
        .account_by_email("walter@example.org")
        .await
        .unwrap()
        .unwrap();
    assert!(ids.contains(&survivor.id));
    for id in ids.iter().filter(|id| **id != survivor.id) {
        assert_eq!(s.account_by_id(*id).await.unwrap(), None, "replaced");
    }
}

// ---------------------------------------------------------------------------
// `connect` itself
// ---------------------------------------------------------------------------

#[tokio::test]
async fn connect_rejects_other_schemes() {
    for url in ["postgres://user:hunter2@db/vault", "vault.sqlite", ""] {
        let err = connect(url).await.unwrap_err();
        assert!(matches!(err, StoreError::Database(_)), "{url}: {err:?}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}

#[tokio::test]
async fn connect_sqlite_url_forms_and_pragmas() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested-name.db");

    let s = connect(&format!("sqlite:{}?mode=rwc", path.display()))
        .await
        .unwrap();
    s.migrate().await.unwrap();
    let id = register(&*s, "xavier@example.org").await;
    drop(s);
    assert!(path.exists());

    // The same file through the other spelling: the data is there.
    let store = SqliteStore::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    assert!(store.account_by_id(id).await.unwrap().is_some());

    let pool = store.pool();
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(journal, "wal");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(fk, 1);
    let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(busy, 5_000);
    let wal_limit: i64 = sqlx::query_scalar("PRAGMA journal_size_limit")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(wal_limit, 64 << 20);
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(sync, 1, "NORMAL");
    store.close().await;
}

#[tokio::test]
async fn connect_sqlite_in_memory_keeps_its_data() {
    let s = connect("sqlite::memory:").await.unwrap();
    s.migrate().await.unwrap();
    let id = register(&*s, "yvonne@example.org").await;
    for _ in 0..3 {
        assert!(s.account_by_id(id).await.unwrap().is_some());
    }
}

#[test]
fn database_is_replaced_in_admin_url() {
    assert_eq!(
        with_database("mysql://u:p@127.0.0.1:3306", "d"),
        "mysql://u:p@127.0.0.1:3306/d"
    );
    assert_eq!(
        with_database("mysql://u:p@h/old?ssl-mode=disabled", "d"),
        "mysql://u:p@h/d?ssl-mode=disabled"
    );
    assert_eq!(with_database("mysql://h/", "d"), "mysql://h/d");
}
