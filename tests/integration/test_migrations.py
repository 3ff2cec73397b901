"""Numbered migrations: from empty, idempotent, concurrent, edited or newer schemas refused."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from tickbase.db.migrate import available_migrations, migrate, migration_status
from tickbase.errors import MigrationError


async def test_migrate_from_empty_then_nothing_to_do(empty_database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(empty_database_url, autocommit=True) as conn:
        before = await migration_status(conn)
        assert not before.current and before.database_version == 0
        applied = await migrate(conn)
        assert [m.version for m in applied] == [m.version for m in available_migrations()]
        assert await migrate(conn) == []
        after = await migration_status(conn)
        assert after.current and after.database_version == after.code_version


async def test_concurrent_nodes_migrate_once(empty_database_url: str) -> None:
    async def node() -> int:
        async with await psycopg.AsyncConnection.connect(
            empty_database_url, autocommit=True
        ) as conn:
            return len(await migrate(conn))

    applied = await asyncio.gather(*(node() for _ in range(6)))
    assert sorted(applied) == [0] * 5 + [len(available_migrations())]
    async with await psycopg.AsyncConnection.connect(empty_database_url, autocommit=True) as conn:
        rows = await (
            await conn.execute("SELECT count(*) FROM tickbase.schema_migrations")
        ).fetchone()
        assert rows == (len(available_migrations()),)


async def test_edited_migration_is_detected(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("UPDATE tickbase.schema_migrations SET checksum = 'x' WHERE version = 1")
        with pytest.raises(MigrationError, match="was edited after it was applied"):
            await migration_status(conn)


async def test_newer_database_is_refused(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO tickbase.schema_migrations (version, name, checksum) VALUES (999, 'future', 'x')"
        )
        with pytest.raises(MigrationError, match=r"version 999 .* upgrade tickbase"):
            await migrate(conn)


async def test_a_gap_and_a_lower_version_arriving_later_are_applied(
    empty_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two branches number their migrations N and N+1; N+1 ships first: the numbering
    # has a gap, and N, arriving after N+1 was applied, is applied then.
    from tickbase.db import migrate as migrate_module

    shipped = available_migrations()
    late = shipped[-2]
    early = [m for m in shipped if m is not late]
    monkeypatch.setattr(migrate_module, "available_migrations", lambda: early)
    async with await psycopg.AsyncConnection.connect(empty_database_url, autocommit=True) as conn:
        assert [m.version for m in await migrate(conn)] == [m.version for m in early]
        monkeypatch.setattr(migrate_module, "available_migrations", lambda: shipped)
        assert [m.version for m in (await migration_status(conn)).pending] == [late.version]
        assert [m.version for m in await migrate(conn)] == [late.version]
        status = await migration_status(conn)
        assert status.current and status.database_version == shipped[-1].version
