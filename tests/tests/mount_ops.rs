//! Every filesystem operation through a real FUSE mount of the real `vault`
//! daemon against the real server, on SQLite and on MariaDB: plain `std::fs`
//! and `std::os::unix` calls (libc only where std has no wrapper:
//! `renameat2`, `fallocate`, xattrs, `statfs`), checking exact bytes,
//! metadata and errno, and that everything survives an unmount and a mount
//! (and a fresh device).
//!
//! Run one: `cargo test -p tests --test mount_ops sqlite::renames`
//! (set `VAULT_TEST_KEEP_CLIENT=1` to keep the client state and logs).

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::{
    DirBuilderExt as _, FileExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tests::Backend;
use tests::mount::data::{assert_bytes, pattern, sha256_file, write_stamped};
use tests::mount::tree::{Compare, assert_same, snapshot};
use tests::mount::{TestMount, blocking, sys};

tests::on_both_backends!(
    files_write_read_overwrite_append,
    sparse_files_and_truncate,
    modes_times_and_owner,
    directories,
    ten_thousand_files,
    unlink_of_an_open_file,
    renames,
    symlinks_and_hard_links,
    statfs_xattrs_fallocate_fsync,
    one_gib_round_trip,
    persistence_across_remount_and_devices,
);

const MIB: usize = 1 << 20;
const STEP: Duration = Duration::from_secs(300);

/// The errno of a failed call; panics if it succeeded.
#[track_caller]
fn errno<T: std::fmt::Debug>(what: &str, r: io::Result<T>) -> i32 {
    match r {
        Ok(v) => panic!("{what}: succeeded ({v:?}) but must fail"),
        Err(e) => e
            .raw_os_error()
            .unwrap_or_else(|| panic!("{what}: an error without errno: {e}")),
    }
}

/// Panics unless `r` failed with `want`.
#[track_caller]
fn expect_errno<T: std::fmt::Debug>(what: &str, r: io::Result<T>, want: i32) {
    let got = errno(what, r);
    assert_eq!(
        got,
        want,
        "{what}: errno {got} ({}), expected {want} ({})",
        io::Error::from_raw_os_error(got),
        io::Error::from_raw_os_error(want)
    );
}

#[track_caller]
fn read(p: &Path) -> Vec<u8> {
    fs::read(p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

#[track_caller]
fn write(p: &Path, bytes: &[u8]) {
    fs::write(p, bytes).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
}

#[track_caller]
fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()))
        .mode()
        & 0o7777
}

fn names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Our uid and gid (the owner of a file we create outside the mount).
fn me() -> (u32, u32) {
    let f = tempfile::NamedTempFile::new().unwrap();
    let md = f.as_file().metadata().unwrap();
    (md.uid(), md.gid())
}

fn at(secs: u64, nanos: u32) -> SystemTime {
    UNIX_EPOCH + Duration::new(secs, nanos)
}

// ---------------------------------------------------------------------------

async fn files_write_read_overwrite_append(b: Backend) {
    let Some(mut v) = tests::mount::start(b).await else {
        return;
    };
    let root = v.mount.path().to_owned();
    let r = root.clone();
    let (big, appended) = blocking("write, overwrite, append", STEP, move || {
        // Create, write, read back; the mode given at create is kept.
        let hello = r.join("hello.txt");
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(&hello)
            .unwrap();
        f.write_all(b"hello, vault\n").unwrap();
        drop(f);
        assert_eq!(read(&hello), b"hello, vault\n");
        let md = fs::metadata(&hello).unwrap();
        assert!(md.is_file());
        assert_eq!(md.len(), 13);
        assert_eq!(md.mode() & 0o7777, 0o640, "create mode");
        assert_eq!((md.uid(), md.gid()), me(), "owner of a new file");
        expect_errno(
            "O_EXCL create of an existing file",
            OpenOptions::new().write(true).create_new(true).open(&hello),
            libc::EEXIST,
        );
        expect_errno(
            "open of a missing file",
            File::open(r.join("missing")),
            libc::ENOENT,
        );

        // Overwrite in the middle, across 4 KiB, 64 KiB and 1 MiB boundaries.
        let big = r.join("big.bin");
        let mut model = pattern(1, 3 * MIB + 17);
        write(&big, &model);
        let f = OpenOptions::new().write(true).open(&big).unwrap();
        for (off, len, byte) in [
            (MIB - 5000, 10_000, 0xABu8),
            (65_536 - 3, 7, 0xCD),
            (4095, 2, 0xEF),
            (2 * MIB + 1, 100_000, 0x11),
            (3 * MIB + 10, 7, 0x22),
        ] {
            f.write_all_at(&vec![byte; len], off as u64).unwrap();
            model[off..off + len].fill(byte);
        }
        // Read-your-writes through the same descriptor, before close.
        let mut f2 = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&big)
            .unwrap();
        let mut buf = vec![0u8; 10_000];
        f2.read_exact_at(&mut buf, (MIB - 5000) as u64).unwrap();
        assert!(buf.iter().all(|&x| x == 0xAB), "read after pwrite");
        f2.seek(SeekFrom::Start(10)).unwrap();
        f2.write_all(b"0123456789").unwrap();
        model[10..20].copy_from_slice(b"0123456789");
        drop(f);
        drop(f2);
        assert_eq!(fs::metadata(&big).unwrap().len(), model.len() as u64);
        assert_bytes("big.bin after overwrites", &read(&big), &model);

        // Append.
        let app = r.join("append.log");
        let mut appended = Vec::new();
        for (i, n) in [1usize, 4097, 70_000, 3, MIB + 1].into_iter().enumerate() {
            let mut f = OpenOptions::new()
                .append(true)
                .create(true)
                .open(&app)
                .unwrap();
            let chunk = pattern(100 + i as u64, n);
            f.write_all(&chunk).unwrap();
            appended.extend_from_slice(&chunk);
        }
        assert_bytes("append.log", &read(&app), &appended);

        // Re-create with truncation: no stale tail.
        write(&hello, b"short");
        assert_eq!(read(&hello), b"short");
        let mut s = String::new();
        File::open(&hello).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "short");
        (model, appended)
    })
    .await;

    v.mount.unmount();
    v.mount.remount();
    let r = root.clone();
    blocking("read back after remount", STEP, move || {
        assert_eq!(read(&r.join("hello.txt")), b"short");
        assert_eq!(mode(&r.join("hello.txt")), 0o640);
        assert_bytes("big.bin after remount", &read(&r.join("big.bin")), &big);
        assert_bytes(
            "append.log after remount",
            &read(&r.join("append.log")),
            &appended,
        );
    })
    .await;
}

async fn sparse_files_and_truncate(b: Backend) {
    let Some(mut v) = tests::mount::start(b).await else {
        return;
    };
    let root = v.mount.path().to_owned();
    const HOLE: u64 = 10 * MIB as u64 + 123;

    fn check_sparse(p: &Path) {
        let md = fs::metadata(p).unwrap();
        assert_eq!(md.len(), HOLE + 4, "size of the sparse file");
        let mut f = File::open(p).unwrap();
        let mut buf = vec![0u8; MIB];
        let mut pos = 0u64;
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            for (i, &byte) in buf[..n].iter().enumerate() {
                let off = pos + i as u64;
                let want = if off == 5 * MIB as u64 {
                    b'M'
                } else if off >= HOLE {
                    b"tail"[(off - HOLE) as usize]
                } else {
                    0
                };
                assert_eq!(byte, want, "sparse file byte {off}");
            }
            pos += n as u64;
        }
        assert_eq!(pos, HOLE + 4, "bytes read from the sparse file");
    }

    let r = root.clone();
    blocking("sparse and truncate", STEP, move || {
        // Seek past the end, write: the hole reads as zeros.
        let sparse = r.join("sparse.bin");
        let mut f = File::create(&sparse).unwrap();
        f.seek(SeekFrom::Start(HOLE)).unwrap();
        f.write_all(b"tail").unwrap();
        f.write_all_at(b"M", 5 * MIB as u64).unwrap();
        drop(f);
        check_sparse(&sparse);
        // A read at an offset inside the hole.
        let mut buf = [0xFFu8; 64];
        File::open(&sparse)
            .unwrap()
            .read_exact_at(&mut buf, 3 * MIB as u64 + 5)
            .unwrap();
        assert_eq!(buf, [0u8; 64]);

        // Truncate down, then up: the old bytes past the cut are gone.
        let t = r.join("trunc.bin");
        let p = pattern(7, MIB);
        write(&t, &p);
        let f = OpenOptions::new().write(true).open(&t).unwrap();
        f.set_len(100).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 100);
        drop(f);
        assert_eq!(read(&t), &p[..100]);
        let f = OpenOptions::new().write(true).open(&t).unwrap();
        f.set_len(3 * MIB as u64 + 5).unwrap();
        drop(f);
        let got = read(&t);
        assert_eq!(got.len(), 3 * MIB + 5);
        assert_eq!(&got[..100], &p[..100]);
        assert!(
            got[100..].iter().all(|&x| x == 0),
            "bytes past a truncate-down then up are not zero (first non-zero at {:?})",
            got[100..].iter().position(|&x| x != 0).map(|i| i + 100)
        );
        // Truncate to a non-aligned size inside data, then write past it.
        let t2 = r.join("trunc2.bin");
        let p2 = pattern(8, 200_000);
        write(&t2, &p2);
        let f = OpenOptions::new().write(true).open(&t2).unwrap();
        f.set_len(70_001).unwrap();
        f.write_all_at(b"XYZ", 80_000).unwrap();
        drop(f);
        let mut want = p2[..70_001].to_vec();
        want.resize(80_000, 0);
        want.extend_from_slice(b"XYZ");
        assert_bytes("trunc2.bin", &read(&t2), &want);
        // O_TRUNC and truncate to zero.
        drop(
            OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&t2)
                .unwrap(),
        );
        assert_eq!(fs::metadata(&t2).unwrap().len(), 0);
        assert!(read(&t2).is_empty());
        // truncate(2) by path (coreutils `truncate`).
        let out = tests::mount::run_program(
            "truncate",
            &["-s", "12345", &t.to_string_lossy()],
            None,
            Duration::from_secs(60),
        );
        out.assert_success();
        assert_eq!(fs::metadata(&t).unwrap().len(), 12345);
        assert_eq!(&read(&t)[..100], &p[..100]);
    })
    .await;

    v.mount.unmount();
    v.mount.remount();
    let r = root.clone();
    blocking(
        "sparse and truncated files after remount",
        STEP,
        move || {
            check_sparse(&r.join("sparse.bin"));
            let t = read(&r.join("trunc.bin"));
            assert_eq!(t.len(), 12345);
            assert_eq!(&t[..100], &pattern(7, MIB)[..100]);
            assert!(t[100..].iter().all(|&x| x == 0));
            assert_eq!(fs::metadata(r.join("trunc2.bin")).unwrap().len(), 0);
        },
    )
    .await;
}

async fn modes_times_and_owner(b: Backend) {
    let Some(mut v) = tests::mount::start(b).await else {
        return;
    };
    let root = v.mount.path().to_owned();
    let r = root.clone();
    blocking("chmod, utimens, chown", STEP, move || {
        let f = r.join("f");
        write(&f, b"x");
        for m in [0o600, 0o751, 0o444, 0o640, 0o4755, 0o1777, 0o644] {
            fs::set_permissions(&f, fs::Permissions::from_mode(m)).unwrap();
            assert_eq!(mode(&f), m, "chmod {m:o}");
        }
        fs::set_permissions(&f, fs::Permissions::from_mode(0o640)).unwrap();
        // fchmod on an open descriptor.
        let file = OpenOptions::new().write(true).open(&f).unwrap();
        file.set_permissions(fs::Permissions::from_mode(0o604))
            .unwrap();
        drop(file);
        assert_eq!(mode(&f), 0o604, "fchmod");
        let d = r.join("d");
        fs::DirBuilder::new().mode(0o750).create(&d).unwrap();
        assert_eq!(mode(&d), 0o750, "mkdir mode");
        fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(mode(&d), 0o700, "chmod of a directory");

        // utimens: both times, to the nanosecond.
        let mtime = at(981_173_106, 123_456_789);
        let atime = at(1_000_000_000, 987_654_321);
        let file = OpenOptions::new().write(true).open(&f).unwrap();
        file.set_times(fs::FileTimes::new().set_modified(mtime).set_accessed(atime))
            .unwrap();
        drop(file);
        let md = fs::metadata(&f).unwrap();
        assert_eq!(
            (md.mtime(), md.mtime_nsec()),
            (981_173_106, 123_456_789),
            "mtime after utimens"
        );
        assert_eq!(
            (md.atime(), md.atime_nsec()),
            (1_000_000_000, 987_654_321),
            "atime after utimens"
        );
        // A directory's times.
        let dir = File::open(&d).unwrap();
        dir.set_modified(at(1_234_567_890, 5)).unwrap();
        drop(dir);
        let md = fs::metadata(&d).unwrap();
        assert_eq!((md.mtime(), md.mtime_nsec()), (1_234_567_890, 5));
        // A symlink's own times (lutimes), as cp -a, tar and rsync set them.
        let l = r.join("link");
        std::os::unix::fs::symlink("f", &l).unwrap();
        let out = tests::mount::run_program(
            "touch",
            &["-h", "-m", "-d", "@1111111111.5", &l.to_string_lossy()],
            None,
            Duration::from_secs(60),
        );
        out.assert_success();
        let md = fs::symlink_metadata(&l).unwrap();
        assert_eq!(
            (md.mtime(), md.mtime_nsec()),
            (1_111_111_111, 500_000_000),
            "symlink mtime (lutimes)"
        );
        assert_eq!(
            fs::metadata(&f).unwrap().mtime(),
            981_173_106,
            "lutimes of the link changed its target"
        );

        // A write moves mtime to now; a chmod moves ctime, not mtime.
        let before = SystemTime::now() - Duration::from_secs(60);
        let mut file = OpenOptions::new().append(true).open(&f).unwrap();
        file.write_all(b"y").unwrap();
        drop(file);
        let md = fs::metadata(&f).unwrap();
        assert!(
            md.modified().unwrap() >= before,
            "mtime did not move on write: {:?}",
            md.modified()
        );
        let g = r.join("g");
        write(&g, b"g");
        File::options()
            .write(true)
            .open(&g)
            .unwrap()
            .set_modified(at(1_500_000_000, 0))
            .unwrap();
        fs::set_permissions(&g, fs::Permissions::from_mode(0o600)).unwrap();
        let md = fs::metadata(&g).unwrap();
        assert_eq!(md.mtime(), 1_500_000_000, "chmod changed mtime");
        assert!(md.ctime() >= before.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64);

        // chown to the same owner: allowed, nothing changes.
        let (uid, gid) = me();
        std::os::unix::fs::chown(&f, Some(uid), Some(gid)).unwrap();
        std::os::unix::fs::chown(&d, Some(uid), None).unwrap();
        std::os::unix::fs::fchown(File::open(&g).unwrap(), Some(uid), Some(gid)).unwrap();
        std::os::unix::fs::lchown(&l, Some(uid), Some(gid)).unwrap();
        let md = fs::metadata(&f).unwrap();
        assert_eq!((md.uid(), md.gid()), (uid, gid));
        assert_eq!(mode(&f), 0o604, "chown changed the mode");
    })
    .await;

    v.mount.unmount();
    v.mount.remount();
    let r = root.clone();
    blocking("modes and times after remount", STEP, move || {
        assert_eq!(mode(&r.join("f")), 0o604);
        assert_eq!(mode(&r.join("d")), 0o700);
        assert_eq!(mode(&r.join("g")), 0o600);
        let md = fs::metadata(r.join("d")).unwrap();
        assert_eq!((md.mtime(), md.mtime_nsec()), (1_234_567_890, 5));
        let md = fs::metadata(r.join("g")).unwrap();
        assert_eq!((md.mtime(), md.mtime_nsec()), (1_500_000_000, 0));
        let md = fs::symlink_metadata(r.join("link")).unwrap();
        assert_eq!((md.mtime(), md.mtime_nsec()), (1_111_111_111, 500_000_000));
        assert_eq!(read(&r.join("f")), b"xy");
    })
    .await;
}

async fn directories(b: Backend) {
    let Some(mut v) = tests::mount::start(b).await else {
        return;
    };
    let root = v.mount.path().to_owned();
    let long = "n".repeat(255);
    let odd = [
        "héllo wörld ✓",
        "with space",
        "line\nbreak",
        "-dash",
        ".hidden",
        "tab\tname",
    ];
    let r = root.clone();
    let long2 = long.clone();
    blocking("mkdir, rmdir, readdir", STEP, move || {
        let d = r.join("d");
        fs::create_dir(&d).unwrap();
        assert!(fs::metadata(&d).unwrap().is_dir());
        expect_errno("mkdir of an existing dir", fs::create_dir(&d), libc::EEXIST);
        fs::create_dir_all(d.join("a/b/c")).unwrap();
        write(&d.join("a/file"), b"f");
        std::os::unix::fs::symlink("file", d.join("a/sym")).unwrap();
        expect_errno(
            "rmdir of a non-empty dir",
            fs::remove_dir(&d),
            libc::ENOTEMPTY,
        );
        expect_errno(
            "rmdir of a non-empty dir (a/b)",
            fs::remove_dir(d.join("a/b")),
            libc::ENOTEMPTY,
        );
        expect_errno(
            "rmdir of a file",
            fs::remove_dir(d.join("a/file")),
            libc::ENOTDIR,
        );
        expect_errno(
            "unlink of a directory",
            fs::remove_file(d.join("a/b")),
            libc::EISDIR,
        );
        expect_errno(
            "rmdir of a missing dir",
            fs::remove_dir(d.join("nope")),
            libc::ENOENT,
        );
        expect_errno(
            "create under a file",
            File::create(d.join("a/file/x")),
            libc::ENOTDIR,
        );
        expect_errno(
            "create under a missing dir",
            File::create(d.join("nope/x")),
            libc::ENOENT,
        );
        expect_errno(
            "mkdir of an existing file's name",
            fs::create_dir(d.join("a/file")),
            libc::EEXIST,
        );

        // readdir: names and types.
        let types: Vec<(String, &str)> = {
            let mut v: Vec<(String, &str)> = fs::read_dir(d.join("a"))
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    let t = e.file_type().unwrap();
                    let kind = if t.is_symlink() {
                        "symlink"
                    } else if t.is_dir() {
                        "dir"
                    } else {
                        "file"
                    };
                    (e.file_name().to_string_lossy().into_owned(), kind)
                })
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            types,
            vec![
                ("b".to_owned(), "dir"),
                ("file".to_owned(), "file"),
                ("sym".to_owned(), "symlink")
            ]
        );

        fs::remove_dir(d.join("a/b/c")).unwrap();
        fs::remove_dir(d.join("a/b")).unwrap();
        assert_eq!(
            names(&d.join("a")),
            ["file", "sym"].map(str::to_owned).into()
        );
        expect_errno(
            "stat of a removed dir",
            fs::metadata(d.join("a/b")),
            libc::ENOENT,
        );

        // Names: the longest allowed, one byte more, odd characters.
        let n = r.join("names");
        fs::create_dir(&n).unwrap();
        write(&n.join(&long2), b"long");
        expect_errno(
            "a 256-byte name",
            File::create(n.join(format!("{long2}x"))),
            libc::ENAMETOOLONG,
        );
        for name in odd {
            write(&n.join(name), name.as_bytes());
        }
        let mut want: BTreeSet<String> = odd.iter().map(|s| (*s).to_owned()).collect();
        want.insert(long2.clone());
        assert_eq!(names(&n), want);
        for name in odd {
            assert_eq!(read(&n.join(name)), name.as_bytes());
        }
        // An empty directory lists nothing; removing it works.
        fs::create_dir(r.join("empty")).unwrap();
        assert!(names(&r.join("empty")).is_empty());
        fs::create_dir(r.join("gone")).unwrap();
        fs::remove_dir(r.join("gone")).unwrap();
    })
    .await;

    v.mount.unmount();
    v.mount.remount();
    let r = root.clone();
    blocking("directories after remount", STEP, move || {
        assert_eq!(names(&r), ["d", "empty", "names"].map(str::to_owned).into());
        assert_eq!(
            names(&r.join("d/a")),
            ["file", "sym"].map(str::to_owned).into()
        );
        let mut want: BTreeSet<String> = odd.iter().map(|s| (*s).to_owned()).collect();
        want.insert(long.clone());
        assert_eq!(names(&r.join("names")), want);
        assert_eq!(read(&r.join("names").join(&long)), b"long");
        for name in odd {
            assert_eq!(read(&r.join("names").join(name)), name.as_bytes());
        }
    })
    .await;
}

/// 10 000 files (`VAULT_TEST_MANY_FILES`) in one directory: created with
/// content, listed (every name exactly once), a sample read back at once,
/// then after a remount listed again and every one read back (from the
/// server or the ciphertext cache, not the kernel's page cache).
async fn ten_thousand_files(b: Backend) {
    let Some(mut v) = tests::mount::start(b).await else {
        return;
    };
    let n = usize::try_from(tests::mount::env_knob("VAULT_TEST_MANY_FILES", 10_000)).unwrap();
    let name = |i: usize| format!("entry-{i:05}-{}", "x".repeat(i % 40));
    let content = |i: usize| format!("file number {i}\n{}", "y".repeat(i % 97)).into_bytes();
    let root = v.mount.path().to_owned();
    let dir = root.join("big");
    let d = dir.clone();
    let t = std::time::Instant::now();
    blocking(
        &format!("create {n} small files"),
        Duration::from_secs(1200),
        move || {
            fs::create_dir(&d).unwrap();
            for i in 0..n {
                let mut f = File::create(d.join(name(i))).unwrap();
                f.write_all(&content(i)).unwrap();
            }
        },
    )
    .await;
    eprintln!("{:.1?} per create", t.elapsed() / u32::try_from(n).unwrap());
    let want: BTreeSet<String> = (0..n).map(name).collect();
    let check = move |d: PathBuf| {
        let mut seen = Vec::with_capacity(n);
        for e in fs::read_dir(&d).unwrap() {
            seen.push(e.unwrap().file_name().to_string_lossy().into_owned());
        }
        let count = seen.len();
        let set: BTreeSet<String> = seen.into_iter().collect();
        assert_eq!(count, set.len(), "readdir returned duplicates");
        let missing: Vec<&String> = want.difference(&set).take(5).collect();
        let extra: Vec<&String> = set.difference(&want).take(5).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "readdir of {n} entries: {count} names; missing e.g. {missing:?}; extra e.g. {extra:?}"
        );
    };
    let read_some = move |d: PathBuf, step: usize| {
        for i in (0..n).step_by(step) {
            let p = d.join(name(i));
            assert_eq!(read(&p), content(i), "content of {}", p.display());
        }
    };
    let c = check.clone();
    let d = dir.clone();
    blocking(&format!("readdir of {n} entries"), STEP, move || c(d)).await;
    let d = dir.clone();
    blocking("read every 20th file", STEP, move || read_some(d, 20)).await;

    v.mount.unmount();
    v.mount.remount();
    let d = dir.clone();
    blocking(
        &format!("readdir of {n} entries after remount"),
        STEP,
        move || check(d),
    )
    .await;
    let d = dir.clone();
    let t = std::time::Instant::now();
    blocking(
        &format!("read {n} files after remount"),
        Duration::from_secs(1200),
        move || read_some(d, 1),
    )
    .await;
    eprintln!(
        "{:.1?} per open+read+close",
        t.elapsed() / u32::try_from(n).unwrap()
    );
}

async fn unlink_of_an_open_file(b: Backend) {
    let Some(v) = tests::mount::start(b).await else {
        return;
    };
    let r = v.mount.path().to_owned();
    blocking("unlink and rename over open files", STEP, move || {
        let d = r.join("d");
        fs::create_dir(&d).unwrap();
        let p = d.join("open.txt");
        let first = pattern(3, 200_000);
        write(&p, &first);
        let mut f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
        fs::remove_file(&p).unwrap();
        expect_errno("stat after unlink", fs::metadata(&p), libc::ENOENT);
        assert!(
            names(&d).is_empty(),
            "the directory still lists: {:?}",
            names(&d)
        );
        // Still readable and writable through the descriptor.
        let mut got = Vec::new();
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_to_end(&mut got).unwrap();
        assert_bytes("read of an unlinked open file", &got, &first);
        f.write_all_at(b"still here", 5).unwrap();
        let mut buf = [0u8; 10];
        f.read_exact_at(&mut buf, 5).unwrap();
        assert_eq!(&buf, b"still here");
        // Checked last, so that the checks after it run too.
        let unlinked_nlink = f.metadata().unwrap().nlink();
        // A new file of the same name is another file.
        write(&p, b"new");
        let mut buf = [0u8; 4];
        f.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, &first[..4]);
        drop(f);
        assert_eq!(read(&p), b"new");
        assert_eq!(names(&d), ["open.txt".to_owned()].into());

        // rename over a file that is open for reading.
        let g = d.join("g");
        write(&g, b"old g");
        let old = File::open(&g).unwrap();
        write(&d.join("h"), b"new g");
        fs::rename(d.join("h"), &g).unwrap();
        let mut s = String::new();
        (&old).read_to_string(&mut s).unwrap();
        assert_eq!(s, "old g", "an open file replaced by rename");
        drop(old);
        assert_eq!(read(&g), b"new g");
        assert_eq!(names(&d), ["g", "open.txt"].map(str::to_owned).into());
        assert_eq!(unlinked_nlink, 0, "fstat's nlink of an unlinked open file");
        let big = pattern(11, 9_000_000);
        write(&d.join("big.bin"), &big);
        File::open(d.join("big.bin")).unwrap().sync_all().unwrap();
    })
    .await;

    // Another device, with nothing of the file cached, opens it, removes
    // its name and still reads every byte (the server alone would have
    // freed its objects).
    let mut other = TestMount::new(&v.server, &v.account).await;
    let r2 = other.path().to_owned();
    blocking(
        "read an unlinked file nothing of which is cached",
        STEP,
        move || {
            let p = r2.join("d").join("big.bin");
            let f = File::open(&p).unwrap();
            fs::remove_file(&p).unwrap();
            expect_errno("stat after unlink", fs::metadata(&p), libc::ENOENT);
            assert_eq!(
                names(&r2),
                ["d".to_owned()].into(),
                "the root lists a hidden name"
            );
            let mut got = Vec::new();
            (&f).read_to_end(&mut got).unwrap();
            assert_bytes(
                "an unlinked file read on another device",
                &got,
                &pattern(11, 9_000_000),
            );
            drop(f);
            assert_eq!(
                names(&r2.join("d")),
                ["g", "open.txt"].map(str::to_owned).into()
            );
        },
    )
    .await;
    other.unmount();
}

async fn renames(b: Backend) {
    let Some(mut v) = tests::mount::start(b).await else {
        return;
    };
    let root = v.mount.path().to_owned();
    let r = root.clone();
    blocking("renames", STEP, move || {
        write(&r.join("a"), b"A");
        write(&r.join("b"), b"B");
        // Plain rename to a new name.
        fs::rename(r.join("a"), r.join("a2")).unwrap();
        expect_errno(
            "old name after rename",
            fs::metadata(r.join("a")),
            libc::ENOENT,
        );
        assert_eq!(read(&r.join("a2")), b"A");
        // Over an existing file.
        fs::rename(r.join("a2"), r.join("b")).unwrap();
        assert_eq!(read(&r.join("b")), b"A");
        expect_errno(
            "source after rename over",
            fs::metadata(r.join("a2")),
            libc::ENOENT,
        );
        // To the same name: nothing happens.
        fs::rename(r.join("b"), r.join("b")).unwrap();
        assert_eq!(read(&r.join("b")), b"A");

        // RENAME_NOREPLACE.
        write(&r.join("c"), b"C");
        expect_errno(
            "RENAME_NOREPLACE onto an existing file",
            sys::renameat2(&r.join("c"), &r.join("b"), sys::RENAME_NOREPLACE),
            libc::EEXIST,
        );
        assert_eq!(read(&r.join("b")), b"A");
        assert_eq!(read(&r.join("c")), b"C");
        sys::renameat2(&r.join("c"), &r.join("c2"), sys::RENAME_NOREPLACE).unwrap();
        assert_eq!(read(&r.join("c2")), b"C");

        // RENAME_EXCHANGE: two files, then a file and a directory.
        sys::renameat2(&r.join("b"), &r.join("c2"), sys::RENAME_EXCHANGE).unwrap();
        assert_eq!(read(&r.join("b")), b"C");
        assert_eq!(read(&r.join("c2")), b"A");
        fs::create_dir(r.join("dx")).unwrap();
        write(&r.join("dx/inner"), b"I");
        sys::renameat2(&r.join("b"), &r.join("dx"), sys::RENAME_EXCHANGE).unwrap();
        assert!(fs::metadata(r.join("b")).unwrap().is_dir());
        assert_eq!(read(&r.join("b/inner")), b"I");
        assert_eq!(read(&r.join("dx")), b"C");
        expect_errno(
            "RENAME_EXCHANGE with a missing target",
            sys::renameat2(&r.join("c2"), &r.join("missing"), sys::RENAME_EXCHANGE),
            libc::ENOENT,
        );

        // Directories: moved with their contents.
        fs::create_dir_all(r.join("p/q")).unwrap();
        write(&r.join("p/q/deep"), b"deep");
        fs::create_dir(r.join("other")).unwrap();
        fs::rename(r.join("p"), r.join("other/p")).unwrap();
        assert_eq!(read(&r.join("other/p/q/deep")), b"deep");
        expect_errno(
            "moved dir's old path",
            fs::metadata(r.join("p")),
            libc::ENOENT,
        );
        // Into its own subtree.
        expect_errno(
            "rename of a directory into its own subtree",
            fs::rename(r.join("other"), r.join("other/p/q/sub")),
            libc::EINVAL,
        );
        // Over an empty directory: fine; over a non-empty one: refused.
        fs::create_dir(r.join("emptyd")).unwrap();
        fs::rename(r.join("other/p/q"), r.join("emptyd")).unwrap();
        assert_eq!(read(&r.join("emptyd/deep")), b"deep");
        fs::create_dir(r.join("full")).unwrap();
        write(&r.join("full/x"), b"x");
        let e = errno(
            "rename of a dir over a non-empty dir",
            fs::rename(r.join("emptyd"), r.join("full")),
        );
        assert!(
            e == libc::ENOTEMPTY || e == libc::EEXIST,
            "rename over a non-empty dir: errno {e}"
        );
        expect_errno(
            "rename of a file over a directory",
            fs::rename(r.join("c2"), r.join("full")),
            libc::EISDIR,
        );
        expect_errno(
            "rename of a directory over a file",
            fs::rename(r.join("full"), r.join("c2")),
            libc::ENOTDIR,
        );
        expect_errno(
            "rename of a missing file",
            fs::rename(r.join("missing"), r.join("x")),
            libc::ENOENT,
        );
        // Across directories, over an existing file.
        write(&r.join("full/y"), b"Y");
        fs::rename(r.join("full/y"), r.join("emptyd/deep")).unwrap();
        assert_eq!(read(&r.join("emptyd/deep")), b"Y");
        // A file renamed while open keeps its descriptor working.
        let mut f = OpenOptions::new().append(true).open(r.join("c2")).unwrap();
        fs::rename(r.join("c2"), r.join("full/c3")).unwrap();
        f.write_all(b"+").unwrap();
        drop(f);
        assert_eq!(read(&r.join("full/c3")), b"A+");
    })
    .await;

    let expect = |r: &Path| {
        assert_eq!(
            names(r),
            ["b", "dx", "emptyd", "full", "other"]
                .map(str::to_owned)
                .into()
        );
        assert_eq!(read(&r.join("b/inner")), b"I");
        assert_eq!(read(&r.join("dx")), b"C");
        assert_eq!(read(&r.join("emptyd/deep")), b"Y");
        assert_eq!(
            names(&r.join("full")),
            ["c3", "x"].map(str::to_owned).into()
        );
        assert_eq!(read(&r.join("full/c3")), b"A+");
        assert_eq!(names(&r.join("other/p")), BTreeSet::new());
    };
    let r = root.clone();
    blocking("state after renames", STEP, move || expect(&r)).await;
    v.mount.unmount();
    v.mount.remount();
    let r = root.clone();
    blocking("state after renames, after remount", STEP, move || {
        expect(&r)
    })
    .await;
}

async fn symlinks_and_hard_links(b: Backend) {
    let Some(mut v) = tests::mount::start(b).await else {
        return;
    };
    let root = v.mount.path().to_owned();
    let long_target = format!("{}/end", "segment".repeat(500));
    let r = root.clone();
    let lt = long_target.clone();
    blocking("symlinks and hard links", STEP, move || {
        use std::os::unix::fs::symlink;
        write(&r.join("target.txt"), b"through the link");
        symlink("target.txt", r.join("link")).unwrap();
        assert_eq!(
            fs::read_link(r.join("link")).unwrap(),
            Path::new("target.txt")
        );
        assert!(
            fs::symlink_metadata(r.join("link"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(
            fs::symlink_metadata(r.join("link")).unwrap().len(),
            "target.txt".len() as u64,
            "a symlink's size is its target's length"
        );
        assert_eq!(read(&r.join("link")), b"through the link");
        // Dangling, odd, absolute and long targets are kept as given.
        symlink("nowhere/../x y", r.join("dangling")).unwrap();
        assert_eq!(
            fs::read_link(r.join("dangling")).unwrap(),
            Path::new("nowhere/../x y")
        );
        expect_errno(
            "read through a dangling link",
            fs::read(r.join("dangling")),
            libc::ENOENT,
        );
        symlink("/etc/hostname", r.join("abs")).unwrap();
        assert_eq!(
            fs::read_link(r.join("abs")).unwrap(),
            Path::new("/etc/hostname")
        );
        symlink(&lt, r.join("long")).unwrap();
        assert_eq!(fs::read_link(r.join("long")).unwrap(), Path::new(&lt));
        expect_errno(
            "symlink over an existing name",
            symlink("x", r.join("link")),
            libc::EEXIST,
        );
        expect_errno(
            "readlink of a regular file",
            fs::read_link(r.join("target.txt")),
            libc::EINVAL,
        );
        // A link to a directory.
        fs::create_dir(r.join("sub")).unwrap();
        write(&r.join("sub/inner"), b"inner");
        symlink("sub", r.join("dirlink")).unwrap();
        assert_eq!(read(&r.join("dirlink/inner")), b"inner");

        // Hard links.
        let f = r.join("f");
        write(&f, b"shared");
        fs::hard_link(&f, r.join("sub/g")).unwrap();
        let (mf, mg) = (
            fs::metadata(&f).unwrap(),
            fs::metadata(r.join("sub/g")).unwrap(),
        );
        assert_eq!(mf.nlink(), 2, "nlink after link");
        assert_eq!(mg.nlink(), 2);
        assert_eq!(mf.ino(), mg.ino(), "a hard link has the same inode");
        assert_eq!(read(&r.join("sub/g")), b"shared");
        let mut a = OpenOptions::new()
            .append(true)
            .open(r.join("sub/g"))
            .unwrap();
        a.write_all(b" more").unwrap();
        drop(a);
        assert_eq!(read(&f), b"shared more", "a write through one name");
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(mode(&r.join("sub/g")), 0o600, "chmod through one name");
        expect_errno(
            "link onto an existing name",
            fs::hard_link(&f, r.join("target.txt")),
            libc::EEXIST,
        );
        expect_errno(
            "link of a directory",
            fs::hard_link(r.join("sub"), r.join("sub2")),
            libc::EPERM,
        );
        fs::remove_file(&f).unwrap();
        assert_eq!(read(&r.join("sub/g")), b"shared more");
        assert_eq!(
            fs::metadata(r.join("sub/g")).unwrap().nlink(),
            1,
            "nlink after unlink"
        );
        // A pair that stays for the remount.
        write(&r.join("h1"), b"pair");
        fs::hard_link(r.join("h1"), r.join("h2")).unwrap();
    })
    .await;

    v.mount.unmount();
    v.mount.remount();
    let r = root.clone();
    blocking("links after remount", STEP, move || {
        assert_eq!(
            fs::read_link(r.join("link")).unwrap(),
            Path::new("target.txt")
        );
        assert_eq!(
            fs::read_link(r.join("dangling")).unwrap(),
            Path::new("nowhere/../x y")
        );
        assert_eq!(
            fs::read_link(r.join("abs")).unwrap(),
            Path::new("/etc/hostname")
        );
        assert_eq!(
            fs::read_link(r.join("long")).unwrap(),
            Path::new(&long_target)
        );
        assert_eq!(read(&r.join("dirlink/inner")), b"inner");
        assert_eq!(read(&r.join("sub/g")), b"shared more");
        let (m1, m2) = (
            fs::metadata(r.join("h1")).unwrap(),
            fs::metadata(r.join("h2")).unwrap(),
        );
        assert_eq!((m1.nlink(), m2.nlink()), (2, 2), "nlink after remount");
        assert_eq!(m1.ino(), m2.ino(), "hard links after remount");
        let mut a = OpenOptions::new().append(true).open(r.join("h2")).unwrap();
        a.write_all(b"!").unwrap();
        drop(a);
        assert_eq!(read(&r.join("h1")), b"pair!");
    })
    .await;
}

async fn statfs_xattrs_fallocate_fsync(b: Backend) {
    let Some(mut v) = tests::mount::start(b).await else {
        return;
    };
    let root = v.mount.path().to_owned();
    let binary: Vec<u8> = (0..=255u8).collect();
    let big_value = pattern(9, 4000);
    let r = root.clone();
    let (bv, bigv) = (binary.clone(), big_value.clone());
    blocking("statfs, xattrs, fallocate, fsync", STEP, move || {
        // statfs.
        let st = sys::statfs(&r).unwrap();
        assert_eq!(st.f_type, tests::mount::FUSE_SUPER_MAGIC);
        assert!(st.f_bsize > 0, "{st:?}");
        assert!(
            st.f_blocks >= st.f_bfree && st.f_bfree >= st.f_bavail,
            "{st:?}"
        );
        assert!(st.f_namelen >= 255, "{st:?}");
        let st2 = sys::statfs(&r.join(".")).unwrap();
        assert_eq!(st2.f_bsize, st.f_bsize);

        // xattrs on a file.
        let f = r.join("x.txt");
        write(&f, b"x");
        sys::setxattr(&f, "user.color", b"blue", 0).unwrap();
        assert_eq!(sys::getxattr(&f, "user.color").unwrap(), b"blue");
        sys::setxattr(&f, "user.bin", &bv, 0).unwrap();
        sys::setxattr(&f, "user.big", &bigv, 0).unwrap();
        sys::setxattr(&f, "user.empty", b"", 0).unwrap();
        assert_eq!(sys::getxattr(&f, "user.bin").unwrap(), bv);
        assert_eq!(sys::getxattr(&f, "user.big").unwrap(), bigv);
        assert_eq!(sys::getxattr(&f, "user.empty").unwrap(), b"");
        let mut listed: Vec<String> = sys::listxattr(&f)
            .unwrap()
            .into_iter()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| n.starts_with("user."))
            .collect();
        listed.sort();
        assert_eq!(listed, ["user.big", "user.bin", "user.color", "user.empty"]);
        expect_errno(
            "XATTR_CREATE of an existing attribute",
            sys::setxattr(&f, "user.color", b"red", sys::XATTR_CREATE),
            libc::EEXIST,
        );
        expect_errno(
            "XATTR_REPLACE of a missing attribute",
            sys::setxattr(&f, "user.nope", b"v", sys::XATTR_REPLACE),
            libc::ENODATA,
        );
        sys::setxattr(&f, "user.color", b"green", sys::XATTR_REPLACE).unwrap();
        assert_eq!(sys::getxattr(&f, "user.color").unwrap(), b"green");
        expect_errno(
            "getxattr of a missing attribute",
            sys::getxattr(&f, "user.nope"),
            libc::ENODATA,
        );
        // No ACLs and no SELinux label on this filesystem: EOPNOTSUPP,
        // like a filesystem mounted without them (ls -l then stops asking).
        // (The kernel itself checks an ACL's value before it asks us.)
        for name in ["system.posix_acl_access", "security.selinux"] {
            expect_errno(name, sys::getxattr(&f, name), libc::EOPNOTSUPP);
        }
        let label = "security.selinux";
        expect_errno(label, sys::setxattr(&f, label, b"x", 0), libc::EOPNOTSUPP);
        expect_errno(label, sys::removexattr(&f, label), libc::EOPNOTSUPP);
        sys::removexattr(&f, "user.empty").unwrap();
        expect_errno(
            "getxattr after removexattr",
            sys::getxattr(&f, "user.empty"),
            libc::ENODATA,
        );
        expect_errno(
            "removexattr of a missing attribute",
            sys::removexattr(&f, "user.empty"),
            libc::ENODATA,
        );
        // On a directory.
        fs::create_dir(r.join("d")).unwrap();
        sys::setxattr(&r.join("d"), "user.dir", b"yes", 0).unwrap();
        assert_eq!(sys::getxattr(&r.join("d"), "user.dir").unwrap(), b"yes");
        // The content is untouched by all that.
        assert_eq!(read(&f), b"x");

        // fallocate mode 0 extends with zeros.
        let fa = r.join("falloc.bin");
        let head = pattern(11, 100);
        write(&fa, &head);
        let file = OpenOptions::new().read(true).write(true).open(&fa).unwrap();
        sys::fallocate(&file, 0, 0, MIB as u64).unwrap();
        assert_eq!(
            file.metadata().unwrap().len(),
            MIB as u64,
            "size after fallocate"
        );
        sys::fallocate(&file, 0, 10, 20).unwrap();
        assert_eq!(
            file.metadata().unwrap().len(),
            MIB as u64,
            "fallocate inside the file"
        );
        sys::fallocate(&file, 0, MIB as u64 - 10, 30).unwrap();
        assert_eq!(
            file.metadata().unwrap().len(),
            MIB as u64 + 20,
            "fallocate across the end"
        );
        // Other modes: done right or refused with EOPNOTSUPP.
        match sys::fallocate(&file, libc::FALLOC_FL_KEEP_SIZE, 0, 4 * MIB as u64) {
            Ok(()) => assert_eq!(file.metadata().unwrap().len(), MIB as u64 + 20, "KEEP_SIZE"),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP), "KEEP_SIZE: {e}"),
        }
        let mut punched = false;
        match sys::fallocate(
            &file,
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            20,
            30,
        ) {
            Ok(()) => punched = true,
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP), "PUNCH_HOLE: {e}"),
        }
        drop(file);
        let got = read(&fa);
        assert_eq!(got.len(), MIB + 20);
        let mut want = head.clone();
        if punched {
            want[20..50].fill(0);
        }
        want.resize(MIB + 20, 0);
        assert_bytes("falloc.bin", &got, &want);

        // fsync and fdatasync of a file, fsync of a directory.
        let s = r.join("synced");
        let mut file = File::create(&s).unwrap();
        file.write_all(b"durable").unwrap();
        file.sync_all().unwrap();
        file.write_all(b" twice").unwrap();
        file.sync_data().unwrap();
        drop(file);
        File::open(&r).unwrap().sync_all().unwrap();
        File::open(r.join("d")).unwrap().sync_all().unwrap();
        assert_eq!(read(&s), b"durable twice");
    })
    .await;

    v.mount.unmount();
    v.mount.remount();
    let r = root.clone();
    blocking(
        "xattrs and allocated files after remount",
        STEP,
        move || {
            let f = r.join("x.txt");
            assert_eq!(sys::getxattr(&f, "user.color").unwrap(), b"green");
            assert_eq!(sys::getxattr(&f, "user.bin").unwrap(), binary);
            assert_eq!(sys::getxattr(&f, "user.big").unwrap(), big_value);
            expect_errno(
                "removed xattr after remount",
                sys::getxattr(&f, "user.empty"),
                libc::ENODATA,
            );
            assert_eq!(sys::getxattr(&r.join("d"), "user.dir").unwrap(), b"yes");
            assert_eq!(
                fs::metadata(r.join("falloc.bin")).unwrap().len(),
                MIB as u64 + 20
            );
            assert_eq!(read(&r.join("synced")), b"durable twice");
        },
    )
    .await;
}

async fn one_gib_round_trip(b: Backend) {
    let Some(mut v) = tests::mount::start(b).await else {
        return;
    };
    // 1 GiB unless VAULT_TEST_BIG_FILE_MIB says otherwise.
    let gib_mib = tests::mount::env_knob("VAULT_TEST_BIG_FILE_MIB", 1024);
    let p = v.mount.join("one-gib.bin");
    let p1 = p.clone();
    let (written, write_time) = blocking(
        "write 1 GiB and close",
        Duration::from_secs(900),
        move || {
            let t = std::time::Instant::now();
            let mut f = File::create(&p1).unwrap();
            let h = write_stamped(&mut f, 42, gib_mib).unwrap();
            drop(f);
            (h, t.elapsed())
        },
    )
    .await;
    eprintln!(
        "1 GiB written in {write_time:.1?} ({:.0} MiB/s)",
        gib_mib as f64 / write_time.as_secs_f64()
    );
    let p1 = p.clone();
    let w = written.clone();
    blocking(
        "read 1 GiB back (same mount)",
        Duration::from_secs(900),
        move || {
            let t = std::time::Instant::now();
            let (h, len) = sha256_file(&p1).unwrap();
            assert_eq!(len, gib_mib << 20);
            assert_eq!(h, w, "sha256 of the 1 GiB file read back");
            eprintln!(
                "1 GiB read in {:.1?} ({:.0} MiB/s)",
                t.elapsed(),
                gib_mib as f64 / t.elapsed().as_secs_f64()
            );
        },
    )
    .await;
    let took = v.mount.unmount();
    eprintln!("unmount (uploads what is pending) took {took:.1?}");
    v.mount.remount();
    let p1 = p.clone();
    blocking(
        "read 1 GiB after remount",
        Duration::from_secs(900),
        move || {
            let t = std::time::Instant::now();
            let (h, len) = sha256_file(&p1).unwrap();
            assert_eq!(len, gib_mib << 20);
            assert_eq!(h, written, "sha256 of the 1 GiB file after remount");
            eprintln!(
                "1 GiB read after remount in {:.1?} ({:.0} MiB/s)",
                t.elapsed(),
                gib_mib as f64 / t.elapsed().as_secs_f64()
            );
        },
    )
    .await;
}

/// A tree with every kind of entry and attribute.
fn build_tree(r: &Path) {
    use std::os::unix::fs::symlink;
    fs::create_dir_all(r.join("docs/deep/deeper")).unwrap();
    fs::create_dir(r.join("private")).unwrap();
    fs::set_permissions(r.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
    write(&r.join("docs/readme.md"), b"# readme\n");
    write(
        &r.join("docs/deep/deeper/data.bin"),
        &pattern(21, 2 * MIB + 3),
    );
    write(&r.join("private/key.txt"), b"not really a key");
    fs::set_permissions(r.join("private/key.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    write(&r.join("run.sh"), b"#!/bin/sh\necho hi\n");
    fs::set_permissions(r.join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    File::create(r.join("empty")).unwrap();
    let sp = File::create(r.join("sparse")).unwrap();
    sp.write_all_at(b"end", 3 * MIB as u64).unwrap();
    drop(sp);
    let mut ow = pattern(22, 300_000);
    write(&r.join("overwritten"), &ow);
    let f = OpenOptions::new()
        .write(true)
        .open(r.join("overwritten"))
        .unwrap();
    f.write_all_at(b"MIDDLE", 150_000).unwrap();
    f.set_len(200_000).unwrap();
    drop(f);
    ow[150_000..150_006].copy_from_slice(b"MIDDLE");
    ow.truncate(200_000);
    assert_bytes("overwritten", &read(&r.join("overwritten")), &ow);
    symlink("docs/readme.md", r.join("readme-link")).unwrap();
    symlink("../nowhere", r.join("docs/dangling")).unwrap();
    fs::hard_link(r.join("run.sh"), r.join("docs/run-again.sh")).unwrap();
    sys::setxattr(&r.join("docs/readme.md"), "user.tag", b"important", 0).unwrap();
    sys::setxattr(&r.join("docs"), "user.dir", b"d", 0).unwrap();
    write(&r.join("ünïcödé ✓ name"), "ünïcödé".as_bytes());
    // Times last (children first), as an archiver would.
    for (p, t) in [
        ("docs/readme.md", at(1_000_000_001, 1)),
        ("docs/deep/deeper/data.bin", at(1_100_000_000, 999_999_999)),
        ("empty", at(1_200_000_000, 0)),
        ("docs/deep/deeper", at(1_300_000_000, 42)),
        ("docs/deep", at(1_300_000_001, 0)),
        ("docs", at(1_300_000_002, 0)),
    ] {
        File::open(r.join(p)).unwrap().set_modified(t).unwrap();
    }
}

async fn persistence_across_remount_and_devices(b: Backend) {
    let Some(mut v) = tests::mount::start(b).await else {
        return;
    };
    let root = v.mount.path().to_owned();
    let status = v.mount.status();
    assert!(
        status.contains(&root.to_string_lossy().into_owned()),
        "`vault status` does not show the mount {}:\n{status}",
        root.display()
    );
    // The daemons alone (no server request) say the same.
    let mounts = v.mount.status_mounts();
    assert!(
        mounts.starts_with("Mounts:\n")
            && mounts.contains(&root.to_string_lossy().into_owned())
            && mounts.contains("pending uploads: ")
            && !mounts.contains("Account:"),
        "`vault status --mounts`:\n{mounts}"
    );
    let r = root.clone();
    let before = blocking("build a tree", STEP, move || {
        build_tree(&r);
        snapshot(&r)
    })
    .await;

    v.mount.unmount();
    let status = v.mount.status();
    assert!(
        !status.contains(&root.to_string_lossy().into_owned()),
        "`vault status` still shows the unmounted {}:\n{status}",
        root.display()
    );
    v.mount.remount();
    let r = root.clone();
    let b2 = before.clone();
    blocking("the tree after remount", STEP, move || {
        assert_same(
            "the tree after unmount and mount",
            &b2,
            &snapshot(&r),
            Compare::ALL,
        );
    })
    .await;

    // Another device (fresh journal, cache and session) sees the same tree.
    let mut other = TestMount::new(&v.server, &v.account).await;
    let r2 = other.path().to_owned();
    blocking("the tree on another device", STEP, move || {
        assert_same(
            "the tree on a fresh device",
            &before,
            &snapshot(&r2),
            Compare::ALL,
        );
    })
    .await;
    other.unmount();
}
