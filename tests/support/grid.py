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
    when = datetime.now(UTC) if now is None else now
    last = (when - EPOCH) // timedelta(seconds=step) - 1  # the last slot closed by now
    return _slots(sample, step, range(last - max(limit, 0) + 1, last + 1))


def grid_klines_between(
    sample: str,
    interval: str,
    start_ms: int,
    end_ms: int | None,
    limit: int,
    now: datetime | None = None,
) -> list[Kline]:
    """As :func:`grid_klines`, the closed slots whose open time (ms) lies in
    ``[start_ms, end_ms]`` (Binance's ``startTime``/``endTime``), the first ``limit``."""
    try:
        step = interval_seconds(interval)
    except ValueError:
        raise SourceUnavailable(f"grid: interval {interval} has no fixed length") from None
    when = datetime.now(UTC) if now is None else now
    last = (when - EPOCH) // timedelta(seconds=step) - 1
    if end_ms is not None:
        last = min(last, end_ms // (step * 1000))
    first = -(-start_ms // (step * 1000))  # the first slot opening at or after start_ms
    return _slots(sample, step, range(first, min(last + 1, first + max(limit, 0))))


def _slots(sample: str, step: int, slots: range) -> list[Kline]:
    rows = _sample(sample)
    width = timedelta(seconds=step)
    klines: list[Kline] = []
    for slot in slots:
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
