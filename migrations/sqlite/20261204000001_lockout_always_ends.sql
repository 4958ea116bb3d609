-- A lock that always ends (SPEC §10, issue 20). The attempt that reaches the
-- threshold takes the lock in the same statement that counts it, so no cancelled
-- request can leave a count at the threshold without a lock time.
--   consecutive_failures  failures since the last success, across locks: at
--                         auth.lockout_permanent_after the lock has no end
--                         (locked_until far in the future) until an unlock or reset
--   logins_in_flight      counted attempts whose password check has not ended yet;
--                         a login that finds the account locked while some are in
--                         flight waits for them (one of them may be the right one)
--   in_flight_until       past this, logins_in_flight is stale (a process that died
--                         mid-login) and counts as 0
ALTER TABLE users ADD COLUMN consecutive_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN logins_in_flight INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN in_flight_until TEXT;
-- Repairs the state the old code could leave behind: a count at the threshold with
-- no lock time refused every login forever. Such counts start again.
UPDATE users SET failed_logins = 0 WHERE locked_until IS NULL AND failed_logins > 0;
