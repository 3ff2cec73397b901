"""The WebSocket ``kline`` channel over a real uvicorn on 127.0.0.1 (issue 17).

A :class:`RealtimePipeline` (one real shard process) replays a small generated trade
file shifted to now, in the test's process, and sits in ``app.extensions["realtime"]``
as ``tickbase up`` puts it there. Real ``websockets`` clients subscribe; the frames
they get are compared with the pipeline's own bars.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import tickbase
from tests.support.gateway import Client, RunningGateway, gateway_test_app, running_gateway
from tests.support.realtime import GatedSource, start_warm, write_trades
from tickbase.bench.realtime_push import push_latency
from tickbase.gateway.kline_ws import KLINE_CHANNEL, kline_content
from tickbase.marketdata.realtime.pipeline import RealtimePipeline
from tickbase.marketdata.realtime.replay_source import ReplaySource
from tickbase.marketdata.realtime.series import SeriesBars

SYMBOLS = ("BTCUSDT", "ETHUSDT")
INDICATORS = (
    "ema21", "ema55", "rsi14", "macd", "macdSignal", "macdHist",
    "bbUpper", "bbMiddle", "bbLower", "atr14",
)  # fmt: skip


def closed_content(pipeline: RealtimePipeline, bar: Any) -> dict[str, Any]:
    """A closed bar's update content, with the indicators the pipeline computed."""
    return kline_content(bar, pipeline.indicators.at(bar.symbol, bar.interval, bar.open_time))


FIELDS = {
    "symbol",
    "interval",
    "openTime",
    "closeTime",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "quoteVolume",
    "tradeCount",
    "takerBuyBaseVolume",
    "takerBuyQuoteVolume",
    "firstTradeId",
    "lastTradeId",
    "isFinal",
}


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[tickbase.App]:
    made = gateway_test_app(database_url)
    async with made:
        yield made


@pytest.fixture
async def gw(app: tickbase.App) -> AsyncIterator[RunningGateway]:
    async with running_gateway(app, worker=False) as running:
        yield running


def replay_pipeline(path: Path, *, speed: float = 60.0) -> RealtimePipeline:
    """Three minutes of trades in three seconds, shifted to now (from when the source is
    let in: :func:`start_warm`); no database writer."""
    source = GatedSource(ReplaySource(path, speed=speed, shift_to_now=True))
    return RealtimePipeline(
        source, None, intervals=("1m", "5m"), workers=1, symbols=SYMBOLS, timeout=0.09
    )


async def subscribe(client: Client, request_id: str, **params: Any) -> dict[str, Any]:
    await client.request(request_id, "subscribe", channel=KLINE_CHANNEL, **params)
    return await client.until_final(request_id)


async def test_updates_carry_the_pipelines_bars_and_each_final_bar_once(
    app: tickbase.App, gw: RunningGateway, tmp_path: Path
) -> None:
    trades = write_trades(tmp_path / "trades.csv", SYMBOLS, minutes=3, per_minute=30)
    pipeline = replay_pipeline(trades)
    app.extensions["realtime"] = pipeline
    async with gw.ws() as ws, gw.ws() as other:
        client, late = Client(ws, gw.frames), Client(other, gw.frames)
        ok = await subscribe(client, "k1", symbol="BTCUSDT", interval="1m")
        assert ok["type"] == "success"
        assert ok["data"]["klines"] == [{"symbol": "BTCUSDT", "interval": "1m"}]
        assert "kline" in ok["data"]["channels"]
        try:
            await start_warm(pipeline, pipeline.source)  # type: ignore[arg-type]
            updates: list[dict[str, Any]] = []
            async with asyncio.timeout(30):
                # The source ends after its three minutes: every bar is final then,
                # and the client has them all.
                while not _all_final(pipeline, updates):
                    frame = await client.next(timeout=15)
                    if frame["type"] == "update":
                        assert frame["channel"] == "kline"
                        updates.append(frame["content"])
                    if any(u["isFinal"] for u in updates) and not late.received:
                        # A second connection joins mid-run, for two series, and then
                        # reads nothing until the end (its frames wait in the socket).
                        for n, symbol in enumerate(SYMBOLS):
                            joined = await subscribe(late, f"l{n}", symbol=symbol, interval="1m")
                            assert joined["type"] == "success"
            series = _series(pipeline)
            async with asyncio.timeout(15):
                # (The updates that came before the second success are in received too.)
                while sum(
                    1 for u in _updates(late) if u["isFinal"] and u["symbol"] == "BTCUSDT"
                ) < (len(series.finals)):
                    await late.next()
            late_updates = _updates(late)
        finally:
            await pipeline.stop()
            del app.extensions["realtime"]

    # A forming bar has Binance's fields; a closed one also its indicators (the six,
    # null while they warm up: three bars are too few for any), as the pipeline's
    # built-in indicators reader computed them.
    assert all(set(u) == FIELDS for u in updates if not u["isFinal"])
    assert all(set(u) == FIELDS | {"indicators"} for u in updates if u["isFinal"])
    assert all(u["indicators"] == dict.fromkeys(INDICATORS) for u in updates if u["isFinal"])
    # The late subscriber was caught up with the kept final bars: it has them all, once.
    late_btc = [u for u in late_updates if u["symbol"] == "BTCUSDT" and u["isFinal"]]
    assert late_btc == [closed_content(pipeline, bar) for bar in series.finals]
    assert {u["symbol"] for u in late_updates} == set(SYMBOLS)
    assert {(u["symbol"], u["interval"]) for u in updates} == {("BTCUSDT", "1m")}
    finals = [u for u in updates if u["isFinal"]]
    # Every final bar the pipeline made, exactly once, equal in every field, in order.
    assert finals == [closed_content(pipeline, bar) for bar in series.finals]
    assert len({f["openTime"] for f in finals}) == len(finals) >= 3
    # Against the file: every BTCUSDT trade is in exactly one final bar.
    assert sum(f["tradeCount"] for f in finals) == 90
    assert sum(f["volume"] for f in finals) == pytest.approx(_volume(trades, "BTCUSDT"))
    assert all(f["closeTime"] == f["openTime"] + 60_000 - 1 for f in finals)
    assert all(f["openTime"] % 60_000 == 0 for f in finals)
    # Forming bars came too (the bars grew in place), and no state was sent twice.
    assert len(updates) > len(finals)
    states = [json.dumps(u, sort_keys=True) for u in updates]
    assert len(set(states)) == len(states)
    # Nothing about a bar after its final state.
    closed: set[int] = set()
    for update in updates:
        assert update["openTime"] not in closed
        if update["isFinal"]:
            closed.add(update["openTime"])


async def test_unknown_symbol_or_interval_names_the_allowed_values(
    app: tickbase.App, gw: RunningGateway, tmp_path: Path
) -> None:
    app.extensions["realtime"] = replay_pipeline(write_trades(tmp_path / "t.csv", SYMBOLS))
    async with gw.ws() as ws:
        client = Client(ws, gw.frames)
        symbol = await subscribe(client, "s", symbol="DOGEUSDT", interval="1m")
        assert symbol["type"] == "error" and symbol["error"]["code"] == "UNKNOWN_SYMBOL"
        assert "DOGEUSDT" in symbol["error"]["message"]
        assert symbol["error"]["details"] == {"symbols": ["BTCUSDT", "ETHUSDT"]}
        interval = await subscribe(client, "i", symbol="BTCUSDT", interval="4h")
        assert interval["error"]["code"] == "UNKNOWN_INTERVAL"
        assert interval["error"]["details"] == {"intervals": ["1m", "5m"]}
        missing = await subscribe(client, "m", symbol="BTCUSDT")
        assert missing["error"]["code"] == "VALIDATION_ERROR"
        # The connection still serves, and the pipeline is described over HTTP.
        assert (await subscribe(client, "ok", symbol="ETHUSDT", interval="5m"))["type"] == (
            "success"
        )
    async with gw.http() as http:
        described = (await http.get("/api/v1/realtime")).json()
    assert described == {
        "running": True,
        "symbols": ["BTCUSDT", "ETHUSDT"],
        "intervals": ["1m", "5m"],
        "source": "replay",
        "live": True,
        "maxSubscriptions": 50,
    }


async def test_without_a_pipeline_the_error_says_so(gw: RunningGateway) -> None:
    async with gw.ws() as ws:
        client = Client(ws, gw.frames)
        refused = await subscribe(client, "k", symbol="BTCUSDT", interval="1m")
    assert refused["type"] == "error" and refused["error"]["code"] == "REALTIME_NOT_RUNNING"
    assert "real-time pipeline is not running on this node" in refused["error"]["message"]
    async with gw.http(gw.viewer) as http:
        answer = await http.get("/api/v1/realtime")
    assert answer.status_code == 200
    assert answer.json()["running"] is False and answer.json()["symbols"] == []
    async with gw.http("not-a-token") as http:
        assert (await http.get("/api/v1/realtime")).status_code == 401


async def test_the_subscription_cap_is_enforced_per_connection(
    app: tickbase.App, gw: RunningGateway, tmp_path: Path
) -> None:
    app.extensions["realtime"] = replay_pipeline(write_trades(tmp_path / "t.csv", SYMBOLS))
    gw.api.state.klines.max_per_connection = 3
    series = [(s, i) for s in SYMBOLS for i in ("1m", "5m")]
    async with gw.ws() as ws, gw.ws() as other:
        client = Client(ws, gw.frames)
        for n, (symbol, interval) in enumerate(series[:3]):
            assert (await subscribe(client, f"s{n}", symbol=symbol, interval=interval))[
                "type"
            ] == "success"
        # The same series again is no new subscription.
        again = await subscribe(client, "again", symbol="BTCUSDT", interval="1m")
        assert len(again["data"]["klines"]) == 3
        refused = await subscribe(client, "s3", symbol=series[3][0], interval=series[3][1])
        assert refused["error"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
        assert "at most 3 kline subscriptions per connection" in refused["error"]["message"]
        # Another connection has its own cap.
        second = Client(other, gw.frames)
        assert (await subscribe(second, "o", symbol=series[3][0], interval=series[3][1]))[
            "type"
        ] == "success"
        # Unsubscribing frees a place.
        await client.request("u", "unsubscribe", channel="kline", symbol="BTCUSDT", interval="1m")
        left = await client.until_final("u")
        assert left["type"] == "success" and len(left["data"]["klines"]) == 2
        assert (await subscribe(client, "s4", symbol=series[3][0], interval=series[3][1]))[
            "type"
        ] == "success"
        await client.request("all", "unsubscribe", channel="kline")
        none = await client.until_final("all")
        assert none["data"]["klines"] == [] and "kline" not in none["data"]["channels"]
    assert gw.api.state.klines.subscriptions == 0  # closed connections are forgotten


async def test_push_latency_measures_trade_to_push(app: tickbase.App) -> None:
    figures = await push_latency(app, seconds=2.0, trades_per_second=200)
    assert figures["pushes"] >= 5
    assert 0 < figures["push_p50_ms"] <= figures["push_p99_ms"] < 2000
    assert figures["push_p50_ms"] <= figures["trade_push_p50_ms"] <= figures["trade_push_p99_ms"]
    assert figures["trades"] >= 300


def _updates(client: Client) -> list[dict[str, Any]]:
    return [f["content"] for f in client.received if f["type"] == "update"]


def _series(pipeline: RealtimePipeline) -> SeriesBars:
    _, snapshot = pipeline.loop.channel.latest()
    assert snapshot is not None
    series = snapshot.values[("BTCUSDT", "1m")]
    assert isinstance(series, SeriesBars)
    return series


def _all_final(pipeline: RealtimePipeline, updates: list[dict[str, Any]]) -> bool:
    if not pipeline.source_done.is_set() or pipeline.loop.channel.latest()[1] is None:
        return False
    series = _series(pipeline)
    finals = sum(1 for u in updates if u["isFinal"])
    return series.forming is None and finals == len(series.finals) > 0


def _volume(path: Path, symbol: str) -> float:
    rows = [line.split(",") for line in path.read_text().splitlines()[1:]]
    return sum(float(qty) for _, _, qty, sym in rows if sym == symbol)
