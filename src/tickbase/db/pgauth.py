"""Password authentication for the embedded PostgreSQL.

Threat model
    The embedded server listens on 127.0.0.1 and on a unix socket, so every local
    account can reach it. Reachability alone must not grant access: every
    connection, socket or TCP, authenticates with ``scram-sha-256`` as the
    superuser, whose random password lives in ``TICKBASE_HOME/pg.password``,
    readable by its owner only (the account that started tickbase; root may
    read it anyway). The socket is additionally kept in a directory only the
    server user may enter, so other accounts cannot even start a handshake there.

Secrets
    The password is written once, with ``O_CREAT | O_EXCL`` and mode 0600, so it
    is never world-readable, not even between create and chmod. It is never
    logged; when it is set on an existing server only its SCRAM verifier
    (computed by libpq on the client, as ``psql``'s ``\\password`` does) is sent.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tickbase.errors import DatabaseError

logger = logging.getLogger(__name__)

PASSWORD_FILE_NAME = "pg.password"
AUTH_METHOD = "scram-sha-256"
# Every rule asks for the password. The server listens on 127.0.0.1 only, so no
# other address needs a rule; replication rules let pg_basebackup work too.
HBA_CONF = """\
# Written by tickbase: every connection needs the superuser password
# (TICKBASE_HOME/pg.password). Edits are kept while they all ask for it.
# TYPE  DATABASE     USER  ADDRESS       METHOD
local   all          all                 scram-sha-256
host    all          all   127.0.0.1/32  scram-sha-256
local   replication  all                 scram-sha-256
host    replication  all   127.0.0.1/32  scram-sha-256
"""
# Methods that let a client in without the password.
_PASSWORDLESS_METHODS = frozenset({"trust", "peer", "ident"})


def new_password() -> str:
    """A fresh random superuser password (URL-safe, 43 characters)."""
    return secrets.token_urlsafe(32)


def read_password(path: Path) -> str | None:
    """The password stored at ``path``, or ``None`` when absent or unreadable.

    A file that became readable by others (a careless ``chmod``, a restore from
    backup) is tightened back to 0600 when we own it, with a warning.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except (FileNotFoundError, PermissionError):
        return None
    except OSError as exc:  # ELOOP: a symlink where the file should be
        raise DatabaseError(f"cannot read the database password file {path}: {exc}") from None
    with os.fdopen(fd) as handle:
        info = os.fstat(handle.fileno())
        if info.st_mode & 0o077 and info.st_uid == os.geteuid():
            os.fchmod(handle.fileno(), 0o600)
            logger.warning("%s was readable by other accounts; restricted it to its owner", path)
        password = handle.read().strip()
    return password or None


def create_password(path: Path) -> str:
    """Write a new password to ``path`` (which must not exist) and return it.

    ``O_EXCL`` refuses an existing file or symlink, so a file planted by someone
    else is never written into; mode 0600 is applied by ``open`` itself.
    """
    password = new_password()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    return password


def load_or_create_password(path: Path) -> str:
    """The stored password, creating it when there is none yet."""
    existing = read_password(path)
    if existing is not None:
        return existing
    try:
        return create_password(path)
    except FileExistsError:
        raise DatabaseError(
            f"{path} exists but cannot be read by this account; "
            "run tickbase as the account that created it"
        ) from None


@contextlib.contextmanager
def temporary_password_file(
    password: str, directory: Path, owner: tuple[int, int] | None
) -> Iterator[Path]:
    """A 0600 file holding ``password`` for ``initdb --pwfile``, removed afterwards.

    ``owner`` (uid, gid) hands the file to the server user when initdb does not
    run as us (root starts it as ``embedded_postgres``); only that user can read it.
    """
    fd, name = tempfile.mkstemp(prefix=".pwfile-", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            if owner is not None:
                os.fchown(handle.fileno(), *owner)
            handle.write(password + "\n")
        yield Path(name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def hba_allows_passwordless(hba_file: Path) -> bool | None:
    """Whether ``pg_hba.conf`` has a rule that admits a client without a password.

    ``None`` when the file cannot be read by this account (another user's data
    directory): nothing can be decided, or changed, from here.
    """
    try:
        text = hba_file.read_text()
    except (FileNotFoundError, PermissionError):
        return None
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        # TYPE DATABASE USER [ADDRESS [MASK]] METHOD [OPTIONS]: the method is the
        # first of the fields after the user that names one.
        if any(field in _PASSWORDLESS_METHODS for field in fields[3:]):
            return True
    return False


def write_hba(hba_file: Path, owner: tuple[int, int] | None) -> None:
    """Replace ``pg_hba.conf`` atomically with :data:`HBA_CONF`.

    Written beside the original and renamed over it, so the server never reads a
    half-written file; owned by the server user, which must read it on reload.
    """
    fd, name = tempfile.mkstemp(prefix=".pg_hba-", dir=hba_file.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            if owner is not None:
                os.fchown(handle.fileno(), *owner)
            handle.write(HBA_CONF)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(name, hba_file)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
        raise


def set_superuser_password(conn: Any, role: str, password: str) -> None:
    """``ALTER ROLE role PASSWORD ...`` with a SCRAM verifier computed here.

    ALTER ROLE takes no bind parameters, so the verifier is quoted by
    ``psycopg.sql.Literal``; the plaintext never reaches the server or its log.
    """
    from psycopg import sql

    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), AUTH_METHOD.encode())
    conn.execute(
        sql.SQL("ALTER ROLE {} PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(verifier.decode())
        )
    )


def restrict_socket(socket_file: Path) -> None:
    """Make the server's socket file 0700 (owner: the server user; root bypasses).

    A server started by an earlier tickbase created it 0777; changing the mode of
    the existing socket takes effect for new connections without a restart.
    """
    with contextlib.suppress(FileNotFoundError, PermissionError):
        if stat.S_IMODE(socket_file.stat().st_mode) != 0o700:
            socket_file.chmod(0o700)
