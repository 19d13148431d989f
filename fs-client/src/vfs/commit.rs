//! Committing a file's pending changes to the server, in the background
//! or for `fsync`, and replaying the journal at start.
//!
//! A commit runs under the file's lock: every chunk that changed becomes a
//! new object (uploaded in parallel, bounded), unchanged chunks keep their
//! objects, and one `commit` call swaps the object list and the record
//! atomically, conditional on the version the changes were based on. Only
//! then is the journal entry removed.
//!
//! When the file changed on the server meanwhile (409): if only its record
//! changed, the commit is retried on the newer version (ours wins); if its
//! contents changed, ours is kept as a conflict copy next to it and the
//! file follows the server, so neither side is silently dropped.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::NodeId;
use common::api::ErrorCode;
use common::api::tree::{CommitRequest, CreateNodeRequest, EntrySpec, Kind, NodeInfo};
use common::crypto::Plaintext;
use common::crypto::attrs::{NodeAttributes, ObjectEntry, Timestamp};
use tokio::task::JoinSet;

use super::batch;
use super::core::{Core, lock};
use super::error::{FsError, FsResult};
use super::file::{CHUNK, FileInner, FileState, JournalRemoval, SEGS_PER_CHUNK};
use super::journal::Stage;
use super::local;
use super::remote::Budget;
use super::seal;
use super::types::{Ino, ROOT_INO};
use crate::api::VaultApi;
use crate::cache::buffers::POOL;

/// Uploads new objects for the chunks of `inner` that changed and returns
/// the complete object list of the new version.
async fn build_objects<A: VaultApi + 'static>(
    budget: Budget,
    core: &Arc<Core<A>>,
    inner: &FileInner,
    target: NodeId,
    rebuild_all: bool,
) -> FsResult<Vec<ObjectEntry>> {
    let io = core.io();
    let size = inner.size();
    let chunks = size.div_ceil(CHUNK);
    let mut keep = Vec::new();
    let mut uploads = JoinSet::new();
    for k in 0..chunks {
        let start = k * CHUNK;
        let end = (start + CHUNK).min(size);
        let staged = inner
            .staged
            .range(k * SEGS_PER_CHUNK..(k + 1) * SEGS_PER_CHUNK)
            .next()
            .is_some();
        if !rebuild_all && !staged {
            if let Some(obj) = inner.uploaded.get(&k)
                && obj.offset == start
                && obj.len == end - start
            {
                keep.push(obj.clone());
                continue;
            }
            if !inner.uploaded.contains_key(&k) && end <= inner.base_limit {
                let first = inner.base.partition_point(|o| o.offset + o.len <= start);
                let overlapping: Vec<&ObjectEntry> = inner
                    .base
                    .iter()
                    .skip(first)
                    .take_while(|o| o.offset < end)
                    .collect();
                if overlapping
                    .iter()
                    .all(|o| o.offset >= start && o.offset + o.len <= end)
                {
                    keep.extend(overlapping.into_iter().cloned());
                    continue;
                }
            }
        }
        let permit = core.content.upload_permit().await?;
        let plain = inner.chunk(&io, k).await?;
        if plain.iter().all(|&b| b == 0) {
            continue; // a hole
        }
        let content = core.content.clone();
        uploads.spawn(async move {
            content
                .upload_with(budget, permit, target, start, Arc::new(plain))
                .await
        });
    }
    let mut objects = keep;
    while let Some(res) = uploads.join_next().await {
        objects.push(res.map_err(|e| FsError::Internal(e.to_string()))??);
    }
    objects.sort_by_key(|o| o.offset);
    Ok(objects)
}

/// Commits `inner`'s changes (the caller holds the file's lock).
pub(crate) async fn commit_locked<A: VaultApi + 'static>(
    budget: Budget,
    core: &Arc<Core<A>>,
    file: &FileState,
    inner: &mut FileInner,
) -> FsResult<()> {
    if !inner.dirty || inner.gone {
        return Ok(());
    }
    inner.flush_tail_unless_inline(&core.journal)?;
    for _ in 0..4 {
        if inner.base_version == 0 {
            local::create_remote(budget, core, file, inner).await?;
            if !inner.dirty {
                return Ok(());
            }
        }
        let objects = match build_objects(budget, core, inner, inner.node, false).await {
            Ok(objects) => objects,
            // A base object we re-read is gone: so is the file, when it was
            // deleted before its changes got here.
            Err(FsError::NotFound) if node_deleted(core, file, inner.node).await => {
                forget_deleted(core, inner)?;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let mut attrs = inner.attrs.clone();
        attrs.objects = objects;
        attrs.validate()?;
        let version = inner.base_version + 1;
        let id = inner.node;
        let req = CommitRequest {
            expected_version: inner.base_version,
            record: seal::seal(&core.keys, id, version, &attrs)?.into(),
            objects: attrs.objects.iter().map(|o| o.id).collect(),
        };
        let since = core.tick();
        let link_gen = link_gen(file);
        let res = core
            .remote
            .call(budget, |api, t| {
                let req = req.clone();
                async move { api.commit(&t, id, &req).await }
            })
            .await;
        match res {
            Ok(info) => {
                return committed(core, file, inner, &info, attrs, since, link_gen);
            }
            Err(e) if e.code() == Some(ErrorCode::NotFound) => {
                forget_deleted(core, inner)?;
                return Ok(());
            }
            Err(e) if e.code() == Some(ErrorCode::Conflict) => {
                if !resolve_conflict(budget, core, file, inner).await? {
                    return Ok(());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(FsError::Internal(
        "the file kept changing on the server".into(),
    ))
}

/// Records a commit that landed: `info` is the new version, `attrs` what
/// it holds, `since` the tick and `link_gen` the link generation noted
/// before the request was sent.
pub(crate) fn committed<A>(
    core: &Core<A>,
    file: &FileState,
    inner: &mut FileInner,
    info: &NodeInfo,
    attrs: NodeAttributes,
    since: u64,
    link_gen: u64,
) -> FsResult<()> {
    committed_but_journal(core, file, inner, info, attrs, since, link_gen)?.run(&core.journal)
}

/// [`committed`], except for the journal: answers the removal of the
/// file's journal files, for the caller to run before it lets go of the
/// file's lock (a batch runs those of all its files on the blocking pool).
pub(crate) fn committed_but_journal<A>(
    core: &Core<A>,
    file: &FileState,
    inner: &mut FileInner,
    info: &NodeInfo,
    attrs: NodeAttributes,
    since: u64,
    link_gen: u64,
) -> FsResult<JournalRemoval> {
    {
        let mut t = lock(&core.table);
        t.observe(file.ino, info, attrs.clone(), since)?;
        // The kernel's pages came from our own writes: still right for the
        // version we just made.
        if let Ok(slot) = t.slot_mut(file.ino)
            && slot.kernel_version == inner.base_version
        {
            slot.kernel_version = info.version;
        }
    }
    inner.rebase_clean(info.version, attrs);
    let removal = inner.forget_pending();
    file.local
        .store(false, std::sync::atomic::Ordering::Release);
    file.publish(inner);
    let mut v = file.view.lock().unwrap_or_else(|p| p.into_inner());
    // A link or unlink answered while this commit was in flight knows
    // better than the commit's answer.
    if v.link_gen == link_gen {
        v.nlink = info.nlink;
    }
    Ok(removal)
}

/// The link generation of `file` (note it before a commit is sent).
pub(crate) fn link_gen(file: &FileState) -> u64 {
    file.view.lock().unwrap_or_else(|p| p.into_inner()).link_gen
}

/// The file was deleted (here or elsewhere): nothing left to commit to.
/// Open descriptors still read and write what they had: the stage file
/// stays open after its name is gone.
pub(crate) fn forget_deleted<A>(core: &Core<A>, inner: &mut FileInner) -> FsResult<()> {
    inner.gone = true;
    inner.dirty = false;
    inner.forget_saved();
    core.journal.remove(inner.node, inner.epoch, false)?;
    Ok(())
}

/// True when the server says `node` no longer exists.
async fn node_deleted<A: VaultApi + 'static>(
    core: &Arc<Core<A>>,
    file: &FileState,
    node: NodeId,
) -> bool {
    matches!(core.fetch(file.ino, node).await, Err(FsError::NotFound))
}

/// Handles a 409: returns true to retry the commit on the newer version,
/// false when our changes went to a conflict copy.
async fn resolve_conflict<A: VaultApi + 'static>(
    budget: Budget,
    core: &Arc<Core<A>>,
    file: &FileState,
    inner: &mut FileInner,
) -> FsResult<bool> {
    let (info, current) = core.fetch(file.ino, inner.node).await?;
    let same_contents = current.objects.len() == inner.base.len()
        && current
            .objects
            .iter()
            .zip(inner.base.iter())
            .all(|(a, b)| a.id == b.id);
    if same_contents {
        inner.rebase_attrs(info.version, current);
        return Ok(true);
    }
    let copy_name = conflict_name(&inner.name);
    tracing::warn!(node = %inner.node, "the file changed elsewhere while it had changes here; keeping this side as a conflict copy");
    save_copy(budget, core, inner, inner.parent, &copy_name).await?;
    inner.clear_pending(&core.journal)?;
    inner.rebase_clean(info.version, current);
    file.publish(inner);
    Ok(false)
}

/// Writes `inner`'s contents and attributes as a new file `name` in
/// `parent` (the root when `parent` is gone).
async fn save_copy<A: VaultApi + 'static>(
    budget: Budget,
    core: &Arc<Core<A>>,
    inner: &FileInner,
    parent: NodeId,
    name: &[u8],
) -> FsResult<()> {
    let id = NodeId::random()?;
    let mut attrs = inner.attrs.clone();
    attrs.objects.clear();
    let size = attrs.size;
    attrs.size = 0;
    let mut parent = parent;
    for attempt in 0..2 {
        let entry = EntrySpec {
            parent,
            tag: seal::tag(&core.keys, parent, name)?,
            encrypted_name: seal::encrypt(&core.keys, parent, id, name)?.into(),
        };
        let req = CreateNodeRequest {
            id,
            kind: Kind::File,
            record: seal::seal(&core.keys, id, 1, &attrs)?.into(),
            entry: Some(entry),
            objects: Vec::new(),
        };
        match core.create_node(budget, &req).await {
            Ok(_) => break,
            Err(e) if e.code() == Some(ErrorCode::NotFound) && attempt == 0 => {
                parent = NodeId::ROOT;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let objects = build_objects(budget, core, inner, id, true).await?;
    attrs.size = size;
    attrs.objects = objects;
    let req = CommitRequest {
        expected_version: 1,
        record: seal::seal(&core.keys, id, 2, &attrs)?.into(),
        objects: attrs.objects.iter().map(|o| o.id).collect(),
    };
    core.remote
        .call(budget, |api, t| {
            let req = req.clone();
            async move { api.commit(&t, id, &req).await }
        })
        .await?;
    Ok(())
}

/// `name (conflicted copy HOST YYYY-MM-DD HHMMSS).ext`, within 255 bytes.
pub(crate) fn conflict_name(name: &[u8]) -> Vec<u8> {
    let (stem, ext) = match name.iter().rposition(|&b| b == b'.') {
        Some(i) if i > 0 => name.split_at(i),
        _ => (name, &b""[..]),
    };
    let host = crate::account::device_label()
        .map(|l| l.trim_start_matches("vault CLI on ").to_owned())
        .unwrap_or_else(|| "this machine".to_owned());
    let now = Timestamp::now();
    let suffix = format!(" (conflicted copy {host} {})", civil(now.secs));
    let room = 255usize.saturating_sub(suffix.len() + ext.len());
    let mut out = stem.get(..stem.len().min(room)).unwrap_or(stem).to_vec();
    out.extend_from_slice(suffix.as_bytes());
    out.extend_from_slice(ext);
    out.truncate(255);
    out
}

/// `YYYY-MM-DD HHMMSS` (UTC) of Unix seconds.
fn civil(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Commits `ino` if it has changes (for the uploader, `fsync` and
/// unmount), updating the dirty set.
pub(crate) async fn commit_ino<A: VaultApi + 'static>(
    budget: Budget,
    core: &Arc<Core<A>>,
    ino: Ino,
) -> FsResult<()> {
    let Some(file) = core.file(ino) else {
        core.forget_stateless(ino);
        return Ok(());
    };
    let mut inner = file.inner.lock().await;
    let res = commit_locked(budget, core, &file, &mut inner).await;
    let done = !inner.dirty || inner.gone;
    if done {
        lock(&core.dirty).remove(&ino);
    }
    drop(inner);
    if done {
        core.maybe_release(ino);
    }
    core.committed.notify_waiters();
    res
}

/// Early-uploaded chunks whose stage slots wait for one durable manifest
/// before they are punched: one fsync per this many chunks (64 MiB), not
/// one per chunk, and the journal holds at most this much already-uploaded
/// data.
const PUNCH_BATCH: usize = 16;

/// Uploads chunk `k` of `file` before the file is closed (a long write
/// streams to the server instead of piling up in the journal). The caller
/// queued `k` in `uploading` ([`FileInner::take_ready`]).
///
/// The file's lock is held only to check the chunk and to record the
/// result: the chunk's slots are read and decrypted, encrypted again and
/// uploaded without it, so writes carry on meanwhile. That is safe because
/// a ready chunk lives wholly in the stage file, and the result is kept
/// only if no segment of the chunk changed in between (its write sequence
/// is the same); a slot rewritten while it was read fails authentication
/// or is caught by that check.
pub(crate) async fn upload_early<A: VaultApi + 'static>(
    core: Arc<Core<A>>,
    file: Arc<FileState>,
    k: u64,
) {
    let Ok(permit) = core.content.early_upload_permit().await else {
        lock_and_unqueue(&file, k).await;
        return;
    };
    let (stage, seq, kept) = {
        let mut inner = file.inner.lock().await;
        match (inner.stage.clone(), inner.chunk_ready(k) && !inner.gone) {
            (stage, true) => match inner.for_upload(&core.journal, k) {
                Ok(kept) => {
                    let stage = stage.or_else(|| inner.stage.clone());
                    (stage, inner.chunk_seq(k), kept)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot update the journal");
                    inner.uploading.remove(&k);
                    return;
                }
            },
            _ => {
                inner.uploading.remove(&k);
                return;
            }
        }
    };
    let read = match (kept, &stage) {
        (Some(kept), _) => Ok(kept),
        (None, Some(stage)) => read_staged_chunk(stage, k).map(Arc::new),
        (None, None) => Err(FsError::Internal("a ready chunk without a stage".into())),
    };
    let plain = match read {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(error = %e, "early upload: the chunk changed while it was read");
            lock_and_unqueue(&file, k).await;
            return;
        }
    };
    drop(stage);
    let res = core
        .content
        .upload_with(Budget::Uploader, permit, file.node, k * CHUNK, plain)
        .await;
    let mut inner = file.inner.lock().await;
    inner.uploading.remove(&k);
    let segs = k * SEGS_PER_CHUNK..(k + 1) * SEGS_PER_CHUNK;
    let intact = inner.chunk_ready(k) && inner.chunk_seq(k) == seq;
    match res {
        Ok(obj) if intact && !inner.gone => {
            inner.uploaded.insert(k, obj);
            for s in segs {
                inner.staged.remove(&s);
            }
            // Held in memory only: nothing of it is on disk to free.
            if let Some((buf, _slot)) = inner.kept.remove(&k) {
                POOL.recycle_shared(buf);
                return;
            }
            inner.unpunched.insert(k);
            // A batch, or the last upload in flight (the writer paused or
            // stopped): their slots go.
            let batch = inner.unpunched.len() >= PUNCH_BATCH || inner.uploading.is_empty();
            if batch && !inner.punching {
                inner.punching = true;
                drop(inner);
                core.background
                    .spawn(punch_uploaded(core.clone(), file.clone()));
            }
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "early upload failed; the commit will retry"),
    }
}

async fn lock_and_unqueue(file: &FileState, k: u64) {
    file.inner.lock().await.uploading.remove(&k);
}

/// Plaintext of ready chunk `k`, read from its stage slots.
fn read_staged_chunk(stage: &Stage, k: u64) -> FsResult<Plaintext> {
    let mut out = POOL.plaintext(usize::try_from(CHUNK).unwrap_or(0));
    for seg in k * SEGS_PER_CHUNK..(k + 1) * SEGS_PER_CHUNK {
        stage.read_into(seg, &mut out)?;
    }
    Ok(out)
}

/// Makes a manifest naming the early-uploaded objects durable, then frees
/// their chunks' slots in the stage file (never the other way round: a
/// crash in between must find either the slots or the objects).
///
/// The long parts run *without* the file's lock, so that a sequential
/// writer waiting on it does not stall (it did, ~250 ms per 64 MiB): the
/// stage is flushed to disk first, so the durable save under the lock
/// finds little left to flush, and the punch (ext4 writes dirty pages back
/// and frees the pages and extents: ~45 ms per 64 MiB) runs after the lock
/// is released, with [`Stage::begin_punch`] making a write into those
/// slots (a chunk rewritten just now) wait for it.
async fn punch_uploaded<A: VaultApi + 'static>(core: Arc<Core<A>>, file: Arc<FileState>) {
    let stage = file.inner.lock().await.stage.clone();
    if let Some(stage) = stage {
        report_blocking(tokio::task::spawn_blocking(move || stage.sync()).await);
    }
    let stage = {
        let mut inner = file.inner.lock().await;
        inner.punching = false;
        if inner.unpunched.is_empty() || inner.gone {
            return;
        }
        if let Err(e) = inner.save(&core.journal, true) {
            tracing::warn!(error = %e, "cannot update the journal");
            return;
        }
        let chunks = std::mem::take(&mut inner.unpunched);
        let Some(stage) = inner.stage.clone() else {
            return;
        };
        stage.begin_punch(
            runs(&chunks)
                .into_iter()
                .map(|r| r.start * SEGS_PER_CHUNK..r.end * SEGS_PER_CHUNK)
                .collect(),
        );
        stage
    };
    report_blocking(
        tokio::task::spawn_blocking(move || {
            stage.finish_punch();
            Ok(())
        })
        .await,
    );
}

/// Logs the failure of a blocking journal task (best effort work).
fn report_blocking(res: Result<FsResult<()>, tokio::task::JoinError>) {
    match res {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "cannot flush the journal"),
        Err(e) => tracing::warn!(error = %e, "journal task failed"),
    }
}

/// The runs of consecutive numbers in `set`, as ranges (one punch each).
fn runs(set: &BTreeSet<u64>) -> Vec<std::ops::Range<u64>> {
    let mut out: Vec<std::ops::Range<u64>> = Vec::new();
    for &k in set {
        match out.last_mut() {
            Some(r) if r.end == k => r.end = k + 1,
            _ => out.push(k..k + 1),
        }
    }
    out
}

/// The background uploader: commits dirty files, retrying transient
/// failures with back-off, until the mount stops.
pub(crate) async fn uploader<A: VaultApi + 'static>(core: Arc<Core<A>>) {
    let mut backoff = Duration::from_millis(500);
    loop {
        if core.remote.offline() {
            // Do not hold files' locks on calls bound to fail; try again
            // when the grace period has run out.
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
            if core.stopping.load(std::sync::atomic::Ordering::Acquire) {
                return;
            }
            continue;
        }
        let stopping = core.stopping.load(std::sync::atomic::Ordering::Acquire);
        let mut failed = false;
        // When the first of what rests now is due (see `Rest`).
        let mut rest = Rest::default();
        // Directories made here, once they rested (their files' commits
        // would send them anyway, first).
        if super::dirs::due(&core, stopping) {
            if let Err(e) = super::dirs::send(&core, Budget::Uploader).await {
                failed = true;
                tracing::warn!(error = %e, "sending new directories failed; will retry");
            }
        } else if super::dirs::waiting(&core) > 0 {
            rest.until(super::dirs::due_at(&core));
        }
        let dirty: Vec<Ino> = lock(&core.dirty).keys().copied().collect();
        let mut set = JoinSet::new();
        let mut small = Vec::new();
        for ino in dirty {
            // Files being written keep their handles' data coming; commit
            // when the last writer closed (flush queues them again). A file
            // busy right now is left for the next round.
            if let Some(f) = core.file(ino) {
                let Ok(inner) = f.inner.try_lock() else {
                    continue;
                };
                if f.handles.load(std::sync::atomic::Ordering::Acquire) > 0
                    && !inner.gone
                    && inner.dirty
                    && !inner_closed(&inner)
                {
                    continue;
                }
                // Closed a moment ago: let it rest, the program may not be
                // done with it (times, mode, rename).
                if inner.dirty
                    && !inner.gone
                    && !core.stopping.load(std::sync::atomic::Ordering::Acquire)
                    && inner.closed_at.is_some_and(|t| t.elapsed() < COMMIT_SETTLE)
                {
                    rest.until(inner.closed_at.map(|t| t + COMMIT_SETTLE));
                    continue;
                }
                if inner.dirty && !inner.gone && batch::batchable(&inner) {
                    drop(inner);
                    small.push(f);
                    continue;
                }
            }
            let c = core.clone();
            set.spawn(async move { commit_ino(Budget::Uploader, &c, ino).await });
            while set.len() >= core_parallel(&core) {
                if let Some(Ok(Err(e))) = set.join_next().await {
                    failed = true;
                    tracing::warn!(error = %e, "upload failed; will retry");
                }
            }
        }
        if !small.is_empty() {
            let c = core.clone();
            set.spawn(async move { batch::commit_files(&c, Budget::Uploader, small).await });
        }
        while let Some(res) = set.join_next().await {
            if let Ok(Err(e)) = res {
                failed = true;
                tracing::warn!(error = %e, "upload failed; will retry");
            }
        }
        let stopping = core.stopping.load(std::sync::atomic::Ordering::Acquire);
        match super::records::commit(&core, Budget::Uploader, None, stopping).await {
            Ok(true) => rest.until(None),
            Ok(false) => {}
            Err(e) => {
                failed = true;
                tracing::warn!(error = %e, "sending directory changes failed; will retry");
            }
        }
        if stopping {
            return;
        }
        if failed {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
        } else if let Some(wake) = rest.wake() {
            backoff = Duration::from_millis(500);
            tokio::time::sleep_until(wake.into()).await;
        } else {
            backoff = Duration::from_millis(500);
            let wait = core.upload_wake.notified();
            tokio::select! {
                () = wait => {
                    // Gather what comes with it: files closed together
                    // commit together. (Each file rests COMMIT_SETTLE after
                    // its close anyway: the next round sees to that.)
                    tokio::time::sleep(ROUND_GAP).await;
                }
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
            }
        }
    }
}

/// How long the uploader waits after a file is closed before it commits
/// (`fsync` and unmount do not wait): what a program does right after
/// close (tar and rsync set times, modes and owners) then joins the
/// pending commit instead of costing a request of its own.
pub(crate) const COMMIT_SETTLE: Duration = Duration::from_millis(200);

/// The shortest pause between two rounds of the uploader: what became due
/// meanwhile goes in one round (and so in full batches) rather than in a
/// round each.
const ROUND_GAP: Duration = Duration::from_millis(50);

/// What is left resting after a round of the uploader, and so when the
/// next round is due: when the first of it has rested, but not sooner
/// than [`ROUND_GAP`] from now. Waking then, not a whole
/// [`COMMIT_SETTLE`] after the round, keeps a stream of new files (cp -r,
/// tar) moving: the files closed during a round are due, or nearly, when
/// it ends, and each full pause was time the server sat idle.
#[derive(Debug, Default)]
struct Rest {
    /// The earliest moment one of them is due, of those whose moment is
    /// known.
    first: Option<std::time::Instant>,
    /// Something rests whose due moment is unknown.
    unknown: bool,
}

impl Rest {
    /// Something rests until `due` (unknown: `None`).
    fn until(&mut self, due: Option<std::time::Instant>) {
        match due {
            Some(t) => self.first = Some(self.first.map_or(t, |f| f.min(t))),
            None => self.unknown = true,
        }
    }

    /// When to start the next round, if anything rests.
    fn wake(&self) -> Option<std::time::Instant> {
        let now = std::time::Instant::now();
        let latest = now + COMMIT_SETTLE;
        let due = match (self.unknown, self.first) {
            (true, _) => latest,
            (false, Some(first)) => first.min(latest),
            (false, None) => return None,
        };
        Some(due.max(now + ROUND_GAP))
    }
}

fn core_parallel<A>(core: &Core<A>) -> usize {
    core.config.upload_parallelism.clamp(1, 8)
}

/// True when the file's writers have all flushed (close) since its last
/// change: `flush` sets `closed_seq` to the write sequence it saw.
fn inner_closed(inner: &FileInner) -> bool {
    inner.closed_seq >= inner.seq
}

/// Rebuilds pending files from the journal left by an earlier run and
/// queues their upload.
pub(crate) async fn replay<A: VaultApi + 'static>(core: &Arc<Core<A>>) -> FsResult<usize> {
    let manifests = core.journal.manifests()?;
    let n = manifests.len();
    for m in manifests {
        let node = m.node;
        // A file the server has not seen is known here by its manifest's
        // name (kept current by every local rename). One the server has is
        // not: a rename of it changed only the server's entry, and a new
        // file may hold its old name by now.
        let ino = if m.base_version == 0 {
            lock(&core.table).ino_for(node, ROOT_INO, &m.name)
        } else {
            lock(&core.table).ino_unnamed(node)
        };
        let (base, base_attrs) = match core.fetch(ino, node).await {
            Ok((info, mut attrs)) if info.version == m.base_version => {
                (std::mem::take(&mut attrs.objects), Some(attrs))
            }
            // Changed meanwhile: the commit merges or makes a conflict copy.
            Ok(_) | Err(FsError::NotFound) => (Vec::new(), None),
            Err(e) => return Err(e),
        };
        let inner = FileInner::from_manifest(m, &core.journal, base, base_attrs)?;
        let file = FileState::new(node, ino, inner, 1);
        lock(&core.files).insert(ino, file);
        core.mark_dirty(ino, 0);
    }
    if n > 0 {
        tracing::info!(
            files = n,
            "replaying the journal: uploading changes left by the last run"
        );
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn nothing_resting_means_no_timed_wake() {
        assert_eq!(Rest::default().wake(), None);
    }

    #[test]
    fn the_next_round_starts_when_the_first_resting_file_is_due() {
        let now = Instant::now();
        let mut rest = Rest::default();
        rest.until(Some(now + Duration::from_millis(150)));
        rest.until(Some(now + Duration::from_millis(120)));
        rest.until(Some(now + Duration::from_millis(190)));
        let wake = rest.wake().unwrap();
        assert!(wake >= now + Duration::from_millis(120));
        assert!(
            wake < now + Duration::from_millis(150),
            "waited for a later file"
        );
    }

    #[test]
    fn rounds_are_at_least_a_gap_apart_and_at_most_a_settle() {
        // Already due (closed long ago, or a directory that rested): not
        // at once, but after the gap, so what comes meanwhile joins it.
        let mut rest = Rest::default();
        let before = Instant::now();
        rest.until(Some(
            before.checked_sub(Duration::from_secs(1)).unwrap_or(before),
        ));
        let wake = rest.wake().unwrap();
        assert!(wake >= before + ROUND_GAP);
        assert!(wake < before + COMMIT_SETTLE);
        // Never later than a whole settle from now.
        let mut rest = Rest::default();
        rest.until(Some(Instant::now() + Duration::from_secs(60)));
        assert!(rest.wake().unwrap() <= Instant::now() + COMMIT_SETTLE);
    }

    #[test]
    fn something_resting_for_an_unknown_time_waits_a_whole_settle() {
        let mut rest = Rest::default();
        let before = Instant::now();
        rest.until(Some(before + ROUND_GAP));
        rest.until(None);
        let wake = rest.wake().unwrap();
        assert!(wake >= before + COMMIT_SETTLE);
    }
}
