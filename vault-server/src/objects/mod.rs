//! Ciphertext objects over HTTP: `PUT` and `GET /v1/objects/{id}` (bearer
//! token), streamed in both directions between the client and the
//! [`BlobStore`](crate::blob::BlobStore) without holding an object in
//! memory.
//!
//! An upload is checked before a byte of its body is read: it must announce
//! its length (`Content-Length`, 411 without; at most
//! `VAULT_MAX_OBJECT_BYTES`, 413 above) and one checksum: its CRC-32C
//! (`x-vault-crc32c`, 8 hex digits; what the client sends) or its SHA-256
//! (`x-vault-sha256`, 64 hex digits). Either guards the transfer only: the
//! client authenticates every object it reads back. Then
//! [`TreeStore::reserve_object`](crate::store::TreeStore::reserve_object)
//! records the object as pending and reserves its size against the quota,
//! atomically (409 `exists` for a taken id, 507 `quota_exceeded`), and only
//! then does the body stream into the blob store, which verifies length and
//! checksum before the object becomes visible (400 `digest_mismatch`). Any
//! failure after the reservation abandons it (the size returns to the quota,
//! the id is queued for purge); the blob store leaves nothing visible. A
//! client that disconnects mid-upload drops the handler: a guard then
//! abandons the reservation from a spawned task (and should even that be
//! lost, the collector releases the pending row after the grace period).
//!
//! A download answers only objects of the caller that exist and are not
//! released: another account's id is the same 404 as a missing one (objects
//! are named by (owner, id) everywhere, so no call can even reach another
//! account's object). One range is supported (206, `Content-Range`; 416
//! with `Content-Range: bytes */LEN` for an unsatisfiable or malformed one),
//! and only the requested bytes are read from the store.
//!
//! The JSON body limit (`VAULT_MAX_BODY`) does not apply to these routes.
//!
//! Small objects may also arrive inline in `POST /v1/batch`: `inline`
//! stores those through the same steps (size limit, reservation, blob-store
//! put, abandon on failure), all or none.

pub(crate) mod inline;
mod range;

pub use range::{Wanted, resolve as resolve_range};

use std::str::FromStr as _;

use axum::body::{Body, HttpBody as _};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use common::ObjectId;
use common::api::tree::{CRC32C_HEADER, SHA256_HEADER, paths};
use futures_util::{StreamExt as _, TryStreamExt as _};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::audit;
use crate::auth::session::AuthSession;
use crate::blob::{Checksum, PutBody};
use crate::error::ApiError;
use crate::http::client_ip::ClientIp;
use crate::http::openapi::{BearerErrors, ServerErrors};
use crate::state::{AppState, now};
use crate::store::AccountId;

/// The object routes (merged into the `/v1` router): each handler's
/// `#[utoipa::path]` gives both its route and its OpenAPI operation.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(upload, download))
        // Object bodies stream to the blob store, limited by
        // VAULT_MAX_OBJECT_BYTES instead.
        .layer(DefaultBodyLimit::disable())
}

/// An object's bytes in a request or response body: opaque ciphertext.
struct Ciphertext;

impl utoipa::PartialSchema for Ciphertext {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .description(Some("Opaque ciphertext bytes"))
            .into()
    }
}

impl utoipa::ToSchema for Ciphertext {}

fn parse_id(raw: &str) -> Result<ObjectId, ApiError> {
    ObjectId::from_str(raw)
        .map_err(|_| ApiError::BadRequest("an object id is 32 hexadecimal digits".into()))
}

/// The announced length: `Content-Length`, or an exactly known empty body
/// (a request without `Content-Length` nor `Transfer-Encoding` has none,
/// RFC 9112 §6.3); a body of unknown length (chunked) is refused.
fn content_length(headers: &HeaderMap, body: &Body) -> Result<u64, ApiError> {
    let Some(value) = headers.get(header::CONTENT_LENGTH) else {
        return match body.size_hint().exact() {
            Some(0) => Ok(0),
            _ => Err(ApiError::LengthRequired),
        };
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| ApiError::BadRequest("Content-Length is not a number".into()))
}

/// The announced checksum: exactly one of a CRC-32C (8 hex digits) and a
/// SHA-256 (64 hex digits).
fn announced_checksum(headers: &HeaderMap) -> Result<Checksum, ApiError> {
    let text = |name: &str| -> Result<Option<&str>, ApiError> {
        headers
            .get(name)
            .map(|v| {
                v.to_str()
                    .map(str::trim)
                    .map_err(|_| ApiError::BadRequest(format!("{name} is not text")))
            })
            .transpose()
    };
    match (text(CRC32C_HEADER)?, text(SHA256_HEADER)?) {
        (Some(crc), None) => {
            let mut be = [0u8; 4];
            hex::decode_to_slice(crc, &mut be).map_err(|_| {
                ApiError::BadRequest(format!(
                    "{CRC32C_HEADER} must be the CRC-32C as 8 hex digits"
                ))
            })?;
            Ok(Checksum::Crc32c(u32::from_be_bytes(be)))
        }
        (None, Some(sha)) => {
            let mut digest = [0u8; 32];
            hex::decode_to_slice(sha, &mut digest).map_err(|_| {
                ApiError::BadRequest(format!(
                    "{SHA256_HEADER} must be the SHA-256 as 64 hex digits"
                ))
            })?;
            Ok(Checksum::Sha256(digest))
        }
        (Some(_), Some(_)) => Err(ApiError::BadRequest(format!(
            "announce one checksum, {CRC32C_HEADER} or {SHA256_HEADER}, not both"
        ))),
        (None, None) => Err(ApiError::BadRequest(format!(
            "the body's checksum is missing: {CRC32C_HEADER} (8 hex digits) or {SHA256_HEADER} (64)"
        ))),
    }
}

/// The headers that give a stored object's checksum back on a download.
fn checksum_header(checksum: Checksum) -> (&'static str, String) {
    match checksum {
        Checksum::Crc32c(c) => (CRC32C_HEADER, hex::encode(c.to_be_bytes())),
        Checksum::Sha256(d) => (SHA256_HEADER, hex::encode(d)),
    }
}

/// `PUT /v1/objects/{id}`: 201 once the object is stored and verified.
#[utoipa::path(
    put,
    operation_id = "upload_object",
    path = paths::OBJECT,
    tag = "objects",
    summary = "Uploads a ciphertext object (streamed; checked for length and checksum before it becomes visible)",
    params(
        ("id" = ObjectId, Path, description = "The object (32 hex digits, chosen by the client)"),
        ("x-vault-crc32c" = Option<String>, Header, description = "The body's CRC-32C (Castagnoli) as 8 hex digits; this or `x-vault-sha256`, not both"),
        ("x-vault-sha256" = Option<String>, Header, description = "The body's SHA-256 as 64 hex digits; this or `x-vault-crc32c`, not both"),
        ("content-length" = u64, Header, description = "The body's length (chunked uploads are refused)"),
    ),
    request_body(content = Ciphertext, content_type = "application/octet-stream"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored and verified"),
        (status = 400, description = "Invalid id or Content-Length, no checksum header, both, or a malformed one (`bad_request`), or the body does not match the announced checksum (`digest_mismatch`)", body = common::api::ErrorBody),
        (status = 409, description = "The id is taken (`exists`), or the upload outlived the grace period (`conflict`)", body = common::api::ErrorBody),
        (status = 411, description = "No Content-Length (`length_required`)", body = common::api::ErrorBody),
        (status = 413, description = "Larger than the server's object limit (`payload_too_large`)", body = common::api::ErrorBody),
        (status = 507, description = "The account's quota is full (`quota_exceeded`)", body = common::api::ErrorBody),
        BearerErrors, ServerErrors,
    )
)]
async fn upload(
    State(state): State<AppState>,
    session: AuthSession,
    ClientIp(ip): ClientIp,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let owner = session.account;
    let result = match parse_id(&raw_id) {
        Ok(id) => store_object(&state, owner, id, &headers, body).await,
        Err(e) => Err(e),
    };
    let detail = match &result {
        Ok(len) => format!("{raw_id} ({len} bytes)"),
        Err(e) => format!("{raw_id}: {}", failure_code(e)),
    };
    audit(
        &state,
        Some(owner),
        "object.upload",
        ip,
        result.is_ok(),
        Some(detail),
    )
    .await;
    result.map(|_| StatusCode::CREATED)
}

/// A short reason for the audit log: the error's stable code.
pub(crate) fn failure_code(e: &ApiError) -> String {
    crate::error::code_name(e.code())
}

/// Abandons reservations if their uploads do not complete: on an error
/// explicitly, and when the handler is dropped (the client went away) from a
/// spawned task.
struct Reservation {
    state: AppState,
    owner: AccountId,
    ids: Vec<ObjectId>,
    armed: bool,
}

impl Reservation {
    fn new(state: &AppState, owner: AccountId, ids: Vec<ObjectId>) -> Self {
        Self {
            state: state.clone(),
            owner,
            ids,
            armed: true,
        }
    }

    async fn abandon(mut self) {
        self.armed = false;
        abandon(&self.state, self.owner, &self.ids).await;
    }

    fn keep(mut self) {
        self.armed = false;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.armed
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            let (state, owner, ids) = (
                self.state.clone(),
                self.owner,
                std::mem::take(&mut self.ids),
            );
            handle.spawn(async move { abandon(&state, owner, &ids).await });
        }
    }
}

/// Abandons pending objects (their uploads failed, or the request that
/// stored them did): back to the quota, queued for purge.
pub(crate) async fn abandon(state: &AppState, owner: AccountId, ids: &[ObjectId]) {
    for id in ids {
        if let Err(e) = state.store.abandon_object(owner, *id).await {
            // NotFound: already released (e.g. by the collector). Otherwise
            // the collector releases the pending row after the grace period.
            tracing::debug!(error = %e, object = %id, "abandoning a failed upload");
        }
    }
}

/// Refuses an object larger than `VAULT_MAX_OBJECT_BYTES` (413).
fn check_size(state: &AppState, len: u64) -> Result<(), ApiError> {
    if len > state.max_object_bytes {
        return Err(ApiError::PayloadTooLarge);
    }
    Ok(())
}

/// Streams the body of a reserved object into the blob store, which checks
/// its length and checksum before it becomes visible.
async fn put_blob(
    state: &AppState,
    owner: AccountId,
    id: ObjectId,
    body: PutBody,
    len: u64,
    checksum: Checksum,
) -> Result<(), ApiError> {
    let stored = state.blobs.put(owner, id, body, len, checksum).await?;
    if stored != len {
        // hyper ends a body at Content-Length and fails a short one, so this
        // is only a guard.
        let _ = state.blobs.delete(owner, id).await;
        return Err(ApiError::BadRequest(format!(
            "the body was {stored} bytes, Content-Length said {len}"
        )));
    }
    Ok(())
}

/// After the bodies are stored: an upload slower than VAULT_GC_GRACE_SECS
/// may have been released (and even purged) by the collector while it
/// streamed; then the object must not stay behind in the blob store,
/// unaccounted for (409).
async fn check_not_collected(
    state: &AppState,
    owner: AccountId,
    ids: &[ObjectId],
) -> Result<(), ApiError> {
    let mut collected = false;
    for id in ids {
        if state.store.object(owner, *id).await?.is_none() {
            let _ = state.blobs.delete(owner, *id).await;
            collected = true;
        }
    }
    if collected {
        return Err(ApiError::Conflict(
            "the upload took longer than the server keeps an uncommitted object; retry with a new id",
        ));
    }
    Ok(())
}

async fn store_object(
    state: &AppState,
    owner: AccountId,
    id: ObjectId,
    headers: &HeaderMap,
    body: Body,
) -> Result<u64, ApiError> {
    let len = content_length(headers, &body)?;
    check_size(state, len)?;
    let checksum = announced_checksum(headers)?;
    state
        .store
        .reserve_object(owner, id, len, checksum, state.quota_bytes, now())
        .await?;
    let reservation = Reservation::new(state, owner, vec![id]);
    let stream: PutBody = body
        .into_data_stream()
        .map_err(std::io::Error::other)
        .boxed();
    let stored = async {
        put_blob(state, owner, id, stream, len, checksum).await?;
        check_not_collected(state, owner, &[id]).await
    };
    if let Err(e) = stored.await {
        // Nothing visible was left behind; the size returns to the quota.
        reservation.abandon().await;
        return Err(e);
    }
    reservation.keep();
    metrics::counter!("vault_object_upload_bytes_total").increment(len);
    Ok(len)
}

/// `GET /v1/objects/{id}`: 200 with the object, or 206 with one range.
#[utoipa::path(
    get,
    operation_id = "download_object",
    path = paths::OBJECT,
    tag = "objects",
    summary = "Downloads a ciphertext object, whole or one byte range",
    params(
        ("id" = ObjectId, Path, description = "The object (32 hex digits)"),
        ("range" = Option<String>, Header, description = "One range, `bytes=A-B`, `bytes=A-` or `bytes=-N`"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The object", body = Ciphertext, content_type = "application/octet-stream",
            headers(("x-vault-crc32c" = String, description = "The object's CRC-32C (hex), if its upload announced one"), ("x-vault-sha256" = String, description = "The object's SHA-256 (hex), if its upload announced one"), ("accept-ranges" = String))),
        (status = 206, description = "The requested range", body = Ciphertext, content_type = "application/octet-stream",
            headers(("content-range" = String, description = "`bytes A-B/LEN`"), ("x-vault-crc32c" = String, description = "The whole object's CRC-32C (hex), if its upload announced one"), ("x-vault-sha256" = String, description = "The whole object's SHA-256 (hex), if its upload announced one"))),
        (status = 400, description = "Invalid id (`bad_request`)", body = common::api::ErrorBody),
        (status = 404, description = "No such object of this account (`not_found`)", body = common::api::ErrorBody),
        (status = 416, description = "Unsatisfiable or malformed range (`range_not_satisfiable`)", body = common::api::ErrorBody,
            headers(("content-range" = String, description = "`bytes */LEN`"))),
        BearerErrors, ServerErrors,
    )
)]
async fn download(
    State(state): State<AppState>,
    session: AuthSession,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let owner = session.account;
    let id = parse_id(&raw_id)?;
    let row = state
        .store
        .object(owner, id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let range_header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let range = match resolve_range(range_header, row.size) {
        Wanted::Whole => None,
        Wanted::Part(r) => Some(r),
        Wanted::Unsatisfiable => return Err(ApiError::RangeNotSatisfiable { len: row.size }),
    };
    let (total, stream) = state
        .blobs
        .get_sized(owner, id, range.clone(), row.size)
        .await?;
    if total != row.size {
        return Err(ApiError::Internal(format!(
            "object {id} is {total} bytes in the blob store but {} in the database",
            row.size
        )));
    }
    let (status, body_len) = match &range {
        None => (StatusCode::OK, total),
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.end - r.start),
    };
    let mut response = (status, Body::from_stream(stream)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(body_len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let (name, value) = checksum_header(row.checksum);
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert(name, v);
    }
    if let Some(r) = &range
        && let Ok(v) = HeaderValue::from_str(&format!(
            "bytes {}-{}/{total}",
            r.start,
            r.end.saturating_sub(1)
        ))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    metrics::counter!("vault_object_download_bytes_total").increment(body_len);
    Ok(response)
}
