-- Uploads may announce a CRC-32C instead of a SHA-256 (MySQL, MariaDB, TiDB).
--
-- Keep in step with ../sqlite/0004_crc32c.sql.
--
-- An upload's checksum guards the transfer only (the client authenticates
-- the ciphertext itself), and a CRC-32C costs a fraction of a SHA-256. Each
-- object row keeps the one checksum its upload announced: `digest`/`sha256`
-- (32 bytes) or `crc32c`, the other NULL (the server writes exactly one).
-- One change per statement: TiDB before 6.2 takes one schema change per
-- ALTER.

ALTER TABLE objects MODIFY digest BINARY(32) NULL;
ALTER TABLE objects ADD COLUMN crc32c BIGINT NULL AFTER digest;
ALTER TABLE blob_objects MODIFY sha256 BINARY(32) NULL;
ALTER TABLE blob_objects ADD COLUMN crc32c BIGINT NULL AFTER sha256;
