-- Accounts, one-time codes, sessions, throttles and the audit log
-- (MySQL, MariaDB, TiDB).
--
-- Keep in step with ../sqlite/0001_accounts.sql: same tables, same columns,
-- same names, so both backends share their SQL (src/store/sql.rs).
-- Times are Unix seconds; secrets are stored only as keyed hashes.
-- TiDB: no triggers, procedures or FULLTEXT here; foreign keys need TiDB
-- 6.6 or later to be enforced. `/*T! ... */` is read by TiDB only.
-- Text compared for identity (email, session id) uses utf8mb4_bin so it
-- matches byte for byte, as in SQLite (the default collations ignore case
-- and accents).

CREATE TABLE accounts (
    id                          BIGINT        NOT NULL AUTO_INCREMENT,
    email                       VARCHAR(320)  CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    kdf_memory_kib              BIGINT        NOT NULL,
    kdf_iterations              BIGINT        NOT NULL,
    kdf_parallelism             BIGINT        NOT NULL,
    kdf_salt                    VARBINARY(16) NOT NULL,
    auth_hash                   VARCHAR(255)  NOT NULL,
    wrapped_vault_key           BLOB          NOT NULL,
    recovery_wrapped_vault_key  BLOB          NOT NULL,
    verified                    BOOLEAN       NOT NULL DEFAULT FALSE,
    totp_secret                 VARBINARY(255) NULL,
    totp_enabled                BOOLEAN       NOT NULL DEFAULT FALSE,
    totp_last_step              BIGINT        NOT NULL DEFAULT 0,
    created_at                  BIGINT        NOT NULL,
    updated_at                  BIGINT        NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY accounts_email (email)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE challenges (
    challenge_key    VARBINARY(64) NOT NULL,
    purpose          VARCHAR(16)   NOT NULL,
    account_id       BIGINT        NOT NULL,
    code_hash        VARBINARY(64) NOT NULL,
    code_expires_at  BIGINT        NOT NULL,
    expires_at       BIGINT        NOT NULL,
    attempts         BIGINT        NOT NULL DEFAULT 0,
    sent_at          BIGINT        NOT NULL,
    ip               VARCHAR(64)   NULL,
    PRIMARY KEY (challenge_key),
    KEY challenges_account (account_id),
    KEY challenges_expires (expires_at),
    CONSTRAINT challenges_account_fk FOREIGN KEY (account_id)
        REFERENCES accounts (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE sessions (
    id            VARCHAR(64)   CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    account_id    BIGINT        NOT NULL,
    refresh_hash  VARBINARY(64) NOT NULL,
    device        VARCHAR(255)  NULL,
    ip            VARCHAR(64)   NULL,
    created_at    BIGINT        NOT NULL,
    last_used_at  BIGINT        NOT NULL,
    revoked_at    BIGINT        NULL,
    PRIMARY KEY (id),
    UNIQUE KEY sessions_refresh_hash (refresh_hash),
    KEY sessions_account (account_id, created_at),
    CONSTRAINT sessions_account_fk FOREIGN KEY (account_id)
        REFERENCES accounts (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE spent_refresh_tokens (
    refresh_hash  VARBINARY(64) NOT NULL,
    session_id    VARCHAR(64)   CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    spent_at      BIGINT        NOT NULL,
    PRIMARY KEY (refresh_hash),
    KEY spent_refresh_tokens_session (session_id),
    CONSTRAINT spent_refresh_tokens_session_fk FOREIGN KEY (session_id)
        REFERENCES sessions (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE throttles (
    throttle_key  VARBINARY(64) NOT NULL,
    failures      BIGINT        NOT NULL,
    not_before    BIGINT        NOT NULL,
    PRIMARY KEY (throttle_key)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Newest first is by id: AUTO_ID_CACHE=1 makes TiDB hand out ids in order
-- across all its servers (by default each server has its own batch).
CREATE TABLE audit_log (
    id           BIGINT       NOT NULL AUTO_INCREMENT,
    account_id   BIGINT       NULL,
    occurred_at  BIGINT       NOT NULL,
    event        VARCHAR(64)  NOT NULL,
    ip           VARCHAR(64)  NULL,
    success      BOOLEAN      NOT NULL,
    detail       TEXT         NULL,
    PRIMARY KEY (id),
    KEY audit_log_account (account_id, id),
    CONSTRAINT audit_log_account_fk FOREIGN KEY (account_id)
        REFERENCES accounts (id) ON DELETE SET NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 /*T![auto_id_cache] AUTO_ID_CACHE=1 */;
