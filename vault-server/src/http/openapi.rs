//! The OpenAPI description of the API, served at `GET /v1/openapi.json`.
//!
//! It is not written by hand: every route is registered with
//! `utoipa_axum::routes!` from its handler's `#[utoipa::path]` attribute, so
//! one declaration gives both the route the router serves and the operation
//! the document describes (see [`super::api`]). The unit tests below check
//! the two against each other: every documented operation is answered by
//! its handler, every other method on a documented path is 405, and the set
//! of documented operations is exactly the API's.

use axum::Extension;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{ComponentsBuilder, InfoBuilder, LicenseBuilder, OpenApi, OpenApiBuilder};

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/v1/openapi.json";

/// The name of the bearer security scheme the authenticated operations name.
pub const BEARER: &str = "bearer";

const DESCRIPTION: &str = "\
The SecureVault server: accounts and sessions, the encrypted tree and its \
ciphertext objects. Everything is encrypted on the client: the server only \
ever sees ciphertext (sealed records, encrypted names, keyed name tags, \
wrapped keys and opaque objects) and the hash of an auth key derived from \
the password, never a password, a key or a file name.

Every error answer has one JSON shape, `ErrorBody`, with a stable \
machine-readable `code`. Authenticated operations take the access token from \
`POST /v1/auth/login/verify` as `Authorization: Bearer`.";

/// The document before the operations are added: info, the bearer scheme
/// and the tags.
pub fn base() -> OpenApi {
    let info = InfoBuilder::new()
        .title("SecureVault API")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(DESCRIPTION))
        .license(Some(LicenseBuilder::new().name("Apache-2.0").build()))
        .build();
    let bearer = HttpBuilder::new()
        .scheme(HttpAuthScheme::Bearer)
        .bearer_format("JWT")
        .description(Some(
            "The access token of a session (`Tokens.access_token`); it expires, the refresh token renews it",
        ))
        .build();
    let tags = [
        (
            "auth",
            "Registration and the two-step login (rate limited per IP)",
        ),
        ("account", "The logged-in account"),
        ("sessions", "The account's sessions"),
        ("totp", "Authenticator-app second factor"),
        ("audit", "The account's audit log"),
        (
            "tree",
            "The encrypted tree: nodes, directories, links, renames, usage and the change feed",
        ),
        ("objects", "Ciphertext objects, streamed"),
        ("operator", "Liveness, readiness, metrics and this document"),
    ]
    .into_iter()
    .map(|(name, description)| {
        TagBuilder::new()
            .name(name)
            .description(Some(description))
            .build()
    })
    .collect::<Vec<_>>();
    OpenApiBuilder::new()
        .info(info)
        .components(Some(
            ComponentsBuilder::new()
                .security_scheme(BEARER, SecurityScheme::Http(bearer))
                .build(),
        ))
        .tags(Some(tags))
        .build()
}

/// The 500 and 503 every operation that touches the database can answer.
#[derive(Debug, utoipa::IntoResponses)]
pub enum ServerErrors {
    #[response(status = 500, description = "Internal error (`internal`)")]
    Internal(common::api::ErrorBody),
    #[response(
        status = 503,
        description = "The database is unavailable (`unavailable`)"
    )]
    Unavailable(common::api::ErrorBody),
}

/// The 401 of the operations that take a bearer access token.
#[derive(Debug, utoipa::IntoResponses)]
pub enum BearerErrors {
    #[response(
        status = 401,
        description = "Missing, invalid or expired access token, or the session has ended (`unauthorized`)"
    )]
    Unauthorized(common::api::ErrorBody),
}

/// The 413 of the operations that take a JSON body.
#[derive(Debug, utoipa::IntoResponses)]
pub enum PayloadTooLarge {
    #[response(status = 413, description = PAYLOAD_TOO_LARGE)]
    PayloadTooLarge(common::api::ErrorBody),
}

/// The 400 and 413 of the operations whose only 400 is an invalid JSON body.
#[derive(Debug, utoipa::IntoResponses)]
pub enum JsonBodyErrors {
    #[response(status = 400, description = "Invalid body (`bad_request`)")]
    BadRequest(common::api::ErrorBody),
    #[response(status = 413, description = PAYLOAD_TOO_LARGE)]
    PayloadTooLarge(common::api::ErrorBody),
}

/// The 429 of the rate-limited public operations (per IP and endpoint).
#[derive(Debug, utoipa::IntoResponses)]
pub enum RateLimited {
    #[response(
        status = 429,
        description = "Too many requests from this address for this endpoint (`rate_limited`)",
        headers(("retry-after" = u64, description = "Seconds to wait"))
    )]
    RateLimited(common::api::ErrorBody),
}

const PAYLOAD_TOO_LARGE: &str = "Body too large (`payload_too_large`)";

/// The serialized document, made once when the router is built.
#[derive(Debug, Clone)]
pub struct SpecJson(Bytes);

impl SpecJson {
    /// Serializes `spec` (which cannot fail for this document: a failure
    /// is logged and serves an empty object, which the tests would catch).
    pub fn new(spec: &OpenApi) -> Self {
        match serde_json::to_vec(spec) {
            Ok(json) => Self(Bytes::from(json)),
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize the OpenAPI document");
                Self(Bytes::from_static(b"{}"))
            }
        }
    }
}

/// `GET /v1/openapi.json`: this document (no token, not rate limited).
#[utoipa::path(
    get,
    path = OPENAPI_PATH,
    tag = "operator",
    summary = "The OpenAPI description of the API (this document)",
    responses((status = 200, description = "The document", body = Object, content_type = "application/json"))
)]
pub async fn openapi_json(Extension(spec): Extension<SpecJson>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], spec.0.clone()).into_response()
}

#[cfg(test)]
mod tests;
