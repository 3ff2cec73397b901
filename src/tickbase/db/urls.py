"""Connection URLs: hiding their passwords, and saying why a connection failed.

Both exist so that no message tickbase prints or logs carries a password: a URL
is shown through :func:`redact_url`, and a failed connection becomes one line
naming the host and port (:func:`connection_failure`) instead of a traceback.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tickbase.errors import DatabaseError


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, in the form it was given.

    A ``postgresql://`` URL stays a URL (what ``tickbase db url`` prints, with
    the secret hidden); a ``key=value`` string stays one.
    """
    try:
        parts = conninfo_to_dict(url)
    except psycopg.Error:
        return "<unparseable url>"
    if "password" not in parts:
        return url
    split = urlsplit(url)
    if split.scheme in ("postgres", "postgresql"):
        netloc = split.netloc
        userinfo, at, hostport = netloc.rpartition("@")
        if at and ":" in userinfo:
            netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
        query = urlencode(
            [
                (key, "***" if key == "password" else value)
                for key, value in parse_qsl(split.query, keep_blank_values=True)
            ],
            safe="/*",
        )
        return urlunsplit(split._replace(netloc=netloc, query=query))
    parts["password"] = "***"
    return make_conninfo("", **parts)


def describe_target(url: str) -> str:
    """Where ``url`` points, as ``host:port`` (or ``socket DIR, port N``); no secrets."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.Error:
        return "<unparseable url>"
    # libpq's own defaults when the URL leaves them out
    host = str(parts.get("host") or os.environ.get("PGHOST") or "localhost")
    port = str(parts.get("port") or os.environ.get("PGPORT") or "5432")
    if host.startswith("/"):
        return f"socket {host}, port {port}"
    return f"{host}:{port}"


def connection_failure(url: str, exc: psycopg.Error) -> DatabaseError:
    """A :class:`DatabaseError` of one line for a connection to ``url`` that failed.

    libpq's message names each attempt and adds hints on further lines; the
    first line's last clause is the reason ("Connection refused", "password
    authentication failed for user ..."). libpq never puts the password in it.
    """
    first_line = (str(exc).strip().splitlines() or ["unknown error"])[0]
    reason = first_line.rsplit("failed: ", 1)[-1].strip()
    return DatabaseError(f"cannot connect to PostgreSQL at {describe_target(url)}: {reason}")
