//! The logged-in account: its details, password change, sessions, TOTP and
//! its audit log.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use common::api::{
    AccountInfo, AccountKeys, AuditEvent, ChangePasswordRequest, SessionInfo, TotpCodeRequest,
    TotpEnrollment,
};
use common::crypto::keywrap::WRAPPED_KEY_LEN;
use serde::Deserialize;

use super::login::{account_info, totp_accepts};
use super::ratelimit::charge_attempt;
use super::secrets::HashPurpose;
use super::session::AuthSession;
use super::{audit, auth_key_bytes};
use crate::error::{ApiError, ApiResult};
use crate::http::client_ip::ClientIp;
use crate::http::json::{ApiJson, ApiQuery};
use crate::http::openapi::{BearerErrors, JsonBodyErrors, PayloadTooLarge, ServerErrors};
use crate::state::{AppState, now};
use crate::store::{Account, Credentials};

async fn account_of(state: &AppState, auth: &AuthSession) -> ApiResult<Account> {
    state
        .store
        .account_by_id(auth.account)
        .await?
        .ok_or(ApiError::Unauthorized("the account no longer exists"))
}

/// `GET /v1/account`
#[utoipa::path(
    get,
    operation_id = "get_account",
    path = common::api::paths::ACCOUNT,
    tag = "account",
    summary = "The logged-in account",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The account", body = AccountInfo),
        BearerErrors, ServerErrors,
    )
)]
pub async fn info(
    State(state): State<AppState>,
    auth: AuthSession,
) -> ApiResult<axum::Json<AccountInfo>> {
    Ok(axum::Json(account_info(&account_of(&state, &auth).await?)))
}

/// `GET /v1/account/keys`
#[utoipa::path(
    get,
    operation_id = "get_account_keys",
    path = common::api::paths::ACCOUNT_KEYS,
    tag = "account",
    summary = "The wrapped vault key and the KDF parameters that unwrap it",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The keys", body = AccountKeys),
        BearerErrors, ServerErrors,
    )
)]
pub async fn keys(
    State(state): State<AppState>,
    auth: AuthSession,
) -> ApiResult<axum::Json<AccountKeys>> {
    let account = account_of(&state, &auth).await?;
    Ok(axum::Json(AccountKeys {
        kdf: account.credentials.kdf,
        wrapped_vault_key: account.credentials.wrapped_vault_key.into(),
    }))
}

/// `POST /v1/account/password`: proves the current password, stores the new
/// credentials (the same vault key, re-wrapped by the client) and ends every
/// other session.
#[utoipa::path(
    post,
    path = common::api::paths::PASSWORD,
    tag = "account",
    summary = "Changes the password (the client re-wrapped the same vault key); ends every other session",
    request_body = ChangePasswordRequest,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Changed"),
        (status = 400, description = "Invalid body, KDF parameters or key sizes (`bad_request`)", body = common::api::ErrorBody),
        (status = 403, description = "The current password is wrong (`forbidden`)", body = common::api::ErrorBody),
        (status = 429, description = "Too many wrong passwords: back-off running (`rate_limited`)", body = common::api::ErrorBody, headers(("retry-after" = u64, description = "Seconds to wait"))),
        BearerErrors, PayloadTooLarge, ServerErrors,
    )
)]
pub async fn change_password(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    auth: AuthSession,
    ApiJson(req): ApiJson<ChangePasswordRequest>,
) -> ApiResult<StatusCode> {
    let account = account_of(&state, &auth).await?;
    let t = now();
    let current = auth_key_bytes(&req.current_auth_key)?;
    let new_key = auth_key_bytes(&req.new_auth_key)?;
    req.new_kdf
        .validate()
        .map_err(|e| ApiError::BadRequest(format!("new_kdf: {e}")))?;
    if req.new_wrapped_vault_key.as_bytes().len() != WRAPPED_KEY_LEN {
        return Err(ApiError::BadRequest(format!(
            "new_wrapped_vault_key must be {WRAPPED_KEY_LEN} bytes"
        )));
    }
    let throttle_key = state
        .keys
        .keyed_hash(HashPurpose::Throttle, account.email.as_bytes());
    charge_attempt(&state, &throttle_key, t).await?;
    if !super::password::verify_auth_key(Some(account.credentials.auth_hash.clone()), current)
        .await?
    {
        audit(
            &state,
            Some(account.id),
            "account.password_change",
            ip,
            false,
            None,
        )
        .await;
        return Err(ApiError::Forbidden("the current password is wrong"));
    }
    state.store.clear_throttle(&throttle_key).await?;
    let auth_hash = super::password::hash_auth_key(new_key).await?;
    state
        .store
        .update_credentials(
            account.id,
            &Credentials {
                kdf: req.new_kdf.clone(),
                auth_hash,
                wrapped_vault_key: req.new_wrapped_vault_key.as_bytes().to_vec(),
            },
            t,
        )
        .await?;
    let revoked = state
        .store
        .revoke_sessions(account.id, Some(&auth.session_id), t)
        .await?;
    audit(
        &state,
        Some(account.id),
        "account.password_change",
        ip,
        true,
        Some(format!("{revoked} other sessions revoked")),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/sessions`
#[utoipa::path(
    get,
    operation_id = "list_sessions",
    path = common::api::paths::SESSIONS,
    tag = "sessions",
    summary = "The sessions of the account",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The sessions", body = Vec<SessionInfo>),
        BearerErrors, ServerErrors,
    )
)]
pub async fn sessions(
    State(state): State<AppState>,
    auth: AuthSession,
) -> ApiResult<axum::Json<Vec<SessionInfo>>> {
    let list = state.store.sessions(auth.account).await?;
    Ok(axum::Json(
        list.into_iter()
            .map(|s| SessionInfo {
                current: s.id == auth.session_id,
                id: s.id,
                device: s.device,
                ip: s.ip,
                created_at: s.created_at,
                last_used_at: s.last_used_at,
            })
            .collect(),
    ))
}

/// `DELETE /v1/sessions/{id}`
#[utoipa::path(
    delete,
    path = common::api::paths::SESSION,
    tag = "sessions",
    summary = "Revokes one session of the account",
    params(("id" = String, Path, description = "The session id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such session of this account (`not_found`)", body = common::api::ErrorBody),
        BearerErrors, ServerErrors,
    )
)]
pub async fn revoke_session(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    auth: AuthSession,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if !state.store.revoke_session(auth.account, &id, now()).await? {
        return Err(ApiError::NotFound);
    }
    audit(
        &state,
        Some(auth.account),
        "session.revoke",
        ip,
        true,
        Some(format!("session {id}")),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/sessions/revoke-all`: log out everywhere, this session included.
#[utoipa::path(
    post,
    path = common::api::paths::SESSIONS_REVOKE_ALL,
    tag = "sessions",
    summary = "Revokes every session of the account, this one included",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Revoked"),
        BearerErrors, ServerErrors,
    )
)]
pub async fn revoke_all(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    auth: AuthSession,
) -> ApiResult<StatusCode> {
    let n = state
        .store
        .revoke_sessions(auth.account, None, now())
        .await?;
    audit(
        &state,
        Some(auth.account),
        "session.revoke_all",
        ip,
        true,
        Some(format!("{n} sessions")),
    )
    .await;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/totp/enroll`: a new pending secret (refused while TOTP is on).
#[utoipa::path(
    post,
    path = common::api::paths::TOTP_ENROLL,
    tag = "totp",
    summary = "A new pending TOTP secret (activated by its first code)",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The secret and its otpauth URI", body = TotpEnrollment),
        (status = 409, description = "TOTP is already enabled (`conflict`)", body = common::api::ErrorBody),
        BearerErrors, ServerErrors,
    )
)]
pub async fn totp_enroll(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    auth: AuthSession,
) -> ApiResult<axum::Json<TotpEnrollment>> {
    let account = account_of(&state, &auth).await?;
    if account.totp_enabled {
        return Err(ApiError::Conflict(
            "TOTP is already enabled; disable it first",
        ));
    }
    let secret = super::totp::new_secret()?;
    state
        .store
        .set_totp(account.id, Some(&secret), false)
        .await?;
    let (b32, uri) = super::totp::enrollment(&secret, &account.email)?;
    audit(&state, Some(account.id), "totp.enroll", ip, true, None).await;
    Ok(axum::Json(TotpEnrollment {
        secret: b32.into(),
        otpauth_uri: uri.into(),
    }))
}

/// `POST /v1/totp/activate`: the first code turns TOTP on.
#[utoipa::path(
    post,
    path = common::api::paths::TOTP_ACTIVATE,
    tag = "totp",
    summary = "The first code of the pending secret turns TOTP on",
    request_body = TotpCodeRequest,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "TOTP is on"),
        (status = 401, description = "Wrong or reused code (`invalid_code`); or a missing, invalid or expired access token or an ended session (`unauthorized`)", body = common::api::ErrorBody),
        (status = 409, description = "Already enabled, or nothing enrolled (`conflict`)", body = common::api::ErrorBody),
        JsonBodyErrors, ServerErrors,
    )
)]
pub async fn totp_activate(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    auth: AuthSession,
    ApiJson(req): ApiJson<TotpCodeRequest>,
) -> ApiResult<StatusCode> {
    let account = account_of(&state, &auth).await?;
    let secret = match (&account.totp_secret, account.totp_enabled) {
        (Some(s), false) => s.clone(),
        (_, true) => return Err(ApiError::Conflict("TOTP is already enabled")),
        (None, false) => return Err(ApiError::Conflict("enrol first")),
    };
    if !totp_accepts(&state, &account, &secret, req.code.expose()).await? {
        audit(&state, Some(account.id), "totp.activate", ip, false, None).await;
        return Err(ApiError::InvalidCode);
    }
    state
        .store
        .set_totp(account.id, Some(&secret), true)
        .await?;
    audit(&state, Some(account.id), "totp.activate", ip, true, None).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/totp/disable`: needs a fresh code.
#[utoipa::path(
    post,
    path = common::api::paths::TOTP_DISABLE,
    tag = "totp",
    summary = "Turns TOTP off (needs a fresh code)",
    request_body = TotpCodeRequest,
    security(("bearer" = [])),
    responses(
        (status = 204, description = "TOTP is off"),
        (status = 401, description = "Wrong or reused code (`invalid_code`); or a missing, invalid or expired access token or an ended session (`unauthorized`)", body = common::api::ErrorBody),
        (status = 409, description = "TOTP is not enabled (`conflict`)", body = common::api::ErrorBody),
        JsonBodyErrors, ServerErrors,
    )
)]
pub async fn totp_disable(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    auth: AuthSession,
    ApiJson(req): ApiJson<TotpCodeRequest>,
) -> ApiResult<StatusCode> {
    let account = account_of(&state, &auth).await?;
    let Some(secret) = account.totp_secret.clone().filter(|_| account.totp_enabled) else {
        return Err(ApiError::Conflict("TOTP is not enabled"));
    };
    if !totp_accepts(&state, &account, &secret, req.code.expose()).await? {
        audit(&state, Some(account.id), "totp.disable", ip, false, None).await;
        return Err(ApiError::InvalidCode);
    }
    state.store.set_totp(account.id, None, false).await?;
    audit(&state, Some(account.id), "totp.disable", ip, true, None).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Paging of the audit log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only events with ids below this.
    pub before: Option<i64>,
    /// At most this many (1..=200, default 50).
    pub limit: Option<u32>,
}

/// `GET /v1/audit`
#[utoipa::path(
    get,
    operation_id = "get_audit_log",
    path = common::api::paths::AUDIT,
    tag = "audit",
    summary = "The account's audit log, newest first",
    params(AuditQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Events (never a secret, code or file name)", body = Vec<AuditEvent>),
        (status = 400, description = "Invalid query (`bad_request`)", body = common::api::ErrorBody),
        BearerErrors, ServerErrors,
    )
)]
pub async fn audit_log(
    State(state): State<AppState>,
    auth: AuthSession,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<axum::Json<Vec<AuditEvent>>> {
    let limit = q.limit.unwrap_or(50).clamp(1, 200);
    let events = state
        .store
        .audit_events(auth.account, q.before, limit)
        .await?;
    Ok(axum::Json(
        events
            .into_iter()
            .map(|e| AuditEvent {
                id: e.id,
                at: e.at,
                event: e.event,
                ip: e.ip,
                outcome: if e.success { "success" } else { "failure" }.into(),
                detail: e.detail,
            })
            .collect(),
    ))
}
