-- lease_acquire --
-- Take the lease when it is free or expired, or renew it when we hold it.
-- Taking it from another holder bumps the token; renewing keeps it. No row
-- back: someone else holds a live lease.
INSERT INTO tickbase.leases AS l (name, holder, token, expires_at)
VALUES (%(name)s, %(holder)s, 1, clock_timestamp() + make_interval(secs => %(ttl)s))
ON CONFLICT (name) DO UPDATE
SET holder = excluded.holder,
    expires_at = excluded.expires_at,
    token = CASE WHEN l.holder = excluded.holder AND l.expires_at > clock_timestamp()
                 THEN l.token ELSE l.token + 1 END,
    acquired_at = CASE WHEN l.holder = excluded.holder AND l.expires_at > clock_timestamp()
                       THEN l.acquired_at ELSE clock_timestamp() END
WHERE l.holder = excluded.holder OR l.expires_at <= clock_timestamp()
RETURNING token, expires_at;

-- lease_expires_in --
-- Seconds until the current holder's lease runs out (a standby sleeps that long).
SELECT greatest(extract(epoch FROM expires_at - clock_timestamp()), 0)::float8
FROM tickbase.leases WHERE name = %(name)s;

-- lease_release --
-- Give the lease up at once (clean shutdown) and tell the standbys, so a
-- successor need not wait for the expiry.
WITH released AS (
    UPDATE tickbase.leases SET expires_at = clock_timestamp()
    WHERE name = %(name)s AND holder = %(holder)s AND token = %(token)s
    RETURNING name
)
SELECT pg_notify('tickbase_lease_released', name) FROM released;

-- lease_get --
SELECT name, holder, token, acquired_at, expires_at, expires_at > clock_timestamp() AS live
FROM tickbase.leases WHERE name = %(name)s;
