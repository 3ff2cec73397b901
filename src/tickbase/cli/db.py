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
        resolved, _ = resolve_database_url(_settings(database_url), start=False)
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
            "(`tickbase db start` or `tickbase up` starts it)"
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
def run_sql(
    statement: str = typer.Argument(..., help="SQL to run as given, e.g. 'SELECT 1'."),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Run SQL on the database and print the rows it returns.

    The statement is yours and runs as written, as the database user of the
    URL. Several statements separated by ';' run in turn, as one transaction;
    the rows of the last one that returns rows are printed.
    """
    from tickbase.db.pool import connect, resolve_database_url

    async def body() -> tuple[list[str], list[tuple[Any, ...]], str]:
        resolved, _ = resolve_database_url(_settings(database_url), start=False)
        conn = await connect(resolved)
        try:
            return await _execute(conn, statement)
        finally:
            await conn.close()

    columns, rows, status_message = run(body())
    if as_json:
        print_json([{c: _json_value(v) for c, v in zip(columns, row, strict=True)} for row in rows])
    elif columns:
        table(None, columns, rows)
    else:
        console.print(status_message)


def _json_value(value: Any) -> Any:
    """A JSON number for a ``numeric`` (psycopg gives a Decimal), else ``value``."""
    from decimal import Decimal

    if isinstance(value, Decimal) and value.is_finite():
        return int(value) if value == value.to_integral_value() else float(value)
    return value


async def _execute(conn: Any, statement: str) -> tuple[list[str], list[tuple[Any, ...]], str]:
    """Run the user's ``statement``; the columns and rows of its last row-returning result."""
    import psycopg

    from tickbase.errors import DatabaseError

    columns: list[str] = []
    rows: list[tuple[Any, ...]] = []
    try:
        # The user's own SQL, run as given: passed as bytes because it is not a
        # literal of ours (psycopg types queries as LiteralString). Without
        # parameters, psycopg accepts several statements in one string.
        cursor = await conn.execute(statement.encode())
        while True:
            if cursor.description is not None:
                columns = [column.name for column in cursor.description]
                rows = await cursor.fetchall()
            if not cursor.nextset():
                break
    except psycopg.Error as exc:
        diag = exc.diag
        where = f" (SQLSTATE {diag.sqlstate})" if diag.sqlstate else ""
        raise DatabaseError(f"SQL failed: {diag.message_primary or exc}{where}") from None
    return columns, rows, cursor.statusmessage or ""


@cli.command()
def migrations(
    sql: bool = typer.Option(False, "--sql", help="Print each migration's SQL instead."),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """The schema's migrations: version, name and when each was applied.

    With --sql, prints every migration's SQL without applying it (no database
    needed).
    """
    from tickbase.db import migrate as migrate_module
    from tickbase.db.pool import connect, resolve_database_url

    if sql:
        for migration in migrate_module.available_migrations():
            print(f"-- {migration.version:04d}_{migration.name}.sql")
            print(migration.sql)
        return

    async def body() -> list[dict[str, Any]]:
        resolved, _ = resolve_database_url(_settings(database_url), start=False)
        conn = await connect(resolved)
        try:
            state = await migrate_module.migration_status(conn)
        finally:
            await conn.close()
        applied = {version: at for version, _, at in state.applied}
        return [
            {"version": m.version, "name": m.name, "applied_at": applied.get(m.version)}
            for m in migrate_module.available_migrations()
        ]

    listed = run(body())
    if as_json:
        print_json(listed)
        return
    table(
        None,
        ["version", "name", "applied at"],
        [
            (f"{m['version']:04d}", m["name"], m["applied_at"] or "pending (`tickbase db migrate`)")
            for m in listed
        ],
    )


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
