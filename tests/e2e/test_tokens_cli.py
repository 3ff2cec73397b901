"""``tickbase tokens``, run as a user would run it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import psycopg

from tests.e2e.conftest import run_cli
from tickbase.db.pool import create_pool
from tickbase.gateway.auth import Principal, TokenStore


def verify(database_url: str, token: str) -> Principal | None:
    async def check() -> Principal | None:
        async with create_pool(database_url, max_size=1) as pool:
            return await TokenStore(pool).verify(token)

    return asyncio.run(check())


def test_create_list_revoke(database_url: str, sql_conn: psycopg.Connection[Any]) -> None:
    made = run_cli(
        "tokens", "create", "--role", "admin", "--name", "ci", "--json", database_url=database_url
    )
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert set(created) == {"token", "id", "role", "name", "prefix"}
    assert (created["role"], created["name"]) == ("admin", "ci")
    assert verify(database_url, created["token"]) == Principal("ci", "admin", created["id"])

    shown = run_cli("tokens", "create", "--role", "viewer", database_url=database_url)
    assert shown.returncode == 0, shown.stderr
    [token_line] = [line for line in shown.stdout.splitlines() if line.startswith("token: ")]
    viewer_token = token_line.removeprefix("token: ")
    assert "shown only once" in " ".join(shown.stderr.split())
    viewer = verify(database_url, viewer_token)
    assert viewer is not None and not viewer.can_write

    listed = run_cli("tokens", "list", "--json", database_url=database_url)
    assert listed.returncode == 0, listed.stderr
    tokens = json.loads(listed.stdout)
    assert [(t["id"], t["name"], t["role"], t["revokedAt"]) for t in tokens] == [
        (created["id"], "ci", "admin", None),
        (viewer.token_id, None, "viewer", None),
    ]
    assert tokens[0]["prefix"] == created["token"][: len(tokens[0]["prefix"])]
    table = run_cli("tokens", "list", database_url=database_url)
    assert table.returncode == 0 and tokens[0]["prefix"] in table.stdout
    for output in (listed.stdout, table.stdout):
        assert created["token"] not in output and viewer_token not in output

    revoked = run_cli("tokens", "revoke", str(created["id"]), database_url=database_url)
    assert revoked.returncode == 0, revoked.stderr
    assert f"token {created['id']} revoked" in revoked.stdout
    assert verify(database_url, created["token"]) is None
    again = run_cli("tokens", "revoke", str(created["id"]), database_url=database_url)
    assert again.returncode == 1 and "no active token" in again.stderr
    [first, _] = json.loads(run_cli("tokens", "list", "--json", database_url=database_url).stdout)
    assert first["revokedAt"] is not None

    stored = sql_conn.execute("SELECT t::text FROM tickbase.api_tokens t").fetchall()
    assert not any(created["token"] in row[0] or viewer_token in row[0] for row in stored)


def test_bad_role_is_refused_and_nothing_stored(
    database_url: str, sql_conn: psycopg.Connection[Any]
) -> None:
    refused = run_cli("tokens", "create", "--role", "root", "--json", database_url=database_url)
    assert refused.returncode == 1 and refused.stdout == ""
    assert "invalid role 'root': must be 'admin' or 'viewer'" in " ".join(refused.stderr.split())

    hinted = run_cli("tokens", "create", "--role", "Admin", database_url=database_url)
    assert hinted.returncode == 1 and "did you mean 'admin'?" in " ".join(hinted.stderr.split())

    missing = run_cli("tokens", "create", database_url=database_url)
    assert missing.returncode != 0 and "--role" in missing.stderr

    assert sql_conn.execute("SELECT count(*) FROM tickbase.api_tokens").fetchone() == (0,)
