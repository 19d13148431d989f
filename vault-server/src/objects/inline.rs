//! Small objects sent inline in a `POST /v1/batch` body, stored exactly as
//! `PUT /v1/objects/{id}` stores one (the same size limit, digest check,
//! reservation against the quota and blob-store put, from the helpers in
//! the parent module), but all or none and at the cost of one reservation
//! transaction for all of them, and stored together
//! ([`BlobStore::put_many`](crate::blob::BlobStore::put_many): the file
//! store makes a whole batch durable with two `syncfs` calls).
//!
//! Order: first every object is checked on its own without touching
//! anything ([`check`]: a SHA-256 of 32 bytes, 400; at most
//! `VAULT_MAX_OBJECT_BYTES`, 413; the data matching its SHA-256, 400
//! `digest_mismatch`), so a malformed batch reserves nothing and burns no
//! id. Then [`store`] reserves them all in one transaction
//! ([`TreeStore::reserve_objects`](crate::store::TreeStore::reserve_objects):
//! 409 `exists`, 507 `quota_exceeded`, nothing reserved on either), and
//! writes them to the blob store together. If any write fails, every
//! object of the request is abandoned (returned to the quota and queued for
//! purge, like a failed upload) and the request fails with that error.
//!
//! The bodies are in memory already (the JSON body is at most a few MiB),
//! so the stale-upload check of a streamed `PUT` (the collector may release
//! an upload slower than its grace period) is only run when the writes took
//! long enough for that to be possible.

use std::time::Instant;

use bytes::Bytes;
use common::ObjectId;
use common::api::tree::InlineObject;
use sha2::{Digest as _, Sha256};

use super::{Reservation, check_not_collected, check_size};
use crate::blob::{Checksum, SmallObject};
use crate::error::ApiError;
use crate::state::{AppState, now};
use crate::store::{AccountId, NewObject};

/// Checks each object on its own, in order, and takes its bytes out of the
/// request: the first failure is the answer, and nothing was reserved.
pub fn check(state: &AppState, objects: Vec<InlineObject>) -> Result<Vec<SmallObject>, ApiError> {
    objects
        .into_iter()
        .map(|mut o| {
            let digest: [u8; 32] = o.sha256.0.as_slice().try_into().map_err(|_| {
                ApiError::BadRequest(format!("object {}: sha256 must be 32 bytes", o.id))
            })?;
            let data = Bytes::from(std::mem::take(&mut o.data.0));
            let checked = SmallObject {
                id: o.id,
                data,
                sha256: digest,
            };
            check_size(state, checked.size())?;
            if Sha256::digest(&checked.data).as_slice() != digest.as_slice() {
                return Err(ApiError::DigestMismatch);
            }
            Ok(checked)
        })
        .collect()
}

/// Reserves and stores `objects` (already [`check`]ed), all or none, and
/// returns their total size.
pub async fn store(
    state: &AppState,
    owner: AccountId,
    objects: &[SmallObject],
) -> Result<u64, ApiError> {
    if objects.is_empty() {
        return Ok(0);
    }
    let reserve: Vec<NewObject> = objects
        .iter()
        .map(|o| NewObject {
            id: o.id,
            size: o.size(),
            checksum: Checksum::Sha256(o.sha256),
        })
        .collect();
    let started = Instant::now();
    state
        .store
        .reserve_objects(owner, &reserve, state.quota_bytes, now())
        .await?;
    let ids: Vec<ObjectId> = objects.iter().map(|o| o.id).collect();
    let reservation = Reservation::new(state, owner, ids.clone());
    let stored = async {
        state
            .blobs
            .put_many(owner, objects, state.max_object_bytes)
            .await?;
        if may_have_been_collected(started.elapsed().as_secs(), state.gc_grace_secs) {
            check_not_collected(state, owner, &ids).await?;
        }
        Ok::<(), ApiError>(())
    };
    let reserved = started.elapsed();
    if let Err(e) = stored.await {
        // All or none: what was written is abandoned (queued for purge).
        reservation.abandon().await;
        return Err(e);
    }
    reservation.keep();
    // Where the time of a batch's objects goes (counts and times only).
    tracing::debug!(
        objects = objects.len(),
        reserve_ms = reserved.as_millis(),
        write_ms = (started.elapsed() - reserved).as_millis(),
        "inline objects"
    );
    let total = reserve.iter().map(|o| o.size).sum();
    metrics::counter!("vault_object_upload_bytes_total").increment(total);
    Ok(total)
}

/// Whether the collector can have released objects reserved `elapsed`
/// seconds ago: it releases pending objects older than the grace period by
/// its own clock, so with half the period as margin for the clocks of
/// several server instances (and a second for rounding), earlier writes
/// need no check.
fn may_have_been_collected(elapsed: u64, grace: u64) -> bool {
    elapsed.saturating_add(1).saturating_mul(2) >= grace
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stale_check_runs_only_when_the_collector_could_have_run() {
        assert!(!may_have_been_collected(0, 3600));
        assert!(!may_have_been_collected(1798, 3600));
        assert!(may_have_been_collected(1799, 3600));
        assert!(may_have_been_collected(0, 2));
        assert!(may_have_been_collected(0, 0));
        assert!(may_have_been_collected(u64::MAX, 3600));
    }
}
