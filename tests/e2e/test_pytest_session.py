"""A pytest session stops the embedded server it started, and only that one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.e2e.conftest import REPO
from tickbase.db.embedded import EmbeddedServer

INNER = "TICKBASE_INNER_SESSION"
inner_only = pytest.mark.skipif(not os.environ.get(INNER), reason="run by the tests below")
# The outer tests never run inside an inner session (they would start sessions of their own).
outer_only = pytest.mark.skipif(bool(os.environ.get(INNER)), reason="inside an inner session")


@inner_only
@pytest.mark.parametrize("n", range(4))
def test_inner_session_uses_the_server(server_url: str, n: int) -> None:
    with psycopg.connect(server_url) as conn:
        assert conn.execute("SELECT %s::int", (n,)).fetchone() == (n,)


@pytest.fixture
def home() -> Iterator[Path]:
    """A fresh test home outside pytest's temporary directory: the inner session
    makes that one private again (mode 0700), out of reach of the server's account."""
    path = Path(tempfile.mkdtemp(prefix="tickbase-inner-session-"))
    try:
        yield path / "home"
    finally:
        EmbeddedServer(path / "home").stop()
        shutil.rmtree(path, ignore_errors=True)


def run_inner_session(home: Path, *options: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "TICKBASE_HOME")}
    env.update({INNER: "1", "TICKBASE_TEST_HOME": str(home)})
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:randomly",
            *options,
            f"{__file__}::test_inner_session_uses_the_server",
        ],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=100,
    )


@outer_only
@pytest.mark.slow
@pytest.mark.parametrize("workers", [("-n", "0"), ("-n", "2")], ids=["serial", "xdist"])
def test_a_session_stops_the_server_it_started(home: Path, workers: tuple[str, ...]) -> None:
    done = run_inner_session(home, *workers)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout
    assert EmbeddedServer(home).running() is None
    assert not list(home.glob("started-by-test-session-*"))


@outer_only
@pytest.mark.slow
def test_a_session_leaves_running_a_server_it_found_running(home: Path) -> None:
    server = EmbeddedServer(home)
    server.ensure_running()
    before = server.running()
    done = run_inner_session(home, "-n", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    after = server.running()
    assert before is not None and after is not None and after.pid == before.pid
