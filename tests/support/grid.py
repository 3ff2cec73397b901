"""The fake exchange's bars: a bundled sample series stamped onto any interval's grid.

This is a test fake, not market data: the fake exchange serves these rows to the live
sources' parsers (Binance, CoinGecko) so their wire formats are exercised with real
prices. tickbase itself never does this; its offline data is
:mod:`tickbase.marketdata.replay` (real series at their own interval, under their own names).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Final

from tickbase.errors import SourceUnavailable
from tickbase.marketdata.bars import Bar, load_bars
from tickbase.marketdata.collector import Kline, interval_seconds

FAKE_SERIES: Final[Mapping[str, str]] = MappingProxyType(
    {"BTCUSDT": "btcusd-1M", "ETHUSDT": "eurusd-1h"}
)
"""The sample series the fake exchange serves for a symbol (others: ``spx-1d``)."""

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)


@functools.cache
def _sample(name: str) -> tuple[Bar, ...]:
    return tuple(load_bars(name))


def grid_klines(sample: str, interval: str, limit: int, now: datetime | None = None) -> list[Kline]:
    """The sample series ``sample`` re-stamped onto the ``interval`` grid.

    The bars are the last ``limit`` grid slots that have closed by ``now`` (default: the
    current time); slots open at whole multiples of the interval since the Unix epoch.
    The slot opening at ``t`` (epoch seconds) carries sample row ``(t // step) % len(rows)``,
    so one slot always holds the same prices. Raises :class:`SourceUnavailable` for an
    interval without a fixed length (``"1M"``).
    """
    try:
        step = interval_seconds(interval)
    except ValueError:
        raise SourceUnavailable(f"grid: interval {interval} has no fixed length") from None
    rows = _sample(sample)
    when = datetime.now(UTC) if now is None else now
    width = timedelta(seconds=step)
    last = (when - EPOCH) // width - 1  # the last slot whose close (start + step) <= now
    klines: list[Kline] = []
    for slot in range(last - max(limit, 0) + 1, last + 1):
        bar = rows[slot % len(rows)]
        opens = EPOCH + slot * width
        klines.append(
            Kline(
                open_time=opens,
                open=bar.open,
                high=bar.high,
                low=bar.low,
                close=bar.close,
                volume=bar.volume,
                close_time=opens + width - _MS,
            )
        )
    return klines
