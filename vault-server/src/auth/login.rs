//! The two-step login, token refresh and logout.
//!
//! Step one checks the auth key (Argon2id, dummy hashing for unknown
//! addresses, per-account back-off) and opens a ticket; step two needs the
//! ticket and a 6-digit code (e-mailed, or TOTP for accounts that enrolled
//! it). Codes are single use, expire after 10 minutes, allow 5 wrong tries
//! per ticket and only count for their own ticket. A refresh token is used
//! once: presenting a spent one revokes the whole session.

use axum::extract::State;
use axum::http::StatusCode;
use common::api::{
    Accepted, AccountInfo, LoginRequest, LoginResponse, LoginTicket, RefreshRequest,
    ResendCodeRequest, SecondFactor, Tokens, VerifyLoginRequest,
};

use super::ratelimit::charge_attempt;
use super::register::send_or_log;
use super::secrets::HashPurpose;
use super::session::AuthSession;
use super::{
    CODE_TTL, MAX_CODE_ATTEMPTS, RESEND_INTERVAL, audit, auth_key_bytes, canonical_email,
    code_hash, codes, email_code_matches,
};
use crate::error::{ApiError, ApiResult};
use crate::http::client_ip::ClientIp;
use crate::http::json::ApiJson;
use crate::http::openapi::{
    BearerErrors, JsonBodyErrors, PayloadTooLarge, RateLimited, ServerErrors,
};
use crate::mail::code_mail;
use crate::state::{AppState, now};
use crate::store::{Account, Challenge, ChallengePurpose, NewSession, Rotation};

const WRONG_LOGIN: ApiError = ApiError::Unauthorized("wrong e-mail address or password");
const REFRESH_PREFIX: &str = "svr_";
const TICKET_PREFIX: &str = "svt_";

fn ticket_key(state: &AppState, ticket: &str) -> Vec<u8> {
    state
        .keys
        .keyed_hash(HashPurpose::Ticket, ticket.as_bytes())
}

fn refresh_hash(state: &AppState, token: &str) -> Vec<u8> {
    state
        .keys
        .keyed_hash(HashPurpose::Refresh, token.as_bytes())
}

/// The public view of an account.
pub fn account_info(a: &Account) -> AccountInfo {
    AccountInfo {
        id: a.id.0.to_string(),
        email: a.email.clone(),
        totp_enabled: a.totp_enabled,
        created_at: a.created_at,
    }
}

/// `POST /v1/auth/login`: e-mail and auth key → a ticket.
#[utoipa::path(
    post,
    path = common::api::paths::LOGIN,
    tag = "auth",
    summary = "Login step one: e-mail address and auth key give a ticket for the second factor",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "The ticket; a code was mailed unless TOTP is on", body = LoginTicket),
        (status = 400, description = "Invalid body, address or auth key (`bad_request`)", body = common::api::ErrorBody),
        (status = 401, description = "Wrong e-mail address or password (`unauthorized`)", body = common::api::ErrorBody),
        (status = 403, description = "The address is not verified yet (`email_not_verified`)", body = common::api::ErrorBody),
        PayloadTooLarge, RateLimited, ServerErrors,
    )
)]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<axum::Json<LoginTicket>> {
    let email = canonical_email(&req.email)?;
    let auth_key = auth_key_bytes(&req.auth_key)?;
    let t = now();
    let throttle_key = state
        .keys
        .keyed_hash(HashPurpose::Throttle, email.as_bytes());
    charge_attempt(&state, &throttle_key, t).await?;

    let account = state.store.account_by_email(&email).await?;
    let phc = account.as_ref().map(|a| a.credentials.auth_hash.clone());
    let known = account.as_ref().map(|a| a.id);
    let ok = super::password::verify_auth_key(phc, auth_key).await?;
    let Some(account) = account.filter(|_| ok) else {
        audit(&state, known, "login.password", ip, false, None).await;
        return Err(WRONG_LOGIN);
    };
    state.store.clear_throttle(&throttle_key).await?;
    if !account.verified {
        audit(
            &state,
            Some(account.id),
            "login.password",
            ip,
            false,
            Some("e-mail not verified".into()),
        )
        .await;
        return Err(ApiError::EmailNotVerified);
    }

    let ticket = codes::new_token(TICKET_PREFIX)?;
    let key = ticket_key(&state, &ticket);
    let second_factor = if account.totp_enabled {
        SecondFactor::Totp
    } else {
        SecondFactor::Email
    };
    let (code, code_hash_value) = match second_factor {
        SecondFactor::Email => {
            let code = codes::new_code()?;
            let h = code_hash(&state, &key, &code);
            (Some(code), h)
        }
        SecondFactor::Totp => (None, Vec::new()),
    };
    state
        .store
        .put_challenge(&Challenge {
            key,
            purpose: ChallengePurpose::Login,
            account: account.id,
            code_hash: code_hash_value,
            code_expires_at: t + CODE_TTL,
            expires_at: t + CODE_TTL,
            attempts: 0,
            sent_at: t,
            ip: Some(ip.to_string()),
        })
        .await?;
    if let Some(code) = code {
        send_or_log(&state, code_mail(&account.email, "login", &code)).await;
    }
    audit(&state, Some(account.id), "login.password", ip, true, None).await;
    Ok(axum::Json(LoginTicket {
        ticket: ticket.into(),
        second_factor,
        expires_in: u64::try_from(CODE_TTL).unwrap_or(600),
    }))
}

/// A live login challenge for `ticket`.
async fn live_ticket(state: &AppState, ticket: &str, t: i64) -> ApiResult<Challenge> {
    if !ticket.starts_with(TICKET_PREFIX) {
        return Err(ApiError::InvalidTicket);
    }
    match state.store.challenge(&ticket_key(state, ticket)).await? {
        Some(c)
            if c.purpose == ChallengePurpose::Login
                && c.expires_at > t
                && c.attempts < MAX_CODE_ATTEMPTS =>
        {
            Ok(c)
        }
        _ => Err(ApiError::InvalidTicket),
    }
}

/// `POST /v1/auth/login/resend`: a new e-mailed code (also the fallback for
/// TOTP accounts), at most one a minute.
#[utoipa::path(
    post,
    operation_id = "login_resend",
    path = common::api::paths::LOGIN_RESEND,
    tag = "auth",
    summary = "Mails a (new) code for a login ticket, at most one a minute",
    request_body = ResendCodeRequest,
    responses(
        (status = 202, description = "A code was mailed", body = Accepted),
        (status = 401, description = "Unknown, expired or used-up ticket (`invalid_ticket`)", body = common::api::ErrorBody),
        JsonBodyErrors, RateLimited, ServerErrors,
    )
)]
pub async fn resend(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<ResendCodeRequest>,
) -> ApiResult<(StatusCode, axum::Json<Accepted>)> {
    let t = now();
    let c = live_ticket(&state, req.ticket.expose(), t).await?;
    if !c.code_hash.is_empty() && c.sent_at + RESEND_INTERVAL > t {
        return Err(ApiError::RateLimited {
            retry_after: u64::try_from(c.sent_at + RESEND_INTERVAL - t).unwrap_or(1),
        });
    }
    let account = state
        .store
        .account_by_id(c.account)
        .await?
        .ok_or(ApiError::InvalidTicket)?;
    let code = codes::new_code()?;
    let h = code_hash(&state, &c.key, &code);
    if !state
        .store
        .renew_challenge_code(&c.key, &h, t + CODE_TTL, t)
        .await?
    {
        return Err(ApiError::InvalidTicket);
    }
    send_or_log(&state, code_mail(&account.email, "login", &code)).await;
    audit(
        &state,
        Some(account.id),
        "login.resend_code",
        ip,
        true,
        None,
    )
    .await;
    Ok((StatusCode::ACCEPTED, axum::Json(Accepted::default())))
}

/// Checks a TOTP code and burns its time step.
pub async fn totp_accepts(
    state: &AppState,
    account: &Account,
    secret: &[u8],
    code: &str,
) -> ApiResult<bool> {
    if !codes::is_code_shaped(code) {
        return Ok(false);
    }
    let now = u64::try_from(now()).unwrap_or(0);
    match super::totp::matching_step(secret, &account.email, code, now)? {
        Some(step) => Ok(state.store.advance_totp_step(account.id, step).await?),
        None => Ok(false),
    }
}

/// `POST /v1/auth/login/verify`: ticket and code → a session.
#[utoipa::path(
    post,
    operation_id = "login_verify",
    path = common::api::paths::LOGIN_VERIFY,
    tag = "auth",
    summary = "Login step two: ticket and code give a session",
    request_body = VerifyLoginRequest,
    responses(
        (status = 200, description = "The session: tokens, the wrapped vault key and the KDF parameters", body = LoginResponse),
        (status = 401, description = "Wrong, expired or used code (`invalid_code`), or an unknown, expired or used-up ticket (`invalid_ticket`)", body = common::api::ErrorBody),
        JsonBodyErrors, RateLimited, ServerErrors,
    )
)]
pub async fn verify(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<VerifyLoginRequest>,
) -> ApiResult<axum::Json<LoginResponse>> {
    let t = now();
    let c = live_ticket(&state, req.ticket.expose(), t).await?;
    let account = state
        .store
        .account_by_id(c.account)
        .await?
        .ok_or(ApiError::InvalidTicket)?;
    // Claim the attempt before checking: parallel guesses cannot get more
    // than MAX_CODE_ATTEMPTS tries between them.
    let Some(attempt) = state.store.claim_attempt(&c.key, MAX_CODE_ATTEMPTS).await? else {
        return Err(ApiError::InvalidTicket);
    };
    let mut ok = email_code_matches(&state, &c, req.code.expose(), t);
    if !ok
        && account.totp_enabled
        && let Some(secret) = account.totp_secret.as_deref()
    {
        ok = totp_accepts(&state, &account, secret, req.code.expose()).await?;
    }
    if !ok {
        if attempt >= MAX_CODE_ATTEMPTS {
            state.store.consume_challenge(&c.key).await?;
        }
        let detail = Some(format!("attempt {attempt}"));
        audit(&state, Some(account.id), "login.code", ip, false, detail).await;
        return Err(ApiError::InvalidCode);
    }
    // Single use, even against a concurrent request on another instance.
    if !state.store.consume_challenge(&c.key).await? {
        return Err(ApiError::InvalidTicket);
    }
    let session_id = codes::new_id()?;
    let refresh_token = codes::new_token(REFRESH_PREFIX)?;
    let device = req
        .device
        .map(|d| d.chars().filter(|c| !c.is_control()).take(100).collect());
    state
        .store
        .create_session(&NewSession {
            id: session_id.clone(),
            account: account.id,
            refresh_hash: refresh_hash(&state, &refresh_token),
            device,
            ip: Some(ip.to_string()),
            now: t,
        })
        .await?;
    let access_token = state.jwt.issue(account.id.0, &session_id, t)?;
    audit(
        &state,
        Some(account.id),
        "login.code",
        ip,
        true,
        Some(format!("session {session_id}")),
    )
    .await;
    Ok(axum::Json(LoginResponse {
        tokens: Tokens {
            access_token: access_token.into(),
            expires_in: state.jwt.ttl(),
            refresh_token: refresh_token.into(),
        },
        session_id,
        wrapped_vault_key: account.credentials.wrapped_vault_key.clone().into(),
        kdf: account.credentials.kdf.clone(),
        account: account_info(&account),
    }))
}

/// `POST /v1/auth/refresh`: a refresh token → new tokens (the old refresh
/// token is spent).
#[utoipa::path(
    post,
    path = common::api::paths::REFRESH,
    tag = "auth",
    summary = "Exchanges a refresh token (single use) for new tokens",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens", body = Tokens),
        (status = 401, description = "Unknown or already used refresh token; reuse revokes the session (`unauthorized`)", body = common::api::ErrorBody),
        JsonBodyErrors, RateLimited, ServerErrors,
    )
)]
pub async fn refresh(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> ApiResult<axum::Json<Tokens>> {
    let t = now();
    if !req.refresh_token.expose().starts_with(REFRESH_PREFIX) {
        return Err(ApiError::Unauthorized("invalid refresh token"));
    }
    let new_token = codes::new_token(REFRESH_PREFIX)?;
    let old = refresh_hash(&state, req.refresh_token.expose());
    match state
        .store
        .rotate_refresh(&old, &refresh_hash(&state, &new_token), t)
        .await?
    {
        Rotation::Rotated(session) => {
            let access_token = state.jwt.issue(session.account.0, &session.id, t)?;
            Ok(axum::Json(Tokens {
                access_token: access_token.into(),
                expires_in: state.jwt.ttl(),
                refresh_token: new_token.into(),
            }))
        }
        Rotation::Reused(session) => {
            audit(
                &state,
                Some(session.account),
                "session.refresh_reuse",
                ip,
                false,
                Some(format!("session {} revoked", session.id)),
            )
            .await;
            Err(ApiError::Unauthorized(
                "refresh token already used: the session is revoked",
            ))
        }
        Rotation::Unknown => Err(ApiError::Unauthorized("invalid refresh token")),
    }
}

/// `POST /v1/auth/logout`: ends the calling session.
#[utoipa::path(
    post,
    path = common::api::paths::LOGOUT,
    tag = "auth",
    summary = "Ends the calling session",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "The session is ended"),
        BearerErrors, ServerErrors,
    )
)]
pub async fn logout(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    auth: AuthSession,
) -> ApiResult<StatusCode> {
    state
        .store
        .revoke_session(auth.account, &auth.session_id, now())
        .await?;
    audit(
        &state,
        Some(auth.account),
        "session.logout",
        ip,
        true,
        Some(format!("session {}", auth.session_id)),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}
