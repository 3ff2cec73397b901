"""The record-sequence checks shared by the sources: what a garbage bar is, and time order.

:func:`check_klines` is the one definition of a sound kline for every kline source (the
replay source too); :func:`check_order` the one check that observation times neither
repeat nor change direction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from tickbase.errors import InvalidPayload
from tickbase.marketdata.collector import Kline
from tickbase.marketdata.sources.wire import stamp

__all__ = ["check_klines", "check_order"]


def check_klines(source: str, klines: Sequence[Kline], step: int | None) -> list[Kline]:
    """``klines`` as a list if every bar is sound; else :class:`InvalidPayload` for the first bad one.

    The one definition of a garbage bar for every kline source: a non-finite number,
    a price that is not positive, a negative volume (or count), a high below the low or
    below the open/close, a low above the open/close, an open time that does not come
    strictly after the previous one (out of order or duplicated), or, with ``step``
    seconds given, an open time not a whole number of steps after the previous one.
    A flat bar (open = high = low = close) and a zero volume are valid. The message reads
    ``"<source>: row <i>: <problem>"``; ``i`` is the row's index in the payload.
    """
    previous: datetime | None = None
    for index, kline in enumerate(klines):
        problem = _kline_problem(kline, previous, step)
        if problem is not None:
            raise InvalidPayload(f"{source}: row {index}: {problem}")
        previous = kline.open_time
    return list(klines)


def _kline_problem(kline: Kline, previous: datetime | None, step: int | None) -> str | None:
    numbers: dict[str, float | int | None] = {
        "open": kline.open,
        "high": kline.high,
        "low": kline.low,
        "close": kline.close,
        "volume": kline.volume,
        "quote volume": kline.quote_volume,
        "trade count": kline.trade_count,
        "taker buy base volume": kline.taker_buy_base_volume,
        "taker buy quote volume": kline.taker_buy_quote_volume,
    }
    for name, value in numbers.items():
        if value is None:
            continue
        if not math.isfinite(value):
            return f"{name} {value!r} is not a finite number"
        if name in ("open", "high", "low", "close"):
            if value <= 0:
                return f"{name} {value!r} is not positive"
        elif value < 0:
            return f"{name} {value!r} is negative"
    if kline.open_time.utcoffset() != timedelta(0):
        return f"open time {kline.open_time.isoformat()} is not in UTC"
    if kline.high < kline.low:
        return f"high {kline.high!r} is below low {kline.low!r}"
    if kline.high < max(kline.open, kline.close):
        return f"high {kline.high!r} is below max(open, close) {max(kline.open, kline.close)!r}"
    if kline.low > min(kline.open, kline.close):
        return f"low {kline.low!r} is above min(open, close) {min(kline.open, kline.close)!r}"
    if previous is not None:
        when, before = stamp(kline.open_time), stamp(previous)
        if kline.open_time == previous:
            return f"open time {when} duplicates the previous row's"
        if kline.open_time < previous:
            return f"open time {when} is before the previous row's {before} (out of order)"
        if step is not None and (kline.open_time - previous) % timedelta(seconds=step):
            gap = (kline.open_time - previous).total_seconds()
            return (
                f"open time {when} is {gap:g} s after the previous row's {before}, "
                f"not a multiple of the interval ({step} s)"
            )
    return None


def check_order(source: str, times: Sequence[datetime]) -> bool:
    """Refuse duplicated or unordered times; True when they run newest first."""
    newest_first: bool | None = None
    for index in range(1, len(times)):
        here, before = times[index], times[index - 1]
        if here == before:
            raise InvalidPayload(
                f"{source}: row {index}: time {stamp(here)} duplicates row {index - 1}'s"
            )
        down = here < before
        if newest_first is None:
            newest_first = down
        elif down != newest_first:
            order = "newest-first" if newest_first else "oldest-first"
            raise InvalidPayload(
                f"{source}: row {index}: time {stamp(here)} breaks the {order} order "
                f"(row {index - 1} is {stamp(before)})"
            )
    return newest_first is True
