-- Email verification and password recovery (SPEC §13).
--   users.email_verified   the account proved it receives mail at its address
--   users.security_stamp   moves on at every change of password, email or state: a
--                          reset token is good only for the stamp it was issued at
ALTER TABLE users ADD COLUMN email_verified BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE users ADD COLUMN security_stamp INTEGER NOT NULL DEFAULT 0;

-- Verification and reset tokens: only the SHA-256 digest is kept.
CREATE TABLE email_tokens (
    digest     BYTEA   PRIMARY KEY,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    TEXT    NOT NULL,           -- 'verify' or 'reset'
    email_norm TEXT    NOT NULL,           -- the address it was issued for
    stamp      INTEGER NOT NULL,           -- users.security_stamp at issue
    created_at TIMESTAMPTZ    NOT NULL,
    expires_at TIMESTAMPTZ    NOT NULL,
    used_at    TIMESTAMPTZ
);
CREATE INDEX email_tokens_user ON email_tokens (user_id, purpose);
CREATE INDEX email_tokens_expires_at ON email_tokens (expires_at);

-- At most one message per address and kind per 60 s: written for every request,
-- known address or not (the same work either way), keyed by the address's digest.
CREATE TABLE email_throttle (
    address_digest BYTEA NOT NULL,
    kind           TEXT NOT NULL,
    last_at        TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (address_digest, kind)
);

-- The durable outbox: a request records the message; a background sender delivers
-- it. `body` (which holds the token) is dropped once the message is sent or failed.
CREATE TABLE email_outbox (
    id              BIGSERIAL PRIMARY KEY,
    kind            TEXT    NOT NULL,      -- 'verify', 'reset' or 'test'
    user_id         BIGINT REFERENCES users (id) ON DELETE SET NULL,
    to_addr         TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    body            TEXT,
    message_id      TEXT    NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending',   -- 'pending', 'sent', 'failed'
    attempts        INTEGER NOT NULL DEFAULT 0,
    created_at      TIMESTAMPTZ    NOT NULL,
    next_attempt_at TIMESTAMPTZ    NOT NULL,
    claimed_until   TIMESTAMPTZ,
    last_error      TEXT,
    finished_at     TIMESTAMPTZ
);
CREATE INDEX email_outbox_due ON email_outbox (state, next_attempt_at);
