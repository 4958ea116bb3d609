-- A second factor (SPEC §14, issue 22): TOTP and recovery codes.
--   user_mfa        one row per account that enrolled; confirmed_at NULL while the
--                   enrolment is pending. secret is the raw 160-bit TOTP key (it must
--                   be usable to check codes: encrypting the database at rest is the
--                   operator's job). last_step is the last RFC 6238 time step accepted:
--                   a code is accepted only for a greater step, by one conditional
--                   UPDATE, so a step is used once per account across replicas.
--   recovery_codes  SHA-256 digests of the one-time codes (high-entropy, so a fast
--                   digest is enough); used_at set once, by a conditional UPDATE.
--   mfa_tokens      the opaque token of the second login step: its SHA-256 only,
--                   bound to the account and to the password hash it was issued for,
--                   single use, with the failures counted against it.
--   token_families.amr  RFC 8176 methods of the session's login, space-separated;
--                   refreshed tokens carry the session's, never more.
CREATE TABLE user_mfa (
    user_id      BIGINT      PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret       BYTEA       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    confirmed_at TIMESTAMPTZ,
    last_step    BIGINT
);

CREATE TABLE recovery_codes (
    user_id BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    digest  BYTEA       NOT NULL,
    used_at TIMESTAMPTZ,
    PRIMARY KEY (user_id, digest)
);

CREATE TABLE mfa_tokens (
    digest          BYTEA       PRIMARY KEY,
    user_id         BIGINT      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    password_digest BYTEA       NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL,
    used_at         TIMESTAMPTZ,
    failures        INTEGER     NOT NULL DEFAULT 0
);
CREATE INDEX mfa_tokens_expires_at ON mfa_tokens (expires_at);
CREATE INDEX mfa_tokens_user_id ON mfa_tokens (user_id);

ALTER TABLE token_families ADD COLUMN amr TEXT NOT NULL DEFAULT 'pwd';
