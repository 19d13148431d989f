//! The one JSON error shape of the API.

use serde::{Deserialize, Serialize};

/// Stable, machine-readable error codes. Clients branch on these, never on
/// the message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request body or parameters are invalid.
    BadRequest,
    /// Missing, expired or invalid credentials or token.
    Unauthorized,
    /// Authenticated, but not allowed.
    Forbidden,
    /// No such thing (or not yours: the two are indistinguishable).
    NotFound,
    /// The path exists but not with this HTTP method.
    MethodNotAllowed,
    /// Optimistic-concurrency conflict or an existing entry.
    Conflict,
    /// A directory that must be empty is not (ENOTEMPTY).
    NotEmpty,
    /// The name (or id) already exists (EEXIST).
    Exists,
    /// A directory was expected (ENOTDIR).
    NotADirectory,
    /// A non-directory was expected (EISDIR).
    IsADirectory,
    /// A directory cannot move into its own subtree, nor the root move (EINVAL).
    InvalidMove,
    /// The operation needs a regular file.
    NotAFile,
    /// An uploaded object's SHA-256 differs from the one announced.
    DigestMismatch,
    /// A byte range outside the object.
    RangeNotSatisfiable,
    /// The request body is larger than allowed.
    PayloadTooLarge,
    /// An upload without `Content-Length` (chunked bodies are refused).
    LengthRequired,
    /// Too many requests; retry after the `Retry-After` header's seconds.
    RateLimited,
    /// The account's storage quota would be exceeded.
    QuotaExceeded,
    /// The e-mail address has not been verified yet.
    EmailNotVerified,
    /// A one-time code was wrong, expired or already used.
    InvalidCode,
    /// The login ticket is unknown, expired or used up.
    InvalidTicket,
    /// Something failed on the server; details are in its log.
    Internal,
    /// A dependency (database, object store) is unavailable.
    Unavailable,
}

/// Every error answer: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Stable code.
    pub code: ErrorCode,
    /// One sentence for a person.
    pub message: String,
}

impl ErrorBody {
    /// Builds an error body.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code,
                message: message.into(),
            },
        }
    }
}
