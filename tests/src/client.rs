//! A small HTTP client for the server's `/v1` API over the `common::api`
//! wire types. Every call answers a [`Resp`] whatever the status, so tests
//! can check refusals as closely as successes.

use common::api::{
    Base64, ChangePasswordRequest, ErrorBody, ErrorCode, LoginRequest, PreloginRequest,
    RefreshRequest, RegisterRequest, ResendCodeRequest, TotpCodeRequest, VerifyEmailRequest,
    VerifyLoginRequest, paths,
};
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// An answer: status, headers and the raw body.
#[derive(Debug, Clone)]
pub struct Resp {
    /// What was asked, for messages (`POST /v1/auth/login`).
    pub request: String,
    /// HTTP status.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Resp {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Panics unless the status is `status`; returns `self` for chaining.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status,
            status,
            "{} answered {} (expected {status}): {}",
            self.request,
            self.status,
            self.text()
        );
        self
    }

    /// The body as `T` (panics with the body if it does not parse).
    #[track_caller]
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} answered {} with a body that is not a {}: {e}: {}",
                self.request,
                self.status,
                std::any::type_name::<T>(),
                self.text()
            )
        })
    }

    /// Expects `status` and returns the body as `T`.
    #[track_caller]
    pub fn ok<T: DeserializeOwned>(&self, status: u16) -> T {
        self.expect(status).json()
    }

    /// The body as a JSON value.
    #[track_caller]
    pub fn value(&self) -> serde_json::Value {
        self.json()
    }

    /// The JSON error body (panics if the body is not the one error shape,
    /// checked strictly: exactly `{"error": {"code", "message"}}`).
    #[track_caller]
    pub fn error(&self) -> ErrorBody {
        let v = self.value();
        let keys = |v: &serde_json::Value| {
            let mut k: Vec<String> = v
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            k.sort();
            k
        };
        assert_eq!(
            keys(&v),
            ["error"],
            "{}: not the error shape: {v}",
            self.request
        );
        assert_eq!(
            keys(v.get("error").unwrap_or(&serde_json::Value::Null)),
            ["code", "message"],
            "{}: not the error shape: {v}",
            self.request
        );
        self.json()
    }

    /// Expects an error answer with this status and code.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: ErrorCode) -> ErrorBody {
        self.expect(status);
        let e = self.error();
        assert_eq!(e.error.code, code, "{}: {}", self.request, self.text());
        e
    }

    /// The `Retry-After` header in seconds.
    pub fn retry_after(&self) -> Option<u64> {
        self.headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
    }

    /// The `Content-Type` header.
    pub fn content_type(&self) -> String {
        self.headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    }
}

/// The server's API at one base URL.
#[derive(Debug, Clone)]
pub struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    /// A client for `base` (`http://127.0.0.1:PORT`).
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .expect("reqwest client");
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request with an optional raw body (with its content type) and
    /// bearer token.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(Vec<u8>, &str)>,
        bearer: Option<&str>,
    ) -> Resp {
        self.send_with_headers(method, path, body, bearer, &[])
            .await
    }

    /// [`Self::send`] with more request headers.
    pub async fn send_with_headers(
        &self,
        method: Method,
        path: &str,
        body: Option<(Vec<u8>, &str)>,
        bearer: Option<&str>,
        headers: &[(&str, String)],
    ) -> Resp {
        let request = format!("{method} {path}");
        let mut rb = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = bearer {
            rb = rb.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        for (name, value) in headers {
            rb = rb.header(*name, value);
        }
        if let Some((bytes, content_type)) = body {
            rb = rb.header(CONTENT_TYPE, content_type).body(bytes);
        }
        let resp = rb
            .send()
            .await
            .unwrap_or_else(|e| panic!("{request}: no answer: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{request}: reading the body: {e}"))
            .to_vec();
        Resp {
            request,
            status,
            headers,
            body,
        }
    }

    /// `POST path` with a JSON body.
    pub async fn post<T: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &T,
        bearer: Option<&str>,
    ) -> Resp {
        let bytes = serde_json::to_vec(body).expect("serialize");
        self.send(
            Method::POST,
            path,
            Some((bytes, "application/json")),
            bearer,
        )
        .await
    }

    /// `POST path` without a body.
    pub async fn post_empty(&self, path: &str, bearer: Option<&str>) -> Resp {
        self.send(Method::POST, path, None, bearer).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str, bearer: Option<&str>) -> Resp {
        self.send(Method::GET, path, None, bearer).await
    }

    /// `DELETE path`.
    pub async fn delete(&self, path: &str, bearer: Option<&str>) -> Resp {
        self.send(Method::DELETE, path, None, bearer).await
    }

    // ---- the endpoints, typed ----

    /// `POST /v1/auth/register`.
    pub async fn register(&self, req: &RegisterRequest) -> Resp {
        self.post(paths::REGISTER, req, None).await
    }

    /// `POST /v1/auth/verify-email`.
    pub async fn verify_email(&self, email: &str, code: &str) -> Resp {
        let req = VerifyEmailRequest {
            email: email.into(),
            code: code.into(),
        };
        self.post(paths::VERIFY_EMAIL, &req, None).await
    }

    /// `POST /v1/auth/prelogin`.
    pub async fn prelogin(&self, email: &str) -> Resp {
        let req = PreloginRequest {
            email: email.into(),
        };
        self.post(paths::PRELOGIN, &req, None).await
    }

    /// `POST /v1/auth/login`.
    pub async fn login(&self, email: &str, auth_key: &[u8]) -> Resp {
        let req = LoginRequest {
            email: email.into(),
            auth_key: Base64(auth_key.to_vec()),
        };
        self.post(paths::LOGIN, &req, None).await
    }

    /// `POST /v1/auth/login/resend`.
    pub async fn resend(&self, ticket: &str) -> Resp {
        let req = ResendCodeRequest {
            ticket: ticket.into(),
        };
        self.post(paths::LOGIN_RESEND, &req, None).await
    }

    /// `POST /v1/auth/login/verify`.
    pub async fn verify_login(&self, ticket: &str, code: &str, device: Option<&str>) -> Resp {
        let req = VerifyLoginRequest {
            ticket: ticket.into(),
            code: code.into(),
            device: device.map(Into::into),
        };
        self.post(paths::LOGIN_VERIFY, &req, None).await
    }

    /// `POST /v1/auth/refresh`.
    pub async fn refresh(&self, refresh_token: &str) -> Resp {
        let req = RefreshRequest {
            refresh_token: refresh_token.into(),
        };
        self.post(paths::REFRESH, &req, None).await
    }

    /// `POST /v1/auth/logout`.
    pub async fn logout(&self, access: &str) -> Resp {
        self.post_empty(paths::LOGOUT, Some(access)).await
    }

    /// `GET /v1/account`.
    pub async fn account(&self, access: &str) -> Resp {
        self.get(paths::ACCOUNT, Some(access)).await
    }

    /// `POST /v1/account/password`.
    pub async fn change_password(&self, access: &str, req: &ChangePasswordRequest) -> Resp {
        self.post(paths::PASSWORD, req, Some(access)).await
    }

    /// `GET /v1/sessions`.
    pub async fn sessions(&self, access: &str) -> Resp {
        self.get(paths::SESSIONS, Some(access)).await
    }

    /// `DELETE /v1/sessions/{id}`.
    pub async fn revoke_session(&self, access: &str, id: &str) -> Resp {
        self.delete(&format!("/v1/sessions/{id}"), Some(access))
            .await
    }

    /// `POST /v1/sessions/revoke-all`.
    pub async fn revoke_all(&self, access: &str) -> Resp {
        self.post_empty(paths::SESSIONS_REVOKE_ALL, Some(access))
            .await
    }

    /// `POST /v1/totp/enroll`.
    pub async fn totp_enroll(&self, access: &str) -> Resp {
        self.post_empty(paths::TOTP_ENROLL, Some(access)).await
    }

    /// `POST /v1/totp/activate`.
    pub async fn totp_activate(&self, access: &str, code: &str) -> Resp {
        let req = TotpCodeRequest { code: code.into() };
        self.post(paths::TOTP_ACTIVATE, &req, Some(access)).await
    }

    /// `POST /v1/totp/disable`.
    pub async fn totp_disable(&self, access: &str, code: &str) -> Resp {
        let req = TotpCodeRequest { code: code.into() };
        self.post(paths::TOTP_DISABLE, &req, Some(access)).await
    }

    /// `GET /v1/audit` (newest first).
    pub async fn audit(&self, access: &str) -> Resp {
        self.get(&format!("{}?limit=200", paths::AUDIT), Some(access))
            .await
    }
}

/// Names the typed answers so tests can write `resp.ok::<Accepted>(202)`
/// without importing each type.
pub mod types {
    pub use common::api::{
        Accepted, AccountInfo, AuditEvent, ErrorBody, ErrorCode, LoginResponse, LoginTicket,
        PreloginResponse, SecondFactor, SessionInfo, Tokens, TotpEnrollment,
    };
}
