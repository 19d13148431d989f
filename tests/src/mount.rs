//! A real FUSE mount of a test account, driven through the real `vault`
//! binary: `vault login` (the password and the mailed code as lines on
//! standard input), then `vault mount DIR` (detached; it returns once the
//! mount is live), `vault unmount DIR`, `kill -9` of the daemon, and a
//! remount that must clean a stale mount and replay the journal.
//!
//! Every [`TestMount`] has its own client state under one temporary root:
//! `config/` (`VAULT_CONFIG_DIR`, the session), `data/` (`VAULT_DATA_DIR`:
//! the journal and the daemon's logs), `cache/` (`--cache-dir`, the
//! ciphertext cache), `xdg-cache/` (`XDG_CACHE_HOME`, so nothing lands in
//! the real home), `mnt/` (the mount point) and `out/` (each command's
//! output). Two `TestMount`s of one account are two devices.
//!
//! Dropping a `TestMount` always takes its mount down: `vault unmount`, then
//! `kill -9` of the daemon and `fusermount3 -uz` as the last resort, so a
//! failing test never leaves a mount behind. Its temporary root is never
//! removed through a live mount (it is kept, with a warning, if the mount
//! cannot be taken down).
//!
//! FUSE tests follow the [`crate::services`] convention: when `/dev/fuse` or
//! `fusermount3` is missing they are skipped with a `SKIPPED` line, and fail
//! instead under `VAULT_TEST_REQUIRE_SERVICES=1` (CI). The same holds for
//! the programs the program tests drive ([`tool_available`]).
//!
//! Also here: the syscalls std does not wrap ([`sys`]), test data that is
//! cheap to make and check ([`data`]), tree snapshots to compare two trees
//! ([`tree`]), a search for plaintext markers in files ([`scan`]), and a
//! server that can be killed and restarted on the same port and data
//! ([`kill_server`], [`restart_server`]).

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::account::TestAccount;
use crate::mail::MailReader;
use crate::server::{ServerOptions, TestServer};
use crate::services::{self, Backend};

/// How long `vault mount` may take to return (it returns once live).
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `vault unmount` may take (it uploads what is pending).
pub const UNMOUNT_TIMEOUT: Duration = Duration::from_secs(900);
/// How long `vault login` may take.
pub const LOGIN_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the daemon may take to exit after its mount is gone or after
/// `kill -9`.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
/// `statfs(2)`'s `f_type` for FUSE.
pub const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("this test")
        .to_owned()
}

/// Skips (prints a `SKIPPED` line, answers false) or, under
/// `VAULT_TEST_REQUIRE_SERVICES=1`, fails.
fn skip_or_fail(why: &str) -> bool {
    if services::required() {
        panic!("VAULT_TEST_REQUIRE_SERVICES=1 but {why}");
    }
    let _ = writeln!(std::io::stderr(), "SKIPPED {}: {why}", test_name());
    false
}

/// The program `name` on `PATH` (or in `/usr/sbin`, `/sbin`).
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| {
            fs::metadata(p).is_ok_and(|m| {
                use std::os::unix::fs::PermissionsExt as _;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
        })
}

/// A size knob of the heavy tests: the variable `name` if set to a number,
/// else `default` (the size the tests are specified with).
pub fn env_knob(name: &str, default: u64) -> u64 {
    match var(name) {
        None => default,
        Some(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
    }
}

/// Why FUSE mounts cannot run here, if they cannot.
pub fn fuse_problem() -> Option<String> {
    if var("VAULT_TEST_FUSE").as_deref() == Some("0") {
        return Some("VAULT_TEST_FUSE=0 turns the FUSE tests off".into());
    }
    match fs::metadata("/dev/fuse") {
        Ok(m) if m.file_type().is_char_device() => {}
        Ok(_) => return Some("/dev/fuse is not a character device".into()),
        Err(e) => {
            return Some(format!(
                "/dev/fuse is missing ({e}): load the fuse module or pass --device /dev/fuse"
            ));
        }
    }
    if let Err(e) = OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        return Some(format!(
            "cannot open /dev/fuse read-write ({e}): run as root"
        ));
    }
    if which("fusermount3").is_none() {
        return Some("fusermount3 is not on PATH (Debian package fuse3)".into());
    }
    None
}

/// True when FUSE mounts can run; otherwise skips (prints why) or, under
/// `VAULT_TEST_REQUIRE_SERVICES=1`, fails.
pub fn fuse_available() -> bool {
    match fuse_problem() {
        None => true,
        Some(why) => skip_or_fail(&format!("the FUSE tests cannot run: {why}")),
    }
}

/// True when every program in `names` is on `PATH`; otherwise skips or,
/// under `VAULT_TEST_REQUIRE_SERVICES=1`, fails (scripts/lib/deps.sh
/// installs them).
pub fn tool_available(names: &[&str]) -> bool {
    let missing: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| which(n).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    skip_or_fail(&format!(
        "{} not installed (scripts/lib/deps.sh installs the Debian packages)",
        missing.join(", ")
    ))
}

// ---------------------------------------------------------------------------
// Mount table and processes
// ---------------------------------------------------------------------------

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The mount point.
    pub mount_point: PathBuf,
    /// The filesystem type (`fuse`, `fuse.vault`, ...).
    pub fs_type: String,
    /// The source (device) field.
    pub source: String,
    /// `major:minor` of the mounted device (for FUSE, `0:N` with N the
    /// connection's number under `/sys/fs/fuse/connections`).
    pub dev: String,
    /// The per-mount options.
    pub options: String,
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape_mountinfo(field: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt as _;
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'\\'
            && let Some(oct) = b.get(i + 1..i + 4)
            && oct.iter().all(|d| (b'0'..=b'7').contains(d))
        {
            let v = oct
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            out.push(u8::try_from(v).unwrap_or(b'?'));
            i += 4;
            continue;
        }
        out.push(c);
        i += 1;
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Every mount this process sees.
pub fn mounts() -> Vec<MountEntry> {
    let text = fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            Some(MountEntry {
                mount_point: unescape_mountinfo(left.get(4)?),
                options: (*left.get(5)?).to_owned(),
                dev: (*left.get(2)?).to_owned(),
                fs_type: right.next()?.to_owned(),
                source: right.next().unwrap_or_default().to_owned(),
            })
        })
        .collect()
}

/// The mount at exactly `path` (the last one, if stacked).
pub fn mount_at(path: &Path) -> Option<MountEntry> {
    mounts().into_iter().rev().find(|m| m.mount_point == path)
}

/// True if a process `pid` exists and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    if task_alive(&format!("/proc/{pid}/stat")) {
        return true;
    }
    // A killed process's main thread turns zombie before the others have
    // exited, and its files (locks) are let go only with the last of them.
    fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|tasks| {
        tasks
            .flatten()
            .any(|t| task_alive(&format!("{}/stat", t.path().display())))
    })
}

/// Whether the thread whose `stat` file this is runs (is not a zombie).
fn task_alive(stat_path: &str) -> bool {
    let Ok(stat) = fs::read_to_string(stat_path) else {
        return false;
    };
    // The state follows the parenthesised command name.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z' | 'X') | None)
}

/// Waits up to `timeout` for `pid` to be gone; true if it is.
pub fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while process_alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

fn proc_args(pid: u32, file: &str) -> Vec<Vec<u8>> {
    fs::read(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn proc_exe_name(pid: u32) -> Option<String> {
    let exe = fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let name = exe.file_name()?.to_string_lossy().into_owned();
    Some(name.trim_end_matches(" (deleted)").to_owned())
}

fn all_pids() -> Vec<u32> {
    let me = std::process::id();
    fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .filter(|&p| p != me)
                .collect()
        })
        .unwrap_or_default()
}

fn holds_dev_fuse(pid: u32) -> bool {
    fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|rd| {
        rd.filter_map(Result::ok)
            .any(|e| fs::read_link(e.path()).is_ok_and(|t| t == Path::new("/dev/fuse")))
    })
}

/// Sends `signal` to `pid`.
pub fn signal(pid: u32, signal: i32) -> std::io::Result<()> {
    sys::kill(pid, signal)
}

// ---------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------

/// What a finished (or timed-out) command did.
#[derive(Debug)]
pub struct CmdOutput {
    /// The command line, for messages.
    pub what: String,
    /// The exit status (`None`: killed after the timeout).
    pub status: Option<ExitStatus>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl CmdOutput {
    /// True on exit status 0.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// Panics with the whole output unless it succeeded.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(self.success(), "{self}");
        self
    }
}

impl std::fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let status = self
            .status
            .map_or_else(|| "killed after its timeout".to_owned(), |s| s.to_string());
        write!(
            f,
            "`{}` ({status}, {:.1?}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` (its standard output and error go to files under `out_dir`,
/// never pipes: a detached daemon inheriting them cannot hang us), waits up
/// to `timeout`, kills it after that.
pub fn run_with_timeout(
    mut cmd: Command,
    what: &str,
    out_dir: &Path,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> CmdOutput {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let n = RUNS.fetch_add(1, Ordering::Relaxed);
    fs::create_dir_all(out_dir).expect("output dir");
    let slug: String = what
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(40)
        .collect();
    let out_path = out_dir.join(format!("{n:04}-{slug}.stdout"));
    let err_path = out_dir.join(format!("{n:04}-{slug}.stderr"));
    cmd.stdout(Stdio::from(File::create(&out_path).expect("stdout file")))
        .stderr(Stdio::from(File::create(&err_path).expect("stderr file")))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        // A child that exits early closes the pipe: not our error.
        let _ = pipe.write_all(input);
    }
    let deadline = start + timeout;
    let mut hung = String::new();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                hung = process_report(child.id());
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for `{what}`: {e}"),
        }
    };
    let mut stderr = String::from_utf8_lossy(&fs::read(&err_path).unwrap_or_default()).into_owned();
    if !hung.is_empty() {
        stderr.push_str("\n--- where it hung ---\n");
        stderr.push_str(&hung);
    }
    CmdOutput {
        what: what.to_owned(),
        status,
        stdout: String::from_utf8_lossy(&fs::read(&out_path).unwrap_or_default()).into_owned(),
        stderr,
        elapsed: start.elapsed(),
    }
}

/// Runs a program (no timeout beyond `timeout`), its output captured.
pub fn run_program(
    program: &str,
    args: &[&str],
    cwd: Option<&Path>,
    timeout: Duration,
) -> CmdOutput {
    let mut cmd = Command::new(program);
    cmd.args(args);
    if let Some(dir) = cwd {
        cmd.current_dir(dir);
    }
    let what = format!("{program} {}", args.join(" "));
    // The files are only a way to avoid pipes; they go with the temp dir.
    let out_dir = tempfile::tempdir().expect("temp dir");
    run_with_timeout(cmd, &what, out_dir.path(), None, timeout)
}

/// Runs blocking filesystem work `f` on its own thread and waits up to
/// `timeout`: a hung filesystem call fails the test with `what` instead of
/// hanging the suite (the mount's cleanup then kills the daemon, which
/// frees the stuck thread). A panic in `f` is the test's panic. Prints how
/// long it took.
pub async fn blocking<T: Send + 'static>(
    what: &str,
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let start = Instant::now();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(format!("{}: {what}", test_name()))
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(r);
        })
        .expect("spawn a thread");
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(Ok(v))) => {
            eprintln!("[{}] {what}: {:.2?}", test_name(), start.elapsed());
            v
        }
        Ok(Ok(Err(panic))) => std::panic::resume_unwind(panic),
        Ok(Err(_)) => panic!("{what}: the worker thread vanished"),
        Err(_) => panic!(
            "{what} did not finish in {timeout:?}: a filesystem call hangs (or is far too \
             slow)\n{}",
            hang_report()
        ),
    }
}

/// The threads of process `pid` (state, wait channel, kernel stack of those
/// in `D` state) and the FUSE connections' outstanding requests.
pub fn process_report(pid: u32) -> String {
    threads_report(
        &PathBuf::from(format!("/proc/{pid}/task")),
        &format!("process {pid}"),
    )
}

fn threads_report(task_dir: &Path, whose: &str) -> String {
    let mut s = format!("threads of {whose}:\n");
    let tasks = fs::read_dir(task_dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for t in tasks {
        let read = |f: &str| fs::read_to_string(t.join(f)).unwrap_or_default();
        let state = read("status")
            .lines()
            .find(|l| l.starts_with("State:"))
            .unwrap_or_default()
            .trim_start_matches("State:")
            .trim()
            .to_owned();
        s.push_str(&format!(
            "  {} [{}] {state} wchan={}\n",
            t.file_name().unwrap_or_default().to_string_lossy(),
            read("comm").trim(),
            read("wchan").trim()
        ));
        if state.starts_with('D') || state.starts_with('S') {
            for line in read("stack").lines().take(8) {
                s.push_str(&format!("      {line}\n"));
            }
        }
    }
    s.push_str(&fuse_connections_report());
    s
}

/// Each FUSE connection's outstanding requests, with its mount point.
pub fn fuse_connections_report() -> String {
    let mut s = String::new();
    let table = mounts();
    if let Ok(rd) = fs::read_dir("/sys/fs/fuse/connections") {
        for c in rd.filter_map(Result::ok) {
            let id = c.file_name().to_string_lossy().into_owned();
            let waiting = fs::read_to_string(c.path().join("waiting")).unwrap_or_default();
            let at = table
                .iter()
                .find(|m| m.dev == format!("0:{id}"))
                .map_or_else(|| "?".to_owned(), |m| m.mount_point.display().to_string());
            s.push_str(&format!(
                "FUSE connection {id} ({at}): {} requests waiting for the daemon\n",
                waiting.trim()
            ));
        }
    }
    s
}

/// What this process's threads wait on (name, state, kernel wait channel
/// and, for a thread in `D` state, its kernel stack) and how many requests
/// each FUSE connection has outstanding: the facts for a hang report.
pub fn hang_report() -> String {
    threads_report(Path::new("/proc/self/task"), "the test process")
}

/// Polls `check` until it answers `Ok`, for up to `limit`; fails if it
/// never does. To tell "slow" from "never", polling goes on up to
/// `diagnose` and the failure says when (if ever) it succeeded. Answers how
/// long it took. Blocking: call it inside [`blocking`].
pub fn poll_until(
    what: &str,
    limit: Duration,
    diagnose: Duration,
    check: impl FnMut() -> Result<(), String>,
) -> Duration {
    poll_for(what, limit, diagnose, check).unwrap_or_else(|e| panic!("{e}"))
}

/// [`poll_until`] that answers the failure instead of panicking.
pub fn poll_for(
    what: &str,
    limit: Duration,
    diagnose: Duration,
    mut check: impl FnMut() -> Result<(), String>,
) -> Result<Duration, String> {
    let start = Instant::now();
    let mut last;
    loop {
        match check() {
            Ok(()) => {
                let took = start.elapsed();
                if took > limit {
                    return Err(format!(
                        "{what}: only after {took:.2?} (the limit is {limit:?})"
                    ));
                }
                return Ok(took);
            }
            Err(e) => last = e,
        }
        if start.elapsed() >= diagnose {
            return Err(format!(
                "{what}: not within {limit:?}, nor within {diagnose:?}; last: {last}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// TestMount
// ---------------------------------------------------------------------------

/// A server, an account and its mount, dropped in that order: the mount
/// first (its unmount still reaches the server), then the server.
#[derive(Debug)]
pub struct MountedVault {
    /// The mount.
    pub mount: TestMount,
    /// The account.
    pub account: TestAccount,
    /// The server.
    pub server: TestServer,
}

/// Starts a server on `backend`, registers an account and mounts it; `None`
/// (after a `SKIPPED` line) when FUSE or the backend's services are missing.
pub async fn start(backend: Backend) -> Option<MountedVault> {
    start_with(backend, ServerOptions::default(), &[]).await
}

/// [`start`] with server options and extra `vault mount` arguments.
pub async fn start_with(
    backend: Backend,
    options: ServerOptions,
    mount_args: &[&str],
) -> Option<MountedVault> {
    if !fuse_available() {
        return None;
    }
    let server = TestServer::start_with(backend, options).await?;
    let account = server.new_account("mount").await;
    let mount = TestMount::with_args(&server, &account, mount_args).await;
    Some(MountedVault {
        mount,
        account,
        server,
    })
}

/// One device's `vault` state and its mount.
#[derive(Debug)]
pub struct TestMount {
    root: Option<tempfile::TempDir>,
    mount_point: PathBuf,
    config_dir: PathBuf,
    data_dir: PathBuf,
    cache_dir: PathBuf,
    xdg_cache: PathBuf,
    out_dir: PathBuf,
    server_url: String,
    email: String,
    password: String,
    mail: Arc<MailReader>,
    args: Vec<String>,
    /// The daemon seen after the last mount.
    pid: Option<u32>,
}

impl TestMount {
    /// Logs `account` in with `vault login` into a fresh client state and
    /// mounts it.
    pub async fn new(server: &TestServer, account: &TestAccount) -> Self {
        Self::with_args(server, account, &[]).await
    }

    /// [`Self::new`] with extra `vault mount` arguments.
    pub async fn with_args(server: &TestServer, account: &TestAccount, args: &[&str]) -> Self {
        let mut m = Self::logged_in(server, account, args).await;
        m.mount();
        m
    }

    /// A fresh client state with `vault login` done, not mounted yet.
    pub async fn logged_in(server: &TestServer, account: &TestAccount, args: &[&str]) -> Self {
        let root = tempfile::Builder::new()
            .prefix("vault-mount-")
            .tempdir()
            .expect("temp dir");
        // The canonical path: mountinfo shows canonical paths.
        let base = root.path().canonicalize().expect("canonical temp dir");
        let mount_point = base.join("mnt");
        let data_dir = base.join("data");
        let cache_dir = base.join("cache");
        let xdg_cache = base.join("xdg-cache");
        for d in [&mount_point, &data_dir, &cache_dir, &xdg_cache] {
            fs::create_dir_all(d).expect("client dir");
        }
        let m = Self {
            config_dir: base.join("config"),
            out_dir: base.join("out"),
            mount_point,
            data_dir,
            cache_dir,
            xdg_cache,
            root: Some(root),
            server_url: server.url.clone(),
            email: account.email.clone(),
            password: account.password.clone(),
            mail: server.mail.clone(),
            args: args.iter().map(|&a| a.to_owned()).collect(),
            pid: None,
        };
        m.login().await;
        m
    }

    /// `vault ARGS` with this device's environment (every inherited `VAULT_*`
    /// variable removed first).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(crate::binary("vault"));
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("VAULT_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("VAULT_CONFIG_DIR", &self.config_dir)
            .env("VAULT_DATA_DIR", &self.data_dir)
            .env("VAULT_SERVER", &self.server_url)
            .env("XDG_CACHE_HOME", &self.xdg_cache)
            .env("RUST_BACKTRACE", "1");
        // Set VAULT_TEST_CLIENT_VERBOSE=1 to see the daemon's debug log in
        // a failing test's client logs.
        if std::env::var_os("VAULT_TEST_CLIENT_VERBOSE").is_some() {
            cmd.arg("-v");
        }
        cmd.args(args);
        cmd
    }

    /// Runs `vault ARGS` (password in `VAULT_PASSWORD`) up to `timeout`.
    pub fn vault(&self, args: &[&str], timeout: Duration) -> CmdOutput {
        let mut cmd = self.command(args);
        cmd.env("VAULT_PASSWORD", &self.password);
        run_with_timeout(
            cmd,
            &format!("vault {}", args.join(" ")),
            &self.out_dir,
            None,
            timeout,
        )
    }

    /// `vault login`: the password, then the mailed code, as stdin lines.
    async fn login(&self) {
        let mut cmd = self.command(&["login", "--email", &self.email]);
        let out_path = self.out_dir.join("login.out");
        let err_path = self.out_dir.join("login.err");
        fs::create_dir_all(&self.out_dir).expect("output dir");
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::from(File::create(&out_path).expect("file")))
            .stderr(Stdio::from(File::create(&err_path).expect("file")));
        let mut child = cmd.spawn().expect("start vault login");
        let mut stdin = child.stdin.take().expect("piped stdin");
        writeln!(stdin, "{}", self.password).expect("password to vault login");
        let code = self.mail.code(&self.email, "login").await;
        writeln!(stdin, "{code}").expect("code to vault login");
        drop(stdin);
        let deadline = Instant::now() + LOGIN_TIMEOUT;
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait for vault login") {
                break Some(s);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let out = CmdOutput {
            what: format!("vault login --email {}", self.email),
            status,
            stdout: fs::read_to_string(&out_path).unwrap_or_default(),
            stderr: fs::read_to_string(&err_path).unwrap_or_default(),
            elapsed: Duration::ZERO,
        };
        out.assert_success();
    }

    /// The mount point (canonical).
    pub fn path(&self) -> &Path {
        &self.mount_point
    }

    /// `path()/rel`.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.mount_point.join(rel)
    }

    /// `VAULT_CONFIG_DIR`.
    pub fn config_dir(&self) -> &Path {
        &self.config_dir
    }

    /// `VAULT_DATA_DIR` (journal under `journal/`, logs under `logs/`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The journal directory (`$VAULT_DATA_DIR/journal`).
    pub fn journal_dir(&self) -> PathBuf {
        self.data_dir.join("journal")
    }

    /// The `--cache-dir`.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// `XDG_CACHE_HOME`.
    pub fn xdg_cache_dir(&self) -> &Path {
        &self.xdg_cache
    }

    /// The mountinfo entry of the mount point, if mounted (live or stale).
    pub fn mount_entry(&self) -> Option<MountEntry> {
        mount_at(&self.mount_point)
    }

    /// True if something is mounted at the mount point (live or stale).
    pub fn is_mounted(&self) -> bool {
        self.mount_entry().is_some()
    }

    /// `vault mount DIR --cache-dir D ARGS`: must return 0 with the mount
    /// live (a FUSE mount in mountinfo, statfs answering FUSE's magic).
    pub fn mount(&mut self) -> Duration {
        let mnt = self.mount_point.to_string_lossy().into_owned();
        let cache = self.cache_dir.to_string_lossy().into_owned();
        let mut args: Vec<&str> = vec!["mount", &mnt, "--cache-dir", &cache];
        args.extend(self.args.iter().map(String::as_str));
        let out = self.vault(&args, MOUNT_TIMEOUT);
        if !out.success() {
            panic!("{out}\n{}", self.daemon_logs());
        }
        let entry = self.mount_entry().unwrap_or_else(|| {
            panic!(
                "`vault mount` returned 0 but nothing is mounted at {} (the contract: it returns \
                 once the mount is live)\n{out}\n{}",
                self.mount_point.display(),
                self.daemon_logs()
            )
        });
        assert!(
            entry.fs_type.starts_with("fuse"),
            "{} is mounted as {entry:?}, not FUSE",
            self.mount_point.display()
        );
        let st = sys::statfs(&self.mount_point).unwrap_or_else(|e| {
            panic!(
                "statfs({}) right after `vault mount` returned: {e}\n{}",
                self.mount_point.display(),
                self.daemon_logs()
            )
        });
        assert_eq!(
            st.f_type, FUSE_SUPER_MAGIC,
            "statfs of the mount point is not FUSE"
        );
        self.pid = self.find_daemon_pid();
        assert!(
            self.pid.is_some(),
            "mounted, but no `vault` daemon process found for {}",
            self.mount_point.display()
        );
        out.elapsed
    }

    /// Mounts again after [`Self::unmount`] or [`Self::kill9`] (a stale
    /// mount must be cleaned by `vault mount` itself).
    pub fn remount(&mut self) -> Duration {
        self.mount()
    }

    /// `vault unmount DIR`: uploads what is pending; must return 0 with the
    /// mount gone and the daemon exited. Answers how long it took.
    pub fn unmount(&mut self) -> Duration {
        let pid = self.pid.or_else(|| self.find_daemon_pid());
        let mnt = self.mount_point.to_string_lossy().into_owned();
        let out = self.vault(&["unmount", &mnt], UNMOUNT_TIMEOUT);
        if !out.success() {
            panic!("{out}\n{}", self.daemon_logs());
        }
        let deadline = Instant::now() + EXIT_TIMEOUT;
        while self.is_mounted() {
            assert!(
                Instant::now() < deadline,
                "`vault unmount` returned 0 but {} is still mounted after {EXIT_TIMEOUT:?}\n{out}",
                self.mount_point.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(pid) = pid {
            assert!(
                wait_gone(pid, EXIT_TIMEOUT),
                "the daemon (pid {pid}) still runs {EXIT_TIMEOUT:?} after `vault unmount`"
            );
        }
        self.pid = None;
        out.elapsed
    }

    /// `kill -9` of the daemon; waits until it is gone. The mount stays
    /// behind (stale) unless something else takes it down.
    pub fn kill9(&mut self) {
        let pid = self
            .find_daemon_pid()
            .or(self.pid)
            .expect("a daemon to kill");
        signal(pid, libc::SIGKILL).expect("kill -9 the daemon");
        assert!(
            wait_gone(pid, EXIT_TIMEOUT),
            "the daemon (pid {pid}) survived kill -9"
        );
        self.pid = None;
    }

    /// The daemon's pid: a `vault` process holding this mount point in its
    /// arguments or this device's `VAULT_DATA_DIR` in its environment
    /// (preferring one that holds `/dev/fuse`).
    pub fn daemon_pid(&self) -> Option<u32> {
        self.find_daemon_pid()
    }

    fn find_daemon_pid(&self) -> Option<u32> {
        let mnt = self.mount_point.as_os_str().as_encoded_bytes();
        let mut data_var = b"VAULT_DATA_DIR=".to_vec();
        data_var.extend_from_slice(self.data_dir.as_os_str().as_encoded_bytes());
        let candidates: Vec<u32> = all_pids()
            .into_iter()
            .filter(|&pid| proc_exe_name(pid).is_some_and(|n| n == "vault"))
            .filter(|&pid| process_alive(pid))
            .filter(|&pid| {
                let argv = proc_args(pid, "cmdline");
                if argv.iter().any(|a| a == b"unmount") {
                    return false;
                }
                argv.iter().any(|a| a == mnt) || proc_args(pid, "environ").contains(&data_var)
            })
            .collect();
        candidates
            .iter()
            .copied()
            .find(|&p| holds_dev_fuse(p))
            .or_else(|| candidates.first().copied())
    }

    /// `vault status` (must succeed).
    pub fn status(&self) -> String {
        let out = self.vault(&["status"], Duration::from_secs(60));
        out.assert_success();
        out.stdout
    }

    /// `vault status --mounts` (must succeed).
    pub fn status_mounts(&self) -> String {
        let out = self.vault(&["status", "--mounts"], Duration::from_secs(60));
        out.assert_success();
        out.stdout
    }

    /// The tail of every daemon log and of this device's command outputs,
    /// for failure messages.
    pub fn daemon_logs(&self) -> String {
        let mut s = String::new();
        for dir in [self.data_dir.join("logs"), self.out_dir.clone()] {
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            let mut paths: Vec<PathBuf> = rd.filter_map(Result::ok).map(|e| e.path()).collect();
            paths.sort();
            for p in paths {
                let text = fs::read_to_string(&p).unwrap_or_default();
                if text.trim().is_empty() {
                    continue;
                }
                let lines: Vec<&str> = text.lines().collect();
                let from = lines.len().saturating_sub(60);
                s.push_str(&format!(
                    "---- {} ----\n{}\n",
                    p.display(),
                    lines.get(from..).unwrap_or_default().join("\n")
                ));
            }
        }
        s
    }

    /// Takes the mount down whatever state it is in; true if it is gone.
    fn take_down(&mut self) -> bool {
        let pid = self.find_daemon_pid().or(self.pid);
        if self.is_mounted() || pid.is_some_and(process_alive) {
            let mnt = self.mount_point.to_string_lossy().into_owned();
            let out = self.vault(&["unmount", &mnt], Duration::from_secs(60));
            if !out.success() {
                eprintln!("cleanup: {out}");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.is_mounted() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        for pid in [self.find_daemon_pid(), pid].into_iter().flatten() {
            if process_alive(pid) {
                eprintln!("cleanup: kill -9 of the daemon {pid}");
                let _ = signal(pid, libc::SIGKILL);
                wait_gone(pid, EXIT_TIMEOUT);
            }
        }
        if self.is_mounted() {
            eprintln!("cleanup: fusermount3 -uz {}", self.mount_point.display());
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.mount_point)
                .status();
        }
        if self.is_mounted() {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.mount_point)
                .status();
        }
        !self.is_mounted()
    }
}

impl Drop for TestMount {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- vault client logs ({}) ----\n{}---- end of client logs ----",
                self.mount_point.display(),
                self.daemon_logs()
            );
        }
        if !self.take_down()
            && let Some(root) = self.root.take()
        {
            // Never remove files through a live mount.
            let kept = root.keep();
            eprintln!(
                "warning: {} is still mounted; keeping {}",
                self.mount_point.display(),
                kept.display()
            );
        }
        if std::env::var_os("VAULT_TEST_KEEP_CLIENT").is_some()
            && let Some(root) = self.root.take()
        {
            eprintln!("keeping client state in {}", root.keep().display());
        }
    }
}

// ---------------------------------------------------------------------------
// The server, killed and restarted on the same port
// ---------------------------------------------------------------------------

/// Server options that listen on a fixed free loopback port, so the server
/// can be restarted on the same address ([`restart_server`]).
pub fn fixed_port_options() -> ServerOptions {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut options = ServerOptions::default();
    options
        .env
        .push(("VAULT_LISTEN".into(), format!("127.0.0.1:{port}")));
    options
}

/// The pid of the `vault-server` running in `server`'s data dir (its
/// working directory), if one runs.
pub fn server_pid(server: &TestServer) -> Option<u32> {
    let dir = server.data_dir().canonicalize().ok()?;
    all_pids().into_iter().find(|&pid| {
        process_alive(pid)
            && proc_exe_name(pid).is_some_and(|n| n == "vault-server")
            && fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir)
    })
}

/// `kill -9` of the server process (the data dir and database stay).
pub fn kill_server(server: &TestServer) {
    let pid = server_pid(server).expect("the test server's process");
    signal(pid, libc::SIGKILL).expect("kill -9 the server");
    assert!(wait_gone(pid, EXIT_TIMEOUT), "the server survived kill -9");
}

/// A new server process on the same data dir, database, secret, mail and
/// port as `server` (which must have been started with
/// [`fixed_port_options`] and killed with [`kill_server`]).
pub async fn restart_server(server: &TestServer) -> TestServer {
    let deadline = Instant::now() + Duration::from_secs(30);
    let port = server.url.rsplit(':').next().unwrap_or_default().to_owned();
    // The old socket may linger for a moment.
    while std::net::TcpListener::bind(format!("127.0.0.1:{port}")).is_err() {
        assert!(Instant::now() < deadline, "port {port} stays busy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let next = server.start_sibling().await;
    assert_eq!(next.url, server.url, "the restarted server moved");
    next
}

/// The server's database URL (from the server process's environment;
/// `None` for the embedded SQLite file).
pub fn server_database_url(server: &TestServer) -> Option<String> {
    let pid = server_pid(server)?;
    proc_args(pid, "environ").into_iter().find_map(|e| {
        let e = String::from_utf8(e).ok()?;
        e.strip_prefix("VAULT_DATABASE_URL=").map(str::to_owned)
    })
}

// ---------------------------------------------------------------------------
// Syscalls std does not wrap
// ---------------------------------------------------------------------------

/// `renameat2`, `fallocate`, extended attributes, `statfs`/`statvfs` and
/// `kill`: thin safe wrappers over libc, errors as `io::Error` (errno kept).
#[allow(unsafe_code)]
pub mod sys {
    use std::ffi::{CString, OsString};
    use std::fs::File;
    use std::io;
    use std::os::fd::AsRawFd as _;
    use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
    use std::path::Path;

    fn cstr(b: &[u8]) -> io::Result<CString> {
        CString::new(b).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
    }

    fn path(p: &Path) -> io::Result<CString> {
        cstr(p.as_os_str().as_bytes())
    }

    fn check(rc: libc::c_int) -> io::Result<()> {
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn size(rc: libc::ssize_t) -> io::Result<usize> {
        usize::try_from(rc).map_err(|_| io::Error::last_os_error())
    }

    /// `RENAME_NOREPLACE`.
    pub const RENAME_NOREPLACE: u32 = libc::RENAME_NOREPLACE;
    /// `RENAME_EXCHANGE`.
    pub const RENAME_EXCHANGE: u32 = libc::RENAME_EXCHANGE;

    /// `renameat2(AT_FDCWD, from, AT_FDCWD, to, flags)`.
    pub fn renameat2(from: &Path, to: &Path, flags: u32) -> io::Result<()> {
        let (f, t) = (path(from)?, path(to)?);
        // SAFETY: both are NUL-terminated strings that outlive the call.
        check(unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                f.as_ptr(),
                libc::AT_FDCWD,
                t.as_ptr(),
                flags,
            )
        })
    }

    /// `fallocate(fd, mode, offset, len)`.
    pub fn fallocate(file: &File, mode: i32, offset: u64, len: u64) -> io::Result<()> {
        let off = i64::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        let len = i64::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
        // SAFETY: a plain syscall on an open descriptor.
        check(unsafe { libc::fallocate(file.as_raw_fd(), mode, off, len) })
    }

    /// `XATTR_CREATE`.
    pub const XATTR_CREATE: i32 = libc::XATTR_CREATE;
    /// `XATTR_REPLACE`.
    pub const XATTR_REPLACE: i32 = libc::XATTR_REPLACE;

    /// `setxattr(path, name, value, flags)`.
    pub fn setxattr(p: &Path, name: &str, value: &[u8], flags: i32) -> io::Result<()> {
        let (p, n) = (path(p)?, cstr(name.as_bytes())?);
        // SAFETY: valid strings and a buffer of the given length.
        check(unsafe {
            libc::setxattr(
                p.as_ptr(),
                n.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                flags,
            )
        })
    }

    /// `getxattr(path, name)`, sized by a first call.
    pub fn getxattr(p: &Path, name: &str) -> io::Result<Vec<u8>> {
        let (p, n) = (path(p)?, cstr(name.as_bytes())?);
        loop {
            // SAFETY: a size query (null buffer, length 0).
            let len =
                size(unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) })?;
            let mut buf = vec![0u8; len];
            // SAFETY: the buffer has `buf.len()` writable bytes.
            let rc = unsafe {
                libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
            };
            match size(rc) {
                Ok(got) => {
                    buf.truncate(got);
                    return Ok(buf);
                }
                Err(e) if e.raw_os_error() == Some(libc::ERANGE) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// `listxattr(path)`: the names.
    pub fn listxattr(p: &Path) -> io::Result<Vec<OsString>> {
        let p = path(p)?;
        loop {
            // SAFETY: a size query.
            let len = size(unsafe { libc::listxattr(p.as_ptr(), std::ptr::null_mut(), 0) })?;
            let mut buf = vec![0u8; len];
            // SAFETY: the buffer has `buf.len()` writable bytes.
            let rc = unsafe { libc::listxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
            match size(rc) {
                Ok(got) => {
                    buf.truncate(got);
                    return Ok(buf
                        .split(|&b| b == 0)
                        .filter(|n| !n.is_empty())
                        .map(|n| OsString::from_vec(n.to_vec()))
                        .collect());
                }
                Err(e) if e.raw_os_error() == Some(libc::ERANGE) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// `removexattr(path, name)`.
    pub fn removexattr(p: &Path, name: &str) -> io::Result<()> {
        let (p, n) = (path(p)?, cstr(name.as_bytes())?);
        // SAFETY: valid strings.
        check(unsafe { libc::removexattr(p.as_ptr(), n.as_ptr()) })
    }

    /// What `statfs(2)` answers.
    #[derive(Debug, Clone, Copy)]
    pub struct StatFs {
        /// The filesystem's magic number.
        pub f_type: i64,
        /// Block size.
        pub f_bsize: u64,
        /// Total blocks.
        pub f_blocks: u64,
        /// Free blocks.
        pub f_bfree: u64,
        /// Blocks free to unprivileged users.
        pub f_bavail: u64,
        /// Total inodes.
        pub f_files: u64,
        /// Free inodes.
        pub f_ffree: u64,
        /// Longest name.
        pub f_namelen: u64,
    }

    /// `statfs(path)`.
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
    pub fn statfs(p: &Path) -> io::Result<StatFs> {
        let p = path(p)?;
        // SAFETY: statfs is plain old data; zeroed is a valid value.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: a valid string and a pointer to a statfs.
        check(unsafe { libc::statfs(p.as_ptr(), &raw mut st) })?;
        Ok(StatFs {
            f_type: i64::from(st.f_type),
            f_bsize: u64::try_from(st.f_bsize).unwrap_or(0),
            f_blocks: u64::from(st.f_blocks),
            f_bfree: u64::from(st.f_bfree),
            f_bavail: u64::from(st.f_bavail),
            f_files: u64::from(st.f_files),
            f_ffree: u64::from(st.f_ffree),
            f_namelen: u64::try_from(st.f_namelen).unwrap_or(0),
        })
    }

    /// `kill(pid, signal)`.
    pub fn kill(pid: u32, signal: i32) -> io::Result<()> {
        let pid =
            libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
        // SAFETY: a plain syscall.
        check(unsafe { libc::kill(pid, signal) })
    }
}

// ---------------------------------------------------------------------------
// Test data
// ---------------------------------------------------------------------------

/// Test data that is cheap to make (even in a debug build) and to check.
pub mod data {
    use std::fs::File;
    use std::io::{self, Read as _, Write as _};
    use std::path::Path;

    use sha2::{Digest as _, Sha256};

    /// `len` pseudo-random bytes from `seed` (splitmix64).
    pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
        while out.len() < len {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            out.extend_from_slice(&z.to_le_bytes());
        }
        out.truncate(len);
        out
    }

    /// Lower-case hex SHA-256.
    pub fn sha256(bytes: &[u8]) -> String {
        data_encoding::HEXLOWER.encode(&Sha256::digest(bytes))
    }

    /// SHA-256 of a file, streamed; and its length.
    pub fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
        let mut f = File::open(path)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(buf.get(..n).unwrap_or_default());
            total += n as u64;
        }
        Ok((data_encoding::HEXLOWER.encode(&h.finalize()), total))
    }

    /// Streams `mib` MiB of distinct data (a random MiB with every 4 KiB
    /// block stamped with its index, so no two 4 KiB blocks of the file are
    /// alike) into `w`; answers its SHA-256. Cheap in debug builds.
    pub fn write_stamped(w: &mut impl io::Write, seed: u64, mib: u64) -> io::Result<String> {
        let base = pattern(seed, 1 << 20);
        let mut chunk = base.clone();
        let mut h = Sha256::new();
        for i in 0..mib {
            for (b, block) in chunk.chunks_mut(4096).enumerate() {
                let stamp = (i * 256 + b as u64).to_le_bytes();
                if let Some(head) = block.get_mut(..8) {
                    head.copy_from_slice(&stamp);
                }
            }
            w.write_all(&chunk)?;
            h.update(&chunk);
        }
        w.flush()?;
        Ok(data_encoding::HEXLOWER.encode(&h.finalize()))
    }

    /// Writes `bytes` to a new file at `path` and closes it.
    pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut f = File::create(path)?;
        f.write_all(bytes)?;
        Ok(())
    }

    /// The first offset where `a` and `b` differ (or where one ends), for
    /// messages about wrong content.
    pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
        if a == b {
            return None;
        }
        Some(
            a.iter()
                .zip(b)
                .position(|(x, y)| x != y)
                .unwrap_or(a.len().min(b.len())),
        )
    }

    /// Panics with where and how `got` differs from `want`.
    #[track_caller]
    pub fn assert_bytes(what: &str, got: &[u8], want: &[u8]) {
        if let Some(at) = first_difference(got, want) {
            let show = |v: &[u8]| {
                let end = (at + 16).min(v.len());
                data_encoding::HEXLOWER.encode(v.get(at..end).unwrap_or_default())
            };
            panic!(
                "{what}: content differs at byte {at} (got {} bytes, want {}): got {} want {}",
                got.len(),
                want.len(),
                show(got),
                show(want)
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Tree snapshots
// ---------------------------------------------------------------------------

/// Snapshots of a directory tree (types, modes, sizes, times, contents,
/// link targets, xattrs, hard-link groups) and their comparison.
pub mod tree {
    use std::collections::{BTreeMap, HashMap};
    use std::ffi::OsString;
    use std::fs;
    use std::os::unix::fs::MetadataExt as _;
    use std::path::{Path, PathBuf};

    /// What to compare.
    #[derive(Debug, Clone, Copy)]
    pub struct Compare {
        /// Modification times of files and symlinks (seconds and ns).
        pub mtime: bool,
        /// Modification times of directories too.
        pub dir_mtime: bool,
        /// Extended attributes (`user.*`).
        pub xattrs: bool,
        /// Hard-link groups (which names share an inode).
        pub hard_links: bool,
        /// Owner and group.
        pub owner: bool,
        /// Times to the nanosecond (else to the second, as rsync keeps them).
        pub nanos: bool,
    }

    impl Compare {
        /// Everything.
        pub const ALL: Self = Self {
            mtime: true,
            dir_mtime: true,
            xattrs: true,
            hard_links: true,
            owner: true,
            nanos: true,
        };
        /// Kinds, modes, sizes, contents and link targets only.
        pub const CONTENT: Self = Self {
            mtime: false,
            dir_mtime: false,
            xattrs: false,
            hard_links: false,
            owner: false,
            nanos: false,
        };
    }

    /// One entry of a tree.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Entry {
        /// `file`, `dir`, `symlink` or `other`.
        pub kind: &'static str,
        /// Permission bits (`& 0o7777`; not for symlinks).
        pub mode: u32,
        /// Size (files), target length (symlinks), 0 (directories).
        pub size: u64,
        /// (seconds, nanoseconds) of the modification time.
        pub mtime: (i64, i64),
        /// Owner and group.
        pub owner: (u32, u32),
        /// SHA-256 of a file's content.
        pub sha256: Option<String>,
        /// A symlink's target.
        pub target: Option<PathBuf>,
        /// Extended attributes.
        pub xattrs: BTreeMap<OsString, Vec<u8>>,
        /// For a file with several names: the first of them (sorted).
        pub link_group: Option<PathBuf>,
    }

    /// Every entry under `root` (not following symlinks), by relative path.
    pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
        let mut out = BTreeMap::new();
        let mut inodes: HashMap<(u64, u64), PathBuf> = HashMap::new();
        walk(root, Path::new(""), &mut out, &mut inodes);
        out
    }

    fn walk(
        root: &Path,
        rel: &Path,
        out: &mut BTreeMap<PathBuf, Entry>,
        inodes: &mut HashMap<(u64, u64), PathBuf>,
    ) {
        let dir = root.join(rel);
        let mut names: Vec<OsString> = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").file_name())
            .collect();
        names.sort();
        for name in names {
            let rel_path = rel.join(&name);
            let path = root.join(&rel_path);
            let md = fs::symlink_metadata(&path)
                .unwrap_or_else(|e| panic!("lstat {}: {e}", path.display()));
            let ft = md.file_type();
            let kind = if ft.is_file() {
                "file"
            } else if ft.is_dir() {
                "dir"
            } else if ft.is_symlink() {
                "symlink"
            } else {
                "other"
            };
            let mut e = Entry {
                kind,
                mode: if ft.is_symlink() {
                    0
                } else {
                    md.mode() & 0o7777
                },
                size: if ft.is_dir() { 0 } else { md.len() },
                mtime: (md.mtime(), md.mtime_nsec()),
                owner: (md.uid(), md.gid()),
                sha256: None,
                target: None,
                xattrs: BTreeMap::new(),
                link_group: None,
            };
            if ft.is_file() {
                let (sha, _) = super::data::sha256_file(&path)
                    .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
                e.sha256 = Some(sha);
                if md.nlink() > 1 {
                    let first = inodes
                        .entry((md.dev(), md.ino()))
                        .or_insert_with(|| rel_path.clone());
                    e.link_group = Some(first.clone());
                }
            }
            if ft.is_symlink() {
                e.target = Some(
                    fs::read_link(&path)
                        .unwrap_or_else(|err| panic!("readlink {}: {err}", path.display())),
                );
            }
            if ft.is_file() || ft.is_dir() {
                let names = super::sys::listxattr(&path).unwrap_or_default();
                for n in names {
                    let Some(s) = n.to_str() else { continue };
                    if !s.starts_with("user.") {
                        continue;
                    }
                    let v = super::sys::getxattr(&path, s).unwrap_or_default();
                    e.xattrs.insert(n.clone(), v);
                }
            }
            out.insert(rel_path.clone(), e);
            if ft.is_dir() {
                walk(root, &rel_path, out, inodes);
            }
        }
    }

    /// The differences between two snapshots under `how`, one line each.
    pub fn differences(
        a: &BTreeMap<PathBuf, Entry>,
        b: &BTreeMap<PathBuf, Entry>,
        how: Compare,
    ) -> Vec<String> {
        let mut diffs = Vec::new();
        for (p, ea) in a {
            let Some(eb) = b.get(p) else {
                diffs.push(format!("{}: missing on the right", p.display()));
                continue;
            };
            let mut d = |what: &str, l: String, r: String| {
                if l != r {
                    diffs.push(format!("{}: {what} {l} != {r}", p.display()));
                }
            };
            d("kind", ea.kind.into(), eb.kind.into());
            if ea.kind != eb.kind {
                continue;
            }
            d("mode", format!("{:o}", ea.mode), format!("{:o}", eb.mode));
            d("size", ea.size.to_string(), eb.size.to_string());
            d(
                "content",
                format!("{:?}", ea.sha256),
                format!("{:?}", eb.sha256),
            );
            d(
                "target",
                format!("{:?}", ea.target),
                format!("{:?}", eb.target),
            );
            if how.mtime && (ea.kind != "dir" || how.dir_mtime) {
                if how.nanos {
                    d(
                        "mtime",
                        format!("{:?}", ea.mtime),
                        format!("{:?}", eb.mtime),
                    );
                } else {
                    d("mtime (s)", ea.mtime.0.to_string(), eb.mtime.0.to_string());
                }
            }
            if how.xattrs {
                d(
                    "xattrs",
                    format!("{:?}", ea.xattrs),
                    format!("{:?}", eb.xattrs),
                );
            }
            if how.hard_links {
                d(
                    "hard-link group",
                    format!("{:?}", ea.link_group),
                    format!("{:?}", eb.link_group),
                );
            }
            if how.owner {
                d(
                    "owner",
                    format!("{:?}", ea.owner),
                    format!("{:?}", eb.owner),
                );
            }
        }
        for p in b.keys() {
            if !a.contains_key(p) {
                diffs.push(format!("{}: missing on the left", p.display()));
            }
        }
        diffs
    }

    /// Panics (listing up to 30 differences) unless the trees agree.
    #[track_caller]
    pub fn assert_same(
        what: &str,
        a: &BTreeMap<PathBuf, Entry>,
        b: &BTreeMap<PathBuf, Entry>,
        how: Compare,
    ) {
        let d = differences(a, b, how);
        assert!(
            d.is_empty(),
            "{what}: {} differences ({} vs {} entries):\n{}",
            d.len(),
            a.len(),
            b.len(),
            d.iter().take(30).cloned().collect::<Vec<_>>().join("\n")
        );
    }

    /// Panics unless `diff -r --no-dereference a b` finds nothing.
    #[track_caller]
    pub fn assert_diff_r(a: &Path, b: &Path) {
        let out = super::run_program(
            "diff",
            &[
                "-r",
                "--no-dereference",
                &a.to_string_lossy(),
                &b.to_string_lossy(),
            ],
            None,
            std::time::Duration::from_secs(300),
        );
        assert!(out.success(), "diff -r found differences: {out}");
    }
}

// ---------------------------------------------------------------------------
// Plaintext markers
// ---------------------------------------------------------------------------

/// Searching stored bytes for plaintext markers, in the encodings a careless
/// implementation might use (raw, hex, base64).
pub mod scan {
    use std::fs;
    use std::path::{Path, PathBuf};

    /// One byte string to look for, and what it stands for.
    #[derive(Debug, Clone)]
    pub struct Needle {
        /// For messages: `name secret-plan-… as base64`.
        pub label: String,
        /// The bytes.
        pub bytes: Vec<u8>,
    }

    /// `marker` raw, as hex (both cases) and as the part of its base64
    /// (standard and URL-safe, each of the three alignments) that depends on
    /// the marker alone.
    pub fn needles(label: &str, marker: &[u8]) -> Vec<Needle> {
        let mut out = vec![
            Needle {
                label: format!("{label} (raw)"),
                bytes: marker.to_vec(),
            },
            Needle {
                label: format!("{label} (hex)"),
                bytes: data_encoding::HEXLOWER.encode(marker).into_bytes(),
            },
            Needle {
                label: format!("{label} (HEX)"),
                bytes: data_encoding::HEXUPPER.encode(marker).into_bytes(),
            },
        ];
        for (name, enc) in [
            ("base64", &data_encoding::BASE64),
            ("base64url", &data_encoding::BASE64URL),
        ] {
            for k in 0..3usize {
                let mut buf = vec![0u8; k];
                buf.extend_from_slice(marker);
                let text = enc.encode(&buf);
                // Groups g with 3g >= k and 3g + 3 <= k + len.
                let first = k.div_ceil(3);
                let last = (k + marker.len()) / 3;
                if last > first + 2 {
                    let part = text.get(first * 4..last * 4).unwrap_or_default();
                    out.push(Needle {
                        label: format!("{label} ({name}, alignment {k})"),
                        bytes: part.as_bytes().to_vec(),
                    });
                }
            }
        }
        out
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        let Some((&first, _)) = needle.split_first() else {
            return true;
        };
        let mut i = 0;
        while let Some(rest) = hay.get(i..) {
            let Some(at) = rest.iter().position(|&b| b == first) else {
                return false;
            };
            if rest.get(at..at + needle.len()) == Some(needle) {
                return true;
            }
            i += at + 1;
        }
        false
    }

    /// The needles found in `bytes`, as `(where, label)`.
    pub fn scan_bytes(origin: &str, bytes: &[u8], needles: &[Needle]) -> Vec<(String, String)> {
        needles
            .iter()
            .filter(|n| contains(bytes, &n.bytes))
            .map(|n| (origin.to_owned(), n.label.clone()))
            .collect()
    }

    /// Every file under `dir` (symlinks not followed), read whole, searched
    /// for every needle. Answers the hits and how many bytes were searched.
    pub fn scan_dir(dir: &Path, needles: &[Needle]) -> (Vec<(String, String)>, u64) {
        let mut hits = Vec::new();
        let mut bytes = 0u64;
        let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(rd) = fs::read_dir(&d) else { continue };
            for e in rd.filter_map(Result::ok) {
                let p = e.path();
                let Ok(ft) = e.file_type() else { continue };
                // Names of files are stored bytes too.
                if let Some(name) = p.file_name() {
                    hits.extend(scan_bytes(
                        &format!("the name of {}", p.display()),
                        name.as_encoded_bytes(),
                        needles,
                    ));
                }
                if ft.is_dir() {
                    stack.push(p);
                } else if ft.is_file() {
                    let Ok(content) = fs::read(&p) else { continue };
                    bytes += content.len() as u64;
                    hits.extend(scan_bytes(&p.display().to_string(), &content, needles));
                }
            }
        }
        (hits, bytes)
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(
            unescape_mountinfo("/tmp/a\\040b\\134c"),
            PathBuf::from("/tmp/a b\\c")
        );
    }

    #[test]
    fn needles_find_encoded_markers() {
        let marker = b"secret-plan-XYZ-0123456789";
        let needles = scan::needles("m", marker);
        for k in 0..3 {
            let mut buf = vec![7u8; k];
            buf.extend_from_slice(marker);
            buf.extend_from_slice(b"tail");
            let text = data_encoding::BASE64.encode(&buf);
            let hits = scan::scan_bytes("x", text.as_bytes(), &needles);
            assert!(!hits.is_empty(), "alignment {k} not found in {text}");
        }
        assert!(scan::scan_bytes("x", b"nothing here", &needles).is_empty());
        let hits = scan::scan_bytes("x", b"..secret-plan-XYZ-0123456789..", &needles);
        assert_eq!(hits.len(), 1);
    }

    #[test]
    fn stamped_data_is_distinct_and_hashed() {
        let mut v = Vec::new();
        let h = data::write_stamped(&mut v, 1, 2).unwrap();
        assert_eq!(v.len(), 2 << 20);
        assert_eq!(h, data::sha256(&v));
        assert_ne!(v.get(..4096), v.get(4096..8192));
        assert_ne!(v.get(..1 << 20), v.get(1 << 20..));
        assert_eq!(data::pattern(3, 100), data::pattern(3, 100));
        assert_ne!(data::pattern(3, 100), data::pattern(4, 100));
    }
}
