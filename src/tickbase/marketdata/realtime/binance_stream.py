"""Binance's live aggregate-trade stream as an async iterator of trade batches and gaps.

Overview
--------
:class:`BinanceTradeStream` connects to the combined stream
``{base_url}/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade`` and yields, for
``async for event in stream``:

- :class:`~tickbase.marketdata.realtime.trades.TradeBatch` — one symbol's trades in
  arrival order. Frames are parsed one by one (:func:`parse_agg_trade_row`) into a
  :class:`TradeBuffer`, which is drained when no frame is waiting in the socket's queue,
  or after ``batch_frames`` frames or ``batch_seconds``: under load batches are big (the
  aggregator's batch path does the work), when quiet a trade waits for no other.
- :class:`TradeGap` — the stream missed trades of a symbol: its aggregate ids ``a`` jumped
  (``skipped_ids``), or the first trade after a reconnect does not follow the last one
  before (``reconnect``). The pipeline hands each gap to
  :class:`~tickbase.marketdata.realtime.backfill.GapBackfill`.

Failure cases
-------------
- Bad frames (not JSON, another stream, malformed, bad price, quantity or time) are
  counted in :attr:`BinanceTradeStream.bad` per reason and skipped.
- Ids going backwards or repeating (Binance replays the last trades after a reconnect)
  are dropped and counted in ``duplicates``: a trade is never aggregated twice.
- A closed or failed connection (Binance closes every connection after 24 h; a missed
  pong closes it too) is logged once with its reason, and the stream reconnects forever,
  with exponential backoff and full jitter (``uniform(0, backoff)``, so many clients cut off
  at once do not come back in step). The backoff starts again from its first delay after a
  connection that delivered frames.
- Pings: websockets answers the server's pings with pongs by itself, and sends its own
  every ``ping_interval`` seconds, closing a connection whose pong is late.
- :meth:`BinanceTradeStream.aclose` (or :meth:`~BinanceTradeStream.close`) ends the
  iteration promptly, after the trades already buffered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Sized
from dataclasses import dataclass
from typing import Final, Literal

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from tickbase.marketdata.realtime.trades import (
    BadInput,
    TradeBatch,
    TradeBuffer,
    TradeRow,
    parse_agg_trade_row,
)
from tickbase.service import Backoff

__all__ = [
    "BINANCE_WS_URL_DEFAULT",
    "RECONNECT",
    "SKIPPED_IDS",
    "BinanceTradeStream",
    "TradeGap",
    "full_jitter",
    "probe",
]

logger = logging.getLogger("tickbase.marketdata.realtime")

BINANCE_WS_URL_DEFAULT: Final = "wss://stream.binance.com:9443"
SKIPPED_IDS: Final = "skipped_ids"
RECONNECT: Final = "reconnect"
BATCH_FRAMES_DEFAULT: Final = 1000
BATCH_SECONDS_DEFAULT: Final = 0.020
MAX_FRAME_BYTES: Final = 64 * 1024  # an aggTrade frame is ~200 bytes
MAX_QUEUE_FRAMES: Final = 4096  # frames websockets buffers before it stops reading the socket
RECONNECT_FIRST: Final = 0.1  # seconds
RECONNECT_MAX: Final = 30.0  # seconds


@dataclass(frozen=True, slots=True)
class TradeGap:
    """Trades of ``symbol`` the stream missed: ids after ``after_id`` and before ``next_id``.

    ``from_ms`` is the time of the last trade before the gap, ``to_ms`` of the first one
    after: the missed trades happened within ``[from_ms, to_ms]``. ``reason`` is
    ``"skipped_ids"`` (the ids jumped on a live connection), ``"reconnect"`` (the first
    trade after a reconnect does not follow the last one before) or ``"restart"``.

    Example::

        TradeGap("BTCUSDT", after_id=100, next_id=105, from_ms=1_700_000_000_000,
                 to_ms=1_700_000_003_000, reason="skipped_ids")
    """

    symbol: str
    after_id: int
    next_id: int
    from_ms: int
    to_ms: int
    reason: Literal["skipped_ids", "reconnect", "restart"]
    """``"restart"``: the pipeline started after the series' last stored bar (ids unknown,
    ``after_id``/``next_id`` -1)."""

    @property
    def missed(self) -> int:
        """How many aggregate trades were missed."""
        return self.next_id - self.after_id - 1


def full_jitter(ceiling: float, rng: random.Random | None = None) -> float:
    """A delay drawn uniformly from ``[0, ceiling]`` ("full jitter").

    Clients cut off together (an exchange restart) then spread their reconnects over the
    whole backoff window instead of arriving in waves.
    """
    return (rng or random).uniform(0.0, max(ceiling, 0.0))


def stream_url(base_url: str, symbols: Iterable[str]) -> str:
    """The combined-stream URL of ``symbols``' aggregate trades (stream names lower case)."""
    names = "/".join(f"{s.lower()}@aggTrade" for s in symbols)
    return f"{base_url.rstrip('/')}/stream?streams={names}"


Event = TradeBatch | TradeGap


class BinanceTradeStream:
    """Binance's aggregate trades of ``symbols``, as :class:`TradeBatch` and :class:`TradeGap`.

    Example::

        stream = BinanceTradeStream(["BTCUSDT", "ETHUSDT"], base_url=settings.binance_ws_url)
        async for event in stream:
            if isinstance(event, TradeGap):
                backfill.submit(event)
            else:
                shards.feed(event)
        ...
        await stream.aclose()  # from elsewhere: ends the loop above

    A :class:`~tickbase.marketdata.realtime.pipeline.TradeSource`: ``name`` ``"binance"``
    (the source its bars are stored under), ``live``.

    Counters: ``frames`` (received), ``trades`` (yielded), ``gaps``, ``duplicates``
    (dropped), ``reconnects`` (connections opened after the first), ``connected``; bad
    frames per reason in ``bad.counts``.
    """

    def __init__(
        self,
        symbols: Iterable[str],
        *,
        base_url: str = BINANCE_WS_URL_DEFAULT,
        batch_frames: int = BATCH_FRAMES_DEFAULT,
        batch_seconds: float = BATCH_SECONDS_DEFAULT,
        max_size: int = MAX_FRAME_BYTES,
        max_queue: int = MAX_QUEUE_FRAMES,
        reconnect_first: float = RECONNECT_FIRST,
        reconnect_max: float = RECONNECT_MAX,
        open_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.symbols = tuple(dict.fromkeys(s.upper() for s in symbols))
        if not self.symbols:
            raise ValueError("BinanceTradeStream needs at least one symbol")
        self.url = stream_url(base_url, self.symbols)
        self.streams = frozenset(f"{s.lower()}@aggTrade" for s in self.symbols)
        self.batch_frames = max(1, batch_frames)
        self.batch_seconds = batch_seconds
        self.max_size = max_size
        self.max_queue = max_queue
        self.open_timeout = open_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.bad = BadInput("binance stream")
        """Bad frames skipped, per reason."""
        self.frames = 0
        self.trades = 0
        self.gaps = 0
        self.duplicates = 0
        self.reconnects = 0
        self.connected = False
        self._backoff = Backoff(reconnect_first, reconnect_max)
        self._rng = rng or random.Random()
        self._clock = clock
        self._buffer = TradeBuffer()
        self._out: deque[Event] = deque()
        self._last: dict[str, TradeRow] = {}  # symbol → its last trade yielded
        self._resumed: set[str] = set()  # symbols whose first trade since a reconnect is due
        self._ws: ClientConnection | None = None
        self._connections = 0
        self._delivered = 0  # frames when the current connection opened
        self._pause = 0.0  # seconds to wait before the next connection attempt
        self._closing = asyncio.Event()
        self._closer: asyncio.Task[None] | None = None

    name = "binance"
    live = True

    async def prepare(self) -> None:
        """Nothing to prepare: the connection opens at the first iteration."""

    # ---- iteration ---------------------------------------------------------------------

    def __aiter__(self) -> BinanceTradeStream:
        return self

    async def __anext__(self) -> Event:
        while not self._out:
            if self._closing.is_set():
                await self._disconnect()
                raise StopAsyncIteration
            ws = self._ws or await self._connect()
            if ws is not None:
                await self._read(ws)
        return self._out.popleft()

    def close(self) -> None:
        """Ask the stream to end: iteration stops once what is buffered is yielded.

        Call it from the event loop's thread (a signal handler registered with the loop, a
        task); it returns at once, the connection closing in the background."""
        self._closing.set()
        ws = self._ws
        if ws is not None and self._closer is None:
            # Closing the socket wakes a pending recv(); the close itself runs apart.
            self._closer = asyncio.get_running_loop().create_task(ws.close())

    async def aclose(self) -> None:
        """End the stream and close its connection (idempotent)."""
        self.close()
        await self._disconnect()

    async def __aenter__(self) -> BinanceTradeStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---- the hot path ------------------------------------------------------------------

    async def _read(self, ws: ClientConnection) -> None:
        """Read frames into the buffer until there is something to yield, or the
        connection ends (then what was buffered is queued and the stream reconnects)."""
        # Locals, not attributes: this loop runs once per frame, 150,000 times a second.
        append, bad, streams, last = self._buffer.append_row, self.bad, self.streams, self._last
        clock, resumed, limit, window = (
            self._clock,
            self._resumed,
            self.batch_frames,
            self.batch_seconds,
        )
        recv, parse, out = ws.recv, parse_agg_trade_row, self._out
        # websockets has no public "is a frame waiting": its assembler's queue is looked at
        # directly (a release without it drains after every frame: correct, smaller batches).
        # (The deque under its queue: len() of the queue itself is a Python call per frame.)
        frames_queue = getattr(getattr(ws, "recv_messages", None), "frames", None)
        waiting: Sized = getattr(frames_queue, "queue", ())
        pending = frames = 0
        started = 0.0
        try:
            while True:
                frame = await recv(decode=False)
                frames += 1
                row = parse(frame, bad, streams)
                if row is not None:
                    symbol, agg_id = row[0], row[1]
                    previous = last.get(symbol)
                    if previous is None or agg_id == previous[1] + 1:
                        if resumed:
                            resumed.discard(symbol)
                        last[symbol] = row
                        append(row)
                        if not pending:
                            started = clock()
                        pending += 1
                    elif agg_id <= previous[1]:
                        self.duplicates += 1
                    else:
                        # Trades before the gap go out first, then the gap, then the rest.
                        self._flush()
                        self._gap(previous, row)
                        resumed.discard(symbol)
                        last[symbol] = row
                        append(row)
                        started = clock()
                        pending = 1
                if (pending or out) and (
                    not waiting
                    or pending >= limit
                    # the clock read every 32 trades, not per frame: under load that is µs
                    or (not pending & 31 and clock() - started >= window)
                ):
                    self._flush()
                    return
        except ConnectionClosed as exc:
            self.frames += frames
            frames = 0  # counted: _lost() looks at them
            self._flush()
            self._lost(_close_reason(exc))
        finally:
            self.frames += frames

    def _gap(self, previous: TradeRow, row: TradeRow) -> None:
        symbol = row[0]
        reason: Literal["skipped_ids", "reconnect"] = (
            RECONNECT if symbol in self._resumed else SKIPPED_IDS
        )
        self.gaps += 1
        self._out.append(TradeGap(symbol, previous[1], row[1], previous[6], row[6], reason))
        logger.warning(
            "binance stream: %s missed aggregate trades %d..%d (%s)",
            symbol,
            previous[1] + 1,
            row[1] - 1,
            reason,
        )

    def _flush(self) -> None:
        batches = self._buffer.drain()
        for batch in batches.values():
            self.trades += len(batch)
            self._out.append(batch)

    # ---- connecting --------------------------------------------------------------------

    async def _connect(self) -> ClientConnection | None:
        """A new connection, retried with backoff until one opens; ``None`` once closing."""
        failures = 0
        if self._pause:
            # The last connection delivered nothing (accepted, then closed at once): a
            # server in that state would otherwise be hammered in a tight loop.
            await self._sleep(self._pause)
            self._pause = 0.0
        while not self._closing.is_set():
            attempt = asyncio.ensure_future(
                connect(
                    self.url,
                    compression=None,  # Binance does not compress; inflating costs CPU per frame
                    max_size=self.max_size,
                    max_queue=self.max_queue,
                    open_timeout=self.open_timeout,
                    ping_interval=self.ping_interval,
                    ping_timeout=self.ping_timeout,
                    close_timeout=1.0,
                )
            )
            closing = asyncio.ensure_future(self._closing.wait())
            try:
                await asyncio.wait({attempt, closing}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                closing.cancel()
            if not attempt.done():
                attempt.cancel()
                with contextlib.suppress(BaseException):
                    await attempt
                return None
            try:
                ws = attempt.result()
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
                failures += 1
                delay = full_jitter(self._backoff.next(), self._rng)
                # One line per outage, not per attempt: a long outage must not flood the log.
                log = logger.warning if failures == 1 else logger.debug
                log(
                    "binance stream: cannot connect to %s (%s); retrying in %.2f s",
                    self.url,
                    _describe(exc),
                    delay,
                )
                await self._sleep(delay)
                continue
            if self._closing.is_set():
                await ws.close()
                return None
            self._connections += 1
            if self._connections > 1:
                self.reconnects += 1
                self._resumed.clear()
                self._resumed.update(self._last)
                logger.info("binance stream: reconnected to %s", self.url)
            self._ws = ws
            self._delivered = self.frames
            self.connected = True
            return ws
        return None

    def _lost(self, reason: str) -> None:
        self._ws = None
        self.connected = False
        if self.frames > self._delivered:
            self._backoff.reset()  # it worked for a while: a blip, not an outage
        else:
            self._pause = full_jitter(self._backoff.next(), self._rng)
        if not self._closing.is_set():
            logger.warning("binance stream: disconnected (%s); reconnecting", reason)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._closing.wait()

    async def _disconnect(self) -> None:
        ws, self._ws = self._ws, None
        self.connected = False
        if self._closer is not None:
            with contextlib.suppress(Exception):
                await self._closer
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()


async def probe(base_url: str, symbols: Iterable[str], *, timeout: float = 5.0) -> str | None:
    """Whether the combined stream of ``symbols`` at ``base_url`` answers: ``None`` when a
    connection opens within ``timeout`` seconds, else why not (for the line that says
    the pipeline replays instead)."""
    url = stream_url(base_url, symbols)
    try:
        async with asyncio.timeout(timeout):
            async with connect(url, compression=None, open_timeout=timeout):
                return None
    except TimeoutError:
        return f"{base_url} did not answer within {timeout:.0f} s"
    except Exception as exc:
        return f"{base_url}: {_describe(exc)}"


def _close_reason(exc: ConnectionClosed) -> str:
    received = exc.rcvd
    if received is None:
        return "no close frame" if exc.__cause__ is None else _describe(exc.__cause__)
    return f"code {received.code}" + (f": {received.reason}" if received.reason else "")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
