-- Ciphertext objects stored in the database (VAULT_BLOB_STORE=db)
-- (MySQL, MariaDB, TiDB).
--
-- Keep in step with ../sqlite/0002_blob_chunks.sql (same tables, columns and
-- names; src/blob/db.rs runs the same SQL on both).
--
-- A put stages its bytes as chunk rows under a random upload id, then makes
-- the object visible with one INSERT into blob_objects (the commit point and,
-- by its primary key, the write-once check). Chunk rows that no blob_objects
-- row claims are invisible leftovers of unfinished uploads, swept after a
-- grace period (staged_at). No foreign key to accounts: purging the objects
-- of a deleted account is the collector's job, as for the file and S3 stores.
-- A chunk row is 1 MiB: max_allowed_packet must be larger (the default 16
-- MiB is); LONGBLOB because BLOB stops at 64 KiB.

-- One row per visible object.
CREATE TABLE blob_objects (
    owner_id    BIGINT      NOT NULL,
    object_id   BINARY(16)  NOT NULL,
    upload_id   BINARY(16)  NOT NULL,
    size        BIGINT      NOT NULL,
    sha256      BINARY(32)  NOT NULL,
    created_at  BIGINT      NOT NULL,
    PRIMARY KEY (owner_id, object_id),
    UNIQUE KEY blob_objects_upload (upload_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- The bytes: chunks of exactly 1 MiB (the last one shorter), idx from 0.
CREATE TABLE blob_chunks (
    owner_id    BIGINT      NOT NULL,
    object_id   BINARY(16)  NOT NULL,
    upload_id   BINARY(16)  NOT NULL,
    idx         BIGINT      NOT NULL,
    data        LONGBLOB    NOT NULL,
    staged_at   BIGINT      NOT NULL,
    PRIMARY KEY (upload_id, idx),
    KEY blob_chunks_owner (owner_id, object_id),
    KEY blob_chunks_staged (staged_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
