"""A fake Binance trading now: one deterministic trade tape served live over a real
WebSocket (aggTrade frames, at wall-clock times) and as REST klines computed from it.

The tape is the exchange's truth: symbol ``s``'s aggregate trade ``a`` happens at
``t0_ms + a * step_ms`` whether or not anybody is connected, with a price, quantity and
side that are functions of ``a`` (:meth:`Tape.trade`). A stream connection is sent the
trades from the moment it opens (as Binance does: what happened while a client was away
is not replayed). ``skip`` and ``disconnect_after`` count ids from the first one sent
(the client's start-up time is unknown): ids ``first + k`` for ``k`` in ``skip[symbol]``
are never sent (a gap on a live connection); after ``first + disconnect_after`` the
connection is closed once, and the next one resumes no sooner than ``resume_gap`` ids
later (the trades made while the client reconnected: a gap it must find). ``GET /api/v3/klines`` aggregates every trade of the tape that
has happened by then — the skipped and the unsent included — with Binance's field
conventions (:func:`tape_klines`), so a backfilled bar is checkably the exchange's::

    with LiveBinance(Tape(("AAA", "BBB"), t0_ms=now_ms), skip={"BBB": range(40, 60)}) as fake:
        env["TICKBASE_BINANCE_WS_URL"], env["TICKBASE_BINANCE_URL"] = fake.ws_url, fake.url
        ...
        fake.tape.klines("AAA", "1s")  # the truth, to compare with what was stored
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from websockets.asyncio.server import ServerConnection, serve

from tests.support.fake_binance import agg_trade, envelope
from tests.support.fake_exchange import FakeExchange
from tickbase.marketdata.realtime.kline import interval_ms


@dataclass(frozen=True)
class Tape:
    """Trades of ``symbols``: id ``a`` (from 1) at ``t0_ms + a * step_ms``, every symbol."""

    symbols: tuple[str, ...]
    t0_ms: int
    step_ms: int = 25

    def time_ms(self, agg_id: int) -> int:
        return self.t0_ms + agg_id * self.step_ms

    def trade(self, symbol: str, agg_id: int) -> dict[str, Any]:
        """The aggTrade event of id ``agg_id`` (prices differ per symbol and id)."""
        base = 100 + 50 * self.symbols.index(symbol)
        return agg_trade(
            symbol,
            agg_id,
            time_ms=self.time_ms(agg_id),
            price=f"{base + (agg_id * 7 % 31) / 4:.2f}",
            qty=f"{0.5 * (1 + agg_id % 3):.1f}",
            buyer_maker=agg_id % 2 == 0,
        )

    def happened(self, now_ms: int) -> int:
        """The last id whose time is at or before ``now_ms`` (0: none yet)."""
        return max(0, (now_ms - self.t0_ms) // self.step_ms)

    def klines(self, symbol: str, interval: str, until_ms: int | None = None) -> list[list[Any]]:
        """Binance REST rows of every bar of the trades up to ``until_ms`` (default now)."""
        now = int(time.time() * 1000) if until_ms is None else until_ms
        trades = [self.trade(symbol, a) for a in range(1, self.happened(now) + 1)]
        return tape_klines(trades, interval)


def tape_klines(trades: Iterable[Mapping[str, Any]], interval: str) -> list[list[Any]]:
    """Binance's kline rows of aggTrade events (in id order): open time, OHLC, volume, close
    time (open + interval − 1 ms), quote volume, trade count (plain trades: ``l − f + 1``),
    taker-buy base and quote volume (trades whose buyer is not the maker)."""
    step = interval_ms(interval)
    bars: dict[int, list[Any]] = {}
    for t in trades:
        price, qty = float(t["p"]), float(t["q"])
        opens = int(t["T"]) // step * step
        taker = not t["m"]
        bar = bars.get(opens)
        if bar is None:
            bars[opens] = [opens, price, price, price, price, qty, opens + step - 1, price * qty,
                           int(t["l"]) - int(t["f"]) + 1, qty if taker else 0.0,
                           price * qty if taker else 0.0]  # fmt: skip
            continue
        bar[2], bar[3], bar[4] = max(bar[2], price), min(bar[3], price), price
        bar[5] += qty
        bar[7] += price * qty
        bar[8] += int(t["l"]) - int(t["f"]) + 1
        if taker:
            bar[9] += qty
            bar[10] += price * qty
    return [bars[k] for k in sorted(bars)]


class _TapeExchange(FakeExchange):
    """The fake exchange whose ``/api/v3/klines`` answers from the tape."""

    def __init__(self, tape: Tape) -> None:
        super().__init__()
        self.tape = tape

    async def _binance_klines(self, request: Request) -> Response:
        query = request.query_params
        symbol, interval = query.get("symbol", ""), query.get("interval", "")
        start = int(query.get("startTime", "0"))
        end = int(query.get("endTime", str(2**62)))
        limit = min(max(int(query.get("limit", "500")), 1), 1000)
        rows = [r for r in self.tape.klines(symbol, interval) if start <= r[0] <= end][:limit]
        # Binance sends the prices and volumes as strings, times and counts as numbers.
        wire = [
            [r[0], *(repr(x) for x in r[1:6]), r[6], repr(r[7]), r[8], repr(r[9]), repr(r[10]),
             "0"]
            for r in rows
        ]  # fmt: skip
        return JSONResponse(wire)


@dataclass
class LiveBinance:
    """The live fake (see the module); ``with LiveBinance(tape) as fake`` serves
    ``fake.ws_url`` (the stream) and ``fake.url`` (REST)."""

    tape: Tape
    skip: Mapping[str, Iterable[int]] = field(default_factory=dict)
    disconnect_after: int | None = None
    resume_gap: int = 8
    first_id: int | None = None
    """The first id sent (over every connection)."""
    sent: dict[str, list[int]] = field(default_factory=dict)
    """Per symbol, the ids sent, over all connections."""
    connections: int = 0
    ws_port: int = 0
    _skip: dict[str, frozenset[int]] = field(default_factory=dict)
    _resume_at: int | None = None
    _rest: _TapeExchange | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _stop: asyncio.Event | None = None

    @property
    def url(self) -> str:
        assert self._rest is not None
        return self._rest.url

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}"

    def __enter__(self) -> LiveBinance:
        self._skip = {s: frozenset(ids) for s, ids in self.skip.items()}
        self.sent = {s: [] for s in self.tape.symbols}
        self._rest = _TapeExchange(self.tape)
        self._rest.start()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the live fake stream did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)
        if self._rest is not None:
            self._rest.stop()

    def _serve(self, ready: threading.Event) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            async with serve(self._handle, "127.0.0.1", 0, compression=None) as server:
                self.ws_port = next(iter(server.sockets)).getsockname()[1]
                ready.set()
                await self._stop.wait()
                server.close(close_connections=True)

        asyncio.run(main())

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        # Trades from the moment of connecting on: nothing that happened before is sent.
        agg_id = self.tape.happened(int(time.time() * 1000)) + 1
        if self.first_id is None:
            self.first_id = agg_id
        elif self._resume_at is not None:
            agg_id = max(agg_id, self._resume_at)
        first = self.first_id
        with contextlib.suppress(Exception):
            while True:
                delay = self.tape.time_ms(agg_id) / 1000 - time.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                for symbol in self.tape.symbols:
                    if agg_id - first in self._skip.get(symbol, ()):
                        continue
                    await ws.send(envelope(self.tape.trade(symbol, agg_id)), text=True)
                    self.sent[symbol].append(agg_id)
                if self.disconnect_after is not None and agg_id - first == self.disconnect_after:
                    self.disconnect_after = None  # once
                    self._resume_at = agg_id + 1 + self.resume_gap
                    await ws.close(1001, "stream ends (fake)")
                    return
                agg_id += 1
