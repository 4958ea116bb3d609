-- Roles, API keys (SPEC §15, issue 23).
--   user_roles  the role names a user holds (`[a-z][a-z0-9_.:-]{0,63}`); access
--               tokens issued from then on carry them sorted, `/me` and
--               introspection read them here at once.
--   api_keys    keys for services, never for people: only the SHA-256 digest of the
--               key is kept (256 random bits, so a fast digest is enough), looked up
--               by the unique index on it: one indexed read per request, so a
--               revocation counts on every replica at once. scopes is a
--               space-separated list. last_used_at moves at most once a minute.
CREATE TABLE user_roles (
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role    TEXT    NOT NULL,
    PRIMARY KEY (user_id, role)
);
CREATE INDEX user_roles_role ON user_roles (role, user_id);

CREATE TABLE api_keys (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT    NOT NULL,
    digest       BLOB    NOT NULL UNIQUE,
    scopes       TEXT    NOT NULL,
    created_at   TEXT    NOT NULL,
    expires_at   TEXT,
    last_used_at TEXT,
    revoked_at   TEXT
);
