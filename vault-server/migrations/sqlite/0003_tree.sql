-- The encrypted tree (SQLite): per-account usage and change sequence, nodes,
-- directory entries, ciphertext objects and the change feed.
--
-- Keep in step with ../mysql/0003_tree.sql: same tables, same columns, same
-- names, so both backends share their SQL (src/store/tree_sql.rs, where each
-- statement names the key it uses). Every statement is a lookup or a range
-- scan on one of the keys below, never a scan of an account's tree.
-- Ids are the client's 16 random bytes, name tags and digests 32 bytes; times
-- are Unix seconds. Every row belongs to an account and goes with it.
--
-- Entries and changes are small rows read by primary key ranges: WITHOUT
-- ROWID tables, clustered by that key, so a listing page is one contiguous
-- range. Nodes carry the sealed record (up to a few MiB) and stay a rowid
-- table. So do objects, which are mostly read through secondary indexes:
-- without statistics (no ANALYZE), SQLite prices a one-column prefix of a
-- WITHOUT ROWID primary key below a two-column secondary index plus the
-- primary-key lookup it needs, and would scan all of an account's objects to
-- find one node's (tree_tests.rs checks every plan).

-- One row per account that has used the tree, created by its first change.
-- Every change of an account first increments `seq` here: that row lock
-- serialises the account's changes and hands out its change-feed numbers.
CREATE TABLE account_usage (
    account_id   INTEGER NOT NULL PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL DEFAULT 0 CHECK (seq >= 0),        -- latest change number
    used_bytes   INTEGER NOT NULL DEFAULT 0 CHECK (used_bytes >= 0), -- live objects
    quota_bytes  INTEGER CHECK (quota_bytes >= 0),                   -- NULL: server default
    node_count   INTEGER NOT NULL DEFAULT 0 CHECK (node_count >= 0)
) STRICT;

CREATE TABLE nodes (
    owner_id    INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    node_id     BLOB    NOT NULL CHECK (length(node_id) = 16),
    kind        INTEGER NOT NULL CHECK (kind BETWEEN 1 AND 5),  -- NodeKind code
    version     INTEGER NOT NULL CHECK (version >= 1),
    record      BLOB    NOT NULL,                               -- sealed attributes
    size        INTEGER NOT NULL DEFAULT 0 CHECK (size >= 0),   -- committed objects
    nlink       INTEGER NOT NULL CHECK (nlink >= 0),            -- entries naming it
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (owner_id, node_id)
) STRICT;

-- Lookup by (parent, tag) and listing in tag order: the primary key.
-- Which entries name a node (nlink checks, walking up to the root): entries_child.
-- The code removes entries before their nodes; the cascades on the node keys
-- are there for the deletion of a whole account.
CREATE TABLE entries (
    owner_id        INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    parent_id       BLOB    NOT NULL,
    name_tag        BLOB    NOT NULL CHECK (length(name_tag) = 32),
    encrypted_name  BLOB    NOT NULL CHECK (length(encrypted_name) <= 1024),
    child_id        BLOB    NOT NULL,
    PRIMARY KEY (owner_id, parent_id, name_tag),
    FOREIGN KEY (owner_id, parent_id) REFERENCES nodes (owner_id, node_id) ON DELETE CASCADE,
    FOREIGN KEY (owner_id, child_id) REFERENCES nodes (owner_id, node_id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
CREATE INDEX entries_child ON entries (owner_id, child_id);

-- Ciphertext objects: pending (reserved, not yet in a version), committed (to
-- exactly one node) or released (waiting for the blob store to purge it; the
-- row keeps the id from being reused until then).
CREATE TABLE objects (
    owner_id    INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    object_id   BLOB    NOT NULL CHECK (length(object_id) = 16),
    node_id     BLOB    CHECK (length(node_id) = 16),
    size        INTEGER NOT NULL CHECK (size >= 0),
    digest      BLOB    NOT NULL CHECK (length(digest) = 32),  -- SHA-256 of the ciphertext
    state       TEXT    NOT NULL CHECK (state IN ('pending', 'committed', 'released')),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (owner_id, object_id),
    CHECK ((state = 'committed') = (node_id IS NOT NULL))
) STRICT;
-- A node's objects (commit, deletion).
CREATE INDEX objects_node ON objects (owner_id, node_id);
-- The collector's scans: stale pending objects and the purge queue.
CREATE INDEX objects_state ON objects (state, created_at);

-- The change feed: what changed, in the order of the account's sequence.
CREATE TABLE changes (
    owner_id    INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,
    node_id     BLOB    NOT NULL,
    parent_id   BLOB,                -- the directory whose listing changed
    changed_at  INTEGER NOT NULL,
    PRIMARY KEY (owner_id, seq)
) STRICT, WITHOUT ROWID;
