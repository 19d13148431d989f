//! Mode, owner and time changes of directories and symlinks (`records`):
//! shown at once, sent in batches, merged with changes made elsewhere,
//! kept across a crash, dropped with their node.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::tests::{ME, journal_files, os, start, write_file};
use super::*;
use crate::api::fake::Injected;
use crate::api::fake_tree::FakeVault;

fn chmod(mode: u32) -> SetAttr {
    SetAttr {
        mode: Some(mode),
        ..SetAttr::default()
    }
}

fn touch(secs: u64) -> SetAttr {
    let t = UNIX_EPOCH + Duration::from_secs(secs);
    SetAttr {
        atime: Some(SetTime::At(t)),
        mtime: Some(SetTime::At(t)),
        ..SetAttr::default()
    }
}

fn secs(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// What a fresh mount of another device sees of `name` in the root.
async fn elsewhere(fake: &Arc<FakeVault>, name: &str) -> Attr {
    let d = tempfile::tempdir().unwrap();
    let w = start(fake, d.path()).await;
    let attr = w.lookup(ROOT_INO, os(name)).await.unwrap();
    w.shutdown().await;
    attr
}

fn journal_records(dir: &std::path::Path) -> usize {
    journal_files(dir, ".record")
}

#[tokio::test]
async fn directory_changes_show_at_once_and_reach_the_server_in_batches() {
    let fake = Arc::new(FakeVault::new());
    let d = tempfile::tempdir().unwrap();
    let v = start(&fake, d.path()).await;
    let mut dirs = Vec::new();
    for i in 0..30 {
        let a = v
            .mkdir(ROOT_INO, os(&format!("d{i}")), 0o755, 0o022, ME)
            .await
            .unwrap();
        dirs.push(a.ino);
    }
    let link = v.symlink(ROOT_INO, os("l"), b"d0", ME).await.unwrap().ino;
    let puts = fake.record_puts();
    for (i, ino) in dirs.iter().enumerate() {
        // chmod then utimens, as tar and rsync do.
        let a = v.setattr(*ino, None, chmod(0o700)).await.unwrap();
        assert_eq!(a.perm, 0o700, "the change shows at once");
        let a = v
            .setattr(*ino, None, touch(1_000_000 + i as u64))
            .await
            .unwrap();
        assert_eq!((a.perm, secs(a.mtime)), (0o700, 1_000_000 + i as u64));
        assert_eq!(v.getattr(*ino).await.unwrap().perm, 0o700);
    }
    v.setattr(link, None, touch(42)).await.unwrap();
    assert_eq!(secs(v.getattr(link).await.unwrap().mtime), 42);

    v.sync_all().await.unwrap();
    assert_eq!(v.pending().files, 0);
    assert_eq!(
        journal_records(d.path()),
        0,
        "journal entries gone once sent"
    );
    assert_eq!(fake.record_puts(), puts, "no request per change");
    for i in [0, 17, 29] {
        let a = elsewhere(&fake, &format!("d{i}")).await;
        assert_eq!((a.perm, secs(a.mtime)), (0o700, 1_000_000 + i as u64));
    }
    assert_eq!(secs(elsewhere(&fake, "l").await.mtime), 42);
    // Still shown here after the state is fetched again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(v.getattr(dirs[3]).await.unwrap().perm, 0o700);
}

#[tokio::test]
async fn a_directory_change_keeps_what_another_device_changed_meanwhile() {
    let fake = Arc::new(FakeVault::new());
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let v = start(&fake, d1.path()).await;
    let dir = v.mkdir(ROOT_INO, os("d"), 0o755, 0o022, ME).await.unwrap();
    v.sync_all().await.unwrap();
    // Another device sets an attribute and a time on it.
    let w = start(&fake, d2.path()).await;
    let theirs = w.lookup(ROOT_INO, os("d")).await.unwrap();
    w.setxattr(theirs.ino, os("user.tag"), b"blue", XattrHow::Set)
        .await
        .unwrap();
    w.setattr(theirs.ino, None, touch(5_000)).await.unwrap();
    w.sync_all().await.unwrap();
    // This mount still holds the version before it: its change conflicts
    // on the server and is applied to the newer record.
    v.setattr(dir.ino, None, chmod(0o750)).await.unwrap();
    v.sync_all().await.unwrap();
    let a = elsewhere(&fake, "d").await;
    assert_eq!((a.perm, secs(a.mtime)), (0o750, 5_000));
    let d3 = tempfile::tempdir().unwrap();
    let x = start(&fake, d3.path()).await;
    let ino = x.lookup(ROOT_INO, os("d")).await.unwrap().ino;
    assert_eq!(x.getxattr(ino, os("user.tag")).await.unwrap(), b"blue");
    assert_eq!(v.getattr(dir.ino).await.unwrap().perm, 0o750);
}

#[tokio::test]
async fn directory_changes_made_offline_survive_a_crash() {
    let fake = Arc::new(FakeVault::new());
    let d = tempfile::tempdir().unwrap();
    {
        let v = start(&fake, d.path()).await;
        let dir = v.mkdir(ROOT_INO, os("d"), 0o755, 0o022, ME).await.unwrap();
        // The server goes away; the change is made here all the same.
        for _ in 0..10_000 {
            fake.fail_next(Injected::Unreachable);
        }
        let a = v.setattr(dir.ino, None, chmod(0o711)).await.unwrap();
        assert_eq!(a.perm, 0o711);
        v.setattr(dir.ino, None, touch(77)).await.unwrap();
        assert_eq!(v.pending().files, 1);
        // The daemon dies: no sync.
        v.shutdown().await;
    }
    fake.clear_failures();
    assert_eq!(journal_records(d.path()), 1);
    assert_eq!(elsewhere(&fake, "d").await.perm, 0o755, "not sent yet");
    // The next run reads it back and sends it.
    let v = start(&fake, d.path()).await;
    assert_eq!(v.pending().files, 1);
    v.sync_all().await.unwrap();
    assert_eq!(journal_records(d.path()), 0);
    let a = elsewhere(&fake, "d").await;
    assert_eq!((a.perm, secs(a.mtime)), (0o711, 77));
}

#[tokio::test]
async fn a_removed_directory_drops_its_pending_change() {
    let fake = Arc::new(FakeVault::new());
    let d = tempfile::tempdir().unwrap();
    let v = start(&fake, d.path()).await;
    let dir = v.mkdir(ROOT_INO, os("d"), 0o755, 0o022, ME).await.unwrap();
    v.setattr(dir.ino, None, chmod(0o700)).await.unwrap();
    v.rmdir(ROOT_INO, os("d")).await.unwrap();
    v.sync_all().await.unwrap();
    assert_eq!(v.pending().files, 0);
    assert_eq!(journal_records(d.path()), 0);
    // A regular file's change still goes to the server at once.
    let f = write_file(&v, ROOT_INO, "f", b"x").await;
    v.sync_all().await.unwrap();
    let puts = fake.record_puts();
    v.setattr(f, None, chmod(0o600)).await.unwrap();
    assert_eq!(fake.record_puts(), puts + 1);
}

/// The server stamps a node with its own clock when it takes a change; a
/// directory's time set here must not lose to that stamp, whether the
/// server's clock runs ahead or the change merely crossed a second on its
/// way (kill -9 test in CI: the mtime tar sets became the send time).
#[tokio::test]
async fn a_directory_time_set_here_wins_over_the_servers_clock() {
    let fake = Arc::new(FakeVault::new());
    let d = tempfile::tempdir().unwrap();
    let v = start(&fake, d.path()).await;
    let dir = v.mkdir(ROOT_INO, os("d"), 0o755, 0o022, ME).await.unwrap();
    v.sync_all().await.unwrap();
    let now = i64::try_from(secs(std::time::SystemTime::now())).unwrap();
    fake.set_clock(Some(now + 3_600));
    v.setattr(dir.ino, None, touch(1_400_000_000))
        .await
        .unwrap();
    v.sync_all().await.unwrap();
    // Here, once the record is fetched again, and on another device.
    let id = v.core.id_of(dir.ino).unwrap();
    lock(&v.core.table).invalidate(id);
    let here = v.getattr(dir.ino).await.unwrap();
    assert_eq!(secs(here.mtime), 1_400_000_000);
    assert_eq!(secs(elsewhere(&fake, "d").await.mtime), 1_400_000_000);
}

/// `tar -c` right after `tar -x` compares a directory's change time before
/// and after reading it: sending the change later must not move it.
#[tokio::test]
async fn a_directory_change_time_stays_when_the_change_is_sent() {
    let fake = Arc::new(FakeVault::new());
    let d = tempfile::tempdir().unwrap();
    let v = start(&fake, d.path()).await;
    let dir = v.mkdir(ROOT_INO, os("d"), 0o755, 0o022, ME).await.unwrap();
    v.sync_all().await.unwrap();
    let set = v.setattr(dir.ino, None, touch(1_000)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    v.sync_all().await.unwrap();
    assert_eq!(journal_records(d.path()), 0, "the change was sent");
    assert_eq!(v.getattr(dir.ino).await.unwrap().ctime, set.ctime);
    // Also once fetched again, and on another device.
    let id = v.core.id_of(dir.ino).unwrap();
    lock(&v.core.table).invalidate(id);
    assert_eq!(v.getattr(dir.ino).await.unwrap().ctime, set.ctime);
    assert_eq!(elsewhere(&fake, "d").await.ctime, set.ctime);
}
