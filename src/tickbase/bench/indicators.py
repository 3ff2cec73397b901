"""Indicator throughput: incremental bar updates per second, with TA-Lib's batch for scale.

Runs :class:`~tickbase.marketdata.indicators.IndicatorSet.update` over every bundled sample
series (a fresh set per series, so warm-up is included, as in a real replay) and
:func:`~tickbase.marketdata.indicators.batch` over the same bars. Figures only; nothing is
asserted. No database is needed.
"""

from __future__ import annotations

import json
import time

from tickbase.bench.harness import print_figures
from tickbase.marketdata.bars import Bar, load_bars, sample_names
from tickbase.marketdata.indicators import IndicatorSet, batch

SUBJECT = "indicators"
ROUNDS = 3  # best of three: the figures are short runs, the first pays for cold caches


def run_indicators_bench() -> dict[str, float]:
    """Measure and return the figures (bars, incremental and batch bars per second)."""
    series: list[list[Bar]] = [load_bars(name) for name in sample_names()]
    total = sum(len(bars) for bars in series)
    incremental = min(_timed_incremental(series) for _ in range(ROUNDS))
    batched = min(_timed_batch(series) for _ in range(ROUNDS))
    return {
        "bars": float(total),
        "incremental_bars_per_s": total / incremental,
        "incremental_us_per_bar": incremental / total * 1e6,
        "talib_batch_bars_per_s": total / batched,
    }


def run_indicators_command(*, as_json: bool) -> dict[str, float]:
    """Run the indicator benchmark and print it (a Rich table, or one JSON line).

    Example: ``run_indicators_command(as_json=True)`` prints
    ``{"indicators": {"bars": 22582.0, "incremental_bars_per_s": ..., ...}}``.
    """
    figures = run_indicators_bench()
    if as_json:
        print(json.dumps({SUBJECT: figures}), flush=True)
    else:
        print_figures("Indicator benchmark (all sample series)", figures)
    return figures


def _timed_incremental(series: list[list[Bar]]) -> float:
    started = time.perf_counter()
    for bars in series:
        indicators = IndicatorSet()
        update = indicators.update
        for bar in bars:
            update(bar.open_time, bar.open, bar.high, bar.low, bar.close, bar.volume)
    return time.perf_counter() - started


def _timed_batch(series: list[list[Bar]]) -> float:
    started = time.perf_counter()
    for bars in series:
        batch(bars)
    return time.perf_counter() - started
