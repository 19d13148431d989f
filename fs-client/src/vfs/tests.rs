//! Unit tests of the filesystem logic against the in-memory fake server,
//! and a reference-model property test: random operation sequences are run
//! on [`Vfs`] and on a plain in-memory model, and every read must agree.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;

use common::crypto::subkeys::{VaultKey, VaultSubkeys};
use proptest::prelude::*;

use super::*;
use crate::api::fake::Injected;
use crate::api::fake_tree::FakeVault;
use crate::api::{AccessToken, StaticToken};

fn keys() -> VaultSubkeys {
    VaultKey::from_bytes([7; 32]).subkeys().unwrap()
}

fn config(dir: &Path) -> VfsConfig {
    VfsConfig {
        journal_dir: dir.join("journal"),
        cache_dir: dir.join("cache"),
        cache_bytes: 64 << 20,
        memory_cache_bytes: 16 << 20,
        read_only: false,
        upload_parallelism: 4,
        journal_spare_files: 0,
    }
}

pub(super) async fn start(fake: &Arc<FakeVault>, dir: &Path) -> Vfs<FakeVault> {
    start_with(fake, config(dir)).await
}

async fn start_with(fake: &Arc<FakeVault>, config: VfsConfig) -> Vfs<FakeVault> {
    let token = AccessToken::new("t".into());
    Vfs::start(fake.clone(), Arc::new(StaticToken(token)), keys(), config)
        .await
        .unwrap()
}

pub(super) fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

pub(super) const ME: Caller = Caller {
    uid: 1000,
    gid: 1000,
};
pub(super) const RW: OpenMode = OpenMode {
    write: true,
    truncate: false,
    append: false,
};

pub(super) async fn write_file(v: &Vfs<FakeVault>, parent: Ino, name: &str, data: &[u8]) -> Ino {
    let (attr, fh) = v
        .create(parent, os(name), 0o644, 0o022, RW, ME)
        .await
        .unwrap();
    let mut off = 0;
    for chunk in data.chunks(128 * 1024) {
        v.write(attr.ino, fh, off, chunk).await.unwrap();
        off += chunk.len() as u64;
    }
    v.flush(attr.ino, fh).await.unwrap();
    v.release(attr.ino, fh).await.unwrap();
    attr.ino
}

pub(super) async fn read_file(v: &Vfs<FakeVault>, ino: Ino) -> FsResult<Vec<u8>> {
    let fh = v.open(ino, OpenMode::default()).await?;
    let size = v.getattr(ino).await?.size;
    let mut out = Vec::new();
    while (out.len() as u64) < size {
        let chunk = v.read(ino, fh, out.len() as u64, 200_000).await?;
        if chunk.is_empty() {
            break;
        }
        out.extend_from_slice(&chunk);
    }
    v.release(ino, fh).await?;
    Ok(out)
}

/// The names in `dir` (without `.` and `..`), sorted.
pub(super) async fn names_in(v: &Vfs<FakeVault>, dir: Ino) -> Vec<String> {
    let fh = v.opendir(dir).await.unwrap();
    let mut names: Vec<String> = v
        .readdir(dir, fh, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8(e.name).unwrap())
        .filter(|n| n != "." && n != "..")
        .collect();
    v.releasedir(dir, fh);
    names.sort();
    names
}

pub(super) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Files of the journal under `dir` whose names end in `suffix`.
pub(super) fn journal_files(dir: &Path, suffix: &str) -> usize {
    std::fs::read_dir(dir.join("journal"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(suffix)
        })
        .count()
}

/// The next run on the journal in `dir` (a new process: a fresh cache
/// lock) replays and uploads it; then another device reads `name` from
/// the root.
pub(super) async fn replay_then_read_elsewhere(
    fake: &Arc<FakeVault>,
    dir: &Path,
    name: &str,
) -> Vec<u8> {
    let cache = tempfile::tempdir().unwrap();
    let v = start_with(
        fake,
        VfsConfig {
            cache_dir: cache.path().into(),
            ..config(dir)
        },
    )
    .await;
    v.sync_all().await.unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let w = start(fake, d2.path()).await;
    let a = w.lookup(ROOT_INO, os(name)).await.unwrap();
    read_file(&w, a.ino).await.unwrap()
}

#[tokio::test]
async fn files_round_trip_through_a_fresh_mount() {
    let fake = Arc::new(FakeVault::new());
    let d1 = tempfile::tempdir().unwrap();
    let v = start(&fake, d1.path()).await;
    let small = b"hello, vault".to_vec();
    let big = pattern(9 * 1024 * 1024 + 12345, 3);
    write_file(&v, ROOT_INO, "small.txt", &small).await;
    write_file(&v, ROOT_INO, "big.bin", &big).await;
    let dir = v
        .mkdir(ROOT_INO, os("docs"), 0o755, 0o022, ME)
        .await
        .unwrap();
    write_file(&v, dir.ino, "inner", b"inside").await;
    v.sync_all().await.unwrap();
    assert_eq!(v.pending(), Pending::default());
    v.shutdown().await;
    drop(v);
    fake.check_invariants().unwrap();

    // A second machine: nothing cached, nothing in its journal.
    let d2 = tempfile::tempdir().unwrap();
    let w = start(&fake, d2.path()).await;
    let a = w.lookup(ROOT_INO, os("small.txt")).await.unwrap();
    assert_eq!(a.size, small.len() as u64);
    assert_eq!(a.perm, 0o644);
    assert_eq!(read_file(&w, a.ino).await.unwrap(), small);
    let b = w.lookup(ROOT_INO, os("big.bin")).await.unwrap();
    assert_eq!(read_file(&w, b.ino).await.unwrap(), big);
    let d = w.lookup(ROOT_INO, os("docs")).await.unwrap();
    assert_eq!(d.kind, FileKind::Directory);
    let i = w.lookup(d.ino, os("inner")).await.unwrap();
    assert_eq!(read_file(&w, i.ino).await.unwrap(), b"inside");
    let fh = w.opendir(ROOT_INO).await.unwrap();
    let mut names: Vec<Vec<u8>> = w
        .readdir(ROOT_INO, fh, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            b".".to_vec(),
            b"..".to_vec(),
            b"big.bin".to_vec(),
            b"docs".to_vec(),
            b"small.txt".to_vec()
        ]
    );
    assert!(matches!(
        w.lookup(ROOT_INO, os("missing")).await,
        Err(FsError::NotFound)
    ));
}

#[tokio::test]
async fn overwrites_truncation_and_holes() {
    let fake = Arc::new(FakeVault::new());
    let d = tempfile::tempdir().unwrap();
    let v = start(&fake, d.path()).await;
    let mut model = pattern(5 * 1024 * 1024, 1);
    let ino = write_file(&v, ROOT_INO, "f", &model).await;
    v.sync_all().await.unwrap();
    let fh = v.open(ino, RW).await.unwrap();
    // Overwrite across a segment and a chunk boundary.
    let at = (4 << 20) - 100;
    v.write(ino, fh, at, &[9u8; 300]).await.unwrap();
    model[at as usize..at as usize + 300].fill(9);
    // Truncate down into the middle of a segment, then extend with a hole.
    v.setattr(
        ino,
        Some(fh),
        SetAttr {
            size: Some(100_000),
            ..SetAttr::default()
        },
    )
    .await
    .unwrap();
    model.truncate(100_000);
    v.write(ino, fh, 6_000_000, b"tail").await.unwrap();
    model.resize(6_000_000, 0);
    model.extend_from_slice(b"tail");
    assert_eq!(
        v.read(ino, fh, 99_990, 20).await.unwrap(),
        model[99_990..100_010].to_vec()
    );
    v.fsync(ino, fh, false).await.unwrap();
    v.release(ino, fh).await.unwrap();
    v.shutdown().await;
    let d2 = tempfile::tempdir().unwrap();
    let w = start(&fake, d2.path()).await;
    let a = w.lookup(ROOT_INO, os("f")).await.unwrap();
    assert_eq!(a.size, model.len() as u64);
    assert_eq!(read_file(&w, a.ino).await.unwrap(), model);
    fake.check_invariants().unwrap();
}

#[tokio::test]
async fn names_links_renames_and_xattrs() {
    let fake = Arc::new(FakeVault::new());
    let d = tempfile::tempdir().unwrap();
    let v = start(&fake, d.path()).await;
    let a = write_file(&v, ROOT_INO, "a", b"A").await;
    write_file(&v, ROOT_INO, "b", b"B").await;
    let sub = v.mkdir(ROOT_INO, os("sub"), 0o700, 0, ME).await.unwrap();
    // Rename over an existing file.
    v.rename(ROOT_INO, os("a"), ROOT_INO, os("b"), RenameHow::Replace)
        .await
        .unwrap();
    let b = v.lookup(ROOT_INO, os("b")).await.unwrap();
    assert_eq!(b.ino, a);
    assert_eq!(read_file(&v, b.ino).await.unwrap(), b"A");
    assert!(matches!(
        v.lookup(ROOT_INO, os("a")).await,
        Err(FsError::NotFound)
    ));
    write_file(&v, ROOT_INO, "c", b"C").await;
    assert!(matches!(
        v.rename(ROOT_INO, os("b"), ROOT_INO, os("c"), RenameHow::NoReplace)
            .await,
        Err(FsError::Exists)
    ));
    v.rename(ROOT_INO, os("b"), ROOT_INO, os("c"), RenameHow::Exchange)
        .await
        .unwrap();
    let c = v.lookup(ROOT_INO, os("c")).await.unwrap();
    assert_eq!(read_file(&v, c.ino).await.unwrap(), b"A");
    // Into a subdirectory, a hard link, and unlink of one name.
    v.rename(ROOT_INO, os("c"), sub.ino, os("moved"), RenameHow::Replace)
        .await
        .unwrap();
    let l = v.link(c.ino, ROOT_INO, os("hard")).await.unwrap();
    assert_eq!(l.nlink, 2);
    v.unlink(sub.ino, os("moved")).await.unwrap();
    let h = v.lookup(ROOT_INO, os("hard")).await.unwrap();
    assert_eq!(read_file(&v, h.ino).await.unwrap(), b"A");
    // A directory into its own subtree is refused; a non-empty rmdir too.
    let deep = v.mkdir(sub.ino, os("deep"), 0o755, 0, ME).await.unwrap();
    assert!(matches!(
        v.rename(ROOT_INO, os("sub"), deep.ino, os("x"), RenameHow::Replace)
            .await,
        Err(FsError::Invalid)
    ));
    assert!(matches!(
        v.rmdir(ROOT_INO, os("sub")).await,
        Err(FsError::NotEmpty)
    ));
    // Symlinks and special files.
    let s = v
        .symlink(ROOT_INO, os("link"), b"../target", ME)
        .await
        .unwrap();
    assert_eq!(s.kind, FileKind::Symlink);
    assert_eq!(v.readlink(s.ino).await.unwrap(), b"../target");
    let fifo = v
        .mknod(ROOT_INO, os("pipe"), libc::S_IFIFO | 0o600, 0, ME)
        .await
        .unwrap();
    assert_eq!(fifo.kind, FileKind::Fifo);
    // Extended attributes on a clean file and a directory.
    v.setxattr(h.ino, os("user.colour"), b"blue", XattrHow::Set)
        .await
        .unwrap();
    assert!(matches!(
        v.setxattr(h.ino, os("user.colour"), b"red", XattrHow::Create)
            .await,
        Err(FsError::Exists)
    ));
    assert!(matches!(
        v.setxattr(h.ino, os("user.size"), b"1", XattrHow::Replace)
            .await,
        Err(FsError::NoAttribute)
    ));
    v.setxattr(sub.ino, os("user.dir"), b"yes", XattrHow::Set)
        .await
        .unwrap();
    assert_eq!(v.getxattr(h.ino, os("user.colour")).await.unwrap(), b"blue");
    assert_eq!(v.listxattr(h.ino).await.unwrap(), b"user.colour\0");
    assert_eq!(
        v.listxattr_cached(h.ino).unwrap().unwrap(),
        b"user.colour\0"
    );
    // ACLs and the SELinux label are not kept: every call says so (ls -l
    // then stops asking), from memory and from the async path alike.
    for name in ["system.posix_acl_access", "security.selinux"] {
        let unsupported = |r: FsResult<Vec<u8>>| matches!(r, Err(FsError::NotSupported));
        assert!(unsupported(v.getxattr(h.ino, os(name)).await), "{name}");
        assert!(
            unsupported(v.getxattr_cached(h.ino, os(name)).unwrap()),
            "{name}"
        );
        assert!(matches!(
            v.setxattr(h.ino, os(name), b"x", XattrHow::Set).await,
            Err(FsError::NotSupported)
        ));
        assert!(matches!(
            v.removexattr(h.ino, os(name)).await,
            Err(FsError::NotSupported)
        ));
    }
    // Other security.* attributes are kept like user.* ones.
    v.setxattr(h.ino, os("security.other"), b"v", XattrHow::Set)
        .await
        .unwrap();
    assert_eq!(
        v.getxattr_cached(h.ino, os("security.other"))
            .unwrap()
            .unwrap(),
        b"v"
    );
    v.removexattr(h.ino, os("security.other")).await.unwrap();
    v.removexattr(h.ino, os("user.colour")).await.unwrap();
    assert!(matches!(
        v.getxattr(h.ino, os("user.colour")).await,
        Err(FsError::NoAttribute)
    ));
    // chmod and utimens persist.
    let t = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let set = SetAttr {
        mode: Some(0o600),
        mtime: Some(SetTime::At(t)),
        ..SetAttr::default()
    };
    v.setattr(h.ino, None, set).await.unwrap();
    v.sync_all().await.unwrap();
    v.shutdown().await;
    let d2 = tempfile::tempdir().unwrap();
    let w = start(&fake, d2.path()).await;
    let h2 = w.lookup(ROOT_INO, os("hard")).await.unwrap();
    assert_eq!(h2.perm, 0o600);
    assert_eq!(h2.mtime, t);
    let sub2 = w.lookup(ROOT_INO, os("sub")).await.unwrap();
    assert_eq!(w.getxattr(sub2.ino, os("user.dir")).await.unwrap(), b"yes");
    fake.check_invariants().unwrap();
}

#[tokio::test]
async fn the_page_cache_is_kept_only_while_the_file_is_unchanged() {
    let fake = Arc::new(FakeVault::new());
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let v = start(&fake, d1.path()).await;
    let ino = write_file(&v, ROOT_INO, "f", b"one").await;
    v.sync_all().await.unwrap();
    // Our own commit: the kernel's pages are still right.
    let fh = v.open(ino, OpenMode::default()).await.unwrap();
    assert!(v.keep_cache(fh));
    v.release(ino, fh).await.unwrap();
    // Changed on another machine: once the change feed has told this
    // mount, the next open drops them.
    let w = start(&fake, d2.path()).await;
    let a = w.lookup(ROOT_INO, os("f")).await.unwrap();
    let wf = w.open(a.ino, RW).await.unwrap();
    w.write(a.ino, wf, 0, b"two!!").await.unwrap();
    w.fsync(a.ino, wf, false).await.unwrap();
    w.release(a.ino, wf).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while v.getattr(ino).await.unwrap().size != 5 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fh = v.open(ino, OpenMode::default()).await.unwrap();
    assert!(!v.keep_cache(fh));
    assert_eq!(&v.read(ino, fh, 0, 10).await.unwrap()[..], b"two!!");
    v.release(ino, fh).await.unwrap();
    let fh = v.open(ino, OpenMode::default()).await.unwrap();
    assert!(v.keep_cache(fh));
    v.release(ino, fh).await.unwrap();
}

#[tokio::test]
async fn an_open_file_stays_readable_after_unlink() {
    let fake = Arc::new(FakeVault::new());
    let d = tempfile::tempdir().unwrap();
    let v = start(&fake, d.path()).await;
    let data = pattern(300_000, 5);
    let ino = write_file(&v, ROOT_INO, "doomed", &data).await;
    v.sync_all().await.unwrap();
    let fh = v.open(ino, RW).await.unwrap();
    v.unlink(ROOT_INO, os("doomed")).await.unwrap();
    assert_eq!(v.getattr(ino).await.unwrap().nlink, 0, "fstat after unlink");
    assert_eq!(v.read(ino, fh, 0, 300_000).await.unwrap(), data);
    // Written after the unlink: the commit finds the node gone, and the
    // descriptor still reads what it wrote.
    v.write(ino, fh, 5, b"still here").await.unwrap();
    v.fsync(ino, fh, false).await.unwrap();
    v.write(ino, fh, 100, b"and here").await.unwrap();
    assert_eq!(&v.read(ino, fh, 5, 10).await.unwrap()[..], b"still here");
    assert_eq!(&v.read(ino, fh, 100, 8).await.unwrap()[..], b"and here");
    v.release(ino, fh).await.unwrap();
    v.sync_all().await.unwrap();
    let left: Vec<_> = std::fs::read_dir(d.path().join("journal"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "device-id" && n != "free")
        .collect();
    assert!(left.is_empty(), "journal left behind: {left:?}");
    // What went back to the pool is empty.
    for e in std::fs::read_dir(d.path().join("journal/free")).unwrap() {
        assert_eq!(e.unwrap().metadata().unwrap().len(), 0);
    }
}

#[tokio::test]
async fn cached_files_stay_readable_while_the_server_is_unreachable() {
    let fake = Arc::new(FakeVault::new());
    let d = tempfile::tempdir().unwrap();
    let v = start(&fake, d.path()).await;
    let data = pattern(6 * 1024 * 1024, 4);
    let ino = write_file(&v, ROOT_INO, "cached", &data).await;
    v.sync_all().await.unwrap();
    assert_eq!(read_file(&v, ino).await.unwrap(), data);
    for _ in 0..100_000 {
        fake.fail_next(Injected::Unreachable);
    }
    let a = v.lookup(ROOT_INO, os("cached")).await.unwrap();
    assert_eq!(a.ino, ino);
    assert_eq!(read_file(&v, ino).await.unwrap(), data);
    // Writes to an open file queue in the journal meanwhile.
    let fh = v.open(ino, RW).await.unwrap();
    v.write(ino, fh, 0, b"offline edit").await.unwrap();
    v.release(ino, fh).await.unwrap();
    assert!(matches!(
        v.lookup(ROOT_INO, os("never-seen")).await,
        Err(FsError::Api(_))
    ));
    fake.clear_failures();
    v.sync_all().await.unwrap();
    v.shutdown().await;
    let d2 = tempfile::tempdir().unwrap();
    let w = start(&fake, d2.path()).await;
    let b = w.lookup(ROOT_INO, os("cached")).await.unwrap();
    let mut want = data;
    want[..12].copy_from_slice(b"offline edit");
    assert_eq!(read_file(&w, b.ino).await.unwrap(), want);
}

#[tokio::test]
async fn a_tampering_server_gives_errors_not_data() {
    // A flipped bit in a segment (caught by its GCM tag) and in the header's
    // seed (caught by the object list's seed commitment before any segment).
    for at in [|len: usize| len / 2, |_| 10] {
        let fake = Arc::new(FakeVault::new());
        let d = tempfile::tempdir().unwrap();
        let v = start(&fake, d.path()).await;
        write_file(&v, ROOT_INO, "f", &pattern(200_000, 9)).await;
        v.sync_all().await.unwrap();
        v.shutdown().await;
        assert!(
            fake.tamper_objects(|b| {
                let i = at(b.len());
                b[i] ^= 1;
            }) > 0
        );
        let d2 = tempfile::tempdir().unwrap();
        let w = start(&fake, d2.path()).await;
        let a = w.lookup(ROOT_INO, os("f")).await.unwrap();
        let fh = w.open(a.ino, OpenMode::default()).await.unwrap();
        let err = w.read(a.ino, fh, 0, 4096).await.unwrap_err();
        assert_eq!(err.errno(), libc::EIO, "{err:?}");
        w.shutdown().await;
    }
}

#[tokio::test]
async fn closed_files_survive_a_crash_before_upload() {
    let fake = Arc::new(FakeVault::new());
    let d = tempfile::tempdir().unwrap();
    let data = pattern(5 * 1024 * 1024 + 7, 2);
    {
        let v = start(&fake, d.path()).await;
        // The server goes away: nothing can be uploaded.
        for _ in 0..10_000 {
            fake.fail_next(Injected::Unreachable);
        }
        let (attr, fh) = match v.create(ROOT_INO, os("precious"), 0o600, 0, RW, ME).await {
            Ok(x) => x,
            Err(_) => {
                // create needs the server; let it through, then cut it off.
                fake.clear_failures();
                let x = v
                    .create(ROOT_INO, os("precious"), 0o600, 0, RW, ME)
                    .await
                    .unwrap();
                for _ in 0..10_000 {
                    fake.fail_next(Injected::Unreachable);
                }
                x
            }
        };
        v.write(attr.ino, fh, 0, &data).await.unwrap();
        v.flush(attr.ino, fh).await.unwrap();
        v.release(attr.ino, fh).await.unwrap();
        assert!(v.pending().files >= 1);
        // The daemon dies here: no sync; its tasks just stop.
        v.shutdown().await;
    }
    fake.clear_failures();
    // The journal holds ciphertext only.
    for entry in std::fs::read_dir(d.path().join("journal")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            continue;
        }
        let bytes = std::fs::read(path).unwrap();
        assert!(!bytes.windows(64).any(|w| w == &data[1000..1064]));
        assert!(!bytes.windows(8).any(|w| w == b"precious"));
    }
    // The next run replays it.
    assert_eq!(
        replay_then_read_elsewhere(&fake, d.path(), "precious").await,
        data
    );
}

#[tokio::test]
async fn concurrent_edits_keep_a_conflict_copy() {
    let fake = Arc::new(FakeVault::new());
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let v = start(&fake, d1.path()).await;
    write_file(&v, ROOT_INO, "shared", b"original").await;
    v.sync_all().await.unwrap();
    let w = start(&fake, d2.path()).await;
    let a = v.lookup(ROOT_INO, os("shared")).await.unwrap();
    let b = w.lookup(ROOT_INO, os("shared")).await.unwrap();
    let fa = v.open(a.ino, RW).await.unwrap();
    let fb = w.open(b.ino, RW).await.unwrap();
    v.write(a.ino, fa, 0, b"from A!!").await.unwrap();
    w.write(b.ino, fb, 0, b"from B!!").await.unwrap();
    v.fsync(a.ino, fa, false).await.unwrap();
    w.fsync(b.ino, fb, false).await.unwrap();
    v.release(a.ino, fa).await.unwrap();
    w.release(b.ino, fb).await.unwrap();
    let d3 = tempfile::tempdir().unwrap();
    let x = start(&fake, d3.path()).await;
    let fh = x.opendir(ROOT_INO).await.unwrap();
    let entries = x.readdir(ROOT_INO, fh, 2).await.unwrap();
    assert_eq!(entries.len(), 2, "the file and one conflict copy");
    let mut contents = Vec::new();
    for e in &entries {
        contents.push(read_file(&x, e.attr.ino).await.unwrap());
    }
    contents.sort();
    assert_eq!(contents, vec![b"from A!!".to_vec(), b"from B!!".to_vec()]);
    let copy = entries.iter().find(|e| e.name != b"shared").unwrap();
    assert!(String::from_utf8_lossy(&copy.name).starts_with("shared (conflicted copy "));
}

#[tokio::test]
async fn nothing_plaintext_reaches_the_server() {
    let fake = Arc::new(FakeVault::new());
    let d = tempfile::tempdir().unwrap();
    let v = start(&fake, d.path()).await;
    let marker = b"TOP-SECRET-MARKER-0123456789".repeat(100);
    let dir = v
        .mkdir(ROOT_INO, os("secret-plans-dir"), 0o755, 0, ME)
        .await
        .unwrap();
    let ino = write_file(&v, dir.ino, "secret-plan-XYZ.txt", &marker).await;
    v.setxattr(
        ino,
        os("user.secret-xattr"),
        b"XATTR-VALUE-MARKER",
        XattrHow::Set,
    )
    .await
    .unwrap();
    v.symlink(ROOT_INO, os("lnk"), b"SYMLINK-TARGET-MARKER", ME)
        .await
        .unwrap();
    v.sync_all().await.unwrap();
    let all = fake.all_bytes();
    for needle in [
        &b"TOP-SECRET-MARKER"[..],
        b"secret-plan",
        b"secret-xattr",
        b"XATTR-VALUE-MARKER",
        b"SYMLINK-TARGET-MARKER",
    ] {
        assert!(
            !all.windows(needle.len()).any(|w| w == needle),
            "{:?} leaked",
            String::from_utf8_lossy(needle)
        );
    }
}

// ---- reference model ----

#[derive(Debug, Clone)]
enum Op {
    Create(u8),
    Write(u8, u32, u32, u8),
    Truncate(u8, u32),
    Read(u8, u32, u32),
    Unlink(u8),
    Rename(u8, u8),
    Fsync(u8),
    Remount,
    /// The daemon dies (its tasks stop wherever they are, nothing synced)
    /// and a new one starts on the same journal: nothing closed is lost.
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    let name = 0u8..4;
    // Offsets reach past one 4 MiB chunk; writes span segment boundaries.
    let off = prop_oneof![
        0u32..200_000,
        (4u32 << 20) - 70_000..(4 << 20) + 70_000,
        0u32..9_000_000
    ];
    prop_oneof![
        2 => name.clone().prop_map(Op::Create),
        5 => (name.clone(), off.clone(), 1u32..150_000, any::<u8>()).prop_map(|(n, o, l, b)| Op::Write(n, o, l, b)),
        2 => (name.clone(), off.clone()).prop_map(|(n, s)| Op::Truncate(n, s)),
        4 => (name.clone(), off, 1u32..300_000).prop_map(|(n, o, l)| Op::Read(n, o, l)),
        1 => name.clone().prop_map(Op::Unlink),
        1 => (name.clone(), name.clone()).prop_map(|(a, b)| Op::Rename(a, b)),
        1 => name.prop_map(Op::Fsync),
        1 => Just(Op::Remount),
        1 => Just(Op::Crash),
    ]
}

fn fname(n: u8) -> String {
    format!("file-{n}")
}

async fn run_model(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let fake = Arc::new(FakeVault::new());
    let d = tempfile::tempdir().unwrap();
    let mut dir = d.path().join("0");
    let mut mounts = 0;
    let mut v = start(&fake, &dir).await;
    let mut model: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Create(n) => {
                let r = v.create(ROOT_INO, os(&fname(n)), 0o644, 0, RW, ME).await;
                if let std::collections::btree_map::Entry::Vacant(e) = model.entry(n) {
                    let (a, fh) = r.unwrap();
                    v.release(a.ino, fh).await.unwrap();
                    e.insert(Vec::new());
                } else {
                    prop_assert!(matches!(r, Err(FsError::Exists)));
                }
            }
            Op::Write(n, off, len, byte) => {
                let Some(m) = model.get_mut(&n) else { continue };
                let a = v.lookup(ROOT_INO, os(&fname(n))).await.unwrap();
                let fh = v.open(a.ino, RW).await.unwrap();
                let data: Vec<u8> = (0..len).map(|i| byte.wrapping_add(i as u8)).collect();
                v.write(a.ino, fh, u64::from(off), &data).await.unwrap();
                v.flush(a.ino, fh).await.unwrap();
                v.release(a.ino, fh).await.unwrap();
                let end = off as usize + len as usize;
                if m.len() < end {
                    m.resize(end, 0);
                }
                m[off as usize..end].copy_from_slice(&data);
            }
            Op::Truncate(n, size) => {
                let Some(m) = model.get_mut(&n) else { continue };
                let a = v.lookup(ROOT_INO, os(&fname(n))).await.unwrap();
                v.setattr(
                    a.ino,
                    None,
                    SetAttr {
                        size: Some(u64::from(size)),
                        ..SetAttr::default()
                    },
                )
                .await
                .unwrap();
                m.resize(size as usize, 0);
            }
            Op::Read(n, off, len) => {
                let Some(m) = model.get(&n) else { continue };
                let a = v.lookup(ROOT_INO, os(&fname(n))).await.unwrap();
                prop_assert_eq!(a.size, m.len() as u64);
                let fh = v.open(a.ino, OpenMode::default()).await.unwrap();
                let got = v.read(a.ino, fh, u64::from(off), len).await.unwrap();
                v.release(a.ino, fh).await.unwrap();
                let start = (off as usize).min(m.len());
                let end = (off as usize + len as usize).min(m.len());
                prop_assert!(
                    got == m[start..end],
                    "read {} bytes at {} of {}",
                    len,
                    off,
                    fname(n)
                );
            }
            Op::Unlink(n) => {
                let r = v.unlink(ROOT_INO, os(&fname(n))).await;
                prop_assert_eq!(r.is_ok(), model.remove(&n).is_some());
            }
            Op::Rename(a, b) => {
                let r = v
                    .rename(
                        ROOT_INO,
                        os(&fname(a)),
                        ROOT_INO,
                        os(&fname(b)),
                        RenameHow::Replace,
                    )
                    .await;
                if let Some(data) = model.remove(&a) {
                    r.unwrap();
                    model.insert(b, data);
                } else {
                    prop_assert!(r.is_err());
                }
            }
            Op::Fsync(n) => {
                if model.contains_key(&n) {
                    let a = v.lookup(ROOT_INO, os(&fname(n))).await.unwrap();
                    let fh = v.open(a.ino, OpenMode::default()).await.unwrap();
                    v.fsync(a.ino, fh, false).await.unwrap();
                    v.release(a.ino, fh).await.unwrap();
                }
            }
            Op::Remount => {
                v.sync_all().await.unwrap();
                v.shutdown().await;
                // Another machine: a journal and caches of its own.
                mounts += 1;
                dir = d.path().join(mounts.to_string());
                v = start(&fake, &dir).await;
            }
            Op::Crash => {
                v.shutdown().await;
                drop(v);
                v = start(&fake, &dir).await;
            }
        }
    }
    v.sync_all().await.unwrap();
    v.shutdown().await;
    fake.check_invariants().map_err(TestCaseError::fail)?;
    // Everything the model has, a fresh mount reads back.
    let d2 = tempfile::tempdir().unwrap();
    let w = start(&fake, d2.path()).await;
    for (n, data) in &model {
        let a = w.lookup(ROOT_INO, os(&fname(*n))).await.unwrap();
        prop_assert!(
            read_file(&w, a.ino).await.unwrap() == *data,
            "{} differs after remount",
            fname(*n)
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn the_filesystem_agrees_with_a_simple_model(ops in prop::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(run_model(ops))?;
    }
}

/// A daemon stopped while a download's blocking half (digest, cache
/// write, decryption) runs leaves the disk cache free for the next one
/// once `shutdown` returns: the model test's crash found the cache still
/// locked by such a straggler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_right_after_an_aborted_download_finds_the_cache_free() {
    let fake = Arc::new(FakeVault::new());
    let d = tempfile::tempdir().unwrap();
    let data = pattern(4 << 20, 3);
    {
        let v = start(&fake, &d.path().join("a")).await;
        write_file(&v, ROOT_INO, "big", &data).await;
        v.sync_all().await.unwrap();
        v.shutdown().await;
    }
    let dir = d.path().join("b");
    let v = Arc::new(start(&fake, &dir).await);
    let a = v.lookup(ROOT_INO, os("big")).await.unwrap();
    let before = fake.whole_downloads();
    let reader = {
        let v = v.clone();
        tokio::spawn(async move {
            let fh = v.open(a.ino, OpenMode::default()).await?;
            v.read(a.ino, fh, 0, 4096).await
        })
    };
    // Stop it as soon as the ciphertext has arrived, while it is decrypted.
    tokio::time::timeout(Duration::from_secs(10), async {
        while fake.whole_downloads() == before {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    })
    .await
    .unwrap();
    reader.abort();
    let _ = reader.await;
    v.shutdown().await;
    drop(v);
    let w = start(&fake, &dir).await;
    let b = w.lookup(ROOT_INO, os("big")).await.unwrap();
    assert_eq!(read_file(&w, b.ino).await.unwrap(), data);
    w.shutdown().await;
}

#[tokio::test]
async fn a_file_removed_before_its_upload_leaves_nothing_pending() {
    let fake = Arc::new(FakeVault::new());
    let d = tempfile::tempdir().unwrap();
    let v = start(&fake, d.path()).await;
    write_file(&v, ROOT_INO, "a", &pattern(100_000, 1)).await;
    v.sync_all().await.unwrap();
    // A second chunk written, closed, and the file removed before the
    // uploader got to it.
    let a = v.lookup(ROOT_INO, os("a")).await.unwrap();
    let fh = v.open(a.ino, RW).await.unwrap();
    v.write(a.ino, fh, 4_361_753, &pattern(88_226, 2))
        .await
        .unwrap();
    v.flush(a.ino, fh).await.unwrap();
    v.release(a.ino, fh).await.unwrap();
    v.unlink(ROOT_INO, os("a")).await.unwrap();
    v.sync_all().await.unwrap();
    assert_eq!(v.pending().files, 0);
}

/// Names in the root as a fresh listing shows them.
async fn root_names(v: &Vfs<FakeVault>) -> Vec<Vec<u8>> {
    let fh = v.opendir(ROOT_INO).await.unwrap();
    let names = v
        .readdir(ROOT_INO, fh, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .filter(|n| n != b"." && n != b"..")
        .collect();
    v.releasedir(ROOT_INO, fh);
    names
}

#[tokio::test]
async fn an_unlinked_open_file_stays_readable_when_nothing_is_cached() {
    let fake = Arc::new(FakeVault::new());
    let d = tempfile::tempdir().unwrap();
    let data = pattern(9_000_000, 5);
    {
        let v = start(&fake, &d.path().join("a")).await;
        write_file(&v, ROOT_INO, "doomed", &data).await;
        write_file(&v, ROOT_INO, "target", b"old").await;
        v.sync_all().await.unwrap();
        v.shutdown().await;
    }
    // Another machine, empty caches, opens both and removes their names.
    let v = start(&fake, &d.path().join("b")).await;
    let a = v.lookup(ROOT_INO, os("doomed")).await.unwrap();
    let fh = v.open(a.ino, OpenMode::default()).await.unwrap();
    v.unlink(ROOT_INO, os("doomed")).await.unwrap();
    assert!(matches!(
        v.lookup(ROOT_INO, os("doomed")).await,
        Err(FsError::NotFound)
    ));
    assert_eq!(v.getattr(a.ino).await.unwrap().nlink, 0);
    let t = v.lookup(ROOT_INO, os("target")).await.unwrap();
    let tfh = v.open(t.ino, OpenMode::default()).await.unwrap();
    write_file(&v, ROOT_INO, "new", b"new").await;
    v.rename(
        ROOT_INO,
        os("new"),
        ROOT_INO,
        os("target"),
        RenameHow::Replace,
    )
    .await
    .unwrap();
    v.sync_all().await.unwrap();
    // Only the visible names; the hidden directory is nobody's business.
    assert_eq!(root_names(&v).await, vec![b"target".to_vec()]);
    assert!(matches!(
        v.lookup(ROOT_INO, os(".securevault-held")).await,
        Err(FsError::NotFound)
    ));
    assert!(matches!(
        v.mkdir(ROOT_INO, os(".securevault-held"), 0o755, 0, ME)
            .await,
        Err(FsError::NotPermitted)
    ));
    // Every byte still reads, though none was cached.
    assert_eq!(
        v.read(a.ino, fh, 8_000_000, 1_000_000).await.unwrap(),
        data[8_000_000..]
    );
    assert_eq!(
        v.read(a.ino, fh, 0, 300_000).await.unwrap(),
        data[..300_000]
    );
    assert_eq!(&v.read(t.ino, tfh, 0, 10).await.unwrap()[..], b"old");
    let nodes_open = fake.node_count();
    v.release(a.ino, fh).await.unwrap();
    v.release(t.ino, tfh).await.unwrap();
    // The last close removed them for good.
    assert_eq!(fake.node_count(), nodes_open - 2);
    let w = start(&fake, &d.path().join("c")).await;
    let t = w.lookup(ROOT_INO, os("target")).await.unwrap();
    assert_eq!(read_file(&w, t.ino).await.unwrap(), b"new");
}

#[tokio::test]
async fn a_crash_while_holding_an_unlinked_file_is_cleaned_at_the_next_start() {
    let fake = Arc::new(FakeVault::new());
    let d = tempfile::tempdir().unwrap();
    let v = start(&fake, d.path()).await;
    let ino = write_file(&v, ROOT_INO, "doomed", &pattern(1000, 1)).await;
    v.sync_all().await.unwrap();
    let before = fake.node_count();
    let fh = v.open(ino, OpenMode::default()).await.unwrap();
    v.unlink(ROOT_INO, os("doomed")).await.unwrap();
    let _ = fh;
    // Crash with the descriptor open: the held name stays on the server.
    v.shutdown().await;
    drop(v);
    assert!(fake.node_count() >= before);
    // Another machine does not touch it...
    let other = start(&fake, &d.path().join("other")).await;
    assert!(fake.node_count() >= before);
    other.shutdown().await;
    // ...this one's next start removes it.
    let v = start(&fake, d.path()).await;
    assert_eq!(fake.node_count(), before);
    assert!(root_names(&v).await.is_empty());
}

/// Found by the model: a file grown past its first chunk, closed and
/// deleted before the upload; the commit re-reads the released base object
/// and must see the file is gone instead of failing forever.
#[test]
fn model_regression_deleted_before_a_commit_that_rereads_its_base() {
    use Op::*;
    let ops = vec![
        Create(0),
        Create(2),
        Write(0, 7691, 85491, 148),
        Remount,
        Write(2, 4_175_886, 59467, 137),
        Write(0, 4_361_753, 88226, 2),
        Unlink(0),
    ];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run_model(ops)).unwrap();
}

/// Uploaded objects the fake holds (committed or not).
fn stored_objects(fake: &FakeVault) -> usize {
    fake.live_objects()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_write_streams_chunks_and_later_rewrites_of_them_survive_a_crash() {
    let fake = Arc::new(FakeVault::new());
    let d = tempfile::tempdir().unwrap();
    let chunk = 4 << 20;
    let mut data = pattern(20 * chunk + 12_345, 5);
    let v = start(&fake, d.path()).await;
    let (attr, fh) = v
        .create(ROOT_INO, os("big"), 0o644, 0o022, RW, ME)
        .await
        .unwrap();
    for (i, part) in data.chunks(1 << 20).enumerate() {
        v.write(attr.ino, fh, (i << 20) as u64, part).await.unwrap();
    }
    // Chunks stream to the server while the file is still open, and the
    // journal gives back the space of those it no longer needs.
    let journal_bytes = || journal_disk_bytes(d.path());
    let streamed = || stored_objects(&fake) >= 17 && journal_bytes() < 12 * chunk as u64;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !streamed() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        stored_objects(&fake) >= 17,
        "chunks were not uploaded early"
    );
    assert!(
        journal_bytes() < 12 * chunk as u64,
        "uploaded chunks were not punched from the stage: {} bytes",
        journal_bytes()
    );
    // Rewrites of chunks already uploaded (punched or not yet) and of the
    // last one, then the daemon dies before anything is committed.
    for at in [100, 16 * chunk + 7, 19 * chunk + 3, 20 * chunk + 1] {
        let patch = pattern(70_000, at as u8);
        v.write(attr.ino, fh, at as u64, &patch).await.unwrap();
        let end = (at + patch.len()).min(data.len());
        data[at..end].copy_from_slice(&patch[..end - at]);
        if at + patch.len() > data.len() {
            data.extend_from_slice(&patch[end - at..]);
        }
    }
    v.flush(attr.ino, fh).await.unwrap();
    assert!(
        read_file(&v, attr.ino).await.unwrap() == data,
        "the mount reads back other than what was written"
    );
    v.shutdown().await;
    // The next run replays the journal; another device reads it all.
    let back = replay_then_read_elsewhere(&fake, d.path(), "big").await;
    assert_same_bytes(&back, &data, "after replay");
}

/// Fails with the range of bytes that differ (not megabytes of both).
fn assert_same_bytes(got: &[u8], want: &[u8], when: &str) {
    assert_eq!(got.len(), want.len(), "length {when}");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        let last = got.iter().zip(want).rposition(|(a, b)| a != b).unwrap_or(i);
        panic!("contents differ {when} at {i}..={last}");
    }
}

/// Bytes the journal's files take on disk.
fn journal_disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::read_dir(dir.join("journal"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().blocks() * 512)
        .sum()
}

/// A sequential write holds its chunks (past the first) in memory for
/// their upload instead of writing them to the journal; a close puts what
/// is still held there, so a crash after it loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequential_write_skips_the_journal_until_it_is_closed() {
    let fake = Arc::new(FakeVault::new());
    let d = tempfile::tempdir().unwrap();
    let chunk = 4usize << 20;
    let data = pattern(6 * chunk + 100, 3);
    {
        let v = start(&fake, d.path()).await;
        let (attr, fh) = v
            .create(ROOT_INO, os("stream"), 0o644, 0o022, RW, ME)
            .await
            .unwrap();
        // Nothing gets through: every chunk written stays pending here.
        fake.hold_uploads();
        for (i, part) in data.chunks(1 << 20).enumerate() {
            v.write(attr.ino, fh, (i << 20) as u64, part).await.unwrap();
        }
        // Chunk 0 and the last, short one are staged; 1-5 are in memory.
        let on_disk = journal_disk_bytes(d.path());
        assert!(
            on_disk < 2 * chunk as u64,
            "chunks held for upload went to the journal: {on_disk} bytes"
        );
        assert!(
            read_file(&v, attr.ino).await.unwrap() == data,
            "the mount reads back other than what was written"
        );
        v.flush(attr.ino, fh).await.unwrap();
        v.release(attr.ino, fh).await.unwrap();
        assert!(journal_disk_bytes(d.path()) >= data.len() as u64);
        // The daemon dies with nothing uploaded.
        v.shutdown().await;
        fake.release_uploads();
    }
    assert!(
        replay_then_read_elsewhere(&fake, d.path(), "stream").await == data,
        "the closed file did not survive the crash"
    );
}

/// Chunks filled in order are uploaded from the copy kept in memory, not
/// read back from the stage: a segment rewritten while its chunk fills, a
/// chunk filled out of order and one rewritten once whole (while uploads
/// are held, so its copy waits) must still upload what was written last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_uploaded_from_memory_carry_the_last_write_of_every_segment() {
    let fake = Arc::new(FakeVault::new());
    let d = tempfile::tempdir().unwrap();
    let chunk = 4usize << 20;
    let seg = 64usize << 10;
    // Chunks 1 to `slots` take the early-upload slots while uploads are
    // held; chunk `slots + 1` is the one whose copy waits.
    let slots = content::EARLY_UPLOADS;
    let (waiting, tail) = (slots + 1, slots + 2);
    let mut data = pattern((slots + 3) * chunk + 100, 9);
    let v = start(&fake, d.path()).await;
    let (attr, fh) = v
        .create(ROOT_INO, os("seq"), 0o644, 0o022, RW, ME)
        .await
        .unwrap();
    // Uploads wait: chunks 1 to `slots` take the early-upload slots, and
    // chunk `waiting`'s copy in memory waits for one.
    fake.hold_uploads();
    let put = |data: &mut Vec<u8>, at: usize, len: usize, salt: u8| {
        let bytes = pattern(len, salt);
        data[at..at + len].copy_from_slice(&bytes);
        bytes
    };
    let mut order: Vec<usize> = (0..data.len().div_ceil(seg)).collect();
    // Chunk 3: its segment 10 first, then the rest in order.
    let ten = 3 * chunk / seg + 10;
    order.retain(|&s| s != ten);
    order.insert(3 * chunk / seg, ten);
    for s in order {
        let at = s * seg;
        let end = (at + seg).min(data.len());
        v.write(attr.ino, fh, at as u64, &data[at..end])
            .await
            .unwrap();
        // Chunk 1: segment 5 rewritten once segments up to 20 are in.
        if s == chunk / seg + 20 {
            let at5 = chunk + 5 * seg;
            let b = put(&mut data, at5, seg, 77);
            v.write(attr.ino, fh, at5 as u64, &b).await.unwrap();
        }
    }
    // Chunk `waiting`, whole and kept (its upload waits for a slot):
    // rewritten in part.
    let at = waiting * chunk + 3 * seg + 17;
    let b = put(&mut data, at, 1000, 78);
    v.write(attr.ino, fh, at as u64, &b).await.unwrap();
    // A write elsewhere moves the tail on, so chunk `waiting` is whole and
    // staged again when its upload gets a slot.
    let at6 = tail * chunk;
    v.write(attr.ino, fh, at6 as u64, &data[at6..at6 + 10])
        .await
        .unwrap();
    fake.release_uploads();
    // Chunks 0 to `waiting` go up early (`waiting` after its copy in
    // memory went stale); `tail` holds the tail.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while stored_objects(&fake) < tail && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        stored_objects(&fake),
        tail,
        "chunks 0-{waiting} were not uploaded early"
    );
    v.flush(attr.ino, fh).await.unwrap();
    v.fsync(attr.ino, fh, false).await.unwrap();
    assert!(
        read_file(&v, attr.ino).await.unwrap() == data,
        "the mount reads back other than what was written"
    );
    v.shutdown().await;
    let back = replay_then_read_elsewhere(&fake, d.path(), "seq").await;
    assert_same_bytes(&back, &data, "on another device");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_feed_vouches_for_unchanged_states_and_drops_changed_ones() {
    let fake = Arc::new(FakeVault::new());
    let d = tempfile::tempdir().unwrap();
    let v = start(&fake, d.path()).await;
    let ino = write_file(&v, ROOT_INO, "f", &pattern(10, 1)).await;
    v.sync_all().await.unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let w = start(&fake, d2.path()).await;
    let a = w.lookup(ROOT_INO, os("f")).await.unwrap();
    assert_eq!(a.size, 10);
    // Long past the attribute TTL, the state is still answered from
    // memory: the change feed keeps saying nothing changed.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(w.getattr_cached(a.ino).map(|x| x.size), Some(10));
    // A change made elsewhere drops it within a poll or two.
    let fh = v.open(ino, RW).await.unwrap();
    v.write(ino, fh, 10, &pattern(5, 2)).await.unwrap();
    v.fsync(ino, fh, false).await.unwrap();
    v.release(ino, fh).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while w.getattr(a.ino).await.unwrap().size != 15 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(w.getattr(a.ino).await.unwrap().size, 15);
}

#[tokio::test]
async fn the_feed_refreshes_what_it_drops_in_one_request() {
    let fake = Arc::new(FakeVault::new());
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let v = start(&fake, d1.path()).await;
    let mut inos = Vec::new();
    for i in 0..20 {
        inos.push(write_file(&v, ROOT_INO, &format!("f{i}"), b"x").await);
    }
    v.sync_all().await.unwrap();
    // Another device changes one of them.
    let w = start(&fake, d2.path()).await;
    let a = w.lookup(ROOT_INO, os("f3")).await.unwrap();
    let set = SetAttr {
        mode: Some(0o600),
        ..SetAttr::default()
    };
    w.setattr(a.ino, None, set).await.unwrap();
    w.sync_all().await.unwrap();
    // Past the attribute lifetime, with the feed polled since: our own
    // commits and their change came back through the feed, and were
    // fetched again in bulk, not one request per file.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let before = fake.node_gets();
    for ino in &inos {
        v.getattr(*ino).await.unwrap();
    }
    assert_eq!(fake.node_gets(), before, "answered without a request each");
    assert_eq!(v.getattr(inos[3]).await.unwrap().perm, 0o600);
    assert_eq!(v.getattr(inos[4]).await.unwrap().perm, 0o644);
}

/// `open` takes the state the change feed vouches for instead of asking
/// the server (rsync and cp open every source file), and still sees a
/// change made elsewhere once the feed has reported it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opens_of_unchanged_files_ask_the_server_nothing() {
    let fake = Arc::new(FakeVault::new());
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let v = start(&fake, d1.path()).await;
    let mut inos = Vec::new();
    for i in 0..20 {
        inos.push(write_file(&v, ROOT_INO, &format!("f{i}"), b"one").await);
    }
    v.sync_all().await.unwrap();
    // Past the attribute lifetime, with the feed polled since.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let before = fake.node_gets();
    for ino in &inos {
        let fh = v.open(*ino, OpenMode::default()).await.unwrap();
        assert_eq!(&v.read(*ino, fh, 0, 10).await.unwrap()[..], b"one");
        v.release(*ino, fh).await.unwrap();
    }
    assert_eq!(fake.node_gets(), before, "no request per open");
    // Changed elsewhere: an open after the feed's next poll has it.
    let w = start(&fake, d2.path()).await;
    let a = w.lookup(ROOT_INO, os("f7")).await.unwrap();
    let wf = w.open(a.ino, RW).await.unwrap();
    w.write(a.ino, wf, 0, b"two").await.unwrap();
    w.fsync(a.ino, wf, false).await.unwrap();
    w.release(a.ino, wf).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let seen = loop {
        let fh = v.open(inos[7], OpenMode::default()).await.unwrap();
        let got = v.read(inos[7], fh, 0, 10).await.unwrap();
        v.release(inos[7], fh).await.unwrap();
        if got[..] == b"two"[..] || std::time::Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(&seen[..], b"two");
}

#[tokio::test]
async fn only_partial_chunks_just_written_stay_in_the_disk_cache() {
    // A full 4 MiB chunk of a big file is not kept after its upload (it
    // would push everything else out of the cache); the file's tail, like
    // any small file, is, so reading it back is local.
    let fake = Arc::new(FakeVault::new());
    let dir = tempfile::tempdir().unwrap();
    let v = start(&fake, dir.path()).await;
    let tail = 1000u64;
    let data = pattern(usize::try_from(file::CHUNK + tail).unwrap(), 5);
    let ino = write_file(&v, ROOT_INO, "big.bin", &data).await;
    v.sync_all().await.unwrap();
    let tail_ct = common::crypto::content::ciphertext_len(tail).unwrap();
    wait_cache_used(&v, tail_ct..=tail_ct).await;
    // Reading it all back downloads the chunk and checks it.
    assert_eq!(read_file(&v, ino).await.unwrap(), data);
    v.shutdown().await;
}

/// Waits (up to 30 s) until the disk cache holds at least `want.start()`
/// bytes (committed objects are written to it in the background), and a
/// moment more to see it holds no more than `want.end()`.
async fn wait_cache_used(v: &Vfs<FakeVault>, want: std::ops::RangeInclusive<u64>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while v.cache_used() < *want.start() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let used = v.cache_used();
    assert!(
        want.contains(&used),
        "{used} bytes in the disk cache, want {want:?}"
    );
}

#[tokio::test]
async fn small_files_committed_in_a_batch_read_back_from_the_disk_cache() {
    let fake = Arc::new(FakeVault::new());
    let dir = tempfile::tempdir().unwrap();
    let v = start(&fake, dir.path()).await;
    let mut files = Vec::new();
    let mut want = 0;
    for i in 0..40u8 {
        let data = pattern(3000 + usize::from(i) * 100, i);
        want += common::crypto::content::ciphertext_len(data.len() as u64).unwrap();
        let ino = write_file(&v, ROOT_INO, &format!("f{i}"), &data).await;
        files.push((ino, data));
    }
    v.sync_all().await.unwrap();
    // The objects, written together in packs: each pack adds a header of
    // 8 bytes and 20 per object.
    wait_cache_used(&v, want..=want + 40 * (8 + 20)).await;
    // Every one reads back with the server unreachable.
    for _ in 0..100_000 {
        fake.fail_next(Injected::Unreachable);
    }
    for (ino, data) in &files {
        assert_eq!(&read_file(&v, *ino).await.unwrap(), data);
    }
    fake.clear_failures();
    v.shutdown().await;
}

/// Reads `ino` from start to end in 1 MiB reads; after the first one,
/// waits until the fake has served `wait_for` whole objects, so the
/// read-ahead it started has landed before the reader gets there.
async fn read_after_readahead(
    v: &Vfs<FakeVault>,
    fake: &FakeVault,
    ino: Ino,
    wait_for: u64,
) -> Vec<u8> {
    let fh = v.open(ino, OpenMode::default()).await.unwrap();
    let size = v.getattr(ino).await.unwrap().size;
    let mut out = Vec::new();
    while (out.len() as u64) < size {
        let chunk = v.read(ino, fh, out.len() as u64, 1 << 20).await.unwrap();
        assert!(!chunk.is_empty(), "short read at {}", out.len());
        if out.is_empty() {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while fake.whole_downloads() < wait_for {
                assert!(
                    std::time::Instant::now() < deadline,
                    "read-ahead never came"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        out.extend_from_slice(&chunk);
    }
    v.release(ino, fh).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequential_read_streams_through_memory_not_the_disk_cache() {
    const CHUNKS: usize = 6;
    let chunk = usize::try_from(file::CHUNK).unwrap();
    let ct_chunk = common::crypto::content::ciphertext_len(file::CHUNK).unwrap();
    let fake = Arc::new(FakeVault::new());
    let data = pattern(CHUNKS * chunk, 5);
    let dir = tempfile::tempdir().unwrap();
    let v = start(&fake, dir.path()).await;
    let ino = write_file(&v, ROOT_INO, "big", &data).await;
    v.sync_all().await.unwrap();
    v.shutdown().await;

    // A memory cache that holds the read-ahead window: the objects read
    // ahead are decrypted into it and never written to the disk cache; only
    // the first, which the reader fetched itself, is. None is fetched twice.
    let streaming = tempfile::tempdir().unwrap();
    let mut cfg = config(streaming.path());
    cfg.memory_cache_bytes = 64 << 20;
    let w = start_with(&fake, cfg).await;
    let ino = w.lookup(ROOT_INO, os("big")).await.map_or(ino, |a| a.ino);
    let before = fake.whole_downloads();
    let got = read_after_readahead(&w, &fake, ino, before + CHUNKS as u64).await;
    assert_same_bytes(&got, &data, "streamed");
    assert_eq!(fake.whole_downloads() - before, CHUNKS as u64);
    assert_eq!(w.cache_used(), ct_chunk);
    w.shutdown().await;

    // A memory cache too small for that: read-ahead goes to the disk cache,
    // so nothing is evicted before it is read and fetched again.
    let small = tempfile::tempdir().unwrap();
    let w = start(&fake, small.path()).await;
    let ino = w.lookup(ROOT_INO, os("big")).await.unwrap().ino;
    let before = fake.whole_downloads();
    let got = read_after_readahead(&w, &fake, ino, before + CHUNKS as u64).await;
    assert_same_bytes(&got, &data, "read ahead to disk");
    assert_eq!(fake.whole_downloads() - before, CHUNKS as u64);
    assert_eq!(w.cache_used(), CHUNKS as u64 * ct_chunk);
    w.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_read_ahead_from_a_tampering_server_give_errors_not_data() {
    const CHUNKS: usize = 3;
    let chunk = usize::try_from(file::CHUNK).unwrap();
    let fake = Arc::new(FakeVault::new());
    let data = pattern(CHUNKS * chunk, 6);
    let dir = tempfile::tempdir().unwrap();
    let v = start(&fake, dir.path()).await;
    write_file(&v, ROOT_INO, "big", &data).await;
    v.sync_all().await.unwrap();
    v.shutdown().await;
    drop(v);
    // A first reader leaves the first chunk in the disk cache, clean.
    let mut cfg = config(dir.path());
    cfg.memory_cache_bytes = 64 << 20;
    let w = start_with(&fake, cfg.clone()).await;
    let ino = w.lookup(ROOT_INO, os("big")).await.unwrap().ino;
    let fh = w.open(ino, OpenMode::default()).await.unwrap();
    let first = w.read(ino, fh, 0, 4096).await.unwrap();
    assert_eq!(&first[..], &data[..4096]);
    w.release(ino, fh).await.unwrap();
    w.shutdown().await;
    drop(w);

    // Then every object on the server is changed, in a segment the reads
    // below need; the memory cache is big enough for read-ahead to stream
    // objects into it (`Content::download_streamed`).
    fake.tamper_objects(|b| {
        let i = b.len() / 3;
        b[i] ^= 1;
    });
    let w = start_with(&fake, cfg).await;
    let ino = w.lookup(ROOT_INO, os("big")).await.unwrap().ino;
    let fh = w.open(ino, OpenMode::default()).await.unwrap();
    let before = fake.whole_downloads();
    let first = w.read(ino, fh, 0, 1 << 20).await.unwrap();
    assert_eq!(&first[..], &data[..1 << 20], "from the disk cache");
    // The read-ahead of the next chunks came and was refused.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while fake.whole_downloads() < before + (CHUNKS as u64 - 1) {
        assert!(
            std::time::Instant::now() < deadline,
            "read-ahead never came"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for k in 1..CHUNKS {
        let at = (k * chunk + chunk / 2) as u64;
        let got = w.read(ino, fh, at, 4096).await;
        assert!(
            matches!(&got, Err(e) if e.errno() == libc::EIO),
            "chunk {k}: {:?}",
            got.map(|b| b.len())
        );
    }
    w.release(ino, fh).await.unwrap();
    w.shutdown().await;
}

#[tokio::test]
async fn reads_within_one_object_are_slices_of_its_plaintext_unless_written_over() {
    let fake = Arc::new(FakeVault::new());
    let d = tempfile::tempdir().unwrap();
    let v = start(&fake, d.path()).await;
    let mut model = pattern(6 * 1024 * 1024, 4);
    write_file(&v, ROOT_INO, "f", &model).await;
    v.sync_all().await.unwrap();
    v.shutdown().await;

    // A fresh mount: every read downloads.
    let d2 = tempfile::tempdir().unwrap();
    let w = start(&fake, d2.path()).await;
    let ino = w.lookup(ROOT_INO, os("f")).await.unwrap().ino;
    let fh = w.open(ino, RW).await.unwrap();
    let (at, len) = (100_000u64, 300_000u32);
    let a = w.read(ino, fh, at, len).await.unwrap();
    let b = w.read(ino, fh, at, len).await.unwrap();
    assert_same_bytes(
        &a,
        &model[at as usize..][..len as usize],
        "within one object",
    );
    assert_eq!(a.as_ptr(), b.as_ptr(), "both slices of the cached object");
    // Across the two objects: assembled, and right.
    let across = w.read(ino, fh, (4 << 20) - 1000, 5000).await.unwrap();
    assert_same_bytes(&across, &model[(4 << 20) - 1000..][..5000], "across");

    // Written over (not yet committed): the read sees the new bytes.
    w.write(ino, fh, at + 70_000, &[0xEE; 10]).await.unwrap();
    model[(at + 70_000) as usize..][..10].fill(0xEE);
    let c = w.read(ino, fh, at, len).await.unwrap();
    assert_same_bytes(&c, &model[at as usize..][..len as usize], "written over");
    // Still the object's bytes in the segments nothing touched.
    let d = w.read(ino, fh, 2 << 20, 4096).await.unwrap();
    assert_same_bytes(&d, &model[2 << 20..][..4096], "untouched segment");
    w.release(ino, fh).await.unwrap();
    w.shutdown().await;
}
