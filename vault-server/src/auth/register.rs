//! Registration, e-mail verification and pre-login.
//!
//! None of these reveal whether an address has an account: registration
//! always answers 202 (an existing owner gets a notice mail instead of a
//! code), verification answers the same error for every failure, and
//! pre-login returns deterministic fake KDF parameters for unknown addresses.

use axum::extract::State;
use axum::http::StatusCode;
use common::api::{
    Accepted, PreloginRequest, PreloginResponse, RegisterRequest, VerifyEmailRequest,
};
use common::crypto::kdf::{
    DEFAULT_ITERATIONS, DEFAULT_MEMORY_KIB, DEFAULT_PARALLELISM, KdfParams, SALT_LEN,
};
use common::crypto::keywrap::WRAPPED_KEY_LEN;

use super::secrets::HashPurpose;
use super::{CODE_TTL, MAX_CODE_ATTEMPTS, audit, auth_key_bytes, canonical_email, code_hash};
use crate::error::{ApiError, ApiResult};
use crate::http::client_ip::ClientIp;
use crate::http::json::ApiJson;
use crate::http::openapi::{PayloadTooLarge, RateLimited, ServerErrors};
use crate::mail::{already_registered_mail, code_mail};
use crate::state::{AppState, now};
use crate::store::{Challenge, ChallengePurpose, Credentials, NewAccount, StoreError};

fn verification_key(state: &AppState, account: i64) -> Vec<u8> {
    state
        .keys
        .keyed_hash(HashPurpose::Verification, &account.to_be_bytes())
}

/// `POST /v1/auth/register`
#[utoipa::path(
    post,
    path = common::api::paths::REGISTER,
    tag = "auth",
    summary = "Creates an account; a code is mailed to verify its address",
    request_body = RegisterRequest,
    responses(
        (status = 202, description = "Accepted. The same answer whether or not the address already has an account (its owner then gets a notice instead of a code)", body = Accepted),
        (status = 400, description = "Invalid body, address, KDF parameters or key sizes (`bad_request`)", body = common::api::ErrorBody),
        PayloadTooLarge, RateLimited, ServerErrors,
    )
)]
pub async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> ApiResult<(StatusCode, axum::Json<Accepted>)> {
    let email = canonical_email(&req.email)?;
    req.kdf
        .validate()
        .map_err(|e| ApiError::BadRequest(format!("kdf: {e}")))?;
    let auth_key = auth_key_bytes(&req.auth_key)?;
    for (name, key) in [
        ("wrapped_vault_key", &req.wrapped_vault_key),
        (
            "recovery_wrapped_vault_key",
            &req.recovery_wrapped_vault_key,
        ),
    ] {
        if key.as_bytes().len() != WRAPPED_KEY_LEN {
            return Err(ApiError::BadRequest(format!(
                "{name} must be {WRAPPED_KEY_LEN} bytes"
            )));
        }
    }
    let auth_hash = super::password::hash_auth_key(auth_key).await?;
    let t = now();
    let new = NewAccount {
        email: email.clone(),
        credentials: Credentials {
            kdf: req.kdf.clone(),
            auth_hash,
            wrapped_vault_key: req.wrapped_vault_key.as_bytes().to_vec(),
        },
        recovery_wrapped_vault_key: req.recovery_wrapped_vault_key.as_bytes().to_vec(),
        now: t,
    };
    match state.store.upsert_unverified_account(&new).await {
        Ok(id) => {
            let code = super::codes::new_code()?;
            let key = verification_key(&state, id.0);
            let stored = state
                .store
                .put_challenge(&Challenge {
                    code_hash: code_hash(&state, &key, &code),
                    key,
                    purpose: ChallengePurpose::VerifyEmail,
                    account: id,
                    code_expires_at: t + CODE_TTL,
                    expires_at: t + CODE_TTL,
                    attempts: 0,
                    sent_at: t,
                    ip: Some(ip.to_string()),
                })
                .await;
            match stored {
                Ok(()) => {
                    send_or_log(&state, code_mail(&email, "verification", &code)).await;
                    audit(&state, Some(id), "account.register", ip, true, None).await;
                }
                // A concurrent registration of the same unverified address
                // replaced this one: the later one's code is the one mailed.
                Err(StoreError::Missing) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict) => {
            send_or_log(&state, already_registered_mail(&email)).await;
            let existing = state.store.account_by_email(&email).await?.map(|a| a.id);
            audit(
                &state,
                existing,
                "account.register",
                ip,
                false,
                Some("address already registered".into()),
            )
            .await;
        }
        Err(e) => return Err(e.into()),
    }
    Ok((StatusCode::ACCEPTED, axum::Json(Accepted::default())))
}

/// Sends a mail; a failure is logged (the answer must not depend on it).
pub async fn send_or_log(state: &AppState, mail: crate::mail::Mail) {
    if let Err(e) = state.mailer.send(mail).await {
        tracing::error!(error = %e, "cannot send mail");
    }
}

/// `POST /v1/auth/verify-email`
#[utoipa::path(
    post,
    path = common::api::paths::VERIFY_EMAIL,
    tag = "auth",
    summary = "Confirms an e-mail address with the mailed code",
    request_body = VerifyEmailRequest,
    responses(
        (status = 200, description = "The address is verified", body = Accepted),
        (status = 400, description = "Invalid body or address (`bad_request`)", body = common::api::ErrorBody),
        (status = 401, description = "Wrong, expired or used code, or nothing to verify: every failure answers alike (`invalid_code`)", body = common::api::ErrorBody),
        PayloadTooLarge, RateLimited, ServerErrors,
    )
)]
pub async fn verify_email(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(req): ApiJson<VerifyEmailRequest>,
) -> ApiResult<axum::Json<Accepted>> {
    let email = canonical_email(&req.email)?;
    let t = now();
    let Some(account) = state.store.account_by_email(&email).await? else {
        return Err(ApiError::InvalidCode);
    };
    if account.verified {
        return Err(ApiError::InvalidCode);
    }
    let key = verification_key(&state, account.id.0);
    let Some(challenge) = state.store.challenge(&key).await? else {
        return Err(ApiError::InvalidCode);
    };
    if challenge.purpose != ChallengePurpose::VerifyEmail || challenge.expires_at <= t {
        return Err(ApiError::InvalidCode);
    }
    let Some(attempt) = state.store.claim_attempt(&key, MAX_CODE_ATTEMPTS).await? else {
        return Err(ApiError::InvalidCode);
    };
    if !super::email_code_matches(&state, &challenge, req.code.expose(), t) {
        if attempt >= MAX_CODE_ATTEMPTS {
            state.store.consume_challenge(&key).await?;
        }
        audit(
            &state,
            Some(account.id),
            "account.verify_email",
            ip,
            false,
            None,
        )
        .await;
        return Err(ApiError::InvalidCode);
    }
    if !state.store.consume_challenge(&key).await? {
        return Err(ApiError::InvalidCode);
    }
    state.store.mark_verified(account.id, t).await?;
    audit(
        &state,
        Some(account.id),
        "account.verify_email",
        ip,
        true,
        None,
    )
    .await;
    Ok(axum::Json(Accepted::default()))
}

/// The parameters shown for an address without an account: the defaults
/// with a salt that is a keyed hash of the address, so asking twice gives
/// the same answer and nothing distinguishes it from a real account.
pub fn fake_kdf(state: &AppState, email: &str) -> KdfParams {
    let h = state
        .keys
        .keyed_hash(HashPurpose::FakeSalt, email.as_bytes());
    let mut salt = [0u8; SALT_LEN];
    for (s, b) in salt.iter_mut().zip(h.iter()) {
        *s = *b;
    }
    KdfParams {
        memory_kib: DEFAULT_MEMORY_KIB,
        iterations: DEFAULT_ITERATIONS,
        parallelism: DEFAULT_PARALLELISM,
        salt,
    }
}

/// `POST /v1/auth/prelogin`
#[utoipa::path(
    post,
    path = common::api::paths::PRELOGIN,
    tag = "auth",
    summary = "The KDF parameters and salt of an address (deterministic fake ones for an unknown address)",
    request_body = PreloginRequest,
    responses(
        (status = 200, description = "The parameters", body = PreloginResponse),
        (status = 400, description = "Invalid body or address (`bad_request`)", body = common::api::ErrorBody),
        PayloadTooLarge, RateLimited, ServerErrors,
    )
)]
pub async fn prelogin(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<PreloginRequest>,
) -> ApiResult<axum::Json<PreloginResponse>> {
    let email = canonical_email(&req.email)?;
    let kdf = match state.store.account_by_email(&email).await? {
        Some(a) => a.credentials.kdf,
        None => fake_kdf(&state, &email),
    };
    Ok(axum::Json(PreloginResponse { kdf }))
}
