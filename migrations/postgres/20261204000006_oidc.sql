-- The OpenID Connect provider (SPEC §18, issue 26).
--   oauth_clients  applications the operator registered (no dynamic registration):
--                  a confidential client's secret is kept as its SHA-256 digest only
--                  (256 random bits, so a fast digest is enough; NULL for a public
--                  client); redirect URIs as a JSON array of exact strings.
--   oauth_codes    authorization codes by SHA-256 digest: single use (used_at set by
--                  one conditional UPDATE), 60 s; issued_family is the session the
--                  first exchange created, revoked when the code comes back (reused_at
--                  marks the comeback, so an exchange still creating it sees it).
--   id_token_keys  the keys ID tokens are signed with, one current per algorithm
--                  (RS256 by default, EdDSA/ES256 per client), rotated as SPEC §9
--                  rotates signing_keys: PKCS#8 DER, previous keys verify (stay in the
--                  JWKS) until expires_at.
--   token_families kind: 'api' (a login of the REST API), 'browser' (the login page's
--                  session cookie) or 'oidc' (a client's tokens); client_id, scope,
--                  auth_time and parent (the browser session, the ID token's sid) for
--                  'oidc'.
CREATE TABLE oauth_clients (
    client_id                 TEXT PRIMARY KEY,
    name                      TEXT NOT NULL,
    secret_digest             BYTEA,
    redirect_uris             TEXT NOT NULL,
    post_logout_redirect_uris TEXT NOT NULL,
    id_token_alg              TEXT NOT NULL CHECK (id_token_alg IN ('RS256', 'EdDSA', 'ES256')),
    created_at                TIMESTAMPTZ NOT NULL
);

CREATE TABLE oauth_codes (
    digest         BYTEA   PRIMARY KEY,
    client_id      TEXT    NOT NULL REFERENCES oauth_clients (client_id) ON DELETE CASCADE,
    user_id        BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    browser_family UUID    NOT NULL,
    redirect_uri   TEXT    NOT NULL,
    scope          TEXT    NOT NULL,
    nonce          TEXT,
    code_challenge TEXT    NOT NULL,
    auth_time      TIMESTAMPTZ    NOT NULL,
    amr            TEXT    NOT NULL,
    expires_at     TIMESTAMPTZ    NOT NULL,
    used_at        TIMESTAMPTZ,
    reused_at      TIMESTAMPTZ,
    issued_family  UUID
);
CREATE INDEX oauth_codes_expires_at ON oauth_codes (expires_at);

CREATE TABLE id_token_keys (
    kid         TEXT PRIMARY KEY,
    alg         TEXT NOT NULL CHECK (alg IN ('RS256', 'EdDSA', 'ES256')),
    private_key BYTEA NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('current', 'previous', 'retired')),
    created_at  TIMESTAMPTZ NOT NULL,
    rotated_at  TIMESTAMPTZ,
    expires_at  TIMESTAMPTZ,
    retired_at  TIMESTAMPTZ
);
CREATE UNIQUE INDEX id_token_keys_one_current ON id_token_keys (alg) WHERE state = 'current';

ALTER TABLE token_families ADD COLUMN kind TEXT NOT NULL DEFAULT 'api' CHECK (kind IN ('api', 'browser', 'oidc'));
ALTER TABLE token_families ADD COLUMN client_id TEXT;
ALTER TABLE token_families ADD COLUMN scope TEXT;
ALTER TABLE token_families ADD COLUMN auth_time TIMESTAMPTZ;
ALTER TABLE token_families ADD COLUMN parent UUID;
CREATE INDEX token_families_client_id ON token_families (client_id) WHERE client_id IS NOT NULL;
