//! One simulated client's HTTP connection to the server: JSON calls and
//! object uploads over its own `reqwest::Client` (so each simulated client
//! keeps its own keep-alive connection, as separate machines would), with
//! every failure returned as a [`CallError`] instead of a panic: a load
//! generator counts errors, it does not stop at the first one.
//!
//! Object bodies are `&'static [u8]` (the pool is generated once and leaked
//! for the life of the process), so an upload copies nothing on the client.

use std::fmt;
use std::time::Duration;

use common::ObjectId;
use common::api::ErrorBody;
use common::api::tree::{SHA256_HEADER, paths};
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How much of an error answer's body is kept for messages.
const ERROR_BODY_CHARS: usize = 300;

/// Why a call failed.
#[derive(Debug)]
pub enum CallError {
    /// The server answered with an unexpected status.
    Status {
        /// What was asked (`POST /v1/nodes`).
        request: String,
        /// The status.
        status: u16,
        /// `Retry-After` in seconds, if any.
        retry_after: Option<u64>,
        /// The error message from the body (or the start of the body).
        message: String,
    },
    /// No answer: connection refused or reset, timeout.
    Transport {
        /// What was asked.
        request: String,
        /// The cause.
        source: reqwest::Error,
    },
    /// A success answer whose JSON could not be read.
    Decode {
        /// What was asked.
        request: String,
        /// The cause.
        source: serde_json::Error,
    },
}

impl CallError {
    /// The seconds to wait before trying again when the server rate-limited
    /// the call (429), else `None`.
    pub fn rate_limited(&self) -> Option<u64> {
        match self {
            Self::Status {
                status: 429,
                retry_after,
                ..
            } => Some(retry_after.unwrap_or(1).max(1)),
            _ => None,
        }
    }

    /// True when the server did not answer at all.
    pub fn is_transport(&self) -> bool {
        matches!(self, Self::Transport { .. })
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status {
                request,
                status,
                message,
                ..
            } => write!(f, "{request} answered {status}: {message}"),
            Self::Transport { request, source } => {
                write!(f, "{request}: no answer: {}", ErrorChain(source))
            }
            Self::Decode { request, source } => {
                write!(f, "{request}: unreadable JSON answer: {source}")
            }
        }
    }
}

/// The causes are part of the message (so a counted error's one line says
/// everything), not chained again as sources.
impl std::error::Error for CallError {}

/// An error with its causes on one line (reqwest's own message is terse).
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

/// The server's API at one base URL, for one simulated client.
#[derive(Debug, Clone)]
pub struct Http {
    base: String,
    client: reqwest::Client,
}

impl Http {
    /// A client of `base` (`http://127.0.0.1:PORT`) whose calls give up
    /// after `timeout`.
    pub fn new(base: &str, timeout: Duration) -> reqwest::Result<Self> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("vault-load/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            client,
        })
    }

    /// Sends `method path` with an optional JSON body and bearer token and
    /// decodes a success answer as `T`.
    pub async fn json<B, T>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        bearer: Option<&str>,
    ) -> Result<T, CallError>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let request = format!("{method} {}", strip_query(path));
        let mut rb = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = bearer {
            rb = rb.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(body) = body {
            let bytes = serde_json::to_vec(body).map_err(|source| CallError::Decode {
                request: request.clone(),
                source,
            })?;
            rb = rb.header(CONTENT_TYPE, "application/json").body(bytes);
        }
        let bytes = self.finish(request.clone(), rb).await?;
        serde_json::from_slice(&bytes).map_err(|source| CallError::Decode { request, source })
    }

    /// `PUT /v1/objects/{id}` with `body` and its SHA-256 (hex), as the
    /// client uploads an object.
    pub async fn put_object(
        &self,
        bearer: &str,
        id: ObjectId,
        body: &'static [u8],
        sha256_hex: &str,
    ) -> Result<(), CallError> {
        let path = paths::OBJECT.replace("{id}", &id.to_string());
        let rb = self
            .client
            .put(format!("{}{path}", self.base))
            .header(AUTHORIZATION, format!("Bearer {bearer}"))
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, body.len())
            .header(SHA256_HEADER, sha256_hex)
            .body(body);
        self.finish("PUT /v1/objects/{id}".into(), rb)
            .await
            .map(drop)
    }

    /// `GET path` without a token, for the readiness check; the status.
    pub async fn probe(&self, path: &str) -> Result<u16, CallError> {
        let request = format!("GET {path}");
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .map_err(|source| CallError::Transport { request, source })?;
        Ok(resp.status().as_u16())
    }

    /// Sends a request and reads the whole answer: the body of a success,
    /// else a [`CallError::Status`].
    async fn finish(
        &self,
        request: String,
        rb: reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, CallError> {
        let resp = match rb.send().await {
            Ok(resp) => resp,
            Err(source) => {
                return Err(CallError::Transport {
                    request,
                    source: source.without_url(),
                });
            }
        };
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(source) => {
                return Err(CallError::Transport {
                    request,
                    source: source.without_url(),
                });
            }
        };
        if status.is_success() {
            Ok(bytes.to_vec())
        } else {
            Err(CallError::Status {
                request,
                status: status.as_u16(),
                retry_after,
                message: error_message(status, &bytes),
            })
        }
    }
}

/// The message of an error answer: the JSON error shape's, else the start
/// of the body, else the status's reason.
fn error_message(status: StatusCode, body: &[u8]) -> String {
    if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
        return parsed.error.message;
    }
    let text: String = String::from_utf8_lossy(body)
        .chars()
        .take(ERROR_BODY_CHARS)
        .collect();
    if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    }
}

/// `path` without its query string, for messages.
fn strip_query(path: &str) -> &str {
    path.split_once('?').map_or(path, |(p, _)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_prefer_the_json_shape() {
        let body = br#"{"error":{"code":"rate_limited","message":"slow down"}}"#;
        assert_eq!(
            error_message(StatusCode::TOO_MANY_REQUESTS, body),
            "slow down"
        );
        assert_eq!(error_message(StatusCode::BAD_GATEWAY, b""), "Bad Gateway");
        assert_eq!(error_message(StatusCode::BAD_GATEWAY, b"<html>"), "<html>");
    }

    #[test]
    fn rate_limited_calls_say_how_long_to_wait() {
        let e = |status, retry_after| CallError::Status {
            request: "POST /v1/auth/login".into(),
            status,
            retry_after,
            message: String::new(),
        };
        assert_eq!(e(429, Some(7)).rate_limited(), Some(7));
        assert_eq!(e(429, None).rate_limited(), Some(1));
        assert_eq!(e(429, Some(0)).rate_limited(), Some(1));
        assert_eq!(e(500, Some(7)).rate_limited(), None);
    }
}
