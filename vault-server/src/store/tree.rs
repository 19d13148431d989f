//! The encrypted tree: nodes, directory entries and the objects that hold
//! file contents, per account. The server sees only ids, kinds, sizes, the
//! shape of the tree and opaque sealed bytes; [`TreeStore`] enforces
//! ownership, POSIX directory rules, optimistic concurrency and quota.
//!
//! Invariants every implementation keeps, each in one transaction:
//! - every row is scoped by its owner; an id of another account behaves
//!   exactly like a missing one;
//! - `(owner, parent, tag)` is unique; a directory has exactly one entry
//!   pointing at it (no hard links to directories), the root none;
//! - a node's `nlink` equals the number of entries pointing at it; a node
//!   whose last entry goes is deleted with its objects (released for purge);
//! - a node's `version` only grows by one per record change, and a change
//!   names the version it expects (409 otherwise);
//! - an object belongs to at most one node; `used_bytes` of the account is
//!   the sum of its live objects' sizes and never exceeds its quota;
//! - every mutation appends to the account's change feed with the next value
//!   of its per-account sequence.
//!
//! Clarifications of the contracts below, as implemented:
//! - a change refused with an error changes nothing (its transaction rolls
//!   back, sequence number included);
//! - the root has no entry, so no rename or removal can name it: it can
//!   neither be moved nor removed;
//! - a tree change writes one feed record per (node, directory) pair it
//!   touches: e.g. a move writes the node with the old and with the new
//!   directory; object bookkeeping (reserve, abandon, release, purge) changes
//!   no node and writes none;
//! - `updated_at` of a node also changes when it gains or loses an entry;
//! - a mutation for an account that does not exist fails with `NotFound`
//!   (it owns nothing).

use async_trait::async_trait;
use common::crypto::attrs::NodeKind;
use common::crypto::name::NameTag;
use common::{NodeId, ObjectId};

use super::{AccountId, StoreError};
use crate::blob::Checksum;

/// What a `*_in_session` read of [`TreeStore`] found: the session's
/// account and whether the session was revoked, and what was asked for if
/// that account has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InSession<T> {
    /// The account the session belongs to.
    pub account: AccountId,
    /// The session was revoked (logout, reuse of a refresh token, ...).
    pub revoked: bool,
    /// What was asked for, when the session's account has it.
    pub found: Option<T>,
}

/// A node as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    /// Client-chosen id (the root is [`NodeId::ROOT`]).
    pub id: NodeId,
    /// File, directory, symlink, fifo or socket.
    pub kind: NodeKind,
    /// Version of the sealed record (1 at creation).
    pub version: u64,
    /// The sealed attribute record, bound by the client to (id, version).
    pub record: Vec<u8>,
    /// Total ciphertext bytes of the node's committed objects.
    pub size: u64,
    /// Entries pointing at the node.
    pub nlink: u32,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds of the last change.
    pub updated_at: i64,
}

/// A directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRow {
    /// The directory.
    pub parent: NodeId,
    /// Keyed hash of the name (unique within the directory).
    pub tag: NameTag,
    /// The encrypted name (sealed box bound to parent and child).
    pub encrypted_name: Vec<u8>,
    /// The node it names.
    pub child: NodeId,
}

/// A new node and the entry that names it.
#[derive(Debug, Clone)]
pub struct NewNode {
    /// Client-chosen id.
    pub id: NodeId,
    /// Its kind.
    pub kind: NodeKind,
    /// Sealed record for version 1.
    pub record: Vec<u8>,
    /// Where it goes: `None` only for the root ([`NodeId::ROOT`]), created
    /// once per account.
    pub entry: Option<NewEntry>,
    /// For a file: the objects of version 1 (a set), as
    /// [`TreeStore::commit_version`] takes them; empty for a node without
    /// contents.
    pub objects: Vec<ObjectId>,
}

/// An entry to add.
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// The directory.
    pub parent: NodeId,
    /// The name's tag.
    pub tag: NameTag,
    /// The encrypted name.
    pub encrypted_name: Vec<u8>,
}

/// How a rename treats an existing target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenameMode {
    /// Replace an existing target atomically (POSIX `rename`).
    Replace,
    /// Fail with [`TreeError::EntryExists`] if the target exists
    /// (`RENAME_NOREPLACE`).
    NoReplace,
    /// Swap source and target, which must both exist (`RENAME_EXCHANGE`).
    Exchange,
}

/// A rename or move.
#[derive(Debug, Clone)]
pub struct Rename {
    /// Source directory and name tag.
    pub src_parent: NodeId,
    /// Source tag.
    pub src_tag: NameTag,
    /// Target directory.
    pub dst_parent: NodeId,
    /// Target tag.
    pub dst_tag: NameTag,
    /// The source node's name re-encrypted for (dst_parent, source child).
    pub dst_encrypted_name: Vec<u8>,
    /// For [`RenameMode::Exchange`]: the target node's name re-encrypted for
    /// (src_parent, target child).
    pub src_encrypted_name: Option<Vec<u8>>,
    /// Replace, no-replace or exchange.
    pub mode: RenameMode,
}

/// What a removal freed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Released {
    /// Nodes deleted because their last entry went.
    pub nodes: Vec<NodeId>,
    /// Objects of those nodes (or replaced by a commit), now queued for purge
    /// from the blob store.
    pub objects: Vec<ObjectId>,
}

/// A new version of a file, for [`TreeStore::batch`]: the arguments of
/// [`TreeStore::commit_version`].
#[derive(Debug, Clone)]
pub struct NewVersion {
    /// The file.
    pub id: NodeId,
    /// The version the change is based on.
    pub expected_version: u64,
    /// The sealed record of the new version.
    pub record: Vec<u8>,
    /// Exactly the objects of the new version (a set).
    pub objects: Vec<ObjectId>,
}

/// One operation of [`TreeStore::batch`].
#[derive(Debug, Clone)]
pub enum TreeOp {
    /// As [`TreeStore::create_node`], but never the root: a node without an
    /// entry is refused with `InvalidMove`.
    Create(NewNode),
    /// As [`TreeStore::commit_version`].
    Commit(NewVersion),
    /// As [`TreeStore::update_record`].
    Record(NewRecord),
}

/// A record change, for [`TreeOp::Record`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRecord {
    /// The node.
    pub id: NodeId,
    /// The version the change is based on.
    pub expected_version: u64,
    /// The sealed record of the new version.
    pub record: Vec<u8>,
}

/// What one [`TreeOp`] answers: the node as it is afterwards, and what a
/// commit released (nothing for a create or a record change).
pub type TreeOpResult = Result<(NodeRow, Released), TreeError>;

/// An object to reserve, for [`TreeStore::reserve_objects`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewObject {
    /// Client-chosen id.
    pub id: ObjectId,
    /// Ciphertext bytes.
    pub size: u64,
    /// The checksum its upload announced.
    pub checksum: Checksum,
}

/// An object's bookkeeping row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRow {
    /// Client-chosen id.
    pub id: ObjectId,
    /// The node it is committed to; `None` while pending (uploaded, not yet
    /// part of a version).
    pub node: Option<NodeId>,
    /// Ciphertext bytes.
    pub size: u64,
    /// The checksum its upload announced.
    pub checksum: Checksum,
    /// Unix seconds.
    pub created_at: i64,
}

/// One change-feed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRow {
    /// Per-account sequence number (strictly increasing, no reuse).
    pub seq: i64,
    /// The node that changed (created, record or contents changed, deleted,
    /// or gained/lost an entry).
    pub node: NodeId,
    /// The directory whose listing changed, if any.
    pub parent: Option<NodeId>,
}

/// Usage of an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of live objects (pending and committed).
    pub used_bytes: u64,
    /// The account's quota in bytes.
    pub quota_bytes: u64,
    /// Number of nodes.
    pub nodes: u64,
    /// The latest change sequence number.
    pub seq: i64,
}

/// Why a tree operation was refused. Each maps to one HTTP status / errno.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// No such node, entry or object (or not the caller's).
    #[error("not found")]
    NotFound,
    /// The target name exists (or the node/object id is taken).
    #[error("already exists")]
    EntryExists,
    /// A directory was expected.
    #[error("not a directory")]
    NotADirectory,
    /// A non-directory was expected (hard link or replace of a directory).
    #[error("is a directory")]
    IsADirectory,
    /// The directory is not empty.
    #[error("directory not empty")]
    NotEmpty,
    /// A directory would be moved into itself or its own subtree, or the
    /// root would be moved or removed.
    #[error("invalid move")]
    InvalidMove,
    /// The node's version is not the one the change expected.
    #[error("version conflict: the node is at version {current}")]
    VersionConflict {
        /// The current version.
        current: u64,
    },
    /// The operation needs a regular file.
    #[error("not a regular file")]
    NotAFile,
    /// Storing this would exceed the account's quota.
    #[error("quota exceeded")]
    QuotaExceeded,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The tree of every account.
#[async_trait]
pub trait TreeStore: Send + Sync {
    /// Creates a node and its entry (or the root). Fails with `NotFound` /
    /// `NotADirectory` for a bad parent, `EntryExists` for a taken name or
    /// node id (so also for a second root). `InvalidMove` for a node other
    /// than [`NodeId::ROOT`] without an entry or for the root with one;
    /// `NotADirectory` for a root that is not a directory.
    ///
    /// A file may be created with its first contents (`new.objects`): as
    /// [`Self::commit_version`] takes them, each must be the caller's and
    /// pending, they become the node's and its `size` is their sum (their
    /// bytes were reserved when they were; the quota does not change).
    /// Objects for any other kind: `NotAFile`. Checks in this order: the
    /// root rules above, `NotAFile`, the parent, `EntryExists`, then
    /// `NotFound` for any listed object that is missing, another account's,
    /// released or committed. One feed record, as for any create.
    async fn create_node(
        &self,
        owner: AccountId,
        new: &NewNode,
        now: i64,
    ) -> Result<NodeRow, TreeError>;

    /// Adds another entry for an existing non-directory node (a hard link):
    /// `NotFound` for a missing node, `IsADirectory` for a directory, then
    /// the parent and name checks of [`Self::create_node`]. The node's
    /// `nlink` grows by one.
    async fn link(
        &self,
        owner: AccountId,
        entry: &NewEntry,
        child: NodeId,
        now: i64,
    ) -> Result<NodeRow, TreeError>;

    /// One node.
    async fn node(&self, owner: AccountId, id: NodeId) -> Result<Option<NodeRow>, TreeError>;

    /// One node of the account that session `session` belongs to, read
    /// together with that session in one query: `None` when there is no
    /// such session. For `GET /v1/nodes/{id}`, every file's open (close-to-
    /// open), which would otherwise take two queries.
    async fn node_in_session(
        &self,
        session: &str,
        id: NodeId,
    ) -> Result<Option<InSession<NodeRow>>, TreeError>;

    /// [`Self::lookup`] in the account that session `session` belongs to,
    /// read together with that session in one query (every path step of a
    /// cold walk): `None` when there is no such session.
    async fn lookup_in_session(
        &self,
        session: &str,
        parent: NodeId,
        tag: &NameTag,
    ) -> Result<Option<InSession<(EntryRow, NodeRow)>>, TreeError>;

    /// Several nodes (missing ones are left out), for batch requests: in the
    /// order of `ids`, each once.
    async fn nodes(&self, owner: AccountId, ids: &[NodeId]) -> Result<Vec<NodeRow>, TreeError>;

    /// The entry `tag` in `parent` and the node it names.
    async fn lookup(
        &self,
        owner: AccountId,
        parent: NodeId,
        tag: &NameTag,
    ) -> Result<Option<(EntryRow, NodeRow)>, TreeError>;

    /// Up to `limit` entries of `parent` with tags after `after`, in tag
    /// order, each with its node: one page of a listing. `NotFound` /
    /// `NotADirectory` for a bad parent.
    async fn list(
        &self,
        owner: AccountId,
        parent: NodeId,
        after: Option<&NameTag>,
        limit: u32,
    ) -> Result<Vec<(EntryRow, NodeRow)>, TreeError>;

    /// Replaces the sealed record if the node is at `expected_version`; the
    /// node is then at `expected_version + 1`.
    async fn update_record(
        &self,
        owner: AccountId,
        id: NodeId,
        expected_version: u64,
        record: &[u8],
        now: i64,
    ) -> Result<NodeRow, TreeError>;

    /// Commits a new version of a file: if the node is at `expected_version`,
    /// its record is replaced and its objects become exactly `objects` (each
    /// must be the caller's and either pending or already this node's);
    /// objects it had that are not listed are released for purge. The node's
    /// `size` becomes the sum of its objects' sizes.
    ///
    /// Checks in this order: `NotFound` (node), `NotAFile`,
    /// `VersionConflict`, then `NotFound` for any listed object that is
    /// missing, another account's, released, or committed to another node.
    /// `objects` is a set: an id listed twice counts once.
    async fn commit_version(
        &self,
        owner: AccountId,
        id: NodeId,
        expected_version: u64,
        record: &[u8],
        objects: &[ObjectId],
        now: i64,
    ) -> Result<(NodeRow, Released), TreeError>;

    /// Renames or moves an entry atomically, with POSIX rules: replacing a
    /// directory needs an empty directory and a directory source; a file
    /// cannot replace a directory (`IsADirectory`) nor a directory a file
    /// (`NotADirectory`); a directory cannot move into its own subtree
    /// (`InvalidMove`). A replaced node loses an entry (and is deleted with
    /// its objects if that was its last).
    ///
    /// As Linux's `renameat2` decides, in this order: `NotFound` /
    /// `NotADirectory` for a bad source or target directory, `NotFound` for
    /// a missing source entry; `EntryExists` for `NoReplace` onto an existing
    /// entry (even the source itself); `NotFound` for `Exchange` without a
    /// target; success without any change when source and target name the
    /// same node (the same entry, or two links of one file); `InvalidMove`
    /// when a directory would end up inside itself (for `Exchange`, either
    /// of the two); then the type rules of `Replace` and `NotEmpty`.
    /// `Exchange` needs `src_encrypted_name` (`InvalidMove` without it) and
    /// may swap a file with a directory.
    async fn rename(&self, owner: AccountId, op: &Rename, now: i64) -> Result<Released, TreeError>;

    /// Removes an entry: `dir` says whether the caller expects a directory
    /// (`rmdir`: `NotEmpty` unless empty, `NotADirectory` for a file) or not
    /// (`unlink`: `IsADirectory` for a directory).
    async fn remove(
        &self,
        owner: AccountId,
        parent: NodeId,
        tag: &NameTag,
        dir: bool,
        now: i64,
    ) -> Result<Released, TreeError>;

    /// Records an object about to be uploaded, reserving its size against
    /// the quota (the account's own, or `default_quota` when it has none):
    /// `EntryExists` if the id is taken (also by a purged-but-not-forgotten
    /// object: ids are never reused), `QuotaExceeded` if it does not fit. It
    /// is pending until a commit names it.
    async fn reserve_object(
        &self,
        owner: AccountId,
        id: ObjectId,
        size: u64,
        checksum: Checksum,
        default_quota: u64,
        now: i64,
    ) -> Result<(), TreeError>;

    /// [`Self::reserve_object`] for several objects at once, all or none,
    /// in one transaction: the first object (in order) that is refused
    /// refuses them all (`EntryExists` for a taken id, also one listed
    /// twice; `QuotaExceeded` when the objects up to it do not fit) and
    /// nothing is reserved. An empty list reserves nothing and succeeds
    /// (even for an account that does not exist).
    async fn reserve_objects(
        &self,
        owner: AccountId,
        objects: &[NewObject],
        default_quota: u64,
        now: i64,
    ) -> Result<(), TreeError>;

    /// Runs `ops` in order in one transaction (one lock of the account, one
    /// commit): each operation is atomic on its own and answers exactly
    /// what its own method would (same checks, same order, same feed
    /// records), and a refused one changes nothing and does not stop the
    /// ones after it. An operation sees what the earlier ones did (a node
    /// created by one can be committed by the next).
    ///
    /// The outer error is for the batch as a whole: `NotFound` for an
    /// account that does not exist, or a database failure (nothing is
    /// applied then). Objects a commit releases are queued for purge as
    /// [`Self::commit_version`]'s are. No operations: no transaction.
    async fn batch(
        &self,
        owner: AccountId,
        ops: &[TreeOp],
        now: i64,
    ) -> Result<Vec<TreeOpResult>, TreeError>;

    /// Drops a pending object whose upload failed, returning its size to the
    /// quota. The object is released (queued for purge, in case part of it
    /// reached the blob store), so its id stays taken until [`Self::purged`].
    /// `NotFound` unless it is a pending object of the owner.
    async fn abandon_object(&self, owner: AccountId, id: ObjectId) -> Result<(), TreeError>;

    /// One object's row (pending or committed).
    async fn object(&self, owner: AccountId, id: ObjectId) -> Result<Option<ObjectRow>, TreeError>;

    /// Pending objects created before `cutoff` (failed or abandoned uploads),
    /// released for purge.
    async fn release_stale_pending(
        &self,
        cutoff: i64,
        limit: u32,
    ) -> Result<Vec<(AccountId, ObjectId)>, TreeError>;

    /// Objects released for purge (by removals, commits or staleness) that
    /// the blob store has not deleted yet. A released object no longer counts
    /// against the quota and can no longer be committed or read.
    async fn purge_queue(&self, limit: u32) -> Result<Vec<(AccountId, ObjectId)>, TreeError>;

    /// Forgets a purged object once its blob is deleted. Only released
    /// objects are forgotten; anything else (a live object, one already
    /// forgotten, another account's) is left alone and is no error, so the
    /// collector may retry.
    async fn purged(&self, owner: AccountId, id: ObjectId) -> Result<(), TreeError>;

    /// [`Self::purged`] of each of `objects`, in one transaction (one
    /// commit for all, where a `purged` each is a commit each).
    async fn purged_many(&self, objects: &[(AccountId, ObjectId)]) -> Result<(), TreeError>;

    /// Usage and quota of the account (`default_quota` when it has none set).
    async fn usage(&self, owner: AccountId, default_quota: u64) -> Result<Usage, TreeError>;

    /// Change-feed records with `seq > since`, oldest first.
    async fn changes(
        &self,
        owner: AccountId,
        since: i64,
        limit: u32,
    ) -> Result<Vec<ChangeRow>, TreeError>;

    /// Test only: inserts nodes with their entries (every `entry` must be
    /// set) in a few multi-row statements, without checks or feed records,
    /// to build very large directories quickly.
    #[cfg(test)]
    async fn insert_nodes_for_test(
        &self,
        owner: AccountId,
        new: &[NewNode],
        now: i64,
    ) -> Result<(), TreeError>;
}
