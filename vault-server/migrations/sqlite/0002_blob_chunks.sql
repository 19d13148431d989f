-- Ciphertext objects stored in the database (VAULT_BLOB_STORE=db) (SQLite).
--
-- Keep in step with ../mysql/0002_blob_chunks.sql (same tables, columns and
-- names; src/blob/db.rs runs the same SQL on both).
--
-- A put stages its bytes as chunk rows under a random upload id, then makes
-- the object visible with one INSERT into blob_objects (the commit point and,
-- by its primary key, the write-once check). Chunk rows that no blob_objects
-- row claims are invisible leftovers of unfinished uploads, swept after a
-- grace period (staged_at). No foreign key to accounts: purging the objects
-- of a deleted account is the collector's job, as for the file and S3 stores.

-- One row per visible object.
CREATE TABLE blob_objects (
    owner_id    INTEGER NOT NULL,
    object_id   BLOB    NOT NULL CHECK (length(object_id) = 16),
    upload_id   BLOB    NOT NULL UNIQUE CHECK (length(upload_id) = 16),
    size        INTEGER NOT NULL CHECK (size >= 0),
    sha256      BLOB    NOT NULL CHECK (length(sha256) = 32),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (owner_id, object_id)
) STRICT;

-- The bytes: chunks of exactly 1 MiB (the last one shorter), idx from 0.
-- A rowid table: large rows belong in one (WITHOUT ROWID suits small rows).
CREATE TABLE blob_chunks (
    owner_id    INTEGER NOT NULL,
    object_id   BLOB    NOT NULL,
    upload_id   BLOB    NOT NULL,
    idx         INTEGER NOT NULL CHECK (idx >= 0),
    data        BLOB    NOT NULL,
    staged_at   INTEGER NOT NULL,
    PRIMARY KEY (upload_id, idx)
) STRICT;
CREATE INDEX blob_chunks_owner ON blob_chunks (owner_id, object_id);
CREATE INDEX blob_chunks_staged ON blob_chunks (staged_at);
