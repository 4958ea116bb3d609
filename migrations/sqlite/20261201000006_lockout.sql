-- Per-account lockout (SPEC §10), kept on the user row so that every replica and
-- restart sees one state, and an attempt is counted by one UPDATE … RETURNING on the
-- primary key before its password is verified.
--   failed_logins  consecutive failed attempts (counted when they start); 0 after a
--                  success, and again when a lock begins
--   locked_until   the account refuses every login until then
--   lock_count     locks since the last success: each doubles the lock's duration
ALTER TABLE users ADD COLUMN failed_logins INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN locked_until TEXT;
ALTER TABLE users ADD COLUMN lock_count INTEGER NOT NULL DEFAULT 0;
