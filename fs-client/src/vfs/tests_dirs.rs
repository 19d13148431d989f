//! Directories made here before the server has seen them (`dirs`): what
//! another device sees in the end, after whatever came between.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;

use super::tests::{ME, names_in, os, pattern, read_file, start, write_file};
use super::*;
use crate::api::fake_tree::FakeVault;

/// Reads `path` (names separated by '/') from the root of `v`.
async fn walk(v: &Vfs<FakeVault>, path: &str) -> FsResult<Attr> {
    let mut at = v.getattr(ROOT_INO).await?;
    for part in path.split('/') {
        at = v.lookup(at.ino, os(part)).await?;
    }
    Ok(at)
}

#[tokio::test]
async fn a_tree_made_here_returns_at_once_and_reaches_another_device() {
    let fake = Arc::new(FakeVault::new());
    let d1 = tempfile::tempdir().unwrap();
    let v = start(&fake, d1.path()).await;
    // A listed directory is complete: a mkdir in it is local.
    names_in(&v, ROOT_INO).await;
    let nodes = fake.node_count();
    let a = v.mkdir(ROOT_INO, os("a"), 0o750, 0o022, ME).await.unwrap();
    let b = v.mkdir(a.ino, os("b"), 0o755, 0o022, ME).await.unwrap();
    let c = v.mkdir(b.ino, os("c"), 0o700, 0o022, ME).await.unwrap();
    write_file(&v, c.ino, "deep", &pattern(5000, 1)).await;
    write_file(&v, a.ino, "top", b"top").await;
    v.mkdir(ROOT_INO, os("empty"), 0o755, 0o022, ME)
        .await
        .unwrap();
    // Opening a directory lists it only when it is read (rsync opens
    // each directory it makes to set its mode).
    let fh = v.opendir(a.ino).await.unwrap();
    v.releasedir(a.ino, fh);
    assert_eq!(fake.node_count(), nodes, "nothing sent yet");
    // Here they are there already, with the attributes asked for.
    assert_eq!(walk(&v, "a/b/c").await.unwrap().perm, 0o700);
    assert_eq!(v.getattr(a.ino).await.unwrap().kind, FileKind::Directory);
    assert!(v.pending().files >= 4);
    v.sync_all().await.unwrap();
    assert_eq!(v.pending().files, 0);
    fake.check_invariants().unwrap();

    let d2 = tempfile::tempdir().unwrap();
    let w = start(&fake, d2.path()).await;
    assert_eq!(names_in(&w, ROOT_INO).await, ["a", "empty"]);
    let a2 = walk(&w, "a").await.unwrap();
    assert_eq!(a2.perm, 0o750);
    assert_eq!(names_in(&w, a2.ino).await, ["b", "top"]);
    let c2 = walk(&w, "a/b/c").await.unwrap();
    assert_eq!(c2.perm, 0o700);
    let deep = w.lookup(c2.ino, os("deep")).await.unwrap();
    assert_eq!(read_file(&w, deep.ino).await.unwrap(), pattern(5000, 1));
}

#[tokio::test]
async fn any_request_sends_the_new_directories_first() {
    let fake = Arc::new(FakeVault::new());
    let d1 = tempfile::tempdir().unwrap();
    let v = start(&fake, d1.path()).await;
    names_in(&v, ROOT_INO).await;
    let d = v.mkdir(ROOT_INO, os("d"), 0o755, 0o022, ME).await.unwrap();
    v.mkdir(d.ino, os("inner"), 0o755, 0o022, ME).await.unwrap();
    // A rename is a request to the server, which must know both already.
    v.rename(ROOT_INO, os("d"), ROOT_INO, os("e"), RenameHow::Replace)
        .await
        .unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let w = start(&fake, d2.path()).await;
    assert_eq!(names_in(&w, ROOT_INO).await, ["e"]);
    let e = walk(&w, "e").await.unwrap();
    assert_eq!(names_in(&w, e.ino).await, ["inner"]);
    // And a new directory removed before it was sent is gone everywhere.
    v.mkdir(d.ino, os("gone"), 0o755, 0o022, ME).await.unwrap();
    v.rmdir(d.ino, os("gone")).await.unwrap();
    v.sync_all().await.unwrap();
    assert_eq!(names_in(&w, e.ino).await, ["inner"]);
    fake.check_invariants().unwrap();
}

#[tokio::test]
async fn a_new_directory_and_its_files_survive_a_crash() {
    let fake = Arc::new(FakeVault::new());
    let d1 = tempfile::tempdir().unwrap();
    {
        let v = start(&fake, d1.path()).await;
        names_in(&v, ROOT_INO).await;
        let p = v.mkdir(ROOT_INO, os("p"), 0o755, 0o022, ME).await.unwrap();
        let q = v.mkdir(p.ino, os("q"), 0o711, 0o022, ME).await.unwrap();
        write_file(&v, q.ino, "f", b"made offline-first").await;
        // A crash: nothing sent, the journal stays.
        v.shutdown().await;
    }
    let v = start(&fake, d1.path()).await;
    v.sync_all().await.unwrap();
    v.shutdown().await;
    drop(v);
    fake.check_invariants().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let w = start(&fake, d2.path()).await;
    let q = walk(&w, "p/q").await.unwrap();
    assert_eq!(q.perm, 0o711);
    let f = w.lookup(q.ino, os("f")).await.unwrap();
    assert_eq!(read_file(&w, f.ino).await.unwrap(), b"made offline-first");
    // Sent once: a second run has nothing to send.
    let v = start(&fake, d1.path()).await;
    assert_eq!(v.pending().files, 0);
}

#[tokio::test]
async fn a_name_taken_elsewhere_meanwhile_leaves_both_directories() {
    let fake = Arc::new(FakeVault::new());
    let d1 = tempfile::tempdir().unwrap();
    let v = start(&fake, d1.path()).await;
    names_in(&v, ROOT_INO).await;
    let mine = v.mkdir(ROOT_INO, os("d"), 0o755, 0o022, ME).await.unwrap();
    write_file(&v, mine.ino, "x", b"mine").await;

    let d2 = tempfile::tempdir().unwrap();
    let w = start(&fake, d2.path()).await;
    let theirs = w.mkdir(ROOT_INO, os("d"), 0o755, 0o022, ME).await.unwrap();
    write_file(&w, theirs.ino, "x", b"theirs").await;
    w.sync_all().await.unwrap();

    v.sync_all().await.unwrap();
    fake.check_invariants().unwrap();
    let names = names_in(&w, ROOT_INO).await;
    assert_eq!(names.len(), 2, "{names:?}");
    let x = walk(&w, "d/x").await.unwrap();
    assert_eq!(read_file(&w, x.ino).await.unwrap(), b"theirs");
    let copy = names
        .iter()
        .find(|n| n.starts_with("d (conflicted copy"))
        .unwrap();
    let c = walk(&w, &format!("{copy}/x")).await.unwrap();
    assert_eq!(read_file(&w, c.ino).await.unwrap(), b"mine");
    // This mount sees its directory under the new name too.
    assert_eq!(names_in(&v, ROOT_INO).await, names);
}

#[tokio::test]
async fn a_new_directory_whose_parent_was_removed_elsewhere_lands_in_the_root() {
    let fake = Arc::new(FakeVault::new());
    let d1 = tempfile::tempdir().unwrap();
    let v = start(&fake, d1.path()).await;
    let p = v.mkdir(ROOT_INO, os("p"), 0o755, 0o022, ME).await.unwrap();
    v.sync_all().await.unwrap();
    names_in(&v, p.ino).await;
    let q = v.mkdir(p.ino, os("q"), 0o755, 0o022, ME).await.unwrap();
    write_file(&v, q.ino, "kept", b"kept").await;

    let d2 = tempfile::tempdir().unwrap();
    let w = start(&fake, d2.path()).await;
    w.rmdir(ROOT_INO, os("p")).await.unwrap();

    v.sync_all().await.unwrap();
    fake.check_invariants().unwrap();
    assert_eq!(names_in(&w, ROOT_INO).await, ["q"]);
    let k = walk(&w, "q/kept").await.unwrap();
    assert_eq!(read_file(&w, k.ino).await.unwrap(), b"kept");
}

#[tokio::test]
async fn a_mode_set_on_a_new_directory_reaches_the_server() {
    let fake = Arc::new(FakeVault::new());
    let d1 = tempfile::tempdir().unwrap();
    let v = start(&fake, d1.path()).await;
    names_in(&v, ROOT_INO).await;
    let d = v.mkdir(ROOT_INO, os("d"), 0o755, 0o022, ME).await.unwrap();
    v.setattr(
        d.ino,
        None,
        SetAttr {
            mode: Some(0o700),
            ..SetAttr::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(v.getattr(d.ino).await.unwrap().perm, 0o700);
    v.sync_all().await.unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let w = start(&fake, d2.path()).await;
    assert_eq!(walk(&w, "d").await.unwrap().perm, 0o700);
    // An existing name is refused here as the server would.
    assert!(matches!(
        v.mkdir(ROOT_INO, os("d"), 0o755, 0o022, ME).await,
        Err(FsError::Exists)
    ));
}
