-- Signing keys kept in the database (SPEC §9), so that every replica and the CLI sign
-- and verify with one set, and a rotation needs no restart. See src/tokens/signing.rs.
--   kid          RFC 7638 thumbprint of the public key (asymmetric keys)
--   private_key  PKCS#8 DER for EdDSA / ES256; the raw secret for a generated HMAC key
--   public_jwk   the JWK JSON published in the JWKS; NULL for HMAC, which is never published
--   state        current (signs; at most one), previous (verifies until expires_at),
--                retired (trusted for nothing since retired_at)
--   rotated_at   when it stopped signing
--   expires_at   after it, no token it signed can still be valid (rotated_at + TTL + leeway)
-- HMAC algorithms are allowed so that generated HS* keys can rotate the same way later.
CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    alg         TEXT NOT NULL CHECK (alg IN ('HS256', 'HS384', 'HS512', 'EdDSA', 'ES256')),
    private_key BLOB NOT NULL,
    public_jwk  TEXT,
    state       TEXT NOT NULL CHECK (state IN ('current', 'previous', 'retired')),
    created_at  TEXT NOT NULL,
    rotated_at  TEXT,
    expires_at  TEXT,
    retired_at  TEXT,
    CHECK ((alg LIKE 'HS%') = (public_jwk IS NULL)),
    CHECK (state <> 'current' OR (rotated_at IS NULL AND retired_at IS NULL)),
    CHECK (state <> 'previous' OR (rotated_at IS NOT NULL AND expires_at IS NOT NULL)),
    CHECK (state <> 'retired' OR retired_at IS NOT NULL)
);
-- At most one current key: of two rotations racing (replicas, CLI), one loses with a
-- unique violation instead of leaving two keys that both sign.
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (state) WHERE state = 'current';
-- The reload (current + unexpired previous keys) and housekeeping (expired previous keys).
CREATE INDEX signing_keys_state_expires_at ON signing_keys (state, expires_at);
