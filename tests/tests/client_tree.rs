//! The client's tree API against the real server: one scenario driven
//! through `fs_client::api::VaultApi`, once on the in-memory fake
//! (`FakeVault`) and once on the real `vault-server` (SQLite) through the
//! HTTP client, with the same outcomes asserted on both and the two
//! transcripts compared, so the fake the filesystem tests use stays
//! faithful to the server.

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use bytes::Bytes;
use common::api::tree::{
    CommitRequest, CreateNodeRequest, EntrySpec, Kind, LinkRequest, NodeInfo, RenameMode,
    RenameRequest,
};
use common::api::{Base64, ErrorCode};
use common::{NodeId, ObjectId};
use fs_client::api::fake_tree::FakeVault;
use fs_client::api::http::{HttpApi, HttpOptions};
use fs_client::api::tree::crc32c;
use fs_client::api::{AccessToken, ApiResult, ByteRange, ListQuery, VaultApi};
use fs_client::server_url::ServerUrl;
use tests::tree::{Vault, random_node, random_object, tag};
use tests::{Backend, TestServer};

/// The ids of one run, shared by both sides so their answers compare.
struct Ids {
    dir: NodeId,
    sub: NodeId,
    a: NodeId,
    b: NodeId,
    inner: NodeId,
    obj: ObjectId,
    bad_obj: ObjectId,
}

fn entry(parent: NodeId, name: &str) -> EntrySpec {
    EntrySpec {
        parent,
        tag: tag(parent, name),
        encrypted_name: Base64(format!("enc:{name}").into_bytes()),
    }
}

fn create(id: NodeId, kind: Kind, entry: Option<EntrySpec>) -> CreateNodeRequest {
    CreateNodeRequest {
        id,
        kind,
        record: Base64(vec![1; 32]),
        entry,
        objects: Vec::new(),
    }
}

/// A node's comparable facts (not `updated_at`, which is the clock's).
fn facts(n: &NodeInfo) -> String {
    format!(
        "{} {:?} v{} size={} nlink={}",
        n.id, n.kind, n.version, n.size, n.nlink
    )
}

/// An outcome as the transcript records it.
fn outcome<T>(r: &ApiResult<T>, ok: impl FnOnce(&T) -> String) -> String {
    match r {
        Ok(v) => ok(v),
        Err(e) => format!("error {:?}", e.code()),
    }
}

fn code<T>(r: &ApiResult<T>) -> Option<ErrorCode> {
    r.as_ref().err().and_then(|e| e.code())
}

/// The scenario, asserting as it goes; answers its transcript.
async fn scenario(api: &impl VaultApi, token: &AccessToken, ids: &Ids) -> Vec<String> {
    let mut log = Vec::new();
    let root = NodeId::ROOT;
    let content: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();

    // Root, a directory with a subdirectory, two files.
    let r = api
        .create_node(token, &create(root, Kind::Directory, None))
        .await;
    assert_eq!(r.as_ref().unwrap().version, 1);
    log.push(outcome(&r, facts));
    for (id, kind, e) in [
        (ids.dir, Kind::Directory, entry(root, "dir")),
        (ids.sub, Kind::Directory, entry(ids.dir, "sub")),
        (ids.a, Kind::File, entry(root, "a")),
        (ids.b, Kind::File, entry(root, "b")),
        (ids.inner, Kind::File, entry(ids.dir, "inner")),
    ] {
        let r = api.create_node(token, &create(id, kind, Some(e))).await;
        assert_eq!(r.as_ref().unwrap().nlink, 1);
        log.push(outcome(&r, facts));
    }
    let r = api
        .create_node(
            token,
            &create(random_node(), Kind::File, Some(entry(root, "a"))),
        )
        .await;
    assert_eq!(code(&r), Some(ErrorCode::Exists));
    log.push(outcome(&r, facts));

    // Upload and commit; a wrong digest and a stale version are refused.
    let r = api
        .upload_object(
            token,
            ids.bad_obj,
            Bytes::from_static(b"abc"),
            crc32c(b"xyz"),
        )
        .await;
    assert_eq!(code(&r), Some(ErrorCode::DigestMismatch));
    log.push(outcome(&r, |_| "uploaded".into()));
    let r = api
        .upload_object(
            token,
            ids.obj,
            Bytes::from(content.clone()),
            crc32c(&content),
        )
        .await;
    r.as_ref().unwrap();
    log.push(outcome(&r, |_| "uploaded".into()));
    let commit = |expected| CommitRequest {
        expected_version: expected,
        record: Base64(vec![2; 32]),
        objects: vec![ids.obj],
    };
    let r = api.commit(token, ids.a, &commit(1)).await;
    assert_eq!(r.as_ref().unwrap().size, 1000);
    log.push(outcome(&r, facts));
    let r = api.commit(token, ids.a, &commit(1)).await;
    assert_eq!(code(&r), Some(ErrorCode::Conflict));
    log.push(outcome(&r, facts));
    let r = api.commit(token, ids.dir, &commit(1)).await;
    assert_eq!(code(&r), Some(ErrorCode::NotAFile));
    log.push(outcome(&r, facts));

    // List the root two at a time: every entry once, in tag order.
    let mut tags = Vec::new();
    let mut after = None;
    loop {
        let page = api
            .list(
                token,
                root,
                ListQuery {
                    after,
                    limit: Some(2),
                },
            )
            .await
            .unwrap();
        for e in &page.entries {
            log.push(format!("entry {:?} {}", e.tag, facts(&e.node)));
            tags.push(e.tag);
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let mut sorted = tags.clone();
    sorted.sort();
    assert_eq!(tags, sorted);
    assert_eq!(tags.len(), 3);

    // Rename a over b: b's node is gone, its name now names a.
    let rename = |src_parent, src: &str, dst_parent, dst: &str, mode| RenameRequest {
        src_parent,
        src_tag: tag(src_parent, src),
        dst_parent,
        dst_tag: tag(dst_parent, dst),
        dst_encrypted_name: Base64(format!("enc:{dst}").into_bytes()),
        src_encrypted_name: None,
        mode,
    };
    let r = api
        .rename(token, &rename(root, "a", root, "b", RenameMode::NoReplace))
        .await;
    assert_eq!(code(&r), Some(ErrorCode::Exists));
    log.push(outcome(&r, |_| "renamed".into()));
    let r = api
        .rename(token, &rename(root, "a", root, "b", RenameMode::Replace))
        .await;
    r.as_ref().unwrap();
    log.push(outcome(&r, |_| "renamed".into()));
    let r = api.node(token, ids.b).await;
    assert_eq!(code(&r), Some(ErrorCode::NotFound));
    log.push(outcome(&r, facts));
    let r = api.lookup(token, root, &tag(root, "b")).await;
    assert_eq!(r.as_ref().unwrap().node.id, ids.a);
    log.push(outcome(&r, |e| facts(&e.node)));

    // A directory into its own subtree; rmdir and unlink of a directory.
    let r = api
        .rename(
            token,
            &rename(root, "dir", ids.sub, "x", RenameMode::Replace),
        )
        .await;
    assert_eq!(code(&r), Some(ErrorCode::InvalidMove));
    log.push(outcome(&r, |_| "renamed".into()));
    let r = api.remove(token, root, &tag(root, "dir"), true).await;
    assert_eq!(code(&r), Some(ErrorCode::NotEmpty));
    log.push(outcome(&r, |_| "removed".into()));
    let r = api.remove(token, root, &tag(root, "dir"), false).await;
    assert_eq!(code(&r), Some(ErrorCode::IsADirectory));
    log.push(outcome(&r, |_| "removed".into()));

    // A hard link counts.
    let r = api
        .link(
            token,
            &LinkRequest {
                entry: entry(ids.dir, "link"),
                child: ids.a,
            },
        )
        .await;
    assert_eq!(r.as_ref().unwrap().nlink, 2);
    log.push(outcome(&r, facts));

    // Ranges.
    let get = |range| api.download_object(token, ids.obj, range);
    let r = get(Some(ByteRange::Span {
        first: 10,
        last: 19,
    }))
    .await;
    assert_eq!(&r.as_ref().unwrap()[..], &content[10..20]);
    log.push(outcome(&r, |b| format!("{} bytes", b.len())));
    let r = get(Some(ByteRange::Suffix(5))).await;
    assert_eq!(&r.as_ref().unwrap()[..], &content[995..]);
    log.push(outcome(&r, |b| format!("{} bytes", b.len())));
    let r = get(None).await;
    assert_eq!(&r.as_ref().unwrap()[..], &content[..]);
    log.push(outcome(&r, |b| format!("{} bytes", b.len())));
    let r = get(Some(ByteRange::From(1000))).await;
    assert_eq!(code(&r), Some(ErrorCode::RangeNotSatisfiable));
    log.push(outcome(&r, |b| format!("{} bytes", b.len())));
    let r = api.download_object(token, ids.bad_obj, None).await;
    assert_eq!(code(&r), Some(ErrorCode::NotFound));
    log.push(outcome(&r, |b| format!("{} bytes", b.len())));

    let s = api.statfs(token).await.unwrap();
    assert_eq!(s.used_bytes, 1000);
    log.push(format!("statfs used={} nodes={}", s.used_bytes, s.nodes));
    log
}

#[tokio::test]
async fn the_fake_and_the_server_agree_on_a_scenario() {
    let Some(srv) = TestServer::start(Backend::Sqlite).await else {
        return;
    };
    let ids = Ids {
        dir: random_node(),
        sub: random_node(),
        a: random_node(),
        b: random_node(),
        inner: random_node(),
        obj: random_object(),
        bad_obj: random_object(),
    };

    let fake = FakeVault::new();
    let on_fake = scenario(&fake, &AccessToken::new("fake".into()), &ids).await;
    fake.check_invariants().unwrap();

    let vault = Vault::new(&srv, "client-tree").await;
    let http = HttpApi::new(ServerUrl::parse(&srv.url).unwrap(), &HttpOptions::default()).unwrap();
    let on_server = scenario(&http, &AccessToken::new(vault.token.clone()), &ids).await;

    assert_eq!(on_fake, on_server, "server log:\n{}", srv.log());
}

/// Collects what a download hands over, refusing after `stop_after`
/// pieces when set.
#[derive(Default)]
struct Collect {
    bytes: Vec<u8>,
    pieces: usize,
    stop_after: Option<usize>,
}

impl fs_client::api::ObjectSink for Collect {
    fn take(&mut self, bytes: &[u8]) -> bool {
        self.bytes.extend_from_slice(bytes);
        self.pieces += 1;
        self.stop_after != Some(self.pieces)
    }
}

/// Downloads `id` into a fresh [`Collect`].
async fn collect(
    api: &impl VaultApi,
    token: &AccessToken,
    id: ObjectId,
    stop_after: Option<usize>,
) -> (ApiResult<()>, Collect) {
    let mut sink = Collect {
        stop_after,
        ..Collect::default()
    };
    let r = api.download_object_into(token, id, &mut sink).await;
    (r, sink)
}

/// Uploads `body` as `id`, then downloads it whole into sinks: all of it,
/// stopped after one piece, and a missing object.
async fn stream_back(api: &impl VaultApi, token: &AccessToken, id: ObjectId, body: &[u8]) {
    api.upload_object(token, id, Bytes::copy_from_slice(body), crc32c(body))
        .await
        .unwrap();
    let (r, got) = collect(api, token, id, None).await;
    r.unwrap();
    assert!(got.bytes == body, "every byte, in order");
    // A sink that refuses a piece stops the download, without error.
    let (r, got) = collect(api, token, id, Some(1)).await;
    r.unwrap();
    assert_eq!(got.pieces, 1);
    // A missing object is the server's error, and nothing is handed over.
    let (r, got) = collect(api, token, random_object(), None).await;
    assert_eq!(code(&r), Some(ErrorCode::NotFound));
    assert_eq!(got.pieces, 0);
}

#[tokio::test]
async fn a_whole_object_streams_to_a_sink_as_it_arrives() {
    let Some(srv) = TestServer::start(Backend::Sqlite).await else {
        return;
    };
    let vault = Vault::new(&srv, "client-stream").await;
    let http = HttpApi::new(ServerUrl::parse(&srv.url).unwrap(), &HttpOptions::default()).unwrap();
    let token = AccessToken::new(vault.token.clone());
    // A chunk-sized object: more than one read off the connection.
    let body: Vec<u8> = (0..(4u32 << 20) + 1234).map(|i| (i % 253) as u8).collect();
    let id = random_object();
    stream_back(
        &FakeVault::new(),
        &AccessToken::new("fake".into()),
        id,
        &body,
    )
    .await;
    stream_back(&http, &token, id, &body).await;
    // Over HTTP the body comes in pieces as it is read, not collected first.
    let (_, got) = collect(&http, &token, id, None).await;
    assert!(got.pieces > 1, "{} piece(s)", got.pieces);
    let (_, got) = collect(&http, &token, id, Some(1)).await;
    assert!(got.bytes.len() < body.len(), "stopped early");
}
