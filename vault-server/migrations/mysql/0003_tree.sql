-- The encrypted tree (MySQL, MariaDB, TiDB): per-account usage and change
-- sequence, nodes, directory entries, ciphertext objects and the change feed.
--
-- Keep in step with ../sqlite/0003_tree.sql: same tables, same columns, same
-- names, so both backends share their SQL (src/store/tree_sql.rs, where each
-- statement names the key it uses). Every statement is a lookup or a range
-- scan on one of the keys below, never a scan of an account's tree.
-- Ids are the client's 16 random bytes, name tags and digests 32 bytes
-- (BINARY: compared and ordered byte by byte, as SQLite orders BLOBs); times
-- are Unix seconds. Every row belongs to an account and goes with it.
-- InnoDB clusters rows by primary key: a listing page is one contiguous range.

-- One row per account that has used the tree, created by its first change.
-- Every change of an account first increments `seq` here: that row lock
-- serialises the account's changes and hands out its change-feed numbers.
CREATE TABLE account_usage (
    account_id   BIGINT NOT NULL,
    seq          BIGINT NOT NULL DEFAULT 0,   -- latest change number
    used_bytes   BIGINT NOT NULL DEFAULT 0,   -- live objects
    quota_bytes  BIGINT NULL,                 -- NULL: server default
    node_count   BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (account_id),
    CONSTRAINT account_usage_account_fk FOREIGN KEY (account_id)
        REFERENCES accounts (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE nodes (
    owner_id    BIGINT      NOT NULL,
    node_id     BINARY(16)  NOT NULL,
    kind        BIGINT      NOT NULL,   -- NodeKind code
    version     BIGINT      NOT NULL,
    record      LONGBLOB    NOT NULL,   -- sealed attributes (up to a few MiB)
    size        BIGINT      NOT NULL DEFAULT 0,   -- committed objects
    nlink       BIGINT      NOT NULL,   -- entries naming it
    created_at  BIGINT      NOT NULL,
    updated_at  BIGINT      NOT NULL,
    PRIMARY KEY (owner_id, node_id),
    CONSTRAINT nodes_kind CHECK (kind BETWEEN 1 AND 5),
    CONSTRAINT nodes_account_fk FOREIGN KEY (owner_id)
        REFERENCES accounts (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Lookup by (parent, tag) and listing in tag order: the primary key.
-- Which entries name a node (nlink checks, walking up to the root): entries_child.
-- The code removes entries before their nodes; the cascades on the node keys
-- are there for the deletion of a whole account.
CREATE TABLE entries (
    owner_id        BIGINT          NOT NULL,
    parent_id       BINARY(16)      NOT NULL,
    name_tag        BINARY(32)      NOT NULL,
    encrypted_name  VARBINARY(1024) NOT NULL,
    child_id        BINARY(16)      NOT NULL,
    PRIMARY KEY (owner_id, parent_id, name_tag),
    KEY entries_child (owner_id, child_id),
    CONSTRAINT entries_account_fk FOREIGN KEY (owner_id)
        REFERENCES accounts (id) ON DELETE CASCADE,
    CONSTRAINT entries_parent_fk FOREIGN KEY (owner_id, parent_id)
        REFERENCES nodes (owner_id, node_id) ON DELETE CASCADE,
    CONSTRAINT entries_child_fk FOREIGN KEY (owner_id, child_id)
        REFERENCES nodes (owner_id, node_id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Ciphertext objects: pending (reserved, not yet in a version), committed (to
-- exactly one node) or released (waiting for the blob store to purge it; the
-- row keeps the id from being reused until then).
-- objects_node: a node's objects (commit, deletion); objects_state: the
-- collector's scans (stale pending objects, the purge queue).
CREATE TABLE objects (
    owner_id    BIGINT      NOT NULL,
    object_id   BINARY(16)  NOT NULL,
    node_id     BINARY(16)  NULL,
    size        BIGINT      NOT NULL,
    digest      BINARY(32)  NOT NULL,   -- SHA-256 of the ciphertext
    state       VARCHAR(9)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    created_at  BIGINT      NOT NULL,
    PRIMARY KEY (owner_id, object_id),
    KEY objects_node (owner_id, node_id),
    KEY objects_state (state, created_at),
    CONSTRAINT objects_state_value CHECK (state IN ('pending', 'committed', 'released')),
    CONSTRAINT objects_committed_node CHECK ((state = 'committed') = (node_id IS NOT NULL)),
    CONSTRAINT objects_account_fk FOREIGN KEY (owner_id)
        REFERENCES accounts (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- The change feed: what changed, in the order of the account's sequence.
CREATE TABLE changes (
    owner_id    BIGINT      NOT NULL,
    seq         BIGINT      NOT NULL,
    node_id     BINARY(16)  NOT NULL,
    parent_id   BINARY(16)  NULL,       -- the directory whose listing changed
    changed_at  BIGINT      NOT NULL,
    PRIMARY KEY (owner_id, seq),
    CONSTRAINT changes_account_fk FOREIGN KEY (owner_id)
        REFERENCES accounts (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
