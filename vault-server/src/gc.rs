//! The object collector: a background task that [`crate::serve`] starts and
//! stops with the server, every [`PERIOD`]:
//!
//! 1. releases pending objects older than `VAULT_GC_GRACE_SECS` — uploads
//!    that were never committed to a file version (a client that crashed
//!    between upload and commit, or a failed upload whose abandon was lost);
//! 2. drains the purge queue — objects released by an unlink, a replacing
//!    rename, a commit that dropped them, an abandoned upload or step 1 —
//!    deleting them from the blob store ([`BlobStore::delete_many`]: the
//!    database tier in one transaction) and only then forgetting the rows
//!    of those deleted, in one transaction
//!    ([`TreeStore::purged_many`]). A delete that fails leaves the row queued,
//!    so the next round retries it; nothing is ever forgotten before its
//!    blob is gone;
//! 3. every [`SWEEP_EVERY`] rounds, asks the blob store to sweep what
//!    crashed uploads staged ([`BlobStore::sweep`], with
//!    [`crate::blob::SWEEP_GRACE`]).
//!
//! So a deleted file's objects leave the blob store within about one period
//! (10 s). Every step is idempotent and safe to run in several server
//! instances at once: two collectors deleting one blob both succeed
//! (deleting a missing object is no error), and `purged` of a forgotten row
//! is a no-op.
//!
//! [`TreeStore::purged_many`]: crate::store::TreeStore::purged_many
//! [`BlobStore::delete_many`]: crate::blob::BlobStore::delete_many
//! [`BlobStore::sweep`]: crate::blob::BlobStore::sweep

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::blob::SWEEP_GRACE;
use crate::state::{AppState, now};
use crate::store::TreeError;

/// Time between two rounds.
pub const PERIOD: Duration = Duration::from_secs(10);

/// Rounds between two sweeps of the blob store (an hour at [`PERIOD`]).
pub const SWEEP_EVERY: u64 = 360;

/// Rows taken from the database per query.
const BATCH: u32 = 500;

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Pending objects released because they outlived the grace period.
    pub released: u64,
    /// Objects deleted from the blob store and forgotten.
    pub purged: u64,
    /// Deletions that failed (retried next round).
    pub failed: u64,
}

/// One round of steps 1 and 2 (not the sweep).
pub async fn run_once(state: &AppState) -> Result<GcStats, TreeError> {
    let mut stats = GcStats::default();
    let grace = i64::try_from(state.gc_grace_secs).unwrap_or(i64::MAX);
    let cutoff = now().saturating_sub(grace);
    loop {
        let released = state.store.release_stale_pending(cutoff, BATCH).await?;
        stats.released += released.len() as u64;
        if released.len() < BATCH as usize {
            break;
        }
    }
    loop {
        let queue = state.store.purge_queue(BATCH).await?;
        let full = queue.len() >= BATCH as usize;
        // The blobs first, all together; then the rows of those deleted,
        // in one transaction.
        let results = state.blobs.delete_many(&queue).await;
        let deleted: Vec<_> = queue
            .iter()
            .zip(&results)
            .filter_map(|(&(owner, id), res)| match res {
                Ok(()) => Some((owner, id)),
                Err(e) => {
                    tracing::warn!(error = %e, object = %id, "cannot delete an object from the blob store");
                    None
                }
            })
            .collect();
        let done = match state.store.purged_many(&deleted).await {
            Ok(()) => deleted.len() as u64,
            Err(e) => {
                tracing::warn!(error = %e, objects = deleted.len(), "cannot forget purged objects");
                0
            }
        };
        stats.purged += done;
        stats.failed += queue.len() as u64 - done;
        // Stop when the queue is drained, or when a whole batch failed (the
        // same rows would come back at once).
        if !full || done == 0 {
            break;
        }
    }
    Ok(stats)
}

/// The running collector.
#[derive(Debug)]
pub struct Collector {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Collector {
    /// Stops the collector, waiting for a round in progress to finish.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the object collector failed");
        }
    }
}

/// Starts the collector: a round every `period`, the first one at once.
pub fn spawn(state: AppState, period: Duration) -> Collector {
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut round: u64 = 0;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stopped.changed() => break,
            }
            match run_once(&state).await {
                Ok(s) if s == GcStats::default() => {}
                Ok(s) => tracing::info!(
                    released = s.released,
                    purged = s.purged,
                    failed = s.failed,
                    "object collector"
                ),
                Err(e) => tracing::warn!(error = %e, "object collector round failed"),
            }
            round += 1;
            if round.is_multiple_of(SWEEP_EVERY) {
                match state.blobs.sweep(SWEEP_GRACE).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(swept = n, "removed leftovers of unfinished uploads"),
                    Err(e) => tracing::warn!(error = %e, "blob store sweep failed"),
                }
            }
        }
    });
    Collector { stop, task }
}
