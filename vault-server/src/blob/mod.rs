//! Ciphertext objects behind one trait, [`BlobStore`], with three backends
//! chosen by `VAULT_BLOB_STORE` through [`open`]:
//!
//! - `file:DIR` ([`FileStore`], the embedded default): one file per object
//!   under `DIR/<owner>/<first 2 hex of id>/<id hex>`;
//! - `db` ([`DbStore`]): 1 MiB chunks in rows of the server's own SQLite or
//!   MySQL/MariaDB/TiDB database;
//! - `s3://BUCKET?endpoint=URL&region=R` ([`S3Store`]): one S3 object per
//!   object under `<owner>/<id hex>`, through the object_store crate.
//!
//! With `file:` or `s3://`, the small objects of batches (new small files)
//! go to the database instead ([`TieredStore`], [`with_small_in_db`]), up
//! to `VAULT_SMALL_OBJECTS_IN_DB` bytes each.
//!
//! The server cannot read an object: it is ciphertext the client made, and
//! the client authenticates every byte it reads back. The store's job is to
//! keep it intact, separate per owner, and never visible half-written.
//!
//! Invariants every backend keeps (the contract suite in `tests.rs` runs
//! them all against each backend):
//! - **owner namespaces**: an object is named by (owner, id); the same id
//!   under two owners is two objects, and no call made for one owner ever
//!   reaches another's;
//! - **write-once**: [`BlobStore::put`] never replaces an object. Of any
//!   number of concurrent puts of one name exactly one succeeds, the others
//!   get [`BlobError::Exists`] (or fail), and the object is the winner's
//!   bytes. (S3 across server instances: only if the server honours
//!   `If-None-Match`; [`S3Store::open`] probes for it and warns if not.)
//! - **atomic visibility**: an object is either absent or complete and
//!   verified. A put that fails for any reason — too large, checksum mismatch,
//!   a broken body stream, the caller dropping the future — leaves nothing
//!   visible; what it staged is removed at once or by [`BlobStore::sweep`];
//! - **bounded memory**: bodies are streamed in both directions; no backend
//!   holds more than a few MiB of one object at a time (file: 64 KiB
//!   reads; db: one 1 MiB chunk; S3: up to three 8 MiB parts);
//! - **verified uploads**: the length limit and the checksum the client
//!   announced ([`Checksum`]: a CRC-32C or a SHA-256) are computed over the
//!   bytes as they stream, before the object becomes visible.

mod db;
mod file;
mod s3;
#[cfg(test)]
mod tests;
mod tiered;

pub use db::{DbPool, DbStore};
pub use file::FileStore;
pub use s3::S3Store;
pub use tiered::TieredStore;

use std::fmt::Debug;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use common::ObjectId;
use futures_util::stream::BoxStream;
use sha2::{Digest as _, Sha256};

use crate::store::AccountId;

/// A body to store: chunks of any size, in order. An error ends the upload
/// (nothing is stored).
pub type PutBody = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// An object's bytes as they are read.
pub type BlobStream = BoxStream<'static, Result<Bytes, BlobError>>;

/// The checksum an upload announced for its body: a check that the bytes
/// arrived as the client sent them. It is not what makes an object
/// trustworthy (the client authenticates every byte it reads back); it
/// stops the server from accepting, and calling durable, an object that a
/// broken connection, proxy or client bug changed on the way. A CRC-32C
/// costs a fraction of a SHA-256 (hardware instructions on x86-64 and
/// arm64), and is what the client sends; a SHA-256 is still accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// The body's SHA-256.
    Sha256([u8; 32]),
    /// The body's CRC-32C (Castagnoli, as in iSCSI and S3's `CRC32C`).
    Crc32c(u32),
}

impl Checksum {
    /// The SHA-256, if that is what was announced.
    pub fn sha256(&self) -> Option<&[u8; 32]> {
        match self {
            Self::Sha256(d) => Some(d),
            Self::Crc32c(_) => None,
        }
    }

    /// The CRC-32C, if that is what was announced.
    pub fn crc32c(&self) -> Option<u32> {
        match self {
            Self::Crc32c(c) => Some(*c),
            Self::Sha256(_) => None,
        }
    }
}

/// An object whose bytes are all in memory: an inline object of a batch.
#[derive(Debug, Clone)]
pub struct SmallObject {
    /// Its id.
    pub id: ObjectId,
    /// Its ciphertext.
    pub data: Bytes,
    /// The SHA-256 the client declared for it.
    pub sha256: [u8; 32],
}

impl SmallObject {
    /// Its length in bytes.
    pub fn size(&self) -> u64 {
        u64::try_from(self.data.len()).unwrap_or(u64::MAX)
    }
}

/// Puts of the default [`BlobStore::put_many`] run together.
const PUT_MANY_CONCURRENCY: usize = 8;

/// How long staged leftovers of unfinished uploads (temp files, unclaimed
/// chunk rows, staging keys) are kept before [`open`] sweeps them: long
/// enough that an upload still running in another server instance that
/// shares the store is never swept.
pub const SWEEP_GRACE: Duration = Duration::from_secs(24 * 60 * 60);

/// Why an object operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// No object of this owner has this id.
    #[error("object not found")]
    NotFound,
    /// The owner already has an object with this id (objects are write-once).
    #[error("object already exists")]
    Exists,
    /// The body is longer than the limit the caller set.
    #[error("object larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The body's checksum is not the one the caller declared.
    #[error("object does not match its declared checksum")]
    DigestMismatch,
    /// The range starts past the end of the object, or ends before it starts.
    #[error("range not satisfiable (object is {len} bytes)")]
    RangeNotSatisfiable {
        /// The object's length.
        len: u64,
    },
    /// A `VAULT_BLOB_STORE` value that cannot be used.
    #[error("VAULT_BLOB_STORE: {0}")]
    Config(String),
    /// The backend (database, object store) failed.
    #[error("object store backend: {0}")]
    Backend(String),
    /// Reading the body, or the local filesystem, failed.
    #[error("object store I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// The store of ciphertext objects.
#[async_trait]
pub trait BlobStore: Send + Sync + Debug + 'static {
    /// Which backend this is (`file`, `db` or `s3`), for logs and metrics.
    fn backend(&self) -> &'static str;

    /// Stores `body` as object `id` of `owner`, and returns its length.
    ///
    /// Streams: at most a few MiB of the body are held at a time. Fails with
    /// [`BlobError::TooLarge`] as soon as more than `max_len` bytes arrive,
    /// with [`BlobError::DigestMismatch`] when the body does not match
    /// `expected`, and with [`BlobError::Exists`] when the object
    /// already exists (checked before reading the body, and again,
    /// atomically, when the object is made visible). On any error nothing
    /// is visible and nothing is left behind except what [`Self::sweep`]
    /// removes.
    async fn put(
        &self,
        owner: AccountId,
        id: ObjectId,
        body: PutBody,
        max_len: u64,
        expected: Checksum,
    ) -> Result<u64, BlobError>;

    /// Stores each of `objects` of `owner` as [`Self::put`] would (the same
    /// checks, errors and write-once rule per object), and returns once all
    /// are visible and durable. Not all or none: after an error some may be
    /// visible, and the caller deletes what it does not keep. The default
    /// puts them a few at a time; a backend may make them durable together
    /// (the file store: one `syncfs` for the data and one for the names,
    /// instead of two `fsync`s per object).
    async fn put_many(
        &self,
        owner: AccountId,
        objects: &[SmallObject],
        max_len: u64,
    ) -> Result<(), BlobError> {
        use futures_util::StreamExt as _;
        for some in objects.chunks(PUT_MANY_CONCURRENCY) {
            let mut puts = Vec::with_capacity(some.len());
            for o in some {
                let body = futures_util::stream::once(std::future::ready(Ok(o.data.clone())));
                puts.push(self.put(
                    owner,
                    o.id,
                    body.boxed(),
                    max_len,
                    Checksum::Sha256(o.sha256),
                ));
            }
            // Every put runs to its end, even after one failed: a put
            // dropped halfway leaves its cleanup to a spawned task, which
            // can run before a write already sent lands (the database
            // store then kept chunk rows until the sweep).
            for res in futures_util::future::join_all(puts).await {
                res?;
            }
        }
        Ok(())
    }

    /// Reads object `id` of `owner`: its total length and a stream of the
    /// bytes in `range` (all of them for `None`).
    ///
    /// The range's end is clamped to the length, so the stream carries
    /// `start..min(end, len)`; a range that starts past the end
    /// (`start > len`) or ends before it starts is
    /// [`BlobError::RangeNotSatisfiable`]. An empty range (`start == end`,
    /// or `start == len`) is an empty stream. Only the requested bytes are
    /// read from the backend.
    async fn get(
        &self,
        owner: AccountId,
        id: ObjectId,
        range: Option<Range<u64>>,
    ) -> Result<(u64, BlobStream), BlobError>;

    /// [`BlobStore::get`] of an object the caller knows to be `size` bytes
    /// long (from its own records): a store that keeps objects in tiers by
    /// size looks in the likely one first. The same answer as `get`.
    async fn get_sized(
        &self,
        owner: AccountId,
        id: ObjectId,
        range: Option<Range<u64>>,
        _size: u64,
    ) -> Result<(u64, BlobStream), BlobError> {
        self.get(owner, id, range).await
    }

    /// Deletes the object; deleting a missing object succeeds. A stream
    /// already returned by [`Self::get`] may end early with an error.
    async fn delete(&self, owner: AccountId, id: ObjectId) -> Result<(), BlobError>;

    /// [`Self::delete`] of each of `objects`, answered in order. A backend
    /// may delete them together (the database store: all in one
    /// transaction, where a `delete` each costs two commits).
    async fn delete_many(&self, objects: &[(AccountId, ObjectId)]) -> Vec<Result<(), BlobError>> {
        use futures_util::StreamExt as _;
        let deletes: Vec<_> = objects
            .iter()
            .map(|&(owner, id)| self.delete(owner, id))
            .collect();
        futures_util::stream::iter(deletes)
            .buffered(PUT_MANY_CONCURRENCY)
            .collect()
            .await
    }

    /// Whether the object exists (complete and visible).
    async fn exists(&self, owner: AccountId, id: ObjectId) -> Result<bool, BlobError>;

    /// Removes what uploads that never finished (a crash, a dropped
    /// connection) left staged for longer than `older_than`, and returns how
    /// many items it removed. Never touches a visible object. [`open`] runs
    /// it once with [`SWEEP_GRACE`].
    async fn sweep(&self, older_than: Duration) -> Result<u64, BlobError>;
}

/// Opens the object store a `VAULT_BLOB_STORE` value names:
///
/// - `file:DIR` — files under `DIR` (created 0700 if missing); a bare `file:`
///   means `<data_dir>/objects`;
/// - `db` — chunk rows in the database behind `db` (required then);
/// - `s3://BUCKET?endpoint=URL&region=R` — an S3-compatible bucket, see
///   [`S3Store::open`].
///
/// Then sweeps what unfinished uploads left behind longer than
/// [`SWEEP_GRACE`] ago.
pub async fn open(
    spec: &str,
    data_dir: &Path,
    db: Option<DbPool>,
) -> Result<Arc<dyn BlobStore>, BlobError> {
    let store: Arc<dyn BlobStore> = if spec == "db" {
        let pool = db.ok_or_else(|| {
            BlobError::Config("`db` needs the server's database, but none was given".into())
        })?;
        Arc::new(DbStore::new(pool))
    } else if let Some(dir) = spec.strip_prefix("file:") {
        let dir = if dir.is_empty() {
            data_dir.join("objects")
        } else {
            Path::new(dir).to_path_buf()
        };
        Arc::new(FileStore::open(&dir).await?)
    } else if spec.starts_with("s3://") {
        Arc::new(S3Store::open(spec).await?)
    } else {
        return Err(BlobError::Config(
            "must be `db`, `file:DIR` or `s3://BUCKET?endpoint=URL&region=R`".into(),
        ));
    };
    let swept = store.sweep(SWEEP_GRACE).await?;
    if swept > 0 {
        tracing::info!(
            backend = store.backend(),
            swept,
            "removed leftovers of unfinished uploads"
        );
    }
    Ok(store)
}

/// `main` with the small objects of batches, up to `small_max` bytes each,
/// kept in `db` ([`TieredStore`]); `main` itself when it is the database
/// already or when there is no database. With `small_max` 0 no new object
/// goes to the database, but those an earlier run put there stay readable
/// (and deletable): turning the setting off must not lose files.
pub fn with_small_in_db(
    main: Arc<dyn BlobStore>,
    db: Option<DbPool>,
    small_max: u64,
) -> Arc<dyn BlobStore> {
    match db {
        Some(pool) if main.backend() != "db" => {
            Arc::new(TieredStore::new(DbStore::new(pool), main, small_max))
        }
        _ => main,
    }
}

/// The effective byte range of a read of an object of `len` bytes (see
/// [`BlobStore::get`]).
pub fn resolve_range(range: Option<Range<u64>>, len: u64) -> Result<Range<u64>, BlobError> {
    match range {
        None => Ok(0..len),
        Some(r) if r.start > r.end || r.start > len => Err(BlobError::RangeNotSatisfiable { len }),
        Some(r) => Ok(r.start..r.end.min(len)),
    }
}

/// What every backend does with the bytes of a put as they stream: counts
/// them against the limit and checksums them.
#[derive(Debug, Clone)]
struct Intake {
    sum: RunningSum,
    expected: Checksum,
    len: u64,
    max_len: u64,
}

/// The checksum of the bytes so far, of the kind that was announced.
#[derive(Debug, Clone)]
enum RunningSum {
    Sha256(Sha256),
    Crc32c(crc_fast::Digest),
}

impl Intake {
    fn new(max_len: u64, expected: Checksum) -> Self {
        Self {
            sum: match expected {
                Checksum::Sha256(_) => RunningSum::Sha256(Sha256::new()),
                Checksum::Crc32c(_) => {
                    RunningSum::Crc32c(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi))
                }
            },
            expected,
            len: 0,
            max_len,
        }
    }

    /// Takes the next piece of the body; fails once the total exceeds the
    /// limit (before the piece is written anywhere).
    fn feed(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        let n = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
        self.len = self.len.saturating_add(n);
        if self.len > self.max_len {
            return Err(BlobError::TooLarge {
                limit: self.max_len,
            });
        }
        match &mut self.sum {
            RunningSum::Sha256(h) => h.update(chunk),
            RunningSum::Crc32c(c) => c.update(chunk),
        }
        Ok(())
    }

    /// The length, if the checksum is the expected one.
    fn finish(self) -> Result<u64, BlobError> {
        let matches = match (self.sum, self.expected) {
            (RunningSum::Sha256(h), Checksum::Sha256(want)) => h.finalize().as_slice() == want,
            (RunningSum::Crc32c(c), Checksum::Crc32c(want)) => {
                u32::try_from(c.finalize()).is_ok_and(|got| got == want)
            }
            _ => false,
        };
        if matches {
            Ok(self.len)
        } else {
            Err(BlobError::DigestMismatch)
        }
    }
}

/// A fresh random 128-bit name for staged data (temp files, uploads).
fn random_token() -> Result<[u8; 16], BlobError> {
    let mut token = [0u8; 16];
    getrandom::fill(&mut token)
        .map_err(|e| BlobError::Backend(format!("no randomness for a staging name: {e}")))?;
    Ok(token)
}
