"""The live K-line: Binance's kline fields for one (symbol, interval, open time).

Why its own type rather than :class:`~tickbase.marketdata.collector.Kline`: the pipeline
moves these between processes and applies them to a global state many times a second, so
times stay epoch milliseconds (Binance's own unit, cheap to compare and pickle) and the
bar says whether it is final. :meth:`LiveKline.to_kline` gives the collector's
:class:`Kline` (timezone-aware times) that the K-line store writes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final, NamedTuple

from tickbase.marketdata.collector import Kline, interval_step

__all__ = ["DEFAULT_INTERVALS", "LiveKline", "interval_ms"]

DEFAULT_INTERVALS: Final = ("1m", "5m", "1h")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def interval_ms(interval: str) -> int:
    """Milliseconds of a fixed-length kline interval (``"1m"`` → 60,000).

    Months have no fixed length and are not aggregated from trades: :class:`ValueError`.
    """
    step = interval_step(interval)
    if step is None:
        raise ValueError(f"interval {interval!r} has no fixed length: not aggregated from trades")
    return step * 1000


def ms_to_datetime(ms: int) -> datetime:
    """An epoch-millisecond time as a timezone-aware UTC datetime."""
    return _EPOCH + timedelta(milliseconds=ms)


class LiveKline(NamedTuple):
    """One K-line as aggregated from trades, with Binance's kline fields.

    A named tuple, not a dataclass: shards build and send thousands a cycle, and a
    tuple is built, pickled and unpickled several times faster than a frozen dataclass
    (it is immutable all the same).

    ``close_time`` is ``open_time + interval − 1`` ms (Binance's convention). ``volume`` is
    in the base asset (contracts for a future), ``quote_volume`` the sum of price × qty.
    ``trade_count`` counts plain trades (an aggregate trade ``f..l`` counts ``l − f + 1``);
    ``first_trade_id`` / ``last_trade_id`` are the lowest ``f`` and highest ``l``. Taker-buy
    volumes sum the trades whose buyer was not the maker (the taker bought).
    ``is_final``: the watermark has passed ``close_time`` plus the lateness window, so no
    accepted trade can change this bar any more.
    """

    symbol: str
    interval: str
    open_time: int
    close_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: float
    trade_count: int
    taker_buy_base_volume: float
    taker_buy_quote_volume: float
    first_trade_id: int
    last_trade_id: int
    is_final: bool = False

    @property
    def key(self) -> tuple[str, str, int]:
        """What identifies the bar: symbol, interval, open time (ms)."""
        return (self.symbol, self.interval, self.open_time)

    def to_kline(self) -> Kline:
        """The collector's :class:`Kline` of this bar (what the K-line store writes)."""
        return Kline(
            ms_to_datetime(self.open_time),
            self.open,
            self.high,
            self.low,
            self.close,
            self.volume,
            close_time=ms_to_datetime(self.close_time),
            quote_volume=self.quote_volume,
            trade_count=self.trade_count,
            taker_buy_base_volume=self.taker_buy_base_volume,
            taker_buy_quote_volume=self.taker_buy_quote_volume,
        )
