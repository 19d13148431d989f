//! Real programs in a real mount (SQLite server; the backend does not change
//! what programs see): `cp -a`, `rsync`, `tar` with hard links and
//! symlinks, `git`, `sqlite3` and `restic`, each checked by comparing trees
//! (`diff -r` and a snapshot of modes, times, link targets, xattrs and
//! hard-link groups) or by the program's own integrity check, also after an
//! unmount and a mount.
//!
//! The programs come from Debian packages that scripts/lib/deps.sh
//! installs; a missing one skips the test, or fails it under
//! `VAULT_TEST_REQUIRE_SERVICES=1`.
//!
//! Run one: `cargo test -p tests --test mount_programs git`

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use tests::Backend;
use tests::mount::data::pattern;
use tests::mount::tree::{Compare, assert_diff_r, assert_same, snapshot};
use tests::mount::{CmdOutput, MountedVault, blocking, run_with_timeout, sys, tool_available};

const STEP: Duration = Duration::from_secs(600);
const MIB: usize = 1 << 20;

/// Mounts a fresh account if FUSE and `tools` are there.
async fn start(tools: &[&str]) -> Option<MountedVault> {
    if !tests::mount::fuse_available() || !tool_available(tools) {
        return None;
    }
    tests::mount::start(Backend::Sqlite).await
}

/// Runs `program args` in `cwd` with `env`; panics unless it succeeds.
#[track_caller]
fn run(program: &str, args: &[&str], cwd: Option<&Path>, env: &[(&str, &str)]) -> CmdOutput {
    let mut cmd = Command::new(program);
    cmd.args(args);
    if let Some(d) = cwd {
        cmd.current_dir(d);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out_dir = tempfile::tempdir().unwrap();
    let out = run_with_timeout(
        cmd,
        &format!("{program} {}", args.join(" ")),
        out_dir.path(),
        None,
        STEP,
    );
    out.assert_success();
    out
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn set_mtime(p: &Path, secs: u64) {
    File::open(p)
        .unwrap()
        .set_modified(UNIX_EPOCH + Duration::new(secs, 123_000_000))
        .unwrap();
}

/// A source tree with every kind of entry: nested and odd-named
/// directories, empty, small and multi-MiB files, modes, symlinks
/// (relative, to a directory, dangling, absolute), a hard-link pair, an
/// xattr and fixed times.
fn make_source(r: &Path) {
    use std::os::unix::fs::symlink;
    for d in ["docs/deep/deeper", "bin", "private", "space dir", "many"] {
        fs::create_dir_all(r.join(d)).unwrap();
    }
    fs::write(r.join("docs/readme.md"), "# A readme\n\nWith text.\n").unwrap();
    fs::write(r.join("docs/deep/deeper/data.bin"), pattern(1, MIB + 1)).unwrap();
    fs::write(r.join("big.bin"), pattern(2, 3 * MIB)).unwrap();
    fs::write(r.join("bin/run.sh"), "#!/bin/sh\necho hello\n").unwrap();
    fs::set_permissions(r.join("bin/run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(r.join("private/key"), "k").unwrap();
    fs::set_permissions(r.join("private/key"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(r.join("ro.txt"), "read only").unwrap();
    fs::set_permissions(r.join("ro.txt"), fs::Permissions::from_mode(0o444)).unwrap();
    File::create(r.join("empty")).unwrap();
    fs::write(r.join("space dir/ünïcödé ✓.txt"), "ünïcödé").unwrap();
    for i in 0..100 {
        fs::write(
            r.join(format!("many/file-{i:03}")),
            pattern(i, i as usize * 37),
        )
        .unwrap();
    }
    symlink("docs/readme.md", r.join("readme-link")).unwrap();
    symlink("docs", r.join("dirlink")).unwrap();
    symlink("../nowhere", r.join("docs/dangling")).unwrap();
    symlink("/etc/hostname", r.join("abs-link")).unwrap();
    fs::hard_link(r.join("bin/run.sh"), r.join("docs/run-copy.sh")).unwrap();
    sys::setxattr(&r.join("docs/readme.md"), "user.tag", b"important", 0).unwrap();
    for (i, p) in [
        "docs/readme.md",
        "docs/deep/deeper/data.bin",
        "big.bin",
        "empty",
        "ro.txt",
        "many/file-007",
        "docs/deep/deeper",
        "docs/deep",
        "docs",
        "many",
        "private",
    ]
    .iter()
    .enumerate()
    {
        set_mtime(&r.join(p), 1_500_000_000 + i as u64 * 1000);
    }
    fs::set_permissions(r.join("private"), fs::Permissions::from_mode(0o700)).unwrap();
}

/// Everything but hard links and xattrs (what `tar` keeps).
const ARCHIVE: Compare = Compare {
    mtime: true,
    dir_mtime: true,
    xattrs: false,
    hard_links: false,
    owner: true,
    nanos: true,
};

/// What `rsync -a` keeps: times only to the second (rsync does not set a
/// time whose seconds already match, not even on a local disk).
const RSYNC: Compare = Compare {
    nanos: false,
    ..ARCHIVE
};

/// What `rsync -aHX` keeps: also hard links and xattrs.
const RSYNC_HX: Compare = Compare {
    xattrs: true,
    hard_links: true,
    ..RSYNC
};

#[tokio::test]
async fn cp_a_tree() {
    let Some(v) = start(&["cp", "diff"]).await else {
        return;
    };
    let root = v.mount.path().to_owned();
    blocking("cp -a in and out", STEP, move || {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir(&src).unwrap();
        make_source(&src);
        let dst = root.join("cp");
        run("cp", &["-a", &s(&src), &s(&dst)], None, &[]);
        assert_diff_r(&src, &dst);
        assert_same(
            "cp -a into the mount",
            &snapshot(&src),
            &snapshot(&dst),
            Compare::ALL,
        );
        // And out again: what the mount reports is what a copy keeps.
        let back = tmp.path().join("back");
        run("cp", &["-a", &s(&dst), &s(&back)], None, &[]);
        assert_same(
            "cp -a out of the mount",
            &snapshot(&src),
            &snapshot(&back),
            Compare::ALL,
        );
    })
    .await;
}

#[tokio::test]
async fn rsync_archive() {
    let Some(mut v) = start(&["rsync", "diff"]).await else {
        return;
    };
    let root = v.mount.path().to_owned();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let (r, sr) = (root.clone(), src.clone());
    let nothing_to_do = |src: &Path, dst: &Path| {
        let out = run(
            "rsync",
            &[
                "-a",
                "--checksum",
                "-n",
                "-i",
                &format!("{}/", s(src)),
                &format!("{}/", s(dst)),
            ],
            None,
            &[],
        );
        assert!(
            out.stdout.trim().is_empty(),
            "rsync -a --checksum -n finds work to do after a sync:\n{}",
            out.stdout
        );
    };
    blocking("rsync -a", STEP, move || {
        fs::create_dir(&sr).unwrap();
        make_source(&sr);
        let dst = r.join("rs");
        run(
            "rsync",
            &["-a", &format!("{}/", s(&sr)), &format!("{}/", s(&dst))],
            None,
            &[],
        );
        nothing_to_do(&sr, &dst);
        assert_diff_r(&sr, &dst);
        assert_same("rsync -a", &snapshot(&sr), &snapshot(&dst), RSYNC);
        // An update: rsync writes a temp file and renames it over the old.
        fs::write(sr.join("docs/readme.md"), "# Changed\n").unwrap();
        set_mtime(&sr.join("docs/readme.md"), 1_600_000_000);
        fs::write(sr.join("big.bin"), pattern(99, 3 * MIB)).unwrap();
        fs::remove_file(sr.join("many/file-050")).unwrap();
        run(
            "rsync",
            &[
                "-a",
                "--delete",
                &format!("{}/", s(&sr)),
                &format!("{}/", s(&dst)),
            ],
            None,
            &[],
        );
        nothing_to_do(&sr, &dst);
        assert_diff_r(&sr, &dst);
        assert_same("rsync -a update", &snapshot(&sr), &snapshot(&dst), RSYNC);
        // With hard links and xattrs: everything.
        let dst2 = r.join("rsx");
        run(
            "rsync",
            &["-aHX", &format!("{}/", s(&sr)), &format!("{}/", s(&dst2))],
            None,
            &[],
        );
        assert_same("rsync -aHX", &snapshot(&sr), &snapshot(&dst2), RSYNC_HX);
    })
    .await;
    v.mount.unmount();
    v.mount.remount();
    let sr = src.clone();
    blocking("rsync result after remount", STEP, move || {
        nothing_to_do(&sr, &root.join("rs"));
        assert_same(
            "rsync -aHX after remount",
            &snapshot(&sr),
            &snapshot(&root.join("rsx")),
            RSYNC_HX,
        );
    })
    .await;
}

#[tokio::test]
async fn tar_with_hard_links_and_symlinks() {
    let Some(v) = start(&["tar", "diff"]).await else {
        return;
    };
    let root = v.mount.path().to_owned();
    blocking("tar create and extract", STEP, move || {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir(&src).unwrap();
        make_source(&src);
        let with_links = Compare {
            hard_links: true,
            ..ARCHIVE
        };
        // Archive into the mount, extract inside it (the POSIX format keeps
        // nanosecond times; GNU tar's default keeps seconds).
        let tar = root.join("tree.tar");
        run(
            "tar",
            &["--format=posix", "-cf", &s(&tar), "-C", &s(&src), "."],
            None,
            &[],
        );
        let listing = run("tar", &["-tvf", &s(&tar)], None, &[]).stdout;
        assert!(
            listing.contains("link to"),
            "no hard link in the archive:\n{listing}"
        );
        assert!(
            listing.contains("->"),
            "no symlink in the archive:\n{listing}"
        );
        let x = root.join("x");
        fs::create_dir(&x).unwrap();
        run("tar", &["-xpf", &s(&tar), "-C", &s(&x)], None, &[]);
        assert_diff_r(&src, &x);
        assert_same(
            "tar extracted in the mount",
            &snapshot(&src),
            &snapshot(&x),
            with_links,
        );
        // Archive the mount's tree (tar finds hard links by inode), extract outside.
        let out_tar = tmp.path().join("again.tar");
        run(
            "tar",
            &["--format=posix", "-cf", &s(&out_tar), "-C", &s(&x), "."],
            None,
            &[],
        );
        let y = tmp.path().join("y");
        fs::create_dir(&y).unwrap();
        run("tar", &["-xpf", &s(&out_tar), "-C", &s(&y)], None, &[]);
        assert_same(
            "tar of the mount, extracted outside",
            &snapshot(&src),
            &snapshot(&y),
            with_links,
        );
    })
    .await;
}

#[tokio::test]
async fn git_init_commit_clone_fsck() {
    let Some(mut v) = start(&["git", "diff"]).await else {
        return;
    };
    let root = v.mount.path().to_owned();
    let home = tempfile::tempdir().unwrap();
    let h = home.path().to_string_lossy().into_owned();
    let env: Vec<(String, String)> = vec![
        ("HOME".into(), h.clone()),
        ("XDG_CONFIG_HOME".into(), format!("{h}/.config")),
        ("GIT_CONFIG_NOSYSTEM".into(), "1".into()),
        ("GIT_AUTHOR_NAME".into(), "Vault Test".into()),
        ("GIT_AUTHOR_EMAIL".into(), "test@e2e.test".into()),
        ("GIT_COMMITTER_NAME".into(), "Vault Test".into()),
        ("GIT_COMMITTER_EMAIL".into(), "test@e2e.test".into()),
    ];
    let git = move |args: &[&str], cwd: &Path| -> String {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run("git", args, Some(cwd), &env).stdout
    };
    let outside = home.path().join("origin");
    let (r, g, o) = (root.clone(), git.clone(), outside.clone());
    blocking("git in the mount", STEP, move || {
        // A repository outside, with history.
        fs::create_dir(&o).unwrap();
        g(&["init", "-q", "-b", "main"], &o);
        make_source(&o);
        g(&["add", "-A"], &o);
        g(&["commit", "-q", "-m", "first"], &o);
        for i in 0..3 {
            fs::write(
                o.join(format!("change-{i}.txt")),
                pattern(i, 10_000 * (i as usize + 1)),
            )
            .unwrap();
            fs::write(o.join("docs/readme.md"), format!("version {i}\n")).unwrap();
            g(&["add", "-A"], &o);
            g(&["commit", "-q", "-m", &format!("change {i}")], &o);
        }
        // A repository made in the mount.
        let repo = r.join("repo");
        fs::create_dir(&repo).unwrap();
        g(&["init", "-q", "-b", "main"], &repo);
        make_source(&repo);
        g(&["add", "-A"], &repo);
        g(&["commit", "-q", "-m", "in the mount"], &repo);
        fs::write(repo.join("second.txt"), "second").unwrap();
        fs::remove_file(repo.join("big.bin")).unwrap();
        g(&["add", "-A"], &repo);
        g(&["commit", "-q", "-m", "second"], &repo);
        g(&["gc", "-q"], &repo);
        g(&["fsck", "--full", "--strict"], &repo);
        assert_eq!(
            g(&["status", "--porcelain"], &repo).trim(),
            "",
            "a clean worktree"
        );
        assert_eq!(g(&["rev-list", "--count", "HEAD"], &repo).trim(), "2");
        // A clone into the mount.
        let clone = r.join("clone");
        g(&["clone", "-q", &s(&o), &s(&clone)], &r);
        g(&["fsck", "--full", "--strict"], &clone);
        assert_eq!(g(&["rev-list", "--count", "HEAD"], &clone).trim(), "4");
        assert_eq!(
            g(&["rev-parse", "HEAD"], &clone),
            g(&["rev-parse", "HEAD"], &o)
        );
        assert_eq!(g(&["status", "--porcelain"], &clone).trim(), "");
        let out = tests::mount::run_program(
            "diff",
            &[
                "-r",
                "--no-dereference",
                "--exclude=.git",
                &s(&o),
                &s(&clone),
            ],
            None,
            STEP,
        );
        assert!(out.success(), "the clone's worktree differs: {out}");
    })
    .await;
    v.mount.unmount();
    v.mount.remount();
    let (r, g) = (root.clone(), git.clone());
    blocking("git after remount", STEP, move || {
        for repo in ["repo", "clone"] {
            g(&["fsck", "--full", "--strict"], &r.join(repo));
            assert_eq!(
                g(&["status", "--porcelain"], &r.join(repo)).trim(),
                "",
                "{repo}"
            );
        }
        assert_eq!(
            g(&["rev-parse", "HEAD"], &r.join("clone")),
            g(&["rev-parse", "HEAD"], &outside)
        );
    })
    .await;
    drop(home);
}

/// `sqlite3 DB` fed `sql` on stdin; answers stdout.
fn sqlite(db: &Path, sql: &str) -> String {
    let mut cmd = Command::new("sqlite3");
    cmd.arg("-batch").arg("-bail").arg(db);
    let dir = tempfile::tempdir().unwrap();
    let out = run_with_timeout(cmd, "sqlite3", dir.path(), Some(sql.as_bytes()), STEP);
    out.assert_success();
    assert!(out.stderr.trim().is_empty(), "sqlite3 complained: {out}");
    out.stdout
}

/// Batches, then single-row transactions (each commit an fsync, timed),
/// then an index, an update and a delete: answers the expected
/// `count|sum|sum` line.
const BATCHES: usize = 20;
const BATCH_ROWS: usize = 500;
const SINGLES: usize = 50;

fn sqlite_workload(db: &Path, prelude: &str) -> String {
    let mut sql = String::from(prelude);
    sql.push_str("CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT NOT NULL, v BLOB NOT NULL);\n");
    for i in 0..BATCHES {
        sql.push_str(&format!(
            "BEGIN;\nWITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < \
             {BATCH_ROWS}) INSERT INTO t(k, v) SELECT 'batch{i}-' || x, zeroblob(20 + x % 100) \
             FROM c;\nCOMMIT;\n"
        ));
    }
    let t = std::time::Instant::now();
    sqlite(db, &sql);
    eprintln!(
        "sqlite3: {BATCHES} transactions of {BATCH_ROWS} rows in {:.1?}",
        t.elapsed()
    );
    let mut sql = String::new();
    for i in 0..SINGLES {
        sql.push_str(&format!(
            "INSERT INTO t(k, v) VALUES ('single-{i}', randomblob({i}));\n"
        ));
    }
    let t = std::time::Instant::now();
    sqlite(db, &sql);
    eprintln!(
        "sqlite3: {SINGLES} one-row transactions in {:.1?} ({:.0?} per commit)",
        t.elapsed(),
        t.elapsed() / SINGLES as u32
    );
    sqlite(
        db,
        "CREATE INDEX t_k ON t(k);\nUPDATE t SET v = zeroblob(7) WHERE id % 10 = 0;\n\
         DELETE FROM t WHERE id % 97 = 0;\n",
    );
    let check = sqlite(
        db,
        "PRAGMA integrity_check;\nSELECT count(*) || '|' || sum(length(v)) || '|' || sum(id) FROM t;\n",
    );
    let mut lines = check.lines();
    assert_eq!(lines.next(), Some("ok"), "integrity_check: {check}");
    let summary = lines.next().unwrap().to_owned();
    // Every row but those with an id divisible by 97.
    let rows = BATCHES * BATCH_ROWS + SINGLES;
    assert!(
        summary.starts_with(&format!("{}|", rows - rows / 97)),
        "{summary}"
    );
    summary
}

fn sqlite_check(db: &Path, want: &str) {
    let out = sqlite(
        db,
        "PRAGMA integrity_check;\nSELECT count(*) || '|' || sum(length(v)) || '|' || sum(id) FROM t;\n",
    );
    assert_eq!(out, format!("ok\n{want}\n"), "{}", db.display());
}

#[tokio::test]
async fn sqlite_transactions_survive_remount() {
    let Some(mut v) = start(&["sqlite3"]).await else {
        return;
    };
    let db = v.mount.join("db.sqlite");
    let d = db.clone();
    let want = blocking("sqlite3 workload (rollback journal)", STEP, move || {
        let want = sqlite_workload(&d, "PRAGMA journal_mode=DELETE;\n");
        sqlite_check(&d, &want);
        want
    })
    .await;
    v.mount.unmount();
    v.mount.remount();
    blocking("sqlite3 after remount", STEP, move || {
        sqlite_check(&db, &want)
    })
    .await;
}

#[tokio::test]
async fn sqlite_wal_survives_remount() {
    let Some(mut v) = start(&["sqlite3"]).await else {
        return;
    };
    let db = v.mount.join("wal.sqlite");
    let d = db.clone();
    let want = blocking(
        "sqlite3 workload (WAL, needs shared mmap)",
        STEP,
        move || {
            let mode = sqlite(&d, "PRAGMA journal_mode=WAL;\n");
            assert_eq!(mode.trim(), "wal", "journal_mode=WAL answered {mode}");
            let want = sqlite_workload(&d, "");
            sqlite_check(&d, &want);
            want
        },
    )
    .await;
    v.mount.unmount();
    v.mount.remount();
    blocking("sqlite3 (WAL) after remount", STEP, move || {
        sqlite_check(&db, &want)
    })
    .await;
}

#[tokio::test]
async fn restic_backup_check_restore() {
    let Some(mut v) = start(&["restic", "diff"]).await else {
        return;
    };
    let root = v.mount.path().to_owned();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path().to_owned();
    let env = move |t: &Path| -> Vec<(String, String)> {
        vec![
            ("RESTIC_PASSWORD".into(), "restic in a vault".into()),
            ("HOME".into(), s(t)),
            ("XDG_CACHE_HOME".into(), s(&t.join("cache"))),
        ]
    };
    let restic = move |t: &Path, args: &[&str]| -> String {
        let env = env(t);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run("restic", args, None, &env).stdout
    };
    let repo = s(&root.join("restic-repo"));
    let src = t.join("src");
    let (rs, sr, tt, rp) = (restic, src.clone(), t.clone(), repo.clone());
    blocking(
        "restic init, backup, check --read-data, restore",
        STEP,
        move || {
            fs::create_dir(&sr).unwrap();
            make_source(&sr);
            fs::write(sr.join("more.bin"), pattern(5, 4 * MIB)).unwrap();
            rs(&tt, &["-r", &rp, "init"]);
            rs(&tt, &["-r", &rp, "--no-cache", "backup", &s(&sr)]);
            rs(&tt, &["-r", &rp, "--no-cache", "check", "--read-data"]);
            let target = tt.join("restored");
            rs(
                &tt,
                &[
                    "-r",
                    &rp,
                    "--no-cache",
                    "restore",
                    "latest",
                    "--target",
                    &s(&target),
                ],
            );
            let restored: PathBuf = target.join(sr.strip_prefix("/").unwrap());
            assert_diff_r(&sr, &restored);
        },
    )
    .await;
    v.mount.unmount();
    v.mount.remount();
    blocking("restic check after remount", STEP, move || {
        restic(&t, &["-r", &repo, "--no-cache", "check", "--read-data"]);
        let snaps = restic(&t, &["-r", &repo, "--no-cache", "snapshots", "--json"]);
        assert!(snaps.contains(&s(&src)), "the snapshot is gone: {snaps}");
    })
    .await;
}
