"""The built-in reader that keeps each series' indicators current on every closed bar.

Why a journal and not the snapshot: a snapshot holds each series' newest state, and a
reader may skip snapshots (a replay at full speed closes hundreds of bars a cycle);
indicators must see every closed bar, in order, or they drift. :class:`LiveIndicators`
reads :meth:`KlineState.closed_since` from its own position, feeds each bar to the
series' :class:`~tickbase.marketdata.indicators.IndicatorSet` (the same O(1) state the
stored series use, so the values equal TA-Lib), and keeps the values of each series'
newest closed bars. A reader so far behind that the journal let bars go counts them in
``missed`` and starts that series again (its values warm up anew, never wrong).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Any, Final

from tickbase.marketdata.indicators import IndicatorSet, IndicatorValues
from tickbase.marketdata.realtime.kline import LiveKline, ms_to_datetime
from tickbase.marketdata.realtime.series import KlineState

__all__ = ["VALUES_KEPT", "LiveIndicators"]

logger = logging.getLogger("tickbase.realtime")

VALUES_KEPT: Final = 16
"""Closed bars per series whose indicator values are kept (what a push looks up)."""


class LiveIndicators:
    """EMA21, EMA55, RSI14, MACD(12,26,9), Bollinger(20,2), ATR14 of every series, on
    each closed bar (register it with ``pipeline.register``; the pipeline does).

    Example::

        values = pipeline.indicators.at("ES", "1m", open_time_ms)   # IndicatorValues
    """

    def __init__(self, state: KlineState) -> None:
        self.state = state
        self.position = 0
        self.missed = 0
        self.bars = 0
        self._sets: dict[tuple[str, str], IndicatorSet] = {}
        self._values: dict[tuple[str, str], OrderedDict[int, IndicatorValues]] = {}

    def __call__(self, snapshot: Any) -> None:
        self.position, bars, missed = self.state.closed_since(self.position)
        if missed:
            self.missed += missed
            logger.warning(
                "real-time indicators fell %d closed bar(s) behind the journal: their "
                "series start again",
                missed,
            )
            self._sets.clear()
        for bar in bars:
            self._feed(bar)

    def latest(self, symbol: str, interval: str) -> IndicatorValues | None:
        """The values after the series' newest closed bar."""
        kept = self._values.get((symbol, interval))
        return next(reversed(kept.values())) if kept else None

    def at(self, symbol: str, interval: str, open_time: int) -> IndicatorValues | None:
        """The values after the closed bar opened at ``open_time`` (ms), if still kept."""
        kept = self._values.get((symbol, interval))
        return kept.get(open_time) if kept else None

    def _feed(self, bar: LiveKline) -> None:
        key = (bar.symbol, bar.interval)
        calculators = self._sets.get(key)
        if calculators is None:
            calculators = self._sets[key] = IndicatorSet()
        values = calculators.update(
            ms_to_datetime(bar.open_time), bar.open, bar.high, bar.low, bar.close, bar.volume
        )
        kept = self._values.setdefault(key, OrderedDict())
        kept[bar.open_time] = values
        while len(kept) > VALUES_KEPT:
            kept.popitem(last=False)
        self.bars += 1
