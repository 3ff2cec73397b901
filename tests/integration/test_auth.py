"""API tokens, sessions and roles, against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
from contextlib import AsyncExitStack
from typing import Any

import psycopg
import pytest

import tickbase
from tests.support.waiting import wait_until
from tickbase.db.pool import create_pool
from tickbase.errors import ConfigurationError, InvalidCredentials
from tickbase.gateway.auth import (
    BOOTSTRAP_LOCK_KEY,
    PREFIX_LENGTH,
    TOKEN_PREFIX,
    Principal,
    SessionSigner,
    TokenStore,
    authenticate,
    parse_bearer,
)

SECRET = b"k" * 32
NOW = 1_700_000_000.0


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def signed(payload: bytes, secret: bytes = SECRET) -> str:
    """A session with a valid signature over any payload bytes."""
    body = b64(payload)
    return body + "." + b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())


async def test_create_verify_revoke(app: tickbase.App) -> None:
    tokens = TokenStore(app.pool)
    created = await tokens.create("viewer", name="grafana")
    assert created.token.startswith(TOKEN_PREFIX) and len(created.token) == 46
    assert created.prefix == created.token[:PREFIX_LENGTH]
    assert (created.name, created.role) == ("grafana", "viewer")

    principal = await tokens.verify(created.token)
    assert principal == Principal(user="grafana", role="viewer", token_id=created.id)

    [info] = await tokens.list()
    assert (info.id, info.name, info.role, info.prefix, info.active) == (
        created.id,
        "grafana",
        "viewer",
        created.prefix,
        True,
    )
    assert info.last_used_at is not None
    assert "token" not in info.to_dict() and "token_hash" not in info.to_dict()

    assert await tokens.revoke(created.id) is True
    assert await tokens.verify(created.token) is None
    assert await tokens.revoke(created.id) is False
    assert await tokens.revoke(999_999) is False
    [info] = await tokens.list()
    assert not info.active and info.revoked_at is not None


async def test_unnamed_token_user_is_its_id(app: tickbase.App) -> None:
    tokens = TokenStore(app.pool)
    created = await tokens.create("admin")
    assert created.name is None
    assert await tokens.verify(created.token) == Principal(
        user=f"token#{created.id}", role="admin", token_id=created.id
    )


async def test_only_the_hash_is_stored(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    created = await TokenStore(app.pool).create("admin", name="ci")
    rows = sql_conn.execute("SELECT t::text, token_hash FROM tickbase.api_tokens t").fetchall()
    [(as_text, stored_hash)] = rows
    secret_part = created.token[PREFIX_LENGTH:]
    assert created.token not in as_text and secret_part not in as_text
    assert bytes(stored_hash) == hashlib.sha256(created.token.encode()).digest()
    # Nor hex- or base64-encoded anywhere in the row.
    assert created.token.encode().hex() not in as_text
    assert repr(created).count(secret_part) == 0


async def test_viewer_reads_admin_writes(app: tickbase.App) -> None:
    tokens = TokenStore(app.pool)
    viewer = await tokens.verify((await tokens.create("viewer")).token)
    admin = await tokens.verify((await tokens.create("admin")).token)
    assert viewer is not None and admin is not None
    assert (viewer.role, viewer.can_write) == ("viewer", False)
    assert (admin.role, admin.can_write) == ("admin", True)


@pytest.mark.parametrize("role", ["root", "Admin", "", "viewer "])
async def test_bad_role_or_name_stores_nothing(
    role: str, app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    tokens = TokenStore(app.pool)
    with pytest.raises(ConfigurationError, match=r"invalid role .*must be 'admin' or 'viewer'"):
        await tokens.create(role)
    with pytest.raises(ConfigurationError, match="invalid token name"):
        await tokens.create("viewer", name="x" * 201)
    assert sql_conn.execute("SELECT count(*) FROM tickbase.api_tokens").fetchone() == (0,)
    # The schema refuses it too, whoever writes.
    with pytest.raises(psycopg.errors.CheckViolation, match="api_tokens_role_valid"):
        sql_conn.execute(
            "INSERT INTO tickbase.api_tokens (role, token_hash, prefix) VALUES ('root', %s, 'tb_')",
            (b"\0" * 32,),
        )


@pytest.mark.parametrize(
    "value",
    [
        "",
        "tb_",
        "tb_short",
        "Bearer tb_x",
        "x" * 46,
        TOKEN_PREFIX + "A" * 43,
        TOKEN_PREFIX + "!" * 43,
        TOKEN_PREFIX + "A" * 43 + "\n",
    ],
)
async def test_verify_refuses_what_is_not_a_live_token(app: tickbase.App, value: str) -> None:
    await TokenStore(app.pool).create("admin")
    assert await TokenStore(app.pool).verify(value) is None


async def test_last_used_is_written_at_most_once_a_minute(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    tokens = TokenStore(app.pool)
    created = await tokens.create("viewer")

    def last_used() -> Any:
        row = sql_conn.execute(
            "SELECT last_used_at FROM tickbase.api_tokens WHERE id = %s", (created.id,)
        ).fetchone()
        assert row is not None
        return row[0]

    assert last_used() is None
    await tokens.verify(created.token)
    first = last_used()
    assert first is not None
    await asyncio.gather(*(tokens.verify(created.token) for _ in range(5)))
    assert last_used() == first

    sql_conn.execute(
        "UPDATE tickbase.api_tokens SET last_used_at = last_used_at - interval '61 seconds'"
    )
    await tokens.verify(created.token)
    assert last_used() > first


async def test_bootstrap_admin_is_created_once_across_processes(
    database_url: str, sql_conn: psycopg.Connection[Any]
) -> None:
    async with AsyncExitStack() as stack:
        # One pool per "process": the race is between connections, not tasks.
        pools = [
            await stack.enter_async_context(create_pool(database_url, max_size=1, min_size=1))
            for _ in range(6)
        ]
        # Hold the bootstrap lock until every caller is queued on it, so that
        # all six are inside ensure_bootstrap_admin at once, every run.
        sql_conn.execute("SELECT pg_advisory_lock(%s)", (BOOTSTRAP_LOCK_KEY,))
        callers = [asyncio.create_task(TokenStore(p).ensure_bootstrap_admin()) for p in pools]

        async def all_queued() -> bool:
            row = sql_conn.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
                " WHERE d.datname = current_database() AND l.locktype = 'advisory'"
                " AND NOT l.granted"
            ).fetchone()
            return row == (len(pools),)

        await wait_until(all_queued, message="every caller waiting on the bootstrap lock")
        sql_conn.execute("SELECT pg_advisory_unlock(%s)", (BOOTSTRAP_LOCK_KEY,))
        results = await asyncio.gather(*callers)
        [created] = [r for r in results if r is not None]
        assert (created.name, created.role) == ("bootstrap", "admin")
        principal = await TokenStore(pools[0]).verify(created.token)
        assert principal is not None and principal.can_write

        assert await TokenStore(pools[1]).ensure_bootstrap_admin() is None
        # Revoking it does not bring a new one back at the next start.
        assert await TokenStore(pools[2]).revoke(created.id)
        assert await TokenStore(pools[3]).ensure_bootstrap_admin() is None
    assert sql_conn.execute("SELECT count(*) FROM tickbase.api_tokens").fetchone() == (1,)


async def test_no_bootstrap_admin_when_a_token_exists(app: tickbase.App) -> None:
    tokens = TokenStore(app.pool)
    await tokens.create("viewer")
    assert await tokens.ensure_bootstrap_admin() is None
    assert [t.name for t in await tokens.list()] == [None]


def test_session_round_trip() -> None:
    signer = SessionSigner(SECRET)
    principal = Principal(user="alice", role="viewer", token_id=7)
    session = signer.issue(principal, ttl=60, now=NOW)
    assert signer.verify(session, now=NOW) == principal
    assert signer.verify(session, now=NOW + 59) == principal
    assert json.loads(unb64(session.split(".")[0])) == {
        "sub": "alice",
        "role": "viewer",
        "exp": int(NOW + 60),
        "tid": 7,
        "ath": int(NOW),  # signed in now: the chain of renewals ends SESSION_MAX_AGE later
    }
    code_made = Principal(user="embedded", role="admin", token_id=None)
    assert signer.verify(signer.issue(code_made, now=NOW), now=NOW) == code_made
    assert "k" * 8 not in repr(signer)


def test_expired_session_is_refused() -> None:
    signer = SessionSigner(SECRET)
    session = signer.issue(Principal("alice", "admin", 1), ttl=60, now=NOW)
    with pytest.raises(InvalidCredentials, match=r"^session expired$"):
        signer.verify(session, now=NOW + 60)
    with pytest.raises(InvalidCredentials, match=r"^session expired$"):
        signer.verify(session)  # real clock: long past NOW + 60


def test_forged_sessions_are_refused() -> None:
    signer = SessionSigner(SECRET)
    session = signer.issue(Principal("bob", "viewer", 3), ttl=3600, now=NOW)
    body, signature = session.split(".")

    flipped = bytearray(unb64(signature))
    flipped[5] ^= 0x01
    with pytest.raises(InvalidCredentials, match=r"^session signature invalid$"):
        signer.verify(body + "." + b64(bytes(flipped)), now=NOW)

    promoted = json.loads(unb64(body)) | {"role": "admin"}
    forged_body = b64(json.dumps(promoted, separators=(",", ":")).encode())
    with pytest.raises(InvalidCredentials, match=r"^session signature invalid$"):
        signer.verify(forged_body + "." + signature, now=NOW)

    other = SessionSigner(b"o" * 32).issue(Principal("bob", "admin", 3), now=NOW)
    with pytest.raises(InvalidCredentials, match=r"^session signature invalid$"):
        signer.verify(other, now=NOW)
    with pytest.raises(InvalidCredentials, match=r"^session signature invalid$"):
        signer.verify(body + "." + signature[:-4], now=NOW)


@pytest.mark.parametrize(
    "session",
    [
        "",
        "no-dot",
        "body.",
        ".c2ln",
        "a.b.c",
        "!!!!.????",
        "eyJ9.c2ln=",
        signed(b'{"sub":"a","role":"admin","exp":99999999999,"tid":null}') + "\n",
        signed(b"not json"),
        signed(b'{"sub":"a","role":"admin","exp":99999999999}'),  # no tid
        signed(b'{"sub":"a","role":"root","exp":99999999999,"tid":null}'),
        signed(b'{"sub":"a","role":"admin","exp":"never","tid":null}'),
        signed(b'{"sub":"a","role":"admin","exp":true,"tid":null}'),
        signed(b'{"sub":1,"role":"admin","exp":99999999999,"tid":null}'),
        signed(b'{"sub":"a","role":"admin","exp":99999999999,"tid":"1"}'),
        signed(b"[1, 2]"),
    ],
)
def test_malformed_sessions_are_refused(session: str) -> None:
    with pytest.raises(InvalidCredentials, match=r"^malformed session$"):
        SessionSigner(SECRET).verify(session, now=NOW)


def test_short_secret_and_bad_ttl_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="session secret too short: 16 bytes"):
        SessionSigner(b"s" * 16)
    signer = SessionSigner(SECRET)
    for ttl in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ConfigurationError, match="invalid session ttl"):
            signer.issue(Principal("a", "viewer", None), ttl=ttl)


async def test_session_secret_is_shared_by_every_process(
    database_url: str, sql_conn: psycopg.Connection[Any]
) -> None:
    async with AsyncExitStack() as stack:
        pools = [
            await stack.enter_async_context(create_pool(database_url, max_size=1, min_size=1))
            for _ in range(5)
        ]
        signers = list(await asyncio.gather(*(SessionSigner.load(p) for p in pools[:4])))
        # A process starting later reads the secret the first ones agreed on.
        signers.append(await SessionSigner.load(pools[4]))
    principal = Principal("alice", "admin", 1)
    for issuer in signers:
        session = issuer.issue(principal, now=NOW)
        assert all(s.verify(session, now=NOW) == principal for s in signers)
    rows = sql_conn.execute(
        "SELECT name, octet_length(secret) FROM tickbase.auth_secrets"
    ).fetchall()
    assert rows == [("session", 32)]


async def test_authenticate(app: tickbase.App) -> None:
    tokens = TokenStore(app.pool)
    signer = await SessionSigner.load(app.pool)
    admin = await tokens.create("admin", name="ops")
    viewer = await tokens.create("viewer", name="wall")

    def auth(bearer: str | None = None, session: str | None = None) -> Any:
        return authenticate(tokens, signer, bearer=bearer, session=session)

    assert (await auth(bearer=admin.token)).role == "admin"
    as_viewer = await auth(bearer=viewer.token)
    assert as_viewer == Principal("wall", "viewer", viewer.id)

    session = signer.issue(as_viewer)
    assert await auth(session=session) == as_viewer
    # The token decides when both are sent.
    assert (await auth(bearer=admin.token, session=session)).role == "admin"

    with pytest.raises(InvalidCredentials, match=r"^missing credentials"):
        await auth()
    with pytest.raises(InvalidCredentials, match=r"^missing credentials"):
        await auth(bearer="", session="")
    # The dashboard sends its session as the bearer credential.
    assert await auth(bearer=session) == as_viewer
    forged = session[:-2] + ("AA" if not session.endswith("AA") else "BB")
    with pytest.raises(InvalidCredentials, match=r"^session signature invalid"):
        await auth(bearer=forged)
    with pytest.raises(InvalidCredentials, match=r"^malformed API token"):
        await auth(bearer="not-a-token")
    with pytest.raises(InvalidCredentials, match=r"^unknown or revoked API token$"):
        await auth(bearer=TOKEN_PREFIX + "A" * 43)
    with pytest.raises(InvalidCredentials, match=r"^malformed session$"):
        await auth(session=viewer.token)

    await tokens.revoke(viewer.id)
    with pytest.raises(InvalidCredentials, match=r"^unknown or revoked API token$"):
        await auth(bearer=viewer.token)
    # A session dies with the token it was issued from.
    with pytest.raises(InvalidCredentials, match="API token was revoked"):
        await auth(session=session)
    with pytest.raises(InvalidCredentials, match="API token was revoked"):
        await auth(bearer=session)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("Bearer tb_abc", "tb_abc"),
        ("bearer tb_abc", "tb_abc"),
        ("BEARER   tb_abc  ", "tb_abc"),
    ],
)
def test_parse_bearer_accepts(header: str | None, expected: str | None) -> None:
    assert parse_bearer(header) == expected


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Basic dXNlcjpwYXNz", "unsupported Authorization header"),
        ("tb_abc", "unsupported Authorization header"),
        ("Token tb_abc", "unsupported Authorization header"),
        ("Bearertb_abc", "unsupported Authorization header"),
        ("", "unsupported Authorization header"),
        ("Bearer", "malformed Authorization header"),
        ("Bearer ", "malformed Authorization header"),
        ("Bearer tb_a tb_b", "malformed Authorization header"),
    ],
)
def test_parse_bearer_refuses(header: str, reason: str) -> None:
    with pytest.raises(InvalidCredentials, match=f"^{reason}"):
        parse_bearer(header)


async def test_no_token_or_secret_in_logs(
    app: tickbase.App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = TokenStore(app.pool)
    bootstrap = await tokens.ensure_bootstrap_admin()
    assert bootstrap is not None
    created = await tokens.create("viewer", name="logged")
    signer = await SessionSigner.load(app.pool)
    session = signer.issue(Principal("logged", "viewer", created.id))
    await authenticate(tokens, signer, bearer=created.token, session=None)
    await authenticate(tokens, signer, bearer=None, session=session)
    await tokens.verify(created.token[:-1] + ("A" if created.token[-1] != "A" else "B"))
    await tokens.revoke(created.id)
    with pytest.raises(InvalidCredentials) as refused:
        await authenticate(tokens, signer, bearer=created.token, session=None)
    assert created.token not in str(refused.value)

    text = caplog.text
    assert created.prefix in text and bootstrap.prefix in text
    for secret in (created.token[PREFIX_LENGTH:], bootstrap.token[PREFIX_LENGTH:], session):
        assert secret not in text
    assert signer._secret.hex() not in text
