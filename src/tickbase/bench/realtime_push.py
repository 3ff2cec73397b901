"""Trade → ``kline`` push latency over a real local WebSocket (``tickbase bench realtime``).

Set-up
    In this process, as ``tickbase up`` runs them: a :class:`RealtimePipeline` (one shard
    process, ``1m`` bars, no database writer) reading a :class:`LiveTrades` source, put
    in ``app.extensions["realtime"]``; the gateway (:func:`create_gateway` on uvicorn,
    127.0.0.1, a free port) over the open ``app``; and one ``websockets`` client with an
    admin token, subscribed to the symbol's ``1m`` series before the first trade.

What is timed, exactly
    :class:`LiveTrades` yields one trade at a time with the wall-clock time of now
    (``live=True``: bars also close by the clock) and a new trade id each, and records
    :func:`time.time` just before handing each trade to the pipeline. A ``kline``
    update whose ``lastTradeId`` is higher than any seen before is the first push
    showing that trade and every one fed since the previous such update (ids are
    consecutive). Two figures, on one clock in one process:

    - ``push_*``: per update, its receive time minus the feed time of its newest
      trade (``lastTradeId``): the path's own cost, without the wait for the pull;
    - ``trade_push_*``: per trade, the receive time of the first update showing it
      minus its own feed time: what a client sees, the wait for the next pull
      included. The issue's target applies to this one.

    Updates that show no new trade (a bar turning final) are not counted. The first :data:`WARMUP_SECONDS` are discarded (the shard
    process starting; trades begin once it answered its first pulls). Percentiles are
    nearest-rank.

    With the default 100 ms loop period the latency is at most one period (the trade
    waits for the next pull) plus the pull, the reader and the send; the issue's
    target is p99 ≤ 150 ms. Like every benchmark here, the figures are printed, never
    asserted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from typing import Final

import numpy as np
import orjson
from websockets.asyncio.client import connect

from tickbase.app import App
from tickbase.bench.gateway_process import free_port
from tickbase.bench.harness import percentile
from tickbase.gateway.app import create_gateway, serve
from tickbase.gateway.auth import TokenStore
from tickbase.gateway.kline_ws import HANDLER_NAME
from tickbase.marketdata.realtime.loop import PERIOD_SECONDS
from tickbase.marketdata.realtime.pipeline import RealtimePipeline
from tickbase.marketdata.realtime.trades import TradeBatch

__all__ = ["TARGET_PUSH_P99_MS", "LiveTrades", "push_latency"]

TARGET_PUSH_P99_MS: Final = 150.0
WARMUP_SECONDS: Final = 1.0
SYMBOL: Final = "BENCHUSDT"


class LiveTrades:
    """A live-like source: ``trades_per_second`` trades of one symbol, each timed now.

    Example::

        source = LiveTrades("BTCUSDT", trades_per_second=200, seconds=10)
        async for batch in source:          # one-trade TradeBatch, time = now
            ...
        source.fed_at[batch.agg_id[0]]      # time.time() when it was handed over
    """

    live = True

    def __init__(
        self, symbol: str, *, trades_per_second: float, seconds: float, name: str = "bench"
    ) -> None:
        self.symbol = symbol
        self.every = 1.0 / trades_per_second
        self.seconds = seconds
        self.name = name
        self.fed_at: dict[int, float] = {}
        self.go = asyncio.Event()
        """Set to start trading (the bench subscribes first)."""
        self._closed = False
        self._price = 100.0

    async def prepare(self) -> None:
        """Nothing to read ahead: trades are made as they go."""

    def close(self) -> None:
        self._closed = True

    async def __aiter__(self) -> AsyncIterator[TradeBatch]:
        await self.go.wait()
        started = time.monotonic()
        for trade_id in itertools.count(1):
            # Paced on the schedule, not on the sleeps: the rate holds under load.
            due = started + trade_id * self.every
            if due - started > self.seconds or self._closed:
                return
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            now = time.time()
            self._price += 0.01 if trade_id % 3 else -0.02
            batch = TradeBatch(
                self.symbol,
                np.array([int(now * 1000)], dtype=np.int64),
                np.array([self._price]),
                np.array([0.5]),
                np.array([trade_id], dtype=np.int64),
                buyer_maker=np.array([trade_id % 2 == 0]),
            )
            self.fed_at[trade_id] = time.time()
            yield batch


async def push_latency(
    app: App,
    *,
    seconds: float = 10.0,
    trades_per_second: float = 200.0,
    period: float = PERIOD_SECONDS,
) -> dict[str, float]:
    """Trade → ``kline`` push latency p50/p99 in ms over a real local WebSocket.

    ``app`` must be open (its database migrated: the gateway authenticates the client
    with a token made here). Returns ``pushes``, ``trades``, ``push_p50_ms``,
    ``push_p99_ms``, ``push_max_ms``, ``trade_push_p50_ms``, ``trade_push_p99_ms``,
    ``trade_push_max_ms`` (see the module), ``period_ms``, ``target_p99_ms`` (for
    ``trade_push_p99_ms``), and ``handler_mean_ms`` / ``handler_max_ms``: the
    ``ws-kline`` handler's time per snapshot in the pipeline's serial reader.

    Example::

        async with App(dsn) as app:
            figures = await push_latency(app, seconds=10)
        figures["trade_push_p99_ms"]    # about one loop period plus a few ms
    """
    source = LiveTrades(SYMBOL, trades_per_second=trades_per_second, seconds=seconds)
    pipeline = RealtimePipeline(
        source, None, intervals=("1m",), workers=1, symbols=(SYMBOL,), period=period
    )
    if "realtime" in app.extensions:
        raise RuntimeError("a real-time pipeline runs in this process already")
    port = free_port()
    token = (await TokenStore(app.pool).create("admin", name=f"bench-push-{port}")).token
    stop, started = asyncio.Event(), asyncio.Event()
    api = create_gateway(app)
    app.extensions["realtime"] = pipeline
    server = asyncio.create_task(serve(api, port=port, stop=stop, started=started))
    latencies: list[float] = []
    per_trade: list[float] = []
    try:
        async with asyncio.timeout(15):
            await started.wait()
        await pipeline.start()
        async with connect(
            f"ws://127.0.0.1:{port}/ws", additional_headers={"Authorization": f"Bearer {token}"}
        ) as ws:
            await ws.send(
                orjson.dumps(
                    {
                        "type": "request",
                        "requestId": "kline",
                        "action": "subscribe",
                        "params": {"channel": "kline", "symbol": SYMBOL, "interval": "1m"},
                    }
                ).decode()
            )
            async with asyncio.timeout(10):
                while orjson.loads(await ws.recv()).get("type") != "success":
                    pass
            await _answering(pipeline)
            source.go.set()
            begun = time.time()
            newest = 0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds + 2.0):
                    while True:
                        frame = orjson.loads(await ws.recv())
                        received = time.time()
                        if frame.get("type") != "update":
                            continue
                        last = int(frame["content"]["lastTradeId"])
                        if last <= newest:
                            continue  # no new trade in it (a bar turning final)
                        if received - begun >= WARMUP_SECONDS:
                            latencies.append((received - source.fed_at[last]) * 1000)
                            per_trade.extend(
                                (received - source.fed_at[t]) * 1000
                                for t in range(newest + 1, last + 1)
                            )
                        newest = last
                        if pipeline.source_done.is_set() and newest >= len(source.fed_at):
                            break  # every trade fed has been pushed
        handler = pipeline.reader.stats.get(HANDLER_NAME)
    finally:
        app.extensions.pop("realtime", None)
        await pipeline.stop()
        stop.set()
        await asyncio.wait_for(server, 15)
    if not latencies:
        raise RuntimeError("no kline update arrived: the pipeline pushed nothing")
    figures = _figures(latencies, per_trade, len(source.fed_at), period)
    if handler is not None and handler.calls:
        # What the push costs the pipeline's serial reader, per snapshot.
        figures["handler_mean_ms"] = handler.total_seconds / handler.calls * 1000
        figures["handler_max_ms"] = handler.max_seconds * 1000
    return figures


async def _answering(pipeline: RealtimePipeline, timeout: float = 30.0) -> None:
    """Until every shard process answered a few pulls: a fresh process misses its first
    ones (importing numpy), and that is start-up, not push latency."""
    deadline = time.monotonic() + timeout
    while not all(pipeline.loop.shard_stats[s.name].pulls >= 3 for s in pipeline.shards):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the shard processes did not answer within {timeout:g} s")
        await asyncio.sleep(0.02)


def _figures(
    latencies: list[float], per_trade: list[float], trades: int, period: float
) -> dict[str, float]:
    return {
        "pushes": len(latencies),
        "trades": trades,
        "push_p50_ms": percentile(latencies, 50),
        "push_p99_ms": percentile(latencies, 99),
        "push_max_ms": max(latencies),
        "trade_push_p50_ms": percentile(per_trade, 50),
        "trade_push_p99_ms": percentile(per_trade, 99),
        "trade_push_max_ms": max(per_trade),
        "period_ms": period * 1000,
        "target_p99_ms": TARGET_PUSH_P99_MS,
    }
