//! [`ApiError`]: everything that can go wrong talking to the server, in one
//! type shared by the HTTP client and the fake. It keeps the facts (status,
//! stable [`ErrorCode`], `Retry-After`); turning them into sentences for a
//! person happens in one place, [`crate::error`].

use common::api::ErrorCode;

/// A boxed cause, for transport errors from any implementation.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a request did not produce the answer the caller wanted.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No connection could be made (DNS, refused, TLS handshake, reset).
    #[error("cannot reach the server at {server}")]
    Unreachable {
        /// The server's base URL.
        server: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// The server took too long to answer.
    #[error("the server at {server} did not answer in time")]
    Timeout {
        /// The server's base URL.
        server: String,
    },
    /// The server answered with an error status.
    #[error("the server answered {status}: {message}")]
    Status {
        /// HTTP status.
        status: u16,
        /// The stable code from the error body, when it had one.
        code: Option<ErrorCode>,
        /// The server's sentence (or a stand-in when the body had none).
        message: String,
        /// Seconds from `Retry-After`, when present.
        retry_after: Option<u64>,
    },
    /// The server answered something this client cannot read.
    #[error("the server sent an answer this client does not understand ({what})")]
    InvalidResponse {
        /// What was wrong.
        what: String,
        /// The cause, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// There is no usable session: none saved, or the server refused its
    /// refresh token (expired, revoked, or logged out elsewhere).
    #[error("not logged in")]
    NotLoggedIn,
    /// The saved session could not be read or written.
    #[error(transparent)]
    Store(#[from] crate::config::ConfigError),
}

impl ApiError {
    /// A `Status` error from a code, as a server would answer it.
    pub fn status(status: u16, code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Status {
            status,
            code: Some(code),
            message: message.into(),
            retry_after: None,
        }
    }

    /// The stable error code, if the server gave one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Status { code, .. } => *code,
            _ => None,
        }
    }

    /// True for a 401 / `unauthorized` answer: the token or credentials were
    /// refused.
    pub fn is_unauthorized(&self) -> bool {
        match self {
            Self::Status { status, code, .. } => {
                *code == Some(ErrorCode::Unauthorized) || (*status == 401 && code.is_none())
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_is_recognised_by_code_or_bare_status() {
        assert!(ApiError::status(401, ErrorCode::Unauthorized, "x").is_unauthorized());
        let bare = ApiError::Status {
            status: 401,
            code: None,
            message: String::new(),
            retry_after: None,
        };
        assert!(bare.is_unauthorized());
        assert!(!ApiError::status(401, ErrorCode::InvalidCode, "x").is_unauthorized());
        assert!(!ApiError::NotLoggedIn.is_unauthorized());
    }
}
