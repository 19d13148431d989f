//! Durability and confidentiality of a real mount, on SQLite and MariaDB:
//!
//! - `kill -9` of the daemon right after files were closed or fsynced, then
//!   a mount again (which must clean the stale mount and replay the
//!   journal): every such file is there with its content, also on a fresh
//!   device (so it reached the server);
//! - the server killed while a large file is uploading and restarted on the
//!   same port and data: writes go on, fsync and unmount complete, the
//!   content is right;
//! - two devices of one account: what one closes, the other opens with the
//!   right content within about 5 s (close-to-open plus the change feed);
//! - zero knowledge: after a workload with distinctive names, contents,
//!   xattrs and link targets, none of them appears — raw, hex or base64 — in
//!   the server's database (the SQLite files, or a dump of every MariaDB
//!   table), its object store, its logs, nor in the client's journal or
//!   caches.
//!
//! Run one: `cargo test -p tests --test mount_durability sqlite::kill9`

#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tests::Backend;
use tests::mount::data::{assert_bytes, pattern, sha256_file, write_stamped};
use tests::mount::scan::{Needle, needles, scan_bytes, scan_dir};
use tests::mount::{
    TestMount, blocking, fixed_port_options, kill_server, restart_server, run_with_timeout,
    server_database_url, sys,
};

tests::on_both_backends!(
    kill9_keeps_closed_and_fsynced_files,
    server_restart_during_upload,
    two_devices_see_each_others_files,
    zero_knowledge_on_server_and_client_disks,
);

const STEP: Duration = Duration::from_secs(300);
/// How soon another device must see a closed file.
const PROPAGATION: Duration = Duration::from_secs(5);
/// How long to keep looking, to tell "slow" from "never" in the message.
const DIAGNOSE: Duration = Duration::from_secs(30);

/// The files of the kill -9 test: (relative path, content).
fn kill9_files() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = [0usize, 1, 4095, 4096, 65_537, (1 << 20) + 3, 5 << 20]
        .iter()
        .enumerate()
        .map(|(i, &n)| (format!("closed-{i}.bin"), pattern(1000 + i as u64, n)))
        .collect();
    files.push(("dir/sub/nested.txt".into(), b"nested and closed\n".to_vec()));
    files.push(("renamed-final.txt".into(), b"saved atomically\n".to_vec()));
    files.push(("fsynced-open.bin".into(), pattern(77, 300_000)));
    files
}

/// The mode and time set on `dir/sub` before the kill.
const DIR_MODE: u32 = 0o750;
fn dir_mtime() -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::new(1_400_000_000, 123_456_789)
}

async fn kill9_keeps_closed_and_fsynced_files(b: Backend) {
    let Some(mut v) = tests::mount::start(b).await else {
        return;
    };
    let root = v.mount.path().to_owned();
    let r = root.clone();
    // Written and closed (or fsynced and left open); then at once kill -9.
    let open_file = blocking("write, close, fsync", STEP, move || {
        fs::create_dir_all(r.join("dir/sub")).unwrap();
        for (name, content) in kill9_files() {
            match name.as_str() {
                "renamed-final.txt" => {
                    // The classic atomic save: temp file, fsync, rename, fsync dir.
                    let tmp = r.join(".renamed-final.txt.tmp");
                    let mut f = File::create(&tmp).unwrap();
                    f.write_all(&content).unwrap();
                    f.sync_all().unwrap();
                    drop(f);
                    fs::rename(&tmp, r.join(&name)).unwrap();
                    File::open(&r).unwrap().sync_all().unwrap();
                }
                "fsynced-open.bin" => {}
                _ => {
                    let mut f = File::create(r.join(&name)).unwrap();
                    f.write_all(&content).unwrap();
                }
            }
        }
        // A directory's mode and time, as tar and rsync set them last.
        fs::set_permissions(r.join("dir/sub"), fs::Permissions::from_mode(DIR_MODE)).unwrap();
        File::open(r.join("dir/sub"))
            .unwrap()
            .set_modified(dir_mtime())
            .unwrap();
        let (name, content) = kill9_files().pop().unwrap();
        let mut f = File::create(r.join(name)).unwrap();
        f.write_all(&content).unwrap();
        f.sync_all().unwrap();
        f
    })
    .await;
    v.mount.kill9();
    let stale = fs::metadata(&root);
    eprintln!(
        "after kill -9: mounted = {}, stat of the mount point = {:?}",
        v.mount.is_mounted(),
        stale.as_ref().map(|_| "ok").map_err(|e| e.to_string())
    );
    drop(open_file);

    // A mount again cleans the stale mount and replays the journal.
    v.mount.remount();
    let r = root.clone();
    let check = |r: PathBuf, what: &'static str| {
        move || {
            for (name, content) in kill9_files() {
                let got = fs::read(r.join(&name))
                    .unwrap_or_else(|e| panic!("{what}: {name} after kill -9: {e}"));
                assert_bytes(&format!("{what}: {name}"), &got, &content);
            }
            let leftovers: Vec<String> = fs::read_dir(&r)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".tmp"))
                .collect();
            assert!(
                leftovers.is_empty(),
                "{what}: renamed temp file still listed: {leftovers:?}"
            );
            let dir = fs::metadata(r.join("dir/sub")).unwrap();
            assert_eq!(
                (dir.permissions().mode() & 0o7777, dir.modified().unwrap()),
                (DIR_MODE, dir_mtime()),
                "{what}: the directory's mode and time"
            );
        }
    };
    blocking(
        "every closed or fsynced file after kill -9 and remount",
        STEP,
        check(r, "remount"),
    )
    .await;
    v.mount.unmount();

    // A fresh device: it all reached the server.
    let mut other = TestMount::new(&v.server, &v.account).await;
    let r2 = other.path().to_owned();
    blocking(
        "the same files on a fresh device",
        STEP,
        check(r2, "fresh device"),
    )
    .await;
    other.unmount();
}

async fn server_restart_during_upload(b: Backend) {
    // Declared before the mount so that it is dropped after it.
    let restarted: tests::TestServer;
    let Some(mut v) = tests::mount::start_with(b, fixed_port_options(), &[]).await else {
        return;
    };
    let root = v.mount.path().to_owned();
    let r = root.clone();
    // big-1 written and closed (its upload starts); big-2 opened and half
    // written; the small file created.
    let (h1, big2, small) = blocking("write 96 MiB, close; start another", STEP, move || {
        let mut f = File::create(r.join("big-1.bin")).unwrap();
        let h = write_stamped(&mut f, 5, 96).unwrap();
        drop(f);
        let mut f2 = File::create(r.join("big-2.bin")).unwrap();
        let first = pattern(6, 16 << 20);
        f2.write_all(&first).unwrap();
        let small = pattern(8, 1234);
        let mut f3 = File::create(r.join("small.txt")).unwrap();
        f3.write_all(&small[..600]).unwrap();
        (h, (f2, f3, first), small)
    })
    .await;
    // Kill the server mid-upload.
    kill_server(&v.server);
    let down = Instant::now();
    // Writing to open files goes on while it is down, and so do closes.
    let (r, s2) = (root.clone(), small.clone());
    let (want2, offline_create) = blocking(
        "write and close open files while the server is down",
        STEP,
        move || {
            let (mut f2, mut f3, mut want2) = big2;
            let second = pattern(7, 16 << 20);
            f2.write_all(&second).unwrap();
            want2.extend_from_slice(&second);
            drop(f2);
            f3.write_all(&s2[600..]).unwrap();
            drop(f3);
            // Not required (creating may need the server); reported.
            let offline_create =
                fs::write(r.join("created-offline.txt"), b"offline").map_err(|e| e.to_string());
            (want2, offline_create)
        },
    )
    .await;
    eprintln!("NOTE: creating a new file while the server is down: {offline_create:?}");
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(down.elapsed())).await;
    restarted = restart_server(&v.server).await;
    eprintln!("server down for {:.1?}", down.elapsed());
    // fsync of each waits for its upload, which must now complete.
    let r = root.clone();
    blocking("fsync after the server came back", STEP, move || {
        for name in ["big-1.bin", "big-2.bin", "small.txt"] {
            let t = Instant::now();
            OpenOptions::new()
                .write(true)
                .open(r.join(name))
                .unwrap()
                .sync_all()
                .unwrap_or_else(|e| panic!("fsync {name} after the restart: {e}"));
            eprintln!("fsync {name}: {:.1?}", t.elapsed());
        }
    })
    .await;
    let took = v.mount.unmount();
    eprintln!("unmount after the restart: {took:.1?}");

    let mut other = TestMount::new(&restarted, &v.account).await;
    let r2 = other.path().to_owned();
    blocking("content on a fresh device", STEP, move || {
        assert_eq!(
            sha256_file(&r2.join("big-1.bin")).unwrap(),
            (h1, 96 << 20),
            "big-1.bin"
        );
        assert_bytes(
            "big-2.bin",
            &fs::read(r2.join("big-2.bin")).unwrap(),
            &want2,
        );
        assert_eq!(fs::read(r2.join("small.txt")).unwrap(), small);
        if offline_create.is_ok() {
            assert_eq!(
                fs::read(r2.join("created-offline.txt")).unwrap(),
                b"offline"
            );
        }
    })
    .await;
    other.unmount();
}

/// `Ok` once `path` reads as `want`.
fn reads_as(path: &Path, want: &[u8]) -> Result<(), String> {
    match fs::read(path) {
        Ok(got) if got == want => Ok(()),
        Ok(got) => Err(format!(
            "{} has {} bytes, not the {} expected",
            path.display(),
            got.len(),
            want.len()
        )),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// One change on one device and how the other must see it: polled up to
/// [`PROPAGATION`]; on failure, what the writing device and a fresh third
/// device see, and both devices' `vault status`.
struct Devices<'a> {
    v: &'a tests::mount::MountedVault,
    two: &'a TestMount,
}

impl Devices<'_> {
    async fn expect(
        &self,
        what: &'static str,
        act: impl FnOnce() + Send + 'static,
        seen: impl FnMut() -> Result<(), String> + Send + 'static,
        probe: &'static str,
    ) {
        blocking(what, STEP, act).await;
        let r = blocking(what, Duration::from_secs(120), move || {
            tests::mount::poll_for(what, PROPAGATION, DIAGNOSE, seen)
        })
        .await;
        if let Err(e) = r {
            let (a, b) = (self.v.mount.path().join(probe), self.two.path().join(probe));
            let describe = |p: &Path| match fs::read(p) {
                Ok(c) => format!("{} bytes", c.len()),
                Err(e) => e.to_string(),
            };
            let on_a = describe(&a);
            let on_b = describe(&b);
            let third = TestMount::new(&self.v.server, &self.v.account).await;
            let on_fresh = describe(&third.path().join(probe));
            drop(third);
            panic!(
                "{e}\n{probe}: device A reads {on_a}; device B reads {on_b}; a fresh device \
                 reads {on_fresh}\nA's status:\n{}\nB's status:\n{}",
                self.v.mount.status(),
                self.two.status()
            );
        }
    }
}

fn gone(p: &Path) -> Result<(), String> {
    match fs::metadata(p) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => Err(format!("{} is still there: {other:?}", p.display())),
    }
}

async fn two_devices_see_each_others_files(b: Backend) {
    let Some(v) = tests::mount::start(b).await else {
        return;
    };
    let two = TestMount::new(&v.server, &v.account).await;
    assert_ne!(v.mount.data_dir(), two.data_dir());
    let d = Devices { v: &v, two: &two };
    let (a, bb) = (v.mount.path().to_owned(), two.path().to_owned());
    let first = pattern(1, 100_000);
    let second = pattern(2, 5_000);
    let mut third = second.clone();
    third.extend_from_slice(b"appended on A");

    let (x, y, c) = (a.clone(), bb.clone(), first.clone());
    d.expect(
        "a file closed on A, read on B",
        move || {
            fs::create_dir(x.join("shared")).unwrap();
            fs::write(x.join("shared/note.bin"), &c).unwrap();
        },
        move || reads_as(&y.join("shared/note.bin"), &first),
        "shared/note.bin",
    )
    .await;
    let (x, y, c) = (a.clone(), bb.clone(), second.clone());
    d.expect(
        "a file rewritten (shorter) on B, read on A",
        move || fs::write(y.join("shared/note.bin"), &c).unwrap(),
        move || reads_as(&x.join("shared/note.bin"), &second),
        "shared/note.bin",
    )
    .await;
    let (x, y, c) = (a.clone(), bb.clone(), third.clone());
    d.expect(
        "an append on A, read on B",
        move || {
            let mut f = OpenOptions::new()
                .append(true)
                .open(x.join("shared/note.bin"))
                .unwrap();
            f.write_all(b"appended on A").unwrap();
        },
        move || reads_as(&y.join("shared/note.bin"), &c),
        "shared/note.bin",
    )
    .await;
    let (x, y, c) = (a.clone(), bb.clone(), third.clone());
    d.expect(
        "a rename on B, seen on A",
        move || fs::rename(y.join("shared/note.bin"), y.join("shared/renamed.bin")).unwrap(),
        move || {
            reads_as(&x.join("shared/renamed.bin"), &c)?;
            gone(&x.join("shared/note.bin"))
        },
        "shared/renamed.bin",
    )
    .await;
    let (x, y) = (a.clone(), bb.clone());
    d.expect(
        "a removal on A, gone on B",
        move || fs::remove_file(x.join("shared/renamed.bin")).unwrap(),
        move || gone(&y.join("shared/renamed.bin")),
        "shared/renamed.bin",
    )
    .await;
    // Close-to-open: B holds the file open while A replaces it; B's next
    // open reads the new content.
    let (x, y) = (a.clone(), bb.clone());
    d.expect(
        "c2o v1 written on A, read on B",
        move || fs::write(x.join("shared/c2o.txt"), b"version one").unwrap(),
        move || reads_as(&y.join("shared/c2o.txt"), b"version one"),
        "shared/c2o.txt",
    )
    .await;
    let held = File::open(bb.join("shared/c2o.txt")).unwrap();
    let (x, y) = (a.clone(), bb.clone());
    d.expect(
        "c2o v2 written on A while B holds it open, read on B after reopening",
        move || fs::write(x.join("shared/c2o.txt"), b"version two, longer").unwrap(),
        move || reads_as(&y.join("shared/c2o.txt"), b"version two, longer"),
        "shared/c2o.txt",
    )
    .await;
    let mut s = String::new();
    let _ = (&held).read_to_string(&mut s);
    eprintln!("the descriptor B held open read {s:?}");
    drop(held);
    drop(two);
}

/// The markers of the zero-knowledge test and the workload that stores them.
struct Markers {
    tag: String,
}

impl Markers {
    fn new() -> Self {
        Self {
            tag: tests::random_hex(6).to_uppercase(),
        }
    }
    fn file_name(&self) -> String {
        format!("secret-plan-{}.txt", self.tag)
    }
    fn dir_name(&self) -> String {
        format!("project-falcon-{}", self.tag)
    }
    fn late_name(&self) -> String {
        format!("journal-only-{}.txt", self.tag)
    }
    fn content_marker(&self) -> String {
        format!("ZK-CONTENT-MARKER-{}-", self.tag)
    }
    fn tiny_content(&self) -> String {
        format!("tiny-zk-{}", self.tag)
    }
    fn xattr_name(&self) -> String {
        format!("user.zk-attr-{}", self.tag)
    }
    fn xattr_value(&self) -> String {
        format!("zk-xattr-value-{}", self.tag)
    }
    fn link_target(&self) -> String {
        format!("zk-link-target-{}", self.tag)
    }
    fn late_content(&self) -> String {
        format!("ZK-LATE-CONTENT-{}-", self.tag)
    }
    fn big_content(&self) -> Vec<u8> {
        self.content_marker()
            .repeat(3 * (1 << 20) / 30)
            .into_bytes()
    }
    fn late(&self) -> Vec<u8> {
        self.late_content().repeat(20_000).into_bytes()
    }
    fn needles(&self) -> Vec<Needle> {
        let mut v = Vec::new();
        for (label, m) in [
            ("file name", format!("secret-plan-{}", self.tag)),
            ("directory name", self.dir_name()),
            ("late file name", format!("journal-only-{}", self.tag)),
            ("content", self.content_marker()),
            ("small content", self.tiny_content()),
            ("xattr name", format!("zk-attr-{}", self.tag)),
            ("xattr value", self.xattr_value()),
            ("symlink target", self.link_target()),
            ("late content", self.late_content()),
        ] {
            v.extend(needles(label, m.as_bytes()));
        }
        v
    }
    /// Writes everything under `r` (the mount or a plain directory).
    fn write_workload(&self, r: &Path) {
        let d = r.join(self.dir_name());
        fs::create_dir(&d).unwrap();
        fs::write(d.join(self.file_name()), self.big_content()).unwrap();
        fs::write(r.join("small.txt"), self.tiny_content()).unwrap();
        sys::setxattr(
            &d.join(self.file_name()),
            &self.xattr_name(),
            self.xattr_value().as_bytes(),
            0,
        )
        .unwrap();
        std::os::unix::fs::symlink(self.link_target(), r.join("link")).unwrap();
        for f in [d.join(self.file_name()), r.join("small.txt")] {
            File::open(f).unwrap().sync_all().unwrap();
        }
    }
    fn write_late(&self, r: &Path) {
        let mut f = File::create(r.join(self.late_name())).unwrap();
        f.write_all(&self.late()).unwrap();
        f.sync_all().unwrap();
    }
    fn check(&self, r: &Path) {
        let d = r.join(self.dir_name());
        assert_bytes(
            "big marker file",
            &fs::read(d.join(self.file_name())).unwrap(),
            &self.big_content(),
        );
        assert_eq!(
            fs::read_to_string(r.join("small.txt")).unwrap(),
            self.tiny_content()
        );
        assert_eq!(
            sys::getxattr(&d.join(self.file_name()), &self.xattr_name()).unwrap(),
            self.xattr_value().as_bytes()
        );
        assert_eq!(
            fs::read_link(r.join("link")).unwrap(),
            Path::new(&self.link_target())
        );
        assert_bytes(
            "late marker file",
            &fs::read(r.join(self.late_name())).unwrap(),
            &self.late(),
        );
    }
}

#[track_caller]
fn assert_no_hits(what: &str, hits: &[(String, String)]) {
    assert!(
        hits.is_empty(),
        "plaintext found in {what}:\n{}",
        hits.iter()
            .take(30)
            .map(|(w, l)| format!("  {l} in {w}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Scans the client's journal and caches; answers how many bytes it read.
fn scan_client(m: &TestMount, needles: &[Needle], when: &str) -> u64 {
    let mut total = 0;
    for dir in [
        m.journal_dir(),
        m.cache_dir().to_owned(),
        m.xdg_cache_dir().to_owned(),
    ] {
        let (hits, bytes) = scan_dir(&dir, needles);
        assert_no_hits(&format!("the client's {} ({when})", dir.display()), &hits);
        total += bytes;
    }
    // The daemon's own logs: a name there is plaintext on disk too; not the
    // journal or cache, so reported, not failed.
    let (hits, _) = scan_dir(&m.data_dir().join("logs"), needles);
    if !hits.is_empty() {
        eprintln!(
            "NOTE: plaintext markers in the daemon's logs ({when}): {:?}",
            hits.iter().take(5).collect::<Vec<_>>()
        );
    }
    eprintln!("scanned {total} bytes of client journal and cache ({when})");
    total
}

async fn zero_knowledge_on_server_and_client_disks(b: Backend) {
    let Some(mut v) = tests::mount::start(b).await else {
        return;
    };
    let markers = std::sync::Arc::new(Markers::new());
    let needles = markers.needles();

    // The scan works: it finds every marker in a plaintext copy.
    let plain = tempfile::tempdir().unwrap();
    markers.write_workload(plain.path());
    markers.write_late(plain.path());
    let (hits, _) = scan_dir(plain.path(), &needles);
    for label in [
        "file name",
        "directory name",
        "late file name",
        "content",
        "small content",
        "late content",
    ] {
        assert!(
            hits.iter().any(|(_, l)| l.starts_with(label)),
            "the scan misses {label} in plaintext: {hits:?}"
        );
    }

    // The workload, synced; the client's disk while mounted.
    let root = v.mount.path().to_owned();
    let (mk, r) = (markers.clone(), root.clone());
    blocking("the marker workload", STEP, move || mk.write_workload(&r)).await;
    scan_client(&v.mount, &needles, "mounted, after fsync");

    // More, fsynced, and kill -9 at once: the journal holds it.
    let (mk, r) = (markers.clone(), root.clone());
    blocking("a late fsynced file", STEP, move || mk.write_late(&r)).await;
    v.mount.kill9();
    let journal_bytes = scan_client(&v.mount, &needles, "after kill -9");
    eprintln!("journal and caches hold {journal_bytes} bytes after kill -9");

    // Replayed, read back (filling the caches), unmounted.
    v.mount.remount();
    let (mk, r) = (markers.clone(), root.clone());
    blocking("read everything back", STEP, move || mk.check(&r)).await;
    scan_client(&v.mount, &needles, "after replay and reads");
    v.mount.unmount();
    scan_client(&v.mount, &needles, "after unmount");

    // The server: its whole data dir (SQLite files, objects, logs, outbox).
    let (hits, bytes) = scan_dir(v.server.data_dir(), &needles);
    assert_no_hits("the server's data dir", &hits);
    let content_bytes = (markers.big_content().len() + markers.late().len()) as u64;
    assert!(
        bytes >= content_bytes,
        "the server's data dir holds {bytes} bytes, less than the {content_bytes} bytes of \
         content: the scan did not see where the data is"
    );
    eprintln!("scanned {bytes} bytes of the server's data dir");
    let log = v.server.log();
    assert_no_hits(
        "the server's log",
        &scan_bytes("server log", log.as_bytes(), &needles),
    );

    // MariaDB: every table, dumped.
    if b == Backend::MariaDb {
        let url = server_database_url(&v.server).expect("the server's VAULT_DATABASE_URL");
        let dump = mysql_dump(&url);
        assert!(
            dump.len() > 1000,
            "the dump is too small to be real: {} bytes",
            dump.len()
        );
        assert_no_hits(
            "a dump of every MariaDB table",
            &scan_bytes("mariadb-dump", &dump, &needles),
        );
        eprintln!("scanned {} bytes of mariadb-dump", dump.len());
    }
}

/// `mariadb-dump` of the database at `url` (`mysql://user:pass@host:port/db`).
fn mysql_dump(url: &str) -> Vec<u8> {
    let rest = url.strip_prefix("mysql://").expect("a mysql:// URL");
    let rest = rest.split('?').next().unwrap();
    let (creds, hostdb) = rest.rsplit_once('@').expect("credentials in the URL");
    let (user, pass) = creds.split_once(':').unwrap_or((creds, ""));
    let (hostport, db) = hostdb.split_once('/').expect("a database in the URL");
    let (host, port) = hostport.split_once(':').unwrap_or((hostport, "3306"));
    let tool = ["mariadb-dump", "mysqldump"]
        .into_iter()
        .find(|t| tests::mount::which(t).is_some())
        .expect("mariadb-dump (Debian package mariadb-client)");
    let mut cmd = std::process::Command::new(tool);
    cmd.args([
        "--no-defaults",
        "--protocol=TCP",
        "-h",
        host,
        "-P",
        port,
        "-u",
        user,
        "--skip-extended-insert",
        "--single-transaction",
        db,
    ])
    .env("MYSQL_PWD", pass);
    let dir = tempfile::tempdir().unwrap();
    let out = run_with_timeout(
        cmd,
        "mariadb-dump",
        dir.path(),
        None,
        Duration::from_secs(300),
    );
    out.assert_success();
    // The dump is text; binary columns come out escaped but otherwise raw.
    fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .find(|e| e.file_name().to_string_lossy().ends_with(".stdout"))
        .map(|e| fs::read(e.path()).unwrap())
        .unwrap_or_default()
}
