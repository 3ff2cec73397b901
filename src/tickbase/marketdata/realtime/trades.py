"""Trades as numpy columns, and Binance aggTrade frames parsed into them (files: trade_file).

Why columns: a shard worker aggregates millions of trades a second only if it never builds a
Python object per trade on the hot path; the aggregator's batch path sorts and groups whole
arrays. A :class:`TradeBatch` is one symbol's trades in arrival order.

Bad input never raises for one bad trade: a :class:`BadInput` counts it under its reason
(``not_json``, ``other_stream``, ``malformed``, ``bad_time``, ``bad_price``, ``bad_qty``) and
logs one line naming the source and the reason, rate-limited so a flood of garbage is a few
lines, not millions.

The Binance wire format is the documented aggregate-trade event, usually wrapped in a
combined-stream envelope::

    {"stream": "btcusdt@aggTrade",
     "data": {"e": "aggTrade", "E": 1672515782136, "s": "BTCUSDT", "a": 12345,
              "p": "0.001", "q": "100", "f": 100, "l": 105, "T": 1672515782136,
              "m": true, "M": true}}

``a`` is the aggregate trade id, ``f``/``l`` the first and last (plain) trade ids it covers,
``T`` the trade time in ms, ``m`` whether the buyer was the maker (so the taker sold).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import numpy as np
import orjson
from numpy.typing import NDArray

__all__ = [
    "BAD_PRICE",
    "BAD_QTY",
    "BAD_TIME",
    "MALFORMED",
    "NOT_JSON",
    "OTHER_STREAM",
    "AggTrade",
    "BadInput",
    "TradeBatch",
    "TradeBatches",
    "TradeBuffer",
    "TradeRow",
    "parse_agg_trade",
    "parse_agg_trade_row",
    "parse_frames",
]

logger = logging.getLogger("tickbase.marketdata.realtime")

NOT_JSON: Final = "not_json"
OTHER_STREAM: Final = "other_stream"
MALFORMED: Final = "malformed"
BAD_TIME: Final = "bad_time"
BAD_PRICE: Final = "bad_price"
BAD_QTY: Final = "bad_qty"

Int64s = NDArray[np.int64]
Floats = NDArray[np.float64]
Bools = NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class TradeBatch:
    """One symbol's trades, in arrival order, as parallel numpy columns.

    ``agg_id`` orders trades of one millisecond (Binance's ``a``; a replay file's row
    number), so the open and close of a bar do not depend on arrival order. ``first_id`` /
    ``last_id`` are the plain trade ids an aggregate trade covers (Binance's ``f``/``l``);
    ``None`` means one trade per row (``first_id = last_id = agg_id``). ``buyer_maker``
    ``None`` means unknown: taker-buy volumes are then 0.
    """

    symbol: str
    time_ms: Int64s
    price: Floats
    qty: Floats
    agg_id: Int64s | None = None
    first_id: Int64s | None = None
    last_id: Int64s | None = None
    buyer_maker: Bools | None = None

    def __len__(self) -> int:
        return int(self.time_ms.shape[0])

    def take(self, index: NDArray[np.intp] | slice) -> TradeBatch:
        """The trades at ``index`` (an index array or a slice), in that order."""
        return TradeBatch(
            self.symbol,
            self.time_ms[index],
            self.price[index],
            self.qty[index],
            _pick(self.agg_id, index),
            _pick(self.first_id, index),
            _pick(self.last_id, index),
            _pick(self.buyer_maker, index),
        )


@dataclass(frozen=True, slots=True)
class TradeBatches:
    """Many small batches (of several symbols) as one set of columns: a live stream's
    flush sent to a shard as one message.

    Why: pickling a numpy array costs microseconds whatever its size, and a live stream
    of 1,000 symbols gives hundreds of one-trade batches every few milliseconds; one
    concatenation and one message cost what one batch did. :meth:`parts` gives the
    batches back, in order (views, no copy).
    """

    symbols: tuple[str, ...]
    offsets: Int64s
    """Batch ``i`` is rows ``offsets[i]:offsets[i + 1]``."""
    time_ms: Int64s
    price: Floats
    qty: Floats
    agg_id: Int64s | None = None
    first_id: Int64s | None = None
    last_id: Int64s | None = None
    buyer_maker: Bools | None = None

    @staticmethod
    def of(batches: Sequence[TradeBatch]) -> TradeBatches | None:
        """The batches as one, or ``None`` when their optional columns differ."""
        first = batches[0]
        shape = [c is None for c in _optional(first)]
        if any([c is None for c in _optional(b)] != shape for b in batches):
            return None
        lengths = np.fromiter((len(b) for b in batches), dtype=np.int64, count=len(batches))
        offsets = np.zeros(len(batches) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])

        def joined(column: Callable[[TradeBatch], NDArray[Any] | None]) -> Any:
            if column(first) is None:
                return None
            return np.concatenate([column(b) for b in batches])

        return TradeBatches(
            tuple(b.symbol for b in batches),
            offsets,
            np.concatenate([b.time_ms for b in batches]),
            np.concatenate([b.price for b in batches]),
            np.concatenate([b.qty for b in batches]),
            joined(lambda b: b.agg_id),
            joined(lambda b: b.first_id),
            joined(lambda b: b.last_id),
            joined(lambda b: b.buyer_maker),
        )

    def parts(self) -> list[TradeBatch]:
        """The batches, in the order they were given."""
        o = self.offsets.tolist()
        return [
            TradeBatch(
                symbol,
                self.time_ms[o[i] : o[i + 1]],
                self.price[o[i] : o[i + 1]],
                self.qty[o[i] : o[i + 1]],
                _pick(self.agg_id, slice(o[i], o[i + 1])),
                _pick(self.first_id, slice(o[i], o[i + 1])),
                _pick(self.last_id, slice(o[i], o[i + 1])),
                _pick(self.buyer_maker, slice(o[i], o[i + 1])),
            )
            for i, symbol in enumerate(self.symbols)
        ]


def _optional(batch: TradeBatch) -> tuple[object, ...]:
    return (batch.agg_id, batch.first_id, batch.last_id, batch.buyer_maker)


_G = TypeVar("_G", bound=np.generic)


def _pick(column: NDArray[_G] | None, index: NDArray[np.intp] | slice) -> NDArray[_G] | None:
    return None if column is None else column[index]


@dataclass(slots=True)
class BadInput:
    """Counts of skipped input per reason for one source, with rate-limited log lines.

    The first bad item of a reason is logged at once; later ones at most every
    ``log_every`` seconds per reason, saying how many were skipped in between.
    """

    source: str
    log_every: float = 10.0
    clock: Callable[[], float] = time.monotonic
    counts: dict[str, int] = field(default_factory=dict)
    _last_log: dict[str, float] = field(default_factory=dict)
    _since_log: dict[str, int] = field(default_factory=dict)

    def record(self, reason: str, detail: str, n: int = 1) -> None:
        """Count ``n`` skipped items of ``reason``; ``detail`` says what the (first) one was."""
        if n <= 0:
            return
        self.counts[reason] = self.counts.get(reason, 0) + n
        self._since_log[reason] = self._since_log.get(reason, 0) + n
        now = self.clock()
        last = self._last_log.get(reason)
        if last is not None and now - last < self.log_every:
            return
        skipped = self._since_log[reason]
        self._last_log[reason] = now
        self._since_log[reason] = 0
        logger.warning(
            "%s: skipped %d bad trade input(s) (%s): %s (%d of this reason so far)",
            self.source,
            skipped,
            reason,
            detail,
            self.counts[reason],
        )

    @property
    def total(self) -> int:
        """Every skipped item, whatever its reason."""
        return sum(self.counts.values())


# ---- Binance aggTrade frames ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AggTrade:
    """One Binance aggregate trade, as the frame said it."""

    symbol: str
    agg_id: int
    price: float
    qty: float
    first_id: int
    last_id: int
    time_ms: int
    buyer_maker: bool


def _int(value: object) -> int | None:
    # JSON booleans are ints to Python; an id or a time is never one.
    return value if type(value) is int else None


TradeRow = tuple[str, int, float, float, int, int, int, bool]
"""An :class:`AggTrade`'s fields as a plain tuple, in the same order (the stream's hot path
builds no object per trade)."""

_INFINITY: Final = math.inf
# symbol → its stream name, so the hot path builds no string; filled by the full checks
# when they accept a symbol's first trade (bounded: a stream of made-up symbols stops it).
_STREAM_NAMES: dict[str, str] = {}
_STREAM_NAMES_MAX: Final = 10_000


def parse_agg_trade(
    frame: bytes | str, bad: BadInput, streams: frozenset[str] | None = None
) -> AggTrade | None:
    """The trade of one frame (combined-stream envelope or a bare event), or ``None``.

    ``streams``: the stream names subscribed (``{"btcusdt@aggTrade", ...}``); a frame of any
    other stream, or another event type (a kline, a subscription reply), is
    ``other_stream``. A bad frame is counted in ``bad`` and skipped.
    """
    row = parse_agg_trade_row(frame, bad, streams)
    return None if row is None else AggTrade(*row)


def parse_agg_trade_row(
    frame: bytes | str, bad: BadInput, streams: frozenset[str] | None = None
) -> TradeRow | None:
    """:func:`parse_agg_trade` as a :data:`TradeRow` (the live stream's hot path).

    The well-formed enveloped frame, nearly every frame, is accepted by one chain of
    checks; anything else goes through the full checks, which accept exactly what they
    accept and say why they refuse the rest.
    """
    try:
        message = orjson.loads(frame)
    except orjson.JSONDecodeError:
        bad.record(
            NOT_JSON, f"frame {bytes(frame[:60]) if isinstance(frame, bytes) else frame[:60]!r}"
        )
        return None
    try:
        # Subscripts, not .get(): a missing key or a non-object raises into the full checks
        # (and only a dict takes a string subscript: message and data are objects below).
        data = message["data"]
        stream = message["stream"]
        symbol, agg_id, time_ms, p, q = data["s"], data["a"], data["T"], data["p"], data["q"]
        first_id, last_id, buyer_maker, event = data["f"], data["l"], data["m"], data["e"]
    except (KeyError, TypeError, IndexError):
        return _checked_row(message, bad, streams)
    if (
        event == "aggTrade"
        and type(symbol) is str
        and type(agg_id) is int
        and type(first_id) is int
        and type(last_id) is int
        and first_id <= last_id
        and type(time_ms) is int
        and time_ms > 0
        and type(buyer_maker) is bool
        and type(p) is str
        and type(q) is str
        and _STREAM_NAMES.get(symbol) == stream
        and (streams is None or stream in streams)
    ):
        try:
            price, qty = float(p), float(q)
        except ValueError:
            pass
        else:
            # NaN fails both comparisons: it takes the full checks' path.
            if 0 < price < _INFINITY and 0 < qty < _INFINITY:
                return (symbol, agg_id, price, qty, first_id, last_id, time_ms, buyer_maker)
    return _checked_row(message, bad, streams)


def _checked_row(message: object, bad: BadInput, streams: frozenset[str] | None) -> TradeRow | None:
    """Every check of a decoded frame, each refusal counted under its reason."""
    if not isinstance(message, dict):
        bad.record(MALFORMED, f"frame is a JSON {type(message).__name__}, not an object")
        return None
    stream = message.get("stream")
    data = message["data"] if stream is not None and "data" in message else message
    if not isinstance(data, dict):
        bad.record(MALFORMED, f"stream {stream!r}: data is not an object")
        return None
    if data.get("e") != "aggTrade" or (
        stream is not None
        and (
            not isinstance(stream, str)
            or not stream.endswith("@aggTrade")
            or (streams is not None and stream not in streams)
        )
    ):
        bad.record(OTHER_STREAM, f"stream {stream!r}, event {data.get('e')!r}")
        return None
    symbol = data.get("s")
    agg_id, first_id, last_id = _int(data.get("a")), _int(data.get("f")), _int(data.get("l"))
    buyer_maker = data.get("m")
    if (
        not isinstance(symbol, str)
        or agg_id is None
        or first_id is None
        or last_id is None
        or last_id < first_id
        or not isinstance(buyer_maker, bool)
        or (stream is not None and stream != f"{symbol.lower()}@aggTrade")
    ):
        bad.record(MALFORMED, f"stream {stream!r}: missing or inconsistent fields in {data!r}")
        return None
    time_ms = _int(data.get("T"))
    if time_ms is None or time_ms <= 0:
        bad.record(BAD_TIME, f"{symbol} aggTrade {agg_id}: trade time T={data.get('T')!r}")
        return None
    price = _positive(data.get("p"))
    if price is None:
        bad.record(BAD_PRICE, f"{symbol} aggTrade {agg_id}: price p={data.get('p')!r}")
        return None
    qty = _positive(data.get("q"))
    if qty is None:
        bad.record(BAD_QTY, f"{symbol} aggTrade {agg_id}: quantity q={data.get('q')!r}")
        return None
    if stream is not None and len(_STREAM_NAMES) < _STREAM_NAMES_MAX:
        _STREAM_NAMES[symbol] = stream
    return (symbol, agg_id, price, qty, first_id, last_id, time_ms, buyer_maker)


def _positive(value: object) -> float | None:
    # Binance sends decimals as strings; a bare JSON number is accepted too.
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) and number > 0 else None


class TradeBuffer:
    """Parsed trades collected per symbol until :meth:`drain` turns them into batches.

    The live stream delivers one trade per frame; the worker appends them here and hands
    the aggregator one batch per symbol per pass, so the batch path does the work. A trade
    is kept as its row tuple (one list append per trade); :meth:`drain` transposes the rows
    into columns in C (``zip``).
    """

    __slots__ = ("_rows",)

    def __init__(self) -> None:
        self._rows: dict[str, list[TradeRow]] = {}

    def __len__(self) -> int:
        return sum(len(rows) for rows in self._rows.values())

    def append(self, trade: AggTrade) -> None:
        """Add one trade."""
        self.append_row(
            (
                trade.symbol,
                trade.agg_id,
                trade.price,
                trade.qty,
                trade.first_id,
                trade.last_id,
                trade.time_ms,
                trade.buyer_maker,
            )
        )

    def append_row(self, row: TradeRow) -> None:
        """Add one trade given as a :data:`TradeRow`."""
        rows = self._rows.get(row[0])
        if rows is None:
            self._rows[row[0]] = [row]
        else:
            rows.append(row)

    def drain(self) -> dict[str, TradeBatch]:
        """The trades appended since the last drain, one batch per symbol; empties the buffer."""
        out: dict[str, TradeBatch] = {}
        for symbol, rows in self._rows.items():
            _, a, p, q, f, last, t, m = zip(*rows, strict=True)
            out[symbol] = TradeBatch(
                symbol,
                np.array(t, dtype=np.int64),
                np.array(p, dtype=np.float64),
                np.array(q, dtype=np.float64),
                np.array(a, dtype=np.int64),
                np.array(f, dtype=np.int64),
                np.array(last, dtype=np.int64),
                np.array(m, dtype=np.bool_),
            )
        self._rows = {}
        return out


def parse_frames(
    frames: Iterable[bytes | str], bad: BadInput, streams: frozenset[str] | None = None
) -> dict[str, TradeBatch]:
    """The good trades of many frames, one batch per symbol (bad frames counted in ``bad``)."""
    buffer = TradeBuffer()
    for frame in frames:
        row = parse_agg_trade_row(frame, bad, streams)
        if row is not None:
            buffer.append_row(row)
    return buffer.drain()
