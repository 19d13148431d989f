//! `POST /v1/batch` through the real router (SQLite, a file object store in
//! a temporary directory), each answer compared with what the single
//! endpoints answer; the store-level rules run on both backends in
//! `store/tree_tests.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use common::api::tree::{
    BATCH_MAX_INLINE_BYTES, BATCH_MAX_INLINE_OBJECT, BATCH_MAX_OBJECTS, BATCH_MAX_OPS, BatchCommit,
    BatchFailure, BatchOp, BatchOutcome, BatchRecord, BatchRequest, BatchResponse, CommitRequest,
    CreateNodeRequest, EntrySpec, InlineObject, Kind, NodeInfo, StatFs, UpdateRecordRequest, paths,
};
use common::api::{Base64, ErrorBody, ErrorCode};
use common::crypto::kdf::KdfParams;
use common::crypto::name::NameTag;
use common::{NodeId, ObjectId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest as _, Sha256};
use tower::ServiceExt as _;

use crate::blob::{BlobError, BlobStore, BlobStream, Checksum, PutBody};
use crate::config::{Settings, SettingsArgs};
use crate::state::{AppState, now};
use crate::store::{AccountId, Credentials, NewAccount, NewNode, NewSession};

/// One account (with its root) on a fresh server.
struct Harness {
    app: Router,
    state: AppState,
    owner: AccountId,
    token: String,
    _dir: tempfile::TempDir,
}

/// Wraps the object store the server opened.
type WrapBlobs = fn(Arc<dyn BlobStore>) -> Arc<dyn BlobStore>;

#[derive(Default)]
struct Options {
    quota: Option<u64>,
    max_object: Option<u64>,
    /// Wraps the object store.
    blobs: Option<WrapBlobs>,
    /// Another database than a fresh SQLite file (the measurement).
    database_url: Option<String>,
    /// Another object store than files in the temporary directory.
    blob_store: Option<String>,
}

async fn harness(options: Options) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let database_url = options
        .database_url
        .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("t.sqlite").display()));
    let settings = Settings::resolve(SettingsArgs {
        data_dir: Some(dir.path().to_path_buf()),
        database_url: Some(database_url),
        blob_store: options.blob_store,
        quota_bytes: options.quota,
        max_object_bytes: options.max_object,
        ..SettingsArgs::default()
    })
    .unwrap();
    let mut state = crate::build_state(&settings).await.unwrap();
    if let Some(wrap) = options.blobs {
        state.blobs = wrap(state.blobs.clone());
    }
    // Unique per run: the measurement reuses a database.
    let mut suffix = [0u8; 6];
    getrandom::fill(&mut suffix).unwrap();
    let email = format!("batch-{}@example.org", hex::encode(suffix));
    let owner = account(&state, &email).await;
    let token = session(&state, owner).await;
    let app = crate::http::router(state.clone(), settings.max_body);
    Harness {
        app,
        state,
        owner,
        token,
        _dir: dir,
    }
}

/// A verified account with its root directory.
async fn account(state: &AppState, email: &str) -> AccountId {
    let owner = state
        .store
        .upsert_unverified_account(&NewAccount {
            email: email.to_owned(),
            credentials: Credentials {
                kdf: KdfParams {
                    memory_kib: 64 * 1024,
                    iterations: 3,
                    parallelism: 4,
                    salt: [1; 16],
                },
                auth_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
                wrapped_vault_key: vec![1; 72],
            },
            recovery_wrapped_vault_key: vec![2; 72],
            now: now(),
        })
        .await
        .unwrap();
    state.store.mark_verified(owner, now()).await.unwrap();
    let root = NewNode {
        id: NodeId::ROOT,
        kind: common::crypto::attrs::NodeKind::Directory,
        record: vec![0; 40],
        entry: None,
        objects: Vec::new(),
    };
    state.store.create_node(owner, &root, now()).await.unwrap();
    owner
}

async fn session(state: &AppState, owner: AccountId) -> String {
    let sid = format!("session-{}", owner.0);
    state
        .store
        .create_session(&NewSession {
            id: sid.clone(),
            account: owner,
            refresh_hash: Sha256::digest(sid.as_bytes()).to_vec(),
            device: None,
            ip: None,
            now: now(),
        })
        .await
        .unwrap();
    state.jwt.issue(owner.0, &sid, now()).unwrap()
}

impl Harness {
    /// A second account on the same server (for side-by-side runs).
    async fn twin(&self, email: &str) -> (AccountId, String) {
        let owner = account(&self.state, email).await;
        (owner, session(&self.state, owner).await)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Body,
        headers: &[(&str, String)],
    ) -> (StatusCode, Vec<u8>) {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let mut request = request.body(body).unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 7], 40000))));
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, body.to_vec())
    }

    async fn post_as<T: Serialize>(
        &self,
        token: &str,
        path: &str,
        body: &T,
    ) -> (StatusCode, Vec<u8>) {
        self.json_as(Method::POST, token, path, body).await
    }

    async fn json_as<T: Serialize>(
        &self,
        method: Method,
        token: &str,
        path: &str,
        body: &T,
    ) -> (StatusCode, Vec<u8>) {
        let json = serde_json::to_vec(body).unwrap();
        self.send(
            method,
            path,
            token,
            Body::from(json),
            &[(header::CONTENT_TYPE.as_str(), "application/json".into())],
        )
        .await
    }

    async fn batch_as(&self, token: &str, req: &BatchRequest) -> (StatusCode, Vec<u8>) {
        self.post_as(token, paths::BATCH, req).await
    }

    /// The batch, which must answer 200.
    async fn batch(&self, req: &BatchRequest) -> Vec<BatchOutcome> {
        let (status, body) = self.batch_as(&self.token, req).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        json::<BatchResponse>(&body).results
    }

    /// The batch, which must fail as a whole with `status` and `code`.
    async fn batch_error(&self, req: &BatchRequest, status: StatusCode, code: ErrorCode) {
        let (got, body) = self.batch_as(&self.token, req).await;
        assert_eq!(got, status, "{}", String::from_utf8_lossy(&body));
        assert_eq!(json::<ErrorBody>(&body).error.code, code);
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> T {
        let (status, body) = self
            .send(Method::GET, path, &self.token, Body::empty(), &[])
            .await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        json(&body)
    }

    async fn statfs(&self) -> StatFs {
        self.get(paths::STATFS).await
    }

    async fn object(&self, id: ObjectId) -> (StatusCode, Vec<u8>) {
        self.send(
            Method::GET,
            &paths::OBJECT.replace("{id}", &id.to_string()),
            &self.token,
            Body::empty(),
            &[],
        )
        .await
    }

    async fn upload(&self, id: ObjectId, data: &[u8]) -> StatusCode {
        self.send(
            Method::PUT,
            &paths::OBJECT.replace("{id}", &id.to_string()),
            &self.token,
            Body::from(data.to_vec()),
            &[
                (header::CONTENT_LENGTH.as_str(), data.len().to_string()),
                (
                    common::api::tree::SHA256_HEADER,
                    hex::encode(Sha256::digest(data)),
                ),
            ],
        )
        .await
        .0
    }

    /// The account's audit rows of `event`, newest first: (success, detail).
    async fn audit(&self, event: &str) -> Vec<(bool, String)> {
        self.state
            .store
            .audit_events(self.owner, None, 200)
            .await
            .unwrap()
            .into_iter()
            .filter(|e| e.event == event)
            .map(|e| (e.success, e.detail.unwrap_or_default()))
            .collect()
    }
}

fn json<T: DeserializeOwned>(body: &[u8]) -> T {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

fn node(n: u8) -> NodeId {
    NodeId::from_bytes([n; 16])
}

fn object(n: u8) -> ObjectId {
    ObjectId::from_bytes([n; 16])
}

fn tag(name: &str) -> NameTag {
    NameTag::from_bytes(Sha256::digest(name.as_bytes()).into())
}

/// Stands in for a sealed name: the test asserts it never reaches the
/// audit log.
fn sealed_name(name: &str) -> Base64 {
    Base64(format!("SEALED-NAME-{name}").into_bytes())
}

fn create(id: NodeId, kind: Kind, parent: NodeId, name: &str) -> CreateNodeRequest {
    CreateNodeRequest {
        id,
        kind,
        record: Base64(vec![1; 60]),
        entry: Some(EntrySpec {
            parent,
            tag: tag(name),
            encrypted_name: sealed_name(name),
        }),
        objects: Vec::new(),
    }
}

/// [`create`] of a file whose version 1 has `objects`.
fn create_file(id: NodeId, parent: NodeId, name: &str, objects: &[ObjectId]) -> CreateNodeRequest {
    CreateNodeRequest {
        objects: objects.to_vec(),
        ..create(id, Kind::File, parent, name)
    }
}

fn commit(expected_version: u64, objects: &[ObjectId]) -> CommitRequest {
    CommitRequest {
        expected_version,
        record: Base64(vec![2; 80]),
        objects: objects.to_vec(),
    }
}

fn create_op(id: NodeId, kind: Kind, parent: NodeId, name: &str) -> BatchOp {
    BatchOp::Create(create(id, kind, parent, name))
}

fn commit_op(id: NodeId, expected_version: u64, objects: &[ObjectId]) -> BatchOp {
    BatchOp::Commit(BatchCommit {
        id,
        commit: commit(expected_version, objects),
    })
}

fn record_op(id: NodeId, expected_version: u64, record: &[u8]) -> BatchOp {
    BatchOp::Record(BatchRecord {
        id,
        update: UpdateRecordRequest {
            expected_version,
            record: Base64(record.to_vec()),
        },
    })
}

fn inline(id: ObjectId, data: &[u8]) -> InlineObject {
    InlineObject {
        id,
        data: Base64(data.to_vec()),
        sha256: Base64(Sha256::digest(data).to_vec()),
    }
}

fn ok(outcome: &BatchOutcome) -> &NodeInfo {
    match outcome {
        BatchOutcome::Ok(info) => info,
        BatchOutcome::Err(e) => panic!("refused: {e:?}"),
    }
}

/// A failure as a batch reports it, from a single endpoint's answer.
fn failure(status: StatusCode, body: &[u8]) -> BatchFailure {
    BatchFailure {
        status: status.as_u16(),
        error: json::<ErrorBody>(body).error,
    }
}

#[tokio::test]
async fn new_files_with_inline_objects_in_one_request() {
    let h = harness(Options::default()).await;
    let before = h.statfs().await;
    let (d, f1, f2, f3) = (node(1), node(2), node(3), node(4));
    let data: Vec<Vec<u8>> = (0u8..3).map(|i| vec![i; 1000 + usize::from(i)]).collect();
    let req = BatchRequest {
        objects: vec![
            inline(object(1), &data[0]),
            inline(object(2), &data[1]),
            inline(object(3), &data[2]),
        ],
        ops: vec![
            create_op(d, Kind::Directory, NodeId::ROOT, "dir"),
            create_op(f1, Kind::File, d, "one"),
            commit_op(f1, 1, &[object(1)]),
            create_op(f2, Kind::File, d, "two"),
            commit_op(f2, 1, &[object(2), object(3)]),
            create_op(f3, Kind::File, NodeId::ROOT, "empty"),
        ],
    };
    let results = h.batch(&req).await;
    assert_eq!(results.len(), 6);
    assert_eq!(
        (ok(&results[0]).id, ok(&results[0]).kind),
        (d, Kind::Directory)
    );
    assert_eq!((ok(&results[1]).version, ok(&results[1]).size), (1, 0));
    let one = ok(&results[2]);
    assert_eq!((one.id, one.version, one.size, one.nlink), (f1, 2, 1000, 1));
    assert_eq!(one.record, Base64(vec![2; 80]));
    assert_eq!((ok(&results[4]).version, ok(&results[4]).size), (2, 2003));
    assert_eq!(ok(&results[5]).version, 1);
    // As the single endpoints serve them afterwards.
    let got: NodeInfo = h.get(&paths::NODE.replace("{id}", &f2.to_string())).await;
    assert_eq!(&got, ok(&results[4]));
    for (i, bytes) in data.iter().enumerate() {
        let (status, body) = h.object(object(u8::try_from(i + 1).unwrap())).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&body, bytes);
    }
    // Feed: one record per (node, directory) touched, in order.
    let page: common::api::tree::ChangePage = h
        .get(&format!("{}?since={}", paths::CHANGES, before.seq))
        .await;
    let feed: Vec<(NodeId, Option<NodeId>)> =
        page.changes.iter().map(|c| (c.node, c.parent)).collect();
    assert_eq!(
        feed,
        [
            (d, Some(NodeId::ROOT)),
            (f1, Some(d)),
            (f1, None),
            (f2, Some(d)),
            (f2, None),
            (f3, Some(NodeId::ROOT)),
        ]
    );
    let after = h.statfs().await;
    assert_eq!(after.used_bytes, before.used_bytes + 3003);
    assert_eq!(after.nodes, before.nodes + 4);
    assert_eq!(after.seq, before.seq + 6);
    // One audit row for the batch: counts only, never a name or an id.
    assert_eq!(
        h.audit("tree.batch").await,
        [(
            true,
            "objects=3 bytes=3003 creates=4 commits=2 records=0 failed=0 released=0".to_owned()
        )]
    );
    assert!(h.audit("tree.create").await.is_empty());
    assert!(h.audit("object.upload").await.is_empty());

    // The same objects again: the ids are taken (409 for the whole batch).
    h.batch_error(
        &BatchRequest {
            objects: vec![inline(object(1), &data[0])],
            ops: vec![],
        },
        StatusCode::CONFLICT,
        ErrorCode::Exists,
    )
    .await;
}

#[tokio::test]
async fn a_file_is_created_with_its_objects() {
    let h = harness(Options::default()).await;
    let (f, g, d) = (node(1), node(2), node(3));
    for (i, len) in [(1, 100), (2, 250), (3, 7)] {
        assert_eq!(
            h.upload(object(i), &vec![i; len]).await,
            StatusCode::CREATED
        );
    }
    let before = h.statfs().await;
    let path = |id: NodeId| paths::NODE.replace("{id}", &id.to_string());

    // `POST /v1/nodes` with the objects: version 1 with its contents.
    let req = create_file(f, NodeId::ROOT, "f", &[object(1), object(2), object(1)]);
    let (status, body) = h.post_as(&h.token, paths::NODES, &req).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let info: NodeInfo = json(&body);
    assert_eq!(
        (info.id, info.kind, info.version, info.size, info.nlink),
        (f, Kind::File, 1, 350, 1)
    );
    assert_eq!(h.get::<NodeInfo>(&path(f)).await, info);
    let (status, bytes) = h.object(object(2)).await;
    assert_eq!((status, bytes), (StatusCode::OK, vec![2; 250]));
    let after = h.statfs().await;
    assert_eq!(
        (after.used_bytes, after.nodes, after.seq),
        (before.used_bytes, before.nodes + 1, before.seq + 1),
        "no bytes charged again, one feed record"
    );
    assert_eq!(
        h.audit("tree.create").await,
        [(true, format!("node={f} parent={} objects=3", NodeId::ROOT))]
    );

    // Refused as a commit refuses them, nothing created.
    let refused = [
        // Not a file.
        (
            CreateNodeRequest {
                objects: vec![object(3)],
                ..create(g, Kind::Directory, NodeId::ROOT, "g")
            },
            StatusCode::CONFLICT,
            ErrorCode::NotAFile,
        ),
        // Another node's object, a missing one.
        (
            create_file(g, NodeId::ROOT, "g", &[object(3), object(1)]),
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
        ),
        (
            create_file(g, NodeId::ROOT, "g", &[object(9)]),
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
        ),
        // A taken name, a taken id, a missing parent.
        (
            create_file(g, NodeId::ROOT, "f", &[object(3)]),
            StatusCode::CONFLICT,
            ErrorCode::Exists,
        ),
        (
            create_file(f, NodeId::ROOT, "g", &[object(3)]),
            StatusCode::CONFLICT,
            ErrorCode::Exists,
        ),
        (
            create_file(g, d, "g", &[object(3)]),
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
        ),
        // More objects than a version may have.
        (
            create_file(
                g,
                NodeId::ROOT,
                "g",
                &vec![object(3); crate::tree::MAX_COMMIT_OBJECTS + 1],
            ),
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
        ),
    ];
    for (req, status, code) in &refused {
        let (got, body) = h.post_as(&h.token, paths::NODES, req).await;
        assert_eq!(
            (got, json::<ErrorBody>(&body).error.code),
            (*status, *code),
            "{req:?}"
        );
    }
    let (status, _) = h
        .send(Method::GET, &path(g), &h.token, Body::empty(), &[])
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(h.statfs().await, after);

    // A client that does not know `objects` (no such key): a node without
    // contents, as before.
    let mut old = serde_json::to_value(create(g, Kind::File, NodeId::ROOT, "g")).unwrap();
    assert!(old.get("objects").is_none());
    old.as_object_mut().unwrap().remove("objects");
    let (status, body) = h.post_as(&h.token, paths::NODES, &old).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(json::<NodeInfo>(&body).size, 0);
    // Object 3 is still pending: a commit takes it.
    let (status, body) = h
        .post_as(
            &h.token,
            &paths::NODE_COMMIT.replace("{id}", &g.to_string()),
            &commit(1, &[object(3)]),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json::<NodeInfo>(&body).size, 7);
}

#[tokio::test]
async fn a_batch_creates_each_new_file_with_its_objects_in_one_operation() {
    let h = harness(Options::default()).await;
    let (twin, twin_token) = h.twin("twin-fused@example.org").await;
    let (d, f1, f2, f3, e) = (node(1), node(2), node(3), node(4), node(5));
    let data: Vec<Vec<u8>> = (1u8..=3).map(|i| vec![i; 100 * usize::from(i)]).collect();
    let objects: Vec<InlineObject> = data
        .iter()
        .zip(1u8..)
        .map(|(bytes, i)| inline(object(i), bytes))
        .collect();
    let ops = vec![
        create_op(d, Kind::Directory, NodeId::ROOT, "dir"),
        BatchOp::Create(create_file(f1, d, "one", &[object(1)])),
        BatchOp::Create(create_file(f2, d, "two", &[object(2), object(3)])),
        // Refused each on its own: a used object, a directory with
        // objects, a taken name, a missing object.
        BatchOp::Create(create_file(f3, d, "three", &[object(1)])),
        BatchOp::Create(CreateNodeRequest {
            objects: vec![object(1)],
            ..create(f3, Kind::Directory, d, "three")
        }),
        BatchOp::Create(create_file(f3, d, "one", &[])),
        BatchOp::Create(create_file(f3, d, "three", &[object(9)])),
        // An empty file, as before.
        create_op(e, Kind::File, d, "empty"),
    ];
    let results = h
        .batch(&BatchRequest {
            objects: objects.clone(),
            ops: ops.clone(),
        })
        .await;
    let sizes: Vec<Option<(u64, u64)>> = results
        .iter()
        .map(|r| match r {
            BatchOutcome::Ok(info) => Some((info.version, info.size)),
            BatchOutcome::Err(_) => None,
        })
        .collect();
    assert_eq!(
        sizes,
        [
            Some((1, 0)),
            Some((1, 100)),
            Some((1, 500)),
            None,
            None,
            None,
            None,
            Some((1, 0)),
        ]
    );
    for (i, bytes) in data.iter().enumerate() {
        let (status, body) = h.object(object(u8::try_from(i + 1).unwrap())).await;
        assert_eq!((status, &body), (StatusCode::OK, bytes));
    }

    // The same operations one request each in the twin account (its
    // objects uploaded first): the same answers and the same tree.
    for o in &objects {
        assert_eq!(
            h.send(
                Method::PUT,
                &paths::OBJECT.replace("{id}", &o.id.to_string()),
                &twin_token,
                Body::from(o.data.0.clone()),
                &[
                    (header::CONTENT_LENGTH.as_str(), o.data.0.len().to_string()),
                    (common::api::tree::SHA256_HEADER, hex::encode(&o.sha256.0)),
                ],
            )
            .await
            .0,
            StatusCode::CREATED
        );
    }
    let mut single = Vec::new();
    for op in &ops {
        let BatchOp::Create(c) = op else {
            panic!("only creates here")
        };
        let (status, body) = h.post_as(&twin_token, paths::NODES, c).await;
        single.push(if status.is_success() {
            BatchOutcome::Ok(json(&body))
        } else {
            BatchOutcome::Err(failure(status, &body))
        });
    }
    let strip = |outcomes: &[BatchOutcome]| -> Vec<BatchOutcome> {
        outcomes
            .iter()
            .cloned()
            .map(|o| match o {
                BatchOutcome::Ok(mut info) => {
                    info.updated_at = 0;
                    BatchOutcome::Ok(info)
                }
                e => e,
            })
            .collect()
    };
    assert_eq!(strip(&results), strip(&single));
    let codes: Vec<Option<(u16, ErrorCode)>> = results
        .iter()
        .map(|r| match r {
            BatchOutcome::Ok(_) => None,
            BatchOutcome::Err(e) => Some((e.status, e.error.code)),
        })
        .collect();
    assert_eq!(
        codes,
        [
            None,
            None,
            None,
            Some((404, ErrorCode::NotFound)),
            Some((409, ErrorCode::NotAFile)),
            Some((409, ErrorCode::Exists)),
            Some((404, ErrorCode::NotFound)),
            None,
        ]
    );
    let mine = h.statfs().await;
    let theirs = h.state.store.usage(twin, 0).await.unwrap();
    assert_eq!(
        (mine.used_bytes, mine.nodes, mine.seq),
        (theirs.used_bytes, theirs.nodes, theirs.seq)
    );
    // One feed record per new node: a file and its contents are one change.
    assert_eq!(mine.seq, 4 + 1, "the root, then d, f1, f2 and e");
    assert_eq!(
        h.audit("tree.batch").await,
        [(
            true,
            "objects=3 bytes=600 creates=8 commits=0 records=0 failed=4 (exists=1 not_a_file=1 \
             not_found=2) released=0"
                .to_owned()
        )]
    );
}

#[tokio::test]
async fn each_operation_answers_as_its_own_endpoint() {
    let h = harness(Options::default()).await;
    let (twin, twin_token) = h.twin("twin@example.org").await;
    let (f, d, x, y) = (node(1), node(2), node(3), node(4));
    let missing = node(99);
    // The same tree in both accounts: f at version 2, a directory d.
    for token in [&h.token, &twin_token] {
        for req in [
            create(f, Kind::File, NodeId::ROOT, "f"),
            create(d, Kind::Directory, NodeId::ROOT, "d"),
        ] {
            assert_eq!(
                h.post_as(token, paths::NODES, &req).await.0,
                StatusCode::CREATED
            );
        }
        let path = paths::NODE_COMMIT.replace("{id}", &f.to_string());
        assert_eq!(
            h.post_as(token, &path, &commit(1, &[])).await.0,
            StatusCode::OK
        );
    }
    let mut empty_name = create(y, Kind::File, d, "bad");
    if let Some(e) = empty_name.entry.as_mut() {
        e.encrypted_name = Base64(vec![]);
    }
    let mut rootless = create(y, Kind::File, d, "rootless");
    rootless.entry = None;
    let ops = vec![
        create_op(x, Kind::File, NodeId::ROOT, "x"),
        create_op(y, Kind::File, NodeId::ROOT, "f"), // taken name
        create_op(x, Kind::File, d, "x2"),           // taken id
        create_op(y, Kind::File, missing, "y"),      // missing parent
        create_op(y, Kind::File, f, "y"),            // a file as parent
        BatchOp::Create(empty_name),
        BatchOp::Create(rootless),
        commit_op(f, 1, &[]),          // stale version
        commit_op(d, 1, &[]),          // a directory
        commit_op(missing, 1, &[]),    // missing node
        commit_op(x, 1, &[object(9)]), // missing object
        commit_op(x, 1, &[]),
        create_op(y, Kind::Symlink, d, "y"),
        record_op(d, 1, b"dir mode"),     // a directory's mode
        record_op(y, 1, b"link times"),   // the symlink just made
        record_op(f, 3, b"stale"),        // stale version
        record_op(missing, 1, b"absent"), // missing node
        record_op(d, 2, b"dir times"),    // d again, after the first
    ];
    let results = h
        .batch(&BatchRequest {
            objects: vec![],
            ops: ops.clone(),
        })
        .await;

    // The same operations one request each, in the twin account.
    let mut single = Vec::new();
    for op in &ops {
        let (status, body) = match op {
            BatchOp::Create(c) => h.post_as(&twin_token, paths::NODES, c).await,
            BatchOp::Commit(c) => {
                let path = paths::NODE_COMMIT.replace("{id}", &c.id.to_string());
                h.post_as(&twin_token, &path, &c.commit).await
            }
            BatchOp::Record(r) => {
                let path = paths::NODE_RECORD.replace("{id}", &r.id.to_string());
                h.json_as(Method::PUT, &twin_token, &path, &r.update).await
            }
        };
        single.push(if status.is_success() {
            BatchOutcome::Ok(json(&body))
        } else {
            BatchOutcome::Err(failure(status, &body))
        });
    }
    // Times may differ by a second between the two runs.
    let strip = |outcomes: &[BatchOutcome]| -> Vec<BatchOutcome> {
        outcomes
            .iter()
            .cloned()
            .map(|o| match o {
                BatchOutcome::Ok(mut info) => {
                    info.updated_at = 0;
                    BatchOutcome::Ok(info)
                }
                e => e,
            })
            .collect()
    };
    assert_eq!(strip(&results), strip(&single));
    let codes: Vec<Option<(u16, ErrorCode)>> = results
        .iter()
        .map(|r| match r {
            BatchOutcome::Ok(_) => None,
            BatchOutcome::Err(e) => Some((e.status, e.error.code)),
        })
        .collect();
    assert_eq!(
        codes,
        [
            None,
            Some((409, ErrorCode::Exists)),
            Some((409, ErrorCode::Exists)),
            Some((404, ErrorCode::NotFound)),
            Some((409, ErrorCode::NotADirectory)),
            Some((400, ErrorCode::BadRequest)),
            Some((400, ErrorCode::BadRequest)),
            Some((409, ErrorCode::Conflict)),
            Some((409, ErrorCode::NotAFile)),
            Some((404, ErrorCode::NotFound)),
            Some((404, ErrorCode::NotFound)),
            None,
            None,
            None,
            None,
            Some((409, ErrorCode::Conflict)),
            Some((404, ErrorCode::NotFound)),
            None,
        ]
    );
    // The record changes took, in order: d at 2 then 3, y at 2.
    for (i, id, version, record) in [
        (13, d, 2, &b"dir mode"[..]),
        (14, y, 2, &b"link times"[..]),
        (17, d, 3, &b"dir times"[..]),
    ] {
        let info = ok(&results[i]);
        assert_eq!((info.id, info.version), (id, version));
        assert_eq!(info.record.0, record);
    }
    let BatchOutcome::Err(stale) = &results[7] else {
        panic!("{:?}", results[7]);
    };
    assert_eq!(
        stale.error.message,
        "version conflict: the node is at version 2"
    );
    // Nothing of the refused ones: the same usage and feed as the twin.
    let mine = h.statfs().await;
    assert_eq!(mine.nodes, 5);
    let twin_usage = h.state.store.usage(twin, 0).await.unwrap();
    assert_eq!((mine.nodes, mine.seq), (twin_usage.nodes, twin_usage.seq));
    assert_eq!(
        h.audit("tree.batch").await,
        [(
            true,
            "objects=0 bytes=0 creates=8 commits=5 records=5 failed=12 (bad_request=2 \
             conflict=2 exists=2 not_a_directory=1 not_a_file=1 not_found=4) released=0"
                .to_owned()
        )]
    );

    // The root is never created in a batch, even in an empty account.
    let (fresh, fresh_token) = h.twin("fresh@example.org").await;
    let root = CreateNodeRequest {
        id: NodeId::ROOT,
        kind: Kind::Directory,
        record: Base64(vec![1]),
        entry: None,
        objects: Vec::new(),
    };
    let (status, body) = h
        .batch_as(
            &fresh_token,
            &BatchRequest {
                objects: vec![],
                ops: vec![BatchOp::Create(root)],
            },
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let results = json::<BatchResponse>(&body).results;
    assert!(
        matches!(&results[..], [BatchOutcome::Err(e)] if e.status == 400 && e.error.code == ErrorCode::BadRequest),
        "{results:?}"
    );
    let usage = h.state.store.usage(fresh, 0).await.unwrap();
    assert_eq!(usage.nodes, 1, "only the root made by the fixture");
}

#[tokio::test]
async fn a_bad_object_fails_the_whole_batch_and_applies_nothing() {
    let h = harness(Options::default()).await;
    let before = h.statfs().await;
    let good = vec![7u8; 500];
    let ops = vec![
        create_op(node(1), Kind::File, NodeId::ROOT, "f"),
        commit_op(node(1), 1, &[object(1), object(2)]),
    ];
    let mut mismatched = inline(object(2), b"the real bytes");
    mismatched.data = Base64(b"other bytes".to_vec());
    h.batch_error(
        &BatchRequest {
            objects: vec![inline(object(1), &good), mismatched],
            ops: ops.clone(),
        },
        StatusCode::BAD_REQUEST,
        ErrorCode::DigestMismatch,
    )
    .await;
    let mut short = inline(object(2), b"x");
    short.sha256 = Base64(vec![0; 31]);
    h.batch_error(
        &BatchRequest {
            objects: vec![inline(object(1), &good), short],
            ops: ops.clone(),
        },
        StatusCode::BAD_REQUEST,
        ErrorCode::BadRequest,
    )
    .await;
    // An id already taken by a PUT, and one listed twice.
    assert_eq!(h.upload(object(3), b"put").await, StatusCode::CREATED);
    let before_taken = h.statfs().await;
    for objects in [
        vec![inline(object(1), &good), inline(object(3), b"again")],
        vec![inline(object(1), &good), inline(object(1), &good)],
    ] {
        h.batch_error(
            &BatchRequest {
                objects,
                ops: ops.clone(),
            },
            StatusCode::CONFLICT,
            ErrorCode::Exists,
        )
        .await;
    }
    // Nothing was applied or reserved, and no id was burnt.
    assert_eq!(h.statfs().await, before_taken);
    assert_eq!(before_taken.used_bytes, before.used_bytes + 3);
    assert_eq!(before_taken.seq, before.seq);
    assert_eq!(h.object(object(1)).await.0, StatusCode::NOT_FOUND);
    let results = h
        .batch(&BatchRequest {
            objects: vec![inline(object(1), &good), inline(object(2), b"fine")],
            ops,
        })
        .await;
    assert_eq!(ok(&results[1]).size, 504);
    let audit = h.audit("tree.batch").await;
    assert_eq!(
        audit
            .iter()
            .map(|(ok, d)| (*ok, d.as_str()))
            .collect::<Vec<_>>(),
        [
            (
                true,
                "objects=2 bytes=504 creates=1 commits=1 records=0 failed=0 released=0"
            ),
            (false, "objects=2 ops=2: exists"),
            (false, "objects=2 ops=2: exists"),
            (false, "objects=2 ops=2: bad_request"),
            (false, "objects=2 ops=2: digest_mismatch"),
        ]
    );
}

#[tokio::test]
async fn objects_over_the_quota_fail_the_whole_batch() {
    let h = harness(Options {
        quota: Some(1000),
        ..Options::default()
    })
    .await;
    let before = h.statfs().await;
    let ops = vec![
        create_op(node(1), Kind::File, NodeId::ROOT, "f"),
        commit_op(node(1), 1, &[object(1), object(2)]),
    ];
    h.batch_error(
        &BatchRequest {
            objects: vec![inline(object(1), &[1; 600]), inline(object(2), &[2; 401])],
            ops: ops.clone(),
        },
        StatusCode::INSUFFICIENT_STORAGE,
        ErrorCode::QuotaExceeded,
    )
    .await;
    assert_eq!(h.statfs().await, before);
    assert_eq!(h.object(object(1)).await.0, StatusCode::NOT_FOUND);
    // Exactly full fits.
    let results = h
        .batch(&BatchRequest {
            objects: vec![inline(object(1), &[1; 600]), inline(object(2), &[2; 400])],
            ops,
        })
        .await;
    assert_eq!(ok(&results[1]).size, 1000);
    assert_eq!(h.statfs().await.used_bytes, 1000);
}

#[tokio::test]
async fn limits_of_a_batch() {
    let h = harness(Options {
        max_object: Some(100_000),
        ..Options::default()
    })
    .await;
    let many_ops: Vec<BatchOp> = (0..=BATCH_MAX_OPS)
        .map(|_| commit_op(node(1), 1, &[]))
        .collect();
    h.batch_error(
        &BatchRequest {
            objects: vec![],
            ops: many_ops,
        },
        StatusCode::BAD_REQUEST,
        ErrorCode::BadRequest,
    )
    .await;
    let many_objects: Vec<InlineObject> = (0..=BATCH_MAX_OBJECTS)
        .map(|i| inline(ObjectId::from_bytes([0; 16]), &i.to_le_bytes()))
        .collect();
    h.batch_error(
        &BatchRequest {
            objects: many_objects,
            ops: vec![],
        },
        StatusCode::BAD_REQUEST,
        ErrorCode::BadRequest,
    )
    .await;
    // One object over the inline limit, then over the server's own.
    for size in [BATCH_MAX_INLINE_OBJECT + 1, 100_001] {
        h.batch_error(
            &BatchRequest {
                objects: vec![inline(object(1), &vec![1; size])],
                ops: vec![],
            },
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
        )
        .await;
    }
    // More than the total inline limit, each object within its own.
    let n = BATCH_MAX_INLINE_BYTES / 100_000 + 1;
    let over: Vec<InlineObject> = (0..n)
        .map(|i| inline(object(u8::try_from(i).unwrap()), &vec![1; 100_000]))
        .collect();
    h.batch_error(
        &BatchRequest {
            objects: over,
            ops: vec![],
        },
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::PayloadTooLarge,
    )
    .await;
    assert_eq!(h.statfs().await.used_bytes, 0);
}

#[tokio::test]
async fn a_full_batch_fits_the_body_limit() {
    let h = harness(Options::default()).await;
    // Every inline byte allowed, and the most operations, with the longest
    // names.
    let count = BATCH_MAX_INLINE_BYTES / BATCH_MAX_INLINE_OBJECT;
    let objects: Vec<InlineObject> = (0..count)
        .map(|i| {
            inline(
                object(u8::try_from(i + 1).unwrap()),
                &vec![u8::try_from(i).unwrap(); BATCH_MAX_INLINE_OBJECT],
            )
        })
        .collect();
    let ops: Vec<BatchOp> = (0..BATCH_MAX_OPS)
        .map(|i| {
            let mut id = [0xf0; 16];
            id[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let mut c = create(
                NodeId::from_bytes(id),
                Kind::File,
                NodeId::ROOT,
                &i.to_string(),
            );
            if let Some(e) = c.entry.as_mut() {
                e.encrypted_name = Base64(vec![9; crate::tree::MAX_ENCRYPTED_NAME]);
            }
            BatchOp::Create(c)
        })
        .collect();
    let req = BatchRequest { objects, ops };
    let body = serde_json::to_vec(&req).unwrap();
    assert!(body.len() > 12_000_000, "{} bytes", body.len());
    let results = h.batch(&req).await;
    assert_eq!(results.len(), BATCH_MAX_OPS);
    assert!(results.iter().all(|r| matches!(r, BatchOutcome::Ok(_))));
    let usage = h.statfs().await;
    assert_eq!(usage.used_bytes, BATCH_MAX_INLINE_BYTES as u64);
    assert_eq!(usage.nodes, 1 + BATCH_MAX_OPS as u64);
    // A body over the route's limit is refused before it is parsed.
    let (status, _) = h
        .send(
            Method::POST,
            paths::BATCH,
            &h.token,
            Body::from(vec![b' '; super::BODY_LIMIT + 1]),
            &[(header::CONTENT_TYPE.as_str(), "application/json".into())],
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

/// An object store whose third put fails.
#[derive(Debug)]
struct ThirdPutFails {
    inner: Arc<dyn BlobStore>,
    puts: AtomicUsize,
}

#[async_trait]
impl BlobStore for ThirdPutFails {
    fn backend(&self) -> &'static str {
        "third-put-fails"
    }

    async fn put(
        &self,
        owner: AccountId,
        id: ObjectId,
        body: PutBody,
        max_len: u64,
        expected: Checksum,
    ) -> Result<u64, BlobError> {
        if self.puts.fetch_add(1, Ordering::SeqCst) == 2 {
            return Err(BlobError::Backend("injected".into()));
        }
        self.inner.put(owner, id, body, max_len, expected).await
    }

    async fn get(
        &self,
        owner: AccountId,
        id: ObjectId,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<(u64, BlobStream), BlobError> {
        self.inner.get(owner, id, range).await
    }

    async fn delete(&self, owner: AccountId, id: ObjectId) -> Result<(), BlobError> {
        self.inner.delete(owner, id).await
    }

    async fn exists(&self, owner: AccountId, id: ObjectId) -> Result<bool, BlobError> {
        self.inner.exists(owner, id).await
    }

    async fn sweep(&self, older_than: std::time::Duration) -> Result<u64, BlobError> {
        self.inner.sweep(older_than).await
    }
}

#[tokio::test]
async fn a_failed_object_write_abandons_every_object_of_the_batch() {
    let h = harness(Options {
        blobs: Some(|inner| {
            Arc::new(ThirdPutFails {
                inner,
                puts: AtomicUsize::new(0),
            })
        }),
        ..Options::default()
    })
    .await;
    let before = h.statfs().await;
    let objects: Vec<InlineObject> = (1..=4).map(|i| inline(object(i), &[i; 100])).collect();
    h.batch_error(
        &BatchRequest {
            objects,
            ops: vec![create_op(node(1), Kind::File, NodeId::ROOT, "f")],
        },
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Internal,
    )
    .await;
    // No operation ran; every object is back in the quota and queued for
    // purge (its id stays taken until then).
    assert_eq!(h.statfs().await, before);
    let mut queued = h.state.store.purge_queue(100).await.unwrap();
    queued.sort();
    let expected: Vec<_> = (1..=4).map(|i| (h.owner, object(i))).collect();
    assert_eq!(queued, expected);
    for i in 1..=4 {
        assert_eq!(h.object(object(i)).await.0, StatusCode::NOT_FOUND);
    }
    assert_eq!(
        h.audit("tree.batch").await,
        [(false, "objects=4 ops=1: internal".to_owned())]
    );
}

#[tokio::test]
async fn the_document_describes_the_batch() {
    let h = harness(Options::default()).await;
    let spec: serde_json::Value = h.get(crate::http::openapi::OPENAPI_PATH).await;
    let op = &spec["paths"][paths::BATCH]["post"];
    assert_eq!(op["operationId"], "batch");
    for status in ["200", "400", "409", "413", "507", "401"] {
        assert!(op["responses"][status].is_object(), "{status}");
    }
    for schema in [
        "BatchRequest",
        "BatchOp",
        "BatchResponse",
        "BatchOutcome",
        "InlineObject",
    ] {
        assert!(
            spec["components"]["schemas"][schema].is_object(),
            "{schema}"
        );
    }
    // A create may carry a file's objects: optional, described on the
    // field and on both endpoints.
    let create = &spec["components"]["schemas"]["CreateNodeRequest"];
    let field = &create["properties"]["objects"];
    assert_eq!(field["type"], "array", "{create}");
    assert!(
        field["description"]
            .as_str()
            .is_some_and(|d| d.contains("pending") && d.contains("not_a_file")),
        "{field}"
    );
    let required: Vec<&str> = create["required"]
        .as_array()
        .map(|r| r.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    assert!(
        required.contains(&"id") && !required.contains(&"objects"),
        "{required:?}"
    );
    let described = |path: &str| {
        spec["paths"][path]["post"]["description"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(described(paths::NODES).contains("`objects`"));
    assert!(described(paths::BATCH).contains("`objects`"));
    let responses = &spec["paths"][paths::NODES]["post"]["responses"];
    assert!(
        responses["409"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("not_a_file"))
    );
}

/// Not a check: the figures behind the batch. Run by hand, e.g. against
/// the private MariaDB of `scripts/test.sh --services-only`:
///
/// ```sh
/// VAULT_TEST_MYSQL_URL=mysql://... cargo test -p vault-server --release \
///     measure_small_files -- --ignored --nocapture
/// ```
///
/// N small files as the client sent them before the batch (create, `PUT`
/// the object, commit: three requests, one after the other) against one
/// batch of a create and a commit per file, and one batch of a create with
/// its object per file (fused), through the whole router (handlers, JSON,
/// store, object store, audit; no TCP). SQLite without
/// `VAULT_TEST_MYSQL_URL`. On MariaDB it also counts the statements the
/// server ran (its `Questions`), per file; and it times `TreeStore::batch`
/// alone for the two kinds of batch (objects reserved before).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement, run by hand"]
async fn measure_small_files() {
    const FILES: usize = 100;
    const ROUNDS: usize = 5;
    const SIZE: usize = 4096;
    let database_url = std::env::var("VAULT_TEST_MYSQL_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let backend = if database_url.is_some() {
        "mariadb"
    } else {
        "sqlite"
    };
    // Statements MariaDB ran so far (every client's: run alone).
    let counter = match &database_url {
        Some(url) => Some(sqlx::MySqlPool::connect(url).await.unwrap()),
        None => None,
    };
    let statements = || async {
        let pool = counter.as_ref()?;
        let row = sqlx::query("SHOW GLOBAL STATUS LIKE 'Questions'")
            .fetch_one(pool)
            .await
            .unwrap();
        let value: String = sqlx::Row::get(&row, 1);
        // Less the query asking.
        value.parse::<u64>().ok().map(|v| v - 1)
    };
    let ms = |d: &[std::time::Duration]| -> String {
        let mut v: Vec<f64> = d.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        v.sort_by(f64::total_cmp);
        let shown: Vec<String> = v.iter().map(|x| format!("{x:.1}")).collect();
        format!("median {:.1} ms [{}]", v[v.len() / 2], shown.join(", "))
    };
    let per_file = |counts: &[u64]| -> String {
        match counts.iter().min() {
            Some(min) => format!(", {:.1} statements per file", *min as f64 / FILES as f64),
            None => String::new(),
        }
    };
    for blob_store in ["file:", "db"] {
        let h = harness(Options {
            database_url: database_url.clone(),
            blob_store: Some(blob_store.to_owned()),
            ..Options::default()
        })
        .await;
        let mut single = Vec::new();
        let mut batched = Vec::new();
        let mut fused = Vec::new();
        let mut counts: [Vec<u64>; 3] = Default::default();
        let mut n = 0u64;
        let mut next = || {
            n += 1;
            let mut b = [0x5a; 16];
            b[..8].copy_from_slice(&n.to_le_bytes());
            (NodeId::from_bytes(b), ObjectId::from_bytes(b), n)
        };
        for _ in 0..ROUNDS {
            let before = statements().await;
            let started = std::time::Instant::now();
            for _ in 0..FILES {
                let (id, oid, k) = next();
                let data = vec![u8::try_from(k % 256).unwrap(); SIZE];
                let req = create(id, Kind::File, NodeId::ROOT, &format!("s{k}"));
                assert_eq!(
                    h.post_as(&h.token, paths::NODES, &req).await.0,
                    StatusCode::CREATED
                );
                assert_eq!(h.upload(oid, &data).await, StatusCode::CREATED);
                let path = paths::NODE_COMMIT.replace("{id}", &id.to_string());
                let (status, _) = h.post_as(&h.token, &path, &commit(1, &[oid])).await;
                assert_eq!(status, StatusCode::OK);
            }
            single.push(started.elapsed());
            if let (Some(a), Some(b)) = (before, statements().await) {
                counts[0].push(b - a - 1);
            }

            let mut req = BatchRequest::default();
            for _ in 0..FILES {
                let (id, oid, k) = next();
                let data = vec![u8::try_from(k % 256).unwrap(); SIZE];
                req.objects.push(inline(oid, &data));
                req.ops
                    .push(create_op(id, Kind::File, NodeId::ROOT, &format!("b{k}")));
                req.ops.push(commit_op(id, 1, &[oid]));
            }
            let before = statements().await;
            let started = std::time::Instant::now();
            let results = h.batch(&req).await;
            batched.push(started.elapsed());
            if let (Some(a), Some(b)) = (before, statements().await) {
                counts[1].push(b - a - 1);
            }
            assert!(results.iter().all(|r| matches!(r, BatchOutcome::Ok(_))));

            let mut req = BatchRequest::default();
            for _ in 0..FILES {
                let (id, oid, k) = next();
                let data = vec![u8::try_from(k % 256).unwrap(); SIZE];
                req.objects.push(inline(oid, &data));
                req.ops.push(BatchOp::Create(create_file(
                    id,
                    NodeId::ROOT,
                    &format!("c{k}"),
                    &[oid],
                )));
            }
            let before = statements().await;
            let started = std::time::Instant::now();
            let results = h.batch(&req).await;
            fused.push(started.elapsed());
            if let (Some(a), Some(b)) = (before, statements().await) {
                counts[2].push(b - a - 1);
            }
            assert!(
                results
                    .iter()
                    .all(|r| matches!(r, BatchOutcome::Ok(n) if n.size == SIZE as u64))
            );
        }
        println!(
            "{backend}, objects {blob_store}: {FILES} files of {SIZE} B: \
             one by one (3 requests each) {}{}; one batch (create + commit each) {}{}; \
             one batch (create with its object each) {}{}",
            ms(&single),
            per_file(&counts[0]),
            ms(&batched),
            per_file(&counts[1]),
            ms(&fused),
            per_file(&counts[2]),
        );
    }

    // `TreeStore::batch` alone (its objects reserved before): a create and
    // a commit per file, or a create with its object.
    let h = harness(Options {
        database_url: database_url.clone(),
        ..Options::default()
    })
    .await;
    let store = &h.state.store;
    let mut times: [Vec<std::time::Duration>; 2] = Default::default();
    let mut counts: [Vec<u64>; 2] = Default::default();
    let mut n = 0u64;
    for _ in 0..ROUNDS {
        for (variant, fuse) in [false, true].into_iter().enumerate() {
            let mut objects = Vec::new();
            let mut ops = Vec::new();
            for _ in 0..FILES {
                n += 1;
                let mut b = [0x6b; 16];
                b[..8].copy_from_slice(&n.to_le_bytes());
                let (id, oid) = (NodeId::from_bytes(b), ObjectId::from_bytes(b));
                objects.push(crate::store::NewObject {
                    id: oid,
                    size: SIZE as u64,
                    checksum: Checksum::Sha256([7; 32]),
                });
                let name = format!("t{n}");
                let entry = crate::store::NewEntry {
                    parent: NodeId::ROOT,
                    tag: tag(&name),
                    encrypted_name: name.into_bytes(),
                };
                let new = NewNode {
                    id,
                    kind: common::crypto::attrs::NodeKind::File,
                    record: vec![1; 60],
                    entry: Some(entry),
                    objects: if fuse { vec![oid] } else { Vec::new() },
                };
                ops.push(crate::store::TreeOp::Create(new));
                if !fuse {
                    ops.push(crate::store::TreeOp::Commit(crate::store::NewVersion {
                        id,
                        expected_version: 1,
                        record: vec![2; 80],
                        objects: vec![oid],
                    }));
                }
            }
            store
                .reserve_objects(h.owner, &objects, u64::MAX >> 2, now())
                .await
                .unwrap();
            let before = statements().await;
            let started = std::time::Instant::now();
            let results = store.batch(h.owner, &ops, now()).await.unwrap();
            times[variant].push(started.elapsed());
            if let (Some(a), Some(b)) = (before, statements().await) {
                counts[variant].push(b - a - 1);
            }
            assert!(results.iter().all(Result::is_ok));
        }
    }
    println!(
        "{backend}, TreeStore::batch alone, {FILES} files: create + commit each {}{}; \
         create with its object each {}{}",
        ms(&times[0]),
        per_file(&counts[0]),
        ms(&times[1]),
        per_file(&counts[1]),
    );
}
