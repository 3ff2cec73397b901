"""The K-line aggregation a shard process runs (``ProcessShard(name, KLINE_SHARD)``).

Each message fed to the shard is a :class:`~tickbase.marketdata.realtime.trades.TradeBatch`
or :data:`FINISH` (the end of a finite stream: every held bar becomes final).
After each, the aggregator's changes go into the shard's change log keyed
``(symbol, interval, open time ms)``: bars still forming as they are, final
bars settled (forgotten once the loop has them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tickbase.marketdata.realtime.aggregator import Aggregator
from tickbase.marketdata.realtime.changes import ChangeLog
from tickbase.marketdata.realtime.trades import TradeBatch

KLINE_SHARD = "tickbase.marketdata.realtime.kline_shard:make_kline_aggregation"
"""The ``target`` of a :class:`~tickbase.marketdata.realtime.shard.ProcessShard` that
aggregates K-lines (1m, 5m, 1h; 2 s lateness)."""

FINISH = "finish"
"""Feed this (``shard.feed(FINISH)``) at the end of a replay."""


def make_kline_aggregation() -> Any:
    """The child's aggregation: an :class:`Aggregator` folded into its change log."""
    aggregator = Aggregator()

    def aggregate(message: Sequence[Any] | str, log: ChangeLog) -> None:
        if isinstance(message, TradeBatch):
            aggregator.add_batch(message)
        elif message == FINISH:
            aggregator.finish()
        else:
            raise TypeError(f"a K-line shard takes trade batches or FINISH, not {message!r}")
        changes = aggregator.changes()
        for bar in changes.updated:
            log.set(bar.key, bar)
        for bar in changes.finalized:
            log.set(bar.key, bar, settled=True)

    return aggregate


__all__ = ["FINISH", "KLINE_SHARD", "make_kline_aggregation"]
