"""Helpers for tests that run ``tickbase`` as separate processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


# Where no market-data source answers (connection refused at once): processes under
# test never reach the internet; a test that wants a source passes its URL.
NOWHERE = "http://127.0.0.1:9"
OFFLINE_SOURCES = {
    f"TICKBASE_{name}_URL": NOWHERE
    for name in ("BINANCE", "COINGECKO", "FEAR_GREED", "FRED", "GLASSNODE")
}


def tickbase_env(database_url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(OFFLINE_SOURCES)
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    env.update(extra)
    return env


def run_cli(
    *args: str,
    database_url: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m tickbase ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "tickbase", *args],
        env=env or tickbase_env(database_url),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Processes:
    """Start tickbase processes; kill whatever is left at the end of the test."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def start(
        self, *args: str, env: dict[str, str], cwd: Path = REPO, **kwargs: Any
    ) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "tickbase", *args],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            **kwargs,
        )
        self.started.append(process)
        return process

    def cleanup(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            if process.stdout:
                process.stdout.close()


def start_up(
    processes: Processes, env: dict[str, str], *args: str, cwd: Path = REPO
) -> tuple[subprocess.Popen[str], list[str]]:
    """Start ``tickbase up ARGS``; return it and the lines it printed until it is ready
    (all it printed, should it exit first)."""
    up = processes.start("up", *args, env=env, cwd=cwd)
    assert up.stdout is not None
    lines: list[str] = []
    for line in up.stdout:
        lines.append(line)
        if "press Ctrl-C" in line:
            break
    return up, lines


@pytest.fixture
def processes() -> Iterator[Processes]:
    procs = Processes()
    yield procs
    procs.cleanup()


def bench_databases(server_url: str, bench: str) -> set[str]:
    """The databases a ``tickbase bench BENCH`` run left on the server."""
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s",
            (f"bench_tickbase_{bench}_%",),
        ).fetchall()
    return {row[0] for row in rows}
