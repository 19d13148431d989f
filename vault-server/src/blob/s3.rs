//! [`S3Store`]: objects in an S3-compatible bucket
//! (`s3://BUCKET?endpoint=URL&region=R`), through the object_store crate.
//!
//! Object `id` of `owner` is the key `<owner>/<id hex>` (owner in decimal).
//! Requests are path-style (`ENDPOINT/BUCKET/KEY`, which every
//! S3-compatible server understands); credentials come from the usual AWS
//! variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, or a role). Plain `http://` endpoints are refused
//! unless the host is loopback or `AWS_ALLOW_HTTP=true`.
//!
//! **Write-once.** Puts of one name are serialised inside this process (a
//! per-key async lock), and each one first checks that the key is absent:
//! so within one server instance exactly one of concurrent puts wins,
//! whatever the server supports. Across instances, atomicity needs the
//! server's conditional writes (`If-None-Match: *`, honoured by AWS S3,
//! MinIO, R2, Ceph): [`S3Store::open`] probes for them (two conditional
//! `PUT`s of a probe key under `.tmp/`) and then
//! - a body of at most [`PART_SIZE`] is buffered (that is the bound),
//!   verified, and sent as one conditional `PutObject`;
//! - a larger body streams as a multipart upload (at most
//!   [`MAX_PARTS_IN_FLIGHT`] parts of [`PART_SIZE`] in memory). With
//!   conditional writes it goes to a private staging key
//!   `.tmp/<owner>/<id hex>.<random>` (no owner key starts with `.`) and,
//!   complete and verified, is copied to the final key with
//!   copy-if-not-exists (a one-part `UploadPartCopy` upload completed with
//!   `If-None-Match: *`: object_store's `S3CopyIfNotExists::Multipart`,
//!   unless `AWS_COPY_IF_NOT_EXISTS` chooses another way; 5 GiB at most);
//!   without them (e.g. `rclone serve s3`, which ignores `If-None-Match` and
//!   cannot copy parts) it goes straight to the final key, whose upload is
//!   completed only after the checksum is verified.
//!
//! A multipart upload is invisible until completed, so a failed put leaves
//! nothing visible: it aborts its upload (also when its future is dropped)
//! or deletes its staging key. What a crash leaves under `.tmp/` is removed
//! by [`BlobStore::sweep`]; incomplete multipart uploads by the bucket's
//! lifecycle rule (object_store cannot list them).
//!
//! Reads are ranged `GET`s (object_store resumes a broken download from
//! where it stopped, checking the ETag). Some servers (rclone) answer a
//! ranged `GET` with `200` and a correct `Content-Range` instead of `206`;
//! [`RangeStatusFix`] repairs the status so object_store accepts it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use axum::http::{Method, StatusCode, header};
use bytes::Bytes;
use common::ObjectId;
use futures_util::{StreamExt as _, TryStreamExt as _};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, S3CopyIfNotExists};
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
};
use object_store::path::Path;
use object_store::{
    ClientConfigKey, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt as _,
    PutMode, PutOptions, PutPayload, WriteMultipart,
};
use tokio::sync::OwnedMutexGuard;

use super::{
    BlobError, BlobStore, BlobStream, Checksum, Intake, PutBody, random_token, resolve_range,
};
use crate::store::AccountId;

/// Size of a multipart upload's parts, and the largest body sent in one
/// `PutObject` (S3 parts are at least 5 MiB, except the last).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one upload sent concurrently: with the part being filled, at
/// most `(MAX_PARTS_IN_FLIGHT + 1) * PART_SIZE` bytes of a body in memory.
pub const MAX_PARTS_IN_FLIGHT: usize = 2;
/// Per-request timeout. A download that takes longer (a slow reader) is
/// resumed by object_store with a ranged request.
const REQUEST_TIMEOUT: &str = "300 seconds";
/// The prefix of staging keys.
const STAGING: &str = ".tmp";

/// Objects in an S3 bucket.
#[derive(Debug)]
pub struct S3Store {
    s3: AmazonS3,
    bucket: String,
    /// Whether the server honours `If-None-Match: *` (probed at open).
    conditional: bool,
    locks: KeyLocks,
}

/// What an `s3://` value says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct S3Spec {
    bucket: String,
    endpoint: Option<String>,
    region: Option<String>,
}

impl S3Spec {
    /// Parses `s3://BUCKET?endpoint=URL&region=R` (both parameters
    /// optional, values percent-decoded).
    fn parse(spec: &str) -> Result<Self, BlobError> {
        let rest = spec
            .strip_prefix("s3://")
            .ok_or_else(|| BlobError::Config("an S3 store is `s3://BUCKET?…`".into()))?;
        let (bucket, query) = rest.split_once('?').unwrap_or((rest, ""));
        let bucket = bucket.strip_suffix('/').unwrap_or(bucket);
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
        if bucket.len() < 3 || bucket.len() > 63 || !bucket.chars().all(valid) {
            return Err(BlobError::Config(format!(
                "`{bucket}` is not an S3 bucket name (3-63 of a-z, 0-9, `-`, `.`)"
            )));
        }
        let mut out = Self {
            bucket: bucket.to_owned(),
            endpoint: None,
            region: None,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value)?;
            if value.is_empty() {
                return Err(BlobError::Config(format!("S3 parameter `{key}` is empty")));
            }
            match key {
                "endpoint" => out.endpoint = Some(value.trim_end_matches('/').to_owned()),
                "region" => out.region = Some(value),
                _ => {
                    return Err(BlobError::Config(format!(
                        "unknown S3 parameter `{key}` (expected endpoint, region)"
                    )));
                }
            }
        }
        Ok(out)
    }

    /// The object_store client for this bucket (no request is made).
    fn client(&self) -> Result<AmazonS3, BlobError> {
        let env_allows_http = std::env::var("AWS_ALLOW_HTTP")
            .is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&self.bucket)
            .with_virtual_hosted_style_request(false)
            .with_http_connector(RangeStatusFix);
        if let Some(endpoint) = &self.endpoint {
            let http = match endpoint.split_once("://") {
                Some(("https", _)) => false,
                Some(("http", _)) => true,
                _ => {
                    return Err(BlobError::Config(format!(
                        "the S3 endpoint `{endpoint}` is not an http:// or https:// URL"
                    )));
                }
            };
            if http && !env_allows_http && !is_loopback_url(endpoint) {
                return Err(BlobError::Config(format!(
                    "the S3 endpoint `{endpoint}` is plain http and not loopback: use https, \
                     or set AWS_ALLOW_HTTP=true"
                )));
            }
            builder = builder.with_endpoint(endpoint).with_allow_http(http);
        }
        if let Some(region) = &self.region {
            builder = builder.with_region(region);
        }
        if std::env::var_os("AWS_COPY_IF_NOT_EXISTS").is_none() {
            builder = builder.with_copy_if_not_exists(S3CopyIfNotExists::Multipart);
        }
        if std::env::var_os("AWS_TIMEOUT").is_none() {
            builder = builder.with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                REQUEST_TIMEOUT,
            );
        }
        builder
            .build()
            .map_err(|e| BlobError::Config(format!("S3 store: {e}")))
    }
}

impl S3Store {
    /// Connects to the bucket an `s3://BUCKET?endpoint=URL&region=R` value
    /// names, and probes whether the server honours conditional writes
    /// (which also checks the credentials and the bucket). The region
    /// defaults to `AWS_REGION`/`AWS_DEFAULT_REGION`, then `us-east-1`; the
    /// endpoint to AWS. Other `AWS_*` variables object_store knows apply
    /// too.
    pub async fn open(spec: &str) -> Result<Self, BlobError> {
        let spec = S3Spec::parse(spec)?;
        let s3 = spec.client()?;
        let conditional = probe_conditional_put(&s3).await?;
        if !conditional {
            tracing::warn!(
                bucket = %spec.bucket,
                "the S3 server ignores If-None-Match: objects are write-once within this server \
                 instance only; do not share the bucket between instances"
            );
        }
        Ok(Self {
            s3,
            bucket: spec.bucket,
            conditional,
            locks: KeyLocks::default(),
        })
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Whether the server honours `If-None-Match: *`, so that objects are
    /// write-once across server instances too.
    pub fn conditional_writes(&self) -> bool {
        self.conditional
    }

    fn key(owner: AccountId, id: ObjectId) -> Path {
        Path::from_iter([owner.0.to_string(), id.to_string()])
    }

    fn staging_key(owner: AccountId, id: ObjectId) -> Result<Path, BlobError> {
        let name = format!("{id}.{}", hex::encode(random_token()?));
        Ok(Path::from_iter([
            STAGING.to_owned(),
            owner.0.to_string(),
            name,
        ]))
    }

    /// One conditional `PutObject` of a small, verified body.
    async fn put_small(&self, key: &Path, parts: Vec<Bytes>) -> Result<(), BlobError> {
        let options = PutOptions::from(PutMode::Create);
        match self
            .s3
            .put_opts(key, PutPayload::from_iter(parts), options)
            .await
        {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(BlobError::Exists),
            Err(e) => Err(backend(e)),
        }
    }

    /// Streams `head` and the rest of `body` as a multipart upload to `to`,
    /// and completes it only if the whole body is within the limit and
    /// matches the checksum; returns the length.
    async fn upload(&self, to: &Path, pending: Pending) -> Result<u64, BlobError> {
        let Pending {
            head,
            mut body,
            mut intake,
        } = pending;
        let upload = self.s3.put_multipart(to).await.map_err(backend)?;
        let mut writer = Upload(Some(WriteMultipart::new_with_chunk_size(upload, PART_SIZE)));
        let streamed = async {
            for piece in head {
                writer.get()?.put(piece);
            }
            while let Some(piece) = body.try_next().await? {
                intake.feed(&piece)?;
                let w = writer.get()?;
                w.wait_for_capacity(MAX_PARTS_IN_FLIGHT)
                    .await
                    .map_err(backend)?;
                w.put(piece);
            }
            intake.finish()
        }
        .await;
        match streamed {
            Ok(len) => {
                writer.finish().await?;
                Ok(len)
            }
            Err(e) => {
                writer.abort().await;
                Err(e)
            }
        }
    }

    /// A body larger than one part (see the module note).
    async fn put_large(
        &self,
        owner: AccountId,
        id: ObjectId,
        pending: Pending,
    ) -> Result<u64, BlobError> {
        let key = Self::key(owner, id);
        if !self.conditional {
            return self.upload(&key, pending).await;
        }
        let staging = Self::staging_key(owner, id)?;
        let len = self.upload(&staging, pending).await?;
        let copied = self.s3.copy_if_not_exists(&staging, &key).await;
        if let Err(e) = self.s3.delete(&staging).await {
            tracing::warn!(key = %staging, error = %e, "could not delete an S3 staging key");
        }
        match copied {
            Ok(()) => Ok(len),
            Err(object_store::Error::AlreadyExists { .. }) => Err(BlobError::Exists),
            Err(e) => Err(backend(e)),
        }
    }

    async fn len(&self, key: &Path) -> Result<u64, BlobError> {
        match self.s3.head(key).await {
            Ok(meta) => Ok(meta.size),
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound),
            Err(e) => Err(backend(e)),
        }
    }
}

#[async_trait]
impl BlobStore for S3Store {
    fn backend(&self) -> &'static str {
        "s3"
    }

    async fn put(
        &self,
        owner: AccountId,
        id: ObjectId,
        mut body: PutBody,
        max_len: u64,
        expected: Checksum,
    ) -> Result<u64, BlobError> {
        let key = Self::key(owner, id);
        let _serialised = self.locks.lock(key.as_ref()).await;
        if self.exists(owner, id).await? {
            return Err(BlobError::Exists);
        }
        // Buffer up to one part: a body that fits is sent in one request.
        let mut intake = Intake::new(max_len, expected);
        let mut head = Vec::new();
        let mut buffered = 0usize;
        while buffered <= PART_SIZE {
            match body.try_next().await? {
                Some(piece) => {
                    intake.feed(&piece)?;
                    buffered += piece.len();
                    head.push(piece);
                }
                None => {
                    let len = intake.finish()?;
                    self.put_small(&key, head).await?;
                    return Ok(len);
                }
            }
        }
        let pending = Pending { head, body, intake };
        self.put_large(owner, id, pending).await
    }

    async fn get(
        &self,
        owner: AccountId,
        id: ObjectId,
        range: Option<Range<u64>>,
    ) -> Result<(u64, BlobStream), BlobError> {
        let key = Self::key(owner, id);
        // An empty range has no HTTP form: answer it from the length.
        if let Some(r) = &range
            && r.start >= r.end
        {
            let len = self.len(&key).await?;
            resolve_range(range, len)?;
            return Ok((len, futures_util::stream::empty().boxed()));
        }
        // An end past what a signed 64-bit integer holds (servers parse the
        // header into one) is "to the end": send `bytes=START-`.
        let http_range = range.clone().map(|r| match i64::try_from(r.end) {
            Ok(_) => GetRange::Bounded(r),
            Err(_) => GetRange::Offset(r.start),
        });
        let options = GetOptions {
            range: http_range,
            ..GetOptions::default()
        };
        match self.s3.get_opts(&key, options).await {
            Ok(got) => {
                let len = got.meta.size;
                let stream = got.into_stream().map_err(backend);
                Ok((len, stream.boxed()))
            }
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound),
            Err(e) => {
                // A range from the end on (HTTP 416, or a range object_store
                // refuses): the length tells which.
                let len = self.len(&key).await?;
                let range = resolve_range(range, len)?;
                if range.start == len {
                    return Ok((len, futures_util::stream::empty().boxed()));
                }
                Err(backend(e))
            }
        }
    }

    async fn delete(&self, owner: AccountId, id: ObjectId) -> Result<(), BlobError> {
        match self.s3.delete(&Self::key(owner, id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend(e)),
        }
    }

    async fn exists(&self, owner: AccountId, id: ObjectId) -> Result<bool, BlobError> {
        match self.s3.head(&Self::key(owner, id)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(backend(e)),
        }
    }

    async fn sweep(&self, older_than: Duration) -> Result<u64, BlobError> {
        let secs = i64::try_from(older_than.as_secs()).unwrap_or(i64::MAX);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let cutoff = now.saturating_sub(secs);
        let prefix = Path::from(STAGING);
        let mut listing = self.s3.list(Some(&prefix));
        let mut removed = 0;
        while let Some(meta) = listing.try_next().await.map_err(backend)? {
            if meta.last_modified.timestamp() <= cutoff {
                match self.s3.delete(&meta.location).await {
                    Ok(()) => removed += 1,
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(backend(e)),
                }
            }
        }
        Ok(removed)
    }
}

/// Writes a probe key twice with `If-None-Match: *`: true if the server
/// refuses the second write. Fails if the first one fails (credentials,
/// bucket or endpoint are wrong).
async fn probe_conditional_put(s3: &AmazonS3) -> Result<bool, BlobError> {
    let probe = Path::from_iter([
        STAGING.to_owned(),
        format!("probe-{}", hex::encode(random_token()?)),
    ]);
    let create = || PutOptions::from(PutMode::Create);
    s3.put_opts(&probe, PutPayload::from_static(b"1"), create())
        .await
        .map_err(|e| BlobError::Backend(format!("S3 bucket not writable: {e}")))?;
    let second = s3
        .put_opts(&probe, PutPayload::from_static(b"2"), create())
        .await;
    if let Err(e) = s3.delete(&probe).await {
        tracing::warn!(key = %probe, error = %e, "could not delete the S3 probe key");
    }
    match second {
        Err(object_store::Error::AlreadyExists { .. }) => Ok(true),
        Ok(_) => Ok(false),
        Err(e) => {
            tracing::warn!(error = %e, "S3 conditional put probe failed");
            Ok(false)
        }
    }
}

/// Per-key async locks: puts of one name in this process run one at a time.
#[derive(Debug, Default)]
struct KeyLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl KeyLocks {
    async fn lock(&self, key: &str) -> KeyGuard<'_> {
        let lock = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.to_owned())
            .or_default()
            .clone();
        let guard = lock.lock_owned().await;
        KeyGuard {
            locks: self,
            key: key.to_owned(),
            guard: Some(guard),
        }
    }
}

/// Holds a key's lock; forgets the key when no one else waits for it.
#[derive(Debug)]
struct KeyGuard<'a> {
    locks: &'a KeyLocks,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Only the map holds it: no guard and no waiter.
        if map
            .get(&self.key)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            map.remove(&self.key);
        }
    }
}

/// object_store's reqwest client, with one repair: a ranged `GET` answered
/// `200` with a `Content-Range` header (rclone's `serve s3` does that) is a
/// partial response, so its status becomes `206`. A `200` without
/// `Content-Range` (a server that ignored the range) is left alone, and
/// object_store refuses it.
#[derive(Debug, Default, Clone, Copy)]
struct RangeStatusFix;

impl HttpConnector for RangeStatusFix {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(RangeStatusFixService(
            ReqwestConnector::default().connect(options)?,
        )))
    }
}

#[derive(Debug)]
struct RangeStatusFixService(HttpClient);

#[async_trait]
impl HttpService for RangeStatusFixService {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let ranged = req.method() == Method::GET && req.headers().contains_key(header::RANGE);
        let mut response = self.0.execute(req).await?;
        if ranged
            && response.status() == StatusCode::OK
            && response.headers().contains_key(header::CONTENT_RANGE)
        {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        }
        Ok(response)
    }
}

/// A body too large for one request: what was read of it, and the rest.
struct Pending {
    head: Vec<Bytes>,
    body: PutBody,
    intake: Intake,
}

/// A multipart upload in progress: aborted (in a spawned task) if dropped
/// before it finished, so a cancelled put leaves no parts behind.
struct Upload(Option<WriteMultipart>);

impl Upload {
    fn get(&mut self) -> Result<&mut WriteMultipart, BlobError> {
        self.0
            .as_mut()
            .ok_or_else(|| BlobError::Backend("multipart upload already ended".into()))
    }

    async fn abort(&mut self) {
        if let Some(w) = self.0.take()
            && let Err(e) = w.abort().await
        {
            tracing::warn!(error = %e, "could not abort an S3 multipart upload");
        }
    }

    async fn finish(&mut self) -> Result<(), BlobError> {
        match self.0.take() {
            Some(w) => w.finish().await.map(drop).map_err(backend),
            None => Err(BlobError::Backend("multipart upload already ended".into())),
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(w) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = w.abort().await;
            });
        }
    }
}

/// Whether an `http://` URL's host is a loopback address (or `localhost`).
fn is_loopback_url(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split_once(']').map_or(v6, |(h, _)| h)
    } else {
        host_port.rsplit_once(':').map_or(host_port, |(h, _)| h)
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Decodes `%XX` escapes (and nothing else: `+` stays `+`).
fn percent_decode(s: &str) -> Result<String, BlobError> {
    let bad = || BlobError::Config(format!("bad percent-encoding in `{s}`"));
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = bytes.next().ok_or_else(bad)?;
            let lo = bytes.next().ok_or_else(bad)?;
            let pair = [hi, lo];
            let hex = std::str::from_utf8(&pair).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

fn backend(e: object_store::Error) -> BlobError {
    BlobError::Backend(format!("S3: {e}"))
}

#[cfg(test)]
impl S3Store {
    /// How many staging keys of `owner` exist (leftovers of failed puts).
    pub(super) async fn staged(&self, owner: AccountId) -> Result<usize, BlobError> {
        let prefix = Path::from_iter([STAGING.to_owned(), owner.0.to_string()]);
        let keys: Vec<_> = self
            .s3
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(backend)?;
        Ok(keys.len())
    }
}

#[cfg(test)]
mod spec_tests {
    use super::*;

    #[test]
    fn parses_bucket_endpoint_and_region() {
        let s = S3Spec::parse("s3://my-bucket?endpoint=http://127.0.0.1:9000/&region=eu-west-1")
            .unwrap();
        assert_eq!(s.bucket, "my-bucket");
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s.region.as_deref(), Some("eu-west-1"));
        let s = S3Spec::parse("s3://b.c-d").unwrap();
        assert_eq!((s.endpoint, s.region), (None, None));
        let s = S3Spec::parse("s3://bkt?endpoint=https%3A%2F%2Fs3.example.org").unwrap();
        assert_eq!(s.endpoint.as_deref(), Some("https://s3.example.org"));
    }

    #[test]
    fn rejects_bad_values() {
        for bad in [
            "s3://",
            "s3://ab",
            "s3://Upper",
            "s3://b_b",
            "s3://bucket?endpoint=",
            "s3://bucket?color=red",
            "s3://bucket?endpoint=%zz",
        ] {
            assert!(
                matches!(S3Spec::parse(bad), Err(BlobError::Config(_))),
                "{bad} was accepted"
            );
        }
    }

    #[test]
    fn loopback_hosts() {
        for url in [
            "http://127.0.0.1:9000",
            "http://127.3.4.5",
            "http://localhost:80/x",
            "http://[::1]:9000",
            "http://user:pw@127.0.0.1:1",
        ] {
            assert!(is_loopback_url(url), "{url}");
        }
        for url in [
            "http://10.0.0.1:9000",
            "http://example.org",
            "http://127.0.0.1.example.org",
            "http://[::2]:1",
        ] {
            assert!(!is_loopback_url(url), "{url}");
        }
    }

    #[test]
    fn plain_http_needs_loopback() {
        let client = |spec: &str| S3Spec::parse(spec).and_then(|s| s.client());
        // Not loopback, and (in the test environment) no AWS_ALLOW_HTTP.
        if std::env::var_os("AWS_ALLOW_HTTP").is_none() {
            let err = client("s3://bucket?endpoint=http://192.0.2.1:9000").unwrap_err();
            assert!(matches!(err, BlobError::Config(m) if m.contains("AWS_ALLOW_HTTP")));
        }
        client("s3://bucket?endpoint=http://127.0.0.1:9&region=us-east-1").unwrap();
        client("s3://bucket?endpoint=https://s3.example.org&region=x").unwrap();
        assert!(client("s3://bucket?endpoint=ftp://x").is_err());
    }

    #[tokio::test]
    async fn open_fails_when_the_server_is_unreachable() {
        // A loopback port nothing listens on (bound, then released).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let spec = format!("s3://bucket?endpoint=http://127.0.0.1:{port}");
        let opened = tokio::time::timeout(Duration::from_secs(120), S3Store::open(&spec))
            .await
            .unwrap();
        assert!(matches!(opened, Err(BlobError::Backend(_))), "{opened:?}");
    }
}
