//! Mode, owner and time changes of directories and symlinks, made here at
//! once and sent to the server later, many in one request.
//!
//! tar and rsync set the mode and times of every directory they make, and
//! each change was a `PUT /v1/nodes/{id}/record` the program waited for
//! (2 ms each, thousands per tree). Now `setattr` of a directory or symlink
//! records the change ([`RecordChange`]: the fields set, with their
//! values) in the inode table and in the journal (`<node>.record`, sealed
//! with the local key, bound to the node), and returns. The uploader sends
//! the changes that have rested [`super::commit::COMMIT_SETTLE`] in
//! `POST /v1/batch` requests (a record operation per node), as it commits
//! small files; `fsyncdir`, `sync_all` and unmount send at once.
//!
//! Invariants:
//! - what this mount shows for such a node is the server's last verified
//!   record with the change applied ([`RecordChange::applied`]), however
//!   often the record is fetched again meanwhile (`Table::observe` keeps
//!   the fetched record as the change's base);
//! - the record sent is sealed for the base version plus one, so a change
//!   made elsewhere meanwhile is a conflict, never overwritten: the node is
//!   fetched again and the change applied to the newer record (fields this
//!   mount did not set keep the other device's values);
//! - the journal file goes only when the server has the change and no
//!   newer one was made since it was sent (a sequence number per change);
//!   after a crash the next mount reads it back and sends it again;
//! - a node gone from the server (removed here or elsewhere) drops its
//!   change.
//!
//! Files keep their own path: their record changes join the file's commit
//! when it has pending changes, and are sent at once when it is clean.

use std::sync::Arc;
use std::time::Instant;

use common::NodeId;
use common::api::ErrorCode;
use common::api::tree::{
    BATCH_MAX_OPS, BatchOp, BatchOutcome, BatchRecord, BatchRequest, NodeInfo, UpdateRecordRequest,
};
use common::codec::{Reader, Writer as _};
use common::crypto::attrs::{NodeAttributes, NodeKind, Timestamp};
use zeroize::Zeroizing;

use super::commit::COMMIT_SETTLE;
use super::core::{Core, attr_of, lock, timestamp};
use super::error::{FsError, FsResult};
use super::journal::PageFile;
use super::remote::Budget;
use super::seal;
use super::types::{Attr, Ino, SetAttr, SetTime};
use crate::api::{ApiError, VaultApi};

/// The fields a `setattr` set, with the values they got (times given as
/// "now" are resolved when the change is made).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordChange {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub atime: Option<Timestamp>,
    pub mtime: Option<Timestamp>,
    /// When the last change was made (the record's change time).
    pub ctime: Timestamp,
}

impl RecordChange {
    /// The change `set` makes now (its size, if any, is not a record
    /// field and is left out).
    pub(crate) fn of(set: &SetAttr) -> Self {
        let now = Timestamp::now();
        let t = |s: SetTime| match s {
            SetTime::Now => now,
            SetTime::At(t) => timestamp(t),
        };
        Self {
            mode: set.mode.map(|m| m & 0o7777),
            uid: set.uid,
            gid: set.gid,
            atime: set.atime.map(t),
            mtime: set.mtime.map(t),
            ctime: now,
        }
    }

    /// Adds a later change: its fields win.
    pub(crate) fn merge(&mut self, later: &Self) {
        self.mode = later.mode.or(self.mode);
        self.uid = later.uid.or(self.uid);
        self.gid = later.gid.or(self.gid);
        self.atime = later.atime.or(self.atime);
        self.mtime = later.mtime.or(self.mtime);
        self.ctime = later.ctime;
    }

    /// Sets the changed fields of `attrs`.
    pub(crate) fn apply(&self, attrs: &mut NodeAttributes) {
        if let Some(mode) = self.mode {
            attrs.mode = mode;
        }
        if let Some(uid) = self.uid {
            attrs.uid = uid;
        }
        if let Some(gid) = self.gid {
            attrs.gid = gid;
        }
        if let Some(atime) = self.atime {
            attrs.atime = atime;
        }
        if let Some(mtime) = self.mtime {
            attrs.mtime = mtime;
        }
        // A newer record (changed elsewhere after this change was made)
        // keeps its later change time.
        attrs.ctime = attrs.ctime.max(self.ctime);
    }

    /// `base` with the change applied.
    pub(crate) fn applied(&self, base: &NodeAttributes) -> NodeAttributes {
        let mut attrs = base.clone();
        self.apply(&mut attrs);
        attrs
    }

    const MAGIC: &'static [u8; 4] = b"SVR\x01";

    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::new());
        out.put_bytes(Self::MAGIC);
        let mut flags = 0u8;
        for (bit, set) in [
            self.mode.is_some(),
            self.uid.is_some(),
            self.gid.is_some(),
            self.atime.is_some(),
            self.mtime.is_some(),
        ]
        .into_iter()
        .enumerate()
        {
            if set {
                flags |= 1 << bit;
            }
        }
        out.put_u8(flags);
        for v in [self.mode, self.uid, self.gid] {
            out.put_u32(v.unwrap_or(0));
        }
        for t in [self.atime, self.mtime, Some(self.ctime)] {
            let t = t.unwrap_or_default();
            out.put_i64(t.secs);
            out.put_u32(t.nanos);
        }
        out
    }

    fn decode(bytes: &[u8]) -> FsResult<Self> {
        let bad = |_| corrupt("record change does not parse");
        let mut r = Reader::new(bytes);
        if r.array::<4>().map_err(bad)? != *Self::MAGIC {
            return Err(corrupt("unknown record change version"));
        }
        let flags = r.u8().map_err(bad)?;
        let has = |bit: u8| flags & (1 << bit) != 0;
        let mut ids = [0u32; 3];
        for v in &mut ids {
            *v = r.u32().map_err(bad)?;
        }
        let mut times = [Timestamp::default(); 3];
        for t in &mut times {
            let secs = r.i64().map_err(bad)?;
            let nanos = r.u32().map_err(bad)?;
            if nanos >= 1_000_000_000 {
                return Err(corrupt("record change time out of range"));
            }
            *t = Timestamp { secs, nanos };
        }
        r.finish().map_err(bad)?;
        let [mode, uid, gid] = ids;
        let [atime, mtime, ctime] = times;
        if has(0) && mode & !0o7777 != 0 {
            return Err(corrupt("record change mode out of range"));
        }
        Ok(Self {
            mode: has(0).then_some(mode),
            uid: has(1).then_some(uid),
            gid: has(2).then_some(gid),
            atime: has(3).then_some(atime),
            mtime: has(4).then_some(mtime),
            ctime,
        })
    }
}

fn corrupt(reason: &'static str) -> FsError {
    FsError::Integrity(common::crypto::CryptoError::Malformed {
        what: "journal",
        reason,
    })
}

/// A node's change not yet on the server.
#[derive(Debug, Clone)]
pub(crate) struct PendingRecord {
    pub change: RecordChange,
    /// The server's last verified version and record (without the change),
    /// which the change is sent against; `None` until the node is fetched
    /// (after a restart).
    pub base: Option<(u64, NodeAttributes)>,
    /// When the change was last added to.
    pub at: Instant,
    /// Counts changes, so that an answer to an older one does not drop a
    /// newer one.
    pub seq: u64,
}

/// A change due to be sent (see `Table::due_records`).
#[derive(Debug, Clone)]
pub(crate) struct Due {
    pub ino: Ino,
    pub node: NodeId,
    pub seq: u64,
    pub change: RecordChange,
    pub base: Option<(u64, NodeAttributes)>,
}

/// The sealed journal bytes of `node`'s change.
fn sealed<A>(core: &Core<A>, node: NodeId, change: &RecordChange) -> FsResult<Vec<u8>> {
    Ok(common::crypto::local::seal_local(
        core.journal.key(),
        "record",
        &[node.as_bytes()],
        &change.encode(),
    )?)
}

/// `setattr` of `ino` when it is a directory or a symlink: applies the
/// change here, keeps it in the journal and leaves it for the uploader.
/// `None` for other nodes (the caller changes them on the server).
pub(crate) async fn set<A: VaultApi + 'static>(
    core: &Arc<Core<A>>,
    ino: Ino,
    set: &SetAttr,
) -> FsResult<Option<Attr>> {
    let (version, attrs, nlink) = core.known(ino).await?;
    if !matches!(attrs.kind, NodeKind::Directory | NodeKind::Symlink) || set.size.is_some() {
        return Ok(None);
    }
    let change = RecordChange::of(set);
    let _io = lock(&core.records_io);
    let (node, merged, shown) = {
        let mut t = lock(&core.table);
        t.change_record(ino, &change, (version, attrs))?
    };
    core.journal
        .write_page(node, PageFile::Record, &sealed(core, node, &merged)?)?;
    drop(_io);
    core.upload_wake.notify_one();
    Ok(Some(attr_of(ino, &shown, nlink)))
}

/// Reads back the changes a previous run left in the journal; the
/// uploader sends them once their nodes are fetched.
pub(crate) fn replay<A>(core: &Core<A>) -> FsResult<usize> {
    let mut n = 0;
    for (node, sealed) in core.journal.pages(PageFile::Record)? {
        let change = common::crypto::local::open_local(
            core.journal.key(),
            "record",
            &[node.as_bytes()],
            &sealed,
        )
        .map_err(FsError::from)
        .and_then(|plain| RecordChange::decode(&plain));
        match change {
            Ok(change) => {
                lock(&core.table).restore_record(node, change);
                n += 1;
            }
            Err(e) => {
                tracing::error!(node = %node, error = %e, "unreadable journal record change left in place");
            }
        }
    }
    Ok(n)
}

/// Sends the pending changes (those that rested, or all with `force`; only
/// `only`'s when given). Answers whether some are still resting.
pub(crate) async fn commit<A: VaultApi + 'static>(
    core: &Arc<Core<A>>,
    budget: Budget,
    only: Option<Ino>,
    force: bool,
) -> FsResult<bool> {
    let settle = if force {
        std::time::Duration::ZERO
    } else {
        COMMIT_SETTLE
    };
    // A conflict fetches the node again and sends again; a node that keeps
    // changing elsewhere is left for the next round.
    for _ in 0..4 {
        let (due, resting) = lock(&core.table).due_records(settle, only);
        if due.is_empty() {
            return Ok(resting);
        }
        let mut again = false;
        for chunk in due.chunks(BATCH_MAX_OPS) {
            again |= send(core, budget, chunk).await?;
        }
        if !again {
            return Ok(resting);
        }
    }
    Ok(true)
}

/// Sends `due` in one batch. Answers whether some must go again (they
/// were rebased on a newer record).
async fn send<A: VaultApi + 'static>(
    core: &Arc<Core<A>>,
    budget: Budget,
    due: &[Due],
) -> FsResult<bool> {
    let mut again = false;
    let mut ops = Vec::with_capacity(due.len());
    let mut sent = Vec::with_capacity(due.len());
    for d in due {
        let Some((version, base)) = &d.base else {
            // Known only from the journal: fetch its base first.
            again |= rebase(core, d).await?;
            continue;
        };
        // The change time stays when the change was made, as shown since:
        // a stamp of the send moved it under a program reading the tree
        // (`tar -c` right after `tar -x` failed with "file changed as we
        // read it"). The server's own stamp is never shown (`attr_of`).
        let attrs = d.change.applied(base);
        attrs.validate()?;
        let record = seal::seal(&core.keys, d.node, version + 1, &attrs)?;
        ops.push(BatchOp::Record(BatchRecord {
            id: d.node,
            update: UpdateRecordRequest {
                expected_version: *version,
                record: record.into(),
            },
        }));
        sent.push((d, *version, attrs));
    }
    if ops.is_empty() {
        return Ok(again);
    }
    let since = core.tick();
    let req = BatchRequest {
        objects: Vec::new(),
        ops,
    };
    let res = core.batch(budget, &req).await;
    let outcomes: Vec<Result<NodeInfo, ApiError>> = match res {
        Ok(resp) if resp.results.len() == sent.len() => resp
            .results
            .into_iter()
            .map(|o| match o {
                BatchOutcome::Ok(info) => Ok(info),
                BatchOutcome::Err(f) => {
                    Err(ApiError::status(f.status, f.error.code, f.error.message))
                }
            })
            .collect(),
        Ok(_) => {
            return Err(FsError::Internal(
                "the server answered a batch with another number of results".into(),
            ));
        }
        Err(e) if crate::vfs::remote::is_transient(&e) => return Err(e.into()),
        // A server without record operations in batches: one request
        // each.
        Err(_) => {
            let mut out = Vec::with_capacity(sent.len());
            for (op, _) in req.ops.iter().zip(&sent) {
                let BatchOp::Record(r) = op else { continue };
                let (id, update) = (r.id, r.update.clone());
                out.push(
                    core.remote
                        .call(budget, |api, t| {
                            let update = update.clone();
                            async move { api.update_record(&t, id, &update).await }
                        })
                        .await,
                );
            }
            out
        }
    };
    for ((d, version, attrs), outcome) in sent.into_iter().zip(outcomes) {
        match outcome {
            Ok(info) if info.id == d.node && info.version == version + 1 => {
                settled(core, d, Some((&info, attrs, since)))?;
            }
            Ok(_) => {
                return Err(FsError::Integrity(common::crypto::CryptoError::Malformed {
                    what: "node",
                    reason: "the server answered a record change with another node or version",
                }));
            }
            Err(e) if e.code() == Some(ErrorCode::NotFound) => settled(core, d, None)?,
            Err(e) if e.code() == Some(ErrorCode::Conflict) => again |= rebase(core, d).await?,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(again)
}

/// Fetches `d`'s node again (its record becomes the change's base, see
/// `Table::observe`). Answers whether the change is to be sent again;
/// a node gone drops it.
async fn rebase<A: VaultApi + 'static>(core: &Arc<Core<A>>, d: &Due) -> FsResult<bool> {
    lock(&core.table).invalidate(d.node);
    match core.fetch(d.ino, d.node).await {
        Ok(_) => Ok(true),
        Err(FsError::NotFound) => settled(core, d, None).map(|()| false),
        Err(e) => Err(e),
    }
}

/// `d` was applied (`done`: the answer, the record sent and the tick it was
/// sent at) or its node is gone (`None`): forgets the change unless a newer
/// one was made meanwhile, and its journal file with it.
fn settled<A>(
    core: &Core<A>,
    d: &Due,
    done: Option<(&NodeInfo, NodeAttributes, u64)>,
) -> FsResult<()> {
    let keep = lock(&core.files).contains_key(&d.ino);
    let _io = lock(&core.records_io);
    let forgotten = {
        let mut t = lock(&core.table);
        let forgotten = t.record_settled(d.ino, d.seq, keep);
        if let Some((info, attrs, since)) = done {
            if t.ino_of(d.node) == Some(d.ino) {
                t.observe(d.ino, info, attrs, since)?;
            }
        } else {
            t.invalidate(d.node);
        }
        forgotten
    };
    if forgotten {
        core.journal.remove_page(d.node, PageFile::Record)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(secs: i64) -> Timestamp {
        Timestamp { secs, nanos: 7 }
    }

    #[test]
    fn changes_merge_with_the_later_winning_and_round_trip() {
        let mut a = RecordChange {
            mode: Some(0o755),
            uid: None,
            gid: Some(5),
            atime: None,
            mtime: Some(ts(10)),
            ctime: ts(11),
        };
        let b = RecordChange {
            mode: Some(0o700),
            uid: Some(1000),
            gid: None,
            atime: Some(ts(20)),
            mtime: None,
            ctime: ts(21),
        };
        a.merge(&b);
        assert_eq!(
            a,
            RecordChange {
                mode: Some(0o700),
                uid: Some(1000),
                gid: Some(5),
                atime: Some(ts(20)),
                mtime: Some(ts(10)),
                ctime: ts(21),
            }
        );
        assert_eq!(RecordChange::decode(&a.encode()).unwrap(), a);
        let none = RecordChange {
            mode: None,
            uid: None,
            gid: None,
            atime: None,
            mtime: None,
            ctime: ts(1),
        };
        assert_eq!(RecordChange::decode(&none.encode()).unwrap(), none);
        // Damaged bytes are refused, never read as another change.
        let mut bad = a.encode().to_vec();
        bad.truncate(bad.len() - 1);
        assert!(RecordChange::decode(&bad).is_err());
        let mut bad_mode = a.encode().to_vec();
        bad_mode[5..9].copy_from_slice(&0o170_000u32.to_be_bytes());
        assert!(RecordChange::decode(&bad_mode).is_err());
    }

    #[test]
    fn only_the_fields_set_change() {
        let base = NodeAttributes::new(NodeKind::Directory, 0o755, 1, 2, ts(100));
        let change = RecordChange {
            mode: Some(0o700),
            uid: None,
            gid: None,
            atime: None,
            mtime: Some(ts(50)),
            ctime: ts(200),
        };
        let out = change.applied(&base);
        assert_eq!((out.mode, out.uid, out.gid), (0o700, 1, 2));
        assert_eq!(
            (out.atime, out.mtime, out.ctime),
            (ts(100), ts(50), ts(200))
        );
        // On a record changed elsewhere later, its change time stays.
        let mut newer = base.clone();
        newer.ctime = ts(300);
        assert_eq!(change.applied(&newer).ctime, ts(300));
    }
}
