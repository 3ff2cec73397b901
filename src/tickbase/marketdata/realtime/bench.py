"""The aggregation micro benchmark: trades/s of one worker's aggregation, beside the limits.

Why: issue 17 asks ≥ 2,000,000 trades/s per worker for one symbol, and no published figure
exists for the field's aggregators, so the benchmark prints the rates of a plain
single-process Python loop over the same trades beside ours (``tickbase bench realtime``
will call :func:`aggregation_rate`). It is a function, not a timed test: timings belong to
a quiet machine, not to CI.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources

from tickbase.marketdata.realtime.aggregator import Aggregator
from tickbase.marketdata.realtime.kline import DEFAULT_INTERVALS
from tickbase.marketdata.realtime.trade_file import read_replay_file
from tickbase.marketdata.realtime.trades import TradeBatch

__all__ = ["AggregationRate", "aggregation_rate", "plain_loop_rate", "sample_trades"]


def sample_trades(symbol: str = "ES") -> TradeBatch:
    """The bundled 500,000 ES trades (``sample/es-ticks.csv.gz``) as one batch."""
    resource = resources.files("tickbase.marketdata") / "sample" / "es-ticks.csv.gz"
    with resources.as_file(resource) as path:
        return read_replay_file(path, symbol=symbol)[symbol]


@dataclass(frozen=True, slots=True)
class AggregationRate:
    """Trades per second of each way of aggregating the same trades (best of the repeats)."""

    trades: int
    intervals: tuple[str, ...]
    vectorised: float
    """:meth:`Aggregator.add_batch`, in batches of ``batch_size`` trades, reports included."""
    per_trade: float
    """:meth:`Aggregator.add_trade` for every trade (the reference path)."""
    plain_loop: float
    """A bare Python loop building 1m OHLCV in a dict: the single-process limit."""
    batch_size: int

    def lines(self) -> list[str]:
        """The figures as printed."""
        return [
            f"aggregation of {self.trades:,} trades, intervals {','.join(self.intervals)}",
            f"  vectorised (batches of {self.batch_size:,}): {self.vectorised:,.0f} trades/s",
            f"  per-trade reference path:            {self.per_trade:,.0f} trades/s",
            f"  plain Python loop (1m OHLCV only):   {self.plain_loop:,.0f} trades/s",
        ]


def _best(run: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def _plain_loop(times: list[int], prices: list[float], qtys: list[float]) -> None:
    bars: dict[int, list[float]] = {}
    for t, p, q in zip(times, prices, qtys, strict=True):
        key = t - t % 60_000
        bar = bars.get(key)
        if bar is None:
            bars[key] = [p, p, p, p, q]
        else:
            if p > bar[1]:
                bar[1] = p
            elif p < bar[2]:
                bar[2] = p
            bar[3] = p
            bar[4] += q


def plain_loop_rate(batch: TradeBatch, repeats: int = 3) -> float:
    """Trades/s of the plain single-process Python loop (1m OHLCV in a dict) over
    ``batch``: the limit printed beside the pipeline's rates."""
    times, prices, qtys = batch.time_ms.tolist(), batch.price.tolist(), batch.qty.tolist()
    return len(batch) / _best(lambda: _plain_loop(times, prices, qtys), repeats)


def aggregation_rate(
    batch: TradeBatch | None = None,
    *,
    intervals: Sequence[str] = DEFAULT_INTERVALS,
    batch_size: int = 10_000,
    repeats: int = 3,
    out: Callable[[str], object] | None = print,
) -> AggregationRate:
    """Measure and print (through ``out``; ``None`` to stay quiet) the aggregation rates
    over ``batch`` (default: the 500,000 ES trades) for one symbol."""
    trades = batch if batch is not None else sample_trades()
    n = len(trades)
    slices = [trades.take(slice(i, i + batch_size)) for i in range(0, n, batch_size)]

    def vectorised() -> None:
        agg = Aggregator(intervals)
        for part in slices:
            agg.add_batch(part)
            agg.changes()
        agg.finish()
        agg.changes()

    def per_trade() -> None:
        agg = Aggregator(intervals)
        agg.add_batch_plain(trades)
        agg.finish()
        agg.changes()

    rate = AggregationRate(
        trades=n,
        intervals=tuple(intervals),
        vectorised=n / _best(vectorised, repeats),
        per_trade=n / _best(per_trade, repeats),
        plain_loop=plain_loop_rate(trades, repeats),
        batch_size=batch_size,
    )
    if out is not None:
        for line in rate.lines():
            out(line)
    return rate
