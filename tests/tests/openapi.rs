//! End-to-end test of the OpenAPI description (issue 4): the real
//! `vault-server` binary serves `GET /v1/openapi.json` without a token, the
//! document names the API's paths and the bearer scheme, and every
//! operation it documents is answered by the binary (not the JSON 404 or
//! 405 of an unknown route or method). SQLite only: the document does not
//! depend on the database.

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use common::api::{paths as auth_paths, tree::paths};
use reqwest::Method;
use serde_json::Value;
use tests::{Backend, TestServer};

const OPENAPI: &str = "/v1/openapi.json";

#[tokio::test]
async fn openapi_document_describes_the_served_api() {
    let Some(srv) = TestServer::start(Backend::Sqlite).await else {
        return;
    };
    let r = srv.api.get(OPENAPI, None).await;
    r.expect(200);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let spec: Value = r.json();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(spec["info"]["title"], "SecureVault API");
    assert!(!spec["info"]["version"].as_str().unwrap().is_empty());

    let scheme = &spec["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http", "{scheme}");
    assert_eq!(scheme["scheme"], "bearer", "{scheme}");

    let ops = &spec["paths"];
    for (path, method, bearer) in [
        (auth_paths::REGISTER, "post", false),
        (auth_paths::LOGIN, "post", false),
        (auth_paths::LOGIN_VERIFY, "post", false),
        (auth_paths::ACCOUNT, "get", true),
        (auth_paths::SESSION, "delete", true),
        (paths::NODES, "post", true),
        (paths::NODE, "get", true),
        (paths::ENTRY, "get", true),
        (paths::ENTRY, "delete", true),
        (paths::OBJECT, "put", true),
        (paths::OBJECT, "get", true),
        (paths::CHANGES, "get", true),
        (OPENAPI, "get", false),
    ] {
        let op = &ops[path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        let security = op["security"].as_array();
        assert_eq!(
            security.is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some())),
            bearer,
            "{method} {path}: bearer"
        );
    }
    assert!(ops[paths::NODE]["post"].is_null());

    // Every documented operation reaches its handler in the running binary.
    let id = "ab".repeat(16);
    let tag = "cd".repeat(32);
    let mut count = 0;
    for (path, item) in ops.as_object().unwrap() {
        let uri = path.replace("{id}", &id).replace("{tag}", &tag);
        for method in item.as_object().unwrap().keys() {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = srv.api.send(m, &uri, None, None).await;
            let error: Option<Value> = serde_json::from_slice(&r.body).ok();
            let code = error
                .as_ref()
                .and_then(|e| e["error"]["code"].as_str())
                .unwrap_or("");
            assert!(
                !matches!(r.status, 404 | 405),
                "{method} {path}: {} {code} (not routed)",
                r.status
            );
            count += 1;
        }
    }
    assert!(count >= 30, "only {count} operations");
}
