"""A shard's report as numpy columns: the bars and symbol counts changed since the last.

Why columns: a shard with 1,000 symbols changes about 1,500 forming bars and 1,000 symbol
counts every 100 ms cycle. As Python objects each one is built, pickled, unpickled and
folded into the loop's state one by one, tens of milliseconds a cycle; as one structured
array it crosses the pipe as a single buffer and the loop folds it in with a few
vectorised assignments (:class:`~tickbase.marketdata.realtime.series.KlineState`). Only
final bars (a few per series per interval) become :class:`LiveKline` objects, in the
loop, because the writer, the journal and the readers keep them one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from tickbase.marketdata.realtime.kline import LiveKline

__all__ = ["BAR_DTYPE", "NO_WATERMARK", "STATS_DTYPE", "BarChunk", "Rows", "bar_from_row"]

BAR_DTYPE: Final = np.dtype(
    [
        ("symbol", np.int32),  # index into BarChunk.symbols
        ("interval", np.int8),  # index into BarChunk.intervals
        ("final", np.bool_),
        ("open_time", np.int64),
        ("close_time", np.int64),
        ("open", np.float64),
        ("high", np.float64),
        ("low", np.float64),
        ("close", np.float64),
        ("volume", np.float64),
        ("quote_volume", np.float64),
        ("trade_count", np.int64),
        ("taker_buy_base_volume", np.float64),
        ("taker_buy_quote_volume", np.float64),
        ("first_trade_id", np.int64),
        ("last_trade_id", np.int64),
    ]
)
"""One bar per row: :class:`LiveKline`'s fields, symbol and interval as indexes."""

STATS_DTYPE: Final = np.dtype(
    [
        ("symbol", np.int32),
        ("watermark", np.int64),  # NO_WATERMARK before the first trade
        ("accepted", np.int64),
        ("dropped_late", np.int64),
        ("open_bars", np.int64),
        ("late", np.int64),
    ]
)
"""One symbol's counts per row (:class:`~tickbase.marketdata.realtime.aggregator.SymbolStats`)."""

NO_WATERMARK: Final = -(2**62)

Rows = npt.NDArray[Any]
"""A structured array of :data:`BAR_DTYPE` or :data:`STATS_DTYPE` rows."""


@dataclass(frozen=True, slots=True)
class BarChunk:
    """One report of a shard: ``bars`` (final ones first, then forming; each group by
    symbol name, interval and open time) and ``stats`` of the symbols it touched.

    ``symbols`` and ``intervals`` name the indexes the rows hold."""

    symbols: tuple[str, ...]
    intervals: tuple[str, ...]
    bars: Rows
    stats: Rows

    def __len__(self) -> int:
        return len(self.bars) + len(self.stats)

    def klines(self, rows: Rows | None = None) -> list[LiveKline]:
        """``rows`` (default: every bar) as :class:`LiveKline` objects, in order."""
        found = self.bars if rows is None else rows
        return [bar_from_row(row, self.symbols, self.intervals) for row in found.tolist()]


def bar_from_row(row: Sequence[Any], symbols: Sequence[str], intervals: Sequence[str]) -> LiveKline:
    """A :data:`BAR_DTYPE` row (as ``tolist()`` gives it) as a :class:`LiveKline`."""
    symbol, interval, final, *fields = row
    return LiveKline._make((symbols[symbol], intervals[interval], *fields, final))
