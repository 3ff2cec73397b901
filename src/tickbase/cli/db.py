"""``tickbase db``: the embedded server and the schema."""

from __future__ import annotations

from typing import Any

import typer

from tickbase.cli.common import DatabaseUrlOption, JsonOption, run, run_sync
from tickbase.cli.render import console, print_json, table

cli = typer.Typer(help="Database: embedded server lifecycle and migrations.", no_args_is_help=True)


def _settings(database_url: str | None) -> Any:
    from tickbase.settings import load_settings

    return load_settings(database_url=database_url)


@cli.command()
def start() -> None:
    """Start the embedded server detached (it keeps running for other processes).

    Prints its URL without the password (output like this ends up in logs);
    ``tickbase db url`` prints the working one.
    """
    from tickbase.db.embedded import EmbeddedServer
    from tickbase.db.urls import redact_url

    settings = _settings(None)
    url, started = run_sync(lambda: EmbeddedServer(settings.home).ensure_running())
    console.print(
        "started embedded PostgreSQL" if started else "embedded PostgreSQL already running"
    )
    print(redact_url(url))


@cli.command()
def stop() -> None:
    """Stop the embedded server."""
    from tickbase.db.embedded import EmbeddedServer

    settings = _settings(None)
    stopped = EmbeddedServer(settings.home).stop()
    console.print(
        "stopped embedded PostgreSQL" if stopped else "embedded PostgreSQL was not running"
    )


@cli.command()
def url(database_url: str | None = DatabaseUrlOption) -> None:
    """Print the connection URL (last line), starting the embedded server if needed.

    For the embedded server it holds the superuser password (from
    ``TICKBASE_HOME/pg.password``): it is meant for you, e.g. ``psql "$(tickbase db url)"``.
    """
    from tickbase.db.pool import resolve_database_url

    resolved, _ = run_sync(lambda: resolve_database_url(_settings(database_url)))
    print(resolved)


@cli.command()
def migrate(database_url: str | None = DatabaseUrlOption) -> None:
    """Apply pending migrations (safe to run from several nodes at once)."""
    from tickbase.db import migrate as migrations
    from tickbase.db.pool import connect, resolve_database_url

    async def body() -> list[Any]:
        resolved, _ = resolve_database_url(_settings(database_url))
        conn = await connect(resolved)
        try:
            return await migrations.migrate(conn)
        finally:
            await conn.close()

    applied = run(body())
    if applied:
        for migration in applied:
            console.print(f"applied {migration.version:04d}_{migration.name}")
    else:
        console.print("schema is current")


@cli.command()
def status(database_url: str | None = DatabaseUrlOption, as_json: bool = JsonOption) -> None:
    """Which server is used and whether its migrations are current.

    Never starts the embedded server: when it is not running, says so (exit 0).
    URLs are shown without their password.
    """
    from tickbase.db import migrate as migrations
    from tickbase.db.embedded import EmbeddedServer
    from tickbase.db.pool import connect
    from tickbase.db.urls import redact_url

    settings = _settings(database_url)

    async def body() -> dict[str, Any]:
        if settings.database_url:
            target = settings.database_url
            server: dict[str, Any] = {"kind": "external", "url": redact_url(target)}
        else:
            info = EmbeddedServer(settings.home).running()
            server = {
                "kind": "embedded",
                "home": str(settings.home),
                "running": info is not None,
                "pid": info.pid if info else None,
                "port": info.port if info else None,
                "url": redact_url(info.url()) if info else None,
            }
            if info is None:
                return _not_running(server)
            target = info.url()
        conn = await connect(target)
        try:
            version = (await (await conn.execute("SHOW server_version")).fetchone() or ("?",))[0]
            state = await migrations.migration_status(conn)
        finally:
            await conn.close()
        return {
            "server": server,
            "server_version": version,
            "schema_version": state.database_version,
            "code_version": state.code_version,
            "current": state.current,
            "pending": [f"{m.version:04d}_{m.name}" for m in state.pending],
        }

    result = run(body())
    if as_json:
        print_json(result)
        return
    server = result["server"]
    if server.get("running") is False:
        console.print(
            f"embedded PostgreSQL of {server['home']} is not running "
            "(`tickbase db start` starts it)"
        )
        return
    rows = [(key, value) for key, value in server.items()]
    rows += [
        ("server_version", result["server_version"]),
        ("schema_version", result["schema_version"]),
        ("code_version", result["code_version"]),
        (
            "migrations",
            "current" if result["current"] else "pending: " + ", ".join(result["pending"]),
        ),
    ]
    table("database", ["key", "value"], rows)


@cli.command("sql")
def show_sql() -> None:
    """Print every migration's SQL without applying it."""
    from tickbase.db.migrate import available_migrations

    for migration in available_migrations():
        print(f"-- {migration.version:04d}_{migration.name}.sql")
        print(migration.sql)


def _not_running(server: dict[str, Any]) -> dict[str, Any]:
    """``status`` of an embedded server that is not running: the same keys, no figures."""
    from tickbase.db.migrate import available_migrations

    return {
        "server": server,
        "server_version": None,
        "schema_version": None,
        "code_version": max((m.version for m in available_migrations()), default=0),
        "current": None,
        "pending": [],
    }
