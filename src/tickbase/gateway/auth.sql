-- api_token_create --
-- Store a new token by its hash; the plaintext never reaches the database.
INSERT INTO tickbase.api_tokens (name, role, token_hash, prefix)
VALUES (%(name)s, %(role)s, %(token_hash)s, %(prefix)s)
RETURNING id, name, role, prefix;

-- api_token_verify --
-- The live token with this hash, marking it used. The mark is skipped when it
-- is less than a minute old, so steady traffic writes once a minute per token
-- rather than once per request; two requests racing past the test are
-- serialised by the row lock, and READ COMMITTED rechecks the test on the
-- winner's row version, so the loser writes nothing.
WITH found AS (
    SELECT id, name, role, last_used_at FROM tickbase.api_tokens
    WHERE token_hash = %(token_hash)s AND revoked_at IS NULL
), touched AS (
    UPDATE tickbase.api_tokens t SET last_used_at = now()
    FROM found f
    WHERE t.id = f.id AND t.revoked_at IS NULL
      AND (t.last_used_at IS NULL OR t.last_used_at <= now() - interval '1 minute')
)
SELECT id, name, role FROM found;

-- api_token_active --
-- Whether the token a session was issued from is still live.
SELECT EXISTS (
    SELECT FROM tickbase.api_tokens WHERE id = %(id)s AND revoked_at IS NULL
);

-- api_token_list --
-- Every token, revoked ones too, oldest first (never the hash).
SELECT id, name, role, prefix, created_at, last_used_at, revoked_at
FROM tickbase.api_tokens
ORDER BY id;

-- api_token_revoke --
-- Revoke a live token; no row back when it is unknown or already revoked.
-- The NOTIFY (sent at commit) lets every gateway close the token's open
-- WebSocket connections at once.
WITH revoked AS (
    UPDATE tickbase.api_tokens SET revoked_at = now()
    WHERE id = %(id)s AND revoked_at IS NULL
    RETURNING id
)
SELECT id, pg_notify('tickbase_token_revoked', id::text) FROM revoked;

-- api_token_bootstrap_lock --
-- Serialise bootstrap attempts across processes until the transaction ends.
SELECT pg_advisory_xact_lock(%(lock_key)s);

-- api_token_bootstrap --
-- The first admin token, only if no token (live or revoked) has ever been
-- stored. Run after api_token_bootstrap_lock, as a separate statement: its
-- snapshot is then taken after the lock, so it sees the row of any process
-- that bootstrapped first. Counting revoked tokens too means revoking the
-- bootstrap token does not bring a new one back at the next start.
INSERT INTO tickbase.api_tokens (name, role, token_hash, prefix)
SELECT %(name)s, 'admin', %(token_hash)s, %(prefix)s
WHERE NOT EXISTS (SELECT FROM tickbase.api_tokens)
RETURNING id, name, role, prefix;

-- auth_secret_insert --
-- Offer a fresh secret; the first process's offer wins, later ones do nothing.
INSERT INTO tickbase.auth_secrets (name, secret)
VALUES (%(name)s, %(secret)s)
ON CONFLICT (name) DO NOTHING;

-- auth_secret_get --
-- The secret that won (a separate statement from the insert, so that its
-- snapshot includes a row another process committed meanwhile).
SELECT secret FROM tickbase.auth_secrets WHERE name = %(name)s;
