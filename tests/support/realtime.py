"""Aggregations for real shard processes in tests (imported by name in the child)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tickbase.marketdata.realtime.changes import ChangeLog


def make_counter() -> Any:
    """Count trades and sum quantity per symbol: trades are ``(symbol, price, qty)``."""
    counts: dict[str, tuple[int, float]] = {}

    def aggregate(trades: Sequence[Any], log: ChangeLog) -> None:
        for symbol, _price, qty in trades:
            n, volume = counts.get(symbol, (0, 0.0))
            counts[symbol] = (n + 1, volume + qty)
            log.set(symbol, counts[symbol])

    return aggregate
