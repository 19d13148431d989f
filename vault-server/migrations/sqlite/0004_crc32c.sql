-- Uploads may announce a CRC-32C instead of a SHA-256 (SQLite).
--
-- Keep in step with ../mysql/0004_crc32c.sql.
--
-- An upload's checksum guards the transfer only (the client authenticates
-- the ciphertext itself), and a CRC-32C costs a fraction of a SHA-256. Each
-- object row keeps the one checksum its upload announced: `digest`/`sha256`
-- (32 bytes) or `crc32c` (0 .. 2^32-1), the other NULL. SQLite cannot drop a
-- NOT NULL constraint in place, so both tables are rebuilt with their rows,
-- keys and indexes unchanged. Nothing references either table.

CREATE TABLE objects_new (
    owner_id    INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    object_id   BLOB    NOT NULL CHECK (length(object_id) = 16),
    node_id     BLOB    CHECK (length(node_id) = 16),
    size        INTEGER NOT NULL CHECK (size >= 0),
    digest      BLOB    CHECK (length(digest) = 32),            -- SHA-256 of the ciphertext
    crc32c      INTEGER CHECK (crc32c BETWEEN 0 AND 4294967295), -- or its CRC-32C
    state       TEXT    NOT NULL CHECK (state IN ('pending', 'committed', 'released')),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (owner_id, object_id),
    CHECK ((state = 'committed') = (node_id IS NOT NULL)),
    CHECK ((digest IS NULL) <> (crc32c IS NULL))
) STRICT;
INSERT INTO objects_new (owner_id, object_id, node_id, size, digest, crc32c, state, created_at)
    SELECT owner_id, object_id, node_id, size, digest, NULL, state, created_at FROM objects;
DROP TABLE objects;
ALTER TABLE objects_new RENAME TO objects;
CREATE INDEX objects_node ON objects (owner_id, node_id);
CREATE INDEX objects_state ON objects (state, created_at);

CREATE TABLE blob_objects_new (
    owner_id    INTEGER NOT NULL,
    object_id   BLOB    NOT NULL CHECK (length(object_id) = 16),
    upload_id   BLOB    NOT NULL UNIQUE CHECK (length(upload_id) = 16),
    size        INTEGER NOT NULL CHECK (size >= 0),
    sha256      BLOB    CHECK (length(sha256) = 32),
    crc32c      INTEGER CHECK (crc32c BETWEEN 0 AND 4294967295),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (owner_id, object_id),
    CHECK ((sha256 IS NULL) <> (crc32c IS NULL))
) STRICT;
INSERT INTO blob_objects_new (owner_id, object_id, upload_id, size, sha256, crc32c, created_at)
    SELECT owner_id, object_id, upload_id, size, sha256, NULL, created_at FROM blob_objects;
DROP TABLE blob_objects;
ALTER TABLE blob_objects_new RENAME TO blob_objects;
