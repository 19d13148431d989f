//! Committing many files at once: small files (one object of at most
//! [`SMALL_FILE`] bytes) go to the server in one `POST /v1/batch` per up to
//! [`MAX_FILES`] files, their objects inline, one operation per file: the
//! create of a file made here (see `local`) at version 1 with its objects,
//! or the commit of a new version. A file whose operation the server
//! refuses, and every bigger file, then takes the
//! one-file path (`commit::commit_locked`), which knows how to resolve
//! conflicts, taken names and removed directories.
//!
//! Every file's lock is held from planning until its outcome is recorded,
//! as the one-file path does. The uploader takes locks with `try_lock` and
//! skips busy files; other callers wait for them in inode order, so two
//! batches never wait on each other.
//!
//! When the request itself fails, the answer may have been lost after the
//! server applied it: each file's node is read back and a file whose
//! current record is the one this batch sent counts as committed (records
//! are sealed with a fresh nonce, so equal bytes mean this very commit).

use std::sync::Arc;

use bytes::Bytes;
use common::NodeId;
use common::api::Base64;
use common::api::tree::{
    BATCH_MAX_INLINE_BYTES, BATCH_MAX_OPS, BatchCommit, BatchOp, BatchOutcome, BatchRequest,
    CommitRequest, InlineObject, NodeIds, NodeInfo,
};
use common::crypto::attrs::{NodeAttributes, ObjectEntry};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::sync::MutexGuard;

use super::commit::{self, commit_locked};
use super::core::{Core, lock};
use super::error::{FsError, FsResult};
use super::file::{FileInner, FileState, JournalRemoval};
use super::local;
use super::remote::Budget;
use super::seal;
use super::types::Ino;
use crate::api::VaultApi;

/// Files up to this size commit in batches (their object goes inline).
pub(crate) const SMALL_FILE: u64 = 128 * 1024;
/// Most files in one batch (each is one operation).
pub(crate) const MAX_FILES: usize = BATCH_MAX_OPS;
/// Fewest files a batch is cut down to.
const MIN_FILES: usize = 16;
/// Files in the first batch of a mount.
pub(crate) const FIRST_FILES: usize = 100;
/// How long one batch should take the server. A batch is one transaction
/// holding the account's lock, and every other change (a mkdir, a chmod,
/// another batch) waits for it: under load a batch of 500 files took the
/// server up to 3.7 s, and tar's mkdirs stalled behind it. So the batch
/// size follows the server's pace: about this long per batch.
const BATCH_TARGET: std::time::Duration = std::time::Duration::from_millis(250);

/// The size of the next batch after one of `files` files took `took`:
/// what would have taken [`BATCH_TARGET`] at that pace, moving half way
/// from `current` (one slow answer does not halve it), within
/// [`MIN_FILES`]..=[`MAX_FILES`].
pub(crate) fn next_batch_files(current: usize, files: usize, took: std::time::Duration) -> usize {
    let took = took.as_micros().max(1);
    let fit = BATCH_TARGET
        .as_micros()
        .saturating_mul(files.max(1) as u128)
        / took;
    let fit = usize::try_from(fit)
        .unwrap_or(MAX_FILES)
        .clamp(MIN_FILES, MAX_FILES);
    (current + fit).div_ceil(2).clamp(MIN_FILES, MAX_FILES)
}
/// Ciphertext bytes reckoned per inline object beyond its plaintext.
const OBJECT_OVERHEAD: u64 = 4096;

/// True when `inner` can go in a batch.
pub(crate) fn batchable(inner: &FileInner) -> bool {
    inner.size() <= SMALL_FILE && inner.uploaded.is_empty() && inner.uploading.is_empty()
}

/// One file's part of a batch.
struct Plan<'a> {
    file: &'a Arc<FileState>,
    guard: MutexGuard<'a, FileInner>,
    /// The new version's attributes (with its objects).
    attrs: NodeAttributes,
    /// Index of its operation (and of its outcome).
    op: usize,
    /// The record the last operation sets and the version it makes.
    record: Base64,
    version: u64,
    objects: Vec<(ObjectEntry, Bytes)>,
    since: u64,
    link_gen: u64,
    /// Its new version is on the server.
    landed: bool,
    /// What is left to remove from the journal once it landed (run for
    /// the whole batch at once, before the locks are let go).
    removal: Option<JournalRemoval>,
}

/// Commits `files` (every one with changes: small ones batched, the rest
/// one by one). Returns the first error; the files it concerns stay dirty.
///
/// Up to [`IN_FLIGHT`] batches are under way at once: the next one is
/// planned (its files locked, sealed) while the last is on the server, and
/// sent while it is still there. The server stores a batch's objects
/// before it takes the account's lock for its operations, so one batch's
/// objects are written while the other's transaction runs. Groups are
/// disjoint runs of `files` in inode order, so their locks never cross.
pub(crate) async fn commit_files<A: VaultApi + 'static>(
    core: &Arc<Core<A>>,
    budget: Budget,
    mut files: Vec<Arc<FileState>>,
) -> FsResult<()> {
    files.sort_by_key(|f| f.ino);
    files.dedup_by_key(|f| f.ino);
    let mut first_err = None;
    let mut at = 0;
    let mut sending = FuturesUnordered::new();
    loop {
        if at < files.len() && sending.len() < IN_FLIGHT {
            let planning = prepare(core, budget, files.get(at..).unwrap_or(&[]));
            tokio::pin!(planning);
            // Keep the batches under way moving while this one is planned.
            let group = loop {
                tokio::select! {
                    group = &mut planning => break group,
                    Some(res) = sending.next(), if !sending.is_empty() => {
                        if let Err(e) = res {
                            first_err.get_or_insert(e);
                        }
                    }
                }
            };
            at += group.taken.max(1);
            sending.push(finish(core, budget, group));
        } else if let Some(res) = sending.next().await {
            if let Err(e) = res {
                first_err.get_or_insert(e);
            }
        } else {
            break;
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Batches one client has under way at once (see [`commit_files`]). A
/// batch is three short transactions on the server (reserving its
/// objects, storing them, its operations), each ending in a synced commit:
/// with two under way the server and its database sat idle between
/// commits much of the time (10k new small files: 2.4-2.6 s from `cp`
/// returning until all were on the server; with four, about 1.5 s).
const IN_FLIGHT: usize = 4;

/// A prefix of the files, planned: the batch to send and the files that
/// take the one-file path.
struct Group<'a> {
    /// How many files of the prefix it took (planned, single or skipped).
    taken: usize,
    plans: Vec<Plan<'a>>,
    req: BatchRequest,
    singles: Vec<(&'a Arc<FileState>, MutexGuard<'a, FileInner>)>,
    done: Vec<Ino>,
}

/// Locks and plans a prefix of `files` as one batch.
async fn prepare<'a, A: VaultApi + 'static>(
    core: &Arc<Core<A>>,
    budget: Budget,
    files: &'a [Arc<FileState>],
) -> Group<'a> {
    let mut g = Group {
        taken: 0,
        plans: Vec::new(),
        req: BatchRequest::default(),
        singles: Vec::new(),
        done: Vec::new(),
    };
    let mut inline: u64 = 0;
    let limit = core
        .batch_files
        .load(std::sync::atomic::Ordering::Relaxed)
        .clamp(MIN_FILES, MAX_FILES);
    for file in files {
        if g.plans.len() >= limit {
            break;
        }
        let guard = if budget == Budget::Uploader {
            match file.inner.try_lock() {
                Ok(guard) => guard,
                Err(_) => {
                    g.taken += 1;
                    continue;
                }
            }
        } else {
            file.inner.lock().await
        };
        if guard.dirty && !guard.gone && batchable(&guard) {
            let need = guard.size() + OBJECT_OVERHEAD;
            if inline + need > BATCH_MAX_INLINE_BYTES as u64 && !g.plans.is_empty() {
                break;
            }
        }
        g.taken += 1;
        if !guard.dirty || guard.gone {
            settled(core, file.ino, &mut g.done);
            continue;
        }
        if !batchable(&guard) {
            g.singles.push((file, guard));
            continue;
        }
        match plan(core, file, guard, &mut g.req).await {
            Ok(p) => {
                inline += p.objects.iter().map(|(_, ct)| ct.len() as u64).sum::<u64>();
                g.plans.push(p);
            }
            Err((guard, e)) => {
                tracing::debug!(error = %e, "cannot batch a file; committing it alone");
                g.singles.push((file, guard));
            }
        }
    }
    g
}

/// Sends a planned group, then commits what it could not carry one file
/// at a time.
async fn finish<A: VaultApi + 'static>(
    core: &Arc<Core<A>>,
    budget: Budget,
    g: Group<'_>,
) -> FsResult<()> {
    let Group {
        mut plans,
        req,
        mut singles,
        mut done,
        ..
    } = g;
    let mut first_err = None;
    if !plans.is_empty()
        && let Err(e) = send(core, budget, &mut plans, req).await
    {
        if e.is_transient() {
            first_err.get_or_insert(e);
            // The server is away: the one-file path would fail too.
            singles.clear();
            plans.clear();
        } else {
            tracing::debug!(error = %e, "a batch was refused; committing its files one by one");
        }
    }
    for p in plans {
        if p.guard.dirty && !p.guard.gone {
            singles.push((p.file, p.guard));
        } else {
            settled(core, p.file.ino, &mut done);
        }
    }
    for (file, mut guard) in singles {
        if let Err(e) = commit_locked(budget, core, file, &mut guard).await {
            first_err.get_or_insert(e);
        }
        if !guard.dirty || guard.gone {
            settled(core, file.ino, &mut done);
        }
    }
    for ino in done {
        core.maybe_release(ino);
    }
    core.committed.notify_waiters();
    first_err.map_or(Ok(()), Err)
}

/// `ino` has nothing left to upload: out of the dirty set. Called with the
/// file's lock held, which every write takes before it marks the file
/// dirty: a write that lands after this lock is released marks it again,
/// whereas one taken out of the set after the release could drop that
/// write's mark (and then the file's state, with the write, from memory).
fn settled<A>(core: &Core<A>, ino: Ino, done: &mut Vec<Ino>) {
    lock(&core.dirty).remove(&ino);
    done.push(ino);
}

/// Seals one file's new version and adds its operations to `req`.
async fn plan<'a, A: VaultApi + 'static>(
    core: &Arc<Core<A>>,
    file: &'a Arc<FileState>,
    mut guard: MutexGuard<'a, FileInner>,
    req: &mut BatchRequest,
) -> Result<Plan<'a>, (MutexGuard<'a, FileInner>, FsError)> {
    if let Err(e) = guard.flush_tail_unless_inline(&core.journal) {
        return Err((guard, e));
    }
    let io = core.io();
    let size = guard.size();
    let keep_base = guard.staged.is_empty()
        && guard.base.iter().map(|o| o.len).sum::<u64>() == size
        && guard.base_limit >= size;
    let mut objects = Vec::new();
    let mut entries = Vec::new();
    if keep_base {
        entries = guard.base.to_vec();
    } else if size > 0 {
        let plain = match guard.chunk(&io, 0).await {
            Ok(p) => p,
            Err(e) => return Err((guard, e)),
        };
        if plain.iter().any(|&b| b != 0) {
            match core.content.seal_object(guard.node, 0, &plain) {
                Ok((entry, ct)) => {
                    entries.push(entry.clone());
                    objects.push((entry, ct));
                }
                Err(e) => return Err((guard, e)),
            }
        }
    }
    let mut attrs = guard.attrs.clone();
    attrs.objects = entries;
    match build_ops(core, &guard, &attrs) {
        Ok((op, record, version)) => {
            for (entry, ct) in &objects {
                req.objects.push(InlineObject {
                    id: entry.id,
                    data: Base64(ct.to_vec()),
                    sha256: Base64(crate::api::tree::sha256(ct).to_vec()),
                });
            }
            let index = req.ops.len();
            req.ops.push(op);
            Ok(Plan {
                file,
                guard,
                attrs,
                op: index,
                record,
                version,
                objects,
                since: 0,
                link_gen: 0,
                landed: false,
                removal: None,
            })
        }
        Err(e) => Err((guard, e)),
    }
}

/// The operation that makes `inner`'s new version hold `attrs`: the
/// create of a file made here (with its objects), else the commit.
/// Answers it, with the record it sets and the version it makes.
fn build_ops<A: VaultApi + 'static>(
    core: &Core<A>,
    inner: &FileInner,
    attrs: &NodeAttributes,
) -> FsResult<(BatchOp, Base64, u64)> {
    attrs.validate()?;
    let id = inner.node;
    if inner.base_version == 0 {
        // A file made here: created at version 1 with its contents, one
        // operation (the server commits its objects to the new node).
        let mut create = local::create_request(core, inner, attrs)?;
        create.objects = attrs.objects.iter().map(|o| o.id).collect();
        let record = create.record.clone();
        return Ok((BatchOp::Create(create), record, 1));
    }
    let version = inner.base_version + 1;
    let record: Base64 = seal::seal(&core.keys, id, version, attrs)?.into();
    let commit = BatchOp::Commit(BatchCommit {
        id,
        commit: CommitRequest {
            expected_version: inner.base_version,
            record: record.clone(),
            objects: attrs.objects.iter().map(|o| o.id).collect(),
        },
    });
    Ok((commit, record, version))
}

/// Sends the batch and records each file's outcome.
async fn send<A: VaultApi + 'static>(
    core: &Arc<Core<A>>,
    budget: Budget,
    plans: &mut [Plan<'_>],
    req: BatchRequest,
) -> FsResult<()> {
    {
        let mut t = lock(&core.table);
        for p in plans.iter() {
            if p.guard.base_version == 0 {
                t.names.expect(p.guard.node, p.guard.parent);
            }
        }
    }
    for p in plans.iter_mut() {
        p.since = core.tick();
        p.link_gen = commit::link_gen(p.file);
    }
    let n = req.ops.len();
    let started = std::time::Instant::now();
    let res = core.batch(budget, &req).await;
    if res.is_ok() {
        let current = core.batch_files.load(std::sync::atomic::Ordering::Relaxed);
        let next = next_batch_files(current, plans.len(), started.elapsed());
        core.batch_files
            .store(next, std::sync::atomic::Ordering::Relaxed);
    }
    let res = res.map_err(FsError::from).and_then(|r| {
        if r.results.len() == n {
            Ok(r.results)
        } else {
            Err(FsError::Internal(
                "the server answered a batch with the wrong number of results".into(),
            ))
        }
    });
    let results = match res {
        Ok(r) => r,
        Err(e) => {
            {
                let mut t = lock(&core.table);
                for p in plans.iter() {
                    if p.guard.base_version == 0 {
                        t.names.unexpect(p.guard.node, p.guard.parent);
                    }
                }
            }
            reconcile(core, budget, plans).await;
            remove_journals(core, plans).await;
            keep_landed(core, plans);
            return Err(e);
        }
    };
    for p in plans.iter_mut() {
        if let Err(e) = apply(core, p, results.get(p.op)) {
            tracing::debug!(error = %e, "a batched commit did not land; committing the file alone");
        }
    }
    remove_journals(core, plans).await;
    keep_landed(core, plans);
    Ok(())
}

/// Removes the journal files of every file that landed, on the blocking
/// pool, while the batch still holds their locks: a batch of 300 files is
/// 300 renames, which held up the uploader's other batch when they ran on
/// its thread.
async fn remove_journals<A: VaultApi + 'static>(core: &Arc<Core<A>>, plans: &mut [Plan<'_>]) {
    let removals: Vec<JournalRemoval> = plans.iter_mut().filter_map(|p| p.removal.take()).collect();
    if removals.is_empty() {
        return;
    }
    let core = Arc::clone(core);
    let done = tokio::task::spawn_blocking(move || {
        for r in removals {
            if let Err(e) = r.run(&core.journal) {
                tracing::warn!(error = %e, "cannot remove a committed file from the journal");
            }
        }
    })
    .await;
    if let Err(e) = done {
        tracing::warn!(error = %e, "removing committed files from the journal failed");
    }
}

/// Hands the objects of the files that landed to the disk cache, all in
/// one go (written in the background).
fn keep_landed<A: VaultApi + 'static>(core: &Core<A>, plans: &mut [Plan<'_>]) {
    let objects = plans
        .iter_mut()
        .filter(|p| p.landed)
        .flat_map(|p| p.objects.drain(..))
        .map(|(entry, ct)| (entry.id, entry.len, ct))
        .collect();
    core.content.stored(objects);
}

/// Records the outcome of one file's operation.
fn apply<A: VaultApi + 'static>(
    core: &Core<A>,
    p: &mut Plan<'_>,
    outcome: Option<&BatchOutcome>,
) -> FsResult<()> {
    let id = p.guard.node;
    let answer = match outcome {
        Some(BatchOutcome::Ok(info)) if info.id == id => Ok(info.clone()),
        Some(BatchOutcome::Ok(_)) => {
            Err(FsError::Integrity(common::crypto::CryptoError::Malformed {
                what: "node",
                reason: "the server answered with another node",
            }))
        }
        Some(BatchOutcome::Err(f)) => Err(FsError::from(crate::api::ApiError::status(
            f.status,
            f.error.code,
            f.error.message.clone(),
        ))),
        None => Err(FsError::Internal("missing batch outcome".into())),
    };
    let last = match answer {
        Ok(info) => info,
        Err(e) => {
            if p.guard.base_version == 0 {
                lock(&core.table).names.unexpect(id, p.guard.parent);
            }
            return Err(e);
        }
    };
    landed(core, p, &last)
}

/// The file's new version is on the server as `info`.
fn landed<A: VaultApi + 'static>(
    core: &Core<A>,
    p: &mut Plan<'_>,
    info: &NodeInfo,
) -> FsResult<()> {
    let removal = commit::committed_but_journal(
        core,
        p.file,
        &mut p.guard,
        info,
        p.attrs.clone(),
        p.since,
        p.link_gen,
    )?;
    p.removal = Some(removal);
    p.landed = true;
    Ok(())
}

/// After a failed request: files whose new record is on the server anyway
/// (the answer was lost) count as committed.
async fn reconcile<A: VaultApi + 'static>(
    core: &Arc<Core<A>>,
    budget: Budget,
    plans: &mut [Plan<'_>],
) {
    let ids: Vec<NodeId> = plans.iter().map(|p| p.guard.node).collect();
    let req = NodeIds { ids };
    let Ok(infos) = core
        .remote
        .call(budget, |api, t| {
            let req = req.clone();
            async move { api.nodes(&t, &req).await }
        })
        .await
    else {
        return;
    };
    for p in plans.iter_mut() {
        let Some(info) = infos.iter().find(|i| i.id == p.guard.node) else {
            continue;
        };
        if info.version == p.version
            && info.record == p.record
            && let Err(e) = landed(core, p, info)
        {
            tracing::debug!(error = %e, "cannot record a batched commit");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_batch_size_follows_the_servers_pace() {
        // 100 files in 1 s: 2.5 ms each, 100 fit the target; stays.
        assert_eq!(next_batch_files(100, 100, Duration::from_secs(1) / 4), 100);
        // 500 files in 3.7 s (a loaded server): half way down to 34.
        assert_eq!(
            next_batch_files(500, 500, Duration::from_millis(3700)),
            (500_usize + 33).div_ceil(2)
        );
        // A fast server: up to the limit, half way at a time.
        assert_eq!(next_batch_files(100, 100, Duration::from_millis(10)), 550);
        assert_eq!(next_batch_files(1000, 100, Duration::from_millis(10)), 1000);
        // Very slow, or nothing measured: within bounds.
        assert_eq!(next_batch_files(16, 16, Duration::from_secs(60)), 16);
        assert_eq!(next_batch_files(16, 0, Duration::ZERO), 508);
    }
}
