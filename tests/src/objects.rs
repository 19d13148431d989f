//! Helpers for the object tests (`tests/tests/objects.rs`): servers with a
//! chosen blob store (`VAULT_BLOB_STORE`), object uploads and downloads over
//! reqwest (small bodies) or a raw HTTP/1.1 connection (streamed bodies of
//! any size, and requests reqwest will not make, such as a body without
//! `Content-Length`), finding a blob on disk, and sampling a process's
//! resident memory.
//!
//! The blob stores:
//! - [`Blobs::File`]: `file:` (the default, `<data dir>/objects`);
//! - [`Blobs::Db`]: `db`, rows in the server's own database;
//! - [`Blobs::S3`]: the S3 server of `scripts/test.sh` (`VAULT_TEST_S3_URL`
//!   with `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` inherited); skipped,
//!   or failed under `VAULT_TEST_REQUIRE_SERVICES=1`, without it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::api::tree::SHA256_HEADER;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RANGE};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

use crate::client::Resp;
use crate::server::{ServerOptions, TestServer};
use crate::services::{self, Backend};
use crate::{TestAccount, random_hex};

/// Which object store a test server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blobs {
    /// `file:` under the data dir.
    File,
    /// `db`.
    Db,
    /// The test S3 server.
    S3,
}

impl Blobs {
    /// `file`, `db` or `s3`.
    pub fn name(self) -> &'static str {
        match self {
            Blobs::File => "file",
            Blobs::Db => "db",
            Blobs::S3 => "s3",
        }
    }

    /// The `VAULT_BLOB_STORE` value, or `None` (after printing why) when the
    /// store's service is missing.
    pub fn spec(self) -> Option<String> {
        match self {
            Blobs::File => Some("file:".into()),
            Blobs::Db => Some("db".into()),
            Blobs::S3 => match std::env::var("VAULT_TEST_S3_URL") {
                Ok(url) if !url.trim().is_empty() => Some(url),
                _ => {
                    let msg = "VAULT_TEST_S3_URL is not set: start the test services with \
                               `scripts/test.sh --services-only` and export the variables it prints";
                    assert!(
                        !services::required(),
                        "VAULT_TEST_REQUIRE_SERVICES=1 but {msg}"
                    );
                    let name = std::thread::current()
                        .name()
                        .unwrap_or("this test")
                        .to_owned();
                    let _ = writeln!(std::io::stderr(), "SKIPPED {name}: {msg}");
                    None
                }
            },
        }
    }
}

/// Starts a server on `backend` with object store `blobs` and more
/// `VAULT_*` settings; `None` when a service is missing (skipped).
pub async fn start(backend: Backend, blobs: Blobs, env: &[(&str, &str)]) -> Option<TestServer> {
    let mut options = ServerOptions::default();
    options.env.push(("VAULT_BLOB_STORE".into(), blobs.spec()?));
    options
        .env
        .push(("VAULT_LOG".into(), "info,sqlx=warn".into()));
    for (k, v) in env {
        options.env.push(((*k).to_owned(), (*v).to_owned()));
    }
    TestServer::start_with(backend, options).await
}

/// Registers, verifies and logs in a new account: its access token.
pub async fn user(server: &TestServer, tag: &str) -> String {
    let a = TestAccount::new(tag).await;
    server.register_and_verify(&a).await;
    server.login(&a).await.access
}

/// A fresh object id (32 hex digits).
pub fn new_id() -> String {
    random_hex(16)
}

/// SHA-256 as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex_of(&Sha256::digest(bytes))
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Deterministic pseudo-random bytes (xorshift), cheap enough for GiBs.
#[derive(Debug, Clone)]
pub struct Noise(u64);

impl Noise {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// Fills `buf`.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let mut x = self.0;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.0 = x;
            let bytes = x.to_le_bytes();
            chunk.copy_from_slice(bytes.get(..chunk.len()).unwrap_or_default());
        }
    }

    /// `n` bytes.
    pub fn bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        Self::new(seed).fill(&mut v);
        v
    }
}

/// Object requests over reqwest (whole bodies in memory: small objects).
#[derive(Debug, Clone)]
pub struct Objects {
    base: String,
    http: reqwest::Client,
}

impl Objects {
    /// For the server at `base`.
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("reqwest client"),
        }
    }

    async fn run(&self, request: String, rb: reqwest::RequestBuilder) -> Resp {
        let resp = rb
            .send()
            .await
            .unwrap_or_else(|e| panic!("{request}: no answer: {e}"));
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{request}: reading the body: {e}"))
            .to_vec();
        Resp {
            request,
            status,
            headers,
            body,
        }
    }

    /// `PUT /v1/objects/{id}` with `body` and the digest header `sha256`
    /// (`None`: no header).
    pub async fn put(&self, token: &str, id: &str, body: Vec<u8>, sha256: Option<&str>) -> Resp {
        let headers: Vec<(&str, &str)> = sha256.map(|s| (SHA256_HEADER, s)).into_iter().collect();
        self.put_with(token, id, body, &headers).await
    }

    /// `PUT /v1/objects/{id}` with `body` and these extra headers (the
    /// checksum ones: none, one, or both).
    pub async fn put_with(
        &self,
        token: &str,
        id: &str,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let path = format!("/v1/objects/{id}");
        let mut rb = self
            .http
            .put(format!("{}{path}", self.base))
            .header(AUTHORIZATION, format!("Bearer {token}"))
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(body);
        for (name, value) in headers {
            rb = rb.header(*name, *value);
        }
        self.run(format!("PUT {path}"), rb).await
    }

    /// [`Self::put`] with the body's real digest.
    pub async fn upload(&self, token: &str, id: &str, body: &[u8]) -> Resp {
        let sha = sha256_hex(body);
        self.put(token, id, body.to_vec(), Some(&sha)).await
    }

    /// `GET /v1/objects/{id}` with an optional `Range` header value.
    pub async fn get(&self, token: &str, id: &str, range: Option<&str>) -> Resp {
        let path = format!("/v1/objects/{id}");
        let mut rb = self
            .http
            .get(format!("{}{path}", self.base))
            .header(AUTHORIZATION, format!("Bearer {token}"));
        if let Some(r) = range {
            rb = rb.header(RANGE, r);
        }
        let request = format!(
            "GET {path}{}",
            range.map(|r| format!(" ({r})")).unwrap_or_default()
        );
        self.run(request, rb).await
    }
}

/// The status line and headers of a raw answer.
#[derive(Debug, Clone)]
pub struct RawHead {
    /// Status code.
    pub status: u16,
    /// Header lines, names lower-cased.
    pub headers: Vec<(String, String)>,
}

impl RawHead {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn content_length(&self) -> Option<u64> {
        self.header("content-length").and_then(|v| v.parse().ok())
    }
}

async fn connect(base: &str) -> TcpStream {
    let addr = base
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not an http:// URL: {base}"));
    TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"))
}

async fn read_head(reader: &mut BufReader<TcpStream>) -> RawHead {
    let mut line = String::new();
    reader.read_line(&mut line).await.expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).await.expect("header line");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    RawHead { status, headers }
}

/// Sends `head` (a request line and headers, without the blank line) and
/// then `body`, and reads the answer (its body only when it has a length):
/// for requests reqwest would not make.
pub async fn raw(base: &str, head: &str, body: &[u8]) -> (RawHead, Vec<u8>) {
    let mut stream = connect(base).await;
    let req = format!(
        "{}\r\nHost: x\r\nConnection: close\r\n\r\n",
        head.trim_end()
    );
    stream.write_all(req.as_bytes()).await.expect("send head");
    if !body.is_empty() {
        // The server may answer without reading the body.
        let _ = stream.write_all(body).await;
    }
    let mut reader = BufReader::new(stream);
    let head = read_head(&mut reader).await;
    let mut body = Vec::new();
    if let Some(n) = head.content_length() {
        body.resize(usize::try_from(n).expect("fits"), 0);
        reader.read_exact(&mut body).await.expect("answer body");
    }
    (head, body)
}

/// Uploads `len` bytes of [`Noise`] from `seed`, generated and sent 1 MiB at
/// a time (never all in memory), announcing `sha256`. Answers the head and
/// body of the answer.
pub async fn put_streamed(
    base: &str,
    token: &str,
    id: &str,
    len: u64,
    seed: u64,
    sha256: &str,
) -> (RawHead, String) {
    let mut stream = connect(base).await;
    let head = format!(
        "PUT /v1/objects/{id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {len}\r\n\
         {SHA256_HEADER}: {sha256}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("send head");
    let mut noise = Noise::new(seed);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left.min(1 << 20)).expect("fits");
        let piece = buf.get_mut(..n).expect("in range");
        noise.fill(piece);
        stream.write_all(piece).await.expect("send body");
        left -= n as u64;
    }
    stream.flush().await.expect("flush");
    let mut reader = BufReader::new(stream);
    let head = read_head(&mut reader).await;
    let mut body = Vec::new();
    if let Some(n) = head.content_length() {
        body.resize(usize::try_from(n).expect("fits"), 0);
        reader.read_exact(&mut body).await.expect("answer body");
    }
    (head, String::from_utf8_lossy(&body).into_owned())
}

/// The SHA-256 (hex) of `len` bytes of [`Noise`] from `seed`, computed 1 MiB
/// at a time.
/// The CRC-32C of `bytes` as the upload header carries it (8 hex digits).
pub fn crc32c_hex(bytes: &[u8]) -> String {
    hex_of(&crc_fast::crc32_iscsi(bytes).to_be_bytes())
}

pub fn noise_sha256(len: u64, seed: u64) -> String {
    let mut noise = Noise::new(seed);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left.min(1 << 20)).expect("fits");
        let piece = buf.get_mut(..n).expect("in range");
        noise.fill(piece);
        hasher.update(&*piece);
        left -= n as u64;
    }
    hex_of(&hasher.finalize())
}

/// Downloads an object, hashing it as it arrives: the head, the bytes read
/// and their SHA-256 (hex).
pub async fn get_streamed(base: &str, token: &str, id: &str) -> (RawHead, u64, String) {
    let mut stream = connect(base).await;
    let head = format!(
        "GET /v1/objects/{id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.expect("send head");
    let mut reader = BufReader::with_capacity(1 << 20, stream);
    let head = read_head(&mut reader).await;
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf).await.expect("read body");
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).expect("in range"));
        total += n as u64;
    }
    (head, total, hex_of(&hasher.finalize()))
}

/// The file holding object `id` under a `file:` store's directory, if any
/// (the layout is `DIR/<owner>/<2 hex>/<id>`; the owner is not known here).
pub fn blob_file(objects_dir: &Path, id: &str) -> Option<PathBuf> {
    fn walk(dir: &Path, id: &str, depth: u32) -> Option<PathBuf> {
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let path = entry.path();
            if path.is_dir() && depth < 3 {
                if let Some(found) = walk(&path, id, depth + 1) {
                    return Some(found);
                }
            } else if path.file_name().is_some_and(|n| n == id) {
                return Some(path);
            }
        }
        None
    }
    walk(objects_dir, id, 0)
}

/// The pid of the `vault-server` running in `data_dir` (its working
/// directory; each test server has its own).
pub fn server_pid(data_dir: &Path) -> Option<u32> {
    let want = data_dir.canonicalize().ok()?;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let proc_dir = entry.path();
        let is_server = std::fs::read_to_string(proc_dir.join("comm"))
            .is_ok_and(|c| c.trim() == "vault-server");
        if is_server && std::fs::read_link(proc_dir.join("cwd")).is_ok_and(|c| c == want) {
            return Some(pid);
        }
    }
    None
}

/// `VmRSS` of a process, in KiB.
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Samples a process's `VmRSS` every `every` on a thread, keeping the peak.
#[derive(Debug)]
pub struct RssSampler {
    peak_kib: Arc<AtomicU64>,
    samples: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    /// Starts sampling `pid`.
    pub fn start(pid: u32, every: Duration) -> Self {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let samples = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s, st) = (peak_kib.clone(), samples.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                if let Some(kib) = vm_rss_kib(pid) {
                    p.fetch_max(kib, Ordering::Relaxed);
                    s.fetch_add(1, Ordering::Relaxed);
                }
                std::thread::sleep(every);
            }
        });
        Self {
            peak_kib,
            samples,
            stop,
            thread: Some(thread),
        }
    }

    /// The peak so far, in KiB.
    pub fn peak_kib(&self) -> u64 {
        self.peak_kib.load(Ordering::Relaxed)
    }

    /// Stops sampling: the peak in KiB and the number of samples.
    pub fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (self.peak_kib(), self.samples.load(Ordering::Relaxed))
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
