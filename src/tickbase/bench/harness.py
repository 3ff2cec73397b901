"""Adapter protocol and orchestrator of the queue benchmark.

Every adapter runs the same four workloads, each in a fresh database created on the
server given to :func:`run_queue_bench` and dropped afterwards:

1. single enqueue: :data:`SINGLE_TASKS` tasks, one enqueue call each, awaited in turn
   -> ``enqueue_single_per_s``.
2. batch enqueue: :data:`BATCH_TASKS` tasks in batches of :data:`BATCH_SIZE`
   -> ``enqueue_batch_per_s``.
3. drain: :data:`BATCH_TASKS` no-op tasks, enqueued beforehand by batch (not timed), drained
   by one worker subprocess. The clock starts just before the subprocess is spawned and
   stops when the adapter's ``unfinished`` count query, polled every
   :data:`POLL_INTERVAL_S`, returns 0 -> ``drain_per_s``.
4. latency: one worker subprocess is started, shown to be ready by running one warm-up task
   (whose figure is discarded) and then left idle for :data:`WORKER_SETTLE_S`; then
   :data:`LATENCY_TASKS` tasks are enqueued one at a time, :data:`LATENCY_INTERVAL_S` apart.
   Each payload carries ``{"t": time.time()}`` stamped just before its enqueue call; the
   handler appends ``time.time() - t`` (seconds, one per line) to the latency file given to
   the worker -> ``latency_p50_ms``, ``latency_p95_ms``, ``latency_p99_ms``.

Before each workload, after the schema install, the server is checkpointed (when the role
may), so background checkpoint writes do not land in the timed part.

Percentiles use the nearest-rank method (:func:`percentile`): with 200 samples, p50, p95
and p99 are the 100th, 190th and 198th smallest values, all of them measured values.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import secrets
import tempfile
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

SINGLE_TASKS = 2_000
BATCH_TASKS = 20_000
BATCH_SIZE = 1_000
LATENCY_TASKS = 200
LATENCY_INTERVAL_S = 0.020
POLL_INTERVAL_S = 0.005
# Idle time after the warm-up task, so start-up work (imports, schema checks, first
# LISTEN, pool fill) is over and the worker waits the way a long-running one does.
WORKER_SETTLE_S = 1.5
WORKER_STARTUP_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 600.0
LATENCY_TIMEOUT_S = 60.0
# SIGTERM first so workers can close their connections; SIGKILL after this grace period.
TERMINATE_GRACE_S = 3.0

FIGURES: tuple[str, ...] = (
    "enqueue_single_per_s",
    "enqueue_batch_per_s",
    "drain_per_s",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
)

# The directory that holds the ``tickbase`` package, so worker subprocesses started with
# ``python -m tickbase...`` import this very copy even when it is not installed.
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]


class BenchError(RuntimeError):
    """A workload could not be measured (worker died, timeout, wrong task count)."""


class QueueAdapter(Protocol):
    """What the orchestrator needs from one queue implementation.

    Adapters open and close their own client connections inside each call; the
    orchestrator passes only the DSN of the fresh database of the current workload.
    """

    name: str
    """Short lowercase name, e.g. ``"tickbase"``, ``"pgqueuer"``, ``"procrastinate"``."""

    async def install(self, dsn: str) -> None:
        """Create the queue's schema in the (empty) database at ``dsn``."""
        ...

    async def enqueue_single(self, dsn: str, payloads: AsyncIterable[dict[str, Any]]) -> None:
        """Enqueue each payload with its own enqueue call, awaiting each call in turn.

        ``payloads`` is asynchronous because the latency workload paces it and stamps
        ``{"t": time.time()}`` into each payload only when the adapter asks for the next
        one; an adapter should therefore open its connection before iterating and call its
        enqueue right after receiving each payload.
        """
        ...

    async def enqueue_batch(
        self, dsn: str, payloads: list[dict[str, Any]], batch_size: int
    ) -> None:
        """Enqueue ``payloads`` with one batch enqueue call per ``batch_size`` payloads."""
        ...

    def worker_argv(self, dsn: str, latency_file: str | None) -> list[str]:
        """Return the argv of a worker process that runs this queue's no-op tasks.

        With ``latency_file``, the handler must, first thing, append
        ``time.time() - payload["t"]`` as one line to that file and flush it, so the
        orchestrator can read the lines while the worker runs.
        """
        ...

    async def unfinished(self, conn: psycopg.AsyncConnection[Any]) -> int:
        """Count the tasks not finished yet (queued or running), by SQL on ``conn``."""
        ...


@dataclass
class _Context:
    """Per-run state shared by the workloads."""

    workdir: Path
    env: dict[str, str]


@dataclass
class _Worker:
    """A running worker subprocess and when it was spawned."""

    process: asyncio.subprocess.Process
    started: float
    stderr_path: Path

    def check_alive(self) -> None:
        """Raise :class:`BenchError` with the worker's stderr tail if it has exited."""
        if self.process.returncode is not None:
            raise BenchError(
                f"worker exited with status {self.process.returncode}:\n{_tail(self.stderr_path)}"
            )


def percentile(values: Sequence[float], pct: float) -> float:
    """Return the nearest-rank ``pct`` percentile of ``values`` (one of the values)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def database_dsn(server_dsn: str, dbname: str) -> str:
    """Return ``server_dsn`` with its database name replaced by ``dbname``."""
    params = conninfo_to_dict(server_dsn)
    params["dbname"] = dbname
    return make_conninfo("", **params)


async def run_queue_bench(
    server_dsn: str,
    adapters: Sequence[QueueAdapter],
    progress: Callable[[str], None] | None = None,
) -> dict[str, dict[str, float]]:
    """Run the four workloads for each adapter, each workload in a fresh database.

    ``server_dsn`` must let its role run ``CREATE DATABASE``; it is used as an admin
    connection and as the template of the per-workload DSNs. ``progress`` receives
    one human-readable line before and after each workload. Returns
    ``{adapter.name: {figure: value}}`` with the figures of :data:`FIGURES`, in the order
    of ``adapters``.
    """
    report = progress if progress is not None else _ignore
    names = [adapter.name for adapter in adapters]
    if len(set(names)) != len(names):
        raise ValueError(f"adapter names must be unique, got {names}")

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p
    )

    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="tickbase-bench-") as tmp:
        ctx = _Context(workdir=Path(tmp), env=env)
        async with await psycopg.AsyncConnection.connect(server_dsn, autocommit=True) as admin:
            for adapter in adapters:
                figures: dict[str, float] = {}
                for workload, run in _WORKLOADS:
                    report(f"{adapter.name}: {workload} ...")
                    try:
                        async with _fresh_database(
                            admin, server_dsn, adapter.name, workload
                        ) as dsn:
                            await adapter.install(dsn)
                            await _checkpoint(admin)
                            measured = await run(adapter, dsn, ctx)
                    except BenchError as error:
                        raise BenchError(f"{adapter.name}, {workload} workload: {error}") from error
                    figures.update(measured)
                    report(f"{adapter.name}: {workload}: {_describe(measured)}")
                results[adapter.name] = {key: figures[key] for key in FIGURES}
    return results


async def _bench_single(adapter: QueueAdapter, dsn: str, ctx: _Context) -> dict[str, float]:
    started = time.perf_counter()
    await adapter.enqueue_single(dsn, _numbered(SINGLE_TASKS))
    elapsed = time.perf_counter() - started
    await _expect_unfinished(adapter, dsn, SINGLE_TASKS, "single enqueue")
    return {"enqueue_single_per_s": SINGLE_TASKS / elapsed}


async def _bench_batch(adapter: QueueAdapter, dsn: str, ctx: _Context) -> dict[str, float]:
    payloads = [{"i": i} for i in range(BATCH_TASKS)]
    started = time.perf_counter()
    await adapter.enqueue_batch(dsn, payloads, BATCH_SIZE)
    elapsed = time.perf_counter() - started
    await _expect_unfinished(adapter, dsn, BATCH_TASKS, "batch enqueue")
    return {"enqueue_batch_per_s": BATCH_TASKS / elapsed}


async def _bench_drain(adapter: QueueAdapter, dsn: str, ctx: _Context) -> dict[str, float]:
    await adapter.enqueue_batch(dsn, [{"i": i} for i in range(BATCH_TASKS)], BATCH_SIZE)
    await _expect_unfinished(adapter, dsn, BATCH_TASKS, "drain set-up")
    async with (
        await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn,
        _worker(adapter.worker_argv(dsn, None), ctx, "drain") as worker,
    ):
        async with _deadline(DRAIN_TIMEOUT_S, "draining the queue"):
            while await adapter.unfinished(conn) > 0:
                worker.check_alive()
                await asyncio.sleep(POLL_INTERVAL_S)
        elapsed = time.perf_counter() - worker.started
    return {"drain_per_s": BATCH_TASKS / elapsed}


async def _bench_latency(adapter: QueueAdapter, dsn: str, ctx: _Context) -> dict[str, float]:
    latency_file = ctx.workdir / f"latency-{secrets.token_hex(4)}.txt"
    _touch(latency_file)
    async with _worker(adapter.worker_argv(dsn, str(latency_file)), ctx, "latency") as worker:
        # Readiness marker: one task travels the whole path (worker connected, listening,
        # handler imported) before anything is measured. Its figure is dropped below.
        await adapter.enqueue_single(dsn, _stamped(1, 0.0))
        async with _deadline(WORKER_STARTUP_TIMEOUT_S, "the warm-up task"):
            await _wait_for_lines(latency_file, 1, worker)
        await asyncio.sleep(WORKER_SETTLE_S)
        await adapter.enqueue_single(dsn, _stamped(LATENCY_TASKS, LATENCY_INTERVAL_S))
        async with _deadline(LATENCY_TIMEOUT_S, f"running all {LATENCY_TASKS} latency tasks"):
            lines = await _wait_for_lines(latency_file, 1 + LATENCY_TASKS, worker)
    samples_ms = [value * 1000.0 for value in lines[1:]]
    return {
        "latency_p50_ms": percentile(samples_ms, 50),
        "latency_p95_ms": percentile(samples_ms, 95),
        "latency_p99_ms": percentile(samples_ms, 99),
    }


_Workload = Callable[[QueueAdapter, str, _Context], Awaitable[dict[str, float]]]

_WORKLOADS: tuple[tuple[str, _Workload], ...] = (
    ("single", _bench_single),
    ("batch", _bench_batch),
    ("drain", _bench_drain),
    ("latency", _bench_latency),
)


async def _numbered(count: int) -> AsyncIterator[dict[str, Any]]:
    for i in range(count):
        yield {"i": i}


async def _stamped(count: int, interval: float) -> AsyncIterator[dict[str, Any]]:
    # A fixed schedule rather than sleep-after-each, so slow enqueues do not stretch it.
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(count):
        delay = start + i * interval - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        yield {"t": time.time()}


async def _checkpoint(admin: psycopg.AsyncConnection[Any]) -> None:
    """Flush dirty buffers now, so no checkpoint's writes land inside a timed workload."""
    # CHECKPOINT needs superuser or pg_checkpoint; without them, run anyway, just noisier.
    with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
        await admin.execute("CHECKPOINT")


async def _expect_unfinished(adapter: QueueAdapter, dsn: str, expected: int, what: str) -> None:
    # Catches adapters that silently drop or duplicate tasks, which would fake a figure.
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        found = await adapter.unfinished(conn)
    if found != expected:
        raise BenchError(
            f"{adapter.name}: after {what}, {found} unfinished tasks instead of {expected}"
        )


@contextlib.asynccontextmanager
async def _fresh_database(
    admin: psycopg.AsyncConnection[Any], server_dsn: str, adapter: str, workload: str
) -> AsyncIterator[str]:
    slug = re.sub(r"[^a-z0-9_]", "_", adapter.lower())[:24]
    name = f"bench_{slug}_{workload}_{secrets.token_hex(4)}"
    await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield database_dsn(server_dsn, name)
    finally:
        await admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextlib.asynccontextmanager
async def migrated_database(server_dsn: str, label: str) -> AsyncIterator[str]:
    """A fresh database with tickbase's schema, dropped on exit; yields its DSN."""
    from tickbase.db.migrate import migrate

    async with (
        await psycopg.AsyncConnection.connect(server_dsn, autocommit=True) as admin,
        _fresh_database(admin, server_dsn, "tickbase", label) as dsn,
    ):
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        yield dsn


def print_figures(title: str, figures: dict[str, float], digits: int = 2) -> None:
    """One Rich table of ``figure | value`` rows."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in figures.items():
        table.add_row(key, f"{value:,.{digits}f}")
    Console().print(table)


@contextlib.asynccontextmanager
async def _worker(argv: list[str], ctx: _Context, label: str) -> AsyncIterator[_Worker]:
    stderr_path = ctx.workdir / f"worker-{label}-{secrets.token_hex(4)}.log"
    # The child gets its own descriptor, so ours can be closed right after spawning.
    with _open_for_child(stderr_path) as stderr:
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
            env=ctx.env,
        )
    try:
        yield _Worker(process=process, started=started, stderr_path=stderr_path)
    finally:
        await _stop(process)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        await asyncio.wait_for(process.wait(), TERMINATE_GRACE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


async def _wait_for_lines(path: Path, count: int, worker: _Worker) -> list[float]:
    """Poll ``path`` until it holds ``count`` values; callers bound this with a timeout."""
    while True:
        values = _read_values(path)
        if len(values) >= count:
            return values
        worker.check_alive()
        await asyncio.sleep(POLL_INTERVAL_S)


@contextlib.asynccontextmanager
async def _deadline(seconds: float, what: str) -> AsyncIterator[None]:
    """Like :func:`asyncio.timeout`, but failing with a :class:`BenchError` naming ``what``."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError as error:
        raise BenchError(f"{what} did not happen within {seconds:.0f} s") from error


# The file helpers below do blocking I/O on small local files; each call takes
# microseconds, far below the 5 ms polling period, so they run on the event loop.


def _touch(path: Path) -> None:
    path.write_bytes(b"")


def _open_for_child(path: Path) -> contextlib.AbstractContextManager[Any]:
    return path.open("wb")


def _read_values(path: Path) -> list[float]:
    text = path.read_text(encoding="utf-8")
    # Only newline-terminated lines: the last one may still be half-written.
    complete = text[: text.rfind("\n") + 1]
    return [float(line) for line in complete.splitlines() if line.strip()]


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no worker output)"
    return "\n".join(text.splitlines()[-lines:]) or "(no worker output)"


def _describe(figures: dict[str, float]) -> str:
    return ", ".join(
        f"{key}={value:,.2f}" if key.endswith("_ms") else f"{key}={value:,.0f}"
        for key, value in figures.items()
    )


def _ignore(_message: str) -> None:
    """Default progress sink: discard."""
