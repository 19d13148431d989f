//! [`DbStore`]: objects as rows in the server's own database (`db`), on
//! SQLite or MySQL/MariaDB/TiDB (tables from migration
//! `0002_blob_chunks.sql` of each backend).
//!
//! Two tables: `blob_chunks (owner_id, object_id, upload_id, idx, data,
//! staged_at)` holds the bytes in chunks of exactly [`CHUNK_SIZE`] (the last
//! one shorter; `LONGBLOB` on MySQL), keyed by `(upload_id, idx)`;
//! `blob_objects (owner_id, object_id, upload_id, size, sha256, crc32c,
//! created_at)` (one of the two checksums, the one the upload announced)
//! holds one row per *visible* object, keyed by `(owner_id, object_id)`.
//!
//! A put is staged, then committed, like a temp file and a `link`:
//! - each put draws a random `upload_id` and inserts its chunks one row at a
//!   time as the body streams (at most one chunk is buffered), each in its
//!   own short statement: no transaction stays open while the client
//!   sends, so a slow upload never holds SQLite's single write lock (or
//!   MySQL row locks) for its whole duration;
//! - chunk rows without a `blob_objects` row pointing at their upload are
//!   invisible: nothing reads chunks except through `blob_objects`;
//! - after the checksum and length are verified, one `INSERT` into
//!   `blob_objects` is the atomic commit point. Its primary key makes it the
//!   write-once check too: of concurrent puts of one name exactly one insert
//!   succeeds; the losers' unique violation is [`BlobError::Exists`];
//! - a put that fails deletes its staged chunks; one that is cancelled
//!   (future dropped) spawns that deletion; one that crashes leaves rows
//!   that [`BlobStore::sweep`] removes (staged before the grace and claimed
//!   by no object).
//!
//! A batch of small objects whose bytes are all in memory
//! ([`BlobStore::put_many`]) skips the staging: its chunk and object rows
//! are inserted in one transaction, all or none, so the batch costs one
//! commit.
//!
//! Reads look up the object's upload and size, then fetch only the chunks
//! covering the range, one row per query, and of each only the bytes needed
//! (`SUBSTR`). Deletion removes the `blob_objects` row first (the object is
//! gone at once, atomically) and then its chunks; if the second step is
//! interrupted, the sweep collects them.

use std::ops::Range;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use common::ObjectId;
use futures_util::{StreamExt as _, TryStreamExt as _};
use sqlx::mysql::MySqlPool;
use sqlx::sqlite::SqlitePool;

use super::{
    BlobError, BlobStore, BlobStream, Checksum, Intake, PutBody, SmallObject, random_token,
    resolve_range,
};
use crate::store::{AccountId, MySqlStore, SqliteStore};

/// Bytes per chunk row (the last chunk of an object may be shorter).
pub const CHUNK_SIZE: usize = 1024 * 1024;
const CHUNK_U64: u64 = CHUNK_SIZE as u64;

const INSERT_CHUNK: &str = "INSERT INTO blob_chunks (owner_id, object_id, upload_id, idx, data, \
     staged_at) VALUES (?, ?, ?, ?, ?, ?)";
const DELETE_UPLOAD_CHUNKS: &str = "DELETE FROM blob_chunks WHERE upload_id = ?";
const INSERT_OBJECT: &str = "INSERT INTO blob_objects (owner_id, object_id, upload_id, size, \
     sha256, crc32c, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)";
const OBJECT: &str =
    "SELECT upload_id, size FROM blob_objects WHERE owner_id = ? AND object_id = ?";
const OBJECT_EXISTS: &str = "SELECT 1 FROM blob_objects WHERE owner_id = ? AND object_id = ?";
/// Qualified by the upload read just before, so a delete never removes an
/// object that replaced the one it looked up.
const DELETE_OBJECT: &str =
    "DELETE FROM blob_objects WHERE owner_id = ? AND object_id = ? AND upload_id = ?";
/// `(offset + 1, length, upload_id, idx)`: SUBSTR counts from 1 and, on a
/// BLOB, in bytes (both dialects).
const CHUNK_SLICE: &str =
    "SELECT SUBSTR(data, ?, ?) FROM blob_chunks WHERE upload_id = ? AND idx = ?";
/// Chunks staged before a time whose upload no object claims.
const SWEEP_ORPHANS: &str = "DELETE FROM blob_chunks WHERE staged_at < ? AND upload_id NOT IN \
     (SELECT upload_id FROM blob_objects)";

/// The database a [`DbStore`] keeps its rows in.
#[derive(Debug, Clone)]
pub enum DbPool {
    /// An SQLite database (the same file as the rest of the server's state).
    Sqlite(SqlitePool),
    /// A MySQL, MariaDB or TiDB database.
    MySql(MySqlPool),
}

impl From<&SqliteStore> for DbPool {
    fn from(store: &SqliteStore) -> Self {
        Self::Sqlite(store.pool().clone())
    }
}

impl From<&MySqlStore> for DbPool {
    fn from(store: &MySqlStore) -> Self {
        Self::MySql(store.pool().clone())
    }
}

/// Runs `$body` with `$p` bound to the concrete pool: the same statement
/// text, type-checked once per backend.
macro_rules! with_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            DbPool::Sqlite($p) => $body,
            DbPool::MySql($p) => $body,
        }
    };
}

/// Objects as chunk rows in SQL.
#[derive(Debug, Clone)]
pub struct DbStore {
    pool: DbPool,
}

impl DbStore {
    /// Keeps objects in `pool`'s database, whose migrations must have run.
    pub fn new(pool: DbPool) -> Self {
        Self { pool }
    }

    async fn insert_chunk(&self, to: &Target, idx: i64, data: &[u8]) -> Result<(), BlobError> {
        let done = with_pool!(&self.pool, p => sqlx::query(INSERT_CHUNK)
            .bind(to.owner.0)
            .bind(to.id.as_bytes().as_slice())
            .bind(to.upload.as_slice())
            .bind(idx)
            .bind(data)
            .bind(to.now)
            .execute(p)
            .await
            .map(drop));
        done.map_err(backend)
    }

    /// Streams the body into chunk rows under `upload`; the length once the
    /// body is complete, within the limit and matches the checksum.
    async fn stage(
        &self,
        to: &Target,
        mut body: PutBody,
        max_len: u64,
        expected: Checksum,
    ) -> Result<u64, BlobError> {
        let mut intake = Intake::new(max_len, expected);
        let mut buf = BytesMut::with_capacity(CHUNK_SIZE);
        let mut idx: i64 = 0;
        while let Some(mut piece) = body.try_next().await? {
            intake.feed(&piece)?;
            while !piece.is_empty() {
                let take = piece.len().min(CHUNK_SIZE - buf.len());
                buf.extend_from_slice(&piece.split_to(take));
                if buf.len() == CHUNK_SIZE {
                    self.insert_chunk(to, idx, &buf).await?;
                    buf.clear();
                    idx += 1;
                }
            }
        }
        let len = intake.finish()?;
        if !buf.is_empty() {
            self.insert_chunk(to, idx, &buf).await?;
        }
        Ok(len)
    }

    async fn delete_upload(pool: &DbPool, upload: &[u8; 16]) -> Result<(), BlobError> {
        let done = with_pool!(pool, p => sqlx::query(DELETE_UPLOAD_CHUNKS)
            .bind(upload.as_slice())
            .execute(p)
            .await
            .map(drop));
        done.map_err(backend)
    }

    /// The object's upload id and size.
    async fn object(
        &self,
        owner: AccountId,
        id: ObjectId,
    ) -> Result<Option<(Vec<u8>, i64)>, BlobError> {
        let done = with_pool!(&self.pool, p => sqlx::query_as::<_, (Vec<u8>, i64)>(OBJECT)
            .bind(owner.0)
            .bind(id.as_bytes().as_slice())
            .fetch_optional(p)
            .await);
        done.map_err(backend)
    }

    /// Deletes the object (see [`BlobStore::delete`]); true when this call
    /// found it.
    pub(super) async fn remove(&self, owner: AccountId, id: ObjectId) -> Result<bool, BlobError> {
        let found = self.remove_many(&[(owner, id)]).await?;
        Ok(found.first().copied().unwrap_or(false))
    }

    /// Removes each of `objects` that is here, as [`Self::remove`] does,
    /// all in one transaction; answers, in order, whether each was found.
    pub(super) async fn remove_many(
        &self,
        objects: &[(AccountId, ObjectId)],
    ) -> Result<Vec<bool>, BlobError> {
        if objects.is_empty() {
            return Ok(Vec::new());
        }
        let done = with_pool!(&self.pool, p => async {
            let mut tx = p.begin().await?;
            let mut found = Vec::with_capacity(objects.len());
            for (owner, id) in objects {
                let row = sqlx::query_as::<_, (Vec<u8>, i64)>(OBJECT)
                    .bind(owner.0)
                    .bind(id.as_bytes().as_slice())
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some((upload, _)) = row else {
                    found.push(false);
                    continue;
                };
                let gone = sqlx::query(DELETE_OBJECT)
                    .bind(owner.0)
                    .bind(id.as_bytes().as_slice())
                    .bind(upload.as_slice())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                // None: a concurrent delete got there first and removes
                // the chunks.
                if gone > 0 {
                    sqlx::query(DELETE_UPLOAD_CHUNKS)
                        .bind(upload.as_slice())
                        .execute(&mut *tx)
                        .await?;
                }
                found.push(true);
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(found)
        }
        .await);
        done.map_err(backend)
    }
}

/// The same failure for each of `n` objects (a batch that failed as one).
pub(super) fn each_failed(n: usize, e: &BlobError) -> Vec<Result<(), BlobError>> {
    (0..n)
        .map(|_| Err(BlobError::Backend(e.to_string())))
        .collect()
}

#[async_trait]
impl BlobStore for DbStore {
    fn backend(&self) -> &'static str {
        "db"
    }

    async fn put(
        &self,
        owner: AccountId,
        id: ObjectId,
        body: PutBody,
        max_len: u64,
        expected: Checksum,
    ) -> Result<u64, BlobError> {
        if self.exists(owner, id).await? {
            return Err(BlobError::Exists);
        }
        let upload = random_token()?;
        let now = unix_now();
        let mut staged = Staged {
            pool: Some(self.pool.clone()),
            upload,
        };
        let outcome = async {
            let to = Target {
                owner,
                id,
                upload,
                now,
            };
            let len = self.stage(&to, body, max_len, expected).await?;
            let size = i64::try_from(len).map_err(|_| BlobError::TooLarge { limit: max_len })?;
            let inserted = with_pool!(&self.pool, p => sqlx::query(INSERT_OBJECT)
                .bind(owner.0)
                .bind(id.as_bytes().as_slice())
                .bind(upload.as_slice())
                .bind(size)
                .bind(expected.sha256().map(<[u8; 32]>::as_slice))
                .bind(expected.crc32c().map(i64::from))
                .bind(now)
                .execute(p)
                .await
                .map(drop));
            match inserted {
                Ok(_) => Ok(len),
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(BlobError::Exists),
                Err(e) => Err(backend(e)),
            }
        }
        .await;
        match outcome {
            Ok(len) => {
                staged.pool = None; // committed: the chunks are the object's
                Ok(len)
            }
            Err(e) => {
                if let Some(pool) = staged.pool.take()
                    && let Err(cleanup) = Self::delete_upload(&pool, &upload).await
                {
                    tracing::warn!(error = %cleanup, "could not remove a failed upload's chunks");
                }
                Err(e)
            }
        }
    }

    /// All of them in one transaction, a few multi-row `INSERT`s: a batch
    /// of small objects costs one commit (one log flush), where a `put`
    /// each costs a statement per chunk and one for the object, each its
    /// own commit. All or none: on any error nothing is visible.
    async fn put_many(
        &self,
        owner: AccountId,
        objects: &[SmallObject],
        max_len: u64,
    ) -> Result<(), BlobError> {
        if objects.is_empty() {
            return Ok(());
        }
        let now = unix_now();
        let mut rows = Vec::with_capacity(objects.len());
        for o in objects {
            let mut intake = Intake::new(max_len, Checksum::Sha256(o.sha256));
            intake.feed(&o.data)?;
            let len = intake.finish()?;
            let size = i64::try_from(len).map_err(|_| BlobError::TooLarge { limit: max_len })?;
            rows.push(ManyRow {
                object: o,
                upload: random_token()?,
                size,
            });
        }
        let chunks: Vec<ManyChunk<'_>> = rows
            .iter()
            .flat_map(|r| {
                r.object
                    .data
                    .chunks(CHUNK_SIZE)
                    .zip(0_i64..)
                    .map(move |(data, idx)| ManyChunk { row: r, idx, data })
            })
            .collect();
        let done = with_pool!(&self.pool, p => async {
            let mut tx = p.begin().await?;
            for part in by_size(&chunks, |c| c.data.len()) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO blob_chunks (owner_id, object_id, upload_id, idx, data, staged_at) ",
                );
                q.push_values(part, |mut b, c: &ManyChunk<'_>| {
                    b.push_bind(owner.0)
                        .push_bind(c.row.object.id.as_bytes().as_slice())
                        .push_bind(c.row.upload.as_slice())
                        .push_bind(c.idx)
                        .push_bind(c.data)
                        .push_bind(now);
                });
                q.build().persistent(false).execute(&mut *tx).await?;
            }
            for part in by_size(&rows, |_| 0) {
                let mut q = sqlx::QueryBuilder::new(
                    "INSERT INTO blob_objects (owner_id, object_id, upload_id, size, sha256, \
                     crc32c, created_at) ",
                );
                q.push_values(part, |mut b, r: &ManyRow<'_>| {
                    b.push_bind(owner.0)
                        .push_bind(r.object.id.as_bytes().as_slice())
                        .push_bind(r.upload.as_slice())
                        .push_bind(r.size)
                        .push_bind(r.object.sha256.as_slice())
                        .push_bind(None::<i64>)
                        .push_bind(now);
                });
                q.build().persistent(false).execute(&mut *tx).await?;
            }
            tx.commit().await
        }
        .await);
        match done {
            Ok(()) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Err(BlobError::Exists),
            Err(e) => Err(backend(e)),
        }
    }

    async fn get(
        &self,
        owner: AccountId,
        id: ObjectId,
        range: Option<Range<u64>>,
    ) -> Result<(u64, BlobStream), BlobError> {
        let (upload, size) = self.object(owner, id).await?.ok_or(BlobError::NotFound)?;
        let len = u64::try_from(size).map_err(|_| corrupt("negative object size"))?;
        let range = resolve_range(range, len)?;
        let pool = self.pool.clone();
        let stream = futures_util::stream::try_unfold(range, move |range| {
            let pool = pool.clone();
            let upload = upload.clone();
            async move {
                if range.start >= range.end {
                    return Ok(None);
                }
                let idx = range.start / CHUNK_U64;
                let offset = range.start % CHUNK_U64;
                let want = (CHUNK_U64 - offset).min(range.end - range.start);
                let idx = i64::try_from(idx).map_err(|_| corrupt("chunk index"))?;
                // Both fit in i64: they are at most CHUNK_SIZE.
                let (from, count) = (offset as i64 + 1, want as i64);
                let row = with_pool!(&pool, p => sqlx::query_as::<_, (Vec<u8>,)>(CHUNK_SLICE)
                    .bind(from)
                    .bind(count)
                    .bind(upload.as_slice())
                    .bind(idx)
                    .fetch_optional(p)
                    .await)
                .map_err(backend)?;
                let (data,) = row.ok_or_else(|| {
                    BlobError::Backend("the object was deleted while it was read".into())
                })?;
                if u64::try_from(data.len()).ok() != Some(want) {
                    return Err(corrupt("a chunk is shorter than the object's size says"));
                }
                let next = range.start + want..range.end;
                Ok(Some((Bytes::from(data), next)))
            }
        });
        Ok((len, stream.boxed()))
    }

    async fn delete(&self, owner: AccountId, id: ObjectId) -> Result<(), BlobError> {
        self.remove(owner, id).await.map(drop)
    }

    async fn delete_many(&self, objects: &[(AccountId, ObjectId)]) -> Vec<Result<(), BlobError>> {
        match self.remove_many(objects).await {
            // A missing object is no error.
            Ok(found) => found.into_iter().map(|_| Ok(())).collect(),
            Err(e) => each_failed(objects.len(), &e),
        }
    }

    async fn exists(&self, owner: AccountId, id: ObjectId) -> Result<bool, BlobError> {
        let found = with_pool!(&self.pool, p => sqlx::query(OBJECT_EXISTS)
            .bind(owner.0)
            .bind(id.as_bytes().as_slice())
            .fetch_optional(p)
            .await
            .map(|row| row.is_some()));
        found.map_err(backend)
    }

    async fn sweep(&self, older_than: Duration) -> Result<u64, BlobError> {
        let secs = i64::try_from(older_than.as_secs()).unwrap_or(i64::MAX);
        let cutoff = unix_now().saturating_sub(secs);
        let done = with_pool!(&self.pool, p => sqlx::query(SWEEP_ORPHANS)
            .bind(cutoff)
            .execute(p)
            .await
            .map(|done| done.rows_affected()));
        done.map_err(backend)
    }
}

/// One object of a [`BlobStore::put_many`], with its upload id.
struct ManyRow<'a> {
    object: &'a SmallObject,
    upload: [u8; 16],
    size: i64,
}

/// One chunk row of a [`BlobStore::put_many`].
struct ManyChunk<'a> {
    row: &'a ManyRow<'a>,
    idx: i64,
    data: &'a [u8],
}

/// Most rows in one multi-row `INSERT` (6 values each: far below SQLite's
/// limit on bound values).
const ROWS_PER_INSERT: usize = 200;

/// `items` cut into runs of at most [`ROWS_PER_INSERT`] rows and (but at
/// least one row) [`CHUNK_SIZE`] bytes by `size`: one statement stays
/// within what a `put` sends in one (MySQL's `max_allowed_packet`).
fn by_size<T>(items: &[T], size: impl Fn(&T) -> usize) -> Vec<Vec<&T>> {
    let mut parts: Vec<Vec<&T>> = Vec::new();
    let mut part: Vec<&T> = Vec::new();
    let mut bytes = 0;
    for item in items {
        let n = size(item);
        if !part.is_empty() && (part.len() >= ROWS_PER_INSERT || bytes + n > CHUNK_SIZE) {
            parts.push(std::mem::take(&mut part));
            bytes = 0;
        }
        bytes += n;
        part.push(item);
    }
    if !part.is_empty() {
        parts.push(part);
    }
    parts
}

/// Where a put stages its chunks.
#[derive(Debug, Clone, Copy)]
struct Target {
    owner: AccountId,
    id: ObjectId,
    upload: [u8; 16],
    /// `staged_at` of its rows.
    now: i64,
}

/// The chunks of a put that has not committed: removed (in a spawned task)
/// if the put's future is dropped before it finishes.
struct Staged {
    pool: Option<DbPool>,
    upload: [u8; 16],
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let upload = self.upload;
            runtime.spawn(async move {
                let _ = DbStore::delete_upload(&pool, &upload).await;
            });
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn backend(e: sqlx::Error) -> BlobError {
    BlobError::Backend(format!("database: {e}"))
}

fn corrupt(what: &str) -> BlobError {
    BlobError::Backend(format!("corrupt object rows: {what}"))
}
