"""Pieces shared by the peer adapters and their worker entry points."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TextIO

INSTALL_HINT = 'pip install -e ".[bench]"'


class PeerUnavailableError(RuntimeError):
    """A peer queue library needed by ``tickbase bench queue --peers`` is not installed."""


def missing_peer(package: str, error: ImportError | None = None) -> PeerUnavailableError:
    """Build the error raised when ``package`` cannot be imported."""
    detail = f" ({error})" if error is not None else ""
    return PeerUnavailableError(
        f"the benchmark peer {package!r} is not installed{detail}; "
        f"install the benchmark extras with: {INSTALL_HINT}"
    )


def require(package: str) -> None:
    """Raise :class:`PeerUnavailableError` unless ``package`` can be imported."""
    try:
        __import__(package)
    except ImportError as error:
        raise missing_peer(package, error) from error


class LatencyRecorder:
    """Appends one latency figure (seconds) per line to a file, flushed line by line.

    The orchestrator reads the file while the worker runs, so every line must reach the
    file as soon as it is written: the file is line-buffered.
    """

    def __init__(self, path: str) -> None:
        self._file: TextIO = Path(path).open("a", encoding="utf-8", buffering=1)  # noqa: SIM115

    def record(self, now: float, payload: Any) -> None:
        """Write ``now - payload["t"]`` if the payload carries an enqueue stamp.

        ``now`` is taken by the caller as the handler's first statement.
        """
        if isinstance(payload, dict) and "t" in payload:
            self._file.write(f"{now - float(payload['t'])!r}\n")

    def close(self) -> None:
        """Close the file."""
        self._file.close()


def worker_argv(module: str, dsn: str, latency_file: str | None) -> list[str]:
    """Return the argv that runs ``python -m module worker`` for ``dsn``."""
    argv = [sys.executable, "-m", module, "worker", "--dsn", dsn]
    if latency_file is not None:
        argv += ["--latency-file", latency_file]
    return argv


WorkerRun = Callable[[str, str | None], Coroutine[Any, Any, None]]


def worker_main(
    module: str,
    run: WorkerRun,
    argv: list[str] | None = None,
    runner: Callable[[Coroutine[Any, Any, None]], None] | None = None,
) -> int:
    """Parse ``worker --dsn DSN [--latency-file F]`` and run ``run(dsn, latency_file)``.

    ``runner`` replaces :func:`asyncio.run`, for peers whose own CLI uses another loop.
    """
    parser = argparse.ArgumentParser(prog=f"python -m {module}")
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="run a benchmark worker until terminated")
    worker.add_argument("--dsn", required=True, help="database to work on")
    worker.add_argument(
        "--latency-file", default=None, help="append enqueue-to-start latencies (s) here"
    )
    args = parser.parse_args(argv)
    coro = run(args.dsn, args.latency_file)
    if runner is None:
        asyncio.run(coro)
    else:
        runner(coro)
    return 0


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    """Split ``items`` into consecutive lists of at most ``size`` items."""
    if size < 1:
        raise ValueError("batch size must be at least 1")
    return [items[i : i + size] for i in range(0, len(items), size)]
