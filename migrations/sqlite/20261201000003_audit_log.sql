-- The audit log (SPEC §10): who did what to which account, when, from where. No
-- password, token or key is ever written here; `detail` is a small JSON object.
--   user_id   no foreign key: an event outlives a deleted user (user_deleted itself)
--   username  as it was at the time; NULL for a failed login of an unknown account
CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    user_id    INTEGER,
    username   TEXT,
    family_id  BLOB,
    ip         TEXT,
    request_id TEXT,
    detail     TEXT    NOT NULL DEFAULT '{}'
);
-- `audit list` (newest first, by user, by kind, since) and retention (oldest first).
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_user_id_at ON audit_log (user_id, at);
CREATE INDEX audit_log_kind_at ON audit_log (kind, at);
