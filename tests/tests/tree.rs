//! End-to-end tests of the encrypted tree's HTTP API (issue 4): the real
//! `vault-server` binary on `127.0.0.1:0`, accounts registered and logged in
//! through the real flows, records and names made-up opaque bytes (the
//! server never decrypts), name tags real HMACs under a test key. Every test
//! runs twice, as `sqlite::<name>` and `mariadb::<name>`.

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::collections::BTreeSet;

use common::api::tree::{
    ChangePage, CreateNodeRequest, EntryInfo, EntryPage, EntrySpec, Kind, NodeInfo, RenameMode,
    StatFs, paths,
};
use common::api::{AuditEvent, Base64, ErrorCode};
use common::crypto::name::NameTag;
use common::{NodeId, ObjectId};
use reqwest::Method;
use sha2::{Digest as _, Sha256};
use tests::tree::{
    Vault, entry_path, node_path, random_bytes, random_node, random_object, random_tag,
    sealed_name, sealed_record, tag, tag_hex,
};
use tests::{Backend, Resp, ServerOptions, TestServer};

tests::on_both_backends!(
    create_root_dirs_files_and_special_nodes,
    listing_pages_over_1500_entries_each_once_in_tag_order,
    batch_reads_and_lookups,
    record_updates_and_two_writers,
    commit_versions_with_uploaded_objects,
    rename_replace_noreplace_exchange_and_invalid_moves,
    unlink_and_rmdir_rules,
    hard_links_count_nlink,
    cross_account_ids_answer_exactly_like_missing_ones,
    statfs_and_change_feed,
    malformed_input_is_400_json,
    every_endpoint_needs_a_token,
    mutations_are_audited_without_names,
);

/// A server, or `None` (skipped) when the backend's services are missing.
async fn server(b: Backend) -> Option<TestServer> {
    TestServer::start(b).await
}

/// One account with its root created.
async fn vault(srv: &TestServer, label: &str) -> Vault {
    let v = Vault::new(srv, label).await;
    let root = v.create_root().await;
    assert_eq!(root.id, NodeId::ROOT);
    assert_eq!(root.kind, Kind::Directory);
    assert_eq!(root.version, 1);
    v
}

/// Uploads `bytes` as a new object (201).
async fn upload(v: &Vault, bytes: &[u8]) -> ObjectId {
    let id = random_object();
    let resp = v
        .api
        .send_with_headers(
            Method::PUT,
            &node_path(paths::OBJECT, id),
            Some((bytes.to_vec(), "application/octet-stream")),
            Some(&v.token),
            &[(
                common::api::tree::SHA256_HEADER,
                data_encoding::HEXLOWER.encode(&Sha256::digest(bytes)),
            )],
        )
        .await;
    resp.expect(201);
    id
}

async fn create_root_dirs_files_and_special_nodes(b: Backend) {
    let Some(srv) = server(b).await else { return };
    let v = Vault::new(&srv, "tree-create").await;

    // Before the root exists, nothing does.
    v.node(NodeId::ROOT)
        .await
        .expect_error(404, ErrorCode::NotFound);
    // The root: no entry, id all zero, a directory, once.
    let bad_root = |id: NodeId, kind: Kind, entry: Option<EntrySpec>| CreateNodeRequest {
        id,
        kind,
        record: sealed_record(),
        entry,
        objects: Vec::new(),
    };
    v.create(&bad_root(random_node(), Kind::Directory, None))
        .await
        .expect_error(400, ErrorCode::BadRequest);
    v.create(&bad_root(NodeId::ROOT, Kind::File, None))
        .await
        .expect_error(400, ErrorCode::BadRequest);
    let root = v.create_root().await;
    assert_eq!(root.id, NodeId::ROOT);
    assert_eq!(root.nlink, 0);
    v.create(&bad_root(NodeId::ROOT, Kind::Directory, None))
        .await
        .expect_error(409, ErrorCode::Exists);
    let with_entry = bad_root(
        NodeId::ROOT,
        Kind::Directory,
        Some(EntrySpec {
            parent: NodeId::ROOT,
            tag: random_tag(),
            encrypted_name: sealed_name(),
        }),
    );
    v.create(&with_entry)
        .await
        .expect_error(400, ErrorCode::BadRequest);

    // Directories, files and every special kind.
    let docs = v.mkdir(NodeId::ROOT, "docs").await;
    let sub = v.mkdir(docs.id(), "sub").await;
    let file = v.mkfile(sub.id(), "notes.txt").await;
    let link = v.make(docs.id(), "latest", Kind::Symlink).await;
    let fifo = v.make(docs.id(), "pipe", Kind::Fifo).await;
    let sock = v.make(docs.id(), "sock", Kind::Socket).await;
    for m in [&docs, &sub, &file, &link, &fifo, &sock] {
        let got: NodeInfo = v.node(m.id()).await.ok(200);
        assert_eq!(got, m.node);
        assert_eq!(got.nlink, 1);
        assert_eq!(got.size, 0);
        let entry: EntryInfo = v.lookup(m.parent, &m.tag).await.ok(200);
        assert_eq!(entry.tag, m.tag);
        assert_eq!(entry.encrypted_name, m.name);
        assert_eq!(entry.node, m.node);
    }
    let page: EntryPage = v.list(docs.id(), None, None).await.ok(200);
    assert_eq!(page.entries.len(), 4);
    assert_eq!(page.next, None);

    // A taken name, a taken id, a file as parent, a missing parent.
    let mut again = Vault::create_request(docs.id(), "sub", Kind::File);
    v.create(&again).await.expect_error(409, ErrorCode::Exists);
    again = Vault::create_request(docs.id(), "other", Kind::File);
    again.id = file.id();
    v.create(&again).await.expect_error(409, ErrorCode::Exists);
    v.create(&Vault::create_request(file.id(), "x", Kind::File))
        .await
        .expect_error(409, ErrorCode::NotADirectory);
    v.create(&Vault::create_request(random_node(), "x", Kind::File))
        .await
        .expect_error(404, ErrorCode::NotFound);
    // A lookup of a name that is not there.
    v.lookup(docs.id(), &tag(docs.id(), "nothing"))
        .await
        .expect_error(404, ErrorCode::NotFound);

    let fs: StatFs = v.statfs().await.ok(200);
    assert_eq!(fs.nodes, 7);
}

async fn listing_pages_over_1500_entries_each_once_in_tag_order(b: Backend) {
    let Some(srv) = server(b).await else { return };
    let v = vault(&srv, "tree-list").await;
    let dir = v.mkdir(NodeId::ROOT, "big").await;
    const N: usize = 1500;
    let mut set = tokio::task::JoinSet::new();
    for worker in 0..6 {
        let v = v.clone();
        let dir = dir.id();
        set.spawn(async move {
            let mut made = Vec::new();
            for i in (worker..N).step_by(6) {
                made.push(v.mkfile(dir, &format!("file-{i:05}")).await);
            }
            made
        });
    }
    let made: Vec<_> = set.join_all().await.into_iter().flatten().collect();
    assert_eq!(made.len(), N);
    let expected: BTreeSet<NameTag> = made.iter().map(|m| m.tag).collect();
    assert_eq!(expected.len(), N);
    let expected: Vec<NameTag> = expected.into_iter().collect();

    for (limit, pages) in [(None, 3usize), (Some(1000), 2), (Some(7), N.div_ceil(7))] {
        let mut seen = Vec::new();
        let mut after = None;
        let mut count = 0;
        loop {
            let page: EntryPage = v.list(dir.id(), after.as_ref(), limit).await.ok(200);
            count += 1;
            let size = limit.unwrap_or(500) as usize;
            assert!(page.entries.len() <= size);
            seen.extend(page.entries.iter().map(|e| e.tag));
            match page.next {
                Some(next) => {
                    assert_eq!(page.entries.len(), size, "a page with `next` is full");
                    assert_eq!(Some(&next), page.entries.last().map(|e| &e.tag));
                    after = Some(next);
                }
                None => break,
            }
            assert!(count <= pages, "too many pages");
        }
        assert_eq!(count, pages, "limit {limit:?}");
        assert_eq!(seen, expected, "limit {limit:?}: each once, in tag order");
    }
    // Entries carry their nodes.
    let page: EntryPage = v.list(dir.id(), None, Some(3)).await.ok(200);
    for e in &page.entries {
        let m = made.iter().find(|m| m.tag == e.tag).unwrap();
        assert_eq!(e.node, m.node);
        assert_eq!(e.encrypted_name, m.name);
    }
    // Past the last tag: an empty last page.
    let last = *expected.last().unwrap();
    let page: EntryPage = v.list(dir.id(), Some(&last), None).await.ok(200);
    assert!(page.entries.is_empty());
    assert_eq!(page.next, None);
    // Limits outside 1..=1000 are refused.
    for bad in [0, 1001] {
        v.list(dir.id(), None, Some(bad))
            .await
            .expect_error(400, ErrorCode::BadRequest);
    }
    // Listing a file or a missing directory.
    let f = &made[0];
    v.list(f.id(), None, None)
        .await
        .expect_error(409, ErrorCode::NotADirectory);
    v.list(random_node(), None, None)
        .await
        .expect_error(404, ErrorCode::NotFound);

    // Batch lookup of 1000 tags, in the order asked (+ a missing one, and a
    // duplicate, each answered once).
    let mut tags: Vec<NameTag> = made.iter().take(999).map(|m| m.tag).collect();
    tags.push(random_tag());
    let found: Vec<EntryInfo> = v.lookup_batch(dir.id(), &tags).await.ok(200);
    assert_eq!(found.len(), 999);
    let found_tags: Vec<NameTag> = found.iter().map(|e| e.tag).collect();
    assert_eq!(found_tags[..], tags[..999]);
    let dup = [made[1].tag, made[2].tag, made[1].tag];
    let found: Vec<EntryInfo> = v.lookup_batch(dir.id(), &dup).await.ok(200);
    assert_eq!(
        found.iter().map(|e| e.tag).collect::<Vec<_>>(),
        [made[1].tag, made[2].tag]
    );
    let mut too_many = tags.clone();
    too_many.push(random_tag());
    v.lookup_batch(dir.id(), &too_many)
        .await
        .expect_error(400, ErrorCode::BadRequest);
}

async fn batch_reads_and_lookups(b: Backend) {
    let Some(srv) = server(b).await else { return };
    let v = vault(&srv, "tree-batch").await;
    let d = v.mkdir(NodeId::ROOT, "d").await;
    let mut ids = vec![NodeId::ROOT, d.id()];
    for i in 0..20 {
        ids.push(v.mkfile(d.id(), &format!("f{i}")).await.id());
    }
    // In the order asked, missing left out, each once.
    let mut ask: Vec<NodeId> = ids.iter().rev().copied().collect();
    ask.insert(3, random_node());
    ask.push(ids[5]);
    let got: Vec<NodeInfo> = v.nodes(&ask).await.ok(200);
    let got_ids: Vec<NodeId> = got.iter().map(|n| n.id).collect();
    let want: Vec<NodeId> = ids.iter().rev().copied().collect();
    assert_eq!(got_ids, want);
    for n in &got {
        let one: NodeInfo = v.node(n.id).await.ok(200);
        assert_eq!(&one, n);
    }
    // 1000 ids pass, 1001 do not.
    let mut many: Vec<NodeId> = (0..998).map(|_| random_node()).collect();
    many.extend([d.id(), NodeId::ROOT]);
    let got: Vec<NodeInfo> = v.nodes(&many).await.ok(200);
    assert_eq!(got.len(), 2);
    many.push(random_node());
    v.nodes(&many)
        .await
        .expect_error(400, ErrorCode::BadRequest);
    // An empty batch is an empty answer.
    let got: Vec<NodeInfo> = v.nodes(&[]).await.ok(200);
    assert!(got.is_empty());
    // Batch lookup in a missing directory or a file.
    v.lookup_batch(random_node(), &[random_tag()])
        .await
        .expect_error(404, ErrorCode::NotFound);
    v.lookup_batch(ids[2], &[random_tag()])
        .await
        .expect_error(409, ErrorCode::NotADirectory);
}

async fn record_updates_and_two_writers(b: Backend) {
    let Some(srv) = server(b).await else { return };
    let v = vault(&srv, "tree-record").await;
    let f = v.mkfile(NodeId::ROOT, "f").await;

    let r2 = sealed_record();
    let n: NodeInfo = v.update_record(f.id(), 1, &r2).await.ok(200);
    assert_eq!(n.version, 2);
    assert_eq!(n.record, r2);
    // A stale writer: 409 naming the current version; nothing changes.
    let e = v
        .update_record(f.id(), 1, &sealed_record())
        .await
        .expect_error(409, ErrorCode::Conflict);
    assert!(e.error.message.contains("version 2"), "{e:?}");
    let e = v
        .update_record(f.id(), 7, &sealed_record())
        .await
        .expect_error(409, ErrorCode::Conflict);
    assert!(e.error.message.contains("version 2"), "{e:?}");
    let now: NodeInfo = v.node(f.id()).await.ok(200);
    assert_eq!((now.version, &now.record), (2, &r2));

    // Two writers from version 2, at once, many times: one wins each round.
    let mut version = 2;
    for _ in 0..5 {
        let (ra, rb) = (sealed_record(), sealed_record());
        let (a, bb) = tokio::join!(
            v.update_record(f.id(), version, &ra),
            v.update_record(f.id(), version, &rb)
        );
        let mut statuses = [a.status, bb.status];
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 409], "{} / {}", a.text(), bb.text());
        let (winner, loser, record) = if a.status == 200 {
            (a, bb, ra)
        } else {
            (bb, a, rb)
        };
        loser.expect_error(409, ErrorCode::Conflict);
        let won: NodeInfo = winner.json();
        version += 1;
        assert_eq!(won.version, version);
        let now: NodeInfo = v.node(f.id()).await.ok(200);
        assert_eq!((now.version, now.record), (version, record));
    }
    // Records of a directory change too; a missing node is 404.
    let n: NodeInfo = v.update_record(NodeId::ROOT, 1, &r2).await.ok(200);
    assert_eq!(n.version, 2);
    v.update_record(random_node(), 1, &r2)
        .await
        .expect_error(404, ErrorCode::NotFound);
    // A record of 3 MiB passes (the route's body limit is raised); one over
    // 4 MiB is 413.
    let big = Base64(random_bytes(3 << 20));
    let n: NodeInfo = v.update_record(f.id(), version, &big).await.ok(200);
    assert_eq!(n.record, big);
    let huge = Base64(random_bytes((4 << 20) + 1));
    v.update_record(f.id(), version + 1, &huge)
        .await
        .expect_error(413, ErrorCode::PayloadTooLarge);
}

async fn commit_versions_with_uploaded_objects(b: Backend) {
    let Some(srv) = server(b).await else { return };
    let v = vault(&srv, "tree-commit").await;
    let f = v.mkfile(NodeId::ROOT, "f").await;
    let d = v.mkdir(NodeId::ROOT, "d").await;

    // An empty version.
    let n: NodeInfo = v.commit(f.id(), 1, &sealed_record(), &[]).await.ok(200);
    assert_eq!((n.version, n.size), (2, 0));
    // Two uploaded objects.
    let o1 = upload(&v, &random_bytes(1000)).await;
    let o2 = upload(&v, &random_bytes(2345)).await;
    let before: StatFs = v.statfs().await.ok(200);
    assert_eq!(before.used_bytes, 3345);
    let r = sealed_record();
    let n: NodeInfo = v.commit(f.id(), 2, &r, &[o1, o2]).await.ok(200);
    assert_eq!((n.version, n.size, &n.record), (3, 3345, &r));
    // Stale: 409, nothing changes.
    v.commit(f.id(), 2, &sealed_record(), &[o1])
        .await
        .expect_error(409, ErrorCode::Conflict);
    // Not a file; a missing node; an object that does not exist.
    v.commit(d.id(), 1, &sealed_record(), &[])
        .await
        .expect_error(409, ErrorCode::NotAFile);
    v.commit(random_node(), 1, &sealed_record(), &[])
        .await
        .expect_error(404, ErrorCode::NotFound);
    v.commit(f.id(), 3, &sealed_record(), &[o1, random_object()])
        .await
        .expect_error(404, ErrorCode::NotFound);
    let now: NodeInfo = v.node(f.id()).await.ok(200);
    assert_eq!((now.version, now.size), (3, 3345));
    // An object committed to one file cannot go into another.
    let g = v.mkfile(NodeId::ROOT, "g").await;
    v.commit(g.id(), 1, &sealed_record(), &[o1])
        .await
        .expect_error(404, ErrorCode::NotFound);
    // Dropping o2 releases it: size and usage shrink.
    let n: NodeInfo = v.commit(f.id(), 3, &sealed_record(), &[o1]).await.ok(200);
    assert_eq!((n.version, n.size), (4, 1000));
    let after: StatFs = v.statfs().await.ok(200);
    assert_eq!(after.used_bytes, 1000);
    // Deleting the file frees the rest.
    v.remove(NodeId::ROOT, &f.tag, false).await.expect(204);
    let after: StatFs = v.statfs().await.ok(200);
    assert_eq!(after.used_bytes, 0);
}

async fn rename_replace_noreplace_exchange_and_invalid_moves(b: Backend) {
    let Some(srv) = server(b).await else { return };
    let v = vault(&srv, "tree-rename").await;
    let r = NodeId::ROOT;
    let a = v.mkfile(r, "a").await;
    let bfile = v.mkfile(r, "b").await;

    // Replace over an existing file: the target now names a; b is gone.
    v.rename(&Vault::rename_request(r, "a", r, "b", RenameMode::Replace))
        .await
        .expect(204);
    let e: EntryInfo = v.lookup(r, &tag(r, "b")).await.ok(200);
    assert_eq!(e.node.id, a.id());
    v.lookup(r, &tag(r, "a"))
        .await
        .expect_error(404, ErrorCode::NotFound);
    v.node(bfile.id())
        .await
        .expect_error(404, ErrorCode::NotFound);

    // No-replace onto an existing name: exists, nothing changes.
    let c = v.mkfile(r, "c").await;
    v.rename(&Vault::rename_request(
        r,
        "c",
        r,
        "b",
        RenameMode::NoReplace,
    ))
    .await
    .expect_error(409, ErrorCode::Exists);
    let e: EntryInfo = v.lookup(r, &tag(r, "b")).await.ok(200);
    assert_eq!(e.node.id, a.id());
    // No-replace to a free name works.
    v.rename(&Vault::rename_request(
        r,
        "c",
        r,
        "c2",
        RenameMode::NoReplace,
    ))
    .await
    .expect(204);

    // Exchange: the two names swap nodes, with their new encrypted names.
    let req = Vault::rename_request(r, "b", r, "c2", RenameMode::Exchange);
    v.rename(&req).await.expect(204);
    let eb: EntryInfo = v.lookup(r, &tag(r, "b")).await.ok(200);
    let ec: EntryInfo = v.lookup(r, &tag(r, "c2")).await.ok(200);
    assert_eq!(eb.node.id, c.id());
    assert_eq!(ec.node.id, a.id());
    assert_eq!(ec.encrypted_name, req.dst_encrypted_name);
    assert_eq!(Some(&eb.encrypted_name), req.src_encrypted_name.as_ref());
    // Exchange without a target is 404; without the second name 422.
    v.rename(&Vault::rename_request(
        r,
        "b",
        r,
        "zz",
        RenameMode::Exchange,
    ))
    .await
    .expect_error(404, ErrorCode::NotFound);
    let mut no_name = Vault::rename_request(r, "b", r, "c2", RenameMode::Exchange);
    no_name.src_encrypted_name = None;
    v.rename(&no_name)
        .await
        .expect_error(422, ErrorCode::InvalidMove);

    // Directories: move into another, never into its own subtree.
    let d1 = v.mkdir(r, "d1").await;
    let d2 = v.mkdir(d1.id(), "d2").await;
    let d3 = v.mkdir(d2.id(), "d3").await;
    v.rename(&Vault::rename_request(
        r,
        "d1",
        d3.id(),
        "loop",
        RenameMode::Replace,
    ))
    .await
    .expect_error(422, ErrorCode::InvalidMove);
    v.rename(&Vault::rename_request(
        r,
        "d1",
        d1.id(),
        "self",
        RenameMode::Replace,
    ))
    .await
    .expect_error(422, ErrorCode::InvalidMove);
    v.rename(&Vault::rename_request(
        d2.id(),
        "d3",
        r,
        "d3",
        RenameMode::Replace,
    ))
    .await
    .expect(204);
    let e: EntryInfo = v.lookup(r, &tag(r, "d3")).await.ok(200);
    assert_eq!(e.node.id, d3.id());
    // A file cannot replace a directory, nor a directory a file; a
    // directory replaces only an empty one.
    v.rename(&Vault::rename_request(r, "b", r, "d3", RenameMode::Replace))
        .await
        .expect_error(409, ErrorCode::IsADirectory);
    v.rename(&Vault::rename_request(r, "d3", r, "b", RenameMode::Replace))
        .await
        .expect_error(409, ErrorCode::NotADirectory);
    v.rename(&Vault::rename_request(
        r,
        "d3",
        r,
        "d1",
        RenameMode::Replace,
    ))
    .await
    .expect_error(409, ErrorCode::NotEmpty);
    v.rename(&Vault::rename_request(
        d1.id(),
        "d2",
        r,
        "d3",
        RenameMode::Replace,
    ))
    .await
    .expect(204);
    v.node(d3.id()).await.expect_error(404, ErrorCode::NotFound);
    // Missing source; a file as directory.
    v.rename(&Vault::rename_request(
        r,
        "nope",
        r,
        "x",
        RenameMode::Replace,
    ))
    .await
    .expect_error(404, ErrorCode::NotFound);
    v.rename(&Vault::rename_request(
        a.id(),
        "x",
        r,
        "x",
        RenameMode::Replace,
    ))
    .await
    .expect_error(409, ErrorCode::NotADirectory);
}

async fn unlink_and_rmdir_rules(b: Backend) {
    let Some(srv) = server(b).await else { return };
    let v = vault(&srv, "tree-remove").await;
    let r = NodeId::ROOT;
    let d = v.mkdir(r, "d").await;
    let f = v.mkfile(d.id(), "f").await;

    v.remove(r, &d.tag, true)
        .await
        .expect_error(409, ErrorCode::NotEmpty);
    v.remove(r, &d.tag, false)
        .await
        .expect_error(409, ErrorCode::IsADirectory);
    v.remove(d.id(), &f.tag, true)
        .await
        .expect_error(409, ErrorCode::NotADirectory);
    v.remove(d.id(), &random_tag(), false)
        .await
        .expect_error(404, ErrorCode::NotFound);
    // `dir` defaults to false (unlink).
    let path = entry_path(d.id(), tag_hex(&f.tag));
    v.api.delete(&path, Some(&v.token)).await.expect(204);
    v.node(f.id()).await.expect_error(404, ErrorCode::NotFound);
    v.remove(r, &d.tag, true).await.expect(204);
    v.node(d.id()).await.expect_error(404, ErrorCode::NotFound);
    v.remove(r, &d.tag, true)
        .await
        .expect_error(404, ErrorCode::NotFound);
    // A bad `dir` value.
    v.api
        .delete(&format!("{path}?dir=maybe"), Some(&v.token))
        .await
        .expect_error(400, ErrorCode::BadRequest);
}

async fn hard_links_count_nlink(b: Backend) {
    let Some(srv) = server(b).await else { return };
    let v = vault(&srv, "tree-link").await;
    let r = NodeId::ROOT;
    let d = v.mkdir(r, "d").await;
    let f = v.mkfile(r, "f").await;

    let n: NodeInfo = v.link(d.id(), "f-again", f.id()).await.ok(201);
    assert_eq!((n.id, n.nlink), (f.id(), 2));
    let e: EntryInfo = v.lookup(d.id(), &tag(d.id(), "f-again")).await.ok(200);
    assert_eq!((e.node.id, e.node.nlink), (f.id(), 2));
    let n: NodeInfo = v.link(r, "f-third", f.id()).await.ok(201);
    assert_eq!(n.nlink, 3);
    // No links to directories, none onto a taken name, none to a missing node.
    v.link(r, "d-again", d.id())
        .await
        .expect_error(409, ErrorCode::IsADirectory);
    v.link(r, "f-third", f.id())
        .await
        .expect_error(409, ErrorCode::Exists);
    v.link(r, "ghost", random_node())
        .await
        .expect_error(404, ErrorCode::NotFound);
    v.link(random_node(), "x", f.id())
        .await
        .expect_error(404, ErrorCode::NotFound);
    // Unlinking one name keeps the node; the last one deletes it.
    v.remove(r, &f.tag, false).await.expect(204);
    let n: NodeInfo = v.node(f.id()).await.ok(200);
    assert_eq!(n.nlink, 2);
    v.remove(r, &tag(r, "f-third"), false).await.expect(204);
    v.remove(d.id(), &tag(d.id(), "f-again"), false)
        .await
        .expect(204);
    v.node(f.id()).await.expect_error(404, ErrorCode::NotFound);
}

/// Asserts that two answers are the same 404 (status and body).
#[track_caller]
fn same_404(theirs: &Resp, missing: &Resp) {
    theirs.expect_error(404, ErrorCode::NotFound);
    missing.expect_error(404, ErrorCode::NotFound);
    assert_eq!(theirs.body, missing.body, "{}", theirs.request);
}

async fn cross_account_ids_answer_exactly_like_missing_ones(b: Backend) {
    let Some(srv) = server(b).await else { return };
    let a = vault(&srv, "tree-owner").await;
    let bv = vault(&srv, "tree-other").await;
    let r = NodeId::ROOT;
    let ad = a.mkdir(r, "private").await;
    let af = a.mkfile(ad.id(), "secret").await;
    let a_obj = upload(&a, &random_bytes(100)).await;
    let af_before: NodeInfo = a
        .commit(af.id(), 1, &sealed_record(), &[a_obj])
        .await
        .ok(200);
    let bf = bv.mkfile(r, "mine").await;
    let ghost = random_node();
    let ghost_tag = random_tag();

    // GET node.
    same_404(&bv.node(af.id()).await, &bv.node(ghost).await);
    // Batch read: A's ids are left out exactly as missing ones.
    let got: Vec<NodeInfo> = bv.nodes(&[af.id(), ad.id(), bf.id()]).await.ok(200);
    assert_eq!(got.iter().map(|n| n.id).collect::<Vec<_>>(), [bf.id()]);
    // Record, commit.
    let rec = sealed_record();
    same_404(
        &bv.update_record(af.id(), 2, &rec).await,
        &bv.update_record(ghost, 2, &rec).await,
    );
    same_404(
        &bv.commit(af.id(), 2, &rec, &[]).await,
        &bv.commit(ghost, 2, &rec, &[]).await,
    );
    // B's own file with A's object.
    same_404(
        &bv.commit(bf.id(), 1, &rec, &[a_obj]).await,
        &bv.commit(bf.id(), 1, &rec, &[random_object()]).await,
    );
    // Listing, lookup, batch lookup, delete.
    same_404(
        &bv.list(ad.id(), None, None).await,
        &bv.list(ghost, None, None).await,
    );
    same_404(
        &bv.lookup(ad.id(), &af.tag).await,
        &bv.lookup(ghost, &ghost_tag).await,
    );
    same_404(
        &bv.lookup_batch(ad.id(), &[af.tag]).await,
        &bv.lookup_batch(ghost, &[af.tag]).await,
    );
    same_404(
        &bv.remove(ad.id(), &af.tag, false).await,
        &bv.remove(ghost, &af.tag, false).await,
    );
    same_404(
        &bv.remove(ad.id(), &af.tag, true).await,
        &bv.remove(ghost, &af.tag, true).await,
    );
    // A's root is not B's: B's root has only B's file.
    let page: EntryPage = bv.list(r, None, None).await.ok(200);
    assert_eq!(
        page.entries.iter().map(|e| e.node.id).collect::<Vec<_>>(),
        [bf.id()]
    );
    bv.lookup(r, &ad.tag)
        .await
        .expect_error(404, ErrorCode::NotFound);
    // Create under A's directory; link to A's file, or into A's directory.
    same_404(
        &bv.create(&Vault::create_request(ad.id(), "x", Kind::File))
            .await,
        &bv.create(&Vault::create_request(ghost, "x", Kind::File))
            .await,
    );
    same_404(
        &bv.link(r, "stolen", af.id()).await,
        &bv.link(r, "stolen", ghost).await,
    );
    same_404(
        &bv.link(ad.id(), "planted", bf.id()).await,
        &bv.link(ghost, "planted", bf.id()).await,
    );
    // Renames out of and into A's directory.
    same_404(
        &bv.rename(&Vault::rename_request(
            ad.id(),
            "secret",
            r,
            "got-it",
            RenameMode::Replace,
        ))
        .await,
        &bv.rename(&Vault::rename_request(
            ghost,
            "secret",
            r,
            "got-it",
            RenameMode::Replace,
        ))
        .await,
    );
    same_404(
        &bv.rename(&Vault::rename_request(
            r,
            "mine",
            ad.id(),
            "planted",
            RenameMode::Replace,
        ))
        .await,
        &bv.rename(&Vault::rename_request(
            r,
            "mine",
            ghost,
            "planted",
            RenameMode::Replace,
        ))
        .await,
    );
    // Objects: download and upload of A's id.
    same_404(
        &bv.get(&node_path(paths::OBJECT, a_obj)).await,
        &bv.get(&node_path(paths::OBJECT, random_object())).await,
    );
    // Ids are per account: B may use A's node id for its own node.
    let mut same_id = Vault::create_request(r, "same-id", Kind::File);
    same_id.id = af.id();
    let mine: NodeInfo = bv.create(&same_id).await.ok(201);
    assert_eq!(mine.record, same_id.record);
    // statfs and changes are B's own.
    let fs_b: StatFs = bv.statfs().await.ok(200);
    assert_eq!((fs_b.nodes, fs_b.used_bytes), (3, 0));
    let feed: ChangePage = bv.changes(0, None).await.ok(200);
    assert!(
        feed.changes
            .iter()
            .all(|c| c.node != ad.id() && c.parent != Some(ad.id())),
        "{feed:?}"
    );

    // A's data is untouched.
    let af_now: NodeInfo = a.node(af.id()).await.ok(200);
    assert_eq!(af_now, af_before);
    let e: EntryInfo = a.lookup(ad.id(), &af.tag).await.ok(200);
    assert_eq!(e.node.id, af.id());
    let fs_a: StatFs = a.statfs().await.ok(200);
    assert_eq!((fs_a.nodes, fs_a.used_bytes), (3, 100));
}

async fn statfs_and_change_feed(b: Backend) {
    let quota = 5_000_000_u64;
    let Some(srv) = TestServer::start_with(
        b,
        ServerOptions {
            env: vec![("VAULT_QUOTA_BYTES".into(), quota.to_string())],
            ..ServerOptions::default()
        },
    )
    .await
    else {
        return;
    };
    let v = Vault::new(&srv, "tree-feed").await;
    let fs: StatFs = v.statfs().await.ok(200);
    assert_eq!(
        fs,
        StatFs {
            used_bytes: 0,
            quota_bytes: quota,
            nodes: 0,
            seq: 0
        }
    );
    let empty: ChangePage = v.changes(0, None).await.ok(200);
    assert!(empty.changes.is_empty());
    assert_eq!(empty.latest, 0);

    // Each mutation grows the feed.
    let mut last = 0;
    let mut grew = |page: &ChangePage, what: &str| {
        assert!(page.latest > last, "{what} did not grow the feed: {page:?}");
        last = page.latest;
    };
    v.create_root().await;
    grew(&v.changes(0, None).await.ok(200), "create root");
    let d = v.mkdir(NodeId::ROOT, "d").await;
    grew(&v.changes(0, None).await.ok(200), "mkdir");
    let f = v.mkfile(d.id(), "f").await;
    let page: ChangePage = v.changes(0, None).await.ok(200);
    assert!(
        page.changes
            .iter()
            .any(|c| c.node == f.id() && c.parent == Some(d.id()))
    );
    grew(&page, "create file");
    v.update_record(f.id(), 1, &sealed_record())
        .await
        .expect(200);
    grew(&v.changes(0, None).await.ok(200), "record");
    v.commit(f.id(), 2, &sealed_record(), &[]).await.expect(200);
    grew(&v.changes(0, None).await.ok(200), "commit");
    v.link(NodeId::ROOT, "l", f.id()).await.expect(201);
    grew(&v.changes(0, None).await.ok(200), "link");
    v.rename(&Vault::rename_request(
        NodeId::ROOT,
        "l",
        NodeId::ROOT,
        "l2",
        RenameMode::Replace,
    ))
    .await
    .expect(204);
    grew(&v.changes(0, None).await.ok(200), "rename");
    v.remove(NodeId::ROOT, &tag(NodeId::ROOT, "l2"), false)
        .await
        .expect(204);
    grew(&v.changes(0, None).await.ok(200), "unlink");
    // A refused change writes nothing.
    v.update_record(f.id(), 1, &sealed_record())
        .await
        .expect(409);
    let page: ChangePage = v.changes(0, None).await.ok(200);
    assert_eq!(page.latest, last);

    // The whole feed, then in pages of 2 with `since`: the same records.
    let all: ChangePage = v.changes(0, Some(1000)).await.ok(200);
    let seqs: Vec<i64> = all.changes.iter().map(|c| c.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(seqs.last().copied(), Some(all.latest));
    let mut paged = Vec::new();
    let mut since = 0;
    loop {
        let page: ChangePage = v.changes(since, Some(2)).await.ok(200);
        assert!(page.changes.len() <= 2);
        assert_eq!(page.latest, all.latest);
        let Some(c) = page.changes.last() else { break };
        since = c.seq;
        paged.extend(page.changes);
    }
    assert_eq!(paged, all.changes);
    let tail: ChangePage = v.changes(all.latest, None).await.ok(200);
    assert!(tail.changes.is_empty());
    assert_eq!(tail.latest, all.latest);
    // Limits and `since` outside their ranges.
    for q in ["limit=0", "limit=1001", "since=-1", "since=x", "limit=-3"] {
        v.get(&format!("{}?{q}", paths::CHANGES))
            .await
            .expect_error(400, ErrorCode::BadRequest);
    }

    // statfs: nodes and the sequence.
    let fs: StatFs = v.statfs().await.ok(200);
    assert_eq!((fs.nodes, fs.seq, fs.quota_bytes), (3, all.latest, quota));
}

async fn malformed_input_is_400_json(b: Backend) {
    let Some(srv) = server(b).await else { return };
    let v = vault(&srv, "tree-bad").await;
    let d = v.mkdir(NodeId::ROOT, "d").await;
    let good = d.id().to_string();
    let good_tag = tag_hex(&d.tag);
    let bad_ids = ["xyz", "00", &"g".repeat(32), &"0".repeat(33)];
    for id in bad_ids {
        for path in [
            node_path(paths::NODE, id),
            node_path(paths::ENTRIES, id),
            entry_path(id, &good_tag),
        ] {
            v.get(&path).await.expect_error(400, ErrorCode::BadRequest);
        }
        v.put(
            &node_path(paths::NODE_RECORD, id),
            &serde_json::json!({"expected_version": 1, "record": ""}),
        )
        .await
        .expect_error(400, ErrorCode::BadRequest);
        v.post(
            &node_path(paths::NODE_COMMIT, id),
            &serde_json::json!({"expected_version": 1, "record": "", "objects": []}),
        )
        .await
        .expect_error(400, ErrorCode::BadRequest);
        v.post(
            &node_path(paths::LOOKUP_BATCH, id),
            &serde_json::json!({"tags": []}),
        )
        .await
        .expect_error(400, ErrorCode::BadRequest);
        v.post(paths::NODES_BATCH, &serde_json::json!({"ids": [id]}))
            .await
            .expect_error(400, ErrorCode::BadRequest);
    }
    for t in ["zz", "00", &"0".repeat(63), &"q".repeat(64)] {
        v.get(&entry_path(&good, t))
            .await
            .expect_error(400, ErrorCode::BadRequest);
        v.api
            .delete(&entry_path(&good, t), Some(&v.token))
            .await
            .expect_error(400, ErrorCode::BadRequest);
        v.get(&format!("{}?after={t}", node_path(paths::ENTRIES, &good)))
            .await
            .expect_error(400, ErrorCode::BadRequest);
        v.post(
            &node_path(paths::LOOKUP_BATCH, &good),
            &serde_json::json!({"tags": [t]}),
        )
        .await
        .expect_error(400, ErrorCode::BadRequest);
    }
    // Bodies: not JSON, wrong types, unknown kind, bad base64.
    let raw = |path: &'static str, body: &'static str| {
        v.api.send(
            Method::POST,
            path,
            Some((body.as_bytes().to_vec(), "application/json")),
            Some(&v.token),
        )
    };
    for body in [
        "not json",
        "{}",
        r#"{"id": "00000000000000000000000000000000", "kind": "door", "record": ""}"#,
        r#"{"id": "00000000000000000000000000000000", "kind": "directory", "record": "!!"}"#,
    ] {
        raw(paths::NODES, body)
            .await
            .expect_error(400, ErrorCode::BadRequest);
    }
    raw(paths::RENAME, r#"{"mode": "sideways"}"#)
        .await
        .expect_error(400, ErrorCode::BadRequest);
    // Encrypted names: 1 to 1024 bytes.
    let mut req = Vault::create_request(d.id(), "long", Kind::File);
    req.entry.as_mut().unwrap().encrypted_name = Base64(random_bytes(1025));
    v.create(&req)
        .await
        .expect_error(400, ErrorCode::BadRequest);
    req.entry.as_mut().unwrap().encrypted_name = Base64(Vec::new());
    v.create(&req)
        .await
        .expect_error(400, ErrorCode::BadRequest);
    req.entry.as_mut().unwrap().encrypted_name = Base64(random_bytes(1024));
    v.create(&req).await.expect(201);
    let mut ren = Vault::rename_request(d.id(), "long", d.id(), "longer", RenameMode::Replace);
    ren.dst_encrypted_name = Base64(random_bytes(1025));
    v.rename(&ren)
        .await
        .expect_error(400, ErrorCode::BadRequest);
    // Records: up to 4 MiB on create.
    let mut req = Vault::create_request(d.id(), "big", Kind::File);
    req.record = Base64(random_bytes(4 << 20));
    v.create(&req).await.expect(201);
    let mut req = Vault::create_request(d.id(), "bigger", Kind::File);
    req.record = Base64(random_bytes((4 << 20) + 1));
    v.create(&req)
        .await
        .expect_error(413, ErrorCode::PayloadTooLarge);
    // The raised limit is only on record routes: a big rename body is 413.
    let mut ren = Vault::rename_request(d.id(), "big", d.id(), "x", RenameMode::Replace);
    ren.dst_encrypted_name = Base64(random_bytes(200_000));
    v.rename(&ren)
        .await
        .expect_error(413, ErrorCode::PayloadTooLarge);
}

/// A request: method, path and an optional JSON body.
type Case = (Method, String, Option<(Vec<u8>, &'static str)>);

async fn every_endpoint_needs_a_token(b: Backend) {
    let Some(srv) = server(b).await else { return };
    let v = vault(&srv, "tree-auth").await;
    let d = v.mkdir(NodeId::ROOT, "d").await;
    let id = d.id().to_string();
    let t = tag_hex(&d.tag);
    let json = |v: serde_json::Value| Some((serde_json::to_vec(&v).unwrap(), "application/json"));
    let cases: Vec<Case> = vec![
        (
            Method::POST,
            paths::NODES.into(),
            json(serde_json::to_value(Vault::create_request(d.id(), "x", Kind::File)).unwrap()),
        ),
        (
            Method::POST,
            paths::NODES_BATCH.into(),
            json(serde_json::json!({"ids": [id]})),
        ),
        (Method::GET, node_path(paths::NODE, &id), None),
        (
            Method::PUT,
            node_path(paths::NODE_RECORD, &id),
            json(serde_json::json!({"expected_version": 1, "record": ""})),
        ),
        (
            Method::POST,
            node_path(paths::NODE_COMMIT, &id),
            json(serde_json::json!({"expected_version": 1, "record": "", "objects": []})),
        ),
        (Method::GET, node_path(paths::ENTRIES, &id), None),
        (Method::GET, entry_path(NodeId::ROOT, &t), None),
        (Method::DELETE, entry_path(NodeId::ROOT, &t), None),
        (
            Method::POST,
            node_path(paths::LOOKUP_BATCH, &id),
            json(serde_json::json!({"tags": [t]})),
        ),
        (
            Method::POST,
            paths::LINKS.into(),
            json(
                serde_json::json!({"entry": {"parent": id, "tag": t, "encrypted_name": "AA"}, "child": id}),
            ),
        ),
        (
            Method::POST,
            paths::RENAME.into(),
            json(
                serde_json::to_value(Vault::rename_request(
                    NodeId::ROOT,
                    "d",
                    NodeId::ROOT,
                    "e",
                    RenameMode::Replace,
                ))
                .unwrap(),
            ),
        ),
        (Method::GET, paths::STATFS.into(), None),
        (Method::GET, paths::CHANGES.into(), None),
    ];
    for (method, path, body) in cases {
        for token in [None, Some("not-a-token")] {
            srv.api
                .send(method.clone(), &path, body.clone(), token)
                .await
                .expect_error(401, ErrorCode::Unauthorized);
        }
    }
    // Nothing changed.
    let e: EntryInfo = v.lookup(NodeId::ROOT, &d.tag).await.ok(200);
    assert_eq!(e.node, d.node);
    let page: EntryPage = v.list(d.id(), None, None).await.ok(200);
    assert!(page.entries.is_empty());
    // A valid token of a session that has ended: refused at once, also by
    // `GET /v1/nodes/{id}`, which reads the session with the node.
    let n: NodeInfo = v.node(d.id()).await.ok(200);
    assert_eq!(n, d.node);
    srv.api.logout(&v.token).await.expect(204);
    v.node(d.id())
        .await
        .expect_error(401, ErrorCode::Unauthorized);
    v.node(random_node())
        .await
        .expect_error(401, ErrorCode::Unauthorized);
    v.lookup(NodeId::ROOT, &d.tag)
        .await
        .expect_error(401, ErrorCode::Unauthorized);
}

async fn mutations_are_audited_without_names(b: Backend) {
    let Some(srv) = server(b).await else { return };
    let v = vault(&srv, "tree-audit").await;
    let d = v.mkdir(NodeId::ROOT, "d").await;
    let f = v.mkfile(d.id(), "f").await;
    v.update_record(f.id(), 1, &sealed_record())
        .await
        .expect(200);
    v.update_record(f.id(), 1, &sealed_record())
        .await
        .expect(409);
    v.commit(f.id(), 2, &sealed_record(), &[]).await.expect(200);
    v.link(NodeId::ROOT, "l", f.id()).await.expect(201);
    v.rename(&Vault::rename_request(
        NodeId::ROOT,
        "l",
        NodeId::ROOT,
        "l2",
        RenameMode::Replace,
    ))
    .await
    .expect(204);
    v.remove(NodeId::ROOT, &tag(NodeId::ROOT, "l2"), false)
        .await
        .expect(204);
    v.remove(NodeId::ROOT, &d.tag, true).await.expect(409);

    let events: Vec<AuditEvent> = v.api.audit(&v.token).await.ok(200);
    let tree: Vec<(&str, &str, &str)> = events
        .iter()
        .filter(|e| e.event.starts_with("tree."))
        .map(|e| {
            (
                e.event.as_str(),
                e.outcome.as_str(),
                e.detail.as_deref().unwrap_or(""),
            )
        })
        .rev()
        .collect();
    let kinds: Vec<(&str, &str)> = tree.iter().map(|(e, o, _)| (*e, *o)).collect();
    assert_eq!(
        kinds,
        [
            ("tree.create", "success"),
            ("tree.create", "success"),
            ("tree.create", "success"),
            ("tree.record", "success"),
            ("tree.record", "failure"),
            ("tree.commit", "success"),
            ("tree.link", "success"),
            ("tree.rename", "success"),
            ("tree.unlink", "success"),
            ("tree.rmdir", "failure"),
        ],
        "{tree:?}"
    );
    let fid = f.id().to_string();
    assert!(tree[2].2.contains(&fid), "{tree:?}");
    assert!(tree[3].2.contains(&fid), "{tree:?}");
    // Never a name, a tag or a record.
    for (_, _, detail) in &tree {
        for secret in [
            tag_hex(&d.tag),
            tag_hex(&f.tag),
            d.name.encode(),
            f.name.encode(),
        ] {
            assert!(!detail.contains(&secret), "{detail}");
        }
    }
}
