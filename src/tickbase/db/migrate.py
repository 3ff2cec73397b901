"""Numbered, forward-only, plain-SQL schema migrations.

Files live in ``tickbase/db/migrations`` as ``NNNN_name.sql``. Applied versions
are recorded in ``tickbase.schema_migrations`` with a checksum of the file.

All pending migrations are applied in ONE transaction holding a transaction-level
advisory lock, so several nodes starting at once are safe: the first applies,
the others wait for the lock, then find nothing left to do. A database whose
schema is newer than the code, or whose applied migration no longer matches its
file, is refused with a message naming both sides.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

import psycopg

from tickbase.errors import MigrationError

# Arbitrary constant: the advisory lock key that serialises migrations.
MIGRATION_LOCK_KEY = 7_315_020_001
_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

_BOOTSTRAP = """
CREATE SCHEMA IF NOT EXISTS tickbase;
CREATE TABLE IF NOT EXISTS tickbase.schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class MigrationStatus:
    """Where a database stands against the code's migrations."""

    applied: list[tuple[int, str, datetime]]
    pending: list[Migration]
    code_version: int

    @property
    def current(self) -> bool:
        return not self.pending

    @property
    def database_version(self) -> int:
        return max((version for version, _, _ in self.applied), default=0)


def available_migrations() -> list[Migration]:
    """The migrations shipped with this code, by version."""
    folder = resources.files("tickbase.db.migrations")
    migrations = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            migrations.append(
                Migration(int(match["version"]), match["name"], entry.read_text(encoding="utf-8"))
            )
    migrations.sort(key=lambda m: m.version)
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version: {versions}")
    return migrations


async def migration_status(conn: psycopg.AsyncConnection[Any]) -> MigrationStatus:
    """Compare the database with the code, without changing anything."""
    exists = await (
        await conn.execute("SELECT to_regclass('tickbase.schema_migrations') IS NOT NULL")
    ).fetchone()
    applied: list[tuple[int, str, datetime]] = []
    checksums: dict[int, str] = {}
    if exists and exists[0]:
        rows = await (
            await conn.execute(
                "SELECT version, name, applied_at, checksum FROM tickbase.schema_migrations"
                " ORDER BY version"
            )
        ).fetchall()
        applied = [(row[0], row[1], row[2]) for row in rows]
        checksums = {row[0]: row[3] for row in rows}
    code = available_migrations()
    _check_consistency(code, checksums)
    pending = [m for m in code if m.version not in checksums]
    return MigrationStatus(
        applied=applied, pending=pending, code_version=code[-1].version if code else 0
    )


async def migrate(conn: psycopg.AsyncConnection[Any]) -> list[Migration]:
    """Apply every pending migration in one transaction; return those applied."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        await conn.execute(_BOOTSTRAP)
        status = await migration_status(conn)
        for migration in status.pending:
            await conn.execute(migration.sql)  # a package file, never user input
            await conn.execute(
                "INSERT INTO tickbase.schema_migrations (version, name, checksum)"
                " VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
    return status.pending


def _check_consistency(code: list[Migration], applied: dict[int, str]) -> None:
    known = {m.version: m for m in code}
    newer = sorted(v for v in applied if v not in known)
    if newer:
        code_version = code[-1].version if code else 0
        raise MigrationError(
            f"the database schema is at version {max(applied)} but this tickbase only knows "
            f"up to version {code_version} (unknown: {newer}); upgrade tickbase"
        )
    for version, checksum in applied.items():
        if known[version].checksum != checksum:
            raise MigrationError(
                f"migration {version:04d}_{known[version].name}.sql was edited after it was "
                "applied (checksum differs); migrations are forward-only: add a new one"
            )
