//! The one place where server errors become HTTP answers: every handler
//! returns [`ApiError`], which maps to a status code, the JSON error shape of
//! `common::api` and, for rate limits, `Retry-After`. Internal details are
//! logged, never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use common::api::{ErrorBody, ErrorCode};

use crate::store::StoreError;

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
    /// The database failed.
    #[error("storage error")]
    Store(#[from] StoreError),
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(error = ?self, "request failed");
        }
        let mut response = (status, Json(ErrorBody::new(code, self.to_string()))).into_response();
        if let ApiError::RateLimited { retry_after } = self
            && let Ok(v) = HeaderValue::from_str(&retry_after.max(1).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
