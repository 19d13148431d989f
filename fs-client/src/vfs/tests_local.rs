//! Files made here before the server has seen them (`local`, `batch`,
//! `names`): what another device sees in the end, whatever the order in
//! which the uploader and these calls ran.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;

use super::tests::{
    ME, RW, journal_files, names_in, os, pattern, read_file, replay_then_read_elsewhere, start,
    write_file,
};
use super::*;
use crate::api::fake_tree::FakeVault;

#[tokio::test]
async fn new_files_renames_and_unlinks_reach_another_device_as_made() {
    let fake = Arc::new(FakeVault::new());
    let d1 = tempfile::tempdir().unwrap();
    let v = start(&fake, d1.path()).await;
    let dir = v.mkdir(ROOT_INO, os("d"), 0o755, 0o022, ME).await.unwrap();
    for i in 0..40u8 {
        write_file(
            &v,
            dir.ino,
            &format!("f{i}"),
            &pattern(3000 + usize::from(i) * 100, i),
        )
        .await;
    }
    write_file(&v, dir.ino, "empty", b"").await;
    // rsync's way: a temporary name, then a rename; and a scratch file.
    write_file(&v, dir.ino, ".tmp", b"final contents").await;
    v.rename(
        dir.ino,
        os(".tmp"),
        dir.ino,
        os("renamed"),
        RenameHow::Replace,
    )
    .await
    .unwrap();
    write_file(&v, dir.ino, "scratch", b"gone soon").await;
    v.unlink(dir.ino, os("scratch")).await.unwrap();
    // A second name never taken is still free, here and on the server.
    assert!(matches!(
        v.lookup(dir.ino, os("nothing")).await,
        Err(FsError::NotFound)
    ));
    v.sync_all().await.unwrap();
    assert_eq!(v.pending(), Pending::default());
    fake.check_invariants().unwrap();

    let d2 = tempfile::tempdir().unwrap();
    let w = start(&fake, d2.path()).await;
    let d = w.lookup(ROOT_INO, os("d")).await.unwrap();
    let names = names_in(&w, d.ino).await;
    assert_eq!(names.len(), 42, "{names:?}");
    assert!(names.contains(&"renamed".to_owned()));
    assert!(!names.iter().any(|n| n == ".tmp" || n == "scratch"));
    for i in 0..40u8 {
        let a = w.lookup(d.ino, os(&format!("f{i}"))).await.unwrap();
        assert_eq!(
            read_file(&w, a.ino).await.unwrap(),
            pattern(3000 + usize::from(i) * 100, i)
        );
    }
    let r = w.lookup(d.ino, os("renamed")).await.unwrap();
    assert_eq!(read_file(&w, r.ino).await.unwrap(), b"final contents");
    let e = w.lookup(d.ino, os("empty")).await.unwrap();
    assert_eq!(e.size, 0);
}

#[tokio::test]
async fn a_new_file_lists_and_keeps_its_directory_from_being_removed() {
    let fake = Arc::new(FakeVault::new());
    let d1 = tempfile::tempdir().unwrap();
    let v = start(&fake, d1.path()).await;
    let dir = v.mkdir(ROOT_INO, os("d"), 0o755, 0o022, ME).await.unwrap();
    let (attr, fh) = v
        .create(dir.ino, os("open"), 0o644, 0o022, RW, ME)
        .await
        .unwrap();
    v.write(attr.ino, fh, 0, b"still writing").await.unwrap();
    assert!(matches!(
        v.rmdir(ROOT_INO, os("d")).await,
        Err(FsError::NotEmpty)
    ));
    assert_eq!(names_in(&v, dir.ino).await, vec!["open".to_owned()]);
    v.flush(attr.ino, fh).await.unwrap();
    v.release(attr.ino, fh).await.unwrap();
    v.sync_all().await.unwrap();
    let a = v.lookup(dir.ino, os("open")).await.unwrap();
    assert_eq!(read_file(&v, a.ino).await.unwrap(), b"still writing");
}

#[tokio::test]
async fn a_name_taken_elsewhere_meanwhile_leaves_both_files() {
    let fake = Arc::new(FakeVault::new());
    let d1 = tempfile::tempdir().unwrap();
    let v = start(&fake, d1.path()).await;
    let dir = v.mkdir(ROOT_INO, os("d"), 0o755, 0o022, ME).await.unwrap();
    let (attr, fh) = v
        .create(dir.ino, os("x"), 0o644, 0o022, RW, ME)
        .await
        .unwrap();
    v.write(attr.ino, fh, 0, b"mine").await.unwrap();

    let d2 = tempfile::tempdir().unwrap();
    let w = start(&fake, d2.path()).await;
    let wd = w.lookup(ROOT_INO, os("d")).await.unwrap();
    write_file(&w, wd.ino, "x", b"theirs").await;
    w.sync_all().await.unwrap();

    v.flush(attr.ino, fh).await.unwrap();
    v.release(attr.ino, fh).await.unwrap();
    v.sync_all().await.unwrap();

    let names = names_in(&w, wd.ino).await;
    assert_eq!(names.len(), 2, "{names:?}");
    let x = w.lookup(wd.ino, os("x")).await.unwrap();
    assert_eq!(read_file(&w, x.ino).await.unwrap(), b"theirs");
    let copy = names
        .iter()
        .find(|n| n.starts_with("x (conflicted copy"))
        .unwrap();
    let c = w.lookup(wd.ino, os(copy)).await.unwrap();
    assert_eq!(read_file(&w, c.ino).await.unwrap(), b"mine");
}

#[tokio::test]
async fn a_new_file_whose_directory_was_removed_elsewhere_lands_in_the_root() {
    let fake = Arc::new(FakeVault::new());
    let d1 = tempfile::tempdir().unwrap();
    let v = start(&fake, d1.path()).await;
    let dir = v.mkdir(ROOT_INO, os("d"), 0o755, 0o022, ME).await.unwrap();
    let (attr, fh) = v
        .create(dir.ino, os("orphan"), 0o644, 0o022, RW, ME)
        .await
        .unwrap();
    v.write(attr.ino, fh, 0, b"kept").await.unwrap();

    let d2 = tempfile::tempdir().unwrap();
    let w = start(&fake, d2.path()).await;
    w.lookup(ROOT_INO, os("d")).await.unwrap();
    w.rmdir(ROOT_INO, os("d")).await.unwrap();

    v.flush(attr.ino, fh).await.unwrap();
    v.release(attr.ino, fh).await.unwrap();
    v.sync_all().await.unwrap();
    let o = w.lookup(ROOT_INO, os("orphan")).await.unwrap();
    assert_eq!(read_file(&w, o.ino).await.unwrap(), b"kept");
}

#[tokio::test]
async fn a_new_file_survives_a_crash_before_the_server_saw_it() {
    let fake = Arc::new(FakeVault::new());
    let d1 = tempfile::tempdir().unwrap();
    {
        let v = start(&fake, d1.path()).await;
        // A listed directory is complete: creating in it is local.
        names_in(&v, ROOT_INO).await;
        write_file(&v, ROOT_INO, "n", b"made offline-first").await;
        v.shutdown().await;
    }
    assert_eq!(
        replay_then_read_elsewhere(&fake, d1.path(), "n").await,
        b"made offline-first"
    );
    fake.check_invariants().unwrap();
}

#[tokio::test]
async fn a_file_rests_after_its_last_close_or_change_before_it_is_committed() {
    let fake = Arc::new(FakeVault::new());
    let d1 = tempfile::tempdir().unwrap();
    let v = start(&fake, d1.path()).await;
    let dir = v.mkdir(ROOT_INO, os("d"), 0o755, 0o022, ME).await.unwrap();
    let nodes = fake.node_count();
    let ino = write_file(&v, dir.ino, "busy", b"contents").await;
    // A program still busy with it (times, mode): no commit in between,
    // so none of these calls waits for one.
    for i in 0..12u32 {
        let set = SetAttr {
            mode: Some(0o600 + (i % 2) * 0o40),
            ..SetAttr::default()
        };
        v.setattr(ino, None, set).await.unwrap();
        assert_eq!(
            fake.node_count(),
            nodes,
            "committed while still in use ({i})"
        );
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    // Left alone, it lands by itself, as last set.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while fake.node_count() == nodes {
        assert!(std::time::Instant::now() < deadline, "never committed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    v.shutdown().await;
    let d2 = tempfile::tempdir().unwrap();
    let w = start(&fake, d2.path()).await;
    let d = w.lookup(ROOT_INO, os("d")).await.unwrap();
    let a = w.lookup(d.ino, os("busy")).await.unwrap();
    assert_eq!(a.perm, 0o640);
    assert_eq!(read_file(&w, a.ino).await.unwrap(), b"contents");
}

/// Starts the uploader's commit of `files` as one batch, which the fake
/// server holds at its gate (until `release_batches`); returns once the
/// batch waits there.
async fn batch_held_at_the_server(
    fake: &FakeVault,
    v: &Vfs<FakeVault>,
    files: &[Ino],
) -> tokio::task::JoinHandle<FsResult<()>> {
    let files = files.iter().map(|&i| v.core.file(i).unwrap()).collect();
    fake.hold_batches();
    let core = v.core.clone();
    let batch =
        tokio::spawn(async move { batch::commit_files(&core, Budget::Uploader, files).await });
    fake.batch_held().await;
    batch
}

/// The uploader's batch takes along a file that another call has just
/// committed (clean by the time its lock is taken); a write to that file
/// while the batch is in flight must stay pending. It was lost: the batch
/// took the file out of the dirty set after the write had marked it, and
/// the file's state, with the write, was dropped from memory (a real
/// mount read the old contents back).
#[tokio::test]
async fn a_write_while_a_batch_is_in_flight_stays_pending() {
    let fake = Arc::new(FakeVault::new());
    let d = tempfile::tempdir().unwrap();
    let v = start(&fake, d.path()).await;
    let a = write_file(&v, ROOT_INO, "a", b"A").await;
    v.sync_all().await.unwrap();
    let b = write_file(&v, ROOT_INO, "b", b"B").await;
    let fh = v.open(a, RW).await.unwrap();
    let batch = batch_held_at_the_server(&fake, &v, &[a, b]).await;
    assert_eq!(v.write(a, fh, 1, b"+").await.unwrap(), 1);
    v.flush(a, fh).await.unwrap();
    v.release(a, fh).await.unwrap();
    fake.release_batches();
    batch.await.unwrap().unwrap();
    assert!(
        lock(&v.core.dirty).contains_key(&a),
        "the write waits for upload"
    );
    assert_eq!(read_file(&v, a).await.unwrap(), b"A+");
    v.sync_all().await.unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let w = start(&fake, d2.path()).await;
    let a2 = w.lookup(ROOT_INO, os("a")).await.unwrap();
    assert_eq!(read_file(&w, a2.ino).await.unwrap(), b"A+");
    let b2 = w.lookup(ROOT_INO, os("b")).await.unwrap();
    assert_eq!(read_file(&w, b2.ino).await.unwrap(), b"B");
}

/// Listing a directory commits the files made here in it first, and only
/// those: a batch in flight for files elsewhere (their locks held until
/// the server answers) does not hold the listing up.
#[tokio::test]
async fn a_listing_does_not_wait_for_a_batch_of_another_directory() {
    let fake = Arc::new(FakeVault::new());
    let d = tempfile::tempdir().unwrap();
    let v = start(&fake, d.path()).await;
    let a = v.mkdir(ROOT_INO, os("a"), 0o755, 0o022, ME).await.unwrap();
    let b = v.mkdir(ROOT_INO, os("b"), 0o755, 0o022, ME).await.unwrap();
    write_file(&v, b.ino, "y", b"Y").await;
    v.sync_all().await.unwrap();
    let in_a = write_file(&v, a.ino, "x", b"X").await;
    let held = batch_held_at_the_server(&fake, &v, &[in_a]).await;
    let listed = tokio::time::timeout(Duration::from_secs(10), names_in(&v, b.ino))
        .await
        .expect("the listing of b waited for a's batch");
    fake.release_batches();
    assert_eq!(listed, ["y"]);
    held.await.unwrap().unwrap();
    assert_eq!(names_in(&v, a.ino).await, ["x"]);
}

/// A file renamed and a new file made in its old name, then a crash
/// before either is committed: after the replay each name still leads to
/// its own file. (Found by the model test: the replay used to give a file
/// the server already had the name in its manifest, which a rename on the
/// server does not update, so "b" led to the renamed file.)
#[tokio::test]
async fn a_renamed_file_and_a_new_file_in_its_old_name_survive_a_crash() {
    // Unlisted root: the files are made on the server; listed: made here.
    for listed in [false, true] {
        let fake = Arc::new(FakeVault::new());
        let d = tempfile::tempdir().unwrap();
        let v = start(&fake, d.path()).await;
        if listed {
            names_in(&v, ROOT_INO).await;
        }
        write_file(&v, ROOT_INO, "b", b"x").await;
        v.rename(ROOT_INO, os("b"), ROOT_INO, os("a"), RenameHow::Replace)
            .await
            .unwrap();
        let (attr, fh) = v.create(ROOT_INO, os("b"), 0o644, 0, RW, ME).await.unwrap();
        v.release(attr.ino, fh).await.unwrap();
        // A crash: the same journal, a new run.
        v.shutdown().await;
        drop(v);
        let v = start(&fake, d.path()).await;
        let later = pattern(10_911, 3);
        let b = v.lookup(ROOT_INO, os("b")).await.unwrap();
        let fh = v.open(b.ino, RW).await.unwrap();
        v.write(b.ino, fh, 4357, &later).await.unwrap();
        v.flush(b.ino, fh).await.unwrap();
        v.release(b.ino, fh).await.unwrap();
        v.sync_all().await.unwrap();
        v.shutdown().await;
        fake.check_invariants().unwrap();

        let d2 = tempfile::tempdir().unwrap();
        let w = start(&fake, d2.path()).await;
        let a = w.lookup(ROOT_INO, os("a")).await.unwrap();
        let got = read_file(&w, a.ino).await.unwrap();
        assert!(
            got == b"x",
            "a (listed: {listed}) holds {} bytes",
            got.len()
        );
        let b = w.lookup(ROOT_INO, os("b")).await.unwrap();
        let mut want = vec![0; 4357];
        want.extend_from_slice(&later);
        let got = read_file(&w, b.ino).await.unwrap();
        assert!(
            got == want,
            "b (listed: {listed}) holds {} bytes",
            got.len()
        );
    }
}

/// A small file's data rides in its manifest (one journal file, no stage
/// file), also after a chmod rewrote it; larger ones keep a stage file.
/// All survive a crash before the server saw them.
#[tokio::test]
async fn small_files_are_one_journal_file_each_and_survive_a_crash() {
    let fake = Arc::new(FakeVault::new());
    let d = tempfile::tempdir().unwrap();
    let files = [
        ("tiny", pattern(100, 1)),
        ("small", pattern(5000, 2)),
        ("two-segments", pattern(100_000, 3)),
    ];
    {
        let v = start(&fake, d.path()).await;
        names_in(&v, ROOT_INO).await;
        let mut inos = Vec::new();
        for (name, data) in &files {
            inos.push(write_file(&v, ROOT_INO, name, data).await);
        }
        let chmod = SetAttr {
            mode: Some(0o600),
            ..SetAttr::default()
        };
        v.setattr(inos[1], None, chmod).await.unwrap();
        assert_eq!(journal_files(d.path(), ".manifest"), 3);
        assert_eq!(
            journal_files(d.path(), ".stage"),
            1,
            "only the large file's"
        );
        // The daemon dies before the uploader's first round.
        v.shutdown().await;
    }
    for (name, data) in &files {
        assert!(
            replay_then_read_elsewhere(&fake, d.path(), name).await == *data,
            "{name} after the crash"
        );
    }
    let d2 = tempfile::tempdir().unwrap();
    let w = start(&fake, d2.path()).await;
    assert_eq!(w.lookup(ROOT_INO, os("small")).await.unwrap().perm, 0o600);
    assert_eq!(journal_files(d.path(), ".manifest"), 0);
    fake.check_invariants().unwrap();
}

/// Owner and mode set on an open file (as tar does before it closes each
/// file) are saved when it closes, and survive a crash after that.
#[tokio::test]
async fn a_mode_set_while_open_is_kept_by_the_close() {
    let fake = Arc::new(FakeVault::new());
    let d = tempfile::tempdir().unwrap();
    {
        let v = start(&fake, d.path()).await;
        names_in(&v, ROOT_INO).await;
        let (attr, fh) = v.create(ROOT_INO, os("f"), 0o644, 0, RW, ME).await.unwrap();
        v.write(attr.ino, fh, 0, b"data").await.unwrap();
        let chmod = SetAttr {
            mode: Some(0o640),
            ..SetAttr::default()
        };
        v.setattr(attr.ino, None, chmod).await.unwrap();
        assert_eq!(journal_files(d.path(), ".manifest"), 0, "saved at close");
        v.flush(attr.ino, fh).await.unwrap();
        v.release(attr.ino, fh).await.unwrap();
        assert_eq!(journal_files(d.path(), ".manifest"), 1);
        v.shutdown().await;
    }
    assert_eq!(
        replay_then_read_elsewhere(&fake, d.path(), "f").await,
        b"data"
    );
    let d2 = tempfile::tempdir().unwrap();
    let w = start(&fake, d2.path()).await;
    assert_eq!(w.lookup(ROOT_INO, os("f")).await.unwrap().perm, 0o640);
}
