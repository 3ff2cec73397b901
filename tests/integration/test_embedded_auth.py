"""The embedded server admits nobody without its password (issue 13, item 1).

Every test starts a server of its own in a fresh ``TICKBASE_HOME`` under
``tmp_path`` and stops it at the end. Each assertion below fails on the code
before this change, which made data directories with ``initdb --auth=trust``.
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest

from tests.conftest import with_database
from tests.support.legacy_pg import (
    make_legacy_data_dir,
    psql_binary,
    start_legacy,
    stopped_at_exit,
    without_password,
)
from tickbase.db.embedded import EmbeddedServer, RunningServer


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def tcp_url(running: RunningServer, password: str | None = None) -> str:
    url = f"host=127.0.0.1 port={running.port} user=postgres dbname=postgres"
    return url if password is None else f"{url} password={password}"


def assert_password_required(server: EmbeddedServer) -> None:
    """pg_hba.conf asks for the password everywhere, and the server enforces it."""
    hba = server.hba_file.read_text()
    rules = [line.split() for line in hba.splitlines() if line.strip() and line[0] != "#"]
    assert rules and all(rule[-1] == "scram-sha-256" for rule in rules), hba
    assert "trust" not in hba
    running = server.running()
    assert running is not None
    for url in (running.url("postgres"), tcp_url(running)):
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(without_password(url)).close()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(tcp_url(running, password="guessed")).close()


def test_a_new_data_directory_requires_the_password(tmp_path: Path) -> None:
    with stopped_at_exit(tmp_path / "h") as server:
        url, started = server.ensure_running()
        assert started
        info = os.stat(server.password_file)
        assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == os.geteuid()
        password = server.password_file.read_text().strip()
        assert len(password) >= 32 and quote(password, safe="") in url
        assert not list(server.home.glob(".pwfile-*")), "initdb's password file is left behind"

        assert_password_required(server)
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("postgres",)
        running = server.running()
        assert running is not None
        with psycopg.connect(tcp_url(running, password)) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert mode(running.socket_file) == 0o700 and mode(running.socket_dir) == 0o700
        assert password not in repr(running)


def test_a_trust_data_directory_of_an_earlier_version_is_converted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with stopped_at_exit(tmp_path / "h") as server:
        make_legacy_data_dir(server)
        legacy = start_legacy(server)
        with psycopg.connect(legacy.url("postgres"), autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (note text)")
            conn.execute("INSERT INTO kept VALUES ('stored before the upgrade')")
        server.stop()
        assert not server.password_file.exists()

        with caplog.at_level(logging.INFO, logger="tickbase.db.embedded"):
            url, started = server.ensure_running()
        assert started
        password = server.password_file.read_text().strip()
        converted = [r.getMessage() for r in caplog.records if "converted" in r.getMessage()]
        assert converted == [
            f"converted the embedded database at {server.pgdata} to password authentication "
            f"(scram-sha-256); the superuser password is in {server.password_file}"
        ]
        assert password not in caplog.text
        assert mode(server.password_file) == 0o600
        assert_password_required(server)
        with psycopg.connect(with_database(url, "postgres")) as conn:
            assert conn.execute("SELECT note FROM kept").fetchall() == [
                ("stored before the upgrade",)
            ]

        # converted once: the next start finds nothing to do
        server.stop()
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="tickbase.db.embedded"):
            server.ensure_running()
        assert "converted" not in caplog.text
        assert server.password_file.read_text().strip() == password


def test_a_running_server_of_an_earlier_version_is_converted_in_place(tmp_path: Path) -> None:
    with stopped_at_exit(tmp_path / "h") as server:
        make_legacy_data_dir(server)
        legacy = start_legacy(server)
        assert mode(legacy.socket_file) == 0o777  # what the old code left

        url, started = server.ensure_running()
        running = server.running()
        assert not started and running is not None and running.pid == legacy.pid
        assert mode(running.socket_file) == 0o700
        assert_password_required(server)
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


def as_nobody(*command: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as the account ``nobody``, with no PG* settings of ours."""
    env = {"PATH": "/usr/bin:/bin", "HOME": "/", "LANG": "C.UTF-8"}
    return subprocess.run(
        ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *command],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="running psql as another account (nobody) needs root")
def test_another_account_cannot_connect_without_the_password(tmp_path: Path) -> None:
    psql = psql_binary()
    with stopped_at_exit(tmp_path / "h") as server:
        url, _ = server.ensure_running()
        running = server.running()
        assert running is not None
        assert as_nobody(psql, "--version").returncode == 0, "nobody cannot run psql"

        for host in ("127.0.0.1", str(running.socket_dir)):
            refused = as_nobody(
                psql,
                *("-h", host, "-p", str(running.port), "-U", "postgres", "-d", "postgres"),
                *("-w", "-tAc", "SELECT 1"),
            )
            assert refused.returncode != 0, f"nobody connected over {host}"
            assert "connection to server" in refused.stderr, refused.stderr
            assert (
                "no password supplied" in refused.stderr or "Permission denied" in refused.stderr
            ), refused.stderr

        owner = subprocess.run(
            [psql, url, "-w", "-tAc", "SELECT current_user"],
            env={k: v for k, v in os.environ.items() if not k.startswith("PG")},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert owner.returncode == 0 and owner.stdout.strip() == "postgres", owner.stderr


def test_a_running_server_missing_its_database_gets_it_back(tmp_path: Path) -> None:
    """A start cut short after the server came up (its process killed) leaves a
    server without tickbase's database; the next ``ensure_running`` reuses the
    server and creates the database, so ``tickbase up`` does not fail on it."""
    with stopped_at_exit(tmp_path / "h") as server:
        url, started = server.ensure_running()
        assert started
        with psycopg.connect(with_database(url, "postgres"), autocommit=True) as conn:
            conn.execute("DROP DATABASE tickbase")
        again, started = server.ensure_running()
        assert not started and again == url
        with psycopg.connect(again) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("tickbase",)
