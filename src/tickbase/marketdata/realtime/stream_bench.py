"""``ingest_rate()``: how fast :class:`BinanceTradeStream` takes aggTrade frames off a socket.

A local server in a child process (the other core) accepts one WebSocket connection on
127.0.0.1 and writes ``n`` combined-stream aggTrade frames as fast as the socket takes
them, then closes. The frames are encoded once beforehand, straight into WebSocket wire
format, so the server costs almost nothing per frame and the figure is the client's: the
stream's receive, parse, id check and batching, read by ``async for``.

Beside it, for scale: the rate of ``orjson.loads`` alone over the same frames, and of the
stream's per-frame work without a socket (:func:`parse_agg_trade_row` into a
:class:`TradeBuffer`).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection

import orjson

from tickbase.marketdata.realtime.binance_stream import BinanceTradeStream
from tickbase.marketdata.realtime.trades import (
    BadInput,
    TradeBatch,
    TradeBuffer,
    parse_agg_trade_row,
)

__all__ = ["IngestRate", "agg_trade_frames", "ingest_rate"]

START_MS = 1_700_000_000_000


@dataclass(frozen=True, slots=True)
class IngestRate:
    """Figures of one :func:`ingest_rate` run (rates in trades or frames per second)."""

    trades: int
    seconds: float
    trades_per_second: float
    orjson_per_second: float
    parse_per_second: float
    batches: int

    def to_dict(self) -> dict[str, float | int]:
        """Plain values, for ``--json``."""
        return {
            "trades": self.trades,
            "seconds": round(self.seconds, 4),
            "trades_per_second": round(self.trades_per_second),
            "orjson_per_second": round(self.orjson_per_second),
            "parse_per_second": round(self.parse_per_second),
            "batches": self.batches,
        }


def agg_trade_frames(n: int, symbols: Sequence[str] = ("BTCUSDT", "ETHUSDT")) -> list[bytes]:
    """``n`` combined-stream aggTrade frames, round-robin over ``symbols``, ids consecutive
    per symbol (so the stream sees no gap), a trade a millisecond."""
    frames = []
    for i in range(n):
        symbol = symbols[i % len(symbols)]
        agg_id = i // len(symbols) + 1
        time_ms = START_MS + i
        event = {
            "e": "aggTrade",
            "E": time_ms + 2,
            "s": symbol,
            "a": agg_id,
            "p": f"{40000 + (i % 997) / 100:.2f}",
            "q": f"{0.001 + (i % 89) / 1000:.3f}",
            "f": agg_id * 3,
            "l": agg_id * 3 + 2,
            "T": time_ms,
            "m": i % 3 == 0,
            "M": True,
        }
        frames.append(orjson.dumps({"stream": f"{symbol.lower()}@aggTrade", "data": event}))
    return frames


def _wire(frames: Sequence[bytes]) -> bytes:
    """``frames`` as unmasked WebSocket text frames (what a server sends)."""
    parts = []
    for payload in frames:
        size = len(payload)
        if size < 126:
            parts.append(struct.pack("!BB", 0x81, size))
        elif size < 65536:
            parts.append(struct.pack("!BBH", 0x81, 126, size))
        else:
            parts.append(struct.pack("!BBQ", 0x81, 127, size))
        parts.append(payload)
    return b"".join(parts)


def _serve(wire: bytes, conn: Connection) -> None:
    """The child: serve ``wire`` to the first connection, then close it."""
    from websockets.asyncio.server import ServerConnection, serve

    async def main() -> None:
        done = asyncio.Event()

        async def handle(ws: ServerConnection) -> None:
            # One raw write after the handshake: the frames are already in wire format, and
            # the transport buffers what the socket does not take at once (the client's
            # max_queue, not this, is what bounds memory on the reading side).
            ws.transport.write(wire)
            await ws.close()
            done.set()

        async with serve(handle, "127.0.0.1", 0, compression=None) as server:
            conn.send(next(iter(server.sockets)).getsockname()[1])
            await done.wait()

    asyncio.run(main())


def ingest_rate(n: int = 300_000, symbols: Sequence[str] = ("BTCUSDT", "ETHUSDT")) -> IngestRate:
    """Stream ``n`` frames over a real 127.0.0.1 WebSocket through :class:`BinanceTradeStream`.

    Example::

        >>> ingest_rate(300_000).trades_per_second  # doctest: +SKIP
        190000.0
    """
    frames = agg_trade_frames(n, symbols)
    started = time.perf_counter()
    for frame in frames:
        orjson.loads(frame)
    orjson_rate = n / (time.perf_counter() - started)
    bad, buffer = BadInput("bench"), TradeBuffer()
    streams = frozenset(f"{s.lower()}@aggTrade" for s in symbols)
    started = time.perf_counter()
    for frame in frames:
        row = parse_agg_trade_row(frame, bad, streams)
        if row is not None:
            buffer.append_row(row)
    buffer.drain()
    parse_rate = n / (time.perf_counter() - started)

    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=_serve, args=(_wire(frames), theirs), daemon=True)
    child.start()
    try:
        if not ours.poll(30):
            raise RuntimeError("the benchmark's stream server did not start")
        port = ours.recv()
        seconds, batches, trades = asyncio.run(_consume(f"ws://127.0.0.1:{port}", symbols, n))
    finally:
        child.join(10)
        if child.is_alive():
            child.kill()
    return IngestRate(trades, seconds, trades / seconds, orjson_rate, parse_rate, batches)


async def _consume(url: str, symbols: Sequence[str], n: int) -> tuple[float, int, int]:
    stream = BinanceTradeStream(symbols, base_url=url)
    batches = trades = 0
    started = 0.0
    async with stream:
        async for event in stream:
            if not started:
                started = time.perf_counter()
            if isinstance(event, TradeBatch):
                batches += 1
                trades += len(event)
            if trades >= n:
                break
    # The clock starts at the first batch: the first frame's trades are not timed.
    return time.perf_counter() - started, batches, trades
