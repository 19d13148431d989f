//! [`TieredStore`]: the small objects of batches in the server's database,
//! every other object in the configured store (`file:` or `s3://`).
//!
//! Why: a new small file is one object of a few KiB, sent inline in a
//! `POST /v1/batch`. As a file of its own it costs an inode, a directory
//! entry, a temp name and a link, plus two `syncfs` per batch that also
//! flush whatever else is dirty on the disk; as an S3 object, a request
//! each. As rows in the database the whole batch is one transaction, one
//! log flush ([`DbStore`]'s `put_many`). `VAULT_SMALL_OBJECTS_IN_DB` sets
//! the largest such object (0: off); streamed uploads (`PUT`) always go to
//! the configured store.
//!
//! Invariants, on top of every [`BlobStore`]'s:
//! - an object lives in exactly one tier. Write-once spans both: a `put`
//!   first checks that the database has no object of that name, and a
//!   batch's small objects first check the configured store. (The server
//!   also reserves every id once per owner in its own tables before any
//!   write, so two tiers never race for one name.)
//! - reads, existence checks and deletes look in the database first (one
//!   indexed lookup), then in the configured store; deleting from both is
//!   idempotent, as each store's delete is. A read whose size the caller
//!   knows (`get_sized`, the download handler) looks first in the tier
//!   that size belongs in, then in the other: the limit may have been
//!   lowered, or set to 0, since the object was stored.
//! - with a limit of 0 nothing new goes to the database; what is there
//!   stays readable.
//! - the sweep sweeps both.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::ObjectId;
use futures_util::{StreamExt as _, TryStreamExt as _};

use super::{BlobError, BlobStore, BlobStream, Checksum, DbStore, PutBody, SmallObject};
use crate::store::AccountId;

/// Existence checks in the configured store run this many at once.
const PARALLEL_CHECKS: usize = 16;

/// Small batch objects in the database, the rest in `main`.
#[derive(Debug)]
pub struct TieredStore {
    small: DbStore,
    main: Arc<dyn BlobStore>,
    small_max: u64,
}

impl TieredStore {
    /// Keeps the objects of batches of at most `small_max` bytes in
    /// `small` (none when it is 0), everything else in `main`.
    pub fn new(small: DbStore, main: Arc<dyn BlobStore>, small_max: u64) -> Self {
        Self {
            small,
            main,
            small_max,
        }
    }

    /// Whether a batch object of `size` bytes goes to the database.
    fn is_small(&self, size: u64) -> bool {
        self.small_max > 0 && size <= self.small_max
    }
}

#[async_trait]
impl BlobStore for TieredStore {
    fn backend(&self) -> &'static str {
        self.main.backend()
    }

    async fn put(
        &self,
        owner: AccountId,
        id: ObjectId,
        body: PutBody,
        max_len: u64,
        expected: Checksum,
    ) -> Result<u64, BlobError> {
        if self.small.exists(owner, id).await? {
            return Err(BlobError::Exists);
        }
        self.main.put(owner, id, body, max_len, expected).await
    }

    async fn put_many(
        &self,
        owner: AccountId,
        objects: &[SmallObject],
        max_len: u64,
    ) -> Result<(), BlobError> {
        let (small, big): (Vec<SmallObject>, Vec<SmallObject>) = objects
            .iter()
            .cloned()
            .partition(|o| self.is_small(o.size()));
        let checks: Vec<_> = small
            .iter()
            .map(|o| self.main.exists(owner, o.id))
            .collect();
        let taken = futures_util::stream::iter(checks)
            .buffer_unordered(PARALLEL_CHECKS)
            .try_any(std::future::ready)
            .await?;
        if taken {
            return Err(BlobError::Exists);
        }
        self.small.put_many(owner, &small, max_len).await?;
        self.main.put_many(owner, &big, max_len).await
    }

    async fn get(
        &self,
        owner: AccountId,
        id: ObjectId,
        range: Option<Range<u64>>,
    ) -> Result<(u64, BlobStream), BlobError> {
        match self.small.get(owner, id, range.clone()).await {
            Err(BlobError::NotFound) => self.main.get(owner, id, range).await,
            found => found,
        }
    }

    async fn get_sized(
        &self,
        owner: AccountId,
        id: ObjectId,
        range: Option<Range<u64>>,
        size: u64,
    ) -> Result<(u64, BlobStream), BlobError> {
        if self.is_small(size) {
            return self.get(owner, id, range).await;
        }
        match self.main.get(owner, id, range.clone()).await {
            Err(BlobError::NotFound) => self.small.get(owner, id, range).await,
            found => found,
        }
    }

    async fn delete(&self, owner: AccountId, id: ObjectId) -> Result<(), BlobError> {
        if self.small.remove(owner, id).await? {
            return Ok(());
        }
        self.main.delete(owner, id).await
    }

    async fn delete_many(&self, objects: &[(AccountId, ObjectId)]) -> Vec<Result<(), BlobError>> {
        let found = match self.small.remove_many(objects).await {
            Ok(found) => found,
            Err(e) => return super::db::each_failed(objects.len(), &e),
        };
        // What the database did not have, the configured store may.
        let rest: Vec<(AccountId, ObjectId)> = objects
            .iter()
            .zip(&found)
            .filter(|(_, here)| !**here)
            .map(|(o, _)| *o)
            .collect();
        let mut rest_done = self.main.delete_many(&rest).await.into_iter();
        found
            .into_iter()
            .map(|here| {
                if here {
                    Ok(())
                } else {
                    rest_done.next().unwrap_or_else(|| {
                        Err(BlobError::Backend(
                            "the object store answered fewer deletes than asked".into(),
                        ))
                    })
                }
            })
            .collect()
    }

    async fn exists(&self, owner: AccountId, id: ObjectId) -> Result<bool, BlobError> {
        Ok(self.small.exists(owner, id).await? || self.main.exists(owner, id).await?)
    }

    async fn sweep(&self, older_than: Duration) -> Result<u64, BlobError> {
        let small = self.small.sweep(older_than).await?;
        Ok(small + self.main.sweep(older_than).await?)
    }
}
