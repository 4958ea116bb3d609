-- What pruning filters on (SPEC §8, `token prune` in batches on indexed columns).
-- refresh_tokens.expires_at and refresh_tokens.family_id are indexed since the first
-- migration; families revoked long ago are found by this partial index (only revoked
-- families are in it, so it stays small and costs live sessions nothing).
CREATE INDEX token_families_revoked_at ON token_families (revoked_at)
    WHERE revoked_at IS NOT NULL;
