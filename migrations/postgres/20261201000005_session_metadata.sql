-- What the sessions API shows of a session (SPEC §10): the client that logged in and
-- when the session was last used. Set at login and at each refresh — not at every
-- /me, which stays a read.
ALTER TABLE token_families ADD COLUMN user_agent TEXT;
ALTER TABLE token_families ADD COLUMN ip TEXT;
ALTER TABLE token_families ADD COLUMN last_used_at TIMESTAMPTZ;
