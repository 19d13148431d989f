//! One suite of [`TreeStore`] contract tests, run on `&dyn Store` against
//! every backend with the fixtures of `tests.rs` (a fresh SQLite file, or a
//! fresh MariaDB database through `VAULT_TEST_MYSQL_ADMIN_URL`), plus checks
//! of the query plans: on SQLite (`EXPLAIN QUERY PLAN`) and on MariaDB
//! (`EXPLAIN`), every statement of `tree_sql.rs` must be an index lookup or
//! range scan, never a scan, on a 100k-entry directory.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::crypto::attrs::NodeKind;
use common::crypto::name::NameTag;
use common::{NodeId, ObjectId};
use sha2::{Digest as _, Sha256};

use super::tests::{
    admin_exec, concurrently, open_connections, register, run_mysql, run_sqlite, suite,
    with_database,
};
use super::tree_sql as q;
use super::*;
use crate::blob::Checksum;

// ---------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------

suite! {
    plain: [
        root_is_created_once,
        crud_of_every_kind,
        create_refusals,
        create_files_with_their_objects,
        record_versions,
        rename_within_and_across_directories,
        rename_replace_rules,
        rename_into_own_subtree,
        rename_onto_itself_and_other_links,
        rename_exchange,
        hard_links_and_nlink,
        remove_rules,
        cross_account_ids_are_missing,
        reads_in_session_answer_with_the_session,
        quota_at_its_edge,
        commit_version_object_rules,
        purge_queue_and_stale_pending,
        change_feed_records,
        paged_listing_each_entry_once,
        large_directory_pages,
        batch_nodes,
        batch_creates_and_commits_in_one_transaction,
        batch_refusals_are_per_operation,
        batch_creates_files_with_their_objects,
        batch_checks_each_parent_and_undoes_half_creates,
        batch_of_new_files_answers_as_single_calls,
        reserve_objects_all_or_none,
    ],
    shared: [
        batch_races_single_changes,
        update_record_once_concurrently,
        rename_is_atomic_for_a_concurrent_reader,
        reserve_never_exceeds_quota_concurrently,
        change_feed_gap_free_concurrently,
    ],
}

const NOW: i64 = 1_700_000_000;
/// A quota no test reaches unless it means to.
const BIG: u64 = 1 << 40;

/// `Err(pattern)`, or a panic naming what came instead.
macro_rules! assert_err {
    ($result:expr, $pattern:pat) => {
        match $result {
            Err($pattern) => {}
            other => panic!("expected Err({}), got {other:?}", stringify!($pattern)),
        }
    };
}

/// The tag of a name (any fixed 32 bytes work: the store never sees names).
fn tag(name: &str) -> NameTag {
    NameTag::from_bytes(Sha256::digest(name.as_bytes()).into())
}

fn node_id(n: u32) -> NodeId {
    let mut b = [0xa5; 16];
    b[12..].copy_from_slice(&n.to_be_bytes());
    NodeId::from_bytes(b)
}

fn object_id(n: u32) -> ObjectId {
    let mut b = [0x0b; 16];
    b[12..].copy_from_slice(&n.to_be_bytes());
    ObjectId::from_bytes(b)
}

/// Stands in for a name sealed to (parent, child).
fn sealed_name(parent: NodeId, name: &str) -> Vec<u8> {
    [
        b"name\0'\\\"".as_slice(),
        parent.as_bytes(),
        name.as_bytes(),
    ]
    .concat()
}

fn record(id: NodeId, version: u64) -> Vec<u8> {
    format!("record of {id} at {version}").into_bytes()
}

fn new_entry(parent: NodeId, name: &str) -> NewEntry {
    NewEntry {
        parent,
        tag: tag(name),
        encrypted_name: sealed_name(parent, name),
    }
}

fn new_node(id: NodeId, kind: NodeKind, parent: NodeId, name: &str) -> NewNode {
    NewNode {
        id,
        kind,
        record: record(id, 1),
        entry: Some(new_entry(parent, name)),
        objects: Vec::new(),
    }
}

/// A registered account with its root directory.
async fn vault(s: &dyn Store, email: &str) -> AccountId {
    let owner = register(s, email).await;
    let root = NewNode {
        id: NodeId::ROOT,
        kind: NodeKind::Directory,
        record: record(NodeId::ROOT, 1),
        entry: None,
        objects: Vec::new(),
    };
    s.create_node(owner, &root, NOW).await.unwrap();
    owner
}

async fn mk(
    s: &dyn Store,
    owner: AccountId,
    id: NodeId,
    kind: NodeKind,
    parent: NodeId,
    name: &str,
) -> NodeRow {
    s.create_node(owner, &new_node(id, kind, parent, name), NOW)
        .await
        .unwrap()
}

async fn mkdir(s: &dyn Store, owner: AccountId, id: NodeId, parent: NodeId, name: &str) -> NodeRow {
    mk(s, owner, id, NodeKind::Directory, parent, name).await
}

/// A file whose first committed version has these objects (reserved here).
async fn file_with(
    s: &dyn Store,
    owner: AccountId,
    id: NodeId,
    parent: NodeId,
    name: &str,
    objects: &[(ObjectId, u64)],
) -> NodeRow {
    mk(s, owner, id, NodeKind::File, parent, name).await;
    for (object, size) in objects {
        s.reserve_object(owner, *object, *size, Checksum::Sha256([7; 32]), BIG, NOW)
            .await
            .unwrap();
    }
    let ids: Vec<ObjectId> = objects.iter().map(|(o, _)| *o).collect();
    let (node, released) = s
        .commit_version(owner, id, 1, &record(id, 2), &ids, NOW)
        .await
        .unwrap();
    assert_eq!(released, Released::default());
    node
}

/// The whole listing of `dir` as tag → (child, encrypted name).
async fn listing(
    s: &dyn Store,
    owner: AccountId,
    dir: NodeId,
) -> BTreeMap<NameTag, (NodeId, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut after = None;
    loop {
        let page = s.list(owner, dir, after.as_ref(), 1000).await.unwrap();
        let Some((last, _)) = page.last() else {
            return out;
        };
        after = Some(last.tag);
        for (e, n) in page {
            assert_eq!(e.parent, dir);
            assert_eq!(e.child, n.id);
            out.insert(e.tag, (e.child, e.encrypted_name));
        }
    }
}

/// The children of `dir` by name (of `names`).
async fn children(
    s: &dyn Store,
    owner: AccountId,
    dir: NodeId,
    names: &[&str],
) -> Vec<(String, NodeId)> {
    let list = listing(s, owner, dir).await;
    let mut out: Vec<(String, NodeId)> = names
        .iter()
        .filter_map(|n| list.get(&tag(n)).map(|(c, _)| ((*n).to_owned(), *c)))
        .collect();
    out.sort();
    assert_eq!(
        out.len(),
        list.len(),
        "entries with unexpected names in {dir}"
    );
    out
}

fn rename(src: (NodeId, &str), dst: (NodeId, &str), mode: RenameMode) -> Rename {
    Rename {
        src_parent: src.0,
        src_tag: tag(src.1),
        dst_parent: dst.0,
        dst_tag: tag(dst.1),
        dst_encrypted_name: sealed_name(dst.0, dst.1),
        src_encrypted_name: (mode == RenameMode::Exchange).then(|| sealed_name(src.0, src.1)),
        mode,
    }
}

async fn seq(s: &dyn Store, owner: AccountId) -> i64 {
    s.usage(owner, BIG).await.unwrap().seq
}

async fn used(s: &dyn Store, owner: AccountId) -> u64 {
    s.usage(owner, BIG).await.unwrap().used_bytes
}

// ---------------------------------------------------------------------------
// Nodes, entries, records
// ---------------------------------------------------------------------------

async fn root_is_created_once(s: &dyn Store) {
    let owner = register(s, "root@example.org").await;
    assert_eq!(
        s.usage(owner, 5).await.unwrap(),
        Usage {
            used_bytes: 0,
            quota_bytes: 5,
            nodes: 0,
            seq: 0
        }
    );
    assert_eq!(s.node(owner, NodeId::ROOT).await.unwrap(), None);
    assert_err!(
        s.list(owner, NodeId::ROOT, None, 10).await,
        TreeError::NotFound
    );

    let bare = |id: NodeId, kind: NodeKind| NewNode {
        id,
        kind,
        record: vec![1, 2, 3],
        entry: None,
        objects: Vec::new(),
    };
    // Only the root may lack an entry, and it is a directory.
    assert_err!(
        s.create_node(owner, &bare(node_id(1), NodeKind::Directory), NOW)
            .await,
        TreeError::InvalidMove
    );
    assert_err!(
        s.create_node(owner, &bare(NodeId::ROOT, NodeKind::File), NOW)
            .await,
        TreeError::NotADirectory
    );
    let root = s
        .create_node(owner, &bare(NodeId::ROOT, NodeKind::Directory), NOW)
        .await
        .unwrap();
    assert_eq!(
        root,
        NodeRow {
            id: NodeId::ROOT,
            kind: NodeKind::Directory,
            version: 1,
            record: vec![1, 2, 3],
            size: 0,
            nlink: 0,
            created_at: NOW,
            updated_at: NOW,
        }
    );
    assert_eq!(
        s.node(owner, NodeId::ROOT).await.unwrap(),
        Some(root.clone())
    );
    // Once.
    assert_err!(
        s.create_node(owner, &bare(NodeId::ROOT, NodeKind::Directory), NOW + 1)
            .await,
        TreeError::EntryExists
    );
    // The root cannot be given an entry.
    assert_err!(
        s.create_node(
            owner,
            &new_node(NodeId::ROOT, NodeKind::Directory, NodeId::ROOT, "again"),
            NOW
        )
        .await,
        TreeError::InvalidMove
    );
    assert_eq!(s.node(owner, NodeId::ROOT).await.unwrap(), Some(root));
    assert!(
        s.list(owner, NodeId::ROOT, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let usage = s.usage(owner, 5).await.unwrap();
    assert_eq!((usage.nodes, usage.seq), (1, 1));

    // No account, no tree.
    let ghost = AccountId(owner.0 + 1000);
    assert_err!(
        s.create_node(ghost, &bare(NodeId::ROOT, NodeKind::Directory), NOW)
            .await,
        TreeError::NotFound
    );
    assert_err!(
        s.reserve_object(ghost, object_id(1), 1, Checksum::Sha256([0; 32]), BIG, NOW)
            .await,
        TreeError::NotFound
    );
}

async fn crud_of_every_kind(s: &dyn Store) {
    let owner = vault(s, "crud@example.org").await;
    let kinds = [
        NodeKind::File,
        NodeKind::Directory,
        NodeKind::Symlink,
        NodeKind::Fifo,
        NodeKind::Socket,
    ];
    for (i, kind) in kinds.into_iter().enumerate() {
        let n = u32::try_from(i).unwrap();
        let id = node_id(n);
        let name = format!("{kind:?}");
        let created = mk(s, owner, id, kind, NodeId::ROOT, &name).await;
        assert_eq!(
            created,
            NodeRow {
                id,
                kind,
                version: 1,
                record: record(id, 1),
                size: 0,
                nlink: 1,
                created_at: NOW,
                updated_at: NOW,
            }
        );
        assert_eq!(s.node(owner, id).await.unwrap(), Some(created.clone()));
        let (entry, node) = s
            .lookup(owner, NodeId::ROOT, &tag(&name))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            entry,
            EntryRow {
                parent: NodeId::ROOT,
                tag: tag(&name),
                encrypted_name: sealed_name(NodeId::ROOT, &name),
                child: id,
            }
        );
        assert_eq!(node, created);

        // Read and write the record (large and awkward bytes survive).
        let big: Vec<u8> = (0..3 * 1024 * 1024 + 7)
            .map(|b: u32| b.to_le_bytes()[0] ^ b.to_le_bytes()[2])
            .collect();
        let updated = s.update_record(owner, id, 1, &big, NOW + 5).await.unwrap();
        assert_eq!(updated.version, 2);
        assert_eq!(updated.record, big);
        assert_eq!((updated.created_at, updated.updated_at), (NOW, NOW + 5));
        assert_eq!(s.node(owner, id).await.unwrap(), Some(updated));
        let awkward = b"\0'\\\"; DROP TABLE nodes; --\xff".to_vec();
        s.update_record(owner, id, 2, &awkward, NOW + 6)
            .await
            .unwrap();
        let empty = s.update_record(owner, id, 3, &[], NOW + 7).await.unwrap();
        assert_eq!((empty.version, empty.record.len()), (4, 0));
    }
    let list = s.list(owner, NodeId::ROOT, None, 100).await.unwrap();
    assert_eq!(list.len(), 5);
    assert!(
        list.windows(2).all(|w| w[0].0.tag < w[1].0.tag),
        "tag order"
    );
    let root = s.node(owner, NodeId::ROOT).await.unwrap().unwrap();
    assert_eq!(s.usage(owner, BIG).await.unwrap().nodes, 6);

    // Delete every one.
    for (i, kind) in kinds.into_iter().enumerate() {
        let id = node_id(u32::try_from(i).unwrap());
        let name = format!("{kind:?}");
        let released = s
            .remove(
                owner,
                NodeId::ROOT,
                &tag(&name),
                kind == NodeKind::Directory,
                NOW + 10,
            )
            .await
            .unwrap();
        assert_eq!(released.nodes, [id]);
        assert!(released.objects.is_empty());
        assert_eq!(s.node(owner, id).await.unwrap(), None);
        assert_eq!(
            s.lookup(owner, NodeId::ROOT, &tag(&name)).await.unwrap(),
            None
        );
        assert_err!(
            s.update_record(owner, id, 4, b"x", NOW).await,
            TreeError::NotFound
        );
    }
    assert!(
        s.list(owner, NodeId::ROOT, None, 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.usage(owner, BIG).await.unwrap().nodes, 1);
    // The root's own record is untouched by changes to its listing.
    assert_eq!(s.node(owner, NodeId::ROOT).await.unwrap(), Some(root));
}

async fn create_refusals(s: &dyn Store) {
    let owner = vault(s, "create@example.org").await;
    let dir = node_id(1);
    mkdir(s, owner, dir, NodeId::ROOT, "dir").await;
    let file = node_id(2);
    mk(s, owner, file, NodeKind::File, dir, "file").await;
    let before = seq(s, owner).await;
    let nodes_before = s.usage(owner, BIG).await.unwrap().nodes;

    // A taken name, with a fresh id: nothing is created.
    assert_err!(
        s.create_node(
            owner,
            &new_node(node_id(3), NodeKind::File, dir, "file"),
            NOW
        )
        .await,
        TreeError::EntryExists
    );
    assert_eq!(s.node(owner, node_id(3)).await.unwrap(), None);
    // A taken id, under a free name: no entry is added.
    assert_err!(
        s.create_node(owner, &new_node(file, NodeKind::File, dir, "other"), NOW)
            .await,
        TreeError::EntryExists
    );
    assert_eq!(s.lookup(owner, dir, &tag("other")).await.unwrap(), None);
    // A missing parent, and one that is not a directory.
    assert_err!(
        s.create_node(
            owner,
            &new_node(node_id(4), NodeKind::File, node_id(99), "x"),
            NOW
        )
        .await,
        TreeError::NotFound
    );
    assert_err!(
        s.create_node(owner, &new_node(node_id(4), NodeKind::File, file, "x"), NOW)
            .await,
        TreeError::NotADirectory
    );
    assert_err!(
        s.list(owner, node_id(99), None, 10).await,
        TreeError::NotFound
    );
    assert_err!(
        s.list(owner, file, None, 10).await,
        TreeError::NotADirectory
    );
    assert_eq!(s.lookup(owner, node_id(99), &tag("x")).await.unwrap(), None);

    // Refusals change nothing, not even the sequence.
    assert_eq!(seq(s, owner).await, before);
    assert_eq!(s.usage(owner, BIG).await.unwrap().nodes, nodes_before);
    assert_eq!(
        s.changes(owner, before, 10).await.unwrap(),
        Vec::<ChangeRow>::new()
    );
}

/// A new node whose version 1 has these objects.
fn node_with(
    id: NodeId,
    kind: NodeKind,
    parent: NodeId,
    name: &str,
    objects: &[ObjectId],
) -> NewNode {
    NewNode {
        objects: objects.to_vec(),
        ..new_node(id, kind, parent, name)
    }
}

/// Whether an object is pending (`None`), a node's, or gone.
async fn holder(s: &dyn Store, owner: AccountId, object: ObjectId) -> Option<Option<NodeId>> {
    s.object(owner, object).await.unwrap().map(|o| o.node)
}

async fn create_files_with_their_objects(s: &dyn Store) {
    let owner = vault(s, "create-objects@example.org").await;
    let other = vault(s, "create-objects-other@example.org").await;
    let (f, g, e) = (node_id(1), node_id(2), node_id(4));
    s.reserve_objects(
        owner,
        &[
            new_object(1, 10),
            new_object(2, 20),
            new_object(3, 30),
            new_object(4, 0),
        ],
        BIG,
        NOW,
    )
    .await
    .unwrap();
    s.reserve_objects(other, &[new_object(9, 5)], BIG, NOW)
        .await
        .unwrap();
    mk(s, owner, e, NodeKind::File, NodeId::ROOT, "empty").await;
    let before = seq(s, owner).await;
    let usage = s.usage(owner, BIG).await.unwrap();
    assert_eq!(usage.used_bytes, 60);

    // A file with its contents at version 1: an id listed twice counts
    // once, the size is the sum, the objects are the node's, the quota
    // does not move (they were reserved), one feed record.
    let node = s
        .create_node(
            owner,
            &node_with(
                f,
                NodeKind::File,
                NodeId::ROOT,
                "f",
                &[object_id(1), object_id(2), object_id(1)],
            ),
            NOW + 1,
        )
        .await
        .unwrap();
    assert_eq!(
        node,
        NodeRow {
            id: f,
            kind: NodeKind::File,
            version: 1,
            record: record(f, 1),
            size: 30,
            nlink: 1,
            created_at: NOW + 1,
            updated_at: NOW + 1,
        }
    );
    assert_eq!(s.node(owner, f).await.unwrap(), Some(node));
    for object in [1, 2] {
        assert_eq!(holder(s, owner, object_id(object)).await, Some(Some(f)));
    }
    assert_eq!(holder(s, owner, object_id(3)).await, Some(None));
    assert_eq!(
        s.usage(owner, BIG).await.unwrap(),
        Usage {
            used_bytes: 60,
            nodes: usage.nodes + 1,
            seq: before + 1,
            ..usage
        }
    );
    assert_eq!(
        s.changes(owner, before, 10).await.unwrap(),
        [ChangeRow {
            seq: before + 1,
            node: f,
            parent: Some(NodeId::ROOT)
        }]
    );

    // Refusals, each leaving everything as it was (object 3 pending).
    let state = || async {
        (
            s.usage(owner, BIG).await.unwrap(),
            listing(s, owner, NodeId::ROOT).await,
            holder(s, owner, object_id(3)).await,
        )
    };
    let unchanged = state().await;
    let create = |new: NewNode| async move { s.create_node(owner, &new, NOW).await };
    // Objects another node has (not reusable), missing, another
    // account's; each after a usable one.
    for bad in [object_id(1), object_id(77), object_id(9)] {
        assert_err!(
            create(node_with(
                g,
                NodeKind::File,
                NodeId::ROOT,
                "g",
                &[object_id(3), bad]
            ))
            .await,
            TreeError::NotFound
        );
        assert_err!(
            s.commit_version(owner, e, 1, b"x", &[object_id(3), bad], NOW)
                .await,
            TreeError::NotFound
        );
    }
    assert_eq!(s.node(owner, g).await.unwrap(), None);
    // Objects for anything but a file: refused as a commit refuses a
    // directory, before the parent is looked at.
    for kind in [
        NodeKind::Directory,
        NodeKind::Symlink,
        NodeKind::Fifo,
        NodeKind::Socket,
    ] {
        assert_err!(
            create(node_with(g, kind, NodeId::ROOT, "g", &[object_id(3)])).await,
            TreeError::NotAFile
        );
    }
    assert_err!(
        create(node_with(
            g,
            NodeKind::Directory,
            node_id(99),
            "g",
            &[object_id(3)]
        ))
        .await,
        TreeError::NotAFile
    );
    // The parent and the name come before the objects.
    assert_err!(
        create(node_with(
            g,
            NodeKind::File,
            node_id(99),
            "g",
            &[object_id(3)]
        ))
        .await,
        TreeError::NotFound
    );
    assert_err!(
        create(node_with(g, NodeKind::File, f, "g", &[object_id(77)])).await,
        TreeError::NotADirectory
    );
    for objects in [[object_id(3)], [object_id(77)]] {
        // A taken name (fresh id), a taken id (free name).
        assert_err!(
            create(node_with(g, NodeKind::File, NodeId::ROOT, "f", &objects)).await,
            TreeError::EntryExists
        );
        assert_err!(
            create(node_with(f, NodeKind::File, NodeId::ROOT, "g", &objects)).await,
            TreeError::EntryExists
        );
    }
    assert_eq!(state().await, unchanged);
    assert_eq!(s.node(owner, g).await.unwrap(), None);
    // The root is a directory: no objects.
    let fresh = register(s, "create-objects-root@example.org").await;
    let root = NewNode {
        id: NodeId::ROOT,
        kind: NodeKind::Directory,
        record: vec![1],
        entry: None,
        objects: vec![object_id(3)],
    };
    assert_err!(s.create_node(fresh, &root, NOW).await, TreeError::NotAFile);
    assert_eq!(s.node(fresh, NodeId::ROOT).await.unwrap(), None);

    // A zero-byte object counts as one: the file has size 0 and an
    // object, which its next version releases.
    let node = create(node_with(
        g,
        NodeKind::File,
        NodeId::ROOT,
        "g",
        &[object_id(4)],
    ))
    .await
    .unwrap();
    assert_eq!((node.version, node.size), (1, 0));
    assert_eq!(holder(s, owner, object_id(4)).await, Some(Some(g)));
    let (node, released) = s
        .commit_version(owner, g, 1, b"v2", &[], NOW)
        .await
        .unwrap();
    assert_eq!((node.version, node.size), (2, 0));
    assert_eq!(released.objects, [object_id(4)]);
    assert_eq!(s.object(owner, object_id(4)).await.unwrap(), None);

    // The next version of a file created with objects keeps what it lists
    // and releases the rest, as after a commit.
    let (node, released) = s
        .commit_version(owner, f, 1, b"v2", &[object_id(2), object_id(3)], NOW)
        .await
        .unwrap();
    assert_eq!((node.version, node.size), (2, 50));
    assert_eq!(released.objects, [object_id(1)]);
    assert_eq!(used(s, owner).await, 50);
    assert!(
        s.purge_queue(100)
            .await
            .unwrap()
            .contains(&(owner, object_id(1)))
    );
    // Removing it releases the others.
    let released = s
        .remove(owner, NodeId::ROOT, &tag("f"), false, NOW)
        .await
        .unwrap();
    let mut objects = released.objects;
    objects.sort();
    assert_eq!(objects, [object_id(2), object_id(3)]);
    assert_eq!(used(s, owner).await, 0);
}

async fn record_versions(s: &dyn Store) {
    let owner = vault(s, "versions@example.org").await;
    let id = node_id(1);
    mk(s, owner, id, NodeKind::File, NodeId::ROOT, "f").await;
    // Two writers read version 1; the first wins, the second conflicts.
    let first = s
        .update_record(owner, id, 1, b"first", NOW + 1)
        .await
        .unwrap();
    assert_eq!(first.version, 2);
    assert_err!(
        s.update_record(owner, id, 1, b"second", NOW + 2).await,
        TreeError::VersionConflict { current: 2 }
    );
    assert_err!(
        s.update_record(owner, id, 3, b"ahead", NOW + 2).await,
        TreeError::VersionConflict { current: 2 }
    );
    let stored = s.node(owner, id).await.unwrap().unwrap();
    assert_eq!(
        (stored.version, stored.record.as_slice()),
        (2, &b"first"[..])
    );
    assert_eq!(stored.updated_at, NOW + 1);
    // The loser retries on the current version.
    let second = s
        .update_record(owner, id, 2, b"second", NOW + 3)
        .await
        .unwrap();
    assert_eq!(second.version, 3);
    // Directories and the root have records too.
    let root = s
        .update_record(owner, NodeId::ROOT, 1, b"root", NOW)
        .await
        .unwrap();
    assert_eq!(root.version, 2);
    assert_err!(
        s.update_record(owner, node_id(9), 1, b"x", NOW).await,
        TreeError::NotFound
    );
}

async fn update_record_once_concurrently(s: Arc<dyn Store>) {
    let owner = vault(&*s, "race@example.org").await;
    let id = node_id(1);
    mk(&*s, owner, id, NodeKind::File, NodeId::ROOT, "f").await;
    open_connections(&s).await;
    let outcomes = concurrently(10, |i| {
        let s = s.clone();
        async move {
            s.update_record(owner, id, 1, format!("writer {i}").as_bytes(), NOW)
                .await
        }
    })
    .await;
    let winners: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, o)| o.is_ok().then_some(i))
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    for o in &outcomes {
        if let Err(e) = o {
            assert!(
                matches!(e, TreeError::VersionConflict { current: 2 }),
                "{e:?}"
            );
        }
    }
    let node = s.node(owner, id).await.unwrap().unwrap();
    assert_eq!(node.version, 2);
    assert_eq!(node.record, format!("writer {}", winners[0]).into_bytes());
}

async fn batch_nodes(s: &dyn Store) {
    let owner = vault(s, "batch@example.org").await;
    let ids: Vec<NodeId> = (1..=250).map(node_id).collect();
    for id in &ids {
        mk(s, owner, *id, NodeKind::File, NodeId::ROOT, &id.to_string()).await;
    }
    let mut ask: Vec<NodeId> = ids.iter().rev().copied().collect();
    ask.insert(3, node_id(9_999)); // missing
    ask.push(ids[0]); // twice
    let got = s.nodes(owner, &ask).await.unwrap();
    let got_ids: Vec<NodeId> = got.iter().map(|n| n.id).collect();
    let expected: Vec<NodeId> = ids.iter().rev().copied().collect();
    assert_eq!(
        got_ids, expected,
        "in the order asked, missing ones left out, each once"
    );
    assert_eq!(got[0], s.node(owner, ids[249]).await.unwrap().unwrap());
    assert!(s.nodes(owner, &[]).await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------
// Rename
// ---------------------------------------------------------------------------

async fn rename_within_and_across_directories(s: &dyn Store) {
    let owner = vault(s, "mv@example.org").await;
    let (a, b, f) = (node_id(1), node_id(2), node_id(3));
    mkdir(s, owner, a, NodeId::ROOT, "a").await;
    mkdir(s, owner, b, NodeId::ROOT, "b").await;
    mk(s, owner, f, NodeKind::File, a, "f").await;

    // Within a directory.
    let released = s
        .rename(
            owner,
            &rename((a, "f"), (a, "g"), RenameMode::NoReplace),
            NOW + 1,
        )
        .await
        .unwrap();
    assert_eq!(released, Released::default());
    assert_eq!(children(s, owner, a, &["f", "g"]).await, [("g".into(), f)]);
    let (entry, node) = s.lookup(owner, a, &tag("g")).await.unwrap().unwrap();
    assert_eq!(entry.encrypted_name, sealed_name(a, "g"));
    assert_eq!((node.nlink, node.version, node.updated_at), (1, 1, NOW + 1));

    // Across directories (a file, then a directory with contents).
    s.rename(
        owner,
        &rename((a, "g"), (b, "h"), RenameMode::Replace),
        NOW + 2,
    )
    .await
    .unwrap();
    assert!(listing(s, owner, a).await.is_empty());
    assert_eq!(children(s, owner, b, &["h"]).await, [("h".into(), f)]);
    s.rename(
        owner,
        &rename((NodeId::ROOT, "b"), (a, "b2"), RenameMode::Replace),
        NOW + 3,
    )
    .await
    .unwrap();
    assert_eq!(children(s, owner, a, &["b2"]).await, [("b2".into(), b)]);
    assert_eq!(children(s, owner, b, &["h"]).await, [("h".into(), f)]);
    assert_eq!(
        children(s, owner, NodeId::ROOT, &["a", "b"]).await,
        [("a".into(), a)]
    );
    // Up again, to the root.
    s.rename(
        owner,
        &rename((a, "b2"), (NodeId::ROOT, "b"), RenameMode::Replace),
        NOW + 4,
    )
    .await
    .unwrap();
    assert_eq!(
        children(s, owner, NodeId::ROOT, &["a", "b"]).await,
        [("a".into(), a), ("b".into(), b)]
    );

    // Missing pieces.
    assert_err!(
        s.rename(
            owner,
            &rename((a, "nope"), (b, "x"), RenameMode::Replace),
            NOW
        )
        .await,
        TreeError::NotFound
    );
    assert_err!(
        s.rename(
            owner,
            &rename((node_id(99), "h"), (b, "x"), RenameMode::Replace),
            NOW
        )
        .await,
        TreeError::NotFound
    );
    assert_err!(
        s.rename(
            owner,
            &rename((b, "h"), (node_id(99), "x"), RenameMode::Replace),
            NOW
        )
        .await,
        TreeError::NotFound
    );
    assert_err!(
        s.rename(owner, &rename((b, "h"), (f, "x"), RenameMode::Replace), NOW)
            .await,
        TreeError::NotADirectory
    );
    assert_eq!(children(s, owner, b, &["h"]).await, [("h".into(), f)]);
}

async fn rename_replace_rules(s: &dyn Store) {
    let owner = vault(s, "replace@example.org").await;
    let d = node_id(1);
    mkdir(s, owner, d, NodeId::ROOT, "d").await;
    let (f1, f2) = (node_id(2), node_id(3));
    file_with(s, owner, f1, d, "f1", &[(object_id(1), 10)]).await;
    file_with(
        s,
        owner,
        f2,
        d,
        "f2",
        &[(object_id(2), 20), (object_id(3), 30)],
    )
    .await;
    assert_eq!(used(s, owner).await, 60);

    // NoReplace onto an existing entry: nothing changes.
    assert_err!(
        s.rename(
            owner,
            &rename((d, "f1"), (d, "f2"), RenameMode::NoReplace),
            NOW
        )
        .await,
        TreeError::EntryExists
    );
    // File over file: the old target is deleted and its objects released.
    let released = s
        .rename(
            owner,
            &rename((d, "f1"), (d, "f2"), RenameMode::Replace),
            NOW + 1,
        )
        .await
        .unwrap();
    assert_eq!(released.nodes, [f2]);
    let mut objects = released.objects.clone();
    objects.sort();
    assert_eq!(objects, [object_id(2), object_id(3)]);
    assert_eq!(s.node(owner, f2).await.unwrap(), None);
    assert_eq!(s.object(owner, object_id(2)).await.unwrap(), None);
    assert_eq!(used(s, owner).await, 10);
    assert_eq!(
        children(s, owner, d, &["f1", "f2"]).await,
        [("f2".into(), f1)]
    );
    let queued: HashSet<(AccountId, ObjectId)> =
        s.purge_queue(100).await.unwrap().into_iter().collect();
    assert!(queued.contains(&(owner, object_id(2))) && queued.contains(&(owner, object_id(3))));

    // Directories: over an empty one only; files and directories do not
    // replace each other.
    let (e, full, sub) = (node_id(10), node_id(11), node_id(12));
    mkdir(s, owner, e, d, "empty").await;
    mkdir(s, owner, full, d, "full").await;
    mkdir(s, owner, sub, full, "sub").await;
    assert_err!(
        s.rename(
            owner,
            &rename((d, "f2"), (d, "empty"), RenameMode::Replace),
            NOW
        )
        .await,
        TreeError::IsADirectory
    );
    assert_err!(
        s.rename(
            owner,
            &rename((d, "empty"), (d, "f2"), RenameMode::Replace),
            NOW
        )
        .await,
        TreeError::NotADirectory
    );
    assert_err!(
        s.rename(
            owner,
            &rename((d, "empty"), (d, "full"), RenameMode::Replace),
            NOW
        )
        .await,
        TreeError::NotEmpty
    );
    // A directory over its own (non-empty) ancestor's entry.
    assert_err!(
        s.rename(
            owner,
            &rename((full, "sub"), (NodeId::ROOT, "d"), RenameMode::Replace),
            NOW
        )
        .await,
        TreeError::NotEmpty
    );
    assert_err!(
        s.rename(
            owner,
            &rename((d, "f2"), (NodeId::ROOT, "d"), RenameMode::Replace),
            NOW
        )
        .await,
        TreeError::IsADirectory
    );
    let nodes = s.usage(owner, BIG).await.unwrap().nodes;
    let released = s
        .rename(
            owner,
            &rename((d, "full"), (d, "empty"), RenameMode::Replace),
            NOW + 2,
        )
        .await
        .unwrap();
    assert_eq!(
        released,
        Released {
            nodes: vec![e],
            objects: vec![]
        }
    );
    assert_eq!(s.node(owner, e).await.unwrap(), None);
    assert_eq!(s.usage(owner, BIG).await.unwrap().nodes, nodes - 1);
    assert_eq!(
        children(s, owner, d, &["f2", "empty", "full"]).await,
        [("empty".into(), full), ("f2".into(), f1)]
    );
    assert_eq!(
        children(s, owner, full, &["sub"]).await,
        [("sub".into(), sub)]
    );

    // A target with another link survives, one link fewer.
    let (g, h) = (node_id(20), node_id(21));
    file_with(s, owner, g, d, "g", &[(object_id(20), 5)]).await;
    s.link(owner, &new_entry(NodeId::ROOT, "g-link"), g, NOW)
        .await
        .unwrap();
    mk(s, owner, h, NodeKind::Symlink, d, "h").await;
    let released = s
        .rename(
            owner,
            &rename((d, "h"), (d, "g"), RenameMode::Replace),
            NOW + 3,
        )
        .await
        .unwrap();
    assert_eq!(released, Released::default());
    let g_node = s.node(owner, g).await.unwrap().unwrap();
    assert_eq!((g_node.nlink, g_node.updated_at), (1, NOW + 3));
    assert!(s.object(owner, object_id(20)).await.unwrap().is_some());
    assert_eq!(
        children(s, owner, NodeId::ROOT, &["d", "g-link"])
            .await
            .len(),
        2
    );
}

async fn rename_into_own_subtree(s: &dyn Store) {
    let owner = vault(s, "cycle@example.org").await;
    let (a, b, c) = (node_id(1), node_id(2), node_id(3));
    mkdir(s, owner, a, NodeId::ROOT, "a").await;
    mkdir(s, owner, b, a, "b").await;
    mkdir(s, owner, c, b, "c").await;
    let before = seq(s, owner).await;
    for mode in [RenameMode::Replace, RenameMode::NoReplace] {
        // Into itself, its child, its grandchild.
        for dst in [a, b, c] {
            assert_err!(
                s.rename(owner, &rename((NodeId::ROOT, "a"), (dst, "x"), mode), NOW)
                    .await,
                TreeError::InvalidMove
            );
        }
        assert_err!(
            s.rename(owner, &rename((a, "b"), (c, "x"), mode), NOW)
                .await,
            TreeError::InvalidMove
        );
    }
    assert_eq!(seq(s, owner).await, before);
    // Sideways and upwards are fine; a file may go anywhere.
    s.rename(
        owner,
        &rename((b, "c"), (NodeId::ROOT, "c"), RenameMode::NoReplace),
        NOW,
    )
    .await
    .unwrap();
    s.rename(
        owner,
        &rename((NodeId::ROOT, "c"), (b, "c"), RenameMode::NoReplace),
        NOW,
    )
    .await
    .unwrap();
    mk(s, owner, node_id(4), NodeKind::File, NodeId::ROOT, "f").await;
    s.rename(
        owner,
        &rename((NodeId::ROOT, "f"), (c, "f"), RenameMode::NoReplace),
        NOW,
    )
    .await
    .unwrap();
    assert_eq!(
        children(s, owner, c, &["f"]).await,
        [("f".into(), node_id(4))]
    );
    // The root can be neither named nor moved: no entry names it.
    assert_err!(
        s.remove(owner, NodeId::ROOT, &tag(""), true, NOW).await,
        TreeError::NotFound
    );
}

async fn rename_onto_itself_and_other_links(s: &dyn Store) {
    let owner = vault(s, "self@example.org").await;
    let (d, f) = (node_id(1), node_id(2));
    mkdir(s, owner, d, NodeId::ROOT, "d").await;
    file_with(s, owner, f, d, "f", &[(object_id(1), 3)]).await;
    let before = seq(s, owner).await;
    let node = s.node(owner, f).await.unwrap().unwrap();

    // Same parent and tag: nothing happens, successfully (NoReplace: the
    // target exists).
    for mode in [RenameMode::Replace, RenameMode::Exchange] {
        let released = s
            .rename(owner, &rename((d, "f"), (d, "f"), mode), NOW + 9)
            .await
            .unwrap();
        assert_eq!(released, Released::default());
        let released = s
            .rename(
                owner,
                &rename((NodeId::ROOT, "d"), (NodeId::ROOT, "d"), mode),
                NOW + 9,
            )
            .await
            .unwrap();
        assert_eq!(released, Released::default());
    }
    assert_err!(
        s.rename(
            owner,
            &rename((d, "f"), (d, "f"), RenameMode::NoReplace),
            NOW
        )
        .await,
        TreeError::EntryExists
    );
    assert_eq!(s.node(owner, f).await.unwrap(), Some(node));
    assert_eq!(seq(s, owner).await, before, "no change, no feed record");

    // Two links of one file: POSIX rename does nothing, both stay.
    s.link(owner, &new_entry(NodeId::ROOT, "f2"), f, NOW)
        .await
        .unwrap();
    let before = seq(s, owner).await;
    let released = s
        .rename(
            owner,
            &rename((d, "f"), (NodeId::ROOT, "f2"), RenameMode::Replace),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(released, Released::default());
    assert_eq!(children(s, owner, d, &["f"]).await, [("f".into(), f)]);
    assert_eq!(
        children(s, owner, NodeId::ROOT, &["d", "f2"]).await,
        [("d".into(), d), ("f2".into(), f)]
    );
    assert_eq!(s.node(owner, f).await.unwrap().unwrap().nlink, 2);
    assert_eq!(seq(s, owner).await, before);
}

async fn rename_exchange(s: &dyn Store) {
    let owner = vault(s, "xchg@example.org").await;
    let (a, b, f, sub, inner) = (node_id(1), node_id(2), node_id(3), node_id(4), node_id(5));
    mkdir(s, owner, a, NodeId::ROOT, "a").await;
    mkdir(s, owner, b, NodeId::ROOT, "b").await;
    mk(s, owner, f, NodeKind::File, a, "f").await;
    mkdir(s, owner, sub, b, "sub").await;
    mk(s, owner, inner, NodeKind::File, sub, "inner").await;

    // A file and a non-empty directory, across directories.
    let op = rename((a, "f"), (b, "sub"), RenameMode::Exchange);
    let released = s.rename(owner, &op, NOW + 1).await.unwrap();
    assert_eq!(released, Released::default());
    let (e, n) = s.lookup(owner, a, &tag("f")).await.unwrap().unwrap();
    assert_eq!((e.child, n.kind), (sub, NodeKind::Directory));
    assert_eq!(Some(e.encrypted_name), op.src_encrypted_name);
    let (e, n) = s.lookup(owner, b, &tag("sub")).await.unwrap().unwrap();
    assert_eq!((e.child, n.kind), (f, NodeKind::File));
    assert_eq!(e.encrypted_name, op.dst_encrypted_name);
    assert_eq!(
        children(s, owner, sub, &["inner"]).await,
        [("inner".into(), inner)]
    );
    assert_eq!(s.node(owner, f).await.unwrap().unwrap().nlink, 1);
    assert_eq!(s.node(owner, sub).await.unwrap().unwrap().nlink, 1);

    // Within one directory.
    mk(s, owner, node_id(6), NodeKind::Fifo, a, "p").await;
    s.rename(
        owner,
        &rename((a, "p"), (a, "f"), RenameMode::Exchange),
        NOW,
    )
    .await
    .unwrap();
    assert_eq!(
        children(s, owner, a, &["f", "p"]).await,
        [("f".into(), node_id(6)), ("p".into(), sub)]
    );

    // Both must exist; the second name must be given.
    assert_err!(
        s.rename(
            owner,
            &rename((a, "p"), (a, "nope"), RenameMode::Exchange),
            NOW
        )
        .await,
        TreeError::NotFound
    );
    let mut op = rename((a, "p"), (a, "f"), RenameMode::Exchange);
    op.src_encrypted_name = None;
    assert_err!(s.rename(owner, &op, NOW).await, TreeError::InvalidMove);

    // Neither directory may end up inside itself: exchange `a` (holding
    // `sub` as "p") with `inner`, in `sub`, either way round.
    assert_err!(
        s.rename(
            owner,
            &rename((NodeId::ROOT, "a"), (sub, "inner"), RenameMode::Exchange),
            NOW
        )
        .await,
        TreeError::InvalidMove
    );
    assert_err!(
        s.rename(
            owner,
            &rename((sub, "inner"), (NodeId::ROOT, "a"), RenameMode::Exchange),
            NOW
        )
        .await,
        TreeError::InvalidMove
    );
    assert_eq!(
        children(s, owner, NodeId::ROOT, &["a", "b"]).await,
        [("a".into(), a), ("b".into(), b)]
    );
}

async fn rename_is_atomic_for_a_concurrent_reader(s: Arc<dyn Store>) {
    let owner = vault(&*s, "atomic@example.org").await;
    let d = node_id(1);
    mkdir(&*s, owner, d, NodeId::ROOT, "d").await;
    file_with(
        &*s,
        owner,
        node_id(1000),
        d,
        "target",
        &[(object_id(1000), 10)],
    )
    .await;

    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (s, done) = (s.clone(), done.clone());
        tokio::spawn(async move {
            let mut reads = 0u32;
            while !done.load(Ordering::Acquire) || reads == 0 {
                let page = s.list(owner, d, None, 10).await.unwrap();
                let find = |name: &str| {
                    page.iter()
                        .find(|(e, _)| e.tag == tag(name))
                        .map(|(e, _)| e.child)
                };
                let target = find("target");
                let tmp = find("tmp");
                assert!(target.is_some(), "the target vanished: {page:?}");
                assert!(page.len() <= 2, "{page:?}");
                assert_ne!(tmp, target, "one node under both names");
                reads += 1;
            }
            reads
        })
    };
    for i in 1..=100u32 {
        let x = node_id(1000 + i);
        file_with(&*s, owner, x, d, "tmp", &[(object_id(1000 + i), 10)]).await;
        let released = s
            .rename(
                owner,
                &rename((d, "tmp"), (d, "target"), RenameMode::Replace),
                NOW,
            )
            .await
            .unwrap();
        assert_eq!(
            released,
            Released {
                nodes: vec![node_id(1000 + i - 1)],
                objects: vec![object_id(1000 + i - 1)],
            }
        );
    }
    done.store(true, Ordering::Release);
    let reads = reader.await.unwrap();
    assert!(reads > 0);
    assert_eq!(
        children(&*s, owner, d, &["target", "tmp"]).await,
        [("target".into(), node_id(1100))]
    );
    assert_eq!(used(&*s, owner).await, 10);
    assert_eq!(s.usage(owner, BIG).await.unwrap().nodes, 3);
}

// ---------------------------------------------------------------------------
// Links and removal
// ---------------------------------------------------------------------------

async fn hard_links_and_nlink(s: &dyn Store) {
    let owner = vault(s, "ln@example.org").await;
    let (d, f, l) = (node_id(1), node_id(2), node_id(3));
    mkdir(s, owner, d, NodeId::ROOT, "d").await;
    file_with(s, owner, f, NodeId::ROOT, "f", &[(object_id(1), 8)]).await;
    mk(s, owner, l, NodeKind::Symlink, NodeId::ROOT, "l").await;

    let linked = s
        .link(owner, &new_entry(d, "f1"), f, NOW + 1)
        .await
        .unwrap();
    assert_eq!((linked.nlink, linked.updated_at), (2, NOW + 1));
    let linked = s
        .link(owner, &new_entry(d, "f2"), f, NOW + 2)
        .await
        .unwrap();
    assert_eq!(linked.nlink, 3);
    assert_eq!(
        s.link(owner, &new_entry(d, "l1"), l, NOW)
            .await
            .unwrap()
            .nlink,
        2
    );
    let (e, n) = s.lookup(owner, d, &tag("f2")).await.unwrap().unwrap();
    assert_eq!(
        (e.child, e.encrypted_name, n.nlink),
        (f, sealed_name(d, "f2"), 3)
    );

    // Refusals.
    assert_err!(
        s.link(owner, &new_entry(d, "dd"), d, NOW).await,
        TreeError::IsADirectory
    );
    assert_err!(
        s.link(owner, &new_entry(d, "root"), NodeId::ROOT, NOW)
            .await,
        TreeError::IsADirectory
    );
    assert_err!(
        s.link(owner, &new_entry(d, "f1"), f, NOW).await,
        TreeError::EntryExists
    );
    assert_err!(
        s.link(owner, &new_entry(d, "m"), node_id(99), NOW).await,
        TreeError::NotFound
    );
    assert_err!(
        s.link(owner, &new_entry(node_id(99), "m"), f, NOW).await,
        TreeError::NotFound
    );
    assert_err!(
        s.link(owner, &new_entry(f, "m"), f, NOW).await,
        TreeError::NotADirectory
    );
    assert_eq!(s.node(owner, f).await.unwrap().unwrap().nlink, 3);

    // Unlinking counts down; the last link deletes the node and releases
    // its objects.
    let released = s
        .remove(owner, NodeId::ROOT, &tag("f"), false, NOW)
        .await
        .unwrap();
    assert_eq!(released, Released::default());
    assert_eq!(s.node(owner, f).await.unwrap().unwrap().nlink, 2);
    let released = s.remove(owner, d, &tag("f1"), false, NOW).await.unwrap();
    assert_eq!(released, Released::default());
    let node = s.node(owner, f).await.unwrap().unwrap();
    assert_eq!((node.nlink, node.size), (1, 8));
    assert!(s.object(owner, object_id(1)).await.unwrap().is_some());
    assert_eq!(used(s, owner).await, 8);
    let released = s.remove(owner, d, &tag("f2"), false, NOW).await.unwrap();
    assert_eq!(
        released,
        Released {
            nodes: vec![f],
            objects: vec![object_id(1)]
        }
    );
    assert_eq!(s.node(owner, f).await.unwrap(), None);
    assert_eq!(s.object(owner, object_id(1)).await.unwrap(), None);
    assert_eq!(used(s, owner).await, 0);
}

async fn remove_rules(s: &dyn Store) {
    let owner = vault(s, "rm@example.org").await;
    let (d, sub, f) = (node_id(1), node_id(2), node_id(3));
    mkdir(s, owner, d, NodeId::ROOT, "d").await;
    mkdir(s, owner, sub, d, "sub").await;
    mk(s, owner, f, NodeKind::File, d, "f").await;
    let before = seq(s, owner).await;

    assert_err!(
        s.remove(owner, NodeId::ROOT, &tag("d"), false, NOW).await,
        TreeError::IsADirectory
    );
    assert_err!(
        s.remove(owner, d, &tag("f"), true, NOW).await,
        TreeError::NotADirectory
    );
    assert_err!(
        s.remove(owner, NodeId::ROOT, &tag("d"), true, NOW).await,
        TreeError::NotEmpty
    );
    assert_err!(
        s.remove(owner, d, &tag("nope"), false, NOW).await,
        TreeError::NotFound
    );
    assert_err!(
        s.remove(owner, node_id(99), &tag("f"), false, NOW).await,
        TreeError::NotFound
    );
    assert_err!(
        s.remove(owner, f, &tag("f"), false, NOW).await,
        TreeError::NotADirectory
    );
    assert_eq!(seq(s, owner).await, before);
    assert_eq!(children(s, owner, d, &["sub", "f"]).await.len(), 2);

    assert_eq!(
        s.remove(owner, d, &tag("sub"), true, NOW).await.unwrap(),
        Released {
            nodes: vec![sub],
            objects: vec![]
        }
    );
    assert_eq!(
        s.remove(owner, d, &tag("f"), false, NOW).await.unwrap(),
        Released {
            nodes: vec![f],
            objects: vec![]
        }
    );
    assert_eq!(
        s.remove(owner, NodeId::ROOT, &tag("d"), true, NOW)
            .await
            .unwrap(),
        Released {
            nodes: vec![d],
            objects: vec![]
        }
    );
    assert!(listing(s, owner, NodeId::ROOT).await.is_empty());
    assert_eq!(s.usage(owner, BIG).await.unwrap().nodes, 1);
}

// ---------------------------------------------------------------------------
// Ownership
// ---------------------------------------------------------------------------

fn session_of(id: &str, account: AccountId) -> NewSession {
    NewSession {
        id: id.to_owned(),
        account,
        refresh_hash: id.as_bytes().to_vec(),
        device: None,
        ip: None,
        now: NOW,
    }
}

async fn reads_in_session_answer_with_the_session(s: &dyn Store) {
    let alice = vault(s, "ns-alice@example.org").await;
    let mallory = vault(s, "ns-mallory@example.org").await;
    let f = node_id(1);
    let made = mk(s, alice, f, NodeKind::File, NodeId::ROOT, "f").await;
    let (entry, _) = s
        .lookup(alice, NodeId::ROOT, &tag("f"))
        .await
        .unwrap()
        .unwrap();
    s.create_session(&session_of("alice-1", alice))
        .await
        .unwrap();
    s.create_session(&session_of("mallory-1", mallory))
        .await
        .unwrap();
    let node =
        |sid: &'static str, id: NodeId| async move { s.node_in_session(sid, id).await.unwrap() };
    let lookup = |sid: &'static str, name: &'static str| async move {
        s.lookup_in_session(sid, NodeId::ROOT, &tag(name))
            .await
            .unwrap()
    };
    fn found<T>(account: AccountId, revoked: bool, found: Option<T>) -> Option<InSession<T>> {
        Some(InSession {
            account,
            revoked,
            found,
        })
    }
    assert_eq!(
        node("alice-1", f).await,
        found(alice, false, Some(made.clone()))
    );
    assert_eq!(
        lookup("alice-1", "f").await,
        found(alice, false, Some((entry.clone(), made.clone())))
    );
    // Another account's node or name, and missing ones: the session only.
    assert_eq!(node("mallory-1", f).await, found(mallory, false, None));
    assert_eq!(lookup("mallory-1", "f").await, found(mallory, false, None));
    assert_eq!(
        node("alice-1", node_id(99)).await,
        found(alice, false, None)
    );
    assert_eq!(lookup("alice-1", "g").await, found(alice, false, None));
    assert_eq!(node("nobody", f).await, None);
    assert_eq!(lookup("nobody", "f").await, None);
    assert!(s.revoke_session(alice, "alice-1", NOW + 1).await.unwrap());
    assert_eq!(
        node("alice-1", f).await,
        found(alice, true, Some(made.clone()))
    );
    assert_eq!(
        lookup("alice-1", "f").await,
        found(alice, true, Some((entry, made)))
    );
}

async fn cross_account_ids_are_missing(s: &dyn Store) {
    let alice = vault(s, "alice@example.org").await;
    let mallory = vault(s, "mallory@example.org").await;
    let (d, f, g) = (node_id(1), node_id(2), node_id(3));
    mkdir(s, alice, d, NodeId::ROOT, "d").await;
    let f_node = file_with(s, alice, f, d, "f", &[(object_id(1), 100)]).await;
    s.reserve_object(alice, object_id(2), 50, Checksum::Sha256([2; 32]), BIG, NOW)
        .await
        .unwrap();
    let alice_usage = s.usage(alice, BIG).await.unwrap();
    let alice_feed = s.changes(alice, 0, 1000).await.unwrap();
    // Mallory's own nodes, to aim at Alice's.
    mkdir(s, mallory, node_id(50), NodeId::ROOT, "md").await;
    mk(s, mallory, g, NodeKind::File, NodeId::ROOT, "g").await;
    let mallory_seq = seq(s, mallory).await;

    // Reads.
    assert_eq!(s.node(mallory, f).await.unwrap(), None);
    assert!(s.nodes(mallory, &[d, f]).await.unwrap().is_empty());
    assert_eq!(s.lookup(mallory, d, &tag("f")).await.unwrap(), None);
    assert_err!(s.list(mallory, d, None, 10).await, TreeError::NotFound);
    // Both roots have the all-zero id: each sees only its own.
    assert_eq!(
        children(s, mallory, NodeId::ROOT, &["md", "g", "d"]).await,
        [("g".into(), g), ("md".into(), node_id(50))]
    );
    assert_eq!(
        s.lookup(mallory, NodeId::ROOT, &tag("d")).await.unwrap(),
        None
    );
    assert_eq!(s.object(mallory, object_id(1)).await.unwrap(), None);
    assert_eq!(s.object(mallory, object_id(2)).await.unwrap(), None);
    assert!(
        s.changes(mallory, 0, 1000)
            .await
            .unwrap()
            .iter()
            .all(|c| c.node != d && c.node != f)
    );

    // Writes.
    assert_err!(
        s.update_record(mallory, f, 2, b"x", NOW).await,
        TreeError::NotFound
    );
    assert_err!(
        s.commit_version(mallory, f, 2, b"x", &[object_id(1)], NOW)
            .await,
        TreeError::NotFound
    );
    // Alice's objects, committed or pending, into Mallory's own file.
    assert_err!(
        s.commit_version(mallory, g, 1, b"x", &[object_id(1)], NOW)
            .await,
        TreeError::NotFound
    );
    assert_err!(
        s.commit_version(mallory, g, 1, b"x", &[object_id(2)], NOW)
            .await,
        TreeError::NotFound
    );
    assert_err!(
        s.create_node(mallory, &new_node(node_id(60), NodeKind::File, d, "x"), NOW)
            .await,
        TreeError::NotFound
    );
    assert_err!(
        s.link(mallory, &new_entry(NodeId::ROOT, "l"), f, NOW).await,
        TreeError::NotFound
    );
    assert_err!(
        s.link(mallory, &new_entry(d, "l"), g, NOW).await,
        TreeError::NotFound
    );
    assert_err!(
        s.rename(
            mallory,
            &rename((d, "f"), (NodeId::ROOT, "stolen"), RenameMode::Replace),
            NOW
        )
        .await,
        TreeError::NotFound
    );
    assert_err!(
        s.rename(
            mallory,
            &rename((NodeId::ROOT, "g"), (d, "f"), RenameMode::Replace),
            NOW
        )
        .await,
        TreeError::NotFound
    );
    assert_err!(
        s.rename(
            mallory,
            &rename(
                (NodeId::ROOT, "d"),
                (NodeId::ROOT, "x"),
                RenameMode::Replace
            ),
            NOW
        )
        .await,
        TreeError::NotFound
    );
    assert_err!(
        s.remove(mallory, d, &tag("f"), false, NOW).await,
        TreeError::NotFound
    );
    assert_err!(
        s.remove(mallory, NodeId::ROOT, &tag("d"), true, NOW).await,
        TreeError::NotFound
    );
    assert_err!(
        s.abandon_object(mallory, object_id(2)).await,
        TreeError::NotFound
    );
    s.purged(mallory, object_id(1)).await.unwrap();
    // The same object id is a different object in another account: taking
    // it neither fails nor touches Alice's.
    s.reserve_object(
        mallory,
        object_id(2),
        7,
        Checksum::Sha256([9; 32]),
        BIG,
        NOW,
    )
    .await
    .unwrap();
    s.abandon_object(mallory, object_id(2)).await.unwrap();

    // Alice's tree, objects, usage and feed are as they were.
    assert_eq!(s.node(alice, f).await.unwrap(), Some(f_node));
    assert_eq!(children(s, alice, d, &["f"]).await, [("f".into(), f)]);
    assert_eq!(
        s.object(alice, object_id(1)).await.unwrap().unwrap().node,
        Some(f)
    );
    let pending = s.object(alice, object_id(2)).await.unwrap().unwrap();
    assert_eq!(
        (pending.node, pending.size, pending.checksum),
        (None, 50, Checksum::Sha256([2; 32]))
    );
    assert_eq!(s.usage(alice, BIG).await.unwrap(), alice_usage);
    assert_eq!(s.changes(alice, 0, 1000).await.unwrap(), alice_feed);
    assert!(
        !s.purge_queue(100)
            .await
            .unwrap()
            .iter()
            .any(|(a, _)| *a == alice)
    );
    // Mallory's refused attempts left no trace in Mallory's feed either.
    assert_eq!(seq(s, mallory).await, mallory_seq);
}

// ---------------------------------------------------------------------------
// Objects and quota
// ---------------------------------------------------------------------------

async fn quota_at_its_edge(s: &dyn Store) {
    let owner = vault(s, "quota@example.org").await;
    const QUOTA: u64 = 1000;
    let reserve = |id: u32, size: u64| {
        s.reserve_object(
            owner,
            object_id(id),
            size,
            Checksum::Sha256([1; 32]),
            QUOTA,
            NOW,
        )
    };
    reserve(1, 600).await.unwrap();
    reserve(2, 400).await.unwrap(); // exactly full
    assert_eq!(
        s.usage(owner, QUOTA).await.unwrap(),
        Usage {
            used_bytes: 1000,
            quota_bytes: QUOTA,
            nodes: 1,
            seq: 1
        }
    );
    assert_err!(reserve(3, 1).await, TreeError::QuotaExceeded);
    assert_eq!(s.object(owner, object_id(3)).await.unwrap(), None);
    reserve(4, 0).await.unwrap(); // empty objects always fit

    // Abandoned space is reusable; the id is not, until purged.
    s.abandon_object(owner, object_id(2)).await.unwrap();
    assert_eq!(used(s, owner).await, 600);
    assert_eq!(s.object(owner, object_id(2)).await.unwrap(), None);
    assert_err!(
        s.abandon_object(owner, object_id(2)).await,
        TreeError::NotFound
    );
    assert_err!(reserve(2, 10).await, TreeError::EntryExists);
    reserve(5, 400).await.unwrap();
    assert_err!(reserve(6, 1).await, TreeError::QuotaExceeded);
    // A taken id is refused before the quota is consulted.
    assert_err!(reserve(1, 1).await, TreeError::EntryExists);

    // Space released by deleting a file is reusable too.
    let f = node_id(1);
    mk(s, owner, f, NodeKind::File, NodeId::ROOT, "f").await;
    let (node, _) = s
        .commit_version(owner, f, 1, b"v2", &[object_id(1), object_id(5)], NOW)
        .await
        .unwrap();
    assert_eq!(node.size, 1000);
    assert_eq!(
        used(s, owner).await,
        1000,
        "committing does not charge twice"
    );
    assert_err!(
        s.abandon_object(owner, object_id(1)).await,
        TreeError::NotFound
    );
    s.remove(owner, NodeId::ROOT, &tag("f"), false, NOW)
        .await
        .unwrap();
    assert_eq!(used(s, owner).await, 0);
    reserve(7, 1000).await.unwrap();
    assert_err!(reserve(8, 1).await, TreeError::QuotaExceeded);

    // Sizes beyond any quota, and a smaller default later.
    assert_err!(
        s.reserve_object(
            owner,
            object_id(9),
            u64::MAX,
            Checksum::Sha256([0; 32]),
            u64::MAX,
            NOW
        )
        .await,
        TreeError::QuotaExceeded
    );
    assert_err!(
        s.reserve_object(owner, object_id(9), 1, Checksum::Sha256([0; 32]), 500, NOW)
            .await,
        TreeError::QuotaExceeded
    );
    assert_eq!(s.usage(owner, 500).await.unwrap().quota_bytes, 500);
    // Object bookkeeping writes no feed records: the root, the file's
    // creation, commit and removal.
    assert_eq!(seq(s, owner).await, 4);

    // Purged ids are forgotten and may be taken again.
    s.purged(owner, object_id(2)).await.unwrap();
    reserve(2, 0).await.unwrap();
}

async fn reserve_never_exceeds_quota_concurrently(s: Arc<dyn Store>) {
    // No tree yet: the first reservations also race to create the
    // account's usage row.
    let owner = register(&*s, "quota-race@example.org").await;
    const QUOTA: u64 = 1_050;
    open_connections(&s).await;
    let outcomes = concurrently(20, |i| {
        let s = s.clone();
        async move {
            let id = object_id(u32::try_from(i).unwrap());
            s.reserve_object(owner, id, 100, Checksum::Sha256([3; 32]), QUOTA, NOW)
                .await
        }
    })
    .await;
    let ok = outcomes.iter().filter(|o| o.is_ok()).count();
    for o in &outcomes {
        if let Err(e) = o {
            assert!(matches!(e, TreeError::QuotaExceeded), "{e:?}");
        }
    }
    assert_eq!(ok, 10, "every reservation that fits succeeds: {outcomes:?}");
    let usage = s.usage(owner, QUOTA).await.unwrap();
    assert_eq!(usage.used_bytes, 1_000);
    assert!(usage.used_bytes <= QUOTA);
    assert_eq!(usage.seq, 0, "no feed records for objects");
}

async fn commit_version_object_rules(s: &dyn Store) {
    let owner = vault(s, "commit@example.org").await;
    let (f, other, d) = (node_id(1), node_id(2), node_id(3));
    mk(s, owner, f, NodeKind::File, NodeId::ROOT, "f").await;
    file_with(
        s,
        owner,
        other,
        NodeId::ROOT,
        "other",
        &[(object_id(90), 9)],
    )
    .await;
    mkdir(s, owner, d, NodeId::ROOT, "d").await;
    for (id, size) in [(1, 10), (2, 20), (3, 30), (4, 40)] {
        s.reserve_object(
            owner,
            object_id(id),
            size,
            Checksum::Crc32c(id),
            BIG,
            NOW + i64::from(id),
        )
        .await
        .unwrap();
    }
    let pending = s.object(owner, object_id(1)).await.unwrap().unwrap();
    assert_eq!(
        pending,
        ObjectRow {
            id: object_id(1),
            node: None,
            size: 10,
            checksum: Checksum::Crc32c(1),
            created_at: NOW + 1
        }
    );

    // Version 2: objects 1 and 2.
    let (node, released) = s
        .commit_version(owner, f, 1, b"v2", &[object_id(1), object_id(2)], NOW + 10)
        .await
        .unwrap();
    assert_eq!(released, Released::default());
    assert_eq!(
        (node.version, node.size, node.record.as_slice()),
        (2, 30, &b"v2"[..])
    );
    assert_eq!(node.updated_at, NOW + 10);
    assert_eq!(
        s.object(owner, object_id(2)).await.unwrap().unwrap().node,
        Some(f)
    );

    // Refusals, each leaving everything as it was.
    let before = (
        s.node(owner, f).await.unwrap(),
        used(s, owner).await,
        seq(s, owner).await,
    );
    assert_err!(
        s.commit_version(owner, f, 1, b"x", &[object_id(3)], NOW)
            .await,
        TreeError::VersionConflict { current: 2 }
    );
    assert_err!(
        s.commit_version(owner, d, 1, b"x", &[object_id(3)], NOW)
            .await,
        TreeError::NotAFile
    );
    assert_err!(
        s.commit_version(owner, NodeId::ROOT, 1, b"x", &[], NOW)
            .await,
        TreeError::NotAFile
    );
    assert_err!(
        s.commit_version(owner, node_id(99), 1, b"x", &[], NOW)
            .await,
        TreeError::NotFound
    );
    // A missing object, another node's, each after a valid one.
    for bad in [object_id(77), object_id(90)] {
        assert_err!(
            s.commit_version(owner, f, 2, b"x", &[object_id(3), bad], NOW)
                .await,
            TreeError::NotFound
        );
    }
    assert_eq!(
        s.object(owner, object_id(3)).await.unwrap().unwrap().node,
        None,
        "still pending"
    );
    assert_eq!(
        (
            s.node(owner, f).await.unwrap(),
            used(s, owner).await,
            seq(s, owner).await
        ),
        before
    );

    // Version 3: keep 2, add 3 (listed twice), drop 1.
    let (node, released) = s
        .commit_version(
            owner,
            f,
            2,
            b"v3",
            &[object_id(3), object_id(2), object_id(3)],
            NOW + 20,
        )
        .await
        .unwrap();
    assert_eq!(
        released,
        Released {
            nodes: vec![],
            objects: vec![object_id(1)]
        }
    );
    assert_eq!((node.version, node.size), (3, 50));
    assert_eq!(s.object(owner, object_id(1)).await.unwrap(), None);
    assert_eq!(used(s, owner).await, 20 + 30 + 40 + 9);
    assert!(
        s.purge_queue(100)
            .await
            .unwrap()
            .contains(&(owner, object_id(1)))
    );
    // A released object cannot come back.
    assert_err!(
        s.commit_version(owner, f, 3, b"x", &[object_id(1)], NOW)
            .await,
        TreeError::NotFound
    );

    // An empty version releases everything.
    let (node, released) = s
        .commit_version(owner, f, 3, b"v4", &[], NOW)
        .await
        .unwrap();
    let mut objects = released.objects;
    objects.sort();
    assert_eq!(objects, [object_id(2), object_id(3)]);
    assert_eq!((node.version, node.size), (4, 0));
    assert_eq!(used(s, owner).await, 40 + 9);
    // The other file is untouched.
    assert_eq!(s.node(owner, other).await.unwrap().unwrap().size, 9);
}

async fn purge_queue_and_stale_pending(s: &dyn Store) {
    let a = vault(s, "gc-a@example.org").await;
    let b = vault(s, "gc-b@example.org").await;
    let reserve = |owner: AccountId, id: u32, at: i64| {
        s.reserve_object(
            owner,
            object_id(id),
            100,
            Checksum::Sha256([5; 32]),
            BIG,
            at,
        )
    };
    reserve(a, 1, 100).await.unwrap();
    reserve(a, 2, 200).await.unwrap();
    reserve(b, 3, 120).await.unwrap();
    reserve(b, 4, 300).await.unwrap();
    reserve(a, 5, 50).await.unwrap();
    // Committed objects are never stale.
    let f = node_id(1);
    mk(s, a, f, NodeKind::File, NodeId::ROOT, "f").await;
    s.commit_version(a, f, 1, b"v", &[object_id(5)], NOW)
        .await
        .unwrap();
    assert!(s.purge_queue(100).await.unwrap().is_empty());

    // Pending before the cutoff: released, oldest first, up to the limit.
    let first = s.release_stale_pending(250, 1).await.unwrap();
    assert_eq!(first, [(a, object_id(1))]);
    let rest = s.release_stale_pending(250, 100).await.unwrap();
    let rest: HashSet<_> = rest.into_iter().collect();
    assert_eq!(rest, HashSet::from([(b, object_id(3)), (a, object_id(2))]));
    assert!(s.release_stale_pending(250, 100).await.unwrap().is_empty());
    assert_eq!(used(s, a).await, 100, "only the committed object");
    assert_eq!(used(s, b).await, 100, "only the young pending one");
    assert_eq!(s.object(a, object_id(1)).await.unwrap(), None);
    assert!(s.object(b, object_id(4)).await.unwrap().is_some());
    assert_err!(
        s.commit_version(a, f, 2, b"v", &[object_id(2)], NOW).await,
        TreeError::NotFound
    );

    // Deletion releases too; the queue holds every released object once.
    s.remove(a, NodeId::ROOT, &tag("f"), false, NOW)
        .await
        .unwrap();
    let queue: HashSet<_> = s.purge_queue(100).await.unwrap().into_iter().collect();
    assert_eq!(
        queue,
        HashSet::from([
            (a, object_id(1)),
            (a, object_id(2)),
            (b, object_id(3)),
            (a, object_id(5))
        ])
    );
    assert_eq!(s.purge_queue(2).await.unwrap().len(), 2);
    // Released ids stay taken until purged; purged ones leave the queue.
    assert_err!(reserve(a, 1, 400).await, TreeError::EntryExists);
    s.purged(a, object_id(1)).await.unwrap();
    s.purged(a, object_id(1)).await.unwrap(); // idempotent
    s.purged(b, object_id(4)).await.unwrap(); // live: left alone
    assert!(s.object(b, object_id(4)).await.unwrap().is_some());
    let queue: HashSet<_> = s.purge_queue(100).await.unwrap().into_iter().collect();
    assert_eq!(
        queue,
        HashSet::from([(a, object_id(2)), (b, object_id(3)), (a, object_id(5))])
    );
    // Several at once, in one call: released ones of both owners are
    // forgotten; a live one, a forgotten one and another owner's id are
    // left alone.
    s.purged_many(&[]).await.unwrap();
    s.purged_many(&[
        (a, object_id(2)),
        (b, object_id(4)),
        (a, object_id(1)),
        (a, object_id(3)),
        (b, object_id(3)),
    ])
    .await
    .unwrap();
    assert!(s.object(b, object_id(4)).await.unwrap().is_some());
    let queue: HashSet<_> = s.purge_queue(100).await.unwrap().into_iter().collect();
    assert_eq!(queue, HashSet::from([(a, object_id(5))]));
    // Released objects no longer count: usage is what is live.
    assert_eq!(used(s, a).await, 0);
}

// ---------------------------------------------------------------------------
// Change feed
// ---------------------------------------------------------------------------

async fn change_feed_records(s: &dyn Store) {
    let owner = vault(s, "feed@example.org").await;
    let (d, f) = (node_id(1), node_id(2));
    mkdir(s, owner, d, NodeId::ROOT, "d").await;
    mk(s, owner, f, NodeKind::File, d, "f").await;
    s.update_record(owner, f, 1, b"v2", NOW).await.unwrap();
    s.reserve_object(owner, object_id(1), 1, Checksum::Sha256([0; 32]), BIG, NOW)
        .await
        .unwrap();
    s.commit_version(owner, f, 2, b"v3", &[object_id(1)], NOW)
        .await
        .unwrap();
    assert_err!(
        s.create_node(owner, &new_node(node_id(3), NodeKind::File, d, "f"), NOW)
            .await,
        TreeError::EntryExists
    );
    s.rename(
        owner,
        &rename((d, "f"), (NodeId::ROOT, "f"), RenameMode::Replace),
        NOW,
    )
    .await
    .unwrap();
    s.link(owner, &new_entry(d, "again"), f, NOW).await.unwrap();
    s.remove(owner, NodeId::ROOT, &tag("f"), false, NOW)
        .await
        .unwrap();

    let change = |seq: i64, node: NodeId, parent: Option<NodeId>| ChangeRow { seq, node, parent };
    let expected = vec![
        change(1, NodeId::ROOT, None),
        change(2, d, Some(NodeId::ROOT)),
        change(3, f, Some(d)),
        change(4, f, None),
        change(5, f, None),
        change(6, f, Some(d)),
        change(7, f, Some(NodeId::ROOT)),
        change(8, f, Some(d)),
        change(9, f, Some(NodeId::ROOT)),
    ];
    assert_eq!(s.changes(owner, 0, 100).await.unwrap(), expected);
    assert_eq!(s.changes(owner, 3, 2).await.unwrap(), expected[3..5]);
    assert!(s.changes(owner, 9, 100).await.unwrap().is_empty());
    assert_eq!(seq(s, owner).await, 9);
}

async fn change_feed_gap_free_concurrently(s: Arc<dyn Store>) {
    let owner = vault(&*s, "feed-race@example.org").await;
    open_connections(&s).await;
    const TASKS: u32 = 8;
    const ROUNDS: u32 = 8;
    let counts = concurrently(TASKS as usize, |i| {
        let s = s.clone();
        async move {
            let i = u32::try_from(i).unwrap();
            let dir = node_id(i * 1000);
            let mut records = 0u32;
            mkdir(&*s, owner, dir, NodeId::ROOT, &format!("dir{i}")).await;
            records += 1;
            for r in 1..=ROUNDS {
                let f = node_id(i * 1000 + r);
                mk(&*s, owner, f, NodeKind::File, dir, "new").await;
                s.update_record(owner, f, 1, b"v2", NOW).await.unwrap();
                s.rename(
                    owner,
                    &rename((dir, "new"), (dir, &format!("f{r}")), RenameMode::NoReplace),
                    NOW,
                )
                .await
                .unwrap();
                // Refused: takes and gives back a sequence number.
                assert_err!(
                    s.update_record(owner, f, 1, b"stale", NOW).await,
                    TreeError::VersionConflict { current: 2 }
                );
                records += 3;
            }
            records
        }
    })
    .await;
    let total: u32 = counts.iter().sum::<u32>() + 1; // and the root
    let feed = s.changes(owner, 0, 10_000).await.unwrap();
    let seqs: Vec<i64> = feed.iter().map(|c| c.seq).collect();
    let expected: Vec<i64> = (1..=i64::from(total)).collect();
    assert_eq!(seqs, expected, "strictly increasing, no gaps");
    assert_eq!(seq(&*s, owner).await, i64::from(total));
    // Paging by `since` walks it exactly.
    let mut since = 0;
    let mut paged = Vec::new();
    loop {
        let page = s.changes(owner, since, 7).await.unwrap();
        let Some(last) = page.last() else { break };
        since = last.seq;
        paged.extend(page);
    }
    assert_eq!(paged, feed);
}

// ---------------------------------------------------------------------------
// Listing
// ---------------------------------------------------------------------------

async fn paged_listing_each_entry_once(s: &dyn Store) {
    let owner = vault(s, "ls@example.org").await;
    let d = node_id(1);
    mkdir(s, owner, d, NodeId::ROOT, "d").await;
    let mut expected = Vec::new();
    for i in 0..1000u32 {
        let name = format!("file-{i}");
        let id = node_id(10_000 + i);
        mk(s, owner, id, NodeKind::File, d, &name).await;
        expected.push((tag(&name), id));
    }
    // A neighbour directory's entries must not leak in.
    mkdir(s, owner, node_id(2), NodeId::ROOT, "e").await;
    mk(s, owner, node_id(3), NodeKind::File, node_id(2), "file-0").await;
    expected.sort();

    let mut seen = Vec::new();
    let mut pages = Vec::new();
    let mut after: Option<NameTag> = None;
    loop {
        let page = s.list(owner, d, after.as_ref(), 100).await.unwrap();
        if page.is_empty() {
            break;
        }
        pages.push(page.len());
        after = page.last().map(|(e, _)| e.tag);
        for (e, n) in page {
            assert_eq!((e.parent, e.child, n.id, n.nlink), (d, n.id, e.child, 1));
            seen.push((e.tag, e.child));
        }
    }
    assert_eq!(pages, [100; 10]);
    assert_eq!(seen, expected, "each once, in tag order");
    assert!(s.list(owner, d, None, 0).await.unwrap().is_empty());
}

/// A 100k-entry directory, built with the test-only bulk insert.
async fn big_directory(
    s: &dyn Store,
    owner: AccountId,
    dir: NodeId,
    count: u32,
) -> Vec<(NameTag, NodeId)> {
    mkdir(s, owner, dir, NodeId::ROOT, "big").await;
    let new: Vec<NewNode> = (0..count)
        .map(|i| {
            new_node(
                node_id(1_000_000 + i),
                NodeKind::File,
                dir,
                &format!("entry {i}"),
            )
        })
        .collect();
    for chunk in new.chunks(20_000) {
        s.insert_nodes_for_test(owner, chunk, NOW).await.unwrap();
    }
    let mut tags: Vec<(NameTag, NodeId)> = new
        .iter()
        .map(|n| (n.entry.as_ref().unwrap().tag, n.id))
        .collect();
    tags.sort();
    tags
}

async fn large_directory_pages(s: &dyn Store) {
    const COUNT: u32 = 100_000;
    let owner = vault(s, "big@example.org").await;
    let dir = node_id(1);
    let tags = big_directory(s, owner, dir, COUNT).await;
    assert_eq!(
        s.usage(owner, BIG).await.unwrap().nodes,
        u64::from(COUNT) + 2
    );

    let ids = |page: &[(EntryRow, NodeRow)]| -> Vec<(NameTag, NodeId)> {
        page.iter().map(|(e, n)| (e.tag, n.id)).collect()
    };
    let first = s.list(owner, dir, None, 100).await.unwrap();
    assert_eq!(ids(&first), tags[..100]);
    let middle = s
        .list(owner, dir, Some(&tags[49_999].0), 100)
        .await
        .unwrap();
    assert_eq!(ids(&middle), tags[50_000..50_100]);
    let last = s
        .list(owner, dir, Some(&tags[tags.len() - 51].0), 100)
        .await
        .unwrap();
    assert_eq!(ids(&last), tags[tags.len() - 50..]);
    assert!(
        s.list(owner, dir, Some(&tags[tags.len() - 1].0), 100)
            .await
            .unwrap()
            .is_empty()
    );
    let (entry, node) = s
        .lookup(owner, dir, &tag("entry 77777"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (entry.child, node.id),
        (node_id(1_077_777), node_id(1_077_777))
    );
    assert_eq!(
        s.lookup(owner, dir, &tag("entry 100000")).await.unwrap(),
        None
    );
    // Changes in it stay cheap and correct.
    assert_err!(
        s.create_node(
            owner,
            &new_node(node_id(5), NodeKind::File, dir, "entry 5"),
            NOW
        )
        .await,
        TreeError::EntryExists
    );
    assert_err!(
        s.remove(owner, NodeId::ROOT, &tag("big"), true, NOW).await,
        TreeError::NotEmpty
    );
    s.rename(
        owner,
        &rename((dir, "entry 5"), (dir, "entry 6"), RenameMode::Replace),
        NOW,
    )
    .await
    .unwrap();
    assert_eq!(s.node(owner, node_id(1_000_006)).await.unwrap(), None);
    // Moving a directory walks up from the target, not through the tree.
    mkdir(s, owner, node_id(2), dir, "sub").await;
    assert_err!(
        s.rename(
            owner,
            &rename(
                (NodeId::ROOT, "big"),
                (node_id(2), "x"),
                RenameMode::Replace
            ),
            NOW
        )
        .await,
        TreeError::InvalidMove
    );
}

// ---------------------------------------------------------------------------
// Batches
// ---------------------------------------------------------------------------

fn create_op(id: NodeId, kind: NodeKind, parent: NodeId, name: &str) -> TreeOp {
    TreeOp::Create(new_node(id, kind, parent, name))
}

fn record_op(id: NodeId, expected_version: u64, record: &[u8]) -> TreeOp {
    TreeOp::Record(NewRecord {
        id,
        expected_version,
        record: record.to_vec(),
    })
}

fn commit_op(id: NodeId, expected_version: u64, objects: &[ObjectId]) -> TreeOp {
    TreeOp::Commit(NewVersion {
        id,
        expected_version,
        record: record(id, expected_version + 1),
        objects: objects.to_vec(),
    })
}

fn new_object(id: u32, size: u64) -> NewObject {
    NewObject {
        id: object_id(id),
        size,
        checksum: Checksum::Crc32c(id),
    }
}

/// Runs `ops` one by one through the single methods, answering as
/// [`TreeStore::batch`] answers.
async fn one_by_one(s: &dyn Store, owner: AccountId, ops: &[TreeOp]) -> Vec<TreeOpResult> {
    let mut out = Vec::new();
    for op in ops {
        out.push(match op {
            TreeOp::Create(new) => s
                .create_node(owner, new, NOW)
                .await
                .map(|n| (n, Released::default())),
            TreeOp::Commit(v) => {
                s.commit_version(owner, v.id, v.expected_version, &v.record, &v.objects, NOW)
                    .await
            }
            TreeOp::Record(r) => s
                .update_record(owner, r.id, r.expected_version, &r.record, NOW)
                .await
                .map(|n| (n, Released::default())),
        });
    }
    out
}

/// A result in a form two runs can be compared by.
fn outcome(r: &TreeOpResult) -> Result<(NodeRow, Released), String> {
    r.as_ref()
        .map(|(n, rel)| (n.clone(), rel.clone()))
        .map_err(|e| format!("{e:?}"))
}

async fn batch_creates_and_commits_in_one_transaction(s: &dyn Store) {
    let owner = vault(s, "batch@example.org").await;
    let (a, d, b) = (node_id(1), node_id(2), node_id(3));
    s.reserve_objects(
        owner,
        &[new_object(1, 10), new_object(2, 20), new_object(3, 30)],
        BIG,
        NOW,
    )
    .await
    .unwrap();
    assert_eq!(used(s, owner).await, 60);
    let before = seq(s, owner).await;

    // New nodes, committed in the same batch; a directory and a file in it.
    let ops = [
        create_op(a, NodeKind::File, NodeId::ROOT, "a"),
        commit_op(a, 1, &[object_id(1)]),
        create_op(d, NodeKind::Directory, NodeId::ROOT, "d"),
        create_op(b, NodeKind::File, d, "b"),
        commit_op(b, 1, &[object_id(2), object_id(3), object_id(2)]),
    ];
    let results = s.batch(owner, &ops, NOW + 1).await.unwrap();
    assert_eq!(results.len(), ops.len());
    let rows: Vec<NodeRow> = results
        .into_iter()
        .map(|r| {
            let (row, released) = r.unwrap();
            assert_eq!(released, Released::default());
            row
        })
        .collect();
    assert_eq!((rows[0].id, rows[0].version, rows[0].size), (a, 1, 0));
    assert_eq!(
        rows[1],
        NodeRow {
            id: a,
            kind: NodeKind::File,
            version: 2,
            record: record(a, 2),
            size: 10,
            nlink: 1,
            created_at: NOW + 1,
            updated_at: NOW + 1,
        }
    );
    assert_eq!((rows[2].id, rows[2].kind), (d, NodeKind::Directory));
    assert_eq!((rows[4].id, rows[4].version, rows[4].size), (b, 2, 50));
    assert_eq!(s.node(owner, a).await.unwrap(), Some(rows[1].clone()));
    assert_eq!(s.node(owner, b).await.unwrap(), Some(rows[4].clone()));
    assert_eq!(
        children(s, owner, NodeId::ROOT, &["a", "d"]).await,
        [("a".to_owned(), a), ("d".to_owned(), d)]
    );
    assert_eq!(children(s, owner, d, &["b"]).await, [("b".to_owned(), b)]);
    for (object, node) in [(1, a), (2, b), (3, b)] {
        assert_eq!(
            s.object(owner, object_id(object))
                .await
                .unwrap()
                .unwrap()
                .node,
            Some(node)
        );
    }

    // One feed record per (node, directory) an operation touched, in order,
    // numbered on from before the batch.
    let feed = s.changes(owner, before, 100).await.unwrap();
    let expected: Vec<ChangeRow> = [
        (a, Some(NodeId::ROOT)),
        (a, None),
        (d, Some(NodeId::ROOT)),
        (b, Some(d)),
        (b, None),
    ]
    .into_iter()
    .zip(before + 1..)
    .map(|((node, parent), seq)| ChangeRow { seq, node, parent })
    .collect();
    assert_eq!(feed, expected);
    assert_eq!(
        s.usage(owner, BIG).await.unwrap(),
        Usage {
            used_bytes: 60,
            quota_bytes: BIG,
            nodes: 4,
            seq: before + 5,
        }
    );

    // A commit that drops objects releases them for purge, as
    // commit_version does.
    s.reserve_objects(owner, &[new_object(4, 4)], BIG, NOW)
        .await
        .unwrap();
    let results = s
        .batch(
            owner,
            &[commit_op(b, 2, &[object_id(4), object_id(3)])],
            NOW + 2,
        )
        .await
        .unwrap();
    let [Ok((row, released))] = &results[..] else {
        panic!("{results:?}");
    };
    assert_eq!((row.version, row.size), (3, 34));
    assert_eq!(
        released,
        &Released {
            nodes: vec![],
            objects: vec![object_id(2)]
        }
    );
    assert_eq!(used(s, owner).await, 44);
    assert_eq!(s.object(owner, object_id(2)).await.unwrap(), None);
    assert_eq!(
        s.purge_queue(100).await.unwrap(),
        [(owner, object_id(2))],
        "queued for purge"
    );

    // Nothing to do: no transaction, no sequence number.
    let at = seq(s, owner).await;
    assert!(s.batch(owner, &[], NOW).await.unwrap().is_empty());
    assert_eq!(seq(s, owner).await, at);
}

/// The same tree in a fresh account: a file `f` at version 2 with object
/// 1, a directory `d`, and pending objects 2 and 3.
async fn batch_fixture(s: &dyn Store, email: &str) -> AccountId {
    let owner = vault(s, email).await;
    file_with(
        s,
        owner,
        node_id(1),
        NodeId::ROOT,
        "f",
        &[(object_id(1), 10)],
    )
    .await;
    mkdir(s, owner, node_id(2), NodeId::ROOT, "d").await;
    s.reserve_objects(owner, &[new_object(2, 20), new_object(3, 30)], BIG, NOW)
        .await
        .unwrap();
    owner
}

async fn batch_refusals_are_per_operation(s: &dyn Store) {
    let (f, d, x, y) = (node_id(1), node_id(2), node_id(10), node_id(11));
    let missing = node_id(99);
    let ops = [
        create_op(x, NodeKind::File, NodeId::ROOT, "x"),
        // A taken name, a taken id, a missing parent, a file as parent.
        create_op(y, NodeKind::File, NodeId::ROOT, "f"),
        create_op(x, NodeKind::File, d, "x-again"),
        create_op(y, NodeKind::File, missing, "y"),
        create_op(y, NodeKind::File, f, "y"),
        // A stale version, a directory, a missing node.
        commit_op(f, 1, &[object_id(2)]),
        commit_op(d, 1, &[]),
        commit_op(missing, 1, &[]),
        // Commits object 2 to x, then finds object 98 missing: nothing of
        // it stays, so object 2 is still pending for f.
        commit_op(x, 1, &[object_id(2), object_id(98)]),
        commit_op(f, 2, &[object_id(1), object_id(2)]),
        // An object already another node's.
        commit_op(x, 1, &[object_id(2)]),
        create_op(y, NodeKind::Symlink, d, "y"),
        commit_op(x, 1, &[object_id(3)]),
        // The same node again: a feed record again, as one call would.
        commit_op(x, 2, &[object_id(3)]),
        // Record changes: a directory's, a stale one, a missing node.
        record_op(d, 1, b"d at 2"),
        record_op(f, 1, b"stale"),
        record_op(missing, 1, b"absent"),
    ];

    let a = batch_fixture(s, "batch-a@example.org").await;
    let b = batch_fixture(s, "batch-b@example.org").await;
    let before = seq(s, a).await;
    assert_eq!(before, seq(s, b).await);
    let batched = s.batch(a, &ops, NOW).await.unwrap();
    let single = one_by_one(s, b, &ops).await;

    // Each operation answers exactly what its own method answers.
    let batched: Vec<_> = batched.iter().map(outcome).collect();
    let single: Vec<_> = single.iter().map(outcome).collect();
    assert_eq!(batched, single);
    let errors: Vec<Option<String>> = batched.iter().map(|r| r.clone().err()).collect();
    let expected = [
        None,
        Some("EntryExists"),
        Some("EntryExists"),
        Some("NotFound"),
        Some("NotADirectory"),
        Some("VersionConflict { current: 2 }"),
        Some("NotAFile"),
        Some("NotFound"),
        Some("NotFound"),
        None,
        Some("NotFound"),
        None,
        None,
        None,
        None,
        Some("VersionConflict { current: 3 }"),
        Some("NotFound"),
    ];
    assert_eq!(
        errors,
        expected
            .iter()
            .map(|e| e.map(str::to_owned))
            .collect::<Vec<_>>()
    );

    // The refused ones left nothing behind: the same tree, usage and feed
    // as one call per operation.
    assert_eq!(
        s.usage(a, BIG).await.unwrap(),
        s.usage(b, BIG).await.unwrap()
    );
    assert_eq!(seq(s, a).await, before + 6);
    let feed = |owner| async move {
        s.changes(owner, 0, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.seq, c.node, c.parent))
            .collect::<Vec<_>>()
    };
    assert_eq!(feed(a).await, feed(b).await);
    for owner in [a, b] {
        assert_eq!(
            children(s, owner, NodeId::ROOT, &["f", "d", "x"]).await,
            [
                ("d".to_owned(), d),
                ("f".to_owned(), f),
                ("x".to_owned(), x)
            ]
        );
        assert_eq!(children(s, owner, d, &["y"]).await, [("y".to_owned(), y)]);
        let xs = s.node(owner, x).await.unwrap().unwrap();
        assert_eq!((xs.version, xs.size), (3, 30));
        let fs = s.node(owner, f).await.unwrap().unwrap();
        assert_eq!((fs.version, fs.size), (3, 30));
        assert_eq!(
            s.object(owner, object_id(2)).await.unwrap().unwrap().node,
            Some(f)
        );
        assert_eq!(used(s, owner).await, 60);
        let ds = s.node(owner, d).await.unwrap().unwrap();
        assert_eq!((ds.version, &ds.record[..]), (2, &b"d at 2"[..]));
    }

    // A batch for an account that does not exist fails as a whole.
    let ghost = AccountId(a.0 + 1000);
    assert_err!(s.batch(ghost, &ops[..1], NOW).await, TreeError::NotFound);
    // The root cannot be created in a batch.
    let fresh = register(s, "batch-root@example.org").await;
    let root = TreeOp::Create(NewNode {
        id: NodeId::ROOT,
        kind: NodeKind::Directory,
        record: vec![1],
        entry: None,
        objects: Vec::new(),
    });
    let results = s.batch(fresh, &[root], NOW).await.unwrap();
    assert!(
        matches!(&results[..], [Err(TreeError::InvalidMove)]),
        "{results:?}"
    );
    assert_eq!(s.node(fresh, NodeId::ROOT).await.unwrap(), None);
    assert_eq!(seq(s, fresh).await, 0);
}

fn create_with(
    id: NodeId,
    kind: NodeKind,
    parent: NodeId,
    name: &str,
    objects: &[ObjectId],
) -> TreeOp {
    TreeOp::Create(node_with(id, kind, parent, name, objects))
}

/// Runs `ops` as one batch in one account and one call each in another
/// (both made by `fixture`), checks that each operation answered the same
/// and left the same tree, usage, feed and objects, and returns the
/// errors (`None` for a success).
async fn batch_as_single_calls<F, Fut>(
    s: &dyn Store,
    fixture: F,
    ops: &[TreeOp],
    objects: &[u32],
) -> (AccountId, Vec<Option<String>>)
where
    F: Fn(&'static str) -> Fut,
    Fut: Future<Output = AccountId>,
{
    let a = fixture("as-batch@example.org").await;
    let b = fixture("as-single@example.org").await;
    assert_eq!(seq(s, a).await, seq(s, b).await);
    let batched = s.batch(a, ops, NOW).await.unwrap();
    let single = one_by_one(s, b, ops).await;
    let batched: Vec<_> = batched.iter().map(outcome).collect();
    let single: Vec<_> = single.iter().map(outcome).collect();
    assert_eq!(batched, single);
    let usage = |owner| async move {
        let u = s.usage(owner, BIG).await.unwrap();
        (u.used_bytes, u.nodes, u.seq)
    };
    assert_eq!(usage(a).await, usage(b).await);
    let feed = |owner| async move {
        s.changes(owner, 0, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.seq, c.node, c.parent))
            .collect::<Vec<_>>()
    };
    assert_eq!(feed(a).await, feed(b).await);
    let mut dirs = vec![NodeId::ROOT];
    while let Some(dir) = dirs.pop() {
        let page = s.list(a, dir, None, 1000).await.unwrap();
        let other = s.list(b, dir, None, 1000).await.unwrap();
        assert_eq!(page, other, "listing of {dir}");
        for (_, node) in page {
            if node.kind == NodeKind::Directory {
                dirs.push(node.id);
            }
        }
    }
    for id in objects {
        assert_eq!(
            s.object(a, object_id(*id)).await.unwrap(),
            s.object(b, object_id(*id)).await.unwrap(),
            "object {id}"
        );
    }
    (a, batched.into_iter().map(Result::err).collect())
}

async fn batch_creates_files_with_their_objects(s: &dyn Store) {
    let d = node_id(2);
    let (a, b, c, x, y) = (
        node_id(10),
        node_id(11),
        node_id(12),
        node_id(13),
        node_id(14),
    );
    let fixture = |email: &'static str| async move {
        let owner = batch_fixture(s, email).await;
        s.reserve_objects(
            owner,
            &[new_object(4, 40), new_object(5, 50), new_object(6, 60)],
            BIG,
            NOW,
        )
        .await
        .unwrap();
        owner
    };
    let ops = [
        // New files with their contents, one operation each.
        create_with(a, NodeKind::File, NodeId::ROOT, "a", &[object_id(2)]),
        create_with(b, NodeKind::File, d, "b", &[object_id(3), object_id(4)]),
        // Object 2 is a's now, object 1 f's, 99 missing.
        create_with(c, NodeKind::File, d, "c", &[object_id(5), object_id(2)]),
        create_with(c, NodeKind::File, d, "c", &[object_id(1)]),
        create_with(c, NodeKind::File, d, "c", &[object_id(5), object_id(99)]),
        // Not a file; a taken name, a taken id, with and without objects.
        create_with(c, NodeKind::Directory, d, "c", &[object_id(5)]),
        create_with(c, NodeKind::Symlink, d, "c", &[object_id(5)]),
        create_with(c, NodeKind::File, d, "b", &[object_id(5)]),
        create_with(c, NodeKind::File, d, "b", &[]),
        create_with(a, NodeKind::File, d, "c", &[object_id(5)]),
        create_with(a, NodeKind::File, d, "c", &[]),
        // A bad parent comes first.
        create_with(c, NodeKind::File, a, "c", &[object_id(5)]),
        create_with(c, NodeKind::File, node_id(99), "c", &[object_id(5)]),
        // What the refused ones left: c and object 5 are free.
        create_with(c, NodeKind::File, d, "c", &[object_id(5), object_id(5)]),
        // The next version of a file created with objects releases the
        // ones it drops.
        commit_op(b, 1, &[object_id(4), object_id(6)]),
        // A plain create and commit still work side by side.
        create_op(x, NodeKind::File, d, "x"),
        commit_op(x, 1, &[]),
        create_with(y, NodeKind::Directory, NodeId::ROOT, "y", &[]),
    ];
    let (owner, errors) = batch_as_single_calls(s, fixture, &ops, &[1, 2, 3, 4, 5, 6]).await;
    let expected = [
        None,
        None,
        Some("NotFound"),
        Some("NotFound"),
        Some("NotFound"),
        Some("NotAFile"),
        Some("NotAFile"),
        Some("EntryExists"),
        Some("EntryExists"),
        Some("EntryExists"),
        Some("EntryExists"),
        Some("NotADirectory"),
        Some("NotFound"),
        None,
        None,
        None,
        None,
        None,
    ];
    assert_eq!(
        errors,
        expected
            .iter()
            .map(|e| e.map(str::to_owned))
            .collect::<Vec<_>>()
    );
    let size = |id| async move {
        s.node(owner, id)
            .await
            .unwrap()
            .map(|n| (n.version, n.size))
    };
    assert_eq!(size(a).await, Some((1, 20)));
    assert_eq!(size(b).await, Some((2, 100)));
    assert_eq!(size(c).await, Some((1, 50)));
    assert_eq!(size(x).await, Some((2, 0)));
    for (object, node) in [(2, a), (4, b), (5, c), (6, b)] {
        assert_eq!(holder(s, owner, object_id(object)).await, Some(Some(node)));
    }
    // Object 3 went with b's second version; nothing else is released.
    assert_eq!(holder(s, owner, object_id(3)).await, None);
    let queued: Vec<_> = s
        .purge_queue(1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|(o, _)| *o == owner)
        .collect();
    assert_eq!(queued, [(owner, object_id(3))]);
    // Only reserved bytes count: 10 (f) + 20 + 50 + 40 + 60 (+ 3's 30 gone).
    assert_eq!(used(s, owner).await, 180);
    assert_eq!(
        children(s, owner, d, &["b", "c", "x"]).await,
        [
            ("b".to_owned(), b),
            ("c".to_owned(), c),
            ("x".to_owned(), x)
        ]
    );
}

/// A batch of creates only (the uploader's new files) is written together
/// when none is refused: more than a statement's hundred rows, files with
/// objects (one listed twice), without, a directory and a symlink. The
/// same with one create refused at each point the written-together path
/// can meet it (its INSERTs, the objects, a parent, two creates that
/// collide) then runs one by one: the same answers as single calls, and
/// no trace of the attempt.
async fn batch_of_new_files_answers_as_single_calls(s: &dyn Store) {
    const FILES: u32 = 230;
    let fixture = |email: &'static str| async move {
        let owner = batch_fixture(s, email).await;
        let objects: Vec<NewObject> = (0..FILES)
            .map(|i| new_object(100 + i, u64::from(i) + 1))
            .collect();
        s.reserve_objects(owner, &objects, BIG, NOW).await.unwrap();
        owner
    };
    let files = |from: u32, to: u32| -> Vec<TreeOp> {
        (from..to)
            .map(|i| {
                let parent = if i % 2 == 0 { NodeId::ROOT } else { node_id(2) };
                let object = object_id(100 + i);
                let objects: &[ObjectId] = if i % 7 == 0 {
                    &[]
                } else if i % 5 == 0 {
                    &[object, object]
                } else {
                    std::slice::from_ref(&object)
                };
                create_with(
                    node_id(1000 + i),
                    NodeKind::File,
                    parent,
                    &format!("file {i}"),
                    objects,
                )
            })
            .collect()
    };
    let mut ops = files(0, 200);
    ops.push(create_op(
        node_id(900),
        NodeKind::Directory,
        node_id(2),
        "sub",
    ));
    ops.push(create_op(
        node_id(901),
        NodeKind::Symlink,
        NodeId::ROOT,
        "link",
    ));
    // Directories made by the run, and what goes in them.
    ops.push(create_op(
        node_id(902),
        NodeKind::File,
        node_id(900),
        "in sub",
    ));
    ops.push(create_op(
        node_id(903),
        NodeKind::Directory,
        node_id(900),
        "subsub",
    ));
    ops.push(create_op(
        node_id(904),
        NodeKind::File,
        node_id(903),
        "deep",
    ));
    let (owner, errors) = batch_as_single_calls(s, fixture, &ops, &[100, 101, 105, 199]).await;
    assert!(errors.iter().all(Option::is_none), "{errors:?}");
    assert_eq!(
        s.node(owner, node_id(1003)).await.unwrap().map(|n| n.size),
        Some(4)
    );
    assert_eq!(
        holder(s, owner, object_id(103)).await,
        Some(Some(node_id(1003)))
    );

    let refused: [(TreeOp, &str); 8] = [
        // A taken name, a taken id (the INSERTs refuse them).
        (
            create_op(node_id(950), NodeKind::File, NodeId::ROOT, "f"),
            "EntryExists",
        ),
        (
            create_op(node_id(1), NodeKind::File, NodeId::ROOT, "new"),
            "EntryExists",
        ),
        // An object that is not pending; a parent that is a file.
        (
            create_with(
                node_id(950),
                NodeKind::File,
                NodeId::ROOT,
                "o",
                &[object_id(1)],
            ),
            "NotFound",
        ),
        (
            create_op(node_id(950), NodeKind::File, node_id(1), "p"),
            "NotADirectory",
        ),
        // The name or the object of another create of the batch.
        (
            create_op(node_id(950), NodeKind::File, NodeId::ROOT, "file 200"),
            "EntryExists",
        ),
        (
            create_with(
                node_id(950),
                NodeKind::File,
                NodeId::ROOT,
                "q",
                &[object_id(301)],
            ),
            "NotFound",
        ),
        // A parent the run makes: a file, or a directory made later.
        (
            create_op(node_id(950), NodeKind::File, node_id(1200), "in a file"),
            "NotADirectory",
        ),
        (
            create_op(node_id(950), NodeKind::File, node_id(960), "too early"),
            "NotFound",
        ),
    ];
    for (n, (op, error)) in refused.into_iter().enumerate() {
        let mut ops = files(200, 210);
        ops.insert(5, op);
        ops.push(create_op(
            node_id(960),
            NodeKind::Directory,
            NodeId::ROOT,
            "made late",
        ));
        let emails = [
            ["r0a@example.org", "r0b@example.org"],
            ["r1a@example.org", "r1b@example.org"],
            ["r2a@example.org", "r2b@example.org"],
            ["r3a@example.org", "r3b@example.org"],
            ["r4a@example.org", "r4b@example.org"],
            ["r5a@example.org", "r5b@example.org"],
            ["r6a@example.org", "r6b@example.org"],
            ["r7a@example.org", "r7b@example.org"],
        ];
        let [first, second] = emails[n];
        let fixture = |email: &'static str| async move {
            let email = if email.starts_with("as-batch") {
                first
            } else {
                second
            };
            fixture(email).await
        };
        let (_, errors) = batch_as_single_calls(s, fixture, &ops, &[1, 300, 301]).await;
        let mut expected = vec![None; ops.len()];
        expected[5] = Some(error.to_owned());
        assert_eq!(errors, expected, "case {n}");
    }

    // Runs of creates between other operations: each run on its own (the
    // first and the last together), a run with a refusal one by one, and
    // the changes made between runs land between them in the feed.
    let mut ops = files(210, 214);
    ops.push(record_op(node_id(2), 1, b"dir record v2"));
    ops.extend(files(214, 218));
    ops.push(create_op(
        node_id(951),
        NodeKind::File,
        node_id(2),
        "file 215",
    ));
    ops.extend(files(218, 220));
    ops.push(commit_op(node_id(1), 2, &[object_id(2)]));
    ops.push(create_op(
        node_id(952),
        NodeKind::File,
        NodeId::ROOT,
        "after",
    ));
    ops.extend(files(220, 223));
    let fixture = |email: &'static str| async move {
        let email = if email.starts_with("as-batch") {
            "runs-a@example.org"
        } else {
            "runs-b@example.org"
        };
        fixture(email).await
    };
    let (_, errors) = batch_as_single_calls(s, fixture, &ops, &[2, 310, 315, 319, 322]).await;
    let mut expected = vec![None; ops.len()];
    expected[9] = Some("EntryExists".to_owned());
    assert_eq!(errors, expected);
}

async fn batch_checks_each_parent_and_undoes_half_creates(s: &dyn Store) {
    let (f, d) = (node_id(1), node_id(2));
    let (n, m, k) = (node_id(20), node_id(21), node_id(22));
    let ops = [
        // A missing parent, made by the next operation: found then (a
        // parent that is not a directory is not remembered as one).
        create_op(n, NodeKind::File, m, "n"),
        create_op(m, NodeKind::Directory, d, "m"),
        create_op(n, NodeKind::File, m, "n"),
        // The same parents again, a file as parent twice.
        create_op(k, NodeKind::File, m, "n"),
        create_op(k, NodeKind::File, f, "k"),
        create_op(k, NodeKind::File, f, "k"),
        // A taken name with a fresh id: the node inserted before its entry
        // was refused is gone, so the id is free for the next operation...
        create_with(k, NodeKind::File, d, "m", &[object_id(2)]),
        create_op(k, NodeKind::File, NodeId::ROOT, "m"),
        // ...and so are the objects of a refused create.
        create_with(node_id(23), NodeKind::File, m, "n", &[object_id(3)]),
        commit_op(k, 1, &[object_id(2), object_id(3)]),
    ];
    let fixture = |email: &'static str| batch_fixture(s, email);
    let (owner, errors) = batch_as_single_calls(s, fixture, &ops, &[1, 2, 3]).await;
    assert_eq!(
        errors,
        [
            Some("NotFound"),
            None,
            None,
            Some("EntryExists"),
            Some("NotADirectory"),
            Some("NotADirectory"),
            Some("EntryExists"),
            None,
            Some("EntryExists"),
            None,
        ]
        .iter()
        .map(|e| e.map(str::to_owned))
        .collect::<Vec<_>>()
    );
    assert_eq!(s.node(owner, node_id(23)).await.unwrap(), None);
    let node = s.node(owner, k).await.unwrap().unwrap();
    assert_eq!((node.version, node.size, node.nlink), (2, 50, 1));
    assert_eq!(
        children(s, owner, NodeId::ROOT, &["f", "d", "m"]).await,
        [
            ("d".to_owned(), d),
            ("f".to_owned(), f),
            ("m".to_owned(), k)
        ]
    );
}

async fn reserve_objects_all_or_none(s: &dyn Store) {
    let owner = vault(s, "reserve-many@example.org").await;
    const QUOTA: u64 = 100;
    let reserve = |objects: Vec<NewObject>| async move {
        s.reserve_objects(owner, &objects, QUOTA, NOW).await
    };
    let present = |id: u32| async move { s.object(owner, object_id(id)).await.unwrap().is_some() };

    reserve(vec![new_object(1, 10), new_object(2, 20)])
        .await
        .unwrap();
    assert_eq!(
        s.object(owner, object_id(2)).await.unwrap(),
        Some(ObjectRow {
            id: object_id(2),
            node: None,
            size: 20,
            checksum: Checksum::Crc32c(2),
            created_at: NOW,
        })
    );
    assert_eq!(used(s, owner).await, 30);
    assert_eq!(seq(s, owner).await, 1, "no feed records for objects");

    // A taken id, even one listed twice, refuses them all.
    assert_err!(
        reserve(vec![new_object(3, 5), new_object(1, 5)]).await,
        TreeError::EntryExists
    );
    assert_err!(
        reserve(vec![new_object(4, 5), new_object(4, 5)]).await,
        TreeError::EntryExists
    );
    // So does one that does not fit with those before it.
    assert_err!(
        reserve(vec![new_object(5, 50), new_object(6, 21)]).await,
        TreeError::QuotaExceeded
    );
    for id in [3, 4, 5, 6] {
        assert!(!present(id).await, "object {id} reserved");
    }
    assert_eq!(used(s, owner).await, 30);
    // Exactly full is fine.
    reserve(vec![new_object(5, 50), new_object(6, 20)])
        .await
        .unwrap();
    assert_eq!(used(s, owner).await, 100);
    reserve(vec![]).await.unwrap();
    assert_eq!(seq(s, owner).await, 1);
    assert_err!(
        s.reserve_objects(AccountId(owner.0 + 1000), &[new_object(9, 1)], QUOTA, NOW)
            .await,
        TreeError::NotFound
    );
}

async fn batch_races_single_changes(s: Arc<dyn Store>) {
    let owner = vault(&*s, "batch-race@example.org").await;
    open_connections(&s).await;
    const TASKS: usize = 8;
    const FILES: u32 = 10;
    // Half the tasks send batches, half one call per change; every task
    // also tries to create the same name: exactly one succeeds.
    let outcomes = concurrently(TASKS, |i| {
        let s = s.clone();
        async move {
            let i = u32::try_from(i).unwrap();
            let mut ops = Vec::new();
            for k in 0..FILES {
                let id = node_id(i * 100 + k);
                ops.push(create_op(
                    id,
                    NodeKind::File,
                    NodeId::ROOT,
                    &format!("f{i}-{k}"),
                ));
                ops.push(commit_op(id, 1, &[]));
            }
            ops.push(create_op(
                node_id(i * 100 + 99),
                NodeKind::File,
                NodeId::ROOT,
                "shared",
            ));
            let results = if i % 2 == 0 {
                s.batch(owner, &ops, NOW).await.unwrap()
            } else {
                one_by_one(&*s, owner, &ops).await
            };
            results.iter().map(outcome).collect::<Vec<_>>()
        }
    })
    .await;
    let mut shared = 0;
    for results in &outcomes {
        let (last, rest) = results.split_last().unwrap();
        for r in rest {
            assert!(r.is_ok(), "{r:?}");
        }
        match last {
            Ok(_) => shared += 1,
            Err(e) => assert_eq!(e, "EntryExists"),
        }
    }
    assert_eq!(shared, 1);
    let files = u64::try_from(TASKS).unwrap() * u64::from(FILES);
    let usage = s.usage(owner, BIG).await.unwrap();
    assert_eq!(usage.nodes, 1 + files + 1);
    let records = 1 + 2 * files + 1;
    assert_eq!(usage.seq, i64::try_from(records).unwrap());
    let feed = s.changes(owner, 0, 10_000).await.unwrap();
    let seqs: Vec<i64> = feed.iter().map(|c| c.seq).collect();
    assert_eq!(
        seqs,
        (1..=i64::try_from(records).unwrap()).collect::<Vec<_>>(),
        "strictly increasing, no gaps"
    );
}

// ---------------------------------------------------------------------------
// Query plans
// ---------------------------------------------------------------------------

/// A bind value for a plan check.
#[derive(Clone)]
enum Arg {
    Int(i64),
    Bytes(Vec<u8>),
    Text(&'static str),
}

/// Every statement of `tree_sql.rs` that reads rows (SELECT, UPDATE,
/// DELETE; INSERTs read none), with realistic arguments, and the key its
/// comment names (`None`: checked only for not scanning).
fn plan_cases(
    owner: AccountId,
    dir: NodeId,
    file: NodeId,
    t: &NameTag,
) -> Vec<(&'static str, &'static str, Vec<Arg>)> {
    use Arg::{Bytes, Int};
    let o = Int(owner.0);
    let d = Bytes(dir.as_bytes().to_vec());
    let f = Bytes(file.as_bytes().to_vec());
    let t = Bytes(t.as_bytes().to_vec());
    let obj = Bytes(object_id(1).as_bytes().to_vec());
    let nodes_in = format!("{}{}", q::NODES_IN, q::placeholders(3));
    let nodes_in: &'static str = Box::leak(nodes_in.into_boxed_str());
    let objects_in = format!("{}{}", q::OBJECTS_IN, q::placeholders(2));
    let objects_in: &'static str = Box::leak(objects_in.into_boxed_str());
    let listed_in = format!("{}{}", q::LISTED_OBJECTS_IN, q::placeholders(2));
    let listed_in: &'static str = Box::leak(listed_in.into_boxed_str());
    let commit_in = format!("{}{}", q::COMMIT_OBJECTS_IN, q::placeholders(2));
    let commit_in: &'static str = Box::leak(commit_in.into_boxed_str());
    let commit_to = format!(
        "{}{}{}{}",
        q::COMMIT_OBJECTS_TO,
        "WHEN ? THEN ? ".repeat(2),
        q::COMMIT_OBJECTS_TO_END,
        q::placeholders(2)
    );
    let commit_to: &'static str = Box::leak(commit_to.into_boxed_str());
    let release_in = format!("{}{}", q::RELEASE_OBJECTS_IN, q::placeholders(2));
    let release_in: &'static str = Box::leak(release_in.into_boxed_str());
    let obj2 = Bytes(object_id(2).as_bytes().to_vec());
    vec![
        ("BUMP_SEQ", q::BUMP_SEQ, vec![o.clone()]),
        ("USAGE", q::USAGE, vec![o.clone()]),
        (
            "SAVE_USAGE",
            q::SAVE_USAGE,
            vec![Int(1), Int(1), Int(1), o.clone()],
        ),
        ("CHANGES", q::CHANGES, vec![o.clone(), Int(5), Int(100)]),
        ("NODE", q::NODE, vec![o.clone(), f.clone()]),
        (
            "NODE_IN_SESSION",
            q::NODE_IN_SESSION,
            vec![f.clone(), Arg::Text(PLAN_SESSION)],
        ),
        (
            "LOOKUP_IN_SESSION",
            q::LOOKUP_IN_SESSION,
            vec![d.clone(), t.clone(), Arg::Text(PLAN_SESSION)],
        ),
        ("NODE_HEAD", q::NODE_HEAD, vec![o.clone(), f.clone()]),
        (
            "NODE_HEAD_OBJECTS",
            q::NODE_HEAD_OBJECTS,
            vec![o.clone(), f.clone(), o.clone(), f.clone()],
        ),
        (
            "NODES_IN",
            nodes_in,
            vec![o.clone(), f.clone(), d.clone(), f.clone()],
        ),
        (
            "UPDATE_RECORD",
            q::UPDATE_RECORD,
            vec![Bytes(vec![1]), Int(1), o.clone(), f.clone(), Int(1)],
        ),
        (
            "COMMIT_RECORD",
            q::COMMIT_RECORD,
            vec![Bytes(vec![1]), Int(1), Int(1), o.clone(), f.clone(), Int(1)],
        ),
        (
            "SET_NLINK",
            q::SET_NLINK,
            vec![Int(1), Int(1), o.clone(), f.clone()],
        ),
        (
            "TOUCH_NODE",
            q::TOUCH_NODE,
            vec![Int(1), o.clone(), f.clone()],
        ),
        (
            "DELETE_NODE",
            q::DELETE_NODE,
            vec![o.clone(), Bytes(vec![0xee; 16])],
        ),
        ("ENTRY", q::ENTRY, vec![o.clone(), d.clone(), t.clone()]),
        ("LOOKUP", q::LOOKUP, vec![o.clone(), d.clone(), t.clone()]),
        (
            "LIST_FIRST",
            q::LIST_FIRST,
            vec![o.clone(), d.clone(), Int(100)],
        ),
        (
            "LIST_AFTER",
            q::LIST_AFTER,
            vec![o.clone(), d.clone(), t.clone(), Int(100)],
        ),
        ("HAS_ENTRIES", q::HAS_ENTRIES, vec![o.clone(), d.clone()]),
        ("PARENT_OF", q::PARENT_OF, vec![o.clone(), d.clone()]),
        (
            "MOVE_ENTRY",
            q::MOVE_ENTRY,
            vec![
                d.clone(),
                t.clone(),
                Bytes(vec![1]),
                o.clone(),
                d.clone(),
                t.clone(),
            ],
        ),
        (
            "SET_ENTRY_CHILD",
            q::SET_ENTRY_CHILD,
            vec![f.clone(), Bytes(vec![1]), o.clone(), d.clone(), t.clone()],
        ),
        (
            "DELETE_ENTRY",
            q::DELETE_ENTRY,
            vec![o.clone(), d.clone(), Bytes(vec![0xee; 32])],
        ),
        ("OBJECT", q::OBJECT, vec![o.clone(), obj.clone()]),
        (
            "OBJECTS_IN",
            objects_in,
            vec![
                o.clone(),
                obj.clone(),
                Bytes(object_id(2).as_bytes().to_vec()),
            ],
        ),
        (
            "LISTED_OBJECTS_IN",
            listed_in,
            vec![o.clone(), obj.clone(), obj2.clone()],
        ),
        (
            "COMMIT_OBJECTS_IN",
            commit_in,
            vec![f.clone(), o.clone(), obj.clone(), obj2.clone()],
        ),
        (
            "COMMIT_OBJECTS_TO",
            commit_to,
            vec![
                obj.clone(),
                f.clone(),
                obj2.clone(),
                f.clone(),
                o.clone(),
                obj.clone(),
                obj2.clone(),
            ],
        ),
        (
            "RELEASE_OBJECTS_IN",
            release_in,
            vec![o.clone(), obj.clone(), obj2],
        ),
        ("NODE_OBJECTS", q::NODE_OBJECTS, vec![o.clone(), f.clone()]),
        (
            "RELEASE_OBJECT",
            q::RELEASE_OBJECT,
            vec![o.clone(), obj.clone()],
        ),
        (
            "RELEASE_NODE_OBJECTS",
            q::RELEASE_NODE_OBJECTS,
            vec![o.clone(), f.clone()],
        ),
        ("STALE_PENDING", q::STALE_PENDING, vec![Int(NOW), Int(100)]),
        (
            "STALE_PENDING_SIZE",
            q::STALE_PENDING_SIZE,
            vec![
                o.clone(),
                Bytes(object_id(10).as_bytes().to_vec()),
                Int(NOW),
            ],
        ),
        ("PURGE_QUEUE", q::PURGE_QUEUE, vec![Int(100)]),
        ("FORGET_OBJECT", q::FORGET_OBJECT, vec![o, obj]),
    ]
}

/// Fills a store for the plan checks: a 100k-entry directory, objects in
/// every state, a feed.
async fn plan_fixture(s: &dyn Store) -> (AccountId, NodeId, NodeId, NameTag) {
    let owner = vault(s, "plans@example.org").await;
    let other = vault(s, "plans-other@example.org").await;
    let dir = node_id(1);
    let tags = big_directory(s, owner, dir, 100_000).await;
    mkdir(s, other, dir, NodeId::ROOT, "big").await;
    let file = node_id(2);
    file_with(
        s,
        owner,
        file,
        dir,
        "a file",
        &[(object_id(1), 10), (object_id(2), 10)],
    )
    .await;
    for i in 10..300 {
        s.reserve_object(
            owner,
            object_id(i),
            1,
            Checksum::Sha256([0; 32]),
            BIG,
            NOW - i64::from(i),
        )
        .await
        .unwrap();
    }
    s.release_stale_pending(NOW - 200, 1000).await.unwrap();
    for (i, account) in [owner, other].into_iter().enumerate() {
        for k in 0..20 {
            let id = if (i, k) == (0, 0) {
                PLAN_SESSION.to_owned()
            } else {
                format!("plan-session-{i}-{k}")
            };
            s.create_session(&session_of(&id, account)).await.unwrap();
        }
    }
    (owner, dir, file, tags[tags.len() / 2].0)
}

/// The session of the query plan fixture's owner.
const PLAN_SESSION: &str = "plan-session";

/// SQLite: `EXPLAIN QUERY PLAN` of every statement, before and after
/// `ANALYZE` has given the planner statistics.
#[tokio::test(flavor = "multi_thread")]
async fn sqlite_query_plans_use_keys() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("plans.sqlite").display());
    let store = SqliteStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let (owner, big, file, t) = plan_fixture(&store).await;
    let cases = plan_cases(owner, big, file, &t);
    for analyzed in [false, true] {
        if analyzed {
            sqlx::query("ANALYZE").execute(store.pool()).await.unwrap();
        }
        for (name, sql, args) in &cases {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")));
            for arg in args {
                query = match arg {
                    Arg::Int(v) => query.bind(*v),
                    Arg::Bytes(v) => query.bind(v.clone()),
                    Arg::Text(v) => query.bind(*v),
                };
            }
            let rows = query.fetch_all(store.pool()).await.unwrap();
            let plan: Vec<String> = rows
                .iter()
                .map(|r| sqlx::Row::get::<String, _>(r, "detail"))
                .collect();
            let context = format!("{name} (analyzed: {analyzed}): {plan:?}");
            assert!(!plan.is_empty(), "{context}");
            for step in &plan {
                assert!(
                    step.starts_with("SEARCH "),
                    "not an index search: {context}"
                );
                assert!(!step.contains("TEMP B-TREE"), "sorts: {context}");
            }
            let expect = |needle: &str| {
                assert!(
                    plan.iter().any(|p| p.contains(needle)),
                    "expected `{needle}`: {context}"
                );
            };
            match *name {
                "LIST_FIRST" => {
                    expect("SEARCH e USING PRIMARY KEY (owner_id=? AND parent_id=?)");
                    expect(
                        "SEARCH n USING INDEX sqlite_autoindex_nodes_1 (owner_id=? AND node_id=?)",
                    );
                }
                "LIST_AFTER" => {
                    expect(
                        "SEARCH e USING PRIMARY KEY (owner_id=? AND parent_id=? AND name_tag>?)",
                    );
                    expect(
                        "SEARCH n USING INDEX sqlite_autoindex_nodes_1 (owner_id=? AND node_id=?)",
                    );
                }
                "LOOKUP" => {
                    expect(
                        "SEARCH e USING PRIMARY KEY (owner_id=? AND parent_id=? AND name_tag=?)",
                    );
                    expect(
                        "SEARCH n USING INDEX sqlite_autoindex_nodes_1 (owner_id=? AND node_id=?)",
                    );
                }
                "ENTRY" | "MOVE_ENTRY" | "SET_ENTRY_CHILD" | "DELETE_ENTRY" => {
                    expect("USING PRIMARY KEY (owner_id=? AND parent_id=? AND name_tag=?)");
                }
                "HAS_ENTRIES" => expect("USING PRIMARY KEY (owner_id=? AND parent_id=?)"),
                "PARENT_OF" => {
                    expect("USING COVERING INDEX entries_child (owner_id=? AND child_id=?)")
                }
                "NODE" | "NODE_HEAD" | "NODES_IN" | "UPDATE_RECORD" | "COMMIT_RECORD"
                | "SET_NLINK" | "TOUCH_NODE" | "DELETE_NODE" => {
                    expect("USING INDEX sqlite_autoindex_nodes_1 (owner_id=? AND node_id=?)");
                }
                "NODE_OBJECTS" | "RELEASE_NODE_OBJECTS" => {
                    expect("USING INDEX objects_node (owner_id=? AND node_id=?)");
                }
                "NODE_HEAD_OBJECTS" => {
                    expect(
                        "SEARCH n USING INDEX sqlite_autoindex_nodes_1 (owner_id=? AND node_id=?)",
                    );
                    expect("SEARCH o USING INDEX objects_node (owner_id=? AND node_id=?)");
                }
                "STALE_PENDING" => expect("objects_state (state=? AND created_at<?)"),
                "PURGE_QUEUE" => expect("objects_state (state=?)"),
                "OBJECTS_IN" => expect(
                    "USING COVERING INDEX sqlite_autoindex_objects_1 (owner_id=? AND object_id=?)",
                ),
                "OBJECT" | "LISTED_OBJECTS_IN" | "COMMIT_OBJECTS_IN" | "COMMIT_OBJECTS_TO"
                | "RELEASE_OBJECT" | "RELEASE_OBJECTS_IN" | "STALE_PENDING_SIZE"
                | "FORGET_OBJECT" => {
                    expect("USING INDEX sqlite_autoindex_objects_1 (owner_id=? AND object_id=?)");
                }
                "LOOKUP_IN_SESSION" => {
                    expect("SEARCH s USING INDEX sqlite_autoindex_sessions_1 (id=?)");
                    expect(
                        "SEARCH e USING PRIMARY KEY (owner_id=? AND parent_id=? AND name_tag=?)",
                    );
                    expect(
                        "SEARCH n USING INDEX sqlite_autoindex_nodes_1 (owner_id=? AND node_id=?)",
                    );
                }
                "NODE_IN_SESSION" => {
                    expect("SEARCH s USING INDEX sqlite_autoindex_sessions_1 (id=?)");
                    expect(
                        "SEARCH n USING INDEX sqlite_autoindex_nodes_1 (owner_id=? AND node_id=?)",
                    );
                }
                "CHANGES" => expect("USING PRIMARY KEY (owner_id=? AND seq>?)"),
                "BUMP_SEQ" | "USAGE" | "SAVE_USAGE" => {
                    expect("USING INTEGER PRIMARY KEY (rowid=?)")
                }
                other => panic!("no expectation for {other}"),
            }
        }
    }
    store.close().await;
}

/// One row of MariaDB's `EXPLAIN`: table, access type, key, extra.
type PlanRow = (String, Option<String>, Option<String>, Option<String>);

/// MariaDB: `EXPLAIN` of every statement on the same data: no full table
/// or index scan, no filesort, and the intended key.
#[tokio::test(flavor = "multi_thread")]
async fn mysql_query_plans_use_keys() {
    let Some(admin) = std::env::var("VAULT_TEST_MYSQL_ADMIN_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        assert_ne!(
            std::env::var("VAULT_TEST_REQUIRE_SERVICES").as_deref(),
            Ok("1"),
            "VAULT_TEST_MYSQL_ADMIN_URL is not set but VAULT_TEST_REQUIRE_SERVICES=1"
        );
        eprintln!(
            "store::tree_tests::mysql_query_plans_use_keys: skipped (no VAULT_TEST_MYSQL_ADMIN_URL)"
        );
        return;
    };
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).unwrap();
    let db = format!("vault_t_{}", hex::encode(suffix));
    admin_exec(
        &admin,
        format!("CREATE DATABASE {db} CHARACTER SET utf8mb4"),
    )
    .await;
    let body = {
        let url = with_database(&admin, &db);
        async move {
            let store = MySqlStore::connect(&url).await.unwrap();
            store.migrate().await.unwrap();
            let (owner, big, file, t) = plan_fixture(&store).await;
            sqlx::query("ANALYZE TABLE nodes, entries, objects, changes, account_usage")
                .execute(store.pool())
                .await
                .unwrap();
            for (name, sql, args) in plan_cases(owner, big, file, &t) {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN {sql}")));
                for arg in &args {
                    query = match arg {
                        Arg::Int(v) => query.bind(*v),
                        Arg::Bytes(v) => query.bind(v.clone()),
                        Arg::Text(v) => query.bind(*v),
                    };
                }
                let rows = query.fetch_all(store.pool()).await.unwrap();
                let plan: Vec<PlanRow> = rows
                    .iter()
                    .map(|r| {
                        use sqlx::Row as _;
                        (
                            r.try_get::<Option<String>, _>("table")
                                .unwrap()
                                .unwrap_or_default(),
                            r.try_get::<Option<String>, _>("type").unwrap(),
                            r.try_get::<Option<String>, _>("key").unwrap(),
                            r.try_get::<Option<String>, _>("Extra").unwrap(),
                        )
                    })
                    .collect();
                let context = format!("{name}: {plan:?}");
                assert!(!plan.is_empty(), "{context}");
                for (_, kind, key, extra) in &plan {
                    let kind = kind.as_deref().unwrap_or("");
                    assert!(
                        ["const", "eq_ref", "ref", "range", "system"].contains(&kind),
                        "access type `{kind}`: {context}"
                    );
                    assert!(key.is_some(), "no key: {context}");
                    assert!(
                        !extra.as_deref().unwrap_or("").contains("filesort"),
                        "sorts: {context}"
                    );
                }
                let key_of = |table: &str| {
                    plan.iter()
                        .find(|(t, ..)| t == table)
                        .and_then(|(_, _, k, _)| k.clone())
                        .unwrap_or_default()
                };
                let table = plan[0].0.clone();
                let expected = match name {
                    "PARENT_OF" => "entries_child",
                    "NODE_OBJECTS" | "RELEASE_NODE_OBJECTS" => "objects_node",
                    "STALE_PENDING" | "PURGE_QUEUE" => "objects_state",
                    _ => "PRIMARY",
                };
                assert_eq!(key_of(&table), expected, "{context}");
                if ["LOOKUP", "LIST_FIRST", "LIST_AFTER", "LOOKUP_IN_SESSION"].contains(&name) {
                    assert_eq!(
                        (key_of("e"), key_of("n")),
                        ("PRIMARY".into(), "PRIMARY".into()),
                        "{context}"
                    );
                }
                if name == "NODE_HEAD_OBJECTS" {
                    assert_eq!(
                        (key_of("n"), key_of("o")),
                        ("PRIMARY".into(), "objects_node".into()),
                        "{context}"
                    );
                }
            }
            store.close().await;
        }
    };
    let outcome = tokio::spawn(body).await;
    admin_exec(&admin, format!("DROP DATABASE IF EXISTS {db}")).await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
