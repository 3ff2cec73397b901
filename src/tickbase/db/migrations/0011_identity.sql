-- tickbase schema, version 11: identity is a token's id, never its name.
--
-- Before this version the gateway keyed a user's requests (and its connection
-- and in-flight caps) by the token's *name*, so a viewer token named like an
-- admin token read the admin's request results. From now on the ledger's
-- user_id is 'token:<id>' (or 'user:<name>' for principals made in code), and
-- a name is only a label: unique among live tokens, printable, 1 to 200
-- characters.

-- Requests recorded under a name move to the one token that name meant. A
-- name two tokens shared cannot be told apart: those rows keep their old key,
-- which no principal has any more, so nobody can read them.
UPDATE tickbase.gateway_requests r
SET user_id = 'token:' || t.id
FROM tickbase.api_tokens t
WHERE (r.user_id = t.name
       AND (SELECT count(*) FROM tickbase.api_tokens o WHERE o.name = t.name) = 1)
   OR r.user_id = 'token#' || t.id;

-- Names lose control characters (a label is printable); an empty one is none.
UPDATE tickbase.api_tokens
SET name = regexp_replace(name, '[[:cntrl:]]', '', 'g')
WHERE name ~ '[[:cntrl:]]';
UPDATE tickbase.api_tokens SET name = NULL WHERE name = '';

-- Live tokens sharing a name keep it on the oldest; the others get their id
-- appended, so that the unique index below can be built and no token is lost.
UPDATE tickbase.api_tokens t
SET name = left(t.name, 180) || ' #' || t.id
WHERE t.revoked_at IS NULL AND t.name IS NOT NULL
  AND EXISTS (SELECT 1 FROM tickbase.api_tokens o
              WHERE o.name = t.name AND o.revoked_at IS NULL AND o.id < t.id);

-- Names printable and unique among live tokens: a revoked token's name may be
-- given to its replacement.
ALTER TABLE tickbase.api_tokens
    ADD CONSTRAINT api_tokens_name_printable CHECK (name IS NULL OR name !~ '[[:cntrl:]]');
CREATE UNIQUE INDEX api_tokens_live_name_key ON tickbase.api_tokens (name)
    WHERE revoked_at IS NULL AND name IS NOT NULL;
