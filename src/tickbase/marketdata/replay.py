"""The replay source: real recorded series, offline, under names that say what they are.

When no live source answers, tickbase does not invent prices for the live symbols
(``BTCUSDT`` never gets replayed data). It replays real series from the bundled
samples (``marketdata/sample/``, provenance in its ``SOURCES.md``), each under its
own name and only at its own interval:

============================ ===================== ========== ===========================
symbol                       sample file           interval   what it is
============================ ===================== ========== ===========================
``REPLAY:ES-1m``             ``es-1m.csv``         1m         E-mini S&P 500 future, 2013
``REPLAY:EURUSD-1h``         ``eurusd-1h.csv``     1h         EUR/USD spot, 2017–2018
``REPLAY:SPX-1d``            ``spx-1d.csv``        1d         S&P 500 index, 1999–2018
============================ ===================== ========== ===========================

How a file is replayed
----------------------
The file plays in a loop. Its loop period is the file's span rounded up to whole weeks;
loop ``k`` stamps row ``i`` at ``row.open_time + k × period``. Shifting by whole weeks
keeps each bar's weekday and UTC time of day, so a weekend gap stays a weekend and a
session keeps its hours. Prices and volumes are the file's, exactly: never rescaled,
never forward-filled (a gap in these files is the market being shut). The same stamp
always carries the same bar, so collecting again gives identical rows.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Final

import httpx

from tickbase.errors import InvalidPayload, SourceUnavailable
from tickbase.marketdata.bars import Bar, load_bars
from tickbase.marketdata.collector import (
    Kind,
    Kline,
    KlineRequest,
    Request,
    Source,
    interval_seconds,
)
from tickbase.marketdata.sources import check_klines

__all__ = ["REPLAY_PREFIX", "REPLAY_SERIES", "ReplayKlines", "ReplaySeries", "replay_series"]

REPLAY_PREFIX: Final = "REPLAY:"
"""Every replayed symbol starts with this: no live exchange lists such a name."""

_WEEK: Final = timedelta(weeks=1)
_MS: Final = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class ReplaySeries:
    """One replayed series: its symbol, the sample file and the one interval it has.

    Example: ``ReplaySeries("REPLAY:EURUSD-1h", "eurusd-1h", "1h", "EUR/USD spot, hourly")``.
    """

    symbol: str
    sample: str
    interval: str
    description: str


REPLAY_SERIES: Final[Mapping[str, ReplaySeries]] = MappingProxyType(
    {
        s.symbol: s
        for s in (
            ReplaySeries(
                "REPLAY:ES-1m",
                "es-1m",
                "1m",
                "E-mini S&P 500 future (CME Globex), 1-minute bars of 2013-09-01..03, replayed",
            ),
            ReplaySeries(
                "REPLAY:EURUSD-1h",
                "eurusd-1h",
                "1h",
                "EUR/USD spot, hourly bars of 2017-04..2018-02, replayed",
            ),
            ReplaySeries(
                "REPLAY:SPX-1d",
                "spx-1d",
                "1d",
                "S&P 500 index, daily bars of 1999..2018, replayed",
            ),
        )
    }
)
"""The series the replay source serves, by symbol."""


@functools.cache
def _rows(sample: str) -> tuple[Bar, ...]:
    return tuple(load_bars(sample))


def _period(rows: Sequence[Bar], step: timedelta) -> timedelta:
    """The file's span (first open to last close) rounded up to whole weeks."""
    span = rows[-1].open_time + step - rows[0].open_time
    return -(-span // _WEEK) * _WEEK


def replay_series(series: ReplaySeries, limit: int, now: datetime | None = None) -> list[Kline]:
    """The last ``limit`` bars of ``series`` that have closed by ``now`` (default: the clock).

    See the module docstring for how the file is stamped. ``close_time`` is open +
    interval − 1 ms (Binance's); the other optional fields are ``None``.
    """
    when = datetime.now(UTC) if now is None else now
    if when.tzinfo is None:
        raise ValueError(f"now must be timezone-aware, got {when!r}")
    rows = _rows(series.sample)
    step = timedelta(seconds=interval_seconds(series.interval))
    period = _period(rows, step)
    opens = [r.open_time for r in rows]
    # loop k holds row i at opens[i] + k * period; a bar is served once it has closed.
    loop = (when - step - opens[0]) // period
    picked: list[tuple[int, int]] = []  # (loop, row), newest first
    while len(picked) < max(limit, 0):
        cutoff = when - step - loop * period  # rows opening at or before this have closed
        end = bisect.bisect_right(opens, cutoff)
        for index in range(end - 1, -1, -1):
            picked.append((loop, index))
            if len(picked) == limit:
                break
        loop -= 1
    klines: list[Kline] = []
    for k, index in reversed(picked):
        bar = rows[index]
        shifted = bar.open_time + k * period
        klines.append(
            Kline(
                open_time=shifted,
                open=bar.open,
                high=bar.high,
                low=bar.low,
                close=bar.close,
                volume=bar.volume,
                close_time=shifted + step - _MS,
            )
        )
    return klines


class ReplayKlines(Source):
    """Recorded bars, not the market's: :data:`REPLAY_SERIES`, each at its own interval.

    ``live`` is False; no HTTP (the client is ignored) and no rate limit. A request for
    any other symbol (a live one such as ``BTCUSDT``) or at another interval is refused
    with :class:`SourceUnavailable`: replayed data is never served under a live symbol,
    nor stamped onto another interval's grid.
    """

    name = "replay"
    kind: Kind = "klines"
    rate_limit = None
    live = False

    def __init__(self, series: Mapping[str, ReplaySeries] | None = None) -> None:
        self.series: Mapping[str, ReplaySeries] = dict(REPLAY_SERIES if series is None else series)

    def series_for(self, request: Request) -> ReplaySeries:
        """The replayed series a request names; :class:`SourceUnavailable` if none."""
        if not isinstance(request, KlineRequest):
            raise TypeError(f"{self.name} serves klines: expected a KlineRequest, got {request!r}")
        found = self.series.get(request.symbol)
        if found is None:
            names = ", ".join(self.series)
            raise SourceUnavailable(
                f"{self.name}: {request.symbol} is not a replayed series ({names}); "
                "recorded data is never served under a live symbol"
            )
        if request.interval != found.interval:
            raise SourceUnavailable(
                f"{self.name}: {found.symbol} is recorded at {found.interval} only, "
                f"not served at {request.interval}"
            )
        return found

    async def collect(self, client: httpx.AsyncClient, request: Request) -> Any:
        """The replayed klines (already records) for ``request``."""
        series = self.series_for(request)
        assert isinstance(request, KlineRequest)
        try:
            return replay_series(series, request.limit)
        except LookupError as exc:
            raise SourceUnavailable(f"{self.name}: {exc}") from None

    def validate(self, raw: Any, request: Request) -> list[Kline]:
        """The replayed klines, checked like any other source's (gaps allowed: closed market)."""
        series = self.series_for(request)
        if not isinstance(raw, list):
            raise InvalidPayload(f"{self.name}: payload is not a list of klines")
        for index, row in enumerate(raw):
            if not isinstance(row, Kline):
                raise InvalidPayload(
                    f"{self.name}: row {index}: is {type(row).__name__}, not a Kline"
                )
        return check_klines(self.name, raw, interval_seconds(series.interval))
