"""The K-line aggregation a shard process runs (``ProcessShard(name, KLINE_SHARD)``).

Each message fed to the shard is a :class:`~tickbase.marketdata.realtime.trades.TradeBatch`,
a list of them (a live stream's many small batches sent as one message, so a pull
never waits behind hundreds), a :class:`Clock` (a live stream's wall clock: bars close on time, traded or not) or
:data:`FINISH` (the end of a finite stream: every held bar becomes final). After each,
nothing is reported: before each pull the aggregator's report since the last one goes
into the shard's change log as one :class:`~tickbase.marketdata.realtime.columns.BarChunk`
(columns: the bars that became final, the bars changed, the touched symbols' counts),
keyed ``("bars", n)`` and settled: forgotten once the loop has it; a pull the loop gave
up on is answered again with every chunk since, oldest first.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tickbase.marketdata.realtime.aggregator import DEFAULT_LATENESS_MS, Aggregator
from tickbase.marketdata.realtime.changes import ChangeLog
from tickbase.marketdata.realtime.kline import DEFAULT_INTERVALS
from tickbase.marketdata.realtime.trades import TradeBatch, TradeBatches

KLINE_SHARD = "tickbase.marketdata.realtime.kline_shard:make_kline_aggregation"
"""The ``target`` of a :class:`~tickbase.marketdata.realtime.shard.ProcessShard` that
aggregates K-lines (options: ``intervals``, default 1m, 5m, 1h; ``lateness_ms``, 2 s)."""

SMALL_BATCH = 32
"""Batches under this many trades take the per-trade path: numpy's fixed cost per call
makes the vectorised path about 4x slower for a live stream's 10-trade batches."""

FINISH = "finish"
"""Feed this (``shard.feed(FINISH)``) at the end of a replay."""

CHUNK = "bars"
"""The first part of a report's key in the change log, ``("bars", n)``."""


@dataclass(frozen=True, slots=True)
class Clock:
    """A live stream's wall clock (epoch ms), fed every period (see ``Aggregator.advance``)."""

    now_ms: int


def make_kline_aggregation(
    intervals: Sequence[str] = DEFAULT_INTERVALS, lateness_ms: int = DEFAULT_LATENESS_MS
) -> Any:
    """The child's aggregation: an :class:`Aggregator` folded into its change log."""
    aggregator = Aggregator(intervals, lateness_ms)

    def add(batch: TradeBatch) -> None:
        if len(batch) < SMALL_BATCH:
            aggregator.add_batch_plain(batch)
        else:
            aggregator.add_batch(batch)

    def aggregate(message: Sequence[Any] | str, log: ChangeLog) -> None:
        if isinstance(message, TradeBatch):
            add(message)
        elif isinstance(message, list):  # a live stream's flush: trades, then the clock
            for part in message:
                if isinstance(part, Clock):
                    aggregator.advance(part.now_ms)
                    continue
                for batch in part.parts() if isinstance(part, TradeBatches) else (part,):
                    add(batch)
        elif isinstance(message, Clock):
            aggregator.advance(message.now_ms)
        elif message == FINISH:
            aggregator.finish()
        else:
            raise TypeError(f"a K-line shard takes trade batches, Clock or FINISH, not {message!r}")

    reports = itertools.count(1)

    def report(log: ChangeLog) -> None:
        """Before each pull: what changed since the last one, built once, as columns."""
        chunk = aggregator.report()
        if len(chunk):
            log.set((CHUNK, next(reports)), chunk, settled=True)

    aggregate.report = report  # type: ignore[attr-defined]
    return aggregate


__all__ = ["CHUNK", "FINISH", "KLINE_SHARD", "SMALL_BATCH", "Clock", "make_kline_aggregation"]
