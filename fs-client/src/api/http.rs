//! [`HttpApi`]: [`AccountApi`] and [`VaultApi`] over HTTPS with reqwest (rustls, aws-lc-rs).
//!
//! JSON in and out; bearer tokens in `Authorization`; every error answer is
//! read as the one `{"error":{"code","message"}}` shape plus `Retry-After`.
//! Redirects are not followed (a redirect could carry a request somewhere
//! the user did not name), answers are read up to [`MAX_RESPONSE_BYTES`],
//! and connect and whole-request timeouts bound every call. Only method,
//! path and status are logged, never a body or a header.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use common::api::tree::{
    self as wire, BatchRequest, BatchResponse, ChangePage, CommitRequest, CreateNodeRequest,
    EntryInfo, EntryPage, LinkRequest, NameTags, NodeIds, NodeInfo, RenameRequest, StatFs,
    UpdateRecordRequest,
};
use common::api::{
    Accepted, AccountInfo, AccountKeys, AuditEvent, ChangePasswordRequest, ErrorBody, LoginRequest,
    LoginResponse, LoginTicket, PreloginRequest, PreloginResponse, RefreshRequest, RegisterRequest,
    ResendCodeRequest, SessionInfo, Tokens, TotpCodeRequest, TotpEnrollment, VerifyEmailRequest,
    VerifyLoginRequest, paths,
};
use common::crypto::name::NameTag;
use common::{NodeId, ObjectId};
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, RANGE, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use zeroize::Zeroizing;

use super::tree::{ByteRange, ListQuery, ObjectSink, VaultApi};
use super::{AccessToken, AccountApi, ApiError, ApiResult, AuditQuery, BoxError};
use crate::cache::buffers::POOL;
use crate::server_url::ServerUrl;

/// The most bytes read from one answer.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// The most bytes read from one object download (the server's default
/// object limit).
pub const MAX_OBJECT_BYTES: usize = 1024 * 1024 * 1024;
/// Default time allowed to connect.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time allowed for a whole request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Why the HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpSetupError {
    /// The CA file could not be read or parsed.
    #[error("cannot use the CA certificate file {path}")]
    CaFile {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// reqwest refused the configuration.
    #[error("cannot set up the HTTP client")]
    Client(#[source] reqwest::Error),
}

/// Settings of the HTTP client.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Time allowed for a whole request.
    pub timeout: Duration,
    /// Extra trusted root certificates (PEM), e.g. a test CA.
    pub ca_file: Option<std::path::PathBuf>,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            connect_timeout: CONNECT_TIMEOUT,
            timeout: REQUEST_TIMEOUT,
            ca_file: None,
        }
    }
}

/// The account API over HTTP.
#[derive(Debug, Clone)]
pub struct HttpApi {
    server: ServerUrl,
    client: reqwest::Client,
}

fn read_ca(path: &Path) -> Result<Vec<reqwest::Certificate>, HttpSetupError> {
    let shown = path.display().to_string();
    let pem = std::fs::read(path).map_err(|e| HttpSetupError::CaFile {
        path: shown.clone(),
        source: Box::new(e),
    })?;
    reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| HttpSetupError::CaFile {
        path: shown,
        source: Box::new(e),
    })
}

impl HttpApi {
    /// A client for `server`.
    pub fn new(server: ServerUrl, options: &HttpOptions) -> Result<Self, HttpSetupError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("vault/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(options.connect_timeout)
            .timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(path) = &options.ca_file {
            builder = builder.tls_certs_merge(read_ca(path)?);
        }
        let client = builder.build().map_err(HttpSetupError::Client)?;
        Ok(Self { server, client })
    }

    /// The server this client talks to.
    pub fn server(&self) -> &ServerUrl {
        &self.server
    }

    fn transport_error(&self, e: reqwest::Error) -> ApiError {
        let server = self.server.to_string();
        if e.is_timeout() {
            ApiError::Timeout { server }
        } else if e.is_decode() {
            ApiError::InvalidResponse {
                what: "unreadable body".into(),
                source: Some(Box::new(e)),
            }
        } else {
            ApiError::Unreachable {
                server,
                source: Box::new(e.without_url()),
            }
        }
    }

    /// Sends one request and returns the body of a successful answer.
    async fn send(
        &self,
        method: Method,
        url: Url,
        token: Option<&AccessToken>,
        body: Option<Zeroizing<Vec<u8>>>,
    ) -> ApiResult<Zeroizing<Vec<u8>>> {
        let path = url.path().to_owned();
        let mut req = self.client.request(method.clone(), url);
        if let Some(token) = token {
            req = req.header(AUTHORIZATION, format!("Bearer {}", token.expose()));
        }
        if let Some(body) = body {
            req = req
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        let mut resp = req.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        tracing::debug!(%method, path, status = status.as_u16(), "request");
        let retry_after = retry_after(resp.headers());
        let mut bytes = Zeroizing::new(Vec::new());
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport_error(e))? {
            if bytes.len().saturating_add(chunk.len()) > MAX_RESPONSE_BYTES {
                return Err(ApiError::InvalidResponse {
                    what: format!("answer larger than {MAX_RESPONSE_BYTES} bytes"),
                    source: None,
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        if status.is_success() {
            Ok(bytes)
        } else {
            Err(error_from(status, &bytes, retry_after))
        }
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        token: Option<&AccessToken>,
        body: Option<Zeroizing<Vec<u8>>>,
    ) -> ApiResult<T> {
        let bytes = self.send(method, url, token, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| ApiError::InvalidResponse {
            what: "malformed JSON".into(),
            source: Some(Box::new(e)),
        })
    }

    async fn post<B: Serialize + Sync, T: DeserializeOwned>(
        &self,
        path: &str,
        token: Option<&AccessToken>,
        body: &B,
    ) -> ApiResult<T> {
        let body = encode(body)?;
        self.json(Method::POST, self.url(path), token, Some(body))
            .await
    }

    async fn post_empty<B: Serialize + Sync>(
        &self,
        path: &str,
        token: &AccessToken,
        body: Option<&B>,
    ) -> ApiResult<()> {
        let body = body.map(encode).transpose()?;
        self.send(Method::POST, self.url(path), Some(token), body)
            .await
            .map(drop)
    }

    fn url(&self, path: &str) -> Url {
        self.server.endpoint(path, &[])
    }

    /// The URL of a tree route: `template` with `{id}` (and `{tag}`) filled
    /// in.
    fn tree_url(&self, template: &str, id: &str, tag: Option<&NameTag>) -> Url {
        let mut path = template.replace("{id}", id);
        if let Some(tag) = tag {
            path = path.replace("{tag}", &hex::encode(tag.as_bytes()));
        }
        self.url(&path)
    }

    /// `GET /v1/objects/{id}` with the bearer token, not yet sent.
    fn object_get(&self, token: &AccessToken, id: ObjectId) -> reqwest::RequestBuilder {
        let url = self.tree_url(wire::paths::OBJECT, &id.to_string(), None);
        self.client
            .get(url)
            .header(AUTHORIZATION, format!("Bearer {}", token.expose()))
    }

    /// Sends an object request (binary in or out) and returns the status and
    /// body of a successful answer, read up to [`MAX_OBJECT_BYTES`].
    async fn send_object(&self, req: reqwest::RequestBuilder) -> ApiResult<(StatusCode, Vec<u8>)> {
        let (status, mut resp) = self.object_response(req).await?;
        let announced = resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut bytes = POOL.take(announced.unwrap_or(0).min(MAX_OBJECT_BYTES));
        let read = self
            .each_piece(&mut resp, MAX_OBJECT_BYTES, |chunk| {
                bytes.extend_from_slice(chunk);
                true
            })
            .await;
        match read {
            Ok(()) => Ok((status, bytes)),
            Err(e) => {
                POOL.give(bytes);
                Err(e)
            }
        }
    }

    /// Sends an object request and returns the answer, its body unread,
    /// when it is a success; an error answer is read and returned as the
    /// error.
    async fn object_response(
        &self,
        req: reqwest::RequestBuilder,
    ) -> ApiResult<(StatusCode, reqwest::Response)> {
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        tracing::debug!(
            path = resp.url().path(),
            status = status.as_u16(),
            "object request"
        );
        if status.is_success() {
            return Ok((status, resp));
        }
        let retry_after = retry_after(resp.headers());
        let mut resp = resp;
        let mut body = Vec::new();
        self.each_piece(&mut resp, MAX_RESPONSE_BYTES, |chunk| {
            body.extend_from_slice(chunk);
            true
        })
        .await?;
        Err(error_from(status, &body, retry_after))
    }

    /// Hands the body of `resp` to `take` as it arrives, up to `limit`
    /// bytes in all, until `take` refuses a piece.
    async fn each_piece(
        &self,
        resp: &mut reqwest::Response,
        limit: usize,
        mut take: impl FnMut(&[u8]) -> bool,
    ) -> ApiResult<()> {
        let mut total = 0usize;
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport_error(e))? {
            total = total.saturating_add(chunk.len());
            if total > limit {
                return Err(ApiError::InvalidResponse {
                    what: format!("answer larger than {limit} bytes"),
                    source: None,
                });
            }
            if !take(&chunk) {
                break;
            }
        }
        Ok(())
    }
}

fn encode<B: Serialize>(body: &B) -> ApiResult<Zeroizing<Vec<u8>>> {
    serde_json::to_vec(body)
        .map(Zeroizing::new)
        .map_err(|e| ApiError::InvalidResponse {
            what: "request could not be encoded".into(),
            source: Some(Box::new(e)),
        })
}

/// `Retry-After` in seconds (the HTTP-date form is not used by the server).
fn retry_after(headers: &HeaderMap) -> Option<u64> {
    headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()
}

/// An error answer: the JSON shape when present, else the bare status.
fn error_from(status: StatusCode, body: &[u8], retry_after: Option<u64>) -> ApiError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let (code, message) = match parsed {
        Some(b) => (Some(b.error.code), b.error.message),
        None => (
            None,
            status
                .canonical_reason()
                .unwrap_or("unexpected status")
                .to_owned(),
        ),
    };
    ApiError::Status {
        status: status.as_u16(),
        code,
        message,
        retry_after,
    }
}

impl AccountApi for HttpApi {
    async fn register(&self, req: &RegisterRequest) -> ApiResult<Accepted> {
        self.post(paths::REGISTER, None, req).await
    }

    async fn verify_email(&self, req: &VerifyEmailRequest) -> ApiResult<Accepted> {
        self.post(paths::VERIFY_EMAIL, None, req).await
    }

    async fn prelogin(&self, req: &PreloginRequest) -> ApiResult<PreloginResponse> {
        self.post(paths::PRELOGIN, None, req).await
    }

    async fn login(&self, req: &LoginRequest) -> ApiResult<LoginTicket> {
        self.post(paths::LOGIN, None, req).await
    }

    async fn resend_code(&self, req: &ResendCodeRequest) -> ApiResult<Accepted> {
        self.post(paths::LOGIN_RESEND, None, req).await
    }

    async fn verify_login(&self, req: &VerifyLoginRequest) -> ApiResult<LoginResponse> {
        self.post(paths::LOGIN_VERIFY, None, req).await
    }

    async fn refresh(&self, req: &RefreshRequest) -> ApiResult<Tokens> {
        self.post(paths::REFRESH, None, req).await
    }

    async fn logout(&self, token: &AccessToken) -> ApiResult<()> {
        self.post_empty::<()>(paths::LOGOUT, token, None).await
    }

    async fn account(&self, token: &AccessToken) -> ApiResult<AccountInfo> {
        self.json(Method::GET, self.url(paths::ACCOUNT), Some(token), None)
            .await
    }

    async fn account_keys(&self, token: &AccessToken) -> ApiResult<AccountKeys> {
        self.json(
            Method::GET,
            self.url(paths::ACCOUNT_KEYS),
            Some(token),
            None,
        )
        .await
    }

    async fn change_password(
        &self,
        token: &AccessToken,
        req: &ChangePasswordRequest,
    ) -> ApiResult<()> {
        self.post_empty(paths::PASSWORD, token, Some(req)).await
    }

    async fn sessions(&self, token: &AccessToken) -> ApiResult<Vec<SessionInfo>> {
        self.json(Method::GET, self.url(paths::SESSIONS), Some(token), None)
            .await
    }

    async fn revoke_session(&self, token: &AccessToken, id: &str) -> ApiResult<()> {
        let url = self.server.endpoint(paths::SESSIONS, &[id]);
        self.send(Method::DELETE, url, Some(token), None)
            .await
            .map(drop)
    }

    async fn revoke_all_sessions(&self, token: &AccessToken) -> ApiResult<()> {
        self.post_empty::<()>(paths::SESSIONS_REVOKE_ALL, token, None)
            .await
    }

    async fn totp_enroll(&self, token: &AccessToken) -> ApiResult<TotpEnrollment> {
        self.json(
            Method::POST,
            self.url(paths::TOTP_ENROLL),
            Some(token),
            None,
        )
        .await
    }

    async fn totp_activate(&self, token: &AccessToken, req: &TotpCodeRequest) -> ApiResult<()> {
        self.post_empty(paths::TOTP_ACTIVATE, token, Some(req))
            .await
    }

    async fn totp_disable(&self, token: &AccessToken, req: &TotpCodeRequest) -> ApiResult<()> {
        self.post_empty(paths::TOTP_DISABLE, token, Some(req)).await
    }

    async fn audit(&self, token: &AccessToken, query: AuditQuery) -> ApiResult<Vec<AuditEvent>> {
        let mut url = self.url(paths::AUDIT);
        if query.before.is_some() || query.limit.is_some() {
            let mut pairs = url.query_pairs_mut();
            if let Some(before) = query.before {
                pairs.append_pair("before", &before.to_string());
            }
            if let Some(limit) = query.limit {
                pairs.append_pair("limit", &limit.to_string());
            }
        }
        self.json(Method::GET, url, Some(token), None).await
    }
}

impl VaultApi for HttpApi {
    async fn create_node(
        &self,
        token: &AccessToken,
        req: &CreateNodeRequest,
    ) -> ApiResult<NodeInfo> {
        self.post(wire::paths::NODES, Some(token), req).await
    }

    async fn nodes(&self, token: &AccessToken, req: &NodeIds) -> ApiResult<Vec<NodeInfo>> {
        self.post(wire::paths::NODES_BATCH, Some(token), req).await
    }

    async fn node(&self, token: &AccessToken, id: NodeId) -> ApiResult<NodeInfo> {
        let url = self.tree_url(wire::paths::NODE, &id.to_string(), None);
        self.json(Method::GET, url, Some(token), None).await
    }

    async fn update_record(
        &self,
        token: &AccessToken,
        id: NodeId,
        req: &UpdateRecordRequest,
    ) -> ApiResult<NodeInfo> {
        let url = self.tree_url(wire::paths::NODE_RECORD, &id.to_string(), None);
        self.json(Method::PUT, url, Some(token), Some(encode(req)?))
            .await
    }

    async fn commit(
        &self,
        token: &AccessToken,
        id: NodeId,
        req: &CommitRequest,
    ) -> ApiResult<NodeInfo> {
        let url = self.tree_url(wire::paths::NODE_COMMIT, &id.to_string(), None);
        self.json(Method::POST, url, Some(token), Some(encode(req)?))
            .await
    }

    async fn list(
        &self,
        token: &AccessToken,
        dir: NodeId,
        query: ListQuery,
    ) -> ApiResult<EntryPage> {
        let mut url = self.tree_url(wire::paths::ENTRIES, &dir.to_string(), None);
        if query.after.is_some() || query.limit.is_some() {
            let mut pairs = url.query_pairs_mut();
            if let Some(after) = &query.after {
                pairs.append_pair("after", &hex::encode(after.as_bytes()));
            }
            if let Some(limit) = query.limit {
                pairs.append_pair("limit", &limit.to_string());
            }
        }
        self.json(Method::GET, url, Some(token), None).await
    }

    async fn lookup(
        &self,
        token: &AccessToken,
        dir: NodeId,
        tag: &NameTag,
    ) -> ApiResult<EntryInfo> {
        let url = self.tree_url(wire::paths::ENTRY, &dir.to_string(), Some(tag));
        self.json(Method::GET, url, Some(token), None).await
    }

    async fn lookup_batch(
        &self,
        token: &AccessToken,
        dir: NodeId,
        req: &NameTags,
    ) -> ApiResult<Vec<EntryInfo>> {
        let url = self.tree_url(wire::paths::LOOKUP_BATCH, &dir.to_string(), None);
        self.json(Method::POST, url, Some(token), Some(encode(req)?))
            .await
    }

    async fn remove(
        &self,
        token: &AccessToken,
        dir: NodeId,
        tag: &NameTag,
        is_dir: bool,
    ) -> ApiResult<()> {
        let mut url = self.tree_url(wire::paths::ENTRY, &dir.to_string(), Some(tag));
        url.query_pairs_mut()
            .append_pair("dir", if is_dir { "true" } else { "false" });
        self.send(Method::DELETE, url, Some(token), None)
            .await
            .map(drop)
    }

    async fn link(&self, token: &AccessToken, req: &LinkRequest) -> ApiResult<NodeInfo> {
        self.post(wire::paths::LINKS, Some(token), req).await
    }

    async fn rename(&self, token: &AccessToken, req: &RenameRequest) -> ApiResult<()> {
        self.post_empty(wire::paths::RENAME, token, Some(req)).await
    }

    async fn batch(&self, token: &AccessToken, req: &BatchRequest) -> ApiResult<BatchResponse> {
        self.post(wire::paths::BATCH, Some(token), req).await
    }

    async fn upload_object(
        &self,
        token: &AccessToken,
        id: ObjectId,
        body: Bytes,
        crc32c: u32,
    ) -> ApiResult<()> {
        let url = self.tree_url(wire::paths::OBJECT, &id.to_string(), None);
        let req = self
            .client
            .put(url)
            .header(AUTHORIZATION, format!("Bearer {}", token.expose()))
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, body.len())
            .header(wire::CRC32C_HEADER, hex::encode(crc32c.to_be_bytes()))
            .body(body);
        self.send_object(req).await.map(drop)
    }

    async fn download_object(
        &self,
        token: &AccessToken,
        id: ObjectId,
        range: Option<ByteRange>,
    ) -> ApiResult<Vec<u8>> {
        let mut req = self.object_get(token, id);
        if let Some(range) = &range {
            req = req.header(RANGE, range.header());
        }
        let (status, bytes) = self.send_object(req).await?;
        match (range.is_some(), status) {
            (false, StatusCode::OK) | (true, StatusCode::PARTIAL_CONTENT) => Ok(bytes),
            (_, other) => Err(ApiError::InvalidResponse {
                what: format!("unexpected status {} for an object", other.as_u16()),
                source: None,
            }),
        }
    }

    async fn download_object_into<S: ObjectSink>(
        &self,
        token: &AccessToken,
        id: ObjectId,
        sink: &mut S,
    ) -> ApiResult<()> {
        let (status, mut resp) = self.object_response(self.object_get(token, id)).await?;
        if status != StatusCode::OK {
            return Err(ApiError::InvalidResponse {
                what: format!("unexpected status {} for an object", status.as_u16()),
                source: None,
            });
        }
        self.each_piece(&mut resp, MAX_OBJECT_BYTES, |chunk| sink.take(chunk))
            .await
    }

    async fn statfs(&self, token: &AccessToken) -> ApiResult<StatFs> {
        self.json(
            Method::GET,
            self.url(wire::paths::STATFS),
            Some(token),
            None,
        )
        .await
    }

    async fn changes(
        &self,
        token: &AccessToken,
        since: i64,
        limit: Option<u32>,
    ) -> ApiResult<ChangePage> {
        let mut url = self.url(wire::paths::CHANGES);
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("since", &since.to_string());
            if let Some(limit) = limit {
                pairs.append_pair("limit", &limit.to_string());
            }
        }
        self.json(Method::GET, url, Some(token), None).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::api::ErrorCode;
    use reqwest::header::HeaderValue;

    #[test]
    fn error_body_and_retry_after_are_read() {
        let body = br#"{"error":{"code":"rate_limited","message":"slow down"}}"#;
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static(" 42 "));
        match error_from(StatusCode::TOO_MANY_REQUESTS, body, retry_after(&h)) {
            ApiError::Status {
                status,
                code,
                message,
                retry_after,
            } => {
                assert_eq!(status, 429);
                assert_eq!(code, Some(ErrorCode::RateLimited));
                assert_eq!(message, "slow down");
                assert_eq!(retry_after, Some(42));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_body_without_the_shape_keeps_the_status() {
        let e = error_from(StatusCode::BAD_GATEWAY, b"<html>", None);
        assert!(matches!(
            e,
            ApiError::Status { status: 502, code: None, ref message, .. } if message == "Bad Gateway"
        ));
        let mut h = HeaderMap::new();
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable_with_the_server_named() {
        // Bind then drop a listener to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = ServerUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let api = HttpApi::new(server, &HttpOptions::default()).unwrap();
        let err = api
            .prelogin(&PreloginRequest {
                email: "a@b".into(),
            })
            .await
            .unwrap_err();
        match err {
            ApiError::Unreachable { server, .. } => {
                assert_eq!(server, format!("http://127.0.0.1:{port}"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// A one-shot HTTP server on loopback answering `response` to the first
    /// request and handing back what it received.
    async fn one_shot(head: &str, body: &str) -> (ServerUrl, tokio::task::JoinHandle<String>) {
        let response = format!(
            "{head}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 65536];
            let mut got = Vec::new();
            // Read headers and the (small) body.
            loop {
                let n = sock.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if got.len() >= end + 4 + len {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            sock.write_all(response.as_bytes()).await.unwrap();
            sock.shutdown().await.unwrap();
            String::from_utf8_lossy(&got).to_string()
        });
        (
            ServerUrl::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
            handle,
        )
    }

    #[tokio::test]
    async fn requests_carry_json_and_bearer_and_errors_are_parsed() {
        let (server, seen) = one_shot(
            "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\nretry-after: 7",
            r#"{"error":{"code":"rate_limited","message":"wait"}}"#,
        )
        .await;
        let api = HttpApi::new(server, &HttpOptions::default()).unwrap();
        let err = api
            .totp_disable(
                &AccessToken::new("tok-123".into()),
                &TotpCodeRequest {
                    code: "123456".into(),
                },
            )
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            ApiError::Status {
                status: 429,
                code: Some(ErrorCode::RateLimited),
                retry_after: Some(7),
                ..
            }
        ));
        let request = seen.await.unwrap();
        assert!(request.starts_with("POST /v1/totp/disable HTTP/1.1"));
        assert!(request.contains("authorization: Bearer tok-123"));
        assert!(request.contains("content-type: application/json"));
        assert!(request.ends_with(r#"{"code":"123456"}"#));
    }

    #[tokio::test]
    async fn account_keys_are_read_with_the_bearer_token() {
        let keys = AccountKeys {
            kdf: common::crypto::kdf::KdfParams::generate().unwrap(),
            wrapped_vault_key: common::api::Base64(vec![7; 60]),
        };
        let body = serde_json::to_string(&keys).unwrap();
        let (server, seen) =
            one_shot("HTTP/1.1 200 OK\r\ncontent-type: application/json", &body).await;
        let api = HttpApi::new(server, &HttpOptions::default()).unwrap();
        let got = api
            .account_keys(&AccessToken::new("tok-9".into()))
            .await
            .unwrap();
        assert_eq!(got.kdf, keys.kdf);
        assert_eq!(got.wrapped_vault_key, keys.wrapped_vault_key);
        let request = seen.await.unwrap();
        assert!(request.starts_with("GET /v1/account/keys HTTP/1.1"));
        assert!(request.contains("authorization: Bearer tok-9"));
    }

    #[tokio::test]
    async fn success_bodies_are_decoded_and_ids_encoded() {
        let (server, seen) = one_shot("HTTP/1.1 204 No Content", "").await;
        let api = HttpApi::new(server, &HttpOptions::default()).unwrap();
        api.revoke_session(&AccessToken::new("t".into()), "s/1")
            .await
            .unwrap();
        assert!(
            seen.await
                .unwrap()
                .starts_with("DELETE /v1/sessions/s%2F1 HTTP/1.1")
        );

        let (server, seen) =
            one_shot("HTTP/1.1 200 OK\r\ncontent-type: application/json", "[]").await;
        let api = HttpApi::new(server, &HttpOptions::default()).unwrap();
        let events = api
            .audit(
                &AccessToken::new("t".into()),
                AuditQuery {
                    before: Some(9),
                    limit: Some(5),
                },
            )
            .await
            .unwrap();
        assert!(events.is_empty());
        assert!(
            seen.await
                .unwrap()
                .starts_with("GET /v1/audit?before=9&limit=5 HTTP/1.1")
        );
    }
}
