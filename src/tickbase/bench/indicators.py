"""``tickbase bench indicators``: incremental indicator speed, TA-Lib's batch beside it, and
the time from a closed bar to its stored indicators.

Bars
    :data:`BARS` (1,000,000) real bars: the bundled sample series
    (:func:`~tickbase.marketdata.bars.sample_names`) concatenated, in name order, and
    repeated until there are enough, the last copy cut short. Every bar is re-stamped onto
    a one-minute grid from :data:`STAMP_START`, so the million bars are ONE continuous
    series with increasing open times, fed to ONE
    :class:`~tickbase.marketdata.indicators.IndicatorSet` (not a fresh set per copy): its
    warm-up happens once, and where two series meet the prices jump, a gap the indicators
    simply absorb. Prices and volumes are the real ones. Building the bars is not timed.

Incremental (``incremental_bars_per_s``, ``incremental_us_per_bar``)
    One call of the public ``IndicatorSet.update(open_time, open, high, low, close, volume)``
    per bar, all six indicators each time, its :class:`IndicatorValues` row returned (and
    dropped). Best of :data:`ROUNDS` passes, each with a fresh set, on one core.

TA-Lib batch (``talib_batch_bars_per_s``, ``talib_batch_us_per_bar``)
    :func:`~tickbase.marketdata.indicators.batch_arrays` over the same bars' high, low and
    close as numpy arrays (built beforehand): TA-Lib's six functions over the whole
    columns, no Python object per bar. Best of :data:`ROUNDS`.

Closed bar to stored indicators (``closed_bar_to_stored_p50_ms``, ``..._p99_ms``)
    A fresh migrated database on the resolved server (the embedded one unless
    ``DATABASE_URL`` says otherwise), dropped afterwards, and a pool of that database. The
    first :data:`LATENCY_BARS_WARMUP` + :data:`LATENCY_BARS` (``--closed-bars``) bars of
    ``eurusd-1h`` are stored one at a time, as each bar closes, through
    ``IndicatorStates.store_and_advance(source, symbol, interval, [bar])``: the bar fed
    to the state the process holds and written with the new state in one statement,
    committed without waiting for the WAL flush, as collectors write. The warm-up bars
    (statements prepared, caches filled, indicators warmed up) are not counted, and the
    server is checkpointed after them (when the role may); each of the others gives one
    sample, from the call to its return, on :func:`time.perf_counter`. Nearest-rank
    percentiles (:func:`~tickbase.bench.harness.percentile`).

Targets (issue 8): incremental >= 300,000 bar updates per second, closed bar to stored
<= 1 ms. Like every benchmark here, this prints figures and never fails on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg_pool import AsyncConnectionPool

from tickbase.bench.harness import BenchError, migrated_database, percentile, print_figures
from tickbase.db.pool import AsyncConn, create_pool, resolve_database_url
from tickbase.marketdata.bars import load_bars, sample_names
from tickbase.marketdata.indicators import IndicatorSet, batch_arrays
from tickbase.marketdata.state import IndicatorStates
from tickbase.settings import load_settings

SUBJECT = "indicators"
BARS = 1_000_000
ROUNDS = 3  # best of three: the first pass pays for cold caches
# The bars' new open times: one minute apart from here (the indicators use open times
# only to check their order).
STAMP_START = datetime(2020, 1, 1, tzinfo=UTC)
LATENCY_SERIES = "eurusd-1h"
LATENCY_SOURCE, LATENCY_SYMBOL, LATENCY_INTERVAL = "bench", "EURUSD", "1h"
LATENCY_BARS_WARMUP = 100  # past every indicator's warm-up (55 bars)
LATENCY_BARS = 1_000

_FloatArray = npt.NDArray[np.float64]

FIGURES: tuple[str, ...] = (
    "bars",
    "incremental_bars_per_s",
    "incremental_us_per_bar",
    "talib_batch_bars_per_s",
    "talib_batch_us_per_bar",
    "closed_bars",
    "closed_bar_to_stored_p50_ms",
    "closed_bar_to_stored_p99_ms",
)


@dataclass(frozen=True, slots=True)
class Columns:
    """The benchmark's bars as parallel columns (Python lists: what a caller holds)."""

    open_time: list[datetime]
    open: list[float]
    high: list[float]
    low: list[float]
    close: list[float]
    volume: list[float]


def build_bars(count: int = BARS) -> Columns:
    """``count`` real bars: the sample series end to end, repeated, re-stamped to increase."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    series = [load_bars(name) for name in sample_names()]
    columns = Columns([], [], [], [], [], [])
    while len(columns.open) < count:
        for bars in series:
            for bar in bars[: count - len(columns.open)]:
                columns.open.append(bar.open)
                columns.high.append(bar.high)
                columns.low.append(bar.low)
                columns.close.append(bar.close)
                columns.volume.append(bar.volume)
    columns.open_time.extend(STAMP_START + timedelta(minutes=i) for i in range(count))
    return columns


def time_incremental(columns: Columns) -> float:
    """Seconds for one pass of ``IndicatorSet.update`` over every bar."""
    update = IndicatorSet().update
    rows = zip(
        columns.open_time,
        columns.open,
        columns.high,
        columns.low,
        columns.close,
        columns.volume,
        strict=True,
    )
    started = time.perf_counter()
    for open_time, open_, high, low, close, volume in rows:
        update(open_time, open_, high, low, close, volume)
    return time.perf_counter() - started


def time_batch(high: _FloatArray, low: _FloatArray, close: _FloatArray) -> float:
    """Seconds for one :func:`batch_arrays` over the whole columns."""
    started = time.perf_counter()
    batch_arrays(high, low, close)
    return time.perf_counter() - started


def run_speed_bench(count: int = BARS, rounds: int = ROUNDS) -> dict[str, float]:
    """The speed figures (no database): incremental and TA-Lib batch over ``count`` bars."""
    columns = build_bars(count)
    incremental = min(time_incremental(columns) for _ in range(rounds))
    high = np.array(columns.high, dtype=np.float64)
    low = np.array(columns.low, dtype=np.float64)
    close = np.array(columns.close, dtype=np.float64)
    batched = min(time_batch(high, low, close) for _ in range(rounds))
    return {
        "bars": float(count),
        "incremental_bars_per_s": count / incremental,
        "incremental_us_per_bar": incremental / count * 1e6,
        "talib_batch_bars_per_s": count / batched,
        "talib_batch_us_per_bar": batched / count * 1e6,
    }


async def run_latency_bench(
    server_dsn: str, bars: int = LATENCY_BARS, warmup: int = LATENCY_BARS_WARMUP
) -> dict[str, float]:
    """Closed bar -> stored indicators, in a fresh database on ``server_dsn``."""
    series = load_bars(LATENCY_SERIES)[: warmup + bars]
    if len(series) < warmup + bars:
        raise ValueError(f"{LATENCY_SERIES} holds {len(series)} bars, not {warmup + bars}")
    key = (LATENCY_SOURCE, LATENCY_SYMBOL, LATENCY_INTERVAL)
    total: list[float] = []
    async with (
        migrated_database(server_dsn, "indicators") as dsn,
        create_pool(dsn, min_size=1, max_size=2, name="bench-indicators") as pool,
    ):
        states = IndicatorStates(pool)
        for index, bar in enumerate(series):
            if index == warmup:
                await _checkpoint(pool)
            started = time.perf_counter()
            values = await states.store_and_advance(*key, [bar])
            done = time.perf_counter()
            if len(values) != 1 or values[0].open_time != bar.open_time:
                raise BenchError(f"bar {index} advanced {len(values)} rows, not 1")
            if index >= warmup:
                total.append((done - started) * 1000.0)
    return {
        "closed_bars": float(len(total)),
        "closed_bar_to_stored_p50_ms": percentile(total, 50),
        "closed_bar_to_stored_p99_ms": percentile(total, 99),
    }


async def run_indicators_command(
    *,
    database_url: str | None,
    as_json: bool,
    count: int = BARS,
    latency_bars: int = LATENCY_BARS,
) -> dict[str, float]:
    """Run the indicator benchmark and print it (a Rich table, or one JSON line).

    Example: ``await run_indicators_command(database_url=None, as_json=True)`` prints
    ``{"indicators": {"bars": 1000000.0, "incremental_bars_per_s": ..., ...}}``.
    """
    progress: Callable[[str], None] = _stderr if not as_json else _ignore
    progress(f"building {count:,} bars from the sample series ...")
    figures = run_speed_bench(count)
    progress(f"incremental: {figures['incremental_bars_per_s']:,.0f} bars/s")
    settings = load_settings(database_url=database_url)
    server_dsn, _ = await asyncio.to_thread(resolve_database_url, settings, start=False)
    progress(f"closed bar -> stored indicators: {latency_bars:,} bars ...")
    figures.update(await run_latency_bench(server_dsn, latency_bars))
    figures = {key: figures[key] for key in FIGURES}
    if as_json:
        print(json.dumps({SUBJECT: figures}), flush=True)
    else:
        print_figures(f"Indicator benchmark ({count:,} real bars)", figures)
    return figures


async def _checkpoint(pool: AsyncConnectionPool[AsyncConn]) -> None:
    """Flush dirty buffers before the timed bars, so no checkpoint's writes land among them."""
    # CHECKPOINT needs superuser or pg_checkpoint; without them, run anyway, just noisier.
    with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
        async with pool.connection() as conn:
            await conn.execute("CHECKPOINT")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _ignore(_line: str) -> None:
    """Progress sink of ``--json`` runs: stdout holds the JSON line only."""
