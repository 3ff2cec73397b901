"""The WebSocket ``kline`` channel: the real-time pipeline's bars pushed as they form.

Overview
    A client subscribes per series::

        {"type":"request","requestId":"k1","action":"subscribe",
         "params":{"channel":"kline","symbol":"BTCUSDT","interval":"1m"}}

    and gets ``{"type":"update","channel":"kline","content":{...}}`` frames whose
    content has Binance's kline fields in camelCase (``openTime``, ``closeTime``,
    ``open`` ... ``lastTradeId``, ``isFinal``), times in epoch milliseconds as
    Binance sends them. One :class:`KlineFanout` per gateway process registers ONE
    reader handler (``ws-kline``) on the pipeline found in
    ``app.extensions["realtime"]``, lazily at the first subscription. Per snapshot
    and per subscribed series it pushes to each subscriber first the final bars it
    was not sent (:meth:`SeriesBars.finals_after`), then the forming bar if its
    state changed since the last push: no bar state is sent twice, and a final bar
    exactly once. A new subscriber is caught up from the newest snapshot at once
    (the kept final bars, oldest first, then the forming one).

State model
    Per (connection, series): the open time of the newest final bar sent and the
    forming bar last sent. Both advance only when the connection took the frames.

Failure cases
    The handler runs in the pipeline's serial reader, so it never awaits a client:
    it hands each connection's frames to the connection's bounded push path and
    goes on. A connection with too many pushes pending refuses them; its state is
    then not advanced, and the next snapshot offers the same final bars again
    (the pipeline keeps the last :data:`~tickbase.marketdata.realtime.series.FINALS_KEPT`
    per series), so a slow client skips forming states, never a final bar unless
    it falls that many bars behind. The work per snapshot is proportional to the
    subscriptions, never to the pipeline's series.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Final, Literal, Protocol

from pydantic import Field
from pydantic.alias_generators import to_camel

from tickbase.gateway.errors import ApiError
from tickbase.gateway.schemas import InModel
from tickbase.marketdata.indicators import IndicatorValues
from tickbase.marketdata.realtime.indicators import LiveIndicators
from tickbase.marketdata.realtime.kline import LiveKline
from tickbase.marketdata.realtime.loop import Snapshot
from tickbase.marketdata.realtime.pipeline import RealtimePipeline
from tickbase.marketdata.realtime.series import SeriesBars

__all__ = [
    "HANDLER_NAME",
    "KLINE_CHANNEL",
    "MAX_KLINE_SUBSCRIPTIONS",
    "KlineFanout",
    "KlinePusher",
    "KlineSubscribe",
    "KlineUnsubscribe",
    "kline_content",
]

logger = logging.getLogger("tickbase.gateway.kline")

KLINE_CHANNEL: Final = "kline"
HANDLER_NAME: Final = "ws-kline"
MAX_KLINE_SUBSCRIPTIONS: Final = 50
"""Series one connection may follow at once (a dashboard shows one or a few)."""

Key = tuple[str, str]
_FIELDS: Final = tuple((name, to_camel(name)) for name in LiveKline._fields)
_INDICATOR_FIELDS: Final = tuple(
    (f.name, to_camel(f.name)) for f in fields(IndicatorValues) if f.name != "open_time"
)


def kline_content(bar: LiveKline, indicators: IndicatorValues | None = None) -> dict[str, Any]:
    """A bar as a ``kline`` update's content: camelCase fields, times in epoch ms; a
    closed bar's also carries ``indicators`` (the six, null while warming up)."""
    content = {camel: getattr(bar, name) for name, camel in _FIELDS}
    if indicators is not None:
        content["indicators"] = {
            camel: getattr(indicators, name) for name, camel in _INDICATOR_FIELDS
        }
    return content


class KlineSubscribe(InModel):
    """``subscribe`` params of the ``kline`` channel."""

    channel: Literal["kline"]
    symbol: str = Field(min_length=1, max_length=64)
    interval: str = Field(min_length=1, max_length=8)


class KlineUnsubscribe(InModel):
    """``unsubscribe`` params: one series, or every series of the connection when
    neither ``symbol`` nor ``interval`` is given (or all of one symbol's)."""

    channel: Literal["kline"]
    symbol: str | None = Field(default=None, max_length=64)
    interval: str | None = Field(default=None, max_length=8)


class KlinePusher(Protocol):
    """What the fanout needs of a connection: its bounded, non-blocking push path."""

    def push(self, channel: str, contents: Sequence[dict[str, Any]]) -> bool:
        """Queue ``contents`` as update frames, in order; ``False`` (nothing queued)
        when the connection has too many pushes pending."""
        ...


@dataclass(slots=True)
class _Sent:
    last_final: int | None = None
    """Open time (ms) of the newest final bar this connection was sent."""
    forming: LiveKline | None = None
    """The forming bar state last sent (compared by value)."""


PipelineFinder = Callable[[], Any]


class KlineFanout:
    """Every ``kline`` subscription of one gateway process, and the one reader handler.

    Example::

        fanout = KlineFanout(lambda: app.extensions.get("realtime"))
        fanout.subscribe(conn, "BTCUSDT", "1m")   # registers "ws-kline" once
        ...
        fanout.drop(conn)                         # the connection left
        fanout.close()                            # the gateway stops
    """

    def __init__(
        self, find: PipelineFinder, *, max_per_connection: int = MAX_KLINE_SUBSCRIPTIONS
    ) -> None:
        self.find = find
        self.max_per_connection = max_per_connection
        self._series: dict[Key, dict[KlinePusher, _Sent]] = {}
        self._by_conn: dict[KlinePusher, set[Key]] = {}
        self._registered: RealtimePipeline | None = None
        self._unregister: Callable[[], None] | None = None
        self._indicators: LiveIndicators | None = None
        self.snapshots = 0
        self.pushed = 0
        """Update frames handed to connections."""
        self.deferred = 0
        """Times a connection refused its frames (too many pending): offered again later."""

    # ---- the pipeline ------------------------------------------------------------

    def running(self) -> RealtimePipeline | None:
        """The pipeline of this process, if one is running (or starting)."""
        found = self.find()
        if not isinstance(found, RealtimePipeline):
            return None
        if found.stopping or found.stopped.is_set():
            return None
        return found

    def _pipeline(self) -> RealtimePipeline:
        pipeline = self.running()
        if pipeline is None:
            raise ApiError(
                503,
                "REALTIME_NOT_RUNNING",
                "the real-time pipeline is not running on this node: kline updates come from"
                " the gateway process that runs it (tickbase up)",
            )
        if self._registered is not pipeline:
            # A pipeline replaced in the extensions (a restart in the same process):
            # the old one's handler goes, the new one gets it.
            self.close()
            self._unregister = pipeline.register(HANDLER_NAME, self)
            self._registered = pipeline
        return pipeline

    def close(self) -> None:
        """Remove the reader handler (the gateway stops); subscriptions stay counted."""
        if self._unregister is not None:
            self._unregister()
        self._unregister = None
        self._registered = None

    # ---- subscriptions -----------------------------------------------------------

    def subscribe(self, conn: KlinePusher, symbol: str, interval: str) -> list[Key]:
        """Follow ``(symbol, interval)`` on ``conn``; returns the connection's series.

        Raises an :class:`ApiError` when no pipeline runs here, when the symbol or
        interval is not the pipeline's (naming the allowed ones, like an unknown
        channel) or when the connection follows :attr:`max_per_connection` series.
        """
        pipeline = self._pipeline()
        symbols = sorted(pipeline.symbols)
        if symbol not in symbols:
            raise ApiError(
                422, "UNKNOWN_SYMBOL", f"unknown symbol {symbol!r}", {"symbols": symbols}
            )
        intervals = list(pipeline.intervals)
        if interval not in intervals:
            raise ApiError(
                422, "UNKNOWN_INTERVAL", f"unknown interval {interval!r}", {"intervals": intervals}
            )
        key = (symbol, interval)
        mine = self._by_conn.setdefault(conn, set())
        if key not in mine:
            if len(mine) >= self.max_per_connection:
                raise ApiError(
                    429,
                    "TOO_MANY_SUBSCRIPTIONS",
                    f"at most {self.max_per_connection} kline subscriptions per connection:"
                    " unsubscribe from one first",
                    {"max": self.max_per_connection},
                )
            mine.add(key)
            sent = self._series.setdefault(key, {})[conn] = _Sent()
            _, latest = pipeline.loop.channel.latest()
            if isinstance(latest, Snapshot):
                series = latest.values.get(key)
                if isinstance(series, SeriesBars):
                    self._offer(conn, sent, series, {})
        return self.series_of(conn)

    def unsubscribe(
        self, conn: KlinePusher, symbol: str | None = None, interval: str | None = None
    ) -> list[Key]:
        """Stop following the matching series (``None`` matches any); returns the rest."""
        mine = self._by_conn.get(conn, set())
        for key in [k for k in mine if symbol in (None, k[0]) and interval in (None, k[1])]:
            mine.discard(key)
            subscribers = self._series.get(key)
            if subscribers is not None:
                subscribers.pop(conn, None)
                if not subscribers:
                    del self._series[key]
        if not mine:
            self._by_conn.pop(conn, None)
        return self.series_of(conn)

    def drop(self, conn: KlinePusher) -> None:
        """Forget every subscription of a connection that closed."""
        self.unsubscribe(conn)

    def series_of(self, conn: KlinePusher) -> list[Key]:
        return sorted(self._by_conn.get(conn, ()))

    @property
    def subscriptions(self) -> int:
        return sum(len(keys) for keys in self._by_conn.values())

    # ---- the reader handler ------------------------------------------------------

    def __call__(self, snapshot: Snapshot) -> None:
        """Push what each subscriber has not seen of its series (see the module)."""
        self.snapshots += 1
        self._indicators = self._registered.indicators if self._registered else None
        values: Mapping[Hashable, Any] = snapshot.values
        for key, subscribers in self._series.items():
            series = values.get(key)
            if not isinstance(series, SeriesBars):
                continue
            # The content of a bar is built once per snapshot, however many follow it.
            built: dict[int, dict[str, Any]] = {}
            for conn, sent in subscribers.items():
                self._offer(conn, sent, series, built)

    def _offer(
        self, conn: KlinePusher, sent: _Sent, series: SeriesBars, built: dict[int, dict[str, Any]]
    ) -> None:
        bars = list(series.finals_after(sent.last_final))
        last_final = bars[-1].open_time if bars else sent.last_final
        forming = series.forming
        fresh_forming = (
            forming is not None
            and forming != sent.forming
            and (last_final is None or forming.open_time > last_final)
        )
        if fresh_forming:
            assert forming is not None
            bars.append(forming)
        if not bars:
            return
        contents = []
        for bar in bars:
            content = built.get(id(bar))
            if content is None:
                indicators = None
                if bar.is_final and self._indicators is not None:
                    indicators = self._indicators.at(bar.symbol, bar.interval, bar.open_time)
                content = built[id(bar)] = kline_content(bar, indicators)
            contents.append(content)
        if not conn.push(KLINE_CHANNEL, contents):
            self.deferred += 1
            return
        self.pushed += len(contents)
        sent.last_final = last_final
        if fresh_forming:
            sent.forming = forming
