//! Directories made here before the server has seen them.
//!
//! `mkdir` in a directory whose complete listing (see `names`) says the
//! name is free makes the directory here and returns: its id is chosen
//! here, it is kept in the journal (`<node>.dir`, one page sealed with the
//! local key: parent, name and the record of version 1 as the server will
//! get it) and in a queue, and its own listing is complete and empty, so
//! what is made in it is local too (see `local`). tar and rsync make a
//! directory every ten files or so, and each `mkdir` was a request they
//! waited for: 2-3 ms, most of it the database's commit.
//!
//! Invariant: the server has the queue's directories before it gets
//! anything else from this mount. Every call through `Remote` first sends
//! the queue (see [`super::remote::Before`]): one `POST /v1/batch` per up
//! to [`BATCH_MAX_OPS`] directories, in the order they were made, so a
//! parent comes before what is in it. So no request names a directory the
//! server does not know, and every answer (a listing, a lookup, the feed)
//! already includes them. The uploader sends the queue once it has rested
//! as long as a closed file does, so an empty directory gets there too.
//!
//! Outcomes are those of a file made here (`local`): the name taken
//! elsewhere meanwhile, the directory takes a conflicted-copy name; its
//! parent removed elsewhere, it goes to the vault's root; `exists` for its
//! own id, an earlier try landed. Any other refusal is logged and the
//! directory dropped: what was made in it then finds its parent gone and
//! goes to the root, so nothing written is lost. After a crash the next
//! mount reads the journal back and sends the queue, parents first,
//! before anything else.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use common::NodeId;
use common::api::tree::{
    BATCH_MAX_OPS, BatchOp, BatchOutcome, BatchRequest, CreateNodeRequest, EntrySpec, NodeInfo,
};
use common::api::{Base64, ErrorCode};
use common::codec::{Reader, Writer as _};
use common::crypto::attrs::{NodeAttributes, NodeKind};
use zeroize::Zeroizing;

use super::commit::{COMMIT_SETTLE, conflict_name};
use super::core::{Core, attr_of, lock};
use super::error::{FsError, FsResult};
use super::journal::PageFile;
use super::names::NameState;
use super::remote::{Before, Budget};
use super::seal;
use super::types::{Attr, Ino, ROOT_INO};
use crate::api::{ApiError, ApiResult, VaultApi};

/// A directory made here that the server does not have yet.
#[derive(Clone)]
pub(crate) struct PendingDir {
    pub id: NodeId,
    pub parent: NodeId,
    pub name: Zeroizing<Vec<u8>>,
    /// Its record at version 1, sealed for the server.
    pub record: Vec<u8>,
    /// When it was made (the uploader lets it rest); `None` after a
    /// restart.
    pub at: Option<Instant>,
}

impl std::fmt::Debug for PendingDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingDir")
            .field("id", &self.id)
            .field("parent", &self.parent)
            .finish_non_exhaustive()
    }
}

/// The waiting directories, oldest first (what `Core` holds).
pub(crate) type Queue = VecDeque<PendingDir>;

const MAGIC: &[u8; 4] = b"SVD1";

impl PendingDir {
    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::new());
        out.put_bytes(MAGIC);
        out.put_bytes(self.parent.as_bytes());
        out.put_u32(u32::try_from(self.name.len()).unwrap_or(u32::MAX));
        out.put_bytes(&self.name);
        out.put_u32(u32::try_from(self.record.len()).unwrap_or(u32::MAX));
        out.put_bytes(&self.record);
        out
    }

    fn decode(id: NodeId, bytes: &[u8]) -> FsResult<Self> {
        let bad = |_| FsError::Internal("a pending directory in the journal does not parse".into());
        let len = |r: &mut Reader<'_>| {
            r.u32()
                .ok()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| {
                    FsError::Internal("a pending directory in the journal does not parse".into())
                })
        };
        let mut r = Reader::new(bytes);
        if r.array::<4>().map_err(bad)? != *MAGIC {
            return Err(FsError::Internal(
                "unknown version of a pending directory in the journal".into(),
            ));
        }
        let parent = NodeId::from_bytes(r.array::<16>().map_err(bad)?);
        let n = len(&mut r)?;
        let name = Zeroizing::new(r.bytes(n).map_err(bad)?.to_vec());
        let n = len(&mut r)?;
        let record = r.bytes(n).map_err(bad)?.to_vec();
        r.finish().map_err(bad)?;
        Ok(Self {
            id,
            parent,
            name,
            record,
            at: None,
        })
    }

    /// The request that creates it.
    fn request<A>(&self, core: &Core<A>) -> FsResult<CreateNodeRequest> {
        Ok(CreateNodeRequest {
            id: self.id,
            kind: seal::wire_kind(NodeKind::Directory),
            record: Base64(self.record.clone()),
            entry: Some(EntrySpec {
                parent: self.parent,
                tag: seal::tag(&core.keys, self.parent, &self.name)?,
                encrypted_name: seal::encrypt(&core.keys, self.parent, self.id, &self.name)?.into(),
            }),
            objects: Vec::new(),
        })
    }
}

fn save<A>(core: &Core<A>, dir: &PendingDir) -> FsResult<()> {
    let sealed = common::crypto::local::seal_local(
        core.journal.key(),
        "dir",
        &[dir.id.as_bytes()],
        &dir.encode(),
    )?;
    core.journal.write_page(dir.id, PageFile::Dir, &sealed)
}

/// `mkdir` of `name` in `parent` without asking the server, when the
/// parent's complete listing says the name is free: `None` when it cannot
/// say (the caller asks the server).
pub(crate) fn make<A: VaultApi + 'static>(
    core: &Core<A>,
    parent: Ino,
    name: &[u8],
    attrs: &NodeAttributes,
) -> FsResult<Option<Attr>> {
    let dir = core.id_of(parent)?;
    let tag = seal::tag(&core.keys, dir, name)?;
    if lock(&core.table).name_state(dir, &tag) != NameState::Absent {
        return Ok(None);
    }
    let id = NodeId::random()?;
    let pending = PendingDir {
        id,
        parent: dir,
        name: Zeroizing::new(name.to_vec()),
        record: seal::seal(&core.keys, id, 1, attrs)?,
        at: Some(Instant::now()),
    };
    save(core, &pending)?;
    let info = NodeInfo {
        id,
        kind: seal::wire_kind(NodeKind::Directory),
        version: 1,
        record: Base64(pending.record.clone()),
        size: 0,
        nlink: 1,
        updated_at: attrs.mtime.secs,
    };
    let ino = {
        let mut t = lock(&core.table);
        // Taken meanwhile by a call that raced this one.
        if t.name_state(dir, &tag) != NameState::Absent {
            drop(t);
            core.journal.remove_page(id, PageFile::Dir)?;
            return Ok(None);
        }
        let since = t.tick();
        let ino = t.ino_for(id, parent, name);
        t.observe(ino, &info, attrs.clone(), since)?;
        t.remember(ino);
        t.names.added(dir, tag, id);
        t.names.made_empty(id);
        // Queued under the table's lock: the queue's order is the order
        // the names appeared in.
        lock(&core.dirs).push_back(pending);
        ino
    };
    core.upload_wake.notify_one();
    Ok(Some(attr_of(ino, attrs, info.nlink)))
}

/// Reads back the directories a previous run left, parents first; the
/// first call to the server sends them.
pub(crate) fn replay<A>(core: &Core<A>) -> FsResult<usize> {
    let mut found = HashMap::new();
    for (id, sealed) in core.journal.pages(PageFile::Dir)? {
        let dir =
            common::crypto::local::open_local(core.journal.key(), "dir", &[id.as_bytes()], &sealed)
                .map_err(FsError::from)
                .and_then(|plain| PendingDir::decode(id, &plain));
        match dir {
            Ok(dir) => {
                found.insert(id, dir);
            }
            Err(e) => {
                tracing::error!(node = %id, error = %e, "unreadable pending directory left in the journal");
            }
        }
    }
    let n = found.len();
    let mut queue = lock(&core.dirs);
    for dir in parents_first(found) {
        queue.push_back(dir);
    }
    Ok(n)
}

/// `dirs` ordered so that each comes after its parent when that is among
/// them (a cycle, which only a corrupt journal could hold, is broken
/// anywhere).
fn parents_first(mut dirs: HashMap<NodeId, PendingDir>) -> Vec<PendingDir> {
    let depth = |id: NodeId, dirs: &HashMap<NodeId, PendingDir>| {
        let mut d = 0usize;
        let mut at = id;
        while let Some(p) = dirs.get(&at) {
            d += 1;
            at = p.parent;
            if d > dirs.len() {
                break;
            }
        }
        d
    };
    let mut keyed: Vec<(usize, NodeId)> = dirs.keys().map(|&id| (depth(id, &dirs), id)).collect();
    keyed.sort();
    keyed
        .into_iter()
        .filter_map(|(_, id)| dirs.remove(&id))
        .collect()
}

/// Directories still to send (for `pending`).
pub(crate) fn waiting<A>(core: &Core<A>) -> usize {
    lock(&core.dirs).len()
}

/// When the oldest waiting directory will have rested (`None`: none
/// waits, or one with no time, which is due at once).
pub(crate) fn due_at<A>(core: &Core<A>) -> Option<Instant> {
    lock(&core.dirs)
        .front()
        .and_then(|d| d.at)
        .map(|t| t + COMMIT_SETTLE)
}

/// Whether the oldest waiting directory has rested (the uploader sends
/// then).
pub(crate) fn due<A>(core: &Core<A>, force: bool) -> bool {
    lock(&core.dirs)
        .front()
        .is_some_and(|d| force || d.at.is_none_or(|t| t.elapsed() >= COMMIT_SETTLE))
}

impl<A: VaultApi + 'static> Before for Core<A> {
    fn waiting(&self, nodes: Option<&[NodeId]>) -> bool {
        let queue = lock(&self.dirs);
        match nodes {
            None => !queue.is_empty(),
            Some(nodes) => queue
                .iter()
                .any(|d| nodes.contains(&d.id) || nodes.contains(&d.parent)),
        }
    }

    fn send(&self) -> Pin<Box<dyn Future<Output = ApiResult<()>> + Send + '_>> {
        Box::pin(send(self, Budget::Interactive))
    }
}

/// Sends every waiting directory, oldest first, and settles each outcome.
/// One sender at a time; a call arriving meanwhile waits for it, and finds
/// the queue empty.
pub(crate) async fn send<A: VaultApi + 'static>(core: &Core<A>, budget: Budget) -> ApiResult<()> {
    let _one = core.dirs_send.lock().await;
    loop {
        let waiting: Vec<PendingDir> = lock(&core.dirs)
            .iter()
            .take(BATCH_MAX_OPS)
            .cloned()
            .collect();
        if waiting.is_empty() {
            return Ok(());
        }
        let mut ops = Vec::with_capacity(waiting.len());
        let mut batch = Vec::with_capacity(waiting.len());
        for dir in waiting {
            match dir.request(core) {
                Ok(req) => {
                    ops.push(BatchOp::Create(req));
                    batch.push(dir);
                }
                Err(e) => {
                    tracing::error!(node = %dir.id, error = %e, "cannot prepare a new directory for the server; what was made in it goes to the vault's root");
                    forget(core, &dir);
                }
            }
        }
        {
            let mut t = lock(&core.table);
            for dir in &batch {
                t.names.expect(dir.id, dir.parent);
            }
        }
        let since = core.tick();
        let req = BatchRequest {
            objects: Vec::new(),
            ops,
        };
        let res = core
            .remote
            .call_direct(budget, |api, t| {
                let req = &req;
                async move { api.batch(&t, req).await }
            })
            .await;
        let results = match res {
            Ok(resp) if resp.results.len() == batch.len() => resp.results,
            Ok(_) => {
                unexpect(core, &batch);
                return Err(ApiError::InvalidResponse {
                    what: "a batch answered with another number of results".into(),
                    source: None,
                });
            }
            Err(e) => {
                // The answer may be lost after the server applied it: the
                // next try answers `exists` for what landed.
                unexpect(core, &batch);
                return Err(e);
            }
        };
        for (dir, outcome) in batch.iter().zip(results) {
            let outcome = match outcome {
                BatchOutcome::Ok(info) => Ok(info),
                BatchOutcome::Err(f) => {
                    Err(ApiError::status(f.status, f.error.code, f.error.message))
                }
            };
            settle(core, budget, dir, outcome, since).await?;
        }
    }
}

fn unexpect<A>(core: &Core<A>, batch: &[PendingDir]) {
    let mut t = lock(&core.table);
    for dir in batch {
        t.names.unexpect(dir.id, dir.parent);
    }
}

/// Records what the server answered for `dir`: done (it leaves the queue
/// and the journal), or placed elsewhere to be sent again.
async fn settle<A: VaultApi + 'static>(
    core: &Core<A>,
    budget: Budget,
    dir: &PendingDir,
    outcome: ApiResult<NodeInfo>,
    since: u64,
) -> ApiResult<()> {
    let e = match outcome {
        Ok(info) => {
            landed(core, dir, &info, since);
            return Ok(());
        }
        Err(e) => e,
    };
    lock(&core.table).names.unexpect(dir.id, dir.parent);
    match e.code() {
        Some(ErrorCode::Exists) => {
            let id = dir.id;
            match core
                .remote
                .call_direct(budget, |api, t| async move { api.node(&t, id).await })
                .await
            {
                // The id is ours alone: an earlier try landed.
                Ok(info) => landed(core, dir, &info, since),
                Err(e) if e.code() == Some(ErrorCode::NotFound) => {
                    tracing::warn!(node = %dir.id, "a new directory's name was taken elsewhere meanwhile; keeping it as a conflicted copy");
                    let name = conflict_name(&dir.name);
                    place(core, dir, dir.parent, name);
                }
                Err(e) => return Err(e),
            }
        }
        Some(ErrorCode::NotFound | ErrorCode::NotADirectory) if dir.parent != NodeId::ROOT => {
            tracing::warn!(node = %dir.id, "the parent of a new directory was removed elsewhere; keeping the directory in the vault's root");
            place(core, dir, NodeId::ROOT, dir.name.to_vec());
        }
        Some(_) => {
            tracing::error!(node = %dir.id, error = %e, "the server refused a new directory; what was made in it goes to the vault's root");
            forget(core, dir);
        }
        None => return Err(e),
    }
    Ok(())
}

/// The server has `dir`: it leaves the queue and the journal.
fn landed<A>(core: &Core<A>, dir: &PendingDir, info: &NodeInfo, since: u64) {
    let ino = lock(&core.table).ino_of(dir.id);
    if let Some(ino) = ino
        && let Ok(attrs) = seal::open(&core.keys, info)
    {
        let _ = lock(&core.table).observe(ino, info, attrs, since);
    }
    forget(core, dir);
}

/// Takes `dir` off the queue and out of the journal.
fn forget<A>(core: &Core<A>, dir: &PendingDir) {
    lock(&core.dirs).retain(|d| d.id != dir.id);
    if let Err(e) = core.journal.remove_page(dir.id, PageFile::Dir) {
        tracing::warn!(error = %e, "cannot remove a sent directory from the journal");
    }
}

/// Moves `dir`, still waiting, to `name` in `parent` (it is sent again
/// with the rest of the queue).
fn place<A>(core: &Core<A>, dir: &PendingDir, parent: NodeId, name: Vec<u8>) {
    let moved = PendingDir {
        parent,
        name: Zeroizing::new(name),
        ..dir.clone()
    };
    {
        let mut t = lock(&core.table);
        if let Ok(old) = seal::tag(&core.keys, dir.parent, &dir.name) {
            t.names.removed(dir.parent, &old);
        }
        // Its listing missed what took the name.
        t.names.drop_dir(parent);
        if t.ino_of(dir.id).is_some() {
            let parent_ino = if parent == NodeId::ROOT {
                Some(ROOT_INO)
            } else {
                t.ino_of(parent)
            };
            if let Some(p) = parent_ino {
                t.ino_for(dir.id, p, &moved.name);
            }
        }
    }
    if let Err(e) = save(core, &moved) {
        tracing::warn!(error = %e, "cannot update a new directory in the journal");
    }
    let mut queue = lock(&core.dirs);
    if let Some(d) = queue.iter_mut().find(|d| d.id == dir.id) {
        *d = moved;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn dir(id: u8, parent: u8) -> PendingDir {
        PendingDir {
            id: NodeId::from_bytes([id; 16]),
            parent: NodeId::from_bytes([parent; 16]),
            name: Zeroizing::new(format!("d{id}").into_bytes()),
            record: vec![id; 40],
            at: None,
        }
    }

    #[test]
    fn a_pending_directory_reads_back_as_written() {
        let d = dir(3, 1);
        let back = PendingDir::decode(d.id, &d.encode()).unwrap();
        assert_eq!(
            (
                back.id,
                back.parent,
                back.name.to_vec(),
                back.record.clone()
            ),
            (d.id, d.parent, d.name.to_vec(), d.record.clone())
        );
        let mut cut = d.encode().to_vec();
        cut.pop();
        assert!(PendingDir::decode(d.id, &cut).is_err());
        cut[0] ^= 1;
        assert!(PendingDir::decode(d.id, &cut).is_err());
    }

    #[test]
    fn replayed_directories_come_parents_first() {
        // 4 in 3 in 2 in the root (1); 5 in the root; 6 and 7 a cycle.
        let all = [
            dir(4, 3),
            dir(2, 1),
            dir(6, 7),
            dir(5, 1),
            dir(3, 2),
            dir(7, 6),
        ];
        let order: Vec<u8> = parents_first(all.into_iter().map(|d| (d.id, d)).collect())
            .into_iter()
            .map(|d| d.id.as_bytes()[0])
            .collect();
        let at = |n: u8| order.iter().position(|&x| x == n).unwrap();
        assert_eq!(order.len(), 6);
        assert!(at(2) < at(3) && at(3) < at(4));
    }
}
