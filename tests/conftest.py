"""Test fixtures over a real PostgreSQL.

One server per test session: ``DATABASE_URL`` when set, else the embedded
server of a fixed test home (reused across runs). The schema is migrated once
into a template database per xdist worker; every test that needs a database
gets a fresh clone (``CREATE DATABASE ... TEMPLATE``), dropped afterwards.

A session that started the embedded server stops it at its end, and one that
found it running leaves it running. Under xdist any worker may be the one
that starts it, and the others still use it: so the starter only leaves a
marker (named after the session, which the workers share through the
environment), and the controller, the last process to finish, stops the
server if the marker is there and no other live session still has a
template database on it (a developer's run beside CI's).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

import tickbase
from tests.support.waiting import wait_until
from tickbase.db.embedded import EmbeddedServer
from tickbase.db.migrate import migrate
from tickbase.settings import Settings, load_settings

TEST_HOME = Path(os.environ.get("TICKBASE_TEST_HOME", f"/tmp/tickbase-test-{os.getuid()}"))


def with_database(url: str, dbname: str) -> str:
    """``url`` pointing at another database of the same server."""
    return make_conninfo("", **{**conninfo_to_dict(url), "dbname": dbname})


@pytest.fixture(scope="session")
def server_url() -> str:
    """URL of the session's server (any database on it)."""
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    url, started = EmbeddedServer(TEST_HOME).ensure_running()
    if started:
        _started_marker().touch()
    return url


SESSION_VARIABLE = "TICKBASE_TEST_SESSION"


def _started_marker() -> Path:
    """The file saying that this session (controller and workers) started the server."""
    return TEST_HOME / f"started-by-test-session-{os.environ[SESSION_VARIABLE]}"


def _other_sessions_on(url: str) -> bool:
    """Whether a live test process other than this session's has a template on the server.

    This session's workers dropped theirs in teardown, before the controller
    finishes; a template left by a dead process does not count.
    """
    with psycopg.connect(url, autocommit=True) as conn:
        names = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE 'tickbase\\_template\\_%'"
        ).fetchall()
    pids = {int(name.rpartition("_")[2]) for (name,) in names if name.rpartition("_")[2].isdigit()}
    return any(pid != os.getpid() and psutil.pid_exists(pid) for pid in pids)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """The controller (or a run without xdist) stops the server this session started."""
    if hasattr(session.config, "workerinput") or SESSION_VARIABLE not in os.environ:
        return
    marker = _started_marker()
    if not marker.exists():
        return
    marker.unlink()
    server = EmbeddedServer(TEST_HOME)
    url = server.running_url()
    if url is not None and not _other_sessions_on(url):
        server.stop()


@pytest.fixture(scope="session")
def template_db(server_url: str, worker_id: str) -> Iterator[str]:
    """Name of a migrated template database private to this test process.

    The pid in the name keeps concurrent test sessions on one server (a
    developer's run beside CI's) from migrating each other's template.
    """
    name = f"tickbase_template_{worker_id}_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    import asyncio

    async def apply() -> None:
        conn = await psycopg.AsyncConnection.connect(
            with_database(server_url, name), autocommit=True
        )
        async with conn:
            await migrate(conn)

    asyncio.run(apply())
    yield name
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextlib.contextmanager
def migrated_database(server_url: str, template_db: str, prefix: str = "t") -> Iterator[str]:
    """A fresh database copied from the migrated template; dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template_db)
            )
        )
    try:
        yield with_database(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def database_url(server_url: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    with migrated_database(server_url, template_db) as url:
        yield url


@pytest.fixture
def empty_database_url(server_url: str) -> Iterator[str]:
    """A fresh database with no schema (for migration tests)."""
    name = f"e_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield with_database(server_url, name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def fast_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings for tests: short poll and lease so recovery paths run in seconds."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "poll_interval": 0.2,
        "lease_seconds": 3.0,
        "shutdown_grace": 2.0,
        "home": TEST_HOME,
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[tickbase.App]:
    """An open App on a fresh database; checks no connection leaks out of the test."""
    application = tickbase.App(settings=fast_settings(database_url))
    await application.open(apply_migrations=False)
    try:
        yield application

        async def all_returned() -> bool:
            # pool_size also counts connections still being opened in the
            # background, so give those a moment to land in the pool.
            stats = application.pool.get_stats()
            return stats.get("pool_size", 0) == stats.get("pool_available", 0)

        await wait_until(all_returned, timeout=2.0, message="every pooled connection returned")
    finally:
        await application.close()


@pytest.fixture
def sql_conn(database_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A plain autocommit connection to the test database, for assertions."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("TICKBASE_HOME", str(TEST_HOME))
    # Set by the controller before xdist spawns its workers, which inherit it.
    if not hasattr(config, "workerinput"):
        os.environ[SESSION_VARIABLE] = uuid.uuid4().hex


@pytest.fixture(scope="session")
def worker_id(request: pytest.FixtureRequest) -> str:
    """The xdist worker name ("master" without xdist)."""
    return str(getattr(request.config, "workerinput", {}).get("workerid", "master"))
