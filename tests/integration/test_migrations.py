"""Numbered migrations: from empty, idempotent, concurrent, edited or newer schemas refused."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from tickbase.db.migrate import Migration, available_migrations, migrate, migration_status
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
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 0017 ships while 0016 is still being written elsewhere: the numbering may
    # have a gap, and a 0016 that arrives after 0017 was applied is applied then.
    shipped = available_migrations()
    versions = [m.version for m in shipped]
    assert versions == sorted(set(versions)) and 17 in versions
    from tickbase.db import migrate as migrate_module

    later = Migration(16, "arrived_later", "CREATE TABLE tickbase.arrived_later (x int);")
    if 16 not in versions:
        monkeypatch.setattr(
            migrate_module,
            "available_migrations",
            lambda: sorted([*shipped, later], key=lambda m: m.version),
        )
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            assert [m.version for m in (await migration_status(conn)).pending] == [16]
            assert [m.version for m in await migrate(conn)] == [16]
            status = await migration_status(conn)
            assert status.current and status.database_version == max(versions)
