//! [`FakeVault`]: an in-memory server implementing [`VaultApi`], for tests
//! of the filesystem logic (its reference-model property tests run against
//! it), so it follows the server's contract (`vault-server`'s `TreeStore`
//! and its handlers) rule for rule, in the server's order of checks:
//!
//! - one account: ownership is implicit, every id is the caller's;
//! - the root (id all zero, a directory, no entry, once); every other node
//!   has an entry; `(parent, tag)` unique; no hard links to directories;
//! - `nlink` counts entries; a node losing its last entry is deleted with
//!   its objects (released, their bytes returned to the quota);
//! - versions grow by one per record change; a change names the version it
//!   expects (409 `conflict` otherwise);
//! - `commit` checks `not_found`, `not_a_file`, `conflict`, then each listed
//!   object (a set) must be pending or already the node's; objects it had
//!   and no longer lists are released; `size` is the sum of its objects;
//! - a create may list a file's objects (`objects`), committed to the new
//!   node at version 1 as a commit would: `not_a_file` for another kind
//!   (before the parent), then the parent and the name, then `not_found`
//!   for an object that is not pending;
//! - POSIX rename (replace, no-replace, exchange) as Linux `renameat2`
//!   decides, `invalid_move` for a directory into its own subtree; `rmdir`
//!   (`not_empty`, `not_a_directory`) and `unlink` (`is_a_directory`);
//! - listings page in tag order with `next` set exactly when more follow;
//!   batch reads in the order asked, each once;
//! - uploads reserve their size against the quota (`exists` for a taken id,
//!   `quota_exceeded`), are checked against the announced SHA-256
//!   (`digest_mismatch`, after which the id stays taken, as on the server
//!   until its collector purges it) and are pending until committed;
//!   downloads serve pending and committed objects, one range at a time;
//! - `POST /v1/batch` as the server runs it: the batch's limits, then the
//!   inline objects all or none (each checked like an upload before any is
//!   reserved: nothing is reserved and no id taken on a refusal), then each
//!   create and commit on its own, answered with its endpoint's status and
//!   error; a refused one changes nothing and does not stop the next; the
//!   root cannot be created in a batch (400);
//! - a change feed with one record per (node, directory) pair a mutation
//!   touches, and `statfs`;
//! - the input limits the handlers check (name 1 to 1024 bytes, record at
//!   most 4 MiB, pages and batches at most 1000).
//!
//! What it leaves out: the collector (released objects are never purged, so
//! their ids stay taken) and the audit log. Tokens: any token is accepted
//! unless [`FakeVault::accept_only`] names one (others answer 401).
//! Failures can be queued with [`FakeVault::fail_next`].

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use common::api::tree::{
    BATCH_MAX_INLINE_BYTES, BATCH_MAX_INLINE_OBJECT, BATCH_MAX_OBJECTS, BATCH_MAX_OPS,
    BatchFailure, BatchOp, BatchOutcome, BatchRequest, BatchResponse, Change, ChangePage,
    CommitRequest, CreateNodeRequest, EntryInfo, EntryPage, EntrySpec, Kind, LinkRequest, NameTags,
    NodeIds, NodeInfo, RenameMode, RenameRequest, StatFs, UpdateRecordRequest,
};
use common::api::{Base64, ErrorCode, ErrorDetail};
use common::crypto::name::NameTag;
use common::{NodeId, ObjectId};

use super::fake::{FAKE_SERVER, Injected};
use super::tree::{ByteRange, ListQuery, VaultApi, crc32c, sha256};
use super::{AccessToken, ApiError, ApiResult};

/// Largest encrypted name.
pub const MAX_ENCRYPTED_NAME: usize = 1024;
/// Largest sealed record.
pub const MAX_RECORD: usize = 4 << 20;
/// Most ids or tags in one batch, and most rows in one page.
pub const MAX_BATCH: usize = 1000;
/// Page size when the request names none.
pub const DEFAULT_PAGE: u32 = 500;
/// Largest object list of one commit.
pub const MAX_COMMIT_OBJECTS: usize = 50_000;
/// The server's default quota (10 GiB).
pub const DEFAULT_QUOTA: u64 = 10 * 1024 * 1024 * 1024;
/// The server's default object limit (1 GiB).
pub const DEFAULT_MAX_OBJECT: u64 = 1024 * 1024 * 1024;

#[derive(Debug, Clone)]
struct Node {
    kind: Kind,
    version: u64,
    record: Vec<u8>,
    nlink: u32,
    updated_at: i64,
    /// Committed objects.
    objects: BTreeSet<ObjectId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ObjectState {
    Pending,
    Committed(NodeId),
    Released,
}

#[derive(Debug, Clone)]
struct Object {
    data: Bytes,
    state: ObjectState,
}

#[derive(Debug, Clone)]
struct Entry {
    encrypted_name: Vec<u8>,
    child: NodeId,
}

#[derive(Debug)]
struct State {
    token: Option<String>,
    nodes: HashMap<NodeId, Node>,
    /// Entries of each directory, in tag order.
    dirs: HashMap<NodeId, BTreeMap<NameTag, Entry>>,
    objects: HashMap<ObjectId, Object>,
    used: u64,
    quota: u64,
    max_object: u64,
    seq: i64,
    feed: Vec<Change>,
    failures: VecDeque<Injected>,
    clock: Option<i64>,
    /// `GET /v1/nodes/{id}` answered (one node fetched on its own).
    node_gets: u64,
    /// `PUT /v1/nodes/{id}/record` requests and `POST /v1/batch` requests.
    record_puts: u64,
    batches: u64,
    /// Whole objects downloaded (no range).
    whole_downloads: u64,
}

/// A point requests of one kind stop at while a test holds them.
#[derive(Debug, Default)]
struct Gate {
    /// Set while held; closed (letting everyone through) on release.
    sem: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    /// Signalled when a request reaches the gate while it is held.
    waiting: tokio::sync::Notify,
}

impl Gate {
    fn hold(&self) {
        *self.sem.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(Arc::new(tokio::sync::Semaphore::new(0)));
    }

    fn release(&self) {
        if let Some(sem) = self
            .sem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            sem.close();
        }
    }

    /// Waits here while held.
    async fn pass(&self) {
        let sem = self
            .sem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(sem) = sem {
            self.waiting.notify_one();
            // Closed by `release`: then it goes on.
            let _ = sem.acquire().await;
        }
    }
}

/// The in-memory vault server.
#[derive(Debug)]
pub struct FakeVault {
    state: Mutex<State>,
    /// While set, `POST /v1/batch` waits here before it is answered.
    batch_gate: Gate,
    /// While set, object uploads wait here before they are stored.
    upload_gate: Gate,
}

impl Default for FakeVault {
    fn default() -> Self {
        Self::new()
    }
}

// ---- errors, as the server answers them ----

fn err(status: u16, code: ErrorCode, message: &str) -> ApiError {
    ApiError::status(status, code, message)
}
fn not_found() -> ApiError {
    err(404, ErrorCode::NotFound, "not found")
}
fn exists() -> ApiError {
    err(409, ErrorCode::Exists, "already exists")
}
fn not_a_directory() -> ApiError {
    err(409, ErrorCode::NotADirectory, "not a directory")
}
fn is_a_directory() -> ApiError {
    err(409, ErrorCode::IsADirectory, "is a directory")
}
fn not_empty() -> ApiError {
    err(409, ErrorCode::NotEmpty, "directory not empty")
}
fn not_a_file() -> ApiError {
    err(409, ErrorCode::NotAFile, "not a regular file")
}
fn invalid_move() -> ApiError {
    err(422, ErrorCode::InvalidMove, "invalid move")
}
fn conflict(current: u64) -> ApiError {
    ApiError::status(
        409,
        ErrorCode::Conflict,
        format!("version conflict: the node is at version {current}"),
    )
}
fn quota_exceeded() -> ApiError {
    err(507, ErrorCode::QuotaExceeded, "quota exceeded")
}
fn bad_request(message: &str) -> ApiError {
    err(400, ErrorCode::BadRequest, message)
}
fn payload_too_large() -> ApiError {
    err(413, ErrorCode::PayloadTooLarge, "payload too large")
}
fn digest_mismatch() -> ApiError {
    err(
        400,
        ErrorCode::DigestMismatch,
        "the body does not match its SHA-256",
    )
}

fn check_name(name: &Base64) -> ApiResult<()> {
    if name.0.is_empty() || name.0.len() > MAX_ENCRYPTED_NAME {
        return Err(bad_request("an encrypted name has 1 to 1024 bytes"));
    }
    Ok(())
}

fn check_record(record: &Base64) -> ApiResult<()> {
    if record.0.len() > MAX_RECORD {
        return Err(payload_too_large());
    }
    Ok(())
}

fn page_limit(limit: Option<u32>) -> ApiResult<u32> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if n >= 1 && n as usize <= MAX_BATCH => Ok(n),
        Some(_) => Err(bad_request("limit is 1 to 1000")),
    }
}

fn check_batch(len: usize) -> ApiResult<()> {
    if len > MAX_BATCH {
        return Err(bad_request("at most 1000 items per batch"));
    }
    Ok(())
}

/// How a refused batch operation travels back.
fn batch_failure(e: &ApiError) -> BatchFailure {
    match e {
        ApiError::Status {
            status,
            code,
            message,
            ..
        } => BatchFailure {
            status: *status,
            error: ErrorDetail {
                code: code.unwrap_or(ErrorCode::Internal),
                message: message.clone(),
            },
        },
        other => BatchFailure {
            status: 500,
            error: ErrorDetail {
                code: ErrorCode::Internal,
                message: other.to_string(),
            },
        },
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Feed records of one mutation: one per (node, directory) pair, in order.
#[derive(Debug, Default)]
struct Changes(Vec<(NodeId, Option<NodeId>)>);

impl Changes {
    fn add(&mut self, node: NodeId, parent: Option<NodeId>) {
        if !self.0.contains(&(node, parent)) {
            self.0.push((node, parent));
        }
    }
}

impl State {
    fn now(&self) -> i64 {
        self.clock.unwrap_or_else(unix_now)
    }

    fn finish(&mut self, changes: Changes) {
        for (node, parent) in changes.0 {
            self.seq += 1;
            self.feed.push(Change {
                seq: self.seq,
                node,
                parent,
            });
        }
    }

    fn node_size(&self, node: &Node) -> u64 {
        node.objects
            .iter()
            .filter_map(|o| self.objects.get(o))
            .map(|o| o.data.len() as u64)
            .sum()
    }

    fn info(&self, id: NodeId) -> ApiResult<NodeInfo> {
        let node = self.nodes.get(&id).ok_or_else(not_found)?;
        Ok(NodeInfo {
            id,
            kind: node.kind,
            version: node.version,
            record: Base64(node.record.clone()),
            size: self.node_size(node),
            nlink: node.nlink,
            updated_at: node.updated_at,
        })
    }

    fn entry_info(&self, tag: NameTag, entry: &Entry) -> ApiResult<EntryInfo> {
        Ok(EntryInfo {
            tag,
            encrypted_name: Base64(entry.encrypted_name.clone()),
            node: self.info(entry.child)?,
        })
    }

    /// Checks that `id` is a directory (`not_found` / `not_a_directory`).
    fn directory(&self, id: NodeId) -> ApiResult<()> {
        match self.nodes.get(&id) {
            None => Err(not_found()),
            Some(n) if n.kind != Kind::Directory => Err(not_a_directory()),
            Some(_) => Ok(()),
        }
    }

    fn entry(&self, parent: NodeId, tag: &NameTag) -> Option<Entry> {
        self.dirs.get(&parent).and_then(|d| d.get(tag)).cloned()
    }

    fn has_entries(&self, dir: NodeId) -> bool {
        self.dirs.get(&dir).is_some_and(|d| !d.is_empty())
    }

    /// The directory holding the entry of directory `dir`.
    fn parent_of(&self, dir: NodeId) -> Option<NodeId> {
        self.dirs
            .iter()
            .find(|(_, entries)| entries.values().any(|e| e.child == dir))
            .map(|(parent, _)| *parent)
    }

    /// Whether `ancestor` is `start` or above it.
    fn is_at_or_above(&self, ancestor: NodeId, start: NodeId) -> bool {
        let mut current = start;
        // A tree has no cycles; the bound only guards a broken fake.
        for _ in 0..=self.nodes.len() {
            if current == ancestor {
                return true;
            }
            if current == NodeId::ROOT {
                return false;
            }
            match self.parent_of(current) {
                Some(p) => current = p,
                None => return false,
            }
        }
        false
    }

    fn touch(&mut self, id: NodeId, now: i64) {
        if let Some(n) = self.nodes.get_mut(&id) {
            n.updated_at = now;
        }
    }

    /// `id` lost one of its entries: deleted with its objects when that was
    /// its last.
    fn drop_link(&mut self, id: NodeId, now: i64) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        if node.nlink > 1 {
            node.nlink -= 1;
            node.updated_at = now;
            return;
        }
        let objects = std::mem::take(&mut node.objects);
        self.nodes.remove(&id);
        self.dirs.remove(&id);
        for o in objects {
            self.release(o);
        }
    }

    fn release(&mut self, id: ObjectId) {
        if let Some(o) = self.objects.get_mut(&id)
            && o.state != ObjectState::Released
        {
            o.state = ObjectState::Released;
            self.used = self.used.saturating_sub(o.data.len() as u64);
        }
    }

    fn insert_entry(&mut self, spec: &EntrySpec, child: NodeId) {
        self.dirs.entry(spec.parent).or_default().insert(
            spec.tag,
            Entry {
                encrypted_name: spec.encrypted_name.0.clone(),
                child,
            },
        );
    }

    // ---- the operations ----

    fn create_node(&mut self, req: &CreateNodeRequest) -> ApiResult<NodeInfo> {
        match (&req.entry, req.id == NodeId::ROOT) {
            (None, false) => return Err(bad_request("only the root has no entry")),
            (Some(_), true) => return Err(bad_request("the root has no entry")),
            (None, true) if req.kind != Kind::Directory => {
                return Err(bad_request("the root is a directory"));
            }
            _ => {}
        }
        if req.objects.len() > MAX_COMMIT_OBJECTS {
            return Err(bad_request("too many objects per version"));
        }
        if let Some(e) = &req.entry {
            check_name(&e.encrypted_name)?;
        }
        check_record(&req.record)?;
        if !req.objects.is_empty() && req.kind != Kind::File {
            return Err(not_a_file());
        }
        if let Some(e) = &req.entry {
            self.directory(e.parent)?;
            if self.entry(e.parent, &e.tag).is_some() {
                return Err(exists());
            }
        }
        if self.nodes.contains_key(&req.id) {
            return Err(exists());
        }
        // As a commit takes them, but only pending ones: the node is new.
        let listed: BTreeSet<ObjectId> = req.objects.iter().copied().collect();
        for o in &listed {
            if self.objects.get(o).map(|o| o.state) != Some(ObjectState::Pending) {
                return Err(not_found());
            }
        }
        for o in &listed {
            if let Some(obj) = self.objects.get_mut(o) {
                obj.state = ObjectState::Committed(req.id);
            }
        }
        let now = self.now();
        self.nodes.insert(
            req.id,
            Node {
                kind: req.kind,
                version: 1,
                record: req.record.0.clone(),
                nlink: u32::from(req.entry.is_some()),
                updated_at: now,
                objects: listed,
            },
        );
        if req.kind == Kind::Directory {
            self.dirs.insert(req.id, BTreeMap::new());
        }
        if let Some(e) = &req.entry {
            self.insert_entry(e, req.id);
        }
        let mut changes = Changes::default();
        changes.add(req.id, req.entry.as_ref().map(|e| e.parent));
        self.finish(changes);
        self.info(req.id)
    }

    fn nodes(&self, req: &NodeIds) -> ApiResult<Vec<NodeInfo>> {
        check_batch(req.ids.len())?;
        let mut seen = HashSet::new();
        Ok(req
            .ids
            .iter()
            .filter(|id| seen.insert(**id))
            .filter_map(|id| self.info(*id).ok())
            .collect())
    }

    fn update_record(&mut self, id: NodeId, req: &UpdateRecordRequest) -> ApiResult<NodeInfo> {
        check_record(&req.record)?;
        let now = self.now();
        let node = self.nodes.get_mut(&id).ok_or_else(not_found)?;
        if node.version != req.expected_version {
            return Err(conflict(node.version));
        }
        node.version += 1;
        node.record = req.record.0.clone();
        node.updated_at = now;
        let mut changes = Changes::default();
        changes.add(id, None);
        self.finish(changes);
        self.info(id)
    }

    fn commit(&mut self, id: NodeId, req: &CommitRequest) -> ApiResult<NodeInfo> {
        if req.objects.len() > MAX_COMMIT_OBJECTS {
            return Err(bad_request("too many objects per version"));
        }
        check_record(&req.record)?;
        let node = self.nodes.get(&id).ok_or_else(not_found)?;
        if node.kind != Kind::File {
            return Err(not_a_file());
        }
        if node.version != req.expected_version {
            return Err(conflict(node.version));
        }
        let listed: BTreeSet<ObjectId> = req.objects.iter().copied().collect();
        for o in &listed {
            let usable = match self.objects.get(o).map(|o| o.state) {
                Some(ObjectState::Pending) => true,
                Some(ObjectState::Committed(n)) => n == id,
                Some(ObjectState::Released) | None => false,
            };
            if !usable {
                return Err(not_found());
            }
        }
        let had = node.objects.clone();
        for o in &listed {
            if let Some(obj) = self.objects.get_mut(o) {
                obj.state = ObjectState::Committed(id);
            }
        }
        for o in had.difference(&listed) {
            self.release(*o);
        }
        let now = self.now();
        if let Some(node) = self.nodes.get_mut(&id) {
            node.objects = listed;
            node.version += 1;
            node.record = req.record.0.clone();
            node.updated_at = now;
        }
        let mut changes = Changes::default();
        changes.add(id, None);
        self.finish(changes);
        self.info(id)
    }

    fn list(&self, dir: NodeId, query: ListQuery) -> ApiResult<EntryPage> {
        let limit = page_limit(query.limit)? as usize;
        self.directory(dir)?;
        let entries = self.dirs.get(&dir).ok_or_else(not_found)?;
        let range = match query.after {
            None => entries.range::<NameTag, _>(..),
            Some(after) => {
                entries.range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            }
        };
        let mut rows: Vec<(NameTag, &Entry)> =
            range.take(limit + 1).map(|(t, e)| (*t, e)).collect();
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = if more {
            rows.last().map(|(t, _)| *t)
        } else {
            None
        };
        Ok(EntryPage {
            entries: rows
                .into_iter()
                .map(|(t, e)| self.entry_info(t, e))
                .collect::<ApiResult<_>>()?,
            next,
        })
    }

    fn lookup(&self, dir: NodeId, tag: &NameTag) -> ApiResult<EntryInfo> {
        let entry = self.entry(dir, tag).ok_or_else(not_found)?;
        self.entry_info(*tag, &entry)
    }

    fn lookup_batch(&self, dir: NodeId, req: &NameTags) -> ApiResult<Vec<EntryInfo>> {
        check_batch(req.tags.len())?;
        self.directory(dir)?;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for tag in &req.tags {
            if !seen.insert(*tag) {
                continue;
            }
            if let Some(e) = self.entry(dir, tag) {
                out.push(self.entry_info(*tag, &e)?);
            }
        }
        Ok(out)
    }

    fn remove(&mut self, dir: NodeId, tag: &NameTag, is_dir: bool) -> ApiResult<()> {
        self.directory(dir)?;
        let found = self.entry(dir, tag).ok_or_else(not_found)?;
        let kind = self.nodes.get(&found.child).ok_or_else(not_found)?.kind;
        match (is_dir, kind == Kind::Directory) {
            (true, false) => return Err(not_a_directory()),
            (false, true) => return Err(is_a_directory()),
            (true, true) if self.has_entries(found.child) => return Err(not_empty()),
            _ => {}
        }
        if let Some(d) = self.dirs.get_mut(&dir) {
            d.remove(tag);
        }
        let now = self.now();
        self.drop_link(found.child, now);
        let mut changes = Changes::default();
        changes.add(found.child, Some(dir));
        self.finish(changes);
        Ok(())
    }

    fn link(&mut self, req: &LinkRequest) -> ApiResult<NodeInfo> {
        check_name(&req.entry.encrypted_name)?;
        let node = self.nodes.get(&req.child).ok_or_else(not_found)?;
        if node.kind == Kind::Directory {
            return Err(is_a_directory());
        }
        self.directory(req.entry.parent)?;
        if self.entry(req.entry.parent, &req.entry.tag).is_some() {
            return Err(exists());
        }
        self.insert_entry(&req.entry, req.child);
        let now = self.now();
        if let Some(n) = self.nodes.get_mut(&req.child) {
            n.nlink += 1;
            n.updated_at = now;
        }
        let mut changes = Changes::default();
        changes.add(req.child, Some(req.entry.parent));
        self.finish(changes);
        self.info(req.child)
    }

    fn rename(&mut self, op: &RenameRequest) -> ApiResult<()> {
        check_name(&op.dst_encrypted_name)?;
        if let Some(n) = &op.src_encrypted_name {
            check_name(n)?;
        }
        self.directory(op.src_parent)?;
        self.directory(op.dst_parent)?;
        let src = self
            .entry(op.src_parent, &op.src_tag)
            .ok_or_else(not_found)?;
        let dst = self.entry(op.dst_parent, &op.dst_tag);
        match (op.mode, &dst) {
            (RenameMode::NoReplace, Some(_)) => return Err(exists()),
            (RenameMode::Exchange, None) => return Err(not_found()),
            (_, Some(d)) if d.child == src.child => return Ok(()),
            _ => {}
        }
        let kind_of = |id: NodeId| self.nodes.get(&id).map(|n| n.kind);
        let src_is_dir = kind_of(src.child) == Some(Kind::Directory);
        let moves_dir = src_is_dir && op.src_parent != op.dst_parent;
        if moves_dir && self.is_at_or_above(src.child, op.dst_parent) {
            return Err(invalid_move());
        }
        let now = self.now();
        let mut changes = Changes::default();
        if let Some(dst) = &dst {
            let target_is_dir = kind_of(dst.child) == Some(Kind::Directory);
            if op.mode == RenameMode::Exchange {
                let Some(src_name) = &op.src_encrypted_name else {
                    return Err(invalid_move());
                };
                if target_is_dir
                    && op.src_parent != op.dst_parent
                    && self.is_at_or_above(dst.child, op.src_parent)
                {
                    return Err(invalid_move());
                }
                if let Some(d) = self.dirs.get_mut(&op.src_parent) {
                    d.insert(
                        op.src_tag,
                        Entry {
                            encrypted_name: src_name.0.clone(),
                            child: dst.child,
                        },
                    );
                }
                if let Some(d) = self.dirs.get_mut(&op.dst_parent) {
                    d.insert(
                        op.dst_tag,
                        Entry {
                            encrypted_name: op.dst_encrypted_name.0.clone(),
                            child: src.child,
                        },
                    );
                }
                self.touch(src.child, now);
                self.touch(dst.child, now);
                changes.add(src.child, Some(op.src_parent));
                changes.add(src.child, Some(op.dst_parent));
                changes.add(dst.child, Some(op.dst_parent));
                changes.add(dst.child, Some(op.src_parent));
                self.finish(changes);
                return Ok(());
            }
            match (src_is_dir, target_is_dir) {
                (false, true) => return Err(is_a_directory()),
                (true, false) => return Err(not_a_directory()),
                (true, true) if self.has_entries(dst.child) => return Err(not_empty()),
                _ => {}
            }
            if let Some(d) = self.dirs.get_mut(&op.dst_parent) {
                d.remove(&op.dst_tag);
            }
            self.drop_link(dst.child, now);
            changes.add(dst.child, Some(op.dst_parent));
        }
        if let Some(d) = self.dirs.get_mut(&op.src_parent) {
            d.remove(&op.src_tag);
        }
        self.dirs.entry(op.dst_parent).or_default().insert(
            op.dst_tag,
            Entry {
                encrypted_name: op.dst_encrypted_name.0.clone(),
                child: src.child,
            },
        );
        self.touch(src.child, now);
        changes.add(src.child, Some(op.src_parent));
        changes.add(src.child, Some(op.dst_parent));
        self.finish(changes);
        Ok(())
    }

    fn upload(&mut self, id: ObjectId, body: Bytes, crc: u32) -> ApiResult<()> {
        let len = body.len() as u64;
        if len > self.max_object {
            return Err(payload_too_large());
        }
        if self.objects.contains_key(&id) {
            return Err(exists());
        }
        match self.used.checked_add(len) {
            Some(used) if used <= self.quota => {}
            _ => return Err(quota_exceeded()),
        }
        let ok = crc32c(&body) == crc;
        // Reserved, then released when the body does not match: the id stays
        // taken (the server's reservation is abandoned, not forgotten).
        self.objects.insert(
            id,
            Object {
                data: body,
                state: if ok {
                    ObjectState::Pending
                } else {
                    ObjectState::Released
                },
            },
        );
        if !ok {
            return Err(digest_mismatch());
        }
        self.used += len;
        Ok(())
    }

    /// `POST /v1/batch`, in the server's order: the batch's own limits;
    /// each inline object checked on its own (a SHA-256 of 32 bytes, the
    /// object limit, the digest), so a malformed one reserves nothing; all
    /// of them reserved at once (`exists` for a taken id, also one listed
    /// twice; `quota_exceeded`), nothing on a refusal; then each operation
    /// on its own, answered as its endpoint answers. A create of the root
    /// is refused (400): a batch only adds to a tree that exists.
    fn batch(&mut self, req: &BatchRequest) -> ApiResult<BatchResponse> {
        if req.ops.len() > BATCH_MAX_OPS {
            return Err(bad_request("too many operations in one batch"));
        }
        if req.objects.len() > BATCH_MAX_OBJECTS {
            return Err(bad_request("too many inline objects in one batch"));
        }
        let mut inline = 0usize;
        for o in &req.objects {
            if o.data.0.len() > BATCH_MAX_INLINE_OBJECT {
                return Err(payload_too_large());
            }
            inline += o.data.0.len();
        }
        if inline > BATCH_MAX_INLINE_BYTES {
            return Err(payload_too_large());
        }
        for o in &req.objects {
            let digest: [u8; 32] = o
                .sha256
                .0
                .as_slice()
                .try_into()
                .map_err(|_| bad_request("sha256 must be 32 bytes"))?;
            if o.data.0.len() as u64 > self.max_object {
                return Err(payload_too_large());
            }
            if sha256(&o.data.0) != digest {
                return Err(digest_mismatch());
            }
        }
        let mut ids = HashSet::new();
        let mut used = self.used;
        for o in &req.objects {
            if self.objects.contains_key(&o.id) || !ids.insert(o.id) {
                return Err(exists());
            }
            used = used
                .checked_add(o.data.0.len() as u64)
                .filter(|used| *used <= self.quota)
                .ok_or_else(quota_exceeded)?;
        }
        for o in &req.objects {
            self.objects.insert(
                o.id,
                Object {
                    data: Bytes::from(o.data.0.clone()),
                    state: ObjectState::Pending,
                },
            );
        }
        self.used = used;
        let results = req
            .ops
            .iter()
            .map(|op| {
                let res = match op {
                    BatchOp::Create(c) if c.entry.is_none() && c.id == NodeId::ROOT => {
                        Err(bad_request("a batch cannot create the root"))
                    }
                    BatchOp::Create(c) => self.create_node(c),
                    BatchOp::Commit(c) => self.commit(c.id, &c.commit),
                    BatchOp::Record(r) => self.update_record(r.id, &r.update),
                };
                match res {
                    Ok(info) => BatchOutcome::Ok(info),
                    Err(e) => BatchOutcome::Err(batch_failure(&e)),
                }
            })
            .collect();
        Ok(BatchResponse { results })
    }

    fn download(&mut self, id: ObjectId, range: Option<ByteRange>) -> ApiResult<Bytes> {
        let obj = self
            .objects
            .get(&id)
            .filter(|o| o.state != ObjectState::Released)
            .ok_or_else(not_found)?;
        let Some(range) = range else {
            let data = obj.data.clone();
            self.whole_downloads += 1;
            return Ok(data);
        };
        let len = obj.data.len() as u64;
        let r = range
            .resolve(len)
            .ok_or_else(|| err(416, ErrorCode::RangeNotSatisfiable, "range not satisfiable"))?;
        // Within the object: resolve never answers past `len`.
        let (start, end) = (
            usize::try_from(r.start).unwrap_or(usize::MAX),
            usize::try_from(r.end).unwrap_or(usize::MAX),
        );
        Ok(obj.data.slice(start..end))
    }

    fn statfs(&self) -> StatFs {
        StatFs {
            used_bytes: self.used,
            quota_bytes: self.quota,
            nodes: self.nodes.len() as u64,
            seq: self.seq,
        }
    }

    fn changes(&self, since: i64, limit: Option<u32>) -> ApiResult<ChangePage> {
        if since < 0 {
            return Err(bad_request("since is 0 or more"));
        }
        let limit = page_limit(limit)? as usize;
        let changes: Vec<Change> = self
            .feed
            .iter()
            .filter(|c| c.seq > since)
            .take(limit)
            .cloned()
            .collect();
        Ok(ChangePage {
            changes,
            latest: self.seq,
        })
    }
}

impl FakeVault {
    /// An empty vault (no root yet) with the server's default quota and
    /// object limit.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State {
                token: None,
                nodes: HashMap::new(),
                dirs: HashMap::new(),
                objects: HashMap::new(),
                used: 0,
                quota: DEFAULT_QUOTA,
                max_object: DEFAULT_MAX_OBJECT,
                seq: 0,
                feed: Vec::new(),
                failures: VecDeque::new(),
                clock: None,
                node_gets: 0,
                record_puts: 0,
                batches: 0,
                whole_downloads: 0,
            }),
            batch_gate: Gate::default(),
            upload_gate: Gate::default(),
        }
    }

    /// Makes every `POST /v1/batch` wait, before the vault sees it, until
    /// [`FakeVault::release_batches`]: for tests of what happens here while
    /// a batch is in flight.
    pub fn hold_batches(&self) {
        self.batch_gate.hold();
    }

    /// Waits until a batch is waiting at the gate [`FakeVault::hold_batches`]
    /// set.
    pub async fn batch_held(&self) {
        self.batch_gate.waiting.notified().await;
    }

    /// Lets the batches held go on, and later ones through.
    pub fn release_batches(&self) {
        self.batch_gate.release();
    }

    /// Makes every object upload wait until [`FakeVault::release_uploads`].
    pub fn hold_uploads(&self) {
        self.upload_gate.hold();
    }

    /// Lets the uploads held go on, and later ones through.
    pub fn release_uploads(&self) {
        self.upload_gate.release();
    }

    /// How many single nodes (`GET /v1/nodes/{id}`) were fetched so far.
    pub fn node_gets(&self) -> u64 {
        self.lock().node_gets
    }

    /// How many records were replaced one request each (`PUT
    /// /v1/nodes/{id}/record`) so far.
    pub fn record_puts(&self) -> u64 {
        self.lock().record_puts
    }

    /// How many whole objects (no range) were downloaded so far.
    pub fn whole_downloads(&self) -> u64 {
        self.lock().whole_downloads
    }

    /// How many `POST /v1/batch` requests were answered so far.
    pub fn batches(&self) -> u64 {
        self.lock().batches
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn with<T>(
        &self,
        token: &AccessToken,
        f: impl FnOnce(&mut State) -> ApiResult<T>,
    ) -> ApiResult<T> {
        let mut st = self.lock();
        if let Some(failure) = st.failures.pop_front() {
            return Err(match failure {
                Injected::Unreachable => ApiError::Unreachable {
                    server: FAKE_SERVER.into(),
                    source: "connection refused".into(),
                },
                Injected::RateLimited(secs) => ApiError::Status {
                    status: 429,
                    code: Some(ErrorCode::RateLimited),
                    message: "too many requests".into(),
                    retry_after: Some(secs),
                },
                Injected::Status(status, code) => ApiError::status(status, code, "injected"),
            });
        }
        if st.token.as_deref().is_some_and(|t| t != token.expose()) {
            return Err(err(401, ErrorCode::Unauthorized, "invalid access token"));
        }
        f(&mut st)
    }

    /// Accepts only `token` from now on (others answer 401 `unauthorized`).
    pub fn accept_only(&self, token: &AccessToken) {
        self.lock().token = Some(token.expose().to_owned());
    }

    /// Sets the account's quota.
    pub fn set_quota(&self, bytes: u64) {
        self.lock().quota = bytes;
    }

    /// Sets the largest object the server accepts.
    pub fn set_max_object(&self, bytes: u64) {
        self.lock().max_object = bytes;
    }

    /// Fixes the clock (`updated_at`) at `unix_seconds` (`None`: real time).
    pub fn set_clock(&self, unix_seconds: Option<i64>) {
        self.lock().clock = unix_seconds;
    }

    /// Forgets failures queued by [`FakeVault::fail_next`] and not yet used.
    pub fn clear_failures(&self) {
        self.lock().failures.clear();
    }

    /// Answers `failure` instead of the next call's real result.
    pub fn fail_next(&self, failure: Injected) {
        self.lock().failures.push_back(failure);
    }

    /// Changes the stored bytes of every committed object with `f` (a
    /// server that tampers), returning how many it changed.
    pub fn tamper_objects(&self, f: impl Fn(&mut Vec<u8>)) -> usize {
        let mut st = self.lock();
        let mut n = 0;
        for o in st.objects.values_mut() {
            if matches!(o.state, ObjectState::Committed(_)) {
                let mut data = o.data.to_vec();
                f(&mut data);
                o.data = Bytes::from(data);
                n += 1;
            }
        }
        n
    }

    /// Every stored byte (records, names, objects), for plaintext scans.
    pub fn all_bytes(&self) -> Vec<u8> {
        let st = self.lock();
        let mut out = Vec::new();
        for n in st.nodes.values() {
            out.extend_from_slice(&n.record);
        }
        for entries in st.dirs.values() {
            for e in entries.values() {
                out.extend_from_slice(&e.encrypted_name);
            }
        }
        for o in st.objects.values() {
            out.extend_from_slice(&o.data);
        }
        out
    }

    /// Nodes on the server (the root included).
    pub fn node_count(&self) -> usize {
        self.lock().nodes.len()
    }

    /// Objects that are pending or committed (not released), for leak
    /// checks.
    pub fn live_objects(&self) -> usize {
        self.lock()
            .objects
            .values()
            .filter(|o| o.state != ObjectState::Released)
            .count()
    }

    /// Checks the server's invariants (for property tests): `nlink` equals
    /// the entries naming each node, directories have exactly one entry
    /// (the root none), every non-root node is named, committed objects
    /// belong to their node, `used_bytes` is the sum of live objects.
    pub fn check_invariants(&self) -> Result<(), String> {
        let st = self.lock();
        let mut links: HashMap<NodeId, u32> = HashMap::new();
        for (dir, entries) in &st.dirs {
            if st.nodes.get(dir).map(|n| n.kind) != Some(Kind::Directory) {
                return Err(format!("entries under non-directory {dir}"));
            }
            for e in entries.values() {
                if !st.nodes.contains_key(&e.child) {
                    return Err(format!("entry names missing node {}", e.child));
                }
                *links.entry(e.child).or_default() += 1;
            }
        }
        for (id, n) in &st.nodes {
            let count = links.get(id).copied().unwrap_or(0);
            if count != n.nlink {
                return Err(format!("{id}: nlink {} but {count} entries", n.nlink));
            }
            if *id == NodeId::ROOT && count != 0 {
                return Err("the root is named".into());
            }
            if *id != NodeId::ROOT && count == 0 {
                return Err(format!("{id} has no entry"));
            }
            if n.kind == Kind::Directory && *id != NodeId::ROOT && count != 1 {
                return Err(format!("directory {id} has {count} entries"));
            }
            for o in &n.objects {
                if st.objects.get(o).map(|o| o.state) != Some(ObjectState::Committed(*id)) {
                    return Err(format!("{id} lists object {o} it does not own"));
                }
            }
        }
        let used: u64 = st
            .objects
            .values()
            .filter(|o| o.state != ObjectState::Released)
            .map(|o| o.data.len() as u64)
            .sum();
        if used != st.used {
            return Err(format!("used {} but live objects hold {used}", st.used));
        }
        Ok(())
    }
}

impl VaultApi for FakeVault {
    async fn create_node(
        &self,
        token: &AccessToken,
        req: &CreateNodeRequest,
    ) -> ApiResult<NodeInfo> {
        self.with(token, |s| s.create_node(req))
    }

    async fn nodes(&self, token: &AccessToken, req: &NodeIds) -> ApiResult<Vec<NodeInfo>> {
        self.with(token, |s| s.nodes(req))
    }

    async fn node(&self, token: &AccessToken, id: NodeId) -> ApiResult<NodeInfo> {
        self.with(token, |s| {
            s.node_gets += 1;
            s.info(id)
        })
    }

    async fn update_record(
        &self,
        token: &AccessToken,
        id: NodeId,
        req: &UpdateRecordRequest,
    ) -> ApiResult<NodeInfo> {
        self.with(token, |s| {
            s.record_puts += 1;
            s.update_record(id, req)
        })
    }

    async fn commit(
        &self,
        token: &AccessToken,
        id: NodeId,
        req: &CommitRequest,
    ) -> ApiResult<NodeInfo> {
        self.with(token, |s| s.commit(id, req))
    }

    async fn list(
        &self,
        token: &AccessToken,
        dir: NodeId,
        query: ListQuery,
    ) -> ApiResult<EntryPage> {
        self.with(token, |s| s.list(dir, query))
    }

    async fn lookup(
        &self,
        token: &AccessToken,
        dir: NodeId,
        tag: &NameTag,
    ) -> ApiResult<EntryInfo> {
        self.with(token, |s| s.lookup(dir, tag))
    }

    async fn lookup_batch(
        &self,
        token: &AccessToken,
        dir: NodeId,
        req: &NameTags,
    ) -> ApiResult<Vec<EntryInfo>> {
        self.with(token, |s| s.lookup_batch(dir, req))
    }

    async fn remove(
        &self,
        token: &AccessToken,
        dir: NodeId,
        tag: &NameTag,
        is_dir: bool,
    ) -> ApiResult<()> {
        self.with(token, |s| s.remove(dir, tag, is_dir))
    }

    async fn link(&self, token: &AccessToken, req: &LinkRequest) -> ApiResult<NodeInfo> {
        self.with(token, |s| s.link(req))
    }

    async fn rename(&self, token: &AccessToken, req: &RenameRequest) -> ApiResult<()> {
        self.with(token, |s| s.rename(req))
    }

    async fn upload_object(
        &self,
        token: &AccessToken,
        id: ObjectId,
        body: Bytes,
        crc32c: u32,
    ) -> ApiResult<()> {
        self.upload_gate.pass().await;
        self.with(token, |s| s.upload(id, body, crc32c))
    }

    async fn download_object(
        &self,
        token: &AccessToken,
        id: ObjectId,
        range: Option<ByteRange>,
    ) -> ApiResult<Vec<u8>> {
        self.with(token, |s| s.download(id, range).map(|b| b.to_vec()))
    }

    async fn batch(&self, token: &AccessToken, req: &BatchRequest) -> ApiResult<BatchResponse> {
        self.batch_gate.pass().await;
        self.with(token, |s| {
            s.batches += 1;
            s.batch(req)
        })
    }

    async fn statfs(&self, token: &AccessToken) -> ApiResult<StatFs> {
        self.with(token, |s| Ok(s.statfs()))
    }

    async fn changes(
        &self,
        token: &AccessToken,
        since: i64,
        limit: Option<u32>,
    ) -> ApiResult<ChangePage> {
        self.with(token, |s| s.changes(since, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::api::tree::{BatchCommit, InlineObject};

    fn tok() -> AccessToken {
        AccessToken::new("t".into())
    }

    fn id(n: u8) -> NodeId {
        NodeId::from_slice(&[n; 16]).unwrap()
    }

    fn obj(n: u8) -> ObjectId {
        ObjectId::from_slice(&[n; 16]).unwrap()
    }

    fn tag(n: u8) -> NameTag {
        NameTag::from_bytes([n; 32])
    }

    fn name(n: u8) -> Base64 {
        Base64(vec![n; 8])
    }

    fn code<T: std::fmt::Debug>(r: ApiResult<T>) -> ErrorCode {
        r.unwrap_err().code().unwrap()
    }

    /// A vault with its root.
    async fn vault() -> FakeVault {
        let v = FakeVault::new();
        let root = v.create_node(&tok(), &root_req()).await.unwrap();
        assert_eq!(
            (root.version, root.nlink, root.kind),
            (1, 0, Kind::Directory)
        );
        v
    }

    fn root_req() -> CreateNodeRequest {
        CreateNodeRequest {
            id: NodeId::ROOT,
            kind: Kind::Directory,
            record: Base64(vec![1]),
            entry: None,
            objects: Vec::new(),
        }
    }

    async fn mk(v: &FakeVault, parent: NodeId, t: u8, node: u8, kind: Kind) -> ApiResult<NodeInfo> {
        v.create_node(
            &tok(),
            &CreateNodeRequest {
                id: id(node),
                kind,
                record: Base64(vec![node]),
                entry: Some(EntrySpec {
                    parent,
                    tag: tag(t),
                    encrypted_name: name(t),
                }),
                objects: Vec::new(),
            },
        )
        .await
    }

    fn rename(
        src_parent: NodeId,
        src: u8,
        dst_parent: NodeId,
        dst: u8,
        mode: RenameMode,
    ) -> RenameRequest {
        RenameRequest {
            src_parent,
            src_tag: tag(src),
            dst_parent,
            dst_tag: tag(dst),
            dst_encrypted_name: name(dst),
            src_encrypted_name: (mode == RenameMode::Exchange).then(|| name(src)),
            mode,
        }
    }

    async fn upload(v: &FakeVault, o: u8, data: &[u8]) -> ApiResult<()> {
        v.upload_object(&tok(), obj(o), Bytes::copy_from_slice(data), crc32c(data))
            .await
    }

    async fn commit(v: &FakeVault, node: u8, expected: u64, objects: &[u8]) -> ApiResult<NodeInfo> {
        v.commit(
            &tok(),
            id(node),
            &CommitRequest {
                expected_version: expected,
                record: Base64(vec![9]),
                objects: objects.iter().map(|o| obj(*o)).collect(),
            },
        )
        .await
    }

    const R: NodeId = NodeId::ROOT;

    async fn ren(v: &FakeVault, r: RenameRequest) -> ApiResult<()> {
        v.rename(&tok(), &r).await
    }

    #[tokio::test]
    async fn root_and_creation_rules() {
        let v = FakeVault::new();
        let mut bad = root_req();
        bad.kind = Kind::File;
        assert_eq!(
            code(v.create_node(&tok(), &bad).await),
            ErrorCode::BadRequest
        );
        assert_eq!(code(mk(&v, R, 1, 1, Kind::File).await), ErrorCode::NotFound);
        v.create_node(&tok(), &root_req()).await.unwrap();
        assert_eq!(
            code(v.create_node(&tok(), &root_req()).await),
            ErrorCode::Exists
        );
        let f = mk(&v, R, 1, 1, Kind::File).await.unwrap();
        assert_eq!((f.version, f.nlink, f.size), (1, 1, 0));
        assert_eq!(code(mk(&v, R, 1, 2, Kind::File).await), ErrorCode::Exists);
        assert_eq!(code(mk(&v, R, 2, 1, Kind::File).await), ErrorCode::Exists);
        assert_eq!(
            code(mk(&v, id(1), 3, 3, Kind::File).await),
            ErrorCode::NotADirectory
        );
        assert_eq!(
            code(mk(&v, id(9), 3, 3, Kind::File).await),
            ErrorCode::NotFound
        );
        let mut no_entry = root_req();
        no_entry.id = id(5);
        assert_eq!(
            code(v.create_node(&tok(), &no_entry).await),
            ErrorCode::BadRequest
        );
        assert_eq!(v.statfs(&tok()).await.unwrap().nodes, 2);
        v.check_invariants().unwrap();
    }

    #[tokio::test]
    async fn records_need_the_current_version() {
        let v = vault().await;
        mk(&v, R, 1, 1, Kind::Symlink).await.unwrap();
        let up = |expected| UpdateRecordRequest {
            expected_version: expected,
            record: Base64(expected.to_le_bytes().to_vec()),
        };
        let n = v.update_record(&tok(), id(1), &up(1)).await.unwrap();
        assert_eq!(n.version, 2);
        let e = v.update_record(&tok(), id(1), &up(1)).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Conflict));
        assert!(e.to_string().contains("version 2"));
        assert_eq!(
            code(v.update_record(&tok(), id(7), &up(1)).await),
            ErrorCode::NotFound
        );
    }

    #[tokio::test]
    async fn commits_follow_the_object_rules() {
        let v = vault().await;
        mk(&v, R, 1, 1, Kind::File).await.unwrap();
        mk(&v, R, 2, 2, Kind::File).await.unwrap();
        mk(&v, R, 3, 3, Kind::Directory).await.unwrap();
        upload(&v, 1, b"hello").await.unwrap();
        upload(&v, 2, b"world!").await.unwrap();
        assert_eq!(code(commit(&v, 3, 1, &[]).await), ErrorCode::NotAFile);
        assert_eq!(code(commit(&v, 9, 1, &[]).await), ErrorCode::NotFound);
        assert_eq!(code(commit(&v, 1, 2, &[1]).await), ErrorCode::Conflict);
        assert_eq!(code(commit(&v, 1, 1, &[1, 7]).await), ErrorCode::NotFound);
        // A refused commit changed nothing: object 1 is still pending.
        let n = commit(&v, 1, 1, &[1, 2, 1]).await.unwrap();
        assert_eq!((n.version, n.size), (2, 11));
        // Committed to node 1: not usable by node 2.
        assert_eq!(code(commit(&v, 2, 1, &[1]).await), ErrorCode::NotFound);
        // Dropping object 2 releases it: no longer downloadable or usable.
        let n = commit(&v, 1, 2, &[1]).await.unwrap();
        assert_eq!((n.version, n.size), (3, 5));
        assert_eq!(
            code(v.download_object(&tok(), obj(2), None).await),
            ErrorCode::NotFound
        );
        assert_eq!(code(commit(&v, 1, 3, &[1, 2]).await), ErrorCode::NotFound);
        assert_eq!(code(upload(&v, 2, b"again").await), ErrorCode::Exists);
        assert_eq!(v.statfs(&tok()).await.unwrap().used_bytes, 5);
        v.check_invariants().unwrap();
    }

    /// A create with the file's objects, as the server's store decides.
    async fn mk_with(
        v: &FakeVault,
        parent: NodeId,
        t: u8,
        node: u8,
        kind: Kind,
        objects: &[u8],
    ) -> ApiResult<NodeInfo> {
        v.create_node(
            &tok(),
            &CreateNodeRequest {
                id: id(node),
                kind,
                record: Base64(vec![node]),
                entry: Some(EntrySpec {
                    parent,
                    tag: tag(t),
                    encrypted_name: name(t),
                }),
                objects: objects.iter().map(|o| obj(*o)).collect(),
            },
        )
        .await
    }

    #[tokio::test]
    async fn files_are_created_with_their_objects() {
        let v = vault().await;
        upload(&v, 1, b"hello").await.unwrap();
        upload(&v, 2, b"world!").await.unwrap();
        upload(&v, 3, b"").await.unwrap();
        let before = v.statfs(&tok()).await.unwrap();
        let f = mk_with(&v, R, 1, 1, Kind::File, &[1, 2, 1]).await.unwrap();
        assert_eq!((f.version, f.size, f.nlink), (1, 11, 1));
        assert_eq!(v.node(&tok(), id(1)).await.unwrap(), f);
        let after = v.statfs(&tok()).await.unwrap();
        assert_eq!(after.used_bytes, before.used_bytes, "reserved at upload");
        assert_eq!(after.seq, before.seq + 1, "one feed record");
        // Refusals in the server's order, each changing nothing.
        let refusals = [
            // Not a file (before the parent), a bad parent, a taken name or
            // id (before the objects), objects that are not pending.
            (R, 2, 2, Kind::Directory, vec![3], ErrorCode::NotAFile),
            (id(9), 2, 2, Kind::Symlink, vec![3], ErrorCode::NotAFile),
            (id(9), 2, 2, Kind::File, vec![3], ErrorCode::NotFound),
            (id(1), 2, 2, Kind::File, vec![7], ErrorCode::NotADirectory),
            (R, 1, 2, Kind::File, vec![7], ErrorCode::Exists),
            (R, 2, 1, Kind::File, vec![7], ErrorCode::Exists),
            (R, 2, 2, Kind::File, vec![3, 1], ErrorCode::NotFound),
            (R, 2, 2, Kind::File, vec![3, 7], ErrorCode::NotFound),
        ];
        for (parent, t, node, kind, objects, expected) in refusals {
            assert_eq!(
                code(mk_with(&v, parent, t, node, kind, &objects).await),
                expected,
                "{kind:?} {objects:?}"
            );
        }
        assert_eq!(v.statfs(&tok()).await.unwrap(), after);
        assert_eq!(code(v.node(&tok(), id(2)).await), ErrorCode::NotFound);
        // The next version releases what it drops, as after a commit.
        let n = commit(&v, 1, 1, &[2, 3]).await.unwrap();
        assert_eq!((n.version, n.size), (2, 6));
        assert_eq!(
            code(v.download_object(&tok(), obj(1), None).await),
            ErrorCode::NotFound
        );
        assert_eq!(v.statfs(&tok()).await.unwrap().used_bytes, 6);
        // In a batch: a new file with its inline object in one operation.
        let results = batch(
            &v,
            vec![inline(4, b"inline")],
            vec![
                BatchOp::Create(CreateNodeRequest {
                    id: id(5),
                    kind: Kind::File,
                    record: Base64(vec![5]),
                    entry: Some(EntrySpec {
                        parent: R,
                        tag: tag(5),
                        encrypted_name: name(5),
                    }),
                    objects: vec![obj(4)],
                }),
                create_op(R, 6, 6, Kind::Fifo),
            ],
        )
        .await
        .unwrap();
        assert!(
            matches!(&results[..], [BatchOutcome::Ok(n), BatchOutcome::Ok(_)] if n.size == 6 && n.version == 1),
            "{results:?}"
        );
        v.check_invariants().unwrap();
    }

    #[tokio::test]
    async fn uploads_check_digest_quota_and_ids_and_ranges_resolve() {
        let v = vault().await;
        let e = v
            .upload_object(&tok(), obj(1), Bytes::from_static(b"abc"), crc32c(b"abd"))
            .await;
        assert_eq!(code(e), ErrorCode::DigestMismatch);
        // The id stays taken, as on the server until its collector runs.
        assert_eq!(code(upload(&v, 1, b"abc").await), ErrorCode::Exists);
        v.set_quota(10);
        upload(&v, 2, b"0123456789").await.unwrap();
        assert_eq!(code(upload(&v, 3, b"x").await), ErrorCode::QuotaExceeded);
        v.set_max_object(4);
        v.set_quota(100);
        assert_eq!(
            code(upload(&v, 4, b"01234").await),
            ErrorCode::PayloadTooLarge
        );
        let t = tok();
        let get = |r| v.download_object(&t, obj(2), r);
        assert_eq!(&get(None).await.unwrap()[..], b"0123456789");
        let span = |first, last| Some(ByteRange::Span { first, last });
        assert_eq!(&get(span(2, 4)).await.unwrap()[..], b"234");
        assert_eq!(&get(span(8, 99)).await.unwrap()[..], b"89");
        assert_eq!(&get(Some(ByteRange::Suffix(3))).await.unwrap()[..], b"789");
        assert_eq!(&get(Some(ByteRange::From(9))).await.unwrap()[..], b"9");
        assert_eq!(
            code(get(span(10, 11)).await),
            ErrorCode::RangeNotSatisfiable
        );
        assert_eq!(code(get(span(5, 4)).await), ErrorCode::RangeNotSatisfiable);
        assert_eq!(
            code(v.download_object(&tok(), obj(9), None).await),
            ErrorCode::NotFound
        );
        v.check_invariants().unwrap();
    }

    fn inline(o: u8, data: &[u8]) -> InlineObject {
        InlineObject {
            id: obj(o),
            data: Base64(data.to_vec()),
            sha256: Base64(sha256(data).to_vec()),
        }
    }

    fn create_op(parent: NodeId, t: u8, node: u8, kind: Kind) -> BatchOp {
        BatchOp::Create(CreateNodeRequest {
            id: id(node),
            kind,
            record: Base64(vec![node]),
            entry: Some(EntrySpec {
                parent,
                tag: tag(t),
                encrypted_name: name(t),
            }),
            objects: Vec::new(),
        })
    }

    fn commit_op(node: u8, expected: u64, objects: &[u8]) -> BatchOp {
        BatchOp::Commit(BatchCommit {
            id: id(node),
            commit: CommitRequest {
                expected_version: expected,
                record: Base64(vec![9]),
                objects: objects.iter().map(|o| obj(*o)).collect(),
            },
        })
    }

    async fn batch(
        v: &FakeVault,
        objects: Vec<InlineObject>,
        ops: Vec<BatchOp>,
    ) -> ApiResult<Vec<BatchOutcome>> {
        v.batch(&tok(), &BatchRequest { objects, ops })
            .await
            .map(|r| r.results)
    }

    /// The status and code of each outcome (`None` for a success).
    fn outcomes(results: &[BatchOutcome]) -> Vec<Option<(u16, ErrorCode)>> {
        results
            .iter()
            .map(|r| match r {
                BatchOutcome::Ok(_) => None,
                BatchOutcome::Err(e) => Some((e.status, e.error.code)),
            })
            .collect()
    }

    #[tokio::test]
    async fn batch_runs_each_operation_on_its_own_in_order() {
        let v = vault().await;
        mk(&v, R, 1, 1, Kind::File).await.unwrap();
        let seq = v.statfs(&tok()).await.unwrap().seq;
        let results = batch(
            &v,
            vec![inline(1, b"hello"), inline(2, b"world!")],
            vec![
                // A new node committed in the same batch, with an object.
                create_op(R, 2, 2, Kind::File),
                commit_op(2, 1, &[1]),
                // A taken name, then a stale version: refused, and the
                // next operations still run.
                create_op(R, 1, 3, Kind::File),
                commit_op(1, 2, &[2]),
                commit_op(1, 1, &[2]),
                // Object 1 is node 2's now.
                commit_op(1, 2, &[1]),
                create_op(id(9), 4, 4, Kind::File),
                create_op(id(1), 5, 5, Kind::File),
                commit_op(2, 2, &[1]),
            ],
        )
        .await
        .unwrap();
        assert_eq!(
            outcomes(&results),
            [
                None,
                None,
                Some((409, ErrorCode::Exists)),
                Some((409, ErrorCode::Conflict)),
                None,
                Some((404, ErrorCode::NotFound)),
                Some((404, ErrorCode::NotFound)),
                Some((409, ErrorCode::NotADirectory)),
                None,
            ]
        );
        let BatchOutcome::Ok(two) = &results[1] else {
            panic!("{results:?}");
        };
        assert_eq!((two.id, two.version, two.size), (id(2), 2, 5));
        let BatchOutcome::Ok(one) = &results[4] else {
            panic!("{results:?}");
        };
        assert_eq!((one.version, one.size), (2, 6));
        let BatchOutcome::Err(stale) = &results[3] else {
            panic!("{results:?}");
        };
        assert!(stale.error.message.contains("version 1"), "{stale:?}");
        // Only what succeeded is in the tree and the feed, in order.
        assert_eq!(code(v.node(&tok(), id(3)).await), ErrorCode::NotFound);
        let page = v.changes(&tok(), seq, None).await.unwrap();
        let feed: Vec<(NodeId, Option<NodeId>)> =
            page.changes.iter().map(|c| (c.node, c.parent)).collect();
        assert_eq!(
            feed,
            [
                (id(2), Some(R)),
                (id(2), None),
                (id(1), None),
                (id(2), None)
            ]
        );
        let got = v.download_object(&tok(), obj(1), None).await.unwrap();
        assert_eq!(&got[..], b"hello");
        assert_eq!(v.statfs(&tok()).await.unwrap().used_bytes, 11);
        // The root is never created in a batch.
        let results = batch(&v, vec![], vec![BatchOp::Create(root_req())])
            .await
            .unwrap();
        assert_eq!(outcomes(&results), [Some((400, ErrorCode::BadRequest))]);
        v.check_invariants().unwrap();
    }

    #[tokio::test]
    async fn batch_objects_are_all_or_none() {
        let v = vault().await;
        upload(&v, 1, b"taken").await.unwrap();
        v.set_quota(15);
        let before = v.statfs(&tok()).await.unwrap();
        let ops = || vec![create_op(R, 1, 1, Kind::File), commit_op(1, 1, &[2, 3])];
        let mut mismatch = inline(3, b"real");
        mismatch.data = Base64(b"fake".to_vec());
        let mut short = inline(3, b"x");
        short.sha256 = Base64(vec![0; 31]);
        for (objects, expected) in [
            (vec![inline(2, b"ok"), mismatch], ErrorCode::DigestMismatch),
            (vec![inline(2, b"ok"), short], ErrorCode::BadRequest),
            (
                vec![inline(2, b"ok"), inline(1, b"again")],
                ErrorCode::Exists,
            ),
            (vec![inline(2, b"ok"), inline(2, b"ok")], ErrorCode::Exists),
            (
                vec![inline(2, b"12345"), inline(3, b"123456")],
                ErrorCode::QuotaExceeded,
            ),
        ] {
            assert_eq!(code(batch(&v, objects, ops()).await), expected);
            // Nothing reserved, stored or run.
            assert_eq!(v.statfs(&tok()).await.unwrap(), before);
            assert_eq!(
                code(v.download_object(&tok(), obj(2), None).await),
                ErrorCode::NotFound
            );
        }
        v.set_max_object(4);
        assert_eq!(
            code(batch(&v, vec![inline(2, b"12345")], ops()).await),
            ErrorCode::PayloadTooLarge
        );
        v.set_max_object(DEFAULT_MAX_OBJECT);
        // No id was burnt by the refusals: the same objects now fit.
        let results = batch(&v, vec![inline(2, b"12345"), inline(3, b"12345")], ops())
            .await
            .unwrap();
        assert_eq!(outcomes(&results), [None, None]);
        assert_eq!(
            v.statfs(&tok()).await.unwrap().used_bytes,
            before.used_bytes + 10
        );
        v.check_invariants().unwrap();
    }

    #[tokio::test]
    async fn batch_limits() {
        let v = vault().await;
        let ops: Vec<BatchOp> = (0..=BATCH_MAX_OPS).map(|_| commit_op(1, 1, &[])).collect();
        assert_eq!(code(batch(&v, vec![], ops).await), ErrorCode::BadRequest);
        let objects: Vec<InlineObject> = (0..=BATCH_MAX_OBJECTS).map(|_| inline(1, b"")).collect();
        assert_eq!(
            code(batch(&v, objects, vec![]).await),
            ErrorCode::BadRequest
        );
        let big = vec![0; BATCH_MAX_INLINE_OBJECT + 1];
        assert_eq!(
            code(batch(&v, vec![inline(1, &big)], vec![]).await),
            ErrorCode::PayloadTooLarge
        );
        let most = vec![0; BATCH_MAX_INLINE_OBJECT];
        let n = BATCH_MAX_INLINE_BYTES / BATCH_MAX_INLINE_OBJECT;
        let all: Vec<InlineObject> = (0..=n)
            .map(|i| inline(u8::try_from(i).unwrap(), &most))
            .collect();
        assert_eq!(
            code(batch(&v, all, vec![]).await),
            ErrorCode::PayloadTooLarge
        );
        // Exactly at the limits is fine.
        let all: Vec<InlineObject> = (0..n)
            .map(|i| inline(u8::try_from(i).unwrap(), &most))
            .collect();
        assert!(batch(&v, all, vec![]).await.unwrap().is_empty());
        assert_eq!(
            v.statfs(&tok()).await.unwrap().used_bytes,
            BATCH_MAX_INLINE_BYTES as u64
        );
        v.check_invariants().unwrap();
    }

    #[tokio::test]
    async fn rename_replace_noreplace_exchange() {
        let v = vault().await;
        mk(&v, R, 1, 1, Kind::File).await.unwrap();
        mk(&v, R, 2, 2, Kind::File).await.unwrap();
        mk(&v, R, 3, 3, Kind::Directory).await.unwrap();
        mk(&v, R, 4, 4, Kind::Directory).await.unwrap();
        upload(&v, 1, b"two").await.unwrap();
        commit(&v, 2, 1, &[1]).await.unwrap();
        assert_eq!(
            code(ren(&v, rename(R, 1, R, 2, RenameMode::NoReplace)).await),
            ErrorCode::Exists
        );
        // NoReplace onto itself is still `exists`; Replace onto itself is a no-op.
        assert_eq!(
            code(ren(&v, rename(R, 1, R, 1, RenameMode::NoReplace)).await),
            ErrorCode::Exists
        );
        ren(&v, rename(R, 1, R, 1, RenameMode::Replace))
            .await
            .unwrap();
        assert_eq!(
            code(ren(&v, rename(R, 1, R, 9, RenameMode::Exchange)).await),
            ErrorCode::NotFound
        );
        assert_eq!(
            code(ren(&v, rename(R, 9, R, 1, RenameMode::Replace)).await),
            ErrorCode::NotFound
        );
        assert_eq!(
            code(ren(&v, rename(R, 1, R, 3, RenameMode::Replace)).await),
            ErrorCode::IsADirectory
        );
        assert_eq!(
            code(ren(&v, rename(R, 3, R, 1, RenameMode::Replace)).await),
            ErrorCode::NotADirectory
        );
        assert_eq!(
            code(ren(&v, rename(R, 1, id(1), 1, RenameMode::Replace)).await),
            ErrorCode::NotADirectory
        );
        // Replace a file: the old node goes with its object.
        ren(&v, rename(R, 1, R, 2, RenameMode::Replace))
            .await
            .unwrap();
        assert_eq!(code(v.node(&tok(), id(2)).await), ErrorCode::NotFound);
        assert_eq!(v.lookup(&tok(), R, &tag(2)).await.unwrap().node.id, id(1));
        assert_eq!(
            code(v.lookup(&tok(), R, &tag(1)).await),
            ErrorCode::NotFound
        );
        assert_eq!(v.statfs(&tok()).await.unwrap().used_bytes, 0);
        // A directory replaces an empty one, not a non-empty one.
        mk(&v, id(4), 5, 5, Kind::File).await.unwrap();
        assert_eq!(
            code(ren(&v, rename(R, 3, R, 4, RenameMode::Replace)).await),
            ErrorCode::NotEmpty
        );
        ren(&v, rename(R, 4, R, 3, RenameMode::Replace))
            .await
            .unwrap();
        assert_eq!(v.lookup(&tok(), R, &tag(3)).await.unwrap().node.id, id(4));
        // Exchange a file and a directory, across directories.
        ren(&v, rename(R, 2, id(4), 5, RenameMode::Exchange))
            .await
            .unwrap();
        assert_eq!(v.lookup(&tok(), R, &tag(2)).await.unwrap().node.id, id(5));
        assert_eq!(
            v.lookup(&tok(), id(4), &tag(5)).await.unwrap().node.id,
            id(1)
        );
        // Exchange without the second name is refused.
        let mut no_name = rename(R, 2, id(4), 5, RenameMode::Exchange);
        no_name.src_encrypted_name = None;
        assert_eq!(code(ren(&v, no_name).await), ErrorCode::InvalidMove);
        v.check_invariants().unwrap();
    }

    #[tokio::test]
    async fn directories_cannot_move_into_their_own_subtree() {
        let v = vault().await;
        mk(&v, R, 1, 1, Kind::Directory).await.unwrap();
        mk(&v, id(1), 2, 2, Kind::Directory).await.unwrap();
        mk(&v, id(2), 3, 3, Kind::Directory).await.unwrap();
        mk(&v, R, 4, 4, Kind::Directory).await.unwrap();
        let t = tok();
        for (dst, mode) in [
            (id(1), RenameMode::Replace),
            (id(2), RenameMode::NoReplace),
            (id(3), RenameMode::Replace),
        ] {
            assert_eq!(
                code(v.rename(&t, &rename(R, 1, dst, 9, mode)).await),
                ErrorCode::InvalidMove
            );
        }
        // Exchange: either side ending inside itself.
        mk(&v, id(3), 5, 5, Kind::File).await.unwrap();
        assert_eq!(
            code(
                v.rename(&t, &rename(R, 1, id(3), 5, RenameMode::Exchange))
                    .await
            ),
            ErrorCode::InvalidMove
        );
        assert_eq!(
            code(
                v.rename(&t, &rename(id(3), 5, R, 1, RenameMode::Exchange))
                    .await
            ),
            ErrorCode::InvalidMove
        );
        // Moving down elsewhere and back up is fine.
        v.rename(&t, &rename(R, 4, id(3), 4, RenameMode::NoReplace))
            .await
            .unwrap();
        v.rename(&t, &rename(id(3), 4, R, 4, RenameMode::NoReplace))
            .await
            .unwrap();
        v.check_invariants().unwrap();
    }

    #[tokio::test]
    async fn unlink_rmdir_and_hard_links() {
        let v = vault().await;
        mk(&v, R, 1, 1, Kind::Directory).await.unwrap();
        mk(&v, id(1), 2, 2, Kind::File).await.unwrap();
        let t = tok();
        assert_eq!(
            code(v.remove(&t, R, &tag(1), true).await),
            ErrorCode::NotEmpty
        );
        assert_eq!(
            code(v.remove(&t, R, &tag(1), false).await),
            ErrorCode::IsADirectory
        );
        assert_eq!(
            code(v.remove(&t, id(1), &tag(2), true).await),
            ErrorCode::NotADirectory
        );
        assert_eq!(
            code(v.remove(&t, R, &tag(9), false).await),
            ErrorCode::NotFound
        );
        let link = |parent, tg: u8, child| LinkRequest {
            entry: EntrySpec {
                parent,
                tag: tag(tg),
                encrypted_name: name(tg),
            },
            child,
        };
        assert_eq!(
            code(v.link(&t, &link(R, 5, id(1))).await),
            ErrorCode::IsADirectory
        );
        assert_eq!(
            code(v.link(&t, &link(R, 5, id(7))).await),
            ErrorCode::NotFound
        );
        assert_eq!(
            code(v.link(&t, &link(R, 1, id(2))).await),
            ErrorCode::Exists
        );
        assert_eq!(v.link(&t, &link(R, 5, id(2))).await.unwrap().nlink, 2);
        upload(&v, 1, b"data").await.unwrap();
        commit(&v, 2, 1, &[1]).await.unwrap();
        // Rename onto another link of the same node: nothing happens.
        v.rename(&t, &rename(R, 5, id(1), 2, RenameMode::Replace))
            .await
            .unwrap();
        assert_eq!(v.node(&t, id(2)).await.unwrap().nlink, 2);
        v.remove(&t, id(1), &tag(2), false).await.unwrap();
        let n = v.node(&t, id(2)).await.unwrap();
        assert_eq!((n.nlink, n.size), (1, 4));
        v.remove(&t, R, &tag(1), true).await.unwrap();
        v.remove(&t, R, &tag(5), false).await.unwrap();
        assert_eq!(code(v.node(&t, id(2)).await), ErrorCode::NotFound);
        assert_eq!(v.live_objects(), 0);
        let s = v.statfs(&t).await.unwrap();
        assert_eq!((s.nodes, s.used_bytes), (1, 0));
        v.check_invariants().unwrap();
    }

    #[tokio::test]
    async fn listing_pages_in_tag_order_and_batches_keep_the_order_asked() {
        let v = vault().await;
        for n in [9u8, 3, 7, 1, 5] {
            mk(&v, R, n, n, Kind::File).await.unwrap();
        }
        let t = tok();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = v
                .list(
                    &t,
                    R,
                    ListQuery {
                        after,
                        limit: Some(2),
                    },
                )
                .await
                .unwrap();
            assert!(page.entries.len() <= 2);
            seen.extend(page.entries.iter().map(|e| e.tag));
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, [1, 3, 5, 7, 9].map(tag));
        // An exactly full last page has no `next`.
        let page = v
            .list(
                &t,
                R,
                ListQuery {
                    after: Some(tag(5)),
                    limit: Some(2),
                },
            )
            .await
            .unwrap();
        assert_eq!((page.entries.len(), page.next), (2, None));
        for bad in [0, 1001] {
            let q = ListQuery {
                after: None,
                limit: Some(bad),
            };
            assert_eq!(code(v.list(&t, R, q).await), ErrorCode::BadRequest);
        }
        assert_eq!(
            code(v.list(&t, id(1), ListQuery::default()).await),
            ErrorCode::NotADirectory
        );
        let got = v
            .nodes(
                &t,
                &NodeIds {
                    ids: vec![id(7), id(8), id(1), id(7)],
                },
            )
            .await
            .unwrap();
        assert_eq!(got.iter().map(|n| n.id).collect::<Vec<_>>(), [id(7), id(1)]);
        let got = v
            .lookup_batch(
                &t,
                R,
                &NameTags {
                    tags: vec![tag(9), tag(2), tag(3), tag(9)],
                },
            )
            .await
            .unwrap();
        assert_eq!(
            got.iter().map(|e| e.tag).collect::<Vec<_>>(),
            [tag(9), tag(3)]
        );
        assert_eq!(
            code(v.lookup_batch(&t, id(1), &NameTags { tags: vec![] }).await),
            ErrorCode::NotADirectory
        );
        // A lookup under a file is just a missing name.
        assert_eq!(
            code(v.lookup(&t, id(1), &tag(1)).await),
            ErrorCode::NotFound
        );
    }

    #[tokio::test]
    async fn the_feed_records_each_node_and_directory_touched() {
        let v = vault().await;
        mk(&v, R, 1, 1, Kind::Directory).await.unwrap();
        mk(&v, R, 2, 2, Kind::File).await.unwrap();
        let t = tok();
        let before = v.statfs(&t).await.unwrap().seq;
        v.rename(&t, &rename(R, 2, id(1), 2, RenameMode::Replace))
            .await
            .unwrap();
        // Refused changes write nothing.
        assert!(v.remove(&t, R, &tag(1), true).await.is_err());
        upload(&v, 1, b"x").await.unwrap();
        let page = v.changes(&t, before, None).await.unwrap();
        let got: Vec<_> = page.changes.iter().map(|c| (c.node, c.parent)).collect();
        assert_eq!(got, [(id(2), Some(R)), (id(2), Some(id(1)))]);
        assert_eq!(page.latest, before + 2);
        assert_eq!(page.changes[0].seq, before + 1);
        let all = v.changes(&t, 0, Some(1)).await.unwrap();
        assert_eq!((all.changes.len(), all.latest), (1, before + 2));
        assert_eq!(code(v.changes(&t, -1, None).await), ErrorCode::BadRequest);
    }

    #[tokio::test]
    async fn tokens_and_injected_failures() {
        let v = vault().await;
        v.accept_only(&AccessToken::new("good".into()));
        let bad = v.statfs(&tok()).await.unwrap_err();
        assert!(bad.is_unauthorized());
        v.fail_next(Injected::Unreachable);
        let good = AccessToken::new("good".into());
        assert!(matches!(
            v.statfs(&good).await,
            Err(ApiError::Unreachable { .. })
        ));
        assert_eq!(v.statfs(&good).await.unwrap().nodes, 1);
    }
}
