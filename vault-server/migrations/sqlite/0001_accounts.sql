-- Accounts, one-time codes, sessions, throttles and the audit log (SQLite).
--
-- Keep in step with ../mysql/0001_accounts.sql: same tables, same columns,
-- same names, so both backends share their SQL (src/store/sql.rs).
-- Times are Unix seconds; secrets are stored only as keyed hashes.
-- STRICT tables make SQLite reject a value of the wrong type.

CREATE TABLE accounts (
    id                          INTEGER PRIMARY KEY AUTOINCREMENT, -- ids are never reused
    email                       TEXT    NOT NULL UNIQUE,           -- canonical address
    kdf_memory_kib              INTEGER NOT NULL,
    kdf_iterations              INTEGER NOT NULL,
    kdf_parallelism             INTEGER NOT NULL,
    kdf_salt                    BLOB    NOT NULL CHECK (length(kdf_salt) = 16),
    auth_hash                   TEXT    NOT NULL,                  -- Argon2id PHC string
    wrapped_vault_key           BLOB    NOT NULL,
    recovery_wrapped_vault_key  BLOB    NOT NULL,
    verified                    INTEGER NOT NULL DEFAULT 0 CHECK (verified IN (0, 1)),
    totp_secret                 BLOB,
    totp_enabled                INTEGER NOT NULL DEFAULT 0 CHECK (totp_enabled IN (0, 1)),
    totp_last_step              INTEGER NOT NULL DEFAULT 0,
    created_at                  INTEGER NOT NULL,
    updated_at                  INTEGER NOT NULL
) STRICT;

-- Pending e-mailed codes: login tickets and address verifications.
CREATE TABLE challenges (
    challenge_key    BLOB    NOT NULL PRIMARY KEY,
    purpose          TEXT    NOT NULL,
    account_id       INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    code_hash        BLOB    NOT NULL,
    code_expires_at  INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    sent_at          INTEGER NOT NULL,
    ip               TEXT
) STRICT;
CREATE INDEX challenges_account ON challenges (account_id);
CREATE INDEX challenges_expires ON challenges (expires_at);

CREATE TABLE sessions (
    id            TEXT    NOT NULL PRIMARY KEY,
    account_id    INTEGER NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    refresh_hash  BLOB    NOT NULL UNIQUE,   -- keyed hash of the current refresh token
    device        TEXT,
    ip            TEXT,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER NOT NULL,
    revoked_at    INTEGER
) STRICT;
CREATE INDEX sessions_account ON sessions (account_id, created_at);

-- Refresh tokens already exchanged: presenting one again is token theft.
CREATE TABLE spent_refresh_tokens (
    refresh_hash  BLOB    NOT NULL PRIMARY KEY,
    session_id    TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    spent_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX spent_refresh_tokens_session ON spent_refresh_tokens (session_id);

-- Per-account login back-off, keyed by a keyed hash of the address.
CREATE TABLE throttles (
    throttle_key  BLOB    NOT NULL PRIMARY KEY,
    failures      INTEGER NOT NULL,
    not_before    INTEGER NOT NULL
) STRICT;

-- Security events. Rows outlive their account (account_id becomes NULL).
CREATE TABLE audit_log (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id   INTEGER REFERENCES accounts (id) ON DELETE SET NULL,
    occurred_at  INTEGER NOT NULL,
    event        TEXT    NOT NULL,
    ip           TEXT,
    success      INTEGER NOT NULL CHECK (success IN (0, 1)),
    detail       TEXT
) STRICT;
CREATE INDEX audit_log_account ON audit_log (account_id, id);
