-- Shared rate limits (SPEC §6, `rate_limit.store = "database"`): the GCRA state of one
-- client on one endpoint, so that every replica takes from the same quota.
--   bucket   the endpoint (`register`, `token`, `refresh`, …)
--   client   the rate-limit key (an IPv4 address or an IPv6 network)
--   tat_ms   the theoretical arrival time, in milliseconds since the Unix epoch (the
--            database's clock, so replicas' clocks do not matter); once it is in the
--            past the quota is full and the row can go (housekeeping deletes it)
--   allowed  whether the last check took from the quota (1) or was refused (0): the
--            one statement per check returns it, since RETURNING sees only the new row
CREATE TABLE rate_limits (
    bucket  TEXT NOT NULL,
    client  TEXT NOT NULL,
    tat_ms  INTEGER NOT NULL,
    allowed INTEGER NOT NULL,
    PRIMARY KEY (bucket, client)
);
CREATE INDEX rate_limits_tat_ms ON rate_limits (tat_ms);
