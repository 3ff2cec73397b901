"""A fake Binance combined stream: a real WebSocket server on 127.0.0.1 speaking aggTrade.

Each accepted connection plays the next queued script (then, with none left, holds the
connection open and silent)::

    async with FakeBinanceStream() as fake:
        fake.script(*agg_frames("BTCUSDT", range(1, 6)), then="close")  # 1st connection
        fake.script(*agg_frames("BTCUSDT", range(9, 12)))                # 2nd: holds
        stream = BinanceTradeStream(["BTCUSDT"], base_url=fake.url)
        ...
        fake.paths  # the request path of every connection, in order

A script is frames (``bytes``/``str``, sent as text frames in order: junk included) and
what follows them: ``"hold"`` (stay open until the client leaves), ``"close"`` (a close
frame, code 1001 as when Binance ends a 24 h connection) or ``"drop"`` (the TCP
connection cut without a close frame). ``ping=True`` makes the server ping after the
frames and wait for the pong (counted in :attr:`FakeBinanceStream.pongs`).

The REST half (``GET /api/v3/klines`` with ``startTime``/``endTime``) is
:class:`tests.support.fake_exchange.FakeExchange`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve

Then = Literal["hold", "close", "drop"]


def agg_trade(
    symbol: str,
    agg_id: int,
    *,
    time_ms: int,
    price: str = "100.5",
    qty: str = "0.25",
    buyer_maker: bool = False,
) -> dict[str, object]:
    """One aggTrade event as Binance sends it (``f``/``l`` cover 2 plain trades)."""
    return {
        "e": "aggTrade",
        "E": time_ms + 3,
        "s": symbol,
        "a": agg_id,
        "p": price,
        "q": qty,
        "f": agg_id * 2,
        "l": agg_id * 2 + 1,
        "T": time_ms,
        "m": buyer_maker,
        "M": True,
    }


def envelope(event: dict[str, object]) -> bytes:
    """``event`` wrapped in the combined-stream envelope, as a frame."""
    return orjson.dumps({"stream": f"{str(event['s']).lower()}@aggTrade", "data": event})


def agg_frames(
    symbol: str, ids: Iterable[int], *, start_ms: int = 1_700_000_000_000, step_ms: int = 10
) -> list[bytes]:
    """Frames of aggregate trades ``ids``; trade ``a`` happens at ``start_ms + a * step_ms``
    and costs ``100 + a/100`` (so every trade is told apart)."""
    return [
        envelope(agg_trade(symbol, a, time_ms=start_ms + a * step_ms, price=f"{100 + a / 100:.2f}"))
        for a in ids
    ]


@dataclass
class Script:
    """What one connection is sent."""

    frames: Sequence[bytes | str]
    then: Then = "hold"
    ping: bool = False


@dataclass
class FakeBinanceStream:
    """The fake stream server; ``async with FakeBinanceStream() as fake`` serves ``fake.url``."""

    scripts: deque[Script] = field(default_factory=deque)
    paths: list[str] = field(default_factory=list)
    pongs: int = 0
    sent: int = 0
    _server: Server | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:<port>`` (the stream's base URL)."""
        assert self._server is not None, "the fake stream is not serving"
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    def script(self, *frames: bytes | str, then: Then = "hold", ping: bool = False) -> None:
        """Queue what the next connection not yet scripted is sent."""
        self.scripts.append(Script(frames, then, ping))

    async def __aenter__(self) -> FakeBinanceStream:
        self._server = await serve(self._handle, "127.0.0.1", 0, compression=None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close(close_connections=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _handle(self, ws: ServerConnection) -> None:
        self.paths.append(ws.request.path if ws.request is not None else "")
        script = self.scripts.popleft() if self.scripts else Script(())
        for frame in script.frames:
            await ws.send(frame, text=True)
            self.sent += 1
        if script.ping:
            pong = await ws.ping()
            await asyncio.wait_for(pong, 5)
            self.pongs += 1
        if script.then == "close":
            await ws.close(1001, "stream ends (fake)")
        elif script.then == "drop":
            ws.transport.abort()
        else:
            await ws.wait_closed()
