//! The document against the router it describes.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt as _;

use super::{BEARER, OPENAPI_PATH};
use crate::config::{Settings, SettingsArgs};
use crate::mail::MemoryMailer;

/// Every operation of the API. Adding, removing or renaming a route must
/// change this list (and the document with it).
const EXPECTED: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/v1/openapi.json"),
    ("POST", "/v1/auth/register"),
    ("POST", "/v1/auth/verify-email"),
    ("POST", "/v1/auth/prelogin"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/login/resend"),
    ("POST", "/v1/auth/login/verify"),
    ("POST", "/v1/auth/refresh"),
    ("POST", "/v1/auth/logout"),
    ("GET", "/v1/account"),
    ("POST", "/v1/account/password"),
    ("GET", "/v1/account/keys"),
    ("GET", "/v1/sessions"),
    ("DELETE", "/v1/sessions/{id}"),
    ("POST", "/v1/sessions/revoke-all"),
    ("POST", "/v1/totp/enroll"),
    ("POST", "/v1/totp/activate"),
    ("POST", "/v1/totp/disable"),
    ("GET", "/v1/audit"),
    ("POST", "/v1/nodes"),
    ("POST", "/v1/nodes/batch"),
    ("GET", "/v1/nodes/{id}"),
    ("PUT", "/v1/nodes/{id}/record"),
    ("POST", "/v1/nodes/{id}/commit"),
    ("GET", "/v1/dirs/{id}/entries"),
    ("GET", "/v1/dirs/{id}/entries/{tag}"),
    ("DELETE", "/v1/dirs/{id}/entries/{tag}"),
    ("POST", "/v1/dirs/{id}/lookup"),
    ("POST", "/v1/links"),
    ("POST", "/v1/rename"),
    ("PUT", "/v1/objects/{id}"),
    ("GET", "/v1/objects/{id}"),
    ("GET", "/v1/statfs"),
    ("GET", "/v1/changes"),
    ("POST", "/v1/batch"),
];

/// The operations without a bearer token.
const PUBLIC: &[&str] = &[
    "/healthz",
    "/readyz",
    "/metrics",
    "/v1/openapi.json",
    "/v1/auth/register",
    "/v1/auth/verify-email",
    "/v1/auth/prelogin",
    "/v1/auth/login",
    "/v1/auth/login/resend",
    "/v1/auth/login/verify",
    "/v1/auth/refresh",
];

const METHODS: [&str; 5] = ["GET", "PUT", "POST", "DELETE", "PATCH"];

/// The real router over a SQLite store and a file object store in `dir`.
async fn app(dir: &std::path::Path) -> Router {
    let settings = Settings::resolve(SettingsArgs {
        data_dir: Some(dir.to_path_buf()),
        ..SettingsArgs::default()
    })
    .unwrap();
    let store = crate::store::connect(&format!("sqlite://{}", dir.join("t.sqlite").display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let state = crate::build_state_with(&settings, store, Some(Arc::new(MemoryMailer::default())))
        .await
        .unwrap();
    super::super::router(state, settings.max_body)
}

/// Sends `method path` without a body or token, from a client address.
async fn send(app: &Router, method: &str, path: &str) -> (StatusCode, Vec<u8>) {
    let mut request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(path)
        .body(Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 7], 40000))));
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, body.to_vec())
}

/// The served document.
async fn spec(app: &Router) -> Value {
    let (status, body) = send(app, "GET", OPENAPI_PATH).await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_slice(&body).unwrap()
}

/// `path` with its parameters filled with well-formed values.
fn concrete(path: &str) -> String {
    path.replace("{id}", &"ab".repeat(16))
        .replace("{tag}", &"cd".repeat(32))
}

/// (method, path) of every operation in the document.
fn operations(spec: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if METHODS.contains(&method.to_uppercase().as_str()) {
                out.insert((method.to_uppercase(), path.clone()));
            } else {
                assert!(
                    matches!(method.as_str(), "parameters" | "summary" | "description"),
                    "{path}: unexpected key {method}"
                );
            }
        }
    }
    out
}

fn is_fallback_404(status: StatusCode, body: &[u8]) -> bool {
    status == StatusCode::NOT_FOUND
        && serde_json::from_slice::<Value>(body).is_ok_and(|v| {
            v["error"]["code"] == "not_found" && v["error"]["message"] == "not found"
        })
}

#[tokio::test]
async fn openapi_every_documented_operation_is_routed_to_its_handler() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let spec = spec(&app).await;
    let ops = operations(&spec);
    assert!(!ops.is_empty());
    for (method, path) in &ops {
        let uri = concrete(path);
        let (status, body) = send(&app, method, &uri).await;
        let text = String::from_utf8_lossy(&body);
        assert!(
            !is_fallback_404(status, &body) && status != StatusCode::NOT_FOUND,
            "{method} {path}: {status} {text} (not routed)"
        );
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {text}"
        );
        let op = &spec["paths"][path.as_str()][method.to_lowercase()];
        let secured = op["security"]
            .as_array()
            .is_some_and(|s| s.iter().any(|r| r.get(BEARER).is_some()));
        if secured {
            // The handler's own extractor refused the missing token.
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {text}");
        } else {
            assert!(
                !matches!(
                    status,
                    StatusCode::UNAUTHORIZED | StatusCode::INTERNAL_SERVER_ERROR
                ),
                "{method} {path}: {status} {text} (undocumented bearer, or a failure)"
            );
        }
        // Every documented status is a string code with a description, and
        // the error answers carry the one error shape.
        for (code, response) in op["responses"].as_object().unwrap() {
            let code: u16 = code.parse().unwrap();
            assert!(
                response["description"].is_string(),
                "{method} {path} {code}"
            );
            if code >= 400 && !["/readyz"].contains(&path.as_str()) {
                let schema = &response["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(
                    schema, "#/components/schemas/ErrorBody",
                    "{method} {path} {code}"
                );
            }
        }
        // The status just answered is one the operation documents.
        assert!(
            op["responses"][status.as_str()].is_object(),
            "{method} {path}: {status} is not documented"
        );
        // Other methods on a documented path are not served.
        for other in METHODS {
            if !ops.contains(&(other.to_owned(), path.clone())) {
                let (status, body) = send(&app, other, &uri).await;
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{other} {path}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
    }
}

#[tokio::test]
async fn openapi_documents_exactly_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let spec = spec(&app).await;
    let expected: BTreeSet<(String, String)> = EXPECTED
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(EXPECTED.len(), expected.len(), "duplicates in EXPECTED");
    let documented = operations(&spec);
    assert_eq!(
        documented.difference(&expected).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "documented but not expected"
    );
    assert_eq!(
        expected.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "expected but not documented (hence not routed)"
    );
    // Operation ids are unique (client generators name methods after them).
    let mut ids = BTreeSet::new();
    for (method, path) in &documented {
        let id = spec["paths"][path.as_str()][method.to_lowercase()]["operationId"]
            .as_str()
            .unwrap();
        assert!(ids.insert(id.to_owned()), "operationId {id} twice");
    }
    // Bearer exactly where the API needs a token.
    for (method, path) in &documented {
        let op = &spec["paths"][path.as_str()][method.to_lowercase()];
        let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
        assert_eq!(
            secured,
            !PUBLIC.contains(&path.as_str()),
            "{method} {path}: security"
        );
    }
}

#[tokio::test]
async fn openapi_document_is_served_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path()).await;
    let mut request = Request::builder()
        .uri(OPENAPI_PATH)
        .body(Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 7], 40000))));
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let spec = spec(&app).await;
    assert!(
        spec["openapi"].as_str().unwrap().starts_with("3."),
        "{}",
        spec["openapi"]
    );
    assert_eq!(spec["info"]["title"], "SecureVault API");
    assert_eq!(spec["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        spec["info"]["description"]
            .as_str()
            .unwrap()
            .contains("only ever sees ciphertext")
    );
    let scheme = &spec["components"]["securitySchemes"][BEARER];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    // The wire types are described, the custom-serde ones as strings.
    let schemas = &spec["components"]["schemas"];
    for (name, pattern) in [
        ("NodeId", Some("^[0-9a-fA-F]{32}$")),
        ("ObjectId", Some("^[0-9a-fA-F]{32}$")),
        ("NameTag", Some("^[0-9a-fA-F]{64}$")),
        ("Base64", Some("^[A-Za-z0-9_-]*$")),
        ("SecretText", None),
    ] {
        assert_eq!(schemas[name]["type"], "string", "{name}");
        if let Some(p) = pattern {
            assert_eq!(schemas[name]["pattern"], p, "{name}");
        }
    }
    assert_eq!(schemas["KdfParams"]["properties"]["salt"]["type"], "string");
    for name in [
        "ErrorBody",
        "ErrorCode",
        "RegisterRequest",
        "LoginResponse",
        "NodeInfo",
        "RenameRequest",
        "ChangePage",
    ] {
        assert!(schemas[name].is_object(), "{name} missing");
    }
    // Many requests in a row are not rate limited.
    for _ in 0..50 {
        assert_eq!(send(&app, "GET", OPENAPI_PATH).await.0, StatusCode::OK);
    }
}
