//! What the SQLite and MySQL stores share for the tree: every statement both
//! backends run verbatim (the tables of `migrations/*/0003_tree.sql`), the
//! bookkeeping of a locked account, and [`impl_tree_store!`], which writes
//! the one implementation of [`super::TreeStore`] for each backend.
//!
//! Each statement's comment names the key it uses: every one is a lookup or
//! a range scan on a primary key or index, never a scan of an account's tree
//! (`tree_tests.rs` checks the plans on SQLite and MariaDB).
//!
//! Concurrency: every method is one transaction. Every change to an account
//! starts with [`BUMP_SEQ`], which increments the account's change sequence
//! and so takes the row lock of its `account_usage` row (on SQLite, `BEGIN
//! IMMEDIATE` already holds the database's write lock). Changes to one
//! account are therefore serialised, and the plain reads after that lock see
//! everything the previous holder committed: no other locking read is needed
//! on either backend. The sequence handed out is gap-free: a change writes
//! one feed row per number it uses, and a transaction that writes none puts
//! the number back before it commits (or rolls back).
//!
//! Each rule is written once, as a function that works inside a
//! transaction already holding the account's lock ([`Locked`]):
//! `create_in` and `commit_in` in the macro (and one reservation of many
//! objects serves `reserve_object` too). A single call
//! wraps one in its own transaction; [`TreeStore::batch`](super::TreeStore::batch)
//! runs many in one, each inside a savepoint, so a refused operation rolls
//! back to its savepoint (and [`Locked::restore`] undoes its bookkeeping)
//! while the others commit together: N operations cost one lock, one
//! feed-and-usage write and one commit instead of N of each.
//!
//! Round trips per operation, which decide a batch's time on a networked
//! database: a create runs its parent's check only the first time the
//! transaction meets that parent, finds a taken id or name by the uniqueness
//! violation of its INSERTs ([`taken`]) instead of looking them up, and
//! reads and commits the objects of a file created with its contents in one
//! statement each ([`LISTED_OBJECTS_IN`], [`COMMIT_OBJECTS_IN`]); a commit
//! reads the node with the objects it has in one query
//! ([`NODE_HEAD_OBJECTS`]) and writes its objects a hundred per statement.
//! A new small file created with its object in a batch thus costs five
//! statements (savepoint, objects, node, entry, objects' commit), where a
//! create and a commit cost eleven before. A run of creates in a batch (the
//! uploader's new files) is first tried all together (`create_all`): each
//! parent checked once, every object read in one query, and the nodes,
//! entries and objects' commits written a hundred per statement, about
//! five statements per hundred files. If any create of the run would be
//! refused, the run is rolled back to its savepoint and goes one by one, so
//! every answer is the one the endpoint gives (`tree_tests.rs` compares
//! batches with single calls).

use std::collections::HashSet;

use common::{NodeId, ObjectId};

use super::sql::db_err;
use super::{AccountId, StoreError, TreeError};

/// The columns of a node, from `nodes n`.
macro_rules! node_columns {
    () => {
        "n.node_id, n.kind, n.version, n.record, n.size, n.nlink, n.created_at, n.updated_at"
    };
}

/// The columns of an entry, from `entries e`.
macro_rules! entry_columns {
    () => {
        "e.parent_id, e.name_tag, e.encrypted_name, e.child_id"
    };
}

// ---- account usage and the change sequence ----

/// The first statement of every change: `(account)`. Key: `account_usage`
/// primary key. Matches no row before the account's first change.
pub(super) const BUMP_SEQ: &str = "UPDATE account_usage SET seq = seq + 1 WHERE account_id = ?";
/// After [`BUMP_SEQ`] matched nothing: `(account)`. Fails with a foreign-key
/// violation when the account does not exist, and with a uniqueness
/// violation when a concurrent first change inserted the row (that change
/// runs again).
pub(super) const INSERT_USAGE: &str = "INSERT INTO account_usage \
     (account_id, seq, used_bytes, quota_bytes, node_count) VALUES (?, 1, 0, NULL, 0)";
/// Key: `account_usage` primary key.
pub(super) const USAGE: &str =
    "SELECT seq, used_bytes, quota_bytes, node_count FROM account_usage WHERE account_id = ?";
/// The last statement of every change: `(seq, used, nodes, account)`. Key:
/// `account_usage` primary key.
pub(super) const SAVE_USAGE: &str = "UPDATE account_usage SET seq = ?, used_bytes = ?, \
     node_count = ? WHERE account_id = ?";
/// The start of the feed's insert, to which [`CHANGE_ROW`] is appended
/// once per record (comma-separated): `(owner, seq, node, parent, now)`
/// each.
pub(super) const INSERT_CHANGES: &str = "INSERT INTO changes \
     (owner_id, seq, node_id, parent_id, changed_at) VALUES ";
/// One record of [`INSERT_CHANGES`].
pub(super) const CHANGE_ROW: &str = "(?, ?, ?, ?, ?)";
/// Most records of one [`INSERT_CHANGES`] (a batch writes one or two per
/// operation; five values each stay far below both backends' limits).
pub(super) const CHANGES_CHUNK: usize = 200;
/// `(owner, since, limit)`. Key: `changes` primary key (owner, seq), range.
pub(super) const CHANGES: &str = "SELECT seq, node_id, parent_id FROM changes \
     WHERE owner_id = ? AND seq > ? ORDER BY seq LIMIT ?";

// ---- nodes ----

/// `(owner, node)`. Key: `nodes` primary key.
pub(super) const NODE: &str = concat!(
    "SELECT ",
    node_columns!(),
    " FROM nodes n WHERE n.owner_id = ? AND n.node_id = ?"
);
/// `(node, session)`: the session's account and revocation, and that
/// account's node if it has one. Keys: `sessions` and `nodes` primary keys.
pub(super) const NODE_IN_SESSION: &str = concat!(
    "SELECT s.account_id AS session_account, s.revoked_at AS session_revoked, ",
    node_columns!(),
    " FROM sessions s LEFT JOIN nodes n ON n.owner_id = s.account_id AND n.node_id = ?",
    " WHERE s.id = ?"
);
/// `(parent, tag, session)`: the session's account and revocation, and
/// [`LOOKUP`] in that account. Keys: `sessions`, `entries` and `nodes`
/// primary keys.
pub(super) const LOOKUP_IN_SESSION: &str = concat!(
    "SELECT s.account_id AS session_account, s.revoked_at AS session_revoked, ",
    entry_columns!(),
    ", ",
    node_columns!(),
    " FROM sessions s",
    " LEFT JOIN entries e ON e.owner_id = s.account_id AND e.parent_id = ? AND e.name_tag = ?",
    " LEFT JOIN nodes n ON n.owner_id = e.owner_id AND n.node_id = e.child_id",
    " WHERE s.id = ?"
);
/// What the checks need, without the (possibly large) record: `(owner,
/// node)`. Key: `nodes` primary key.
pub(super) const NODE_HEAD: &str =
    "SELECT kind, version, nlink, created_at FROM nodes WHERE owner_id = ? AND node_id = ?";
/// [`NODE_HEAD`] of a node with its objects, for a commit: one row per
/// object (their id and size), a single one with both `NULL` when it has
/// none, no row when there is no such node: `(owner, node, owner, node)`.
/// Keys: `objects_node` (only committed objects have a `node_id`: see
/// [`NODE_OBJECTS`]), then `nodes` primary key. The join's keys are bound
/// as values, not taken from `n`: with statistics of a small `objects`
/// table SQLite's planner otherwise scanned it.
pub(super) const NODE_HEAD_OBJECTS: &str = "SELECT n.kind, n.version, n.nlink, n.created_at, \
     o.object_id, o.size FROM nodes n LEFT JOIN objects o \
     ON o.owner_id = ? AND o.node_id = ? \
     WHERE n.owner_id = ? AND n.node_id = ?";
/// The start of [`TreeStore::nodes`](super::TreeStore::nodes)'s query, to
/// which `(?, ?, ...)` and `)` are appended: `(owner, node...)`. Key: `nodes`
/// primary key, one lookup per id.
pub(super) const NODES_IN: &str = concat!(
    "SELECT ",
    node_columns!(),
    " FROM nodes n WHERE n.owner_id = ? AND n.node_id IN "
);
/// `(owner, node, kind, record, size, nlink, now, now)`. A taken id fails
/// with a uniqueness violation (`nodes` primary key).
pub(super) const INSERT_NODE: &str = "INSERT INTO nodes (owner_id, node_id, kind, version, \
     record, size, nlink, created_at, updated_at) VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?)";
/// [`INSERT_NODE`] for many: the start, to which [`NODE_ROW`] is appended
/// once per node (comma-separated).
pub(super) const INSERT_NODES: &str = "INSERT INTO nodes (owner_id, node_id, kind, version, \
     record, size, nlink, created_at, updated_at) VALUES ";
/// One node of [`INSERT_NODES`]: `(owner, node, kind, record, size, nlink,
/// now, now)`.
pub(super) const NODE_ROW: &str = "(?, ?, ?, 1, ?, ?, ?, ?, ?)";
/// `(record, now, owner, node, expected version)`. Key: `nodes` primary key.
pub(super) const UPDATE_RECORD: &str = "UPDATE nodes SET record = ?, version = version + 1, \
     updated_at = ? WHERE owner_id = ? AND node_id = ? AND version = ?";
/// `(record, size, now, owner, node, expected version)`. Key: `nodes`
/// primary key.
pub(super) const COMMIT_RECORD: &str = "UPDATE nodes SET record = ?, version = version + 1, \
     size = ?, updated_at = ? WHERE owner_id = ? AND node_id = ? AND version = ?";
/// `(nlink, now, owner, node)`. Key: `nodes` primary key.
pub(super) const SET_NLINK: &str =
    "UPDATE nodes SET nlink = ?, updated_at = ? WHERE owner_id = ? AND node_id = ?";
/// A node whose entries changed: `(now, owner, node)`. Key: `nodes` primary
/// key.
pub(super) const TOUCH_NODE: &str =
    "UPDATE nodes SET updated_at = ? WHERE owner_id = ? AND node_id = ?";
/// `(owner, node)`, after its last entry went. Key: `nodes` primary key.
pub(super) const DELETE_NODE: &str = "DELETE FROM nodes WHERE owner_id = ? AND node_id = ?";

// ---- entries ----

/// `(owner, parent, tag)`. Key: `entries` primary key.
pub(super) const ENTRY: &str = concat!(
    "SELECT ",
    entry_columns!(),
    " FROM entries e WHERE e.owner_id = ? AND e.parent_id = ? AND e.name_tag = ?"
);
/// An entry and its node: `(owner, parent, tag)`. Keys: `entries` primary
/// key, then `nodes` primary key.
pub(super) const LOOKUP: &str = concat!(
    "SELECT ",
    entry_columns!(),
    ", ",
    node_columns!(),
    " FROM entries e JOIN nodes n ON n.owner_id = e.owner_id AND n.node_id = e.child_id",
    " WHERE e.owner_id = ? AND e.parent_id = ? AND e.name_tag = ?"
);
/// The first page of a listing: `(owner, parent, limit)`. Keys: `entries`
/// primary key, a range in key order (no sort), then `nodes` primary key per
/// entry.
pub(super) const LIST_FIRST: &str = concat!(
    "SELECT ",
    entry_columns!(),
    ", ",
    node_columns!(),
    " FROM entries e JOIN nodes n ON n.owner_id = e.owner_id AND n.node_id = e.child_id",
    " WHERE e.owner_id = ? AND e.parent_id = ?",
    " ORDER BY e.name_tag LIMIT ?"
);
/// A further page: `(owner, parent, after, limit)`. Keys as [`LIST_FIRST`].
pub(super) const LIST_AFTER: &str = concat!(
    "SELECT ",
    entry_columns!(),
    ", ",
    node_columns!(),
    " FROM entries e JOIN nodes n ON n.owner_id = e.owner_id AND n.node_id = e.child_id",
    " WHERE e.owner_id = ? AND e.parent_id = ? AND e.name_tag > ?",
    " ORDER BY e.name_tag LIMIT ?"
);
/// Whether a directory has entries: `(owner, parent)`. Key: `entries`
/// primary key, first row of a prefix.
pub(super) const HAS_ENTRIES: &str =
    "SELECT 1 FROM entries WHERE owner_id = ? AND parent_id = ? LIMIT 1";
/// The directory holding a directory (which has exactly one entry): `(owner,
/// child)`. Key: `entries_child`.
pub(super) const PARENT_OF: &str =
    "SELECT parent_id FROM entries WHERE owner_id = ? AND child_id = ? LIMIT 1";
/// `(owner, parent, tag, encrypted name, child)`. A taken name fails with a
/// uniqueness violation (`entries` primary key).
pub(super) const INSERT_ENTRY: &str = "INSERT INTO entries \
     (owner_id, parent_id, name_tag, encrypted_name, child_id) VALUES (?, ?, ?, ?, ?)";
/// [`INSERT_ENTRY`] for many: the start, to which [`ENTRY_ROW`] is
/// appended once per entry (comma-separated).
pub(super) const INSERT_ENTRIES: &str = "INSERT INTO entries \
     (owner_id, parent_id, name_tag, encrypted_name, child_id) VALUES ";
/// One entry of [`INSERT_ENTRIES`]: `(owner, parent, tag, encrypted name,
/// child)`.
pub(super) const ENTRY_ROW: &str = "(?, ?, ?, ?, ?)";
/// Moves an entry: `(new parent, new tag, encrypted name, owner, parent,
/// tag)`. Key: `entries` primary key.
pub(super) const MOVE_ENTRY: &str = "UPDATE entries SET parent_id = ?, name_tag = ?, \
     encrypted_name = ? WHERE owner_id = ? AND parent_id = ? AND name_tag = ?";
/// Points an entry at another node (exchange): `(child, encrypted name,
/// owner, parent, tag)`. Key: `entries` primary key.
pub(super) const SET_ENTRY_CHILD: &str = "UPDATE entries SET child_id = ?, encrypted_name = ? \
     WHERE owner_id = ? AND parent_id = ? AND name_tag = ?";
/// `(owner, parent, tag)`. Key: `entries` primary key.
pub(super) const DELETE_ENTRY: &str =
    "DELETE FROM entries WHERE owner_id = ? AND parent_id = ? AND name_tag = ?";

// ---- objects ----

/// `(owner, object)`. Key: `objects` primary key.
pub(super) const OBJECT: &str = "SELECT object_id, node_id, size, digest, crc32c, state, created_at \
     FROM objects WHERE owner_id = ? AND object_id = ?";
/// Which of some ids are taken (in any state): the start of the query, to
/// which `(?, ?, ...)` and `)` are appended: `(owner, object...)`. Key:
/// `objects` primary key, one lookup per id.
pub(super) const OBJECTS_IN: &str =
    "SELECT object_id FROM objects WHERE owner_id = ? AND object_id IN ";
/// The start of the insert of pending objects, to which [`OBJECT_ROW`] is
/// appended once per object (comma-separated): `(owner, object, size,
/// digest, crc32c, now)` each (one of the checksums NULL).
pub(super) const INSERT_OBJECTS: &str = "INSERT INTO objects \
     (owner_id, object_id, node_id, size, digest, crc32c, state, created_at) VALUES ";
/// One object of [`INSERT_OBJECTS`].
pub(super) const OBJECT_ROW: &str = "(?, ?, NULL, ?, ?, ?, 'pending', ?)";
/// The objects a new version lists, with what the checks need: the start
/// of the query, to which `(?, ?, ...)` and `)` are appended: `(owner,
/// object...)`. Key: `objects` primary key, one lookup per id.
pub(super) const LISTED_OBJECTS_IN: &str = "SELECT object_id, node_id, size, state \
     FROM objects WHERE owner_id = ? AND object_id IN ";
/// Commits pending objects to a node: the start of the statement, to which
/// `(?, ?, ...)` and `)` are appended: `(node, owner, object...)`. Key:
/// `objects` primary key, one lookup per id.
pub(super) const COMMIT_OBJECTS_IN: &str = "UPDATE objects SET state = 'committed', \
     node_id = ? WHERE owner_id = ? AND state = 'pending' AND object_id IN ";
/// [`COMMIT_OBJECTS_IN`] to many nodes: the start, to which `WHEN ? THEN ?`
/// is appended once per object, then [`COMMIT_OBJECTS_TO_END`] and `(?, ?,
/// ...)`: `((object, node)..., owner, object...)`. Key: `objects` primary
/// key, one lookup per id.
pub(super) const COMMIT_OBJECTS_TO: &str =
    "UPDATE objects SET state = 'committed', node_id = CASE object_id ";
/// See [`COMMIT_OBJECTS_TO`].
pub(super) const COMMIT_OBJECTS_TO_END: &str =
    " END WHERE owner_id = ? AND state = 'pending' AND object_id IN ";
/// A node's objects: `(owner, node)`. Key: `objects_node`. Only committed
/// objects have a `node_id` (a CHECK in the schema), so no condition on
/// `state`: one would tempt SQLite, given statistics, onto `objects_state`.
pub(super) const NODE_OBJECTS: &str =
    "SELECT object_id, size FROM objects WHERE owner_id = ? AND node_id = ?";
/// `(owner, object)`. Key: `objects` primary key.
pub(super) const RELEASE_OBJECT: &str = "UPDATE objects SET state = 'released', node_id = NULL \
     WHERE owner_id = ? AND object_id = ? AND state <> 'released'";
/// [`RELEASE_OBJECT`] for many: the start of the statement, to which `(?,
/// ?, ...)` and `)` are appended: `(owner, object...)`. Key: `objects`
/// primary key, one lookup per id.
pub(super) const RELEASE_OBJECTS_IN: &str = "UPDATE objects SET state = 'released', \
     node_id = NULL WHERE owner_id = ? AND state <> 'released' AND object_id IN ";
/// Every object of a node: `(owner, node)`. Key: `objects_node` (see
/// [`NODE_OBJECTS`]).
pub(super) const RELEASE_NODE_OBJECTS: &str = "UPDATE objects SET state = 'released', \
     node_id = NULL WHERE owner_id = ? AND node_id = ?";
/// The collector's candidates: `(cutoff, limit)`. Key: `objects_state`,
/// range `('pending', < cutoff)`.
pub(super) const STALE_PENDING: &str = "SELECT owner_id, object_id FROM objects \
     WHERE state = 'pending' AND created_at < ? ORDER BY created_at LIMIT ?";
/// Re-checked under the account's lock: `(owner, object, cutoff)`. Key:
/// `objects` primary key.
pub(super) const STALE_PENDING_SIZE: &str = "SELECT size FROM objects \
     WHERE owner_id = ? AND object_id = ? AND state = 'pending' AND created_at < ?";
/// `(limit)`. Key: `objects_state`, range `('released')`.
pub(super) const PURGE_QUEUE: &str = "SELECT owner_id, object_id FROM objects \
     WHERE state = 'released' ORDER BY created_at LIMIT ?";
/// `(owner, object)`. Key: `objects` primary key.
pub(super) const FORGET_OBJECT: &str =
    "DELETE FROM objects WHERE owner_id = ? AND object_id = ? AND state = 'released'";

/// Before each operation of a batch.
pub(super) const SAVEPOINT: &str = "SAVEPOINT batch_op";
/// After a refused operation of a batch.
pub(super) const ROLLBACK_TO_SAVEPOINT: &str = "ROLLBACK TO SAVEPOINT batch_op";

/// The stored object states.
pub(super) const PENDING: &str = "pending";
pub(super) const COMMITTED: &str = "committed";

/// How many ids one [`NODES_IN`], [`OBJECTS_IN`], [`LISTED_OBJECTS_IN`],
/// [`COMMIT_OBJECTS_IN`] or [`RELEASE_OBJECTS_IN`] statement takes, and how
/// many rows one [`INSERT_OBJECTS`] inserts.
pub(super) const NODES_CHUNK: usize = 100;

/// `items` in pieces for multi-row statements: `max` at a time, then the
/// rest in powers of two (37 = 32 + 4 + 1).
///
/// A statement's text depends on its row count, and each text is one
/// prepared statement in the connection's cache. Any count at all made
/// hundreds of texts (816 in one benchmark run, against sqlx's cache of
/// 100): each eviction sends a statement close with the next statement
/// right behind it, and since sqlx 0.9.0 no longer sets `TCP_NODELAY`
/// (launchbadge/sqlx#4335) that statement waited for MariaDB's delayed
/// ACK, 40 ms, seven times per batch of files. With a few shapes per
/// statement every text stays prepared (see the stores' cache capacity).
pub(super) fn shaped<T>(items: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = if rest.len() >= max {
            max.max(1)
        } else {
            1 << rest.len().ilog2()
        };
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        Some(piece)
    })
}

/// The steps a walk up the tree takes before it calls the tree corrupt (a
/// path of 4096 bytes has at most 2048 components).
pub(super) const MAX_DEPTH: u32 = 1 << 16;

// ---- helpers ----

/// How a tree transaction failed: a database error (which a retry may cure)
/// or a refusal.
#[derive(Debug)]
pub(super) enum Fail {
    /// The database failed (or a race was lost: see [`super::sql::is_retryable`]).
    Db(sqlx::Error),
    /// The operation is refused (or a stored value is corrupt).
    Tree(TreeError),
}

impl From<sqlx::Error> for Fail {
    fn from(e: sqlx::Error) -> Self {
        Fail::Db(e)
    }
}

impl From<TreeError> for Fail {
    fn from(e: TreeError) -> Self {
        Fail::Tree(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Tree(TreeError::Store(e))
    }
}

impl Fail {
    /// The error the caller sees.
    pub(super) fn into_tree(self) -> TreeError {
        match self {
            Fail::Db(e) => TreeError::Store(db_err(e)),
            Fail::Tree(e) => e,
        }
    }
}

/// Runs `$attempt` (an expression yielding a future of `Result<T, Fail>`)
/// again while it fails with a retryable database error (a deadlock, or the
/// uniqueness violation of two first changes of an account racing to create
/// its usage row); yields `Result<T, TreeError>`.
macro_rules! retry_tree {
    ($attempt:expr) => {{
        let mut tries = 0u32;
        loop {
            match $attempt.await {
                Err($crate::store::tree_sql::Fail::Db(e))
                    if tries < $crate::store::sql::RETRIES
                        && $crate::store::sql::is_retryable(&e, true) =>
                {
                    tries += 1;
                }
                other => break other.map_err($crate::store::tree_sql::Fail::into_tree),
            }
        }
    }};
}
pub(super) use retry_tree;

/// An account's `account_usage` row, locked by this transaction, and what
/// the transaction changes in it.
#[derive(Debug)]
pub(super) struct Locked {
    /// The account.
    pub owner: AccountId,
    /// Its sequence number before this transaction.
    pub prev_seq: i64,
    /// Bytes of live objects.
    pub used: u64,
    /// Its own quota, if set.
    pub quota: Option<u64>,
    /// Number of nodes.
    pub nodes: u64,
    /// Feed records to write, in order, without duplicates within one
    /// operation.
    pub changes: Vec<(NodeId, Option<NodeId>)>,
    /// Where the current operation's records start in `changes` (0 but in
    /// a batch, whose operations each write what they would alone).
    pub op_start: usize,
}

/// What one operation of a batch may change in [`Locked`], saved before it
/// runs so that a refused operation leaves no trace (its savepoint undoes
/// its statements, [`Locked::restore`] its bookkeeping).
#[derive(Debug, Clone, Copy)]
pub(super) struct Mark {
    used: u64,
    nodes: u64,
    changes: usize,
}

impl Locked {
    /// Starts the next operation of a batch, and returns the state to
    /// return to if it is refused.
    pub(super) fn next_op(&mut self) -> Mark {
        self.op_start = self.changes.len();
        self.mark()
    }

    /// The state to return to if the next operation is refused.
    pub(super) fn mark(&self) -> Mark {
        Mark {
            used: self.used,
            nodes: self.nodes,
            changes: self.changes.len(),
        }
    }

    /// Forgets what happened since `mark` (feed records are only ever
    /// appended, so cutting the list back restores it).
    pub(super) fn restore(&mut self, mark: Mark) {
        self.used = mark.used;
        self.nodes = mark.nodes;
        self.changes.truncate(mark.changes);
    }

    /// Notes that `node` changed (in the listing of `parent`).
    pub(super) fn changed(&mut self, node: NodeId, parent: Option<NodeId>) {
        let current = self.changes.get(self.op_start..).unwrap_or_default();
        if !current.contains(&(node, parent)) {
            self.changes.push((node, parent));
        }
    }

    /// The sequence number the account ends at.
    pub(super) fn final_seq(&self) -> Result<i64, StoreError> {
        i64::try_from(self.changes.len())
            .ok()
            .and_then(|n| self.prev_seq.checked_add(n))
            .ok_or(StoreError::Corrupt("change sequence"))
    }

    /// Reserves `size` more bytes, if they fit in the quota.
    pub(super) fn reserve(&mut self, size: u64, default_quota: u64) -> Result<(), TreeError> {
        let quota = self.quota.unwrap_or(default_quota);
        match self.used.checked_add(size) {
            Some(used) if used <= quota && i64::try_from(used).is_ok() => {
                self.used = used;
                Ok(())
            }
            _ => Err(TreeError::QuotaExceeded),
        }
    }

    /// Returns `size` bytes to the quota.
    pub(super) fn release(&mut self, size: u64) -> Result<(), StoreError> {
        self.used = self
            .used
            .checked_sub(size)
            .ok_or(StoreError::Corrupt("used bytes below zero"))?;
        Ok(())
    }
}

/// Maps the error of an INSERT: a uniqueness violation means its key is
/// taken (`EntryExists`: a node id, or a name in a directory); anything else
/// is the database's. Used instead of looking the key up first: the
/// account's lock keeps anyone else from taking it meanwhile, so the
/// constraint answers exactly what the lookup would have.
pub(super) fn taken(e: sqlx::Error) -> Fail {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => Fail::Tree(TreeError::EntryExists),
        _ => Fail::Db(e),
    }
}

/// The objects a new version of a file lists, as checked by
/// `listed_objects` (in [`impl_tree_store!`]).
#[derive(Debug, Default)]
pub(super) struct Listed {
    /// Each listed id once.
    pub set: HashSet<ObjectId>,
    /// Those still pending, in the order first listed: the ones to commit to
    /// the node.
    pub pending: Vec<ObjectId>,
    /// The sum of their sizes: the node's new size.
    pub size: u64,
    /// The size of each.
    pub sizes: std::collections::HashMap<ObjectId, u64>,
}

/// A stored non-negative integer as `u64`.
pub(super) fn to_u64(v: i64, what: &'static str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(what))
}

/// A `u64` to store (every stored size fits: the quota check keeps sums
/// within `i64`).
pub(super) fn to_i64(v: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt(what))
}

/// A stored node id.
pub(super) fn node_id(bytes: &[u8]) -> Result<NodeId, StoreError> {
    NodeId::from_slice(bytes).ok_or(StoreError::Corrupt("node id"))
}

/// A stored object id.
pub(super) fn object_id(bytes: &[u8]) -> Result<ObjectId, StoreError> {
    ObjectId::from_slice(bytes).ok_or(StoreError::Corrupt("object id"))
}

/// `(?, ?, ..., ?)` with `n` placeholders, for [`NODES_IN`].
pub(super) fn placeholders(n: usize) -> String {
    let mut s = String::with_capacity(2 + 3 * n);
    s.push('(');
    for i in 0..n {
        if i > 0 {
            s.push_str(", ");
        }
        s.push('?');
    }
    s.push(')');
    s
}

/// Implements [`super::TreeStore`] for a backend's store type.
///
/// The type must have a field `pool` (a `sqlx::Pool` of the backend) and an
/// inherent method `begin_write(&self) -> Result<Transaction, sqlx::Error>`
/// (a transaction that may write). The tree needs no backend-specific
/// statements: see the module note on locking.
macro_rules! impl_tree_store {
    (store: $store:ty, db: $db:ty $(,)?) => {
        // In a module of its own so its imports cannot clash with the
        // backend's.
        mod tree_store_impl {
            use super::*;
            use ::common::crypto::attrs::NodeKind;
            use ::common::crypto::name::NameTag;
            use ::common::{NodeId, ObjectId};
            use ::sqlx::Row as _;
            use $crate::blob::Checksum;
            use $crate::store::sql::to_u32;
            use $crate::store::tree_sql::{
                self as q, Fail, Listed, Locked, node_id, object_id, retry_tree, taken, to_i64,
                to_u64,
            };
            use $crate::store::{
                AccountId, ChangeRow, EntryRow, InSession, NewEntry, NewNode, NewObject, NodeRow,
                ObjectRow, Released, Rename, RenameMode, StoreError, TreeError, TreeOp,
                TreeOpResult, TreeStore, Usage,
            };

            type DbRow = <$db as ::sqlx::Database>::Row;
            type Tx<'c> = ::sqlx::Transaction<'c, $db>;

            /// A `*_IN_SESSION` row (none: no such session): the session's
            /// columns, and `found` of the rest when its node was there.
            fn in_session<T>(
                row: Option<DbRow>,
                found: impl FnOnce(&DbRow) -> Result<T, StoreError>,
            ) -> Result<Option<InSession<T>>, StoreError> {
                let Some(row) = row else {
                    return Ok(None);
                };
                let node: Option<Vec<u8>> = row.try_get("node_id")?;
                let revoked: Option<i64> = row.try_get("session_revoked")?;
                Ok(Some(InSession {
                    account: AccountId(row.try_get("session_account")?),
                    revoked: revoked.is_some(),
                    found: node.map(|_| found(&row)).transpose()?,
                }))
            }

            fn node_from_row(row: &DbRow) -> Result<NodeRow, StoreError> {
                let id: Vec<u8> = row.try_get("node_id")?;
                let kind: i64 = row.try_get("kind")?;
                Ok(NodeRow {
                    id: node_id(&id)?,
                    kind: u8::try_from(kind)
                        .ok()
                        .and_then(NodeKind::from_code)
                        .ok_or(StoreError::Corrupt("node kind"))?,
                    version: to_u64(row.try_get("version")?, "node version")?,
                    record: row.try_get("record")?,
                    size: to_u64(row.try_get("size")?, "node size")?,
                    nlink: to_u32(row.try_get("nlink")?, "node nlink")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            }

            fn entry_from_row(row: &DbRow) -> Result<EntryRow, StoreError> {
                let parent: Vec<u8> = row.try_get("parent_id")?;
                let tag: Vec<u8> = row.try_get("name_tag")?;
                let child: Vec<u8> = row.try_get("child_id")?;
                Ok(EntryRow {
                    parent: node_id(&parent)?,
                    tag: NameTag::from_bytes(
                        tag.try_into()
                            .map_err(|_| StoreError::Corrupt("name tag"))?,
                    ),
                    encrypted_name: row.try_get("encrypted_name")?,
                    child: node_id(&child)?,
                })
            }

            fn object_from_row(row: &DbRow) -> Result<ObjectRow, StoreError> {
                let id: Vec<u8> = row.try_get("object_id")?;
                let node: Option<Vec<u8>> = row.try_get("node_id")?;
                let digest: Option<Vec<u8>> = row.try_get("digest")?;
                let crc32c: Option<i64> = row.try_get("crc32c")?;
                let checksum = match (digest, crc32c) {
                    (Some(d), None) => Checksum::Sha256(
                        d.try_into()
                            .map_err(|_| StoreError::Corrupt("object digest"))?,
                    ),
                    (None, Some(c)) => Checksum::Crc32c(
                        u32::try_from(c).map_err(|_| StoreError::Corrupt("object crc32c"))?,
                    ),
                    _ => return Err(StoreError::Corrupt("object checksum")),
                };
                Ok(ObjectRow {
                    id: object_id(&id)?,
                    node: node.as_deref().map(node_id).transpose()?,
                    size: to_u64(row.try_get("size")?, "object size")?,
                    checksum,
                    created_at: row.try_get("created_at")?,
                })
            }

            fn change_from_row(row: &DbRow) -> Result<ChangeRow, StoreError> {
                let node: Vec<u8> = row.try_get("node_id")?;
                let parent: Option<Vec<u8>> = row.try_get("parent_id")?;
                Ok(ChangeRow {
                    seq: row.try_get("seq")?,
                    node: node_id(&node)?,
                    parent: parent.as_deref().map(node_id).transpose()?,
                })
            }

            fn account_object_from_row(row: &DbRow) -> Result<(AccountId, ObjectId), StoreError> {
                let id: Vec<u8> = row.try_get("object_id")?;
                Ok((AccountId(row.try_get("owner_id")?), object_id(&id)?))
            }

            /// Kind, version, nlink and creation time of a node.
            struct Head {
                kind: NodeKind,
                version: u64,
                nlink: u32,
                created_at: i64,
            }

            fn head_from_row(row: &DbRow) -> Result<Head, StoreError> {
                let kind: i64 = row.try_get("kind")?;
                Ok(Head {
                    kind: u8::try_from(kind)
                        .ok()
                        .and_then(NodeKind::from_code)
                        .ok_or(StoreError::Corrupt("node kind"))?,
                    version: to_u64(row.try_get("version")?, "node version")?,
                    nlink: to_u32(row.try_get("nlink")?, "node nlink")?,
                    created_at: row.try_get("created_at")?,
                })
            }

            /// Takes the account's lock (see the module note): increments its
            /// sequence, creating its usage row on its first change. `None`
            /// when there is no such account.
            async fn lock(tx: &mut Tx<'_>, owner: AccountId) -> Result<Option<Locked>, Fail> {
                let bumped = ::sqlx::query(q::BUMP_SEQ)
                    .bind(owner.0)
                    .execute(&mut **tx)
                    .await?;
                if bumped.rows_affected() == 0 {
                    match ::sqlx::query(q::INSERT_USAGE)
                        .bind(owner.0)
                        .execute(&mut **tx)
                        .await
                    {
                        Ok(_) => {}
                        Err(::sqlx::Error::Database(d)) if d.is_foreign_key_violation() => {
                            return Ok(None);
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                let row = ::sqlx::query(q::USAGE)
                    .bind(owner.0)
                    .fetch_one(&mut **tx)
                    .await?;
                let seq: i64 = row.try_get("seq")?;
                let quota: Option<i64> = row.try_get("quota_bytes")?;
                Ok(Some(Locked {
                    owner,
                    prev_seq: seq - 1,
                    used: to_u64(row.try_get("used_bytes")?, "used bytes")?,
                    quota: quota.map(|q| to_u64(q, "quota")).transpose()?,
                    nodes: to_u64(row.try_get("node_count")?, "node count")?,
                    changes: Vec::new(),
                    op_start: 0,
                }))
            }

            /// [`lock`], with a missing account reported as `NotFound`: it
            /// owns nothing.
            async fn lock_owner(tx: &mut Tx<'_>, owner: AccountId) -> Result<Locked, Fail> {
                lock(tx, owner)
                    .await?
                    .ok_or(Fail::Tree(TreeError::NotFound))
            }

            /// Writes the feed records and the usage row, and commits.
            async fn finish(mut tx: Tx<'_>, acct: Locked, now: i64) -> Result<(), Fail> {
                // A few rows per statement: a batch writes hundreds.
                let mut seq = acct.prev_seq;
                for chunk in q::shaped(&acct.changes, q::CHANGES_CHUNK) {
                    // Only placeholders are appended to the statement.
                    let sql = format!(
                        "{}{}",
                        q::INSERT_CHANGES,
                        vec![q::CHANGE_ROW; chunk.len()].join(", ")
                    );
                    let mut query = ::sqlx::query(::sqlx::AssertSqlSafe(sql));
                    for (node, parent) in chunk {
                        seq += 1;
                        query = query
                            .bind(acct.owner.0)
                            .bind(seq)
                            .bind(node.as_bytes().as_slice())
                            .bind(parent.as_ref().map(|p| p.as_bytes().as_slice()))
                            .bind(now);
                    }
                    query.execute(&mut *tx).await?;
                }
                ::sqlx::query(q::SAVE_USAGE)
                    .bind(acct.final_seq()?)
                    .bind(to_i64(acct.used, "used bytes")?)
                    .bind(to_i64(acct.nodes, "node count")?)
                    .bind(acct.owner.0)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn head(
                tx: &mut Tx<'_>,
                owner: AccountId,
                id: NodeId,
            ) -> Result<Option<Head>, Fail> {
                let row = ::sqlx::query(q::NODE_HEAD)
                    .bind(owner.0)
                    .bind(id.as_bytes().as_slice())
                    .fetch_optional(&mut **tx)
                    .await?;
                Ok(row.as_ref().map(head_from_row).transpose()?)
            }

            async fn full_node(
                tx: &mut Tx<'_>,
                owner: AccountId,
                id: NodeId,
            ) -> Result<NodeRow, Fail> {
                let row = ::sqlx::query(q::NODE)
                    .bind(owner.0)
                    .bind(id.as_bytes().as_slice())
                    .fetch_one(&mut **tx)
                    .await?;
                Ok(node_from_row(&row)?)
            }

            /// Checks that `id` is a directory of the owner.
            async fn directory(tx: &mut Tx<'_>, owner: AccountId, id: NodeId) -> Result<(), Fail> {
                match head(tx, owner, id).await? {
                    None => Err(TreeError::NotFound.into()),
                    Some(h) if h.kind != NodeKind::Directory => {
                        Err(TreeError::NotADirectory.into())
                    }
                    Some(_) => Ok(()),
                }
            }

            async fn find_entry(
                tx: &mut Tx<'_>,
                owner: AccountId,
                parent: NodeId,
                tag: &NameTag,
            ) -> Result<Option<EntryRow>, Fail> {
                let row = ::sqlx::query(q::ENTRY)
                    .bind(owner.0)
                    .bind(parent.as_bytes().as_slice())
                    .bind(tag.as_bytes().as_slice())
                    .fetch_optional(&mut **tx)
                    .await?;
                Ok(row.as_ref().map(entry_from_row).transpose()?)
            }

            async fn has_entries(
                tx: &mut Tx<'_>,
                owner: AccountId,
                dir: NodeId,
            ) -> Result<bool, Fail> {
                let row = ::sqlx::query(q::HAS_ENTRIES)
                    .bind(owner.0)
                    .bind(dir.as_bytes().as_slice())
                    .fetch_optional(&mut **tx)
                    .await?;
                Ok(row.is_some())
            }

            async fn insert_entry(
                tx: &mut Tx<'_>,
                owner: AccountId,
                entry: &NewEntry,
                child: NodeId,
            ) -> Result<(), Fail> {
                ::sqlx::query(q::INSERT_ENTRY)
                    .bind(owner.0)
                    .bind(entry.parent.as_bytes().as_slice())
                    .bind(entry.tag.as_bytes().as_slice())
                    .bind(entry.encrypted_name.as_slice())
                    .bind(child.as_bytes().as_slice())
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

            async fn delete_entry(
                tx: &mut Tx<'_>,
                owner: AccountId,
                parent: NodeId,
                tag: &NameTag,
            ) -> Result<(), Fail> {
                ::sqlx::query(q::DELETE_ENTRY)
                    .bind(owner.0)
                    .bind(parent.as_bytes().as_slice())
                    .bind(tag.as_bytes().as_slice())
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

            async fn touch(
                tx: &mut Tx<'_>,
                owner: AccountId,
                id: NodeId,
                now: i64,
            ) -> Result<(), Fail> {
                ::sqlx::query(q::TOUCH_NODE)
                    .bind(now)
                    .bind(owner.0)
                    .bind(id.as_bytes().as_slice())
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }

            /// Whether `ancestor` (a directory) is `start` or above it: walks
            /// up from `start` through the entries naming each directory
            /// (`entries_child`) until the root.
            async fn is_at_or_above(
                tx: &mut Tx<'_>,
                owner: AccountId,
                ancestor: NodeId,
                start: NodeId,
            ) -> Result<bool, Fail> {
                let mut current = start;
                for _ in 0..q::MAX_DEPTH {
                    if current == ancestor {
                        return Ok(true);
                    }
                    if current == NodeId::ROOT {
                        return Ok(false);
                    }
                    let row = ::sqlx::query(q::PARENT_OF)
                        .bind(owner.0)
                        .bind(current.as_bytes().as_slice())
                        .fetch_optional(&mut **tx)
                        .await?;
                    let Some(row) = row else {
                        // Detached (cannot happen to a directory an entry
                        // names): not below `ancestor`.
                        return Ok(false);
                    };
                    let parent: Vec<u8> = row.try_get("parent_id")?;
                    current = node_id(&parent)?;
                }
                Err(StoreError::Corrupt("directory cycle").into())
            }

            /// A node just lost the entry that was one of its `nlink`: it is
            /// deleted with its objects when that was its last, otherwise its
            /// count goes down.
            async fn drop_link(
                tx: &mut Tx<'_>,
                acct: &mut Locked,
                id: NodeId,
                nlink: u32,
                now: i64,
                released: &mut Released,
            ) -> Result<(), Fail> {
                let owner = acct.owner;
                if nlink > 1 {
                    ::sqlx::query(q::SET_NLINK)
                        .bind(i64::from(nlink - 1))
                        .bind(now)
                        .bind(owner.0)
                        .bind(id.as_bytes().as_slice())
                        .execute(&mut **tx)
                        .await?;
                    return Ok(());
                }
                let objects = ::sqlx::query(q::NODE_OBJECTS)
                    .bind(owner.0)
                    .bind(id.as_bytes().as_slice())
                    .fetch_all(&mut **tx)
                    .await?;
                for row in &objects {
                    let object: Vec<u8> = row.try_get("object_id")?;
                    released.objects.push(object_id(&object)?);
                    acct.release(to_u64(row.try_get("size")?, "object size")?)?;
                }
                ::sqlx::query(q::RELEASE_NODE_OBJECTS)
                    .bind(owner.0)
                    .bind(id.as_bytes().as_slice())
                    .execute(&mut **tx)
                    .await?;
                ::sqlx::query(q::DELETE_NODE)
                    .bind(owner.0)
                    .bind(id.as_bytes().as_slice())
                    .execute(&mut **tx)
                    .await?;
                acct.nodes = acct.nodes.saturating_sub(1);
                released.nodes.push(id);
                Ok(())
            }

            /// Checks the objects a new version lists (`objects`, a set: an id
            /// listed twice counts once): each must be the owner's and pending,
            /// or already committed to `own` (the node a commit changes);
            /// `NotFound` for any other. Reads only, one query per hundred
            /// ids: the caller commits [`Listed::pending`] once every check
            /// passed ([`commit_objects`]).
            async fn listed_objects(
                tx: &mut Tx<'_>,
                owner: AccountId,
                own: Option<NodeId>,
                objects: &[ObjectId],
            ) -> Result<Listed, Fail> {
                let mut listed = Listed::default();
                let unique: Vec<ObjectId> = objects
                    .iter()
                    .copied()
                    .filter(|o| listed.set.insert(*o))
                    .collect();
                let mut found = ::std::collections::HashMap::with_capacity(unique.len());
                for chunk in q::shaped(&unique, q::NODES_CHUNK) {
                    // Only placeholders are appended to the statement.
                    let sql = format!("{}{}", q::LISTED_OBJECTS_IN, q::placeholders(chunk.len()));
                    let mut query = ::sqlx::query(::sqlx::AssertSqlSafe(sql)).bind(owner.0);
                    for object in chunk {
                        query = query.bind(object.as_bytes().as_slice());
                    }
                    for row in query.fetch_all(&mut **tx).await? {
                        let id: Vec<u8> = row.try_get("object_id")?;
                        let holder: Option<Vec<u8>> = row.try_get("node_id")?;
                        let state: String = row.try_get("state")?;
                        let size = to_u64(row.try_get("size")?, "object size")?;
                        let holder = holder.as_deref().map(node_id).transpose()?;
                        found.insert(object_id(&id)?, (state, holder, size));
                    }
                }
                for object in unique {
                    let Some((state, holder, size)) = found.get(&object) else {
                        return Err(TreeError::NotFound.into());
                    };
                    let pending = state == q::PENDING;
                    let usable =
                        pending || (state == q::COMMITTED && own.is_some() && *holder == own);
                    if !usable {
                        return Err(TreeError::NotFound.into());
                    }
                    if pending {
                        listed.pending.push(object);
                    }
                    listed.sizes.insert(object, *size);
                    listed.size = listed
                        .size
                        .checked_add(*size)
                        .ok_or(StoreError::Corrupt("file size"))?;
                }
                Ok(listed)
            }

            /// Runs `statement` (to which the placeholders of one chunk are
            /// appended) with `first` bound before the owner, then the ids,
            /// once per hundred ids.
            async fn update_objects(
                tx: &mut Tx<'_>,
                statement: &str,
                first: Option<NodeId>,
                owner: AccountId,
                objects: &[ObjectId],
            ) -> Result<(), Fail> {
                for chunk in q::shaped(&objects, q::NODES_CHUNK) {
                    // Only placeholders are appended to the statement.
                    let sql = format!("{statement}{}", q::placeholders(chunk.len()));
                    let mut query = ::sqlx::query(::sqlx::AssertSqlSafe(sql));
                    if let Some(node) = &first {
                        query = query.bind(node.as_bytes().as_slice());
                    }
                    query = query.bind(owner.0);
                    for object in chunk {
                        query = query.bind(object.as_bytes().as_slice());
                    }
                    query.execute(&mut **tx).await?;
                }
                Ok(())
            }

            /// Commits pending objects (checked by [`listed_objects`]) to
            /// `node`.
            async fn commit_objects(
                tx: &mut Tx<'_>,
                owner: AccountId,
                node: NodeId,
                pending: &[ObjectId],
            ) -> Result<(), Fail> {
                update_objects(tx, q::COMMIT_OBJECTS_IN, Some(node), owner, pending).await
            }

            /// [`TreeStore::create_node`] inside a transaction holding the
            /// account's lock: checks, then inserts the node and its entry
            /// (and commits its objects). On an error the caller discards
            /// what it wrote (the transaction or the batch's savepoint).
            ///
            /// `dirs` holds the parents this transaction already found to be
            /// directories: each is checked once (a batch only creates and
            /// commits, which never make a directory stop being one), and a
            /// parent checked here is added.
            ///
            /// A taken name or id is not looked up first: the INSERTs'
            /// primary keys refuse it (see [`taken`]).
            async fn create_in(
                tx: &mut Tx<'_>,
                acct: &mut Locked,
                new: &NewNode,
                dirs: &mut ::std::collections::HashSet<NodeId>,
                now: i64,
            ) -> Result<NodeRow, Fail> {
                let owner = acct.owner;
                match &new.entry {
                    None => {
                        if new.id != NodeId::ROOT {
                            return Err(TreeError::InvalidMove.into());
                        }
                        if new.kind != NodeKind::Directory {
                            return Err(TreeError::NotADirectory.into());
                        }
                    }
                    Some(_) => {
                        if new.id == NodeId::ROOT {
                            return Err(TreeError::InvalidMove.into());
                        }
                    }
                }
                if !new.objects.is_empty() && new.kind != NodeKind::File {
                    return Err(TreeError::NotAFile.into());
                }
                if let Some(entry) = &new.entry
                    && !dirs.contains(&entry.parent)
                {
                    directory(tx, owner, entry.parent).await?;
                    dirs.insert(entry.parent);
                }
                // The objects are read before the node is inserted (its
                // size is their sum), but a taken name or id is the answer
                // before an unusable object: that refusal waits for the
                // INSERTs.
                let listed = if new.objects.is_empty() {
                    Ok(Listed::default())
                } else {
                    match listed_objects(tx, owner, None, &new.objects).await {
                        Ok(listed) => Ok(listed),
                        Err(Fail::Tree(refused @ TreeError::NotFound)) => Err(refused),
                        Err(e) => return Err(e),
                    }
                };
                let size = listed.as_ref().map_or(0, |l| l.size);
                let nlink = u32::from(new.entry.is_some());
                ::sqlx::query(q::INSERT_NODE)
                    .bind(owner.0)
                    .bind(new.id.as_bytes().as_slice())
                    .bind(i64::from(new.kind.code()))
                    .bind(new.record.as_slice())
                    .bind(to_i64(size, "file size")?)
                    .bind(i64::from(nlink))
                    .bind(now)
                    .bind(now)
                    .execute(&mut **tx)
                    .await
                    .map_err(taken)?;
                acct.nodes += 1;
                if let Some(entry) = &new.entry {
                    // After the node's INSERT (the entry refers to it): a
                    // taken name leaves the node inserted, for the caller to
                    // discard.
                    insert_entry(tx, owner, entry, new.id)
                        .await
                        .map_err(|e| match e {
                            Fail::Db(e) => taken(e),
                            refused => refused,
                        })?;
                }
                let listed = listed?;
                commit_objects(tx, owner, new.id, &listed.pending).await?;
                acct.changed(new.id, new.entry.as_ref().map(|e| e.parent));
                // Exactly what INSERT_NODE stored (no read back: a batch
                // creates hundreds).
                Ok(NodeRow {
                    id: new.id,
                    kind: new.kind,
                    version: 1,
                    record: new.record.clone(),
                    size,
                    nlink,
                    created_at: now,
                    updated_at: now,
                })
            }

            /// Many [`create_in`]s of new entries (a batch of new files) in
            /// a few statements for all of them: the checks first (each
            /// parent once, every object in one read), then the nodes, the
            /// entries and the objects' commits a hundred per statement. Five
            /// statements per file become about five per hundred files.
            ///
            /// `None` when any of them would be refused, or they are not
            /// independent (a repeated id, name or object, or a parent made
            /// in the same batch): nothing counted is changed, the caller
            /// rolls back what was written, and each runs on its own, as
            /// before, with the answer its endpoint gives.
            async fn create_all(
                tx: &mut Tx<'_>,
                acct: &mut Locked,
                news: &[&NewNode],
                dirs: &mut ::std::collections::HashSet<NodeId>,
                now: i64,
            ) -> Result<Option<Vec<NodeRow>>, Fail> {
                let owner = acct.owner;
                let mut ids = ::std::collections::HashSet::with_capacity(news.len());
                let mut names = ::std::collections::HashSet::with_capacity(news.len());
                // Each file's objects, each once, in the order listed.
                let mut owned: Vec<Vec<ObjectId>> = Vec::with_capacity(news.len());
                let mut seen = ::std::collections::HashSet::new();
                for new in news {
                    let Some(entry) = &new.entry else {
                        return Ok(None);
                    };
                    let independent = new.id != NodeId::ROOT
                        && ids.insert(new.id)
                        && names.insert((entry.parent, entry.tag));
                    if !independent || (!new.objects.is_empty() && new.kind != NodeKind::File) {
                        return Ok(None);
                    }
                    let mut own = Vec::with_capacity(new.objects.len());
                    for object in &new.objects {
                        // Listed twice by one file counts once; by two, the
                        // second would be refused.
                        if !own.contains(object) {
                            if !seen.insert(*object) {
                                return Ok(None);
                            }
                            own.push(*object);
                        }
                    }
                    owned.push(own);
                }
                let objects: Vec<ObjectId> = owned.iter().flatten().copied().collect();
                // Directories the run made so far: what follows may go in
                // them (a client sends the directories it made with what
                // it made in them).
                let mut made = ::std::collections::HashSet::new();
                for new in news {
                    let parent = new.entry.as_ref().map_or(NodeId::ROOT, |e| e.parent);
                    if new.kind == NodeKind::Directory {
                        made.insert(new.id);
                    }
                    if parent == new.id {
                        return Ok(None);
                    }
                    if made.contains(&parent) {
                        continue;
                    }
                    if ids.contains(&parent) {
                        return Ok(None);
                    }
                    if !dirs.contains(&parent) {
                        match directory(tx, owner, parent).await {
                            Ok(()) => {
                                dirs.insert(parent);
                            }
                            Err(Fail::Tree(_)) => return Ok(None),
                            Err(e) => return Err(e),
                        }
                    }
                }
                let listed = match listed_objects(tx, owner, None, &objects).await {
                    Ok(listed) => listed,
                    Err(Fail::Tree(_)) => return Ok(None),
                    Err(e) => return Err(e),
                };
                let mut rows = Vec::with_capacity(news.len());
                for (new, own) in news.iter().zip(&owned) {
                    let mut size = 0u64;
                    for object in own {
                        let each = listed.sizes.get(object).copied().unwrap_or(0);
                        size = size
                            .checked_add(each)
                            .ok_or(StoreError::Corrupt("file size"))?;
                    }
                    rows.push(NodeRow {
                        id: new.id,
                        kind: new.kind,
                        version: 1,
                        record: new.record.clone(),
                        size,
                        nlink: 1,
                        created_at: now,
                        updated_at: now,
                    });
                }
                for chunk in q::shaped(&rows, q::NODES_CHUNK) {
                    // Only placeholders are appended to the statement.
                    let sql = format!(
                        "{}{}",
                        q::INSERT_NODES,
                        vec![q::NODE_ROW; chunk.len()].join(", ")
                    );
                    let mut query = ::sqlx::query(::sqlx::AssertSqlSafe(sql));
                    for row in chunk {
                        query = query
                            .bind(owner.0)
                            .bind(row.id.as_bytes().as_slice())
                            .bind(i64::from(row.kind.code()))
                            .bind(row.record.as_slice())
                            .bind(to_i64(row.size, "file size")?)
                            .bind(i64::from(row.nlink))
                            .bind(now)
                            .bind(now);
                    }
                    match query.execute(&mut **tx).await.map_err(taken) {
                        Ok(_) => {}
                        Err(Fail::Tree(_)) => return Ok(None),
                        Err(e) => return Err(e),
                    }
                }
                for chunk in q::shaped(&news, q::NODES_CHUNK) {
                    // Only placeholders are appended to the statement.
                    let sql = format!(
                        "{}{}",
                        q::INSERT_ENTRIES,
                        vec![q::ENTRY_ROW; chunk.len()].join(", ")
                    );
                    let mut query = ::sqlx::query(::sqlx::AssertSqlSafe(sql));
                    for new in chunk {
                        let Some(entry) = &new.entry else {
                            return Ok(None);
                        };
                        query = query
                            .bind(owner.0)
                            .bind(entry.parent.as_bytes().as_slice())
                            .bind(entry.tag.as_bytes().as_slice())
                            .bind(entry.encrypted_name.as_slice())
                            .bind(new.id.as_bytes().as_slice());
                    }
                    match query.execute(&mut **tx).await.map_err(taken) {
                        Ok(_) => {}
                        Err(Fail::Tree(_)) => return Ok(None),
                        Err(e) => return Err(e),
                    }
                }
                let holders: Vec<(ObjectId, NodeId)> = news
                    .iter()
                    .zip(&owned)
                    .flat_map(|(new, own)| own.iter().map(move |object| (*object, new.id)))
                    .collect();
                for chunk in q::shaped(&holders, q::NODES_CHUNK) {
                    // Only placeholders are appended to the statement.
                    let sql = format!(
                        "{}{}{}{}",
                        q::COMMIT_OBJECTS_TO,
                        "WHEN ? THEN ? ".repeat(chunk.len()),
                        q::COMMIT_OBJECTS_TO_END,
                        q::placeholders(chunk.len())
                    );
                    let mut query = ::sqlx::query(::sqlx::AssertSqlSafe(sql));
                    for (object, node) in chunk {
                        query = query
                            .bind(object.as_bytes().as_slice())
                            .bind(node.as_bytes().as_slice());
                    }
                    query = query.bind(owner.0);
                    for (object, _) in chunk {
                        query = query.bind(object.as_bytes().as_slice());
                    }
                    query.execute(&mut **tx).await?;
                }
                for new in news {
                    acct.next_op();
                    acct.nodes += 1;
                    acct.changed(new.id, new.entry.as_ref().map(|e| e.parent));
                }
                Ok(Some(rows))
            }

            /// [`TreeStore::update_record`] inside a transaction holding
            /// the account's lock (see [`create_in`]).
            async fn record_in(
                tx: &mut Tx<'_>,
                acct: &mut Locked,
                id: NodeId,
                expected_version: u64,
                record: &[u8],
                now: i64,
            ) -> Result<NodeRow, Fail> {
                let owner = acct.owner;
                let Some(node) = head(tx, owner, id).await? else {
                    return Err(TreeError::NotFound.into());
                };
                if node.version != expected_version {
                    return Err(TreeError::VersionConflict {
                        current: node.version,
                    }
                    .into());
                }
                ::sqlx::query(q::UPDATE_RECORD)
                    .bind(record)
                    .bind(now)
                    .bind(owner.0)
                    .bind(id.as_bytes().as_slice())
                    .bind(to_i64(expected_version, "node version")?)
                    .execute(&mut **tx)
                    .await?;
                acct.changed(id, None);
                full_node(tx, owner, id).await
            }

            /// [`TreeStore::commit_version`] inside a transaction holding
            /// the account's lock (see [`create_in`]): every check and read
            /// first, then the writes.
            async fn commit_in(
                tx: &mut Tx<'_>,
                acct: &mut Locked,
                id: NodeId,
                expected_version: u64,
                record: &[u8],
                objects: &[ObjectId],
                now: i64,
            ) -> Result<(NodeRow, Released), Fail> {
                let owner = acct.owner;
                // The node with the objects it has, in one query.
                let rows = ::sqlx::query(q::NODE_HEAD_OBJECTS)
                    .bind(owner.0)
                    .bind(id.as_bytes().as_slice())
                    .bind(owner.0)
                    .bind(id.as_bytes().as_slice())
                    .fetch_all(&mut **tx)
                    .await?;
                let Some(first) = rows.first() else {
                    return Err(TreeError::NotFound.into());
                };
                let node = head_from_row(first)?;
                if node.kind != NodeKind::File {
                    return Err(TreeError::NotAFile.into());
                }
                if node.version != expected_version {
                    return Err(TreeError::VersionConflict {
                        current: node.version,
                    }
                    .into());
                }
                let version = expected_version
                    .checked_add(1)
                    .ok_or(StoreError::Corrupt("node version"))?;
                let listed = listed_objects(tx, owner, Some(id), objects).await?;
                // What the node had and the list leaves out is released.
                let mut released = Released::default();
                for row in &rows {
                    let object: Option<Vec<u8>> = row.try_get("object_id")?;
                    let Some(object) = object else {
                        continue;
                    };
                    let object = object_id(&object)?;
                    if listed.set.contains(&object) {
                        continue;
                    }
                    let size: Option<i64> = row.try_get("size")?;
                    let size = size.ok_or(StoreError::Corrupt("object size"))?;
                    acct.release(to_u64(size, "object size")?)?;
                    released.objects.push(object);
                }
                commit_objects(tx, owner, id, &listed.pending).await?;
                update_objects(tx, q::RELEASE_OBJECTS_IN, None, owner, &released.objects).await?;
                ::sqlx::query(q::COMMIT_RECORD)
                    .bind(record)
                    .bind(to_i64(listed.size, "file size")?)
                    .bind(now)
                    .bind(owner.0)
                    .bind(id.as_bytes().as_slice())
                    .bind(to_i64(expected_version, "node version")?)
                    .execute(&mut **tx)
                    .await?;
                acct.changed(id, None);
                // Exactly what COMMIT_RECORD left (no read back).
                let node = NodeRow {
                    id,
                    kind: node.kind,
                    version,
                    record: record.to_vec(),
                    size: listed.size,
                    nlink: node.nlink,
                    created_at: node.created_at,
                    updated_at: now,
                };
                Ok((node, released))
            }

            impl $store {
                async fn try_create_node(
                    &self,
                    owner: AccountId,
                    new: &NewNode,
                    now: i64,
                ) -> Result<NodeRow, Fail> {
                    let mut tx = self.begin_write().await?;
                    let mut acct = lock_owner(&mut tx, owner).await?;
                    let mut dirs = ::std::collections::HashSet::new();
                    let node = create_in(&mut tx, &mut acct, new, &mut dirs, now).await?;
                    finish(tx, acct, now).await?;
                    Ok(node)
                }

                async fn try_link(
                    &self,
                    owner: AccountId,
                    entry: &NewEntry,
                    child: NodeId,
                    now: i64,
                ) -> Result<NodeRow, Fail> {
                    let mut tx = self.begin_write().await?;
                    let mut acct = lock_owner(&mut tx, owner).await?;
                    let Some(node) = head(&mut tx, owner, child).await? else {
                        return Err(TreeError::NotFound.into());
                    };
                    if node.kind == NodeKind::Directory {
                        return Err(TreeError::IsADirectory.into());
                    }
                    directory(&mut tx, owner, entry.parent).await?;
                    if find_entry(&mut tx, owner, entry.parent, &entry.tag)
                        .await?
                        .is_some()
                    {
                        return Err(TreeError::EntryExists.into());
                    }
                    insert_entry(&mut tx, owner, entry, child).await?;
                    ::sqlx::query(q::SET_NLINK)
                        .bind(i64::from(node.nlink) + 1)
                        .bind(now)
                        .bind(owner.0)
                        .bind(child.as_bytes().as_slice())
                        .execute(&mut *tx)
                        .await?;
                    acct.changed(child, Some(entry.parent));
                    let node = full_node(&mut tx, owner, child).await?;
                    finish(tx, acct, now).await?;
                    Ok(node)
                }

                async fn try_list(
                    &self,
                    owner: AccountId,
                    parent: NodeId,
                    after: Option<&NameTag>,
                    limit: u32,
                ) -> Result<Vec<(EntryRow, NodeRow)>, Fail> {
                    // A read transaction: on SQLite the check and the page
                    // see one snapshot.
                    let mut tx = self.pool.begin().await?;
                    directory(&mut tx, owner, parent).await?;
                    let query = match after {
                        None => ::sqlx::query(q::LIST_FIRST)
                            .bind(owner.0)
                            .bind(parent.as_bytes().as_slice()),
                        Some(after) => ::sqlx::query(q::LIST_AFTER)
                            .bind(owner.0)
                            .bind(parent.as_bytes().as_slice())
                            .bind(after.as_bytes().as_slice()),
                    };
                    let rows = query.bind(i64::from(limit)).fetch_all(&mut *tx).await?;
                    tx.commit().await?;
                    let mut page = Vec::with_capacity(rows.len());
                    for row in &rows {
                        page.push((entry_from_row(row)?, node_from_row(row)?));
                    }
                    Ok(page)
                }

                async fn try_update_record(
                    &self,
                    owner: AccountId,
                    id: NodeId,
                    expected_version: u64,
                    record: &[u8],
                    now: i64,
                ) -> Result<NodeRow, Fail> {
                    let mut tx = self.begin_write().await?;
                    let mut acct = lock_owner(&mut tx, owner).await?;
                    let node =
                        record_in(&mut tx, &mut acct, id, expected_version, record, now).await?;
                    finish(tx, acct, now).await?;
                    Ok(node)
                }

                async fn try_commit_version(
                    &self,
                    owner: AccountId,
                    id: NodeId,
                    expected_version: u64,
                    record: &[u8],
                    objects: &[ObjectId],
                    now: i64,
                ) -> Result<(NodeRow, Released), Fail> {
                    let mut tx = self.begin_write().await?;
                    let mut acct = lock_owner(&mut tx, owner).await?;
                    let done = commit_in(
                        &mut tx,
                        &mut acct,
                        id,
                        expected_version,
                        record,
                        objects,
                        now,
                    )
                    .await?;
                    finish(tx, acct, now).await?;
                    Ok(done)
                }

                async fn try_rename(
                    &self,
                    owner: AccountId,
                    op: &Rename,
                    now: i64,
                ) -> Result<Released, Fail> {
                    let mut tx = self.begin_write().await?;
                    let mut acct = lock_owner(&mut tx, owner).await?;
                    directory(&mut tx, owner, op.src_parent).await?;
                    directory(&mut tx, owner, op.dst_parent).await?;
                    let Some(src) = find_entry(&mut tx, owner, op.src_parent, &op.src_tag).await?
                    else {
                        return Err(TreeError::NotFound.into());
                    };
                    let Some(src_node) = head(&mut tx, owner, src.child).await? else {
                        return Err(StoreError::Corrupt("entry without node").into());
                    };
                    let dst = find_entry(&mut tx, owner, op.dst_parent, &op.dst_tag).await?;
                    let target = match &dst {
                        None => None,
                        Some(dst) => match head(&mut tx, owner, dst.child).await? {
                            Some(node) => Some(node),
                            None => return Err(StoreError::Corrupt("entry without node").into()),
                        },
                    };

                    match (op.mode, &dst) {
                        (RenameMode::NoReplace, Some(_)) => {
                            return Err(TreeError::EntryExists.into());
                        }
                        (RenameMode::Exchange, None) => return Err(TreeError::NotFound.into()),
                        // Onto itself, or onto another link of the same node:
                        // POSIX rename does nothing and succeeds (so does an
                        // exchange of a node with itself).
                        (_, Some(dst)) if dst.child == src.child => {
                            return Ok(Released::default());
                        }
                        _ => {}
                    }
                    let src_is_dir = src_node.kind == NodeKind::Directory;
                    let moves_dir = src_is_dir && op.src_parent != op.dst_parent;
                    if moves_dir && is_at_or_above(&mut tx, owner, src.child, op.dst_parent).await?
                    {
                        return Err(TreeError::InvalidMove.into());
                    }

                    let mut released = Released::default();
                    match (&dst, target) {
                        (Some(dst), Some(target)) if op.mode == RenameMode::Exchange => {
                            let Some(src_name) = &op.src_encrypted_name else {
                                return Err(TreeError::InvalidMove.into());
                            };
                            let target_is_dir = target.kind == NodeKind::Directory;
                            if target_is_dir
                                && op.src_parent != op.dst_parent
                                && is_at_or_above(&mut tx, owner, dst.child, op.src_parent).await?
                            {
                                return Err(TreeError::InvalidMove.into());
                            }
                            ::sqlx::query(q::SET_ENTRY_CHILD)
                                .bind(dst.child.as_bytes().as_slice())
                                .bind(src_name.as_slice())
                                .bind(owner.0)
                                .bind(op.src_parent.as_bytes().as_slice())
                                .bind(op.src_tag.as_bytes().as_slice())
                                .execute(&mut *tx)
                                .await?;
                            ::sqlx::query(q::SET_ENTRY_CHILD)
                                .bind(src.child.as_bytes().as_slice())
                                .bind(op.dst_encrypted_name.as_slice())
                                .bind(owner.0)
                                .bind(op.dst_parent.as_bytes().as_slice())
                                .bind(op.dst_tag.as_bytes().as_slice())
                                .execute(&mut *tx)
                                .await?;
                            touch(&mut tx, owner, src.child, now).await?;
                            touch(&mut tx, owner, dst.child, now).await?;
                            acct.changed(src.child, Some(op.src_parent));
                            acct.changed(src.child, Some(op.dst_parent));
                            acct.changed(dst.child, Some(op.dst_parent));
                            acct.changed(dst.child, Some(op.src_parent));
                            finish(tx, acct, now).await?;
                            return Ok(released);
                        }
                        (Some(dst), Some(target)) => {
                            // Replace: POSIX type rules, then the target
                            // loses this entry.
                            let target_is_dir = target.kind == NodeKind::Directory;
                            match (src_is_dir, target_is_dir) {
                                (false, true) => return Err(TreeError::IsADirectory.into()),
                                (true, false) => return Err(TreeError::NotADirectory.into()),
                                (true, true) if has_entries(&mut tx, owner, dst.child).await? => {
                                    return Err(TreeError::NotEmpty.into());
                                }
                                _ => {}
                            }
                            delete_entry(&mut tx, owner, op.dst_parent, &op.dst_tag).await?;
                            drop_link(
                                &mut tx,
                                &mut acct,
                                dst.child,
                                target.nlink,
                                now,
                                &mut released,
                            )
                            .await?;
                            acct.changed(dst.child, Some(op.dst_parent));
                        }
                        _ => {}
                    }
                    ::sqlx::query(q::MOVE_ENTRY)
                        .bind(op.dst_parent.as_bytes().as_slice())
                        .bind(op.dst_tag.as_bytes().as_slice())
                        .bind(op.dst_encrypted_name.as_slice())
                        .bind(owner.0)
                        .bind(op.src_parent.as_bytes().as_slice())
                        .bind(op.src_tag.as_bytes().as_slice())
                        .execute(&mut *tx)
                        .await?;
                    touch(&mut tx, owner, src.child, now).await?;
                    acct.changed(src.child, Some(op.src_parent));
                    acct.changed(src.child, Some(op.dst_parent));
                    finish(tx, acct, now).await?;
                    Ok(released)
                }

                async fn try_remove(
                    &self,
                    owner: AccountId,
                    parent: NodeId,
                    tag: &NameTag,
                    dir: bool,
                    now: i64,
                ) -> Result<Released, Fail> {
                    let mut tx = self.begin_write().await?;
                    let mut acct = lock_owner(&mut tx, owner).await?;
                    directory(&mut tx, owner, parent).await?;
                    let Some(found) = find_entry(&mut tx, owner, parent, tag).await? else {
                        return Err(TreeError::NotFound.into());
                    };
                    let Some(node) = head(&mut tx, owner, found.child).await? else {
                        return Err(StoreError::Corrupt("entry without node").into());
                    };
                    let is_dir = node.kind == NodeKind::Directory;
                    match (dir, is_dir) {
                        (true, false) => return Err(TreeError::NotADirectory.into()),
                        (false, true) => return Err(TreeError::IsADirectory.into()),
                        (true, true) if has_entries(&mut tx, owner, found.child).await? => {
                            return Err(TreeError::NotEmpty.into());
                        }
                        _ => {}
                    }
                    delete_entry(&mut tx, owner, parent, tag).await?;
                    let mut released = Released::default();
                    drop_link(
                        &mut tx,
                        &mut acct,
                        found.child,
                        node.nlink,
                        now,
                        &mut released,
                    )
                    .await?;
                    acct.changed(found.child, Some(parent));
                    finish(tx, acct, now).await?;
                    Ok(released)
                }

                async fn try_reserve_objects(
                    &self,
                    owner: AccountId,
                    objects: &[NewObject],
                    default_quota: u64,
                    now: i64,
                ) -> Result<(), Fail> {
                    let mut tx = self.begin_write().await?;
                    let mut acct = lock_owner(&mut tx, owner).await?;
                    // Which ids are taken, a hundred per query.
                    let mut taken = ::std::collections::HashSet::new();
                    for chunk in q::shaped(&objects, q::NODES_CHUNK) {
                        // Only placeholders are appended to the statement.
                        let sql = format!("{}{}", q::OBJECTS_IN, q::placeholders(chunk.len()));
                        let mut query = ::sqlx::query(::sqlx::AssertSqlSafe(sql)).bind(owner.0);
                        for object in chunk {
                            query = query.bind(object.id.as_bytes().as_slice());
                        }
                        for row in query.fetch_all(&mut *tx).await? {
                            let id: Vec<u8> = row.try_get("object_id")?;
                            taken.insert(object_id(&id)?);
                        }
                    }
                    // In order: the first refused object decides.
                    let mut listed = ::std::collections::HashSet::with_capacity(objects.len());
                    for object in objects {
                        if taken.contains(&object.id) || !listed.insert(object.id) {
                            return Err(TreeError::EntryExists.into());
                        }
                        // Checked and charged under the account's lock.
                        acct.reserve(object.size, default_quota)?;
                    }
                    for chunk in q::shaped(&objects, q::NODES_CHUNK) {
                        let sql = format!(
                            "{}{}",
                            q::INSERT_OBJECTS,
                            vec![q::OBJECT_ROW; chunk.len()].join(", ")
                        );
                        let mut query = ::sqlx::query(::sqlx::AssertSqlSafe(sql));
                        for object in chunk {
                            query = query
                                .bind(owner.0)
                                .bind(object.id.as_bytes().as_slice())
                                .bind(to_i64(object.size, "object size")?)
                                .bind(object.checksum.sha256().map(<[u8; 32]>::as_slice))
                                .bind(object.checksum.crc32c().map(i64::from))
                                .bind(now);
                        }
                        query.execute(&mut *tx).await?;
                    }
                    finish(tx, acct, now).await
                }

                async fn try_batch(
                    &self,
                    owner: AccountId,
                    ops: &[TreeOp],
                    now: i64,
                ) -> Result<Vec<TreeOpResult>, Fail> {
                    let mut tx = self.begin_write().await?;
                    let mut acct = lock_owner(&mut tx, owner).await?;
                    let mut results = Vec::with_capacity(ops.len());
                    // The parents found to be directories, each checked once
                    // (see `create_in`).
                    let mut dirs = ::std::collections::HashSet::new();
                    // Runs of creates (the uploader's new files, most of
                    // what it sends) are written together when none of a
                    // run is refused; otherwise, and for other operations,
                    // one by one. `ops[..done]` were written together; runs
                    // up to `tried` were tried.
                    let (mut done, mut tried) = (0, 0);
                    for (i, op) in ops.iter().enumerate() {
                        if i < done {
                            continue;
                        }
                        if i >= tried {
                            let news: Vec<&NewNode> = ops
                                .get(i..)
                                .unwrap_or_default()
                                .iter()
                                .map_while(|op| match op {
                                    TreeOp::Create(new) => Some(new),
                                    _ => None,
                                })
                                .collect();
                            tried = i + news.len().max(1);
                            if news.len() > 1 {
                                let mark = acct.next_op();
                                ::sqlx::raw_sql(q::SAVEPOINT).execute(&mut *tx).await?;
                                if let Some(rows) =
                                    create_all(&mut tx, &mut acct, &news, &mut dirs, now).await?
                                {
                                    results.extend(
                                        rows.into_iter().map(|row| Ok((row, Released::default()))),
                                    );
                                    done = tried;
                                    continue;
                                }
                                ::sqlx::raw_sql(q::ROLLBACK_TO_SAVEPOINT)
                                    .execute(&mut *tx)
                                    .await?;
                                acct.restore(mark);
                                ::tracing::debug!(
                                    creates = news.len(),
                                    "a run of creates goes one by one (one would be refused)"
                                );
                            }
                        }
                        let mark = acct.next_op();
                        // A savepoint per operation: a refused one is
                        // undone alone. One name, set again before each
                        // operation (MySQL moves it; SQLite stacks them and
                        // rolls back to the latest), never released: the
                        // commit ends them all, one round trip less per
                        // operation.
                        ::sqlx::raw_sql(q::SAVEPOINT).execute(&mut *tx).await?;
                        let done = match op {
                            TreeOp::Create(new) if new.entry.is_none() => {
                                Err(Fail::Tree(TreeError::InvalidMove))
                            }
                            TreeOp::Create(new) => {
                                create_in(&mut tx, &mut acct, new, &mut dirs, now)
                                    .await
                                    .map(|node| (node, Released::default()))
                            }
                            TreeOp::Commit(v) => {
                                commit_in(
                                    &mut tx,
                                    &mut acct,
                                    v.id,
                                    v.expected_version,
                                    &v.record,
                                    &v.objects,
                                    now,
                                )
                                .await
                            }
                            TreeOp::Record(r) => record_in(
                                &mut tx,
                                &mut acct,
                                r.id,
                                r.expected_version,
                                &r.record,
                                now,
                            )
                            .await
                            .map(|node| (node, Released::default())),
                        };
                        match done {
                            Ok(done) => results.push(Ok(done)),
                            Err(Fail::Tree(refused)) => {
                                ::sqlx::raw_sql(q::ROLLBACK_TO_SAVEPOINT)
                                    .execute(&mut *tx)
                                    .await?;
                                acct.restore(mark);
                                results.push(Err(refused));
                            }
                            // The database failed (a deadlock may even have
                            // ended the whole transaction): the batch fails
                            // as a whole, and may run again.
                            Err(Fail::Db(e)) => return Err(Fail::Db(e)),
                        }
                    }
                    finish(tx, acct, now).await?;
                    Ok(results)
                }

                async fn try_purged_many(
                    &self,
                    objects: &[(AccountId, ObjectId)],
                ) -> Result<(), Fail> {
                    let mut tx = self.begin_write().await?;
                    for (owner, id) in objects {
                        ::sqlx::query(q::FORGET_OBJECT)
                            .bind(owner.0)
                            .bind(id.as_bytes().as_slice())
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(())
                }

                async fn try_abandon_object(
                    &self,
                    owner: AccountId,
                    id: ObjectId,
                ) -> Result<(), Fail> {
                    let mut tx = self.begin_write().await?;
                    let mut acct = lock_owner(&mut tx, owner).await?;
                    let row = ::sqlx::query(q::OBJECT)
                        .bind(owner.0)
                        .bind(id.as_bytes().as_slice())
                        .fetch_optional(&mut *tx)
                        .await?;
                    let Some(row) = row else {
                        return Err(TreeError::NotFound.into());
                    };
                    let state: String = row.try_get("state")?;
                    if state != q::PENDING {
                        return Err(TreeError::NotFound.into());
                    }
                    ::sqlx::query(q::RELEASE_OBJECT)
                        .bind(owner.0)
                        .bind(id.as_bytes().as_slice())
                        .execute(&mut *tx)
                        .await?;
                    acct.release(object_from_row(&row)?.size)?;
                    // No change to the tree: no feed record (`finish` puts
                    // the sequence number back).
                    finish(tx, acct, 0).await
                }

                async fn try_release_stale_pending(
                    &self,
                    cutoff: i64,
                    limit: u32,
                ) -> Result<Vec<(AccountId, ObjectId)>, Fail> {
                    let candidates = ::sqlx::query(q::STALE_PENDING)
                        .bind(cutoff)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await?
                        .iter()
                        .map(account_object_from_row)
                        .collect::<Result<Vec<_>, StoreError>>()?;
                    // One lock per account, taken in account order (no
                    // deadlock with another collector).
                    let mut by_account: ::std::collections::BTreeMap<AccountId, Vec<ObjectId>> =
                        ::std::collections::BTreeMap::new();
                    for (owner, object) in candidates {
                        by_account.entry(owner).or_default().push(object);
                    }
                    let mut tx = self.begin_write().await?;
                    let mut released = Vec::new();
                    for (owner, objects) in by_account {
                        let Some(mut acct) = lock(&mut tx, owner).await? else {
                            continue;
                        };
                        for object in objects {
                            // Still pending now that the account is locked?
                            let row = ::sqlx::query(q::STALE_PENDING_SIZE)
                                .bind(owner.0)
                                .bind(object.as_bytes().as_slice())
                                .bind(cutoff)
                                .fetch_optional(&mut *tx)
                                .await?;
                            let Some(row) = row else { continue };
                            ::sqlx::query(q::RELEASE_OBJECT)
                                .bind(owner.0)
                                .bind(object.as_bytes().as_slice())
                                .execute(&mut *tx)
                                .await?;
                            acct.release(to_u64(row.try_get("size")?, "object size")?)?;
                            released.push((owner, object));
                        }
                        ::sqlx::query(q::SAVE_USAGE)
                            .bind(acct.final_seq()?)
                            .bind(to_i64(acct.used, "used bytes")?)
                            .bind(to_i64(acct.nodes, "node count")?)
                            .bind(owner.0)
                            .execute(&mut *tx)
                            .await?;
                    }
                    tx.commit().await?;
                    Ok(released)
                }
            }

            #[::async_trait::async_trait]
            impl TreeStore for $store {
                async fn create_node(
                    &self,
                    owner: AccountId,
                    new: &NewNode,
                    now: i64,
                ) -> Result<NodeRow, TreeError> {
                    retry_tree!(self.try_create_node(owner, new, now))
                }

                async fn link(
                    &self,
                    owner: AccountId,
                    entry: &NewEntry,
                    child: NodeId,
                    now: i64,
                ) -> Result<NodeRow, TreeError> {
                    retry_tree!(self.try_link(owner, entry, child, now))
                }

                async fn node(
                    &self,
                    owner: AccountId,
                    id: NodeId,
                ) -> Result<Option<NodeRow>, TreeError> {
                    let row = ::sqlx::query(q::NODE)
                        .bind(owner.0)
                        .bind(id.as_bytes().as_slice())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(StoreError::from)?;
                    Ok(row.as_ref().map(node_from_row).transpose()?)
                }

                async fn node_in_session(
                    &self,
                    session: &str,
                    id: NodeId,
                ) -> Result<Option<InSession<NodeRow>>, TreeError> {
                    let row = ::sqlx::query(q::NODE_IN_SESSION)
                        .bind(id.as_bytes().as_slice())
                        .bind(session)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(StoreError::from)?;
                    Ok(in_session(row, node_from_row)?)
                }

                async fn lookup_in_session(
                    &self,
                    session: &str,
                    parent: NodeId,
                    tag: &NameTag,
                ) -> Result<Option<InSession<(EntryRow, NodeRow)>>, TreeError> {
                    let row = ::sqlx::query(q::LOOKUP_IN_SESSION)
                        .bind(parent.as_bytes().as_slice())
                        .bind(tag.as_bytes().as_slice())
                        .bind(session)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(StoreError::from)?;
                    Ok(in_session(row, |r| {
                        Ok((entry_from_row(r)?, node_from_row(r)?))
                    })?)
                }

                async fn nodes(
                    &self,
                    owner: AccountId,
                    ids: &[NodeId],
                ) -> Result<Vec<NodeRow>, TreeError> {
                    let mut seen = ::std::collections::HashSet::with_capacity(ids.len());
                    let unique: Vec<NodeId> =
                        ids.iter().copied().filter(|id| seen.insert(*id)).collect();
                    let mut found = ::std::collections::HashMap::with_capacity(unique.len());
                    for chunk in q::shaped(&unique, q::NODES_CHUNK) {
                        // Only placeholders are appended to the statement.
                        let sql = format!("{}{}", q::NODES_IN, q::placeholders(chunk.len()));
                        let mut query = ::sqlx::query(::sqlx::AssertSqlSafe(sql)).bind(owner.0);
                        for id in chunk {
                            query = query.bind(id.as_bytes().as_slice());
                        }
                        let rows = query
                            .fetch_all(&self.pool)
                            .await
                            .map_err(StoreError::from)?;
                        for row in &rows {
                            let node = node_from_row(row)?;
                            found.insert(node.id, node);
                        }
                    }
                    // In the order asked for, each once.
                    Ok(unique.iter().filter_map(|id| found.remove(id)).collect())
                }

                async fn lookup(
                    &self,
                    owner: AccountId,
                    parent: NodeId,
                    tag: &NameTag,
                ) -> Result<Option<(EntryRow, NodeRow)>, TreeError> {
                    let row = ::sqlx::query(q::LOOKUP)
                        .bind(owner.0)
                        .bind(parent.as_bytes().as_slice())
                        .bind(tag.as_bytes().as_slice())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(StoreError::from)?;
                    match row {
                        None => Ok(None),
                        Some(row) => Ok(Some((entry_from_row(&row)?, node_from_row(&row)?))),
                    }
                }

                async fn list(
                    &self,
                    owner: AccountId,
                    parent: NodeId,
                    after: Option<&NameTag>,
                    limit: u32,
                ) -> Result<Vec<(EntryRow, NodeRow)>, TreeError> {
                    self.try_list(owner, parent, after, limit)
                        .await
                        .map_err(Fail::into_tree)
                }

                async fn update_record(
                    &self,
                    owner: AccountId,
                    id: NodeId,
                    expected_version: u64,
                    record: &[u8],
                    now: i64,
                ) -> Result<NodeRow, TreeError> {
                    retry_tree!(self.try_update_record(owner, id, expected_version, record, now))
                }

                async fn commit_version(
                    &self,
                    owner: AccountId,
                    id: NodeId,
                    expected_version: u64,
                    record: &[u8],
                    objects: &[ObjectId],
                    now: i64,
                ) -> Result<(NodeRow, Released), TreeError> {
                    retry_tree!(self.try_commit_version(
                        owner,
                        id,
                        expected_version,
                        record,
                        objects,
                        now
                    ))
                }

                async fn rename(
                    &self,
                    owner: AccountId,
                    op: &Rename,
                    now: i64,
                ) -> Result<Released, TreeError> {
                    retry_tree!(self.try_rename(owner, op, now))
                }

                async fn remove(
                    &self,
                    owner: AccountId,
                    parent: NodeId,
                    tag: &NameTag,
                    dir: bool,
                    now: i64,
                ) -> Result<Released, TreeError> {
                    retry_tree!(self.try_remove(owner, parent, tag, dir, now))
                }

                async fn reserve_object(
                    &self,
                    owner: AccountId,
                    id: ObjectId,
                    size: u64,
                    checksum: Checksum,
                    default_quota: u64,
                    now: i64,
                ) -> Result<(), TreeError> {
                    let one = [NewObject { id, size, checksum }];
                    retry_tree!(self.try_reserve_objects(owner, &one, default_quota, now))
                }

                async fn reserve_objects(
                    &self,
                    owner: AccountId,
                    objects: &[NewObject],
                    default_quota: u64,
                    now: i64,
                ) -> Result<(), TreeError> {
                    if objects.is_empty() {
                        return Ok(());
                    }
                    retry_tree!(self.try_reserve_objects(owner, objects, default_quota, now))
                }

                async fn batch(
                    &self,
                    owner: AccountId,
                    ops: &[TreeOp],
                    now: i64,
                ) -> Result<Vec<TreeOpResult>, TreeError> {
                    if ops.is_empty() {
                        return Ok(Vec::new());
                    }
                    retry_tree!(self.try_batch(owner, ops, now))
                }

                async fn abandon_object(
                    &self,
                    owner: AccountId,
                    id: ObjectId,
                ) -> Result<(), TreeError> {
                    retry_tree!(self.try_abandon_object(owner, id))
                }

                async fn object(
                    &self,
                    owner: AccountId,
                    id: ObjectId,
                ) -> Result<Option<ObjectRow>, TreeError> {
                    let row = ::sqlx::query(q::OBJECT)
                        .bind(owner.0)
                        .bind(id.as_bytes().as_slice())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(StoreError::from)?;
                    let Some(row) = row else {
                        return Ok(None);
                    };
                    let state: String = row.try_get("state").map_err(StoreError::from)?;
                    if state != q::PENDING && state != q::COMMITTED {
                        return Ok(None);
                    }
                    Ok(Some(object_from_row(&row)?))
                }

                async fn release_stale_pending(
                    &self,
                    cutoff: i64,
                    limit: u32,
                ) -> Result<Vec<(AccountId, ObjectId)>, TreeError> {
                    retry_tree!(self.try_release_stale_pending(cutoff, limit))
                }

                async fn purge_queue(
                    &self,
                    limit: u32,
                ) -> Result<Vec<(AccountId, ObjectId)>, TreeError> {
                    let rows = ::sqlx::query(q::PURGE_QUEUE)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await
                        .map_err(StoreError::from)?;
                    Ok(rows
                        .iter()
                        .map(account_object_from_row)
                        .collect::<Result<Vec<_>, StoreError>>()?)
                }

                async fn purged(&self, owner: AccountId, id: ObjectId) -> Result<(), TreeError> {
                    self.purged_many(&[(owner, id)]).await
                }

                async fn purged_many(
                    &self,
                    objects: &[(AccountId, ObjectId)],
                ) -> Result<(), TreeError> {
                    if objects.is_empty() {
                        return Ok(());
                    }
                    retry_tree!(self.try_purged_many(objects))
                }

                async fn usage(
                    &self,
                    owner: AccountId,
                    default_quota: u64,
                ) -> Result<Usage, TreeError> {
                    let row = ::sqlx::query(q::USAGE)
                        .bind(owner.0)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(StoreError::from)?;
                    let Some(row) = row else {
                        return Ok(Usage {
                            used_bytes: 0,
                            quota_bytes: default_quota,
                            nodes: 0,
                            seq: 0,
                        });
                    };
                    let quota: Option<i64> =
                        row.try_get("quota_bytes").map_err(StoreError::from)?;
                    Ok(Usage {
                        used_bytes: to_u64(
                            row.try_get("used_bytes").map_err(StoreError::from)?,
                            "used bytes",
                        )?,
                        quota_bytes: match quota {
                            Some(q) => to_u64(q, "quota")?,
                            None => default_quota,
                        },
                        nodes: to_u64(
                            row.try_get("node_count").map_err(StoreError::from)?,
                            "node count",
                        )?,
                        seq: row.try_get("seq").map_err(StoreError::from)?,
                    })
                }

                async fn changes(
                    &self,
                    owner: AccountId,
                    since: i64,
                    limit: u32,
                ) -> Result<Vec<ChangeRow>, TreeError> {
                    let rows = ::sqlx::query(q::CHANGES)
                        .bind(owner.0)
                        .bind(since)
                        .bind(i64::from(limit))
                        .fetch_all(&self.pool)
                        .await
                        .map_err(StoreError::from)?;
                    Ok(rows
                        .iter()
                        .map(change_from_row)
                        .collect::<Result<Vec<_>, StoreError>>()?)
                }

                #[cfg(test)]
                async fn insert_nodes_for_test(
                    &self,
                    owner: AccountId,
                    new: &[NewNode],
                    now: i64,
                ) -> Result<(), TreeError> {
                    self.try_insert_nodes_for_test(owner, new, now)
                        .await
                        .map_err(Fail::into_tree)
                }
            }

            #[cfg(test)]
            impl $store {
                /// Multi-row inserts of nodes with their entries, in one
                /// transaction, without checks or feed records.
                async fn try_insert_nodes_for_test(
                    &self,
                    owner: AccountId,
                    new: &[NewNode],
                    now: i64,
                ) -> Result<(), Fail> {
                    const CHUNK: usize = 500;
                    let mut tx = self.begin_write().await?;
                    let mut acct = lock_owner(&mut tx, owner).await?;
                    for chunk in new.chunks(CHUNK) {
                        let rows = vec!["(?, ?, ?, 1, ?, 0, 1, ?, ?)"; chunk.len()].join(", ");
                        let sql = format!(
                            "INSERT INTO nodes (owner_id, node_id, kind, version, record, size, \
                             nlink, created_at, updated_at) VALUES {rows}"
                        );
                        let mut query = ::sqlx::query(::sqlx::AssertSqlSafe(sql));
                        for n in chunk {
                            query = query
                                .bind(owner.0)
                                .bind(n.id.as_bytes().as_slice())
                                .bind(i64::from(n.kind.code()))
                                .bind(n.record.as_slice())
                                .bind(now)
                                .bind(now);
                        }
                        query.execute(&mut *tx).await?;
                        let rows = vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", ");
                        let sql = format!(
                            "INSERT INTO entries (owner_id, parent_id, name_tag, encrypted_name, \
                             child_id) VALUES {rows}"
                        );
                        let mut query = ::sqlx::query(::sqlx::AssertSqlSafe(sql));
                        for n in chunk {
                            let e = n.entry.as_ref().ok_or(TreeError::InvalidMove)?;
                            query = query
                                .bind(owner.0)
                                .bind(e.parent.as_bytes().as_slice())
                                .bind(e.tag.as_bytes().as_slice())
                                .bind(e.encrypted_name.as_slice())
                                .bind(n.id.as_bytes().as_slice());
                        }
                        query.execute(&mut *tx).await?;
                    }
                    acct.nodes += new.len() as u64;
                    finish(tx, acct, now).await
                }
            }
        }
    };
}
pub(super) use impl_tree_store;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restored_mark_forgets_what_an_operation_noted() {
        let (a, b) = (NodeId::from_bytes([1; 16]), NodeId::from_bytes([2; 16]));
        let mut acct = Locked {
            owner: AccountId(1),
            prev_seq: 10,
            used: 100,
            quota: Some(1000),
            nodes: 5,
            changes: vec![(a, None)],
            op_start: 0,
        };
        acct.changed(a, None); // already noted: not again
        assert_eq!(acct.changes.len(), 1);
        let mark = acct.next_op();
        acct.changed(b, Some(a));
        acct.changed(b, Some(a));
        acct.changed(a, None); // noted by an earlier operation: again
        acct.nodes += 1;
        acct.reserve(50, 0).unwrap();
        acct.release(20).unwrap();
        assert_eq!(acct.final_seq().unwrap(), 13);
        acct.restore(mark);
        assert_eq!((acct.used, acct.nodes), (100, 5));
        assert_eq!(acct.changes, [(a, None)]);
        assert_eq!(acct.final_seq().unwrap(), 11);
        assert_eq!((acct.prev_seq, acct.quota), (10, Some(1000)));
    }

    #[test]
    fn multi_row_statements_come_in_few_shapes() {
        let mut shapes = std::collections::BTreeSet::new();
        for n in 0..1000_usize {
            let items: Vec<usize> = (0..n).collect();
            let pieces: Vec<&[usize]> = shaped(&items, 100).collect();
            // Every item once, in order.
            assert_eq!(pieces.concat(), items);
            for p in &pieces {
                assert!(p.len() == 100 || (p.len() < 100 && p.len().is_power_of_two()));
                shapes.insert(p.len());
            }
            // Full pieces, then at most one of each power of two.
            let rest: Vec<usize> = pieces
                .iter()
                .map(|p| p.len())
                .filter(|&l| l < 100)
                .collect();
            assert!(rest.windows(2).all(|w| w[0] > w[1]), "{n}: {rest:?}");
        }
        assert_eq!(shapes.len(), 8, "{shapes:?}");
    }
}
