-- Users, refresh-token families (one per login session) and refresh tokens
-- (SHA-256 digests only), plus server settings such as a generated signing key.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    email         TEXT    NOT NULL,
    email_norm    TEXT    NOT NULL UNIQUE,
    username      TEXT    NOT NULL,
    username_norm TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    is_active     BOOLEAN NOT NULL DEFAULT 1,
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL
);

CREATE TABLE token_families (
    id             BLOB    PRIMARY KEY,
    user_id        INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at     TEXT    NOT NULL,
    revoked_at     TEXT,
    revoked_reason TEXT
);
CREATE INDEX token_families_user_id ON token_families (user_id);

CREATE TABLE refresh_tokens (
    digest     BLOB PRIMARY KEY,
    family_id  BLOB NOT NULL REFERENCES token_families (id) ON DELETE CASCADE,
    issued_at  TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    rotated_at TEXT,
    revoked_at TEXT
);
CREATE INDEX refresh_tokens_family_id ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires_at ON refresh_tokens (expires_at);

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
