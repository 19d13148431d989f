//! End-to-end tests of accounts (issue 3): the real `vault-server` binary on
//! `127.0.0.1:0`, mail through a real SMTP server on loopback, the client
//! side with the real crypto. Every test runs twice, as `sqlite::<name>` and
//! `mariadb::<name>`.
//!
//! Code expiry is tested by moving the stored expiry times back in the
//! server's database (nobody waits ten minutes); everything else goes
//! through the HTTP API only.

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use common::api::{
    Accepted, AccountInfo, AuditEvent, Base64, ErrorCode, LoginResponse, PreloginResponse,
    SecondFactor, SessionInfo, Tokens, TotpEnrollment, paths,
};
use common::crypto::kdf::{DEFAULT_ITERATIONS, DEFAULT_MEMORY_KIB, DEFAULT_PARALLELISM};
use jsonwebtoken::Algorithm;
use reqwest::Method;
use serde_json::{Value, json};
use tests::account::{derive, unique_email};
use tests::forge::{self, TotpCodes};
use tests::server::JWT_SECRET;
use tests::{Backend, LoggedIn, Resp, ServerOptions, TestAccount, TestServer, unix_now};

tests::on_both_backends!(
    register_verify_login_round_trip,
    login_before_verification_is_refused,
    wrong_password_looks_like_an_unknown_address,
    wrong_codes_are_refused,
    replayed_codes_are_refused,
    codes_only_count_for_their_own_ticket,
    five_wrong_codes_burn_the_ticket,
    expired_codes_and_tickets_are_refused,
    per_ip_rate_limit_answers_429_with_retry_after,
    per_account_backoff_refuses_even_the_right_password,
    totp_enrol_activate_login_and_replay,
    totp_email_fallback_and_disable,
    forged_and_invalid_access_tokens_are_refused,
    refresh_token_is_not_an_access_token,
    refresh_rotation_and_reuse_detection,
    token_is_refused_after_logout,
    password_change_revokes_other_sessions,
    sessions_list_revoke_one_revoke_all,
    no_user_enumeration,
    oversized_body_is_413_with_the_json_error,
    sql_metacharacters_in_every_field,
    audit_log_lists_the_events_without_secrets,
    operator_endpoints_answer,
    errors_have_the_json_shape,
    wrong_method_answers_the_json_error_shape,
    bad_query_answers_the_json_error_shape,
    login_spans_two_server_instances,
    concurrent_registrations_of_one_address_all_succeed,
    concurrent_requests_use_codes_and_tokens_once,
    concurrent_wrong_codes_get_at_most_five_tries,
    concurrent_wrong_passwords_all_count_toward_the_backoff,
    concurrent_wrong_passwords_get_no_extra_guesses,
);

/// Another well-formed code than `code`.
fn other_code(code: &str) -> String {
    let n: u32 = code.parse().expect("6 digits");
    format!("{:06}", (n + 1) % 1_000_000)
}

/// A well-formed code none of `taken` is.
fn code_not_in(taken: &[String]) -> String {
    (0..1_000_000u32)
        .map(|n| format!("{n:06}"))
        .find(|c| !taken.contains(c))
        .expect("a free code")
}

/// The shape of a JSON value: the same keys and value types, values
/// replaced by their type.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        Value::String(_) => json!("string"),
        Value::Number(_) => json!("number"),
        Value::Bool(_) => json!("bool"),
        Value::Null => json!("null"),
    }
}

/// Every byte that is not an ASCII letter or digit as `%XX`.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Runs `n` requests at once (each made by `f(i)`), answers all the answers.
async fn at_once<F, Fut>(n: usize, f: F) -> Vec<Resp>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Resp> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for i in 0..n {
        set.spawn(f(i));
    }
    set.join_all().await
}

/// One line per answer: status and body.
fn summary(answers: &[Resp]) -> String {
    answers
        .iter()
        .map(|r| format!("{} {}", r.status, r.text()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// How many answers had `status`.
fn count_status(answers: &[Resp], status: u16) -> usize {
    answers.iter().filter(|r| r.status == status).count()
}

/// Moves an account's one-time codes 601 s into the past (ticket left live).
const AGE_CODES: &str = "UPDATE challenges SET code_expires_at = code_expires_at - 601, \
     sent_at = sent_at - 601 WHERE account_id = (SELECT id FROM accounts WHERE email = ?)";
/// Moves an account's codes and tickets 601 s into the past.
const AGE_CHALLENGES: &str = "UPDATE challenges SET code_expires_at = code_expires_at - 601, \
     expires_at = expires_at - 601, sent_at = sent_at - 601 \
     WHERE account_id = (SELECT id FROM accounts WHERE email = ?)";

// ---------------------------------------------------------------------------
// The main path
// ---------------------------------------------------------------------------

async fn register_verify_login_round_trip(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let a = TestAccount::new("roundtrip").await;
    srv.register(&a).await;
    let code = srv.verification_code(&a.email).await;
    srv.api
        .verify_email(&a.email, &code)
        .await
        .ok::<Accepted>(200);

    // Pre-login answers the registered parameters, for any spelling of the
    // address that canonicalises to it.
    let pre: PreloginResponse = srv.api.prelogin(&a.email).await.ok(200);
    assert_eq!(pre.kdf, a.kdf);
    let shouted = format!("  {}  ", a.email.to_ascii_uppercase());
    let pre2: PreloginResponse = srv.api.prelogin(&shouted).await.ok(200);
    assert_eq!(pre2.kdf, a.kdf);

    let ticket = srv.login_ticket(&a).await;
    assert_eq!(ticket.second_factor, SecondFactor::Email);
    assert!((1..=600).contains(&ticket.expires_in), "{ticket:?}");
    let code = srv.login_code(&a.email).await;
    // A code was just sent: asking for another one at once is throttled.
    let resend = srv.api.resend(ticket.ticket.expose()).await;
    resend.expect_error(429, ErrorCode::RateLimited);
    assert!(resend.retry_after().is_some_and(|s| (1..=60).contains(&s)));
    let resp: LoginResponse = srv
        .api
        .verify_login(ticket.ticket.expose(), &code, Some("e2e laptop"))
        .await
        .ok(200);
    a.assert_unwraps(&resp).await;
    assert_eq!(resp.kdf, a.kdf);
    assert_eq!(resp.account.email, a.email);
    assert!(!resp.account.totp_enabled);
    assert!((1..=900).contains(&resp.tokens.expires_in));
    assert!(resp.tokens.refresh_token.expose().len() >= 40);

    // The access token is an HS256 JWT for this account and session.
    let info: AccountInfo = srv
        .api
        .account(resp.tokens.access_token.expose())
        .await
        .ok(200);
    assert_eq!(info, resp.account);
    let claims = forge::claims(resp.tokens.access_token.expose());
    assert_eq!(
        forge::header(resp.tokens.access_token.expose())["alg"],
        "HS256"
    );
    assert_eq!(claims["sub"], json!(info.id));
    assert_eq!(claims["sid"], json!(resp.session_id));
    assert_eq!(claims["typ"], "access");
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!((1..=900).contains(&lifetime), "{claims}");
}

async fn login_before_verification_is_refused(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let a = TestAccount::new("unverified").await;
    srv.register(&a).await;
    let code = srv.verification_code(&a.email).await;

    // The right password: refused until the address is verified, no code sent.
    srv.api
        .login(&a.email, &a.auth_key())
        .await
        .expect_error(403, ErrorCode::EmailNotVerified);
    assert!(
        srv.mail
            .drain(&a.email)
            .iter()
            .all(|m| m.code("login").is_none()),
        "a login code was mailed for an unverified account"
    );
    // A wrong password looks exactly like an unknown address.
    let wrong = srv.api.login(&a.email, &[7; 32]).await;
    wrong.expect_error(401, ErrorCode::Unauthorized);
    let unknown = srv.api.login(&unique_email("nobody"), &[7; 32]).await;
    assert_eq!(
        (wrong.status, wrong.text()),
        (unknown.status, unknown.text())
    );

    srv.api
        .verify_email(&a.email, &code)
        .await
        .ok::<Accepted>(200);
    srv.login(&a).await;
}

async fn wrong_password_looks_like_an_unknown_address(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let a = srv.new_account("wrongpw").await;
    let wrong = derive("not the password", &a.kdf).await;
    let r1 = srv.api.login(&a.email, wrong.auth.expose()).await;
    r1.expect_error(401, ErrorCode::Unauthorized);
    let r2 = srv
        .api
        .login(&unique_email("ghost"), wrong.auth.expose())
        .await;
    r2.expect_error(401, ErrorCode::Unauthorized);
    assert_eq!(r1.text(), r2.text(), "wrong password vs unknown address");
    assert_eq!(r1.content_type(), r2.content_type());
    // A malformed auth key is a bad request, whoever the address.
    srv.api
        .login(&a.email, &[1; 16])
        .await
        .expect_error(400, ErrorCode::BadRequest);
    // Nothing was mailed, and the right password still works.
    assert!(srv.mail.drain(&a.email).is_empty());
    srv.login(&a).await;
}

// ---------------------------------------------------------------------------
// One-time codes
// ---------------------------------------------------------------------------

async fn wrong_codes_are_refused(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let a = TestAccount::new("wrongcode").await;
    srv.register(&a).await;
    let code = srv.verification_code(&a.email).await;
    for bad in [other_code(&code).as_str(), "12345x", "", "1234567"] {
        srv.api
            .verify_email(&a.email, bad)
            .await
            .expect_error(401, ErrorCode::InvalidCode);
    }
    srv.api
        .verify_email(&a.email, &code)
        .await
        .ok::<Accepted>(200);

    let t = srv.login_ticket(&a).await;
    let code = srv.login_code(&a.email).await;
    for bad in [other_code(&code).as_str(), "", "abcdef", " 12345"] {
        srv.api
            .verify_login(t.ticket.expose(), bad, None)
            .await
            .expect_error(401, ErrorCode::InvalidCode);
    }
    // Made-up tickets are refused as tickets.
    for ticket in ["svt_made-up", "", "not a ticket"] {
        srv.api
            .verify_login(ticket, &code, None)
            .await
            .expect_error(401, ErrorCode::InvalidTicket);
    }
    let resp: LoginResponse = srv
        .api
        .verify_login(t.ticket.expose(), &code, None)
        .await
        .ok(200);
    a.assert_unwraps(&resp).await;
}

async fn replayed_codes_are_refused(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let a = TestAccount::new("replay").await;
    srv.register(&a).await;
    let vcode = srv.verification_code(&a.email).await;
    srv.api
        .verify_email(&a.email, &vcode)
        .await
        .ok::<Accepted>(200);
    srv.api
        .verify_email(&a.email, &vcode)
        .await
        .expect_error(401, ErrorCode::InvalidCode);

    let t = srv.login_ticket(&a).await;
    let code = srv.login_code(&a.email).await;
    srv.api
        .verify_login(t.ticket.expose(), &code, None)
        .await
        .ok::<LoginResponse>(200);
    // The same ticket and code again: the ticket is spent.
    srv.api
        .verify_login(t.ticket.expose(), &code, None)
        .await
        .expect_error(401, ErrorCode::InvalidTicket);
    srv.api
        .resend(t.ticket.expose())
        .await
        .expect_error(401, ErrorCode::InvalidTicket);

    // Nor does the used code open the next ticket.
    let t2 = srv.login_ticket(&a).await;
    let code2 = srv.login_code(&a.email).await;
    if code2 != code {
        srv.api
            .verify_login(t2.ticket.expose(), &code, None)
            .await
            .expect_error(401, ErrorCode::InvalidCode);
    }
    srv.api
        .verify_login(t2.ticket.expose(), &code2, None)
        .await
        .ok::<LoginResponse>(200);
}

async fn codes_only_count_for_their_own_ticket(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let a = srv.new_account("tickets").await;
    let t1 = srv.login_ticket(&a).await;
    let c1 = srv.login_code(&a.email).await;
    let t2 = srv.login_ticket(&a).await;
    let c2 = srv.login_code(&a.email).await;
    assert_ne!(t1.ticket, t2.ticket);
    // (Two random codes are equal once in a million runs.)
    if c1 != c2 {
        srv.api
            .verify_login(t2.ticket.expose(), &c1, None)
            .await
            .expect_error(401, ErrorCode::InvalidCode);
        srv.api
            .verify_login(t1.ticket.expose(), &c2, None)
            .await
            .expect_error(401, ErrorCode::InvalidCode);
    }
    let r2: LoginResponse = srv
        .api
        .verify_login(t2.ticket.expose(), &c2, None)
        .await
        .ok(200);
    let r1: LoginResponse = srv
        .api
        .verify_login(t1.ticket.expose(), &c1, None)
        .await
        .ok(200);
    assert_ne!(r1.session_id, r2.session_id);

    // A verification code counts for its own account only.
    let x = TestAccount::new("verify-x").await;
    let y = TestAccount::new("verify-y").await;
    srv.register(&x).await;
    srv.register(&y).await;
    let cx = srv.verification_code(&x.email).await;
    let cy = srv.verification_code(&y.email).await;
    if cx != cy {
        srv.api
            .verify_email(&y.email, &cx)
            .await
            .expect_error(401, ErrorCode::InvalidCode);
    }
    srv.api
        .verify_email(&y.email, &cy)
        .await
        .ok::<Accepted>(200);
    srv.api
        .verify_email(&x.email, &cx)
        .await
        .ok::<Accepted>(200);
}

async fn five_wrong_codes_burn_the_ticket(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let a = srv.new_account("burn").await;
    let t = srv.login_ticket(&a).await;
    let code = srv.login_code(&a.email).await;
    let wrong = other_code(&code);
    for _ in 0..5 {
        srv.api
            .verify_login(t.ticket.expose(), &wrong, None)
            .await
            .expect_error(401, ErrorCode::InvalidCode);
    }
    // Burnt: even the right code no longer opens it, and no new code is sent.
    srv.api
        .verify_login(t.ticket.expose(), &code, None)
        .await
        .expect_error(401, ErrorCode::InvalidTicket);
    srv.api
        .resend(t.ticket.expose())
        .await
        .expect_error(401, ErrorCode::InvalidTicket);
    // A new login starts afresh.
    srv.login(&a).await;

    // The same for the e-mail verification code.
    let v = TestAccount::new("burn-verify").await;
    srv.register(&v).await;
    let vcode = srv.verification_code(&v.email).await;
    for _ in 0..5 {
        srv.api
            .verify_email(&v.email, &other_code(&vcode))
            .await
            .expect_error(401, ErrorCode::InvalidCode);
    }
    srv.api
        .verify_email(&v.email, &vcode)
        .await
        .expect_error(401, ErrorCode::InvalidCode);
    srv.api
        .login(&v.email, &v.auth_key())
        .await
        .expect_error(403, ErrorCode::EmailNotVerified);
    // Registering again mails a fresh code.
    srv.register_and_verify(&v).await;
    srv.login(&v).await;
}

async fn expired_codes_and_tickets_are_refused(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    // Verification code.
    let a = TestAccount::new("expiry").await;
    srv.register(&a).await;
    let vcode = srv.verification_code(&a.email).await;
    assert_eq!(srv.execute_sql(AGE_CHALLENGES, &a.email).await, 1);
    srv.api
        .verify_email(&a.email, &vcode)
        .await
        .expect_error(401, ErrorCode::InvalidCode);
    srv.register_and_verify(&a).await;

    // A login code expires while its ticket lives on: refused, and a resent
    // code works.
    let t = srv.login_ticket(&a).await;
    let code = srv.login_code(&a.email).await;
    assert_eq!(srv.execute_sql(AGE_CODES, &a.email).await, 1);
    srv.api
        .verify_login(t.ticket.expose(), &code, None)
        .await
        .expect_error(401, ErrorCode::InvalidCode);
    srv.api.resend(t.ticket.expose()).await.ok::<Accepted>(202);
    let fresh = srv.login_code(&a.email).await;
    if fresh != code {
        srv.api
            .verify_login(t.ticket.expose(), &code, None)
            .await
            .expect_error(401, ErrorCode::InvalidCode);
    }
    let resp: LoginResponse = srv
        .api
        .verify_login(t.ticket.expose(), &fresh, None)
        .await
        .ok(200);
    a.assert_unwraps(&resp).await;

    // An expired ticket is refused with its current code.
    let t = srv.login_ticket(&a).await;
    let code = srv.login_code(&a.email).await;
    assert_eq!(srv.execute_sql(AGE_CHALLENGES, &a.email).await, 1);
    srv.api
        .verify_login(t.ticket.expose(), &code, None)
        .await
        .expect_error(401, ErrorCode::InvalidTicket);
    srv.api
        .resend(t.ticket.expose())
        .await
        .expect_error(401, ErrorCode::InvalidTicket);
}

// ---------------------------------------------------------------------------
// Brute force
// ---------------------------------------------------------------------------

async fn per_ip_rate_limit_answers_429_with_retry_after(b: Backend) {
    let Some(srv) = TestServer::start_with(b, ServerOptions::tight(3)).await else {
        return;
    };
    let email = unique_email("ratelimit");
    for _ in 0..3 {
        srv.api.prelogin(&email).await.expect(200);
    }
    let r = srv.api.prelogin(&email).await;
    r.expect_error(429, ErrorCode::RateLimited);
    let wait = r.retry_after().expect("429 without Retry-After");
    assert!((1..=60).contains(&wait), "Retry-After: {wait}");
    // Per client IP, whatever the address.
    srv.api
        .prelogin(&unique_email("other"))
        .await
        .expect_error(429, ErrorCode::RateLimited);

    // Login has its own budget: three guesses, then 429 before any hashing.
    for _ in 0..3 {
        srv.api
            .login(&email, &[0; 32])
            .await
            .expect_error(401, ErrorCode::Unauthorized);
    }
    let r = srv.api.login(&email, &[0; 32]).await;
    r.expect_error(429, ErrorCode::RateLimited);
    assert!(r.retry_after().is_some_and(|s| s >= 1));

    // Operator endpoints are not limited.
    for _ in 0..5 {
        srv.api.get("/healthz", None).await.expect(200);
    }
}

async fn per_account_backoff_refuses_even_the_right_password(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let a = srv.new_account("backoff").await;
    let wrong = derive("a wrong guess", &a.kdf).await;
    // Five free failures.
    for _ in 0..5 {
        let r = srv.api.login(&a.email, wrong.auth.expose()).await;
        r.expect_error(401, ErrorCode::Unauthorized);
        assert_eq!(r.retry_after(), None);
    }
    // The sixth failure starts a back-off of 5 s (doubling with each
    // further failure, which `ratelimit`'s unit test pins).
    let r = srv.api.login(&a.email, wrong.auth.expose()).await;
    r.expect_error(401, ErrorCode::Unauthorized);
    let r = srv.api.login(&a.email, wrong.auth.expose()).await;
    r.expect_error(429, ErrorCode::RateLimited);
    let first = r.retry_after().expect("429 without Retry-After");
    assert!(
        (1..=5).contains(&first),
        "Retry-After {first} after 6 failures"
    );
    // Within the back-off even the right password is refused.
    let r = srv.api.login(&a.email, &a.auth_key()).await;
    r.expect_error(429, ErrorCode::RateLimited);
    let wait = r.retry_after().expect("429 without Retry-After");
    assert!((1..=5).contains(&wait), "Retry-After {wait}");
    assert!(srv.mail.drain(&a.email).is_empty(), "a code was mailed");

    // After it, the right password logs in and clears the back-off.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    srv.login(&a).await;
    let r = srv.api.login(&a.email, wrong.auth.expose()).await;
    r.expect_error(401, ErrorCode::Unauthorized);
}

// ---------------------------------------------------------------------------
// TOTP
// ---------------------------------------------------------------------------

/// Enrols and activates TOTP with the code of step `current - 1`; answers
/// the code generator and `current`.
async fn enable_totp(srv: &TestServer, s: &LoggedIn) -> (TotpCodes, u64) {
    let enrol: TotpEnrollment = srv.api.totp_enroll(&s.access).await.ok(200);
    assert!(
        enrol
            .otpauth_uri
            .expose()
            .starts_with("otpauth://totp/SecureVault:"),
        "{}",
        enrol.otpauth_uri.expose()
    );
    assert!(enrol.otpauth_uri.expose().contains(enrol.secret.expose()));
    let info: AccountInfo = srv.api.account(&s.access).await.ok(200);
    assert!(!info.totp_enabled, "TOTP on before activation");
    let codes = TotpCodes::from_base32(enrol.secret.expose());
    let now = TotpCodes::settle(8).await;
    let taken: Vec<String> = (now - 1..=now + 1).map(|s| codes.at_step(s)).collect();
    srv.api
        .totp_activate(&s.access, &code_not_in(&taken))
        .await
        .expect_error(401, ErrorCode::InvalidCode);
    srv.api
        .totp_activate(&s.access, &codes.at_step(now - 1))
        .await
        .expect(204);
    let info: AccountInfo = srv.api.account(&s.access).await.ok(200);
    assert!(info.totp_enabled);
    (codes, now)
}

async fn totp_enrol_activate_login_and_replay(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let a = srv.new_account("totp").await;
    let s = srv.login(&a).await;
    let (codes, now) = enable_totp(&srv, &s).await;
    srv.api
        .totp_enroll(&s.access)
        .await
        .expect_error(409, ErrorCode::Conflict);

    // Login now asks for a TOTP code and mails nothing.
    let t = srv.login_ticket(&a).await;
    assert_eq!(t.second_factor, SecondFactor::Totp);
    // The activation code was used: refused.
    srv.api
        .verify_login(t.ticket.expose(), &codes.at_step(now - 1), None)
        .await
        .expect_error(401, ErrorCode::InvalidCode);
    // A fresh one is accepted once...
    let resp: LoginResponse = srv
        .api
        .verify_login(t.ticket.expose(), &codes.at_step(now), None)
        .await
        .ok(200);
    assert!(resp.account.totp_enabled);
    a.assert_unwraps(&resp).await;
    // ...and refused when replayed on another ticket.
    let t2 = srv.login_ticket(&a).await;
    srv.api
        .verify_login(t2.ticket.expose(), &codes.at_step(now), None)
        .await
        .expect_error(401, ErrorCode::InvalidCode);
    assert!(
        srv.mail
            .drain(&a.email)
            .iter()
            .all(|m| m.code("login").is_none()),
        "a login code was mailed to a TOTP account without asking"
    );
}

async fn totp_email_fallback_and_disable(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let a = srv.new_account("totp-fallback").await;
    let s = srv.login(&a).await;
    let (codes, now) = enable_totp(&srv, &s).await;

    // The e-mail fallback: ask for a code, which then works.
    let t = srv.login_ticket(&a).await;
    assert_eq!(t.second_factor, SecondFactor::Totp);
    srv.api.resend(t.ticket.expose()).await.ok::<Accepted>(202);
    let again = srv.api.resend(t.ticket.expose()).await;
    again.expect_error(429, ErrorCode::RateLimited);
    assert!(again.retry_after().is_some_and(|s| (1..=60).contains(&s)));
    let code = srv.login_code(&a.email).await;
    let s2: LoggedIn = srv
        .api
        .verify_login(t.ticket.expose(), &code, None)
        .await
        .ok::<LoginResponse>(200)
        .into();

    // Disabling needs a valid, unused code.
    let taken: Vec<String> = (now - 1..=now + 1).map(|s| codes.at_step(s)).collect();
    srv.api
        .totp_disable(&s2.access, &code_not_in(&taken))
        .await
        .expect_error(401, ErrorCode::InvalidCode);
    srv.api
        .totp_disable(&s2.access, &codes.at_step(now - 1))
        .await
        .expect_error(401, ErrorCode::InvalidCode);
    let info: AccountInfo = srv.api.account(&s2.access).await.ok(200);
    assert!(info.totp_enabled);
    srv.api
        .totp_disable(&s2.access, &codes.at_step(now))
        .await
        .expect(204);
    let info: AccountInfo = srv.api.account(&s2.access).await.ok(200);
    assert!(!info.totp_enabled);
    srv.api
        .totp_disable(&s2.access, &codes.at_step(now + 1))
        .await
        .expect_error(409, ErrorCode::Conflict);
    // Back to e-mailed codes.
    srv.login(&a).await;
}

// ---------------------------------------------------------------------------
// Tokens and sessions
// ---------------------------------------------------------------------------

async fn forged_and_invalid_access_tokens_are_refused(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let a = srv.new_account("jwt").await;
    let s = srv.login(&a).await;
    let good = forge::claims(&s.access);
    let server_key = forge::server_jwt_key(JWT_SECRET.as_bytes());

    // The control: the same claims signed here with the server's key pass,
    // so each refusal below is about the one thing that changed.
    srv.api
        .account(&forge::sign_as_server(&good))
        .await
        .ok::<AccountInfo>(200);

    let now = unix_now();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        f(&mut c);
        forge::sign_as_server(&c)
    };
    let parts: Vec<&str> = s.access.split('.').collect();
    let mut tampered = good.clone();
    tampered["sid"] = json!("0123456789abcdef0123456789abcdef");
    let tampered_payload = data_encoding::BASE64URL_NOPAD.encode(tampered.to_string().as_bytes());
    let none_header = data_encoding::BASE64URL_NOPAD.encode(br#"{"alg":"none","typ":"JWT"}"#);

    let cases: Vec<(&str, String)> = vec![
        ("alg=none", forge::unsigned(&good)),
        (
            "alg=none keeping the signature",
            format!("{none_header}.{}.{}", parts[1], parts[2]),
        ),
        (
            "signed with another key",
            forge::sign(
                Algorithm::HS256,
                &good,
                &forge::server_jwt_key(b"another server's secret, also 40 bytes!!"),
            ),
        ),
        (
            "signed with the raw secret instead of the derived key",
            forge::sign(Algorithm::HS256, &good, JWT_SECRET.as_bytes()),
        ),
        (
            "HS512 with the right key",
            forge::sign(Algorithm::HS512, &good, &server_key),
        ),
        (
            "payload changed under the original signature",
            format!("{}.{tampered_payload}.{}", parts[0], parts[2]),
        ),
        (
            "expired",
            with(&|c| {
                c["iat"] = json!(now - 1000);
                c["exp"] = json!(now - 100);
            }),
        ),
        (
            "wrong audience",
            with(&|c| c["aud"] = json!("someone-else")),
        ),
        (
            "no audience",
            with(&|c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
        ),
        (
            "wrong issuer",
            with(&|c| c["iss"] = json!("https://evil.example")),
        ),
        (
            "no issuer",
            with(&|c| {
                c.as_object_mut().unwrap().remove("iss");
            }),
        ),
        (
            "no expiry",
            with(&|c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
        ),
        ("typ refresh", with(&|c| c["typ"] = json!("refresh"))),
        (
            "another account's id with this session",
            with(&|c| {
                let sub: i64 = c["sub"].as_str().unwrap().parse().unwrap();
                c["sub"] = json!((sub + 1).to_string());
            }),
        ),
        (
            "an unknown session",
            with(&|c| c["sid"] = json!("0123456789abcdef0123456789abcdef")),
        ),
        ("garbage", "not.a.jwt".to_owned()),
        ("empty", String::new()),
    ];
    for (what, token) in cases {
        let r = srv.api.account(&token).await;
        assert_eq!(r.status, 401, "{what}: {} {}", r.status, r.text());
        r.expect_error(401, ErrorCode::Unauthorized);
    }

    // No token, or another scheme.
    srv.api
        .get(paths::ACCOUNT, None)
        .await
        .expect_error(401, ErrorCode::Unauthorized);
    let basic = reqwest::Client::new()
        .get(format!("{}{}", srv.url, paths::ACCOUNT))
        .header("Authorization", format!("Basic {}", s.access))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status().as_u16(), 401);

    // And the real token still works.
    srv.api.account(&s.access).await.ok::<AccountInfo>(200);
}

async fn refresh_token_is_not_an_access_token(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let a = srv.new_account("refresh-as-access").await;
    let s = srv.login(&a).await;
    srv.api
        .account(&s.refresh)
        .await
        .expect_error(401, ErrorCode::Unauthorized);
    srv.api
        .logout(&s.refresh)
        .await
        .expect_error(401, ErrorCode::Unauthorized);
    // Nor is an access token a refresh token.
    srv.api
        .refresh(&s.access)
        .await
        .expect_error(401, ErrorCode::Unauthorized);
    // Both still work in their own place.
    srv.api.account(&s.access).await.ok::<AccountInfo>(200);
    let t: Tokens = srv.api.refresh(&s.refresh).await.ok(200);
    srv.api
        .account(t.access_token.expose())
        .await
        .ok::<AccountInfo>(200);
}

async fn refresh_rotation_and_reuse_detection(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let a = srv.new_account("rotation").await;
    let bystander = srv.login(&a).await;
    let s = srv.login(&a).await;

    let t1: Tokens = srv.api.refresh(&s.refresh).await.ok(200);
    assert_ne!(t1.refresh_token.expose(), s.refresh);
    assert_eq!(
        forge::claims(t1.access_token.expose())["sid"],
        json!(s.session_id)
    );
    srv.api
        .account(t1.access_token.expose())
        .await
        .ok::<AccountInfo>(200);
    // The new refresh token works.
    let t2: Tokens = srv.api.refresh(t1.refresh_token.expose()).await.ok(200);
    assert_ne!(t2.refresh_token, t1.refresh_token);
    srv.api
        .account(t2.access_token.expose())
        .await
        .ok::<AccountInfo>(200);

    // The first, spent refresh token again: refused, and the whole session
    // is revoked, newest tokens included.
    srv.api
        .refresh(&s.refresh)
        .await
        .expect_error(401, ErrorCode::Unauthorized);
    srv.api
        .account(t2.access_token.expose())
        .await
        .expect_error(401, ErrorCode::Unauthorized);
    srv.api
        .refresh(t2.refresh_token.expose())
        .await
        .expect_error(401, ErrorCode::Unauthorized);
    srv.api
        .account(&s.access)
        .await
        .expect_error(401, ErrorCode::Unauthorized);

    // The account's other session is untouched, and it sees the event.
    srv.api
        .account(&bystander.access)
        .await
        .ok::<AccountInfo>(200);
    let events: Vec<AuditEvent> = srv.api.audit(&bystander.access).await.ok(200);
    assert!(
        events
            .iter()
            .any(|e| e.event == "session.refresh_reuse" && e.outcome == "failure"),
        "{events:?}"
    );
}

async fn token_is_refused_after_logout(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let a = srv.new_account("logout").await;
    let s = srv.login(&a).await;
    let other = srv.login(&a).await;
    srv.api.logout(&s.access).await.expect(204);
    srv.api
        .account(&s.access)
        .await
        .expect_error(401, ErrorCode::Unauthorized);
    srv.api
        .refresh(&s.refresh)
        .await
        .expect_error(401, ErrorCode::Unauthorized);
    srv.api
        .logout(&s.access)
        .await
        .expect_error(401, ErrorCode::Unauthorized);
    // Only that session ended.
    srv.api.account(&other.access).await.ok::<AccountInfo>(200);
}

async fn password_change_revokes_other_sessions(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let a = srv.new_account("passwd").await;
    let current = srv.login_as(&a, Some("current")).await;
    let other = srv.login_as(&a, Some("other")).await;
    let (a2, req) = a.with_new_password("an entirely new passphrase").await;

    // The wrong current password changes nothing.
    let mut bad = req.clone();
    bad.current_auth_key = Base64(vec![9; 32]);
    srv.api
        .change_password(&current.access, &bad)
        .await
        .expect_error(403, ErrorCode::Forbidden);
    // Parameters below the floor are refused.
    let mut weak = req.clone();
    weak.new_kdf.memory_kib = 1024;
    srv.api
        .change_password(&current.access, &weak)
        .await
        .expect_error(400, ErrorCode::BadRequest);
    srv.api.account(&other.access).await.ok::<AccountInfo>(200);

    srv.api
        .change_password(&current.access, &req)
        .await
        .expect(204);
    // This session goes on; every other one has ended.
    srv.api
        .account(&current.access)
        .await
        .ok::<AccountInfo>(200);
    srv.api
        .account(&other.access)
        .await
        .expect_error(401, ErrorCode::Unauthorized);
    srv.api
        .refresh(&other.refresh)
        .await
        .expect_error(401, ErrorCode::Unauthorized);
    let list: Vec<SessionInfo> = srv.api.sessions(&current.access).await.ok(200);
    assert_eq!(
        list.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        [current.session_id.as_str()]
    );
    let t: Tokens = srv.api.refresh(&current.refresh).await.ok(200);
    srv.api
        .account(t.access_token.expose())
        .await
        .ok::<AccountInfo>(200);

    // The new password logs in (pre-login answers the new parameters) and
    // unwraps the same vault key; the old one is refused.
    srv.login(&a2).await;
    srv.api
        .login(&a.email, &a.auth_key())
        .await
        .expect_error(401, ErrorCode::Unauthorized);
}

async fn sessions_list_revoke_one_revoke_all(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let a = srv.new_account("sessions").await;
    let s1 = srv.login_as(&a, Some("laptop")).await;
    let s2 = srv.login_as(&a, Some("phone")).await;
    let s3 = srv.login_as(&a, Some("tablet")).await;

    let list: Vec<SessionInfo> = srv.api.sessions(&s1.access).await.ok(200);
    let ids: BTreeSet<&str> = list.iter().map(|s| s.id.as_str()).collect();
    let want: BTreeSet<&str> = [&s1, &s2, &s3]
        .iter()
        .map(|s| s.session_id.as_str())
        .collect();
    assert_eq!(ids, want);
    for s in &list {
        assert_eq!(s.current, s.id == s1.session_id, "{s:?}");
        assert_eq!(s.ip.as_deref(), Some("127.0.0.1"));
    }
    let devices: BTreeSet<Option<&str>> = list.iter().map(|s| s.device.as_deref()).collect();
    assert_eq!(
        devices,
        [Some("laptop"), Some("phone"), Some("tablet")]
            .into_iter()
            .collect()
    );

    // Revoke one.
    srv.api
        .revoke_session(&s1.access, &s2.session_id)
        .await
        .expect(204);
    srv.api
        .account(&s2.access)
        .await
        .expect_error(401, ErrorCode::Unauthorized);
    srv.api
        .refresh(&s2.refresh)
        .await
        .expect_error(401, ErrorCode::Unauthorized);
    let list: Vec<SessionInfo> = srv.api.sessions(&s1.access).await.ok(200);
    assert_eq!(list.len(), 2);
    srv.api
        .revoke_session(&s1.access, &s2.session_id)
        .await
        .expect_error(404, ErrorCode::NotFound);
    srv.api
        .revoke_session(&s1.access, "no-such-session")
        .await
        .expect_error(404, ErrorCode::NotFound);

    // Another account can neither see nor end them.
    let b_acct = srv.new_account("intruder").await;
    let bs = srv.login(&b_acct).await;
    srv.api
        .revoke_session(&bs.access, &s3.session_id)
        .await
        .expect_error(404, ErrorCode::NotFound);
    let theirs: Vec<SessionInfo> = srv.api.sessions(&bs.access).await.ok(200);
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].id, bs.session_id);
    srv.api.account(&s3.access).await.ok::<AccountInfo>(200);

    // Revoke all: every session of the account, the caller's included.
    srv.api.revoke_all(&s3.access).await.expect(204);
    for s in [&s1, &s3] {
        srv.api
            .account(&s.access)
            .await
            .expect_error(401, ErrorCode::Unauthorized);
        srv.api
            .refresh(&s.refresh)
            .await
            .expect_error(401, ErrorCode::Unauthorized);
    }
    srv.api.account(&bs.access).await.ok::<AccountInfo>(200);
}

// ---------------------------------------------------------------------------
// Enumeration, hostile input, audit, operations
// ---------------------------------------------------------------------------

async fn no_user_enumeration(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let a = srv.new_account("enum").await;

    // Registration: an existing address and a new one answer alike.
    let imposter = TestAccount::with_email(&a.email).await;
    let existing = srv.api.register(&imposter.register_request()).await;
    let fresh = srv
        .api
        .register(&TestAccount::new("enum-new").await.register_request())
        .await;
    assert_eq!(existing.status, 202);
    assert_eq!(
        (existing.status, existing.text()),
        (fresh.status, fresh.text())
    );
    // The owner gets a notice, not a code; the account is unchanged.
    let notice = srv
        .mail
        .wait_for(&a.email, "already-registered notice", |m| {
            m.subject.contains("already has an account")
        })
        .await;
    assert!(
        !notice.body.chars().any(|c| c.is_ascii_digit()),
        "{}",
        notice.body
    );

    // Pre-login: same status and shape; an unknown address gets the default
    // parameters, the same on every call.
    let unknown = unique_email("enum-nobody");
    let known = srv.api.prelogin(&a.email).await;
    let fake = srv.api.prelogin(&unknown).await;
    assert_eq!((known.status, fake.status), (200, 200));
    assert_eq!(shape(&known.value()), shape(&fake.value()));
    assert_eq!(known.content_type(), fake.content_type());
    let f1: PreloginResponse = fake.json();
    let f2: PreloginResponse = srv.api.prelogin(&unknown).await.ok(200);
    let f3: PreloginResponse = srv
        .api
        .prelogin(&unknown.to_ascii_uppercase())
        .await
        .ok(200);
    assert_eq!(f1, f2);
    assert_eq!(f1, f3);
    assert_eq!(
        (f1.kdf.memory_kib, f1.kdf.iterations, f1.kdf.parallelism),
        (DEFAULT_MEMORY_KIB, DEFAULT_ITERATIONS, DEFAULT_PARALLELISM)
    );
    let other: PreloginResponse = srv.api.prelogin(&unique_email("enum-nobody")).await.ok(200);
    assert_ne!(
        f1.kdf.salt, other.kdf.salt,
        "every unknown address has the same salt"
    );
    assert_ne!(f1.kdf.salt, [0; 16]);

    // Login: a wrong password and an unknown address answer alike.
    let wrong = derive("wrong", &a.kdf).await;
    let l1 = srv.api.login(&a.email, wrong.auth.expose()).await;
    let l2 = srv.api.login(&unknown, wrong.auth.expose()).await;
    assert_eq!(l1.status, 401);
    assert_eq!((l1.status, l1.text()), (l2.status, l2.text()));

    // E-mail verification: likewise.
    let v1 = srv.api.verify_email(&a.email, "123456").await;
    let v2 = srv.api.verify_email(&unknown, "123456").await;
    assert_eq!(v1.status, 401);
    assert_eq!((v1.status, v1.text()), (v2.status, v2.text()));

    // The imposter's registration changed nothing.
    srv.login(&a).await;
    srv.api
        .login(&a.email, &imposter.auth_key())
        .await
        .expect_error(401, ErrorCode::Unauthorized);
}

async fn oversized_body_is_413_with_the_json_error(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let big = json!({
        "email": format!("{}@e2e.test", "x".repeat(100_000)),
        "auth_key": "AAAA",
    });
    srv.api
        .post(paths::LOGIN, &big, None)
        .await
        .expect_error(413, ErrorCode::PayloadTooLarge);
    // Not even JSON: still the JSON answer.
    srv.api
        .send(
            Method::POST,
            paths::REGISTER,
            Some((vec![b'{'; 200_000], "application/json")),
            None,
        )
        .await
        .expect_error(413, ErrorCode::PayloadTooLarge);
    // An authenticated endpoint too.
    let a = srv.new_account("big").await;
    let s = srv.login(&a).await;
    srv.api
        .post(paths::PASSWORD, &big, Some(&s.access))
        .await
        .expect_error(413, ErrorCode::PayloadTooLarge);
    // A body just under the limit is read (and refused for what it says).
    let almost = json!({ "email": format!("{}@e2e.test", "y".repeat(60_000)) });
    srv.api
        .post(paths::PRELOGIN, &almost, None)
        .await
        .expect_error(400, ErrorCode::BadRequest);
    srv.api.get("/healthz", None).await.expect(200);
    srv.api.account(&s.access).await.ok::<AccountInfo>(200);
}

const NASTY: &[&str] = &[
    "'; DROP TABLE accounts; --",
    "' OR '1'='1",
    "\" OR \"\"=\"",
    "'--",
    "\\",
    "\\'; DELETE FROM sessions; --",
    "Robert'); DROP TABLE challenges;--",
    "%_%",
    "`id`",
    "0x27",
    "1; SELECT SLEEP(5)",
    "\u{0}",
    "🔥'\u{202e}",
];

async fn sql_metacharacters_in_every_field(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let a = srv.new_account("sqli").await;
    let s = srv.login(&a).await;
    let kdf = serde_json::to_value(&a.kdf).unwrap();
    let key = Base64(a.auth_key()).encode();
    let wrapped = Base64(vec![0; common::crypto::keywrap::WRAPPED_KEY_LEN]).encode();

    let mut answers = Vec::new();
    for n in NASTY {
        let as_email = format!("{n}@e2e.test");
        let at_n = format!("x@{n}");
        for email in [n.to_string(), as_email.clone(), at_n] {
            let reg = json!({
                "email": email, "kdf": kdf, "auth_key": key,
                "wrapped_vault_key": wrapped, "recovery_wrapped_vault_key": wrapped,
            });
            answers.push(srv.api.post(paths::REGISTER, &reg, None).await);
            answers.push(srv.api.verify_email(&email, n).await);
            answers.push(srv.api.prelogin(&email).await);
            answers.push(srv.api.login(&email, &a.auth_key()).await);
        }
        // Binary fields, the code, the KDF salt.
        let reg = json!({
            "email": unique_email("sqli-fields"), "kdf": kdf, "auth_key": n,
            "wrapped_vault_key": n, "recovery_wrapped_vault_key": n,
        });
        answers.push(srv.api.post(paths::REGISTER, &reg, None).await);
        let mut bad_kdf = kdf.clone();
        bad_kdf["salt"] = json!(n);
        let reg = json!({
            "email": unique_email("sqli-salt"), "kdf": bad_kdf, "auth_key": key,
            "wrapped_vault_key": wrapped, "recovery_wrapped_vault_key": wrapped,
        });
        answers.push(srv.api.post(paths::REGISTER, &reg, None).await);
        answers.push(srv.api.verify_email(&a.email, n).await);
        answers.push(
            srv.api
                .post(
                    paths::LOGIN,
                    &json!({"email": a.email, "auth_key": n}),
                    None,
                )
                .await,
        );
        answers.push(srv.api.resend(n).await);
        answers.push(srv.api.verify_login(n, n, Some(n)).await);
        answers.push(srv.api.refresh(n).await);
        // Authenticated endpoints.
        answers.push(srv.api.revoke_session(&s.access, &percent_encode(n)).await);
        answers.push(srv.api.totp_activate(&s.access, n).await);
        answers.push(srv.api.totp_disable(&s.access, n).await);
        let pw = json!({
            "current_auth_key": n, "new_kdf": kdf, "new_auth_key": n, "new_wrapped_vault_key": n,
        });
        answers.push(srv.api.post(paths::PASSWORD, &pw, Some(&s.access)).await);
        answers.push(
            srv.api
                .get(
                    &format!("{}?before={}", paths::AUDIT, percent_encode(n)),
                    Some(&s.access),
                )
                .await,
        );
        if !n.chars().any(char::is_control) && n.is_ascii() {
            answers.push(srv.api.account(n).await);
        }
    }
    for r in &answers {
        assert!(
            r.status < 500,
            "{} answered {}: {}",
            r.request,
            r.status,
            r.text()
        );
        // Refusals have the JSON error shape (except the query-string one,
        // which is bad_query_answers_the_json_error_shape's subject).
        if r.status >= 400 && !r.request.starts_with("GET /v1/audit") {
            r.error();
        }
    }

    // Metacharacters that are valid in an address work end to end.
    let odd =
        TestAccount::with_email(&format!("o'neil+%_-{}@e2e.test", tests::random_hex(6))).await;
    srv.register_and_verify(&odd).await;
    let device = "'; DROP TABLE sessions; -- \"\\";
    let os = srv.login_as(&odd, Some(device)).await;
    assert_eq!(os.response.account.email, odd.email);
    let list: Vec<SessionInfo> = srv.api.sessions(&os.access).await.ok(200);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].device.as_deref(), Some(device));

    // The server and its tables are all still there.
    srv.api.get("/readyz", None).await.expect(200);
    assert_eq!(
        srv.count_sql("SELECT COUNT(*) FROM accounts WHERE email = ?", &a.email)
            .await,
        1
    );
    srv.api.account(&s.access).await.ok::<AccountInfo>(200);
    srv.login(&a).await;
}

async fn audit_log_lists_the_events_without_secrets(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let a = TestAccount::new("audit").await;
    srv.register(&a).await;
    let vcode = srv.verification_code(&a.email).await;
    srv.api
        .verify_email(&a.email, &vcode)
        .await
        .ok::<Accepted>(200);
    let wrong = derive("wrong password", &a.kdf).await;
    srv.api
        .login(&a.email, wrong.auth.expose())
        .await
        .expect_error(401, ErrorCode::Unauthorized);

    let mut secrets = vec![
        vcode,
        a.password.clone(),
        Base64(a.auth_key()).encode(),
        data_encoding::HEXLOWER.encode(&a.auth_key()),
        data_encoding::BASE64.encode(&a.auth_key()),
        Base64(wrong.auth.expose().to_vec()).encode(),
        data_encoding::HEXLOWER.encode(wrong.auth.expose()),
    ];
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let t = srv.login_ticket(&a).await;
        let code = srv.login_code(&a.email).await;
        let s: LoggedIn = srv
            .api
            .verify_login(t.ticket.expose(), &code, None)
            .await
            .ok::<LoginResponse>(200)
            .into();
        secrets.extend([
            t.ticket.expose().to_owned(),
            code,
            s.access.clone(),
            s.refresh.clone(),
        ]);
        sessions.push(s);
    }
    srv.api.logout(&sessions[0].access).await.expect(204);

    let resp = srv.api.audit(&sessions[1].access).await;
    let events: Vec<AuditEvent> = resp.ok(200);
    let has = |event: &str, outcome: &str| {
        events
            .iter()
            .any(|e| e.event == event && e.outcome == outcome)
    };
    for (event, outcome) in [
        ("account.register", "success"),
        ("account.verify_email", "success"),
        ("login.password", "failure"),
        ("login.password", "success"),
        ("login.code", "success"),
        ("session.logout", "success"),
    ] {
        assert!(has(event, outcome), "no {event} {outcome} in {events:#?}");
    }
    let logout = events.iter().find(|e| e.event == "session.logout").unwrap();
    assert!(
        logout
            .detail
            .as_deref()
            .is_some_and(|d| d.contains(&sessions[0].session_id)),
        "{logout:?}"
    );
    // Newest first, with the client's address and a plausible time.
    assert!(events.windows(2).all(|w| w[0].id > w[1].id), "{events:#?}");
    let now = unix_now();
    for e in &events {
        assert_eq!(e.ip.as_deref(), Some("127.0.0.1"), "{e:?}");
        assert!((now - 300..=now + 5).contains(&e.at), "{e:?}");
    }
    // Paging: `limit`, then `before` the last id seen.
    let page: Vec<AuditEvent> = srv
        .api
        .get(
            &format!("{}?limit=2", paths::AUDIT),
            Some(&sessions[1].access),
        )
        .await
        .ok(200);
    assert_eq!(page, events[..2]);
    let next: Vec<AuditEvent> = srv
        .api
        .get(
            &format!("{}?limit=2&before={}", paths::AUDIT, page[1].id),
            Some(&sessions[1].access),
        )
        .await
        .ok(200);
    assert_eq!(next, events[2..4]);
    let text = resp.text();
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "the audit log contains a secret: {text}"
        );
    }

    // Another account sees only its own events.
    let other = srv.new_account("audit-other").await;
    let os = srv.login(&other).await;
    let theirs: Vec<AuditEvent> = srv.api.audit(&os.access).await.ok(200);
    assert!(!theirs.is_empty());
    assert!(
        theirs
            .iter()
            .all(|e| events.iter().all(|mine| mine.id != e.id)),
        "{theirs:#?}"
    );
}

async fn operator_endpoints_answer(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let h = srv.api.get("/healthz", None).await;
    h.expect(200);
    assert_eq!(h.text().trim(), "ok");
    srv.api.get("/readyz", None).await.expect(200);
    // Some traffic, then the metrics show it.
    srv.api
        .login(&unique_email("metrics"), &[0; 32])
        .await
        .expect(401);
    srv.api.prelogin(&unique_email("metrics")).await.expect(200);
    let m = srv.api.get("/metrics", None).await;
    m.expect(200);
    assert!(
        m.content_type().starts_with("text/plain"),
        "{}",
        m.content_type()
    );
    let text = m.text();
    for metric in ["vault_http_requests_total", "vault_auth_events_total"] {
        assert!(text.contains(metric), "no {metric} in:\n{text}");
    }
}

async fn errors_have_the_json_shape(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    srv.api
        .get("/v1/no-such-thing", None)
        .await
        .expect_error(404, ErrorCode::NotFound);
    let post_raw = |body: &'static [u8], ct: &'static str| {
        srv.api
            .send(Method::POST, paths::LOGIN, Some((body.to_vec(), ct)), None)
    };
    post_raw(b"not json", "application/json")
        .await
        .expect_error(400, ErrorCode::BadRequest);
    post_raw(b"{\"email\": \"a@b\"}", "application/json")
        .await
        .expect_error(400, ErrorCode::BadRequest);
    post_raw(b"{\"email\": 5, \"auth_key\": []}", "application/json")
        .await
        .expect_error(400, ErrorCode::BadRequest);
    post_raw(b"{}", "text/plain")
        .await
        .expect_error(400, ErrorCode::BadRequest);
    srv.api
        .post_empty(paths::LOGIN, None)
        .await
        .expect_error(400, ErrorCode::BadRequest);
    srv.api
        .get(paths::ACCOUNT, None)
        .await
        .expect_error(401, ErrorCode::Unauthorized);
}

async fn wrong_method_answers_the_json_error_shape(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let r = srv.api.get(paths::LOGIN, None).await;
    assert_eq!(r.status, 405, "{}", r.text());
    assert!(
        serde_json::from_slice::<common::api::ErrorBody>(&r.body).is_ok(),
        "GET {} answered 405 without the JSON error shape: {:?} (content-type {:?})",
        paths::LOGIN,
        r.text(),
        r.content_type()
    );
}

async fn bad_query_answers_the_json_error_shape(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let a = srv.new_account("query").await;
    let s = srv.login(&a).await;
    let r = srv
        .api
        .get(&format!("{}?limit=lots", paths::AUDIT), Some(&s.access))
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        serde_json::from_slice::<common::api::ErrorBody>(&r.body).is_ok(),
        "GET /v1/audit?limit=lots answered 400 without the JSON error shape: {:?} \
         (content-type {:?})",
        r.text(),
        r.content_type()
    );
}

async fn login_spans_two_server_instances(b: Backend) {
    // Instances of one deployment sit behind one public URL, which is the
    // issuer of every access token they sign.
    let options = ServerOptions {
        env: vec![(
            "VAULT_PUBLIC_URL".into(),
            "https://vault.example.test".into(),
        )],
        ..ServerOptions::default()
    };
    let Some(one) = TestServer::start_with(b, options).await else {
        return;
    };
    let two = one.start_sibling().await;
    assert_ne!(one.url, two.url);
    let a = TestAccount::new("instances").await;
    one.register(&a).await;
    let vcode = one.verification_code(&a.email).await;
    two.api
        .verify_email(&a.email, &vcode)
        .await
        .ok::<Accepted>(200);
    // Step one on one instance, step two on the other.
    let t = one.login_ticket(&a).await;
    let code = one.login_code(&a.email).await;
    let s: LoggedIn = two
        .api
        .verify_login(t.ticket.expose(), &code, None)
        .await
        .ok::<LoginResponse>(200)
        .into();
    one.api
        .verify_login(t.ticket.expose(), &code, None)
        .await
        .expect_error(401, ErrorCode::InvalidTicket);
    one.api.account(&s.access).await.ok::<AccountInfo>(200);
    // Rotation and reuse detection across instances.
    let t1: Tokens = one.api.refresh(&s.refresh).await.ok(200);
    two.api
        .refresh(&s.refresh)
        .await
        .expect_error(401, ErrorCode::Unauthorized);
    one.api
        .account(t1.access_token.expose())
        .await
        .expect_error(401, ErrorCode::Unauthorized);
}

// ---------------------------------------------------------------------------
// Concurrency: single use and limits must hold for parallel requests too
// ---------------------------------------------------------------------------

async fn concurrent_registrations_of_one_address_all_succeed(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    // Parallel registrations of one new address (a double-clicked button, a
    // retrying client): all accepted, one account, and a later registration
    // still verifies.
    let a = TestAccount::new("race").await;
    let req = a.register_request();
    let answers = at_once(6, |_| {
        let (api, req) = (srv.api.clone(), req.clone());
        async move { api.register(&req).await }
    })
    .await;
    assert_eq!(count_status(&answers, 202), 6, "{}", summary(&answers));
    assert_eq!(
        srv.count_sql("SELECT COUNT(*) FROM accounts WHERE email = ?", &a.email)
            .await,
        1
    );
    srv.mail.drain(&a.email);
    srv.register_and_verify(&a).await;
    srv.login(&a).await;
}

async fn concurrent_requests_use_codes_and_tokens_once(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let a = srv.new_account("once").await;

    // One ticket and its code sent ten times at once: one session.
    let t = srv.login_ticket(&a).await;
    let code = srv.login_code(&a.email).await;
    let answers = at_once(10, |_| {
        let (api, ticket, code) = (srv.api.clone(), t.ticket.clone(), code.clone());
        async move { api.verify_login(ticket.expose(), &code, None).await }
    })
    .await;
    assert_eq!(count_status(&answers, 200), 1, "{}", summary(&answers));
    assert_eq!(count_status(&answers, 401), 9, "{}", summary(&answers));

    // One refresh token presented ten times at once: one rotation.
    let s: LoggedIn = answers
        .iter()
        .find(|r| r.status == 200)
        .unwrap()
        .json::<LoginResponse>()
        .into();
    let answers = at_once(10, |_| {
        let (api, token) = (srv.api.clone(), s.refresh.clone());
        async move { api.refresh(&token).await }
    })
    .await;
    assert_eq!(count_status(&answers, 200), 1, "{}", summary(&answers));
    assert_eq!(count_status(&answers, 401), 9, "{}", summary(&answers));
}

async fn concurrent_wrong_codes_get_at_most_five_tries(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let a = srv.new_account("code-race").await;
    let t = srv.login_ticket(&a).await;
    let code = srv.login_code(&a.email).await;
    // Twenty different wrong codes at once: at most five may be checked
    // (answered invalid_code); the others must find the ticket burnt.
    let first: u32 = code.parse().unwrap();
    let answers = at_once(20, |i| {
        let api = srv.api.clone();
        let ticket = t.ticket.clone();
        let guess = format!("{:06}", (first + 1 + u32::try_from(i).unwrap()) % 1_000_000);
        async move { api.verify_login(ticket.expose(), &guess, None).await }
    })
    .await;
    assert_eq!(count_status(&answers, 401), 20, "{}", summary(&answers));
    let checked = answers
        .iter()
        .filter(|r| r.error().error.code == ErrorCode::InvalidCode)
        .count();
    assert!(
        checked <= 5,
        "{checked} wrong codes were checked against one ticket (at most 5 allowed)"
    );
    srv.api
        .verify_login(t.ticket.expose(), &code, None)
        .await
        .expect_error(401, ErrorCode::InvalidTicket);
}

/// Twenty wrong passwords for one account, all at once.
async fn wrong_password_burst(srv: &TestServer, a: &TestAccount) -> Vec<Resp> {
    let wrong = derive("a wrong guess", &a.kdf).await;
    let key = wrong.auth.expose().to_vec();
    at_once(20, |_| {
        let (api, email, key) = (srv.api.clone(), a.email.clone(), key.clone());
        async move { api.login(&email, &key).await }
    })
    .await
}

async fn concurrent_wrong_passwords_all_count_toward_the_backoff(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let a = srv.new_account("pw-race").await;
    let answers = wrong_password_burst(&srv, &a).await;
    let failures = count_status(&answers, 401);
    assert_eq!(
        failures + count_status(&answers, 429),
        20,
        "{}",
        summary(&answers)
    );
    // However many were checked, each counted: far past the five free
    // failures, the back-off is on, and even the right password waits.
    let r = srv.api.login(&a.email, &a.auth_key()).await;
    assert_eq!(
        r.status,
        429,
        "after {failures} wrong passwords at once the right one logged in at once: \
         failures were lost (the throttle update is not atomic): {}",
        r.text()
    );
    assert!(r.retry_after().is_some());
}

async fn concurrent_wrong_passwords_get_no_extra_guesses(b: Backend) {
    let Some(srv) = TestServer::start(b).await else {
        return;
    };
    let a = srv.new_account("pw-burst").await;
    let answers = wrong_password_burst(&srv, &a).await;
    let checked = count_status(&answers, 401);
    assert_eq!(
        checked + count_status(&answers, 429),
        20,
        "{}",
        summary(&answers)
    );
    // Sequentially, five free failures and a sixth that starts the back-off
    // are all an attacker gets before waiting; in parallel no more.
    assert!(
        checked <= 6,
        "{checked} of 20 parallel wrong passwords were checked (at most 6 expected)"
    );
}
