//! The one place where server errors become HTTP answers: every handler
//! returns [`ApiError`], which maps to a status code, the JSON error shape of
//! `common::api` and, for rate limits, `Retry-After`. Internal details are
//! logged, never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use common::api::{ErrorBody, ErrorCode, ErrorDetail};

use crate::blob::BlobError;
use crate::store::{StoreError, TreeError};

/// An error answer.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Invalid input.
    #[error("{0}")]
    BadRequest(String),
    /// Credentials, ticket or token not accepted.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Authenticated but not allowed.
    #[error("{0}")]
    Forbidden(&'static str),
    /// Not found (or not the caller's).
    #[error("not found")]
    NotFound,
    /// A known path with another method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A conflicting state.
    #[error("{0}")]
    Conflict(&'static str),
    /// A wrong, expired or used one-time code.
    #[error("the code is wrong, expired or already used")]
    InvalidCode,
    /// An unknown, expired or exhausted login ticket.
    #[error("the login ticket is invalid or expired; start again")]
    InvalidTicket,
    /// The e-mail address must be verified first.
    #[error("verify your e-mail address first")]
    EmailNotVerified,
    /// Too many requests.
    #[error("too many requests; retry in {retry_after} s")]
    RateLimited {
        /// Seconds to wait.
        retry_after: u64,
    },
    /// The body is too large.
    #[error("request body too large")]
    PayloadTooLarge,
    /// A tree operation was refused (never [`TreeError::Store`], which
    /// becomes [`ApiError::Store`], nor [`TreeError::NotFound`], which
    /// becomes [`ApiError::NotFound`] so that the two answers are identical).
    #[error("{0}")]
    Tree(TreeError),
    /// The database failed.
    #[error("storage error")]
    Store(#[from] StoreError),
    /// An upload without `Content-Length`.
    #[error("Content-Length is required (chunked uploads are not accepted)")]
    LengthRequired,
    /// An uploaded body's SHA-256 is not the announced one.
    #[error("object digest does not match the declared SHA-256")]
    DigestMismatch,
    /// A `Range` that cannot be served.
    #[error("range not satisfiable (object is {len} bytes)")]
    RangeNotSatisfiable {
        /// The object's length.
        len: u64,
    },
    /// Anything else that is the server's fault.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, ErrorCode) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, ErrorCode::Forbidden),
            ApiError::NotFound => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            ApiError::MethodNotAllowed => {
                (StatusCode::METHOD_NOT_ALLOWED, ErrorCode::MethodNotAllowed)
            }
            ApiError::Conflict(_) => (StatusCode::CONFLICT, ErrorCode::Conflict),
            ApiError::InvalidCode => (StatusCode::UNAUTHORIZED, ErrorCode::InvalidCode),
            ApiError::InvalidTicket => (StatusCode::UNAUTHORIZED, ErrorCode::InvalidTicket),
            ApiError::EmailNotVerified => (StatusCode::FORBIDDEN, ErrorCode::EmailNotVerified),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited),
            ApiError::PayloadTooLarge => {
                (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge)
            }
            ApiError::LengthRequired => (StatusCode::LENGTH_REQUIRED, ErrorCode::LengthRequired),
            ApiError::DigestMismatch => (StatusCode::BAD_REQUEST, ErrorCode::DigestMismatch),
            ApiError::RangeNotSatisfiable { .. } => (
                StatusCode::RANGE_NOT_SATISFIABLE,
                ErrorCode::RangeNotSatisfiable,
            ),
            ApiError::Tree(e) => tree_status_and_code(e),
            ApiError::Store(StoreError::Database(_)) => {
                (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable)
            }
            ApiError::Store(StoreError::Conflict) => (StatusCode::CONFLICT, ErrorCode::Conflict),
            ApiError::Store(_) | ApiError::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal)
            }
        }
    }
}

/// The tree's refusals. Each has its own code, so a client maps the code to
/// one errno without looking at the status: 404 for what is missing (or not
/// the caller's), 409 for what conflicts with the current state of the tree,
/// 422 for a move no state allows, 507 for a full account.
fn tree_status_and_code(e: &TreeError) -> (StatusCode, ErrorCode) {
    match e {
        TreeError::NotFound => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
        TreeError::EntryExists => (StatusCode::CONFLICT, ErrorCode::Exists),
        TreeError::NotADirectory => (StatusCode::CONFLICT, ErrorCode::NotADirectory),
        TreeError::IsADirectory => (StatusCode::CONFLICT, ErrorCode::IsADirectory),
        TreeError::NotEmpty => (StatusCode::CONFLICT, ErrorCode::NotEmpty),
        TreeError::NotAFile => (StatusCode::CONFLICT, ErrorCode::NotAFile),
        TreeError::VersionConflict { .. } => (StatusCode::CONFLICT, ErrorCode::Conflict),
        TreeError::InvalidMove => (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidMove),
        TreeError::QuotaExceeded => (StatusCode::INSUFFICIENT_STORAGE, ErrorCode::QuotaExceeded),
        TreeError::Store(StoreError::Database(_)) => {
            (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable)
        }
        TreeError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
    }
}

impl From<TreeError> for ApiError {
    fn from(e: TreeError) -> Self {
        match e {
            TreeError::NotFound => ApiError::NotFound,
            TreeError::Store(e) => ApiError::Store(e),
            e => ApiError::Tree(e),
        }
    }
}

/// The closest answer for each object-store failure.
impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::NotFound => ApiError::NotFound,
            BlobError::Exists => ApiError::Tree(TreeError::EntryExists),
            BlobError::TooLarge { .. } => ApiError::PayloadTooLarge,
            BlobError::DigestMismatch => ApiError::DigestMismatch,
            BlobError::RangeNotSatisfiable { len } => ApiError::RangeNotSatisfiable { len },
            e @ (BlobError::Config(_) | BlobError::Backend(_) | BlobError::Io(_)) => {
                ApiError::Internal(e.to_string())
            }
        }
    }
}

impl ApiError {
    /// The stable code of this error (for the audit log).
    pub fn code(&self) -> ErrorCode {
        self.status_and_code().1
    }

    /// The status and error this answers with, for an answer nested in
    /// another (an operation of a batch): exactly what [`IntoResponse`]
    /// sends, and a server error is logged the same way.
    pub fn status_and_detail(&self) -> (StatusCode, ErrorDetail) {
        let (status, code) = self.status_and_code();
        if status.is_server_error() && status != StatusCode::INSUFFICIENT_STORAGE {
            tracing::error!(error = ?self, "operation failed");
        }
        (
            status,
            ErrorDetail {
                code,
                message: self.to_string(),
            },
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        // A full account (507) is the caller's condition, not a fault.
        if status.is_server_error() && status != StatusCode::INSUFFICIENT_STORAGE {
            tracing::error!(error = ?self, "request failed");
        }
        let mut response = (status, Json(ErrorBody::new(code, self.to_string()))).into_response();
        if let ApiError::RateLimited { retry_after } = self
            && let Ok(v) = HeaderValue::from_str(&retry_after.max(1).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if let ApiError::RangeNotSatisfiable { len } = self
            && let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}"))
        {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        response
    }
}

/// An error code as the wire writes it (`exists`, `conflict`, ...), for
/// the audit log.
pub fn code_name(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "refused".into())
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
