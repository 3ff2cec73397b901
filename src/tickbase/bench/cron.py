"""``tickbase bench cron``: how late, and at what CPU cost, one scheduler fires N schedules.

Workload
    In a fresh database (created on the resolved server, migrated, dropped afterwards),
    N schedules ``bench-cron-0000``... run ``tickbase.noop`` on the cron expression
    ``* * * * * *`` (every second). Their ``max_instances`` is so large that no fire is
    skipped although no worker runs the tasks: every fire stays a pending task row.
    ONE ``python -m tickbase scheduler`` subprocess (``DATABASE_URL`` in its environment,
    never on its command line) fires them.

Measured window
    The scheduler's start-up (imports, migrations check, lease) delays the first fires,
    which are then caught up late; those are not what the figures are about. The window
    therefore starts :data:`WARMUP_S` seconds after the first bench fire is seen, rounded
    up to a whole second of the database clock, and lasts ``seconds``. It holds
    ``ceil(seconds)`` fire instants, hence ``N * ceil(seconds)`` expected fires.

Figures
    * lag: ``created_at - fire_at`` of each fire row of the window (the ticker stamps
      ``created_at`` with ``clock_timestamp()`` when it writes the row), p50 / p99 by
      ``percentile_cont`` and max, in milliseconds;
    * ``fires``, ``expected_fires``, ``missing_fires`` (expected minus distinct),
      ``duplicate_fires`` (rows minus distinct (schedule, fire_at); must be 0);
    * ``skipped_events`` / ``missed_events``: fires of the window recorded as not run
      (should be 0);
    * ``scheduler_cpu_percent``: user + system CPU seconds of the scheduler process over
      the window (psutil), divided by the window's wall time; ``cpu_ms_per_fire``: the
      same CPU time per fire of the window.

The issue's target is p99 lag <= 100 ms; like every benchmark here, this one prints
figures and never fails on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg.rows import dict_row
from rich.console import Console
from rich.table import Table

from tickbase.bench.harness import (
    _PACKAGE_ROOT,
    BenchError,
    _checkpoint,
    _deadline,
    _fresh_database,
    _stop,
    _tail,
)
from tickbase.bench.render import results_json
from tickbase.db.migrate import migrate
from tickbase.db.pool import connect, create_pool, resolve_database_url
from tickbase.db.sqlfile import load_queries
from tickbase.scheduler.models import ScheduleSpec
from tickbase.scheduler.store import ScheduleStore
from tickbase.settings import load_settings

Q = load_queries("tickbase.bench", "cron_queries.sql")

SUBJECT = "tickbase"
SCHEDULE_PREFIX = "bench-cron-"
TASK_TYPE = "tickbase.noop"
EVERY_SECOND = "* * * * * *"  # six fields: the first one is seconds
# No worker runs the fires, so each schedule's outstanding count grows by one a second;
# this bound is never reached, so max_instances never skips a fire.
MAX_INSTANCES = 1_000_000
# Schedules are created over this many connections at once: a few round trips in
# flight hide the latency without contending for the two-core machines this runs on.
CREATE_CONCURRENCY = 4
# Seconds after the first bench fire before the window opens: the catch-up of the
# fires that fell during the scheduler's start-up is over by then.
WARMUP_S = 2.0
SCHEDULER_STARTUP_TIMEOUT_S = 60.0
# After the window closes, how long the scheduler may take to write the window's last
# fires. Fires still unwritten then are reported as missing.
SETTLE_TIMEOUT_S = 30.0
# Polling periods: short while waiting for the first fire (it starts the window), long
# afterwards so the benchmark's own queries do not compete with the scheduler.
STARTUP_POLL_S = 0.05
SETTLE_POLL_S = 0.25
# Liveness checks of the scheduler during the window: no query, just its exit status.
ALIVE_CHECK_S = 0.5
TARGET_P99_MS = 100.0

FIGURES: tuple[str, ...] = (
    "schedules",
    "seconds",
    "fires",
    "expected_fires",
    "missing_fires",
    "duplicate_fires",
    "lag_p50_ms",
    "lag_p99_ms",
    "lag_max_ms",
    "scheduler_cpu_percent",
    "cpu_ms_per_fire",
    "skipped_events",
    "missed_events",
)

LABELS: dict[str, str] = {
    "schedules": "schedules (every second)",
    "seconds": "measured window (s)",
    "fires": "fires in window",
    "expected_fires": "expected fires",
    "missing_fires": "missing fires",
    "duplicate_fires": "duplicate fires",
    "lag_p50_ms": "fire lag p50 (ms)",
    "lag_p99_ms": f"fire lag p99 (ms, target <= {TARGET_P99_MS:.0f})",
    "lag_max_ms": "fire lag max (ms)",
    "scheduler_cpu_percent": "scheduler CPU (% of one core)",
    "cpu_ms_per_fire": "scheduler CPU per fire (ms)",
    "skipped_events": "skipped events",
    "missed_events": "missed events",
}


@dataclass(frozen=True)
class _Window:
    """The measured fire instants, on the database clock: ``[start, end)``."""

    start: datetime
    end: datetime
    instants: int

    @property
    def params(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end}


async def run_cron_command(
    *, database_url: str | None, schedules: int, seconds: float, as_json: bool
) -> dict[str, float]:
    """Run the cron benchmark and print it (a Rich table, or one JSON line).

    Returns the figures of :data:`FIGURES` (counts as ints, times as floats).
    """
    if schedules < 1:
        raise ValueError(f"schedules must be >= 1, got {schedules}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    settings = load_settings(database_url=database_url)
    server_dsn, _ = await asyncio.to_thread(resolve_database_url, settings, start=False)

    def progress(line: str) -> None:
        if not as_json:
            print(line, file=sys.stderr, flush=True)

    figures = await run_cron_bench(server_dsn, schedules, seconds, progress=progress)
    if as_json:
        print(results_json({SUBJECT: figures}), flush=True)
    else:
        Console().print(results_table(figures))
    return figures


async def run_cron_bench(
    server_dsn: str,
    schedules: int,
    seconds: float,
    progress: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Measure one scheduler firing ``schedules`` every-second schedules for ``seconds``.

    ``server_dsn`` must let its role run ``CREATE DATABASE``.
    """
    report = progress if progress is not None else _ignore
    with tempfile.TemporaryDirectory(prefix="tickbase-bench-cron-") as tmp:
        log_path = Path(tmp) / "scheduler.log"
        async with (
            await psycopg.AsyncConnection.connect(server_dsn, autocommit=True) as admin,
            _fresh_database(admin, server_dsn, SUBJECT, "cron") as dsn,
        ):
            conn = await connect(dsn)
            try:
                await migrate(conn)
            finally:
                await conn.close()
            report(f"creating {schedules:,} schedules ({EVERY_SECOND!r}, {TASK_TYPE}) ...")
            ids = await _create_schedules(dsn, schedules)
            await _checkpoint(admin)
            report("starting the scheduler ...")
            async with (
                await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn,
                _scheduler(dsn, log_path) as scheduler,
            ):
                return await _measure(conn, scheduler, log_path, ids, schedules, seconds, report)


async def _create_schedules(dsn: str, count: int) -> list[int]:
    """Create the bench schedules through the store (its validation, its statement)."""
    specs = [
        ScheduleSpec.build(
            f"{SCHEDULE_PREFIX}{index:04d}",
            TASK_TYPE,
            cron=EVERY_SECOND,
            max_instances=MAX_INSTANCES,
            description="tickbase bench cron",
        )
        for index in range(count)
    ]
    gate = asyncio.Semaphore(CREATE_CONCURRENCY)
    async with create_pool(dsn, min_size=1, max_size=CREATE_CONCURRENCY, name="bench-cron") as pool:
        store = ScheduleStore(pool)

        async def create(spec: ScheduleSpec) -> int:
            async with gate:
                return (await store.create(spec)).id

        return list(await asyncio.gather(*(create(spec) for spec in specs)))


async def _measure(
    conn: psycopg.AsyncConnection[Any],
    scheduler: asyncio.subprocess.Process,
    log_path: Path,
    ids: list[int],
    schedules: int,
    seconds: float,
    report: Callable[[str], None],
) -> dict[str, float]:
    ids_param = {"ids": ids}

    def check_alive() -> None:
        if scheduler.returncode is not None:
            raise BenchError(
                f"the scheduler exited with status {scheduler.returncode}:\n{_tail(log_path)}"
            )

    async with _deadline(SCHEDULER_STARTUP_TIMEOUT_S, "the scheduler's first fire"):
        while await _scalar(conn, Q["cron_first_fire"], ids_param) is None:
            check_alive()
            await asyncio.sleep(STARTUP_POLL_S)

    db_now, offset = await _clock(conn)
    start = _ceil_second(db_now + timedelta(seconds=WARMUP_S))
    window = _Window(
        start=start, end=start + timedelta(seconds=seconds), instants=math.ceil(seconds)
    )
    report(
        f"first fire seen; measuring the fires due from {window.start:%H:%M:%S} UTC "
        f"for {seconds:g} s ({window.instants} instants) ..."
    )

    # CPU is sampled on the local clock at the window's edges (the database clock
    # translated by the measured offset), so it covers the same span as the fires.
    process = psutil.Process(scheduler.pid)
    await _sleep_until(window.start, offset, check_alive)
    check_alive()
    cpu_start, wall_start = _cpu_seconds(process), time.monotonic()
    await _sleep_until(window.end, offset, check_alive)
    check_alive()
    cpu_used, wall = _cpu_seconds(process) - cpu_start, time.monotonic() - wall_start

    # Every fire of the window is written once each bench schedule's next fire is past
    # the window (the ticker advances a schedule in the transaction that enqueues it).
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(SETTLE_TIMEOUT_S):
            while True:
                next_due = await _scalar(conn, Q["cron_next_due"], ids_param)
                if next_due is not None and next_due >= window.end:
                    break
                check_alive()
                await asyncio.sleep(SETTLE_POLL_S)

    stats = await _row(conn, Q["cron_fire_stats"], {**ids_param, **window.params})
    events = await _row(conn, Q["cron_event_counts"], {**ids_param, **window.params})
    fires = int(stats["fires"])
    if fires == 0:
        raise BenchError(f"no fire due in the measured window was enqueued:\n{_tail(log_path)}")
    distinct = int(stats["distinct_fires"])
    expected = schedules * window.instants
    return {
        "schedules": schedules,
        "seconds": seconds,
        "fires": fires,
        "expected_fires": expected,
        "missing_fires": expected - distinct,
        "duplicate_fires": fires - distinct,
        "lag_p50_ms": float(stats["lag_p50_ms"]),
        "lag_p99_ms": float(stats["lag_p99_ms"]),
        "lag_max_ms": float(stats["lag_max_ms"]),
        "scheduler_cpu_percent": cpu_used / wall * 100.0,
        "cpu_ms_per_fire": cpu_used * 1000.0 / fires,
        "skipped_events": int(events["skipped"]),
        "missed_events": int(events["missed"]),
    }


@contextlib.asynccontextmanager
async def _scheduler(dsn: str, log_path: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """One ``tickbase scheduler`` subprocess, terminated (then killed) on the way out."""
    env = dict(os.environ)
    # The URL goes in the environment: a command line is visible to every local user.
    env["DATABASE_URL"] = dsn
    # Only the builtin task types and schedules: the user's app is not part of the bench.
    env.pop("TICKBASE_APP", None)
    # Import this very copy of tickbase, even when it is not the installed one.
    env["PYTHONPATH"] = os.pathsep.join(
        path for path in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if path
    )
    # The child gets its own descriptor, so ours can be closed right after spawning.
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tickbase",
            "scheduler",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
        )
    try:
        yield process
    finally:
        await _stop(process)


async def _clock(conn: psycopg.AsyncConnection[Any]) -> tuple[datetime, float]:
    """The database clock now, and its offset to the local clock in seconds."""
    before = time.time()
    db_now = await _scalar(conn, Q["cron_clock"], {})
    after = time.time()
    # The server read its clock somewhere in the round trip: assume the middle.
    return db_now, db_now.timestamp() - (before + after) / 2


async def _sleep_until(db_instant: datetime, offset: float, check: Callable[[], None]) -> None:
    """Sleep until the database clock reads ``db_instant`` (``offset``: db minus local).

    ``check`` runs every :data:`ALIVE_CHECK_S` meanwhile, so a dead scheduler is
    reported at once rather than at the end of the window.
    """
    while (delay := db_instant.timestamp() - offset - time.time()) > 0:
        await asyncio.sleep(min(delay, ALIVE_CHECK_S))
        check()


def _ceil_second(instant: datetime) -> datetime:
    truncated = instant.replace(microsecond=0)
    return truncated if truncated == instant else truncated + timedelta(seconds=1)


def _cpu_seconds(process: psutil.Process) -> float:
    """User + system CPU seconds of the process so far (its own threads, no children)."""
    times = process.cpu_times()
    return float(times.user + times.system)


async def _scalar(conn: psycopg.AsyncConnection[Any], query: Any, params: dict[str, Any]) -> Any:
    row = await (await conn.execute(query, params)).fetchone()
    return None if row is None else row[0]


async def _row(
    conn: psycopg.AsyncConnection[Any], query: Any, params: dict[str, Any]
) -> dict[str, Any]:
    cursor = conn.cursor(row_factory=dict_row)
    await cursor.execute(query, params)
    row = await cursor.fetchone()
    if row is None:
        raise BenchError("an aggregate query returned no row")
    return row


def results_table(figures: dict[str, float]) -> Table:
    """The figures, one per row."""
    table = Table(
        title="Cron benchmark (one scheduler process)",
        caption="lag = created_at - fire_at",
    )
    table.add_column("figure", style="bold", no_wrap=True)
    table.add_column(SUBJECT, justify="right")
    for figure in FIGURES:
        table.add_row(LABELS[figure], _format(figure, figures[figure]))
    return table


def _format(figure: str, value: float) -> str:
    if figure == "cpu_ms_per_fire":
        return f"{value:,.3f}"  # a fraction of a millisecond
    if figure.endswith(("_ms", "_percent")) or figure == "seconds":
        return f"{value:,.2f}"
    return f"{value:,.0f}"


def _ignore(_message: str) -> None:
    """Default progress sink: discard."""
