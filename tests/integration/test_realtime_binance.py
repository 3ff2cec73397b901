"""The Binance live trade source over real sockets: a fake combined stream on 127.0.0.1
(:mod:`tests.support.fake_binance`) that disconnects, skips ids, replays and sends junk,
and the gap backfill over the fake REST klines (:mod:`tests.support.fake_exchange`) into a
real database.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import numpy as np
import orjson
import pytest

import tickbase
from tests.support.fake_binance import FakeBinanceStream, agg_frames, agg_trade, envelope
from tests.support.fake_exchange import FakeExchange, Fault
from tests.support.grid import grid_klines_between
from tickbase.marketdata.collector import Kline
from tickbase.marketdata.realtime.backfill import GapBackfill
from tickbase.marketdata.realtime.binance_stream import BinanceTradeStream, TradeGap
from tickbase.marketdata.realtime.stream_bench import ingest_rate
from tickbase.marketdata.realtime.trades import TradeBatch
from tickbase.marketdata.store import KlineStore

START = 1_700_000_000_000
STEP = 10  # ms between trade ids in agg_frames


def stream_of(fake: FakeBinanceStream, *symbols: str, **options: float) -> BinanceTradeStream:
    return BinanceTradeStream(
        symbols or ("BTCUSDT",),
        base_url=fake.url,
        reconnect_first=options.pop("reconnect_first", 0.01),
        reconnect_max=options.pop("reconnect_max", 0.05),
        **options,  # type: ignore[arg-type]
    )


async def collect(
    stream: BinanceTradeStream, *, trades: int, gaps: int = 0, timeout: float = 10.0
) -> list[TradeBatch | TradeGap]:
    """Events until ``trades`` trades and ``gaps`` gaps were yielded."""
    events: list[TradeBatch | TradeGap] = []

    async def run() -> None:
        async for event in stream:
            events.append(event)
            seen = sum(len(e) for e in events if isinstance(e, TradeBatch))
            if seen >= trades and sum(isinstance(e, TradeGap) for e in events) >= gaps:
                return

    await asyncio.wait_for(run(), timeout)
    return events


def ids_of(events: list[TradeBatch | TradeGap], symbol: str = "BTCUSDT") -> list[int]:
    out: list[int] = []
    for event in events:
        if isinstance(event, TradeBatch) and event.symbol == symbol:
            assert event.agg_id is not None
            out.extend(event.agg_id.tolist())
    return out


@pytest.fixture
async def fake() -> AsyncIterator[FakeBinanceStream]:
    async with FakeBinanceStream() as server:
        yield server


# ---- (a) frames become batches -------------------------------------------------------


async def test_frames_arrive_as_batches_equal_to_what_was_sent(fake: FakeBinanceStream) -> None:
    btc = [
        agg_trade("BTCUSDT", a, time_ms=START + a, price=f"{30000 + a}.5", buyer_maker=a % 2 == 0)
        for a in range(1, 201)
    ]
    eth = [agg_trade("ETHUSDT", a, time_ms=START + a, price="2000.25") for a in range(50, 150)]
    frames = [envelope(e) for pair in zip(btc, eth, strict=False) for e in pair]
    frames += [envelope(e) for e in btc[len(eth) :]]
    fake.script(*frames, ping=True)
    async with stream_of(fake, "BTCUSDT", "ETHUSDT") as stream:
        events = await collect(stream, trades=300)
        assert stream.connected
    assert fake.paths == ["/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade"]
    batches = [e for e in events if isinstance(e, TradeBatch)]
    assert all(len({b.symbol}) == 1 for b in batches) and not stream.gaps
    for symbol, sent in (("BTCUSDT", btc), ("ETHUSDT", eth)):
        mine = [b for b in batches if b.symbol == symbol]
        got = {
            name: np.concatenate([getattr(b, name) for b in mine])
            for name in ("agg_id", "time_ms", "price", "qty", "first_id", "last_id", "buyer_maker")
        }
        assert got["agg_id"].tolist() == [e["a"] for e in sent]
        assert got["time_ms"].tolist() == [e["T"] for e in sent]
        assert got["price"].tolist() == [float(str(e["p"])) for e in sent]
        assert got["qty"].tolist() == [float(str(e["q"])) for e in sent]
        assert got["first_id"].tolist() == [e["f"] for e in sent]
        assert got["last_id"].tolist() == [e["l"] for e in sent]
        assert got["buyer_maker"].tolist() == [e["m"] for e in sent]
    assert stream.frames == 300 and stream.trades == 300 and stream.bad.total == 0
    # The server pinged once after its frames: websockets answered with a pong.
    assert fake.pongs == 1


async def test_a_busy_stream_is_read_in_big_batches(fake: FakeBinanceStream) -> None:
    fake.script(*agg_frames("BTCUSDT", range(1, 5001)))
    async with stream_of(fake) as stream:
        events = await collect(stream, trades=5000)
    assert ids_of(events) == list(range(1, 5001))
    # batches of up to 1,000 frames, not one per frame
    assert len(events) < 100
    assert max(len(e) for e in events if isinstance(e, TradeBatch)) <= 1000


# ---- (b) reconnects --------------------------------------------------------------------


@pytest.mark.parametrize("how", ["close", "drop"])
async def test_a_disconnect_reconnects_and_a_skipped_id_is_a_reconnect_gap(
    fake: FakeBinanceStream, how: str
) -> None:
    fake.script(*agg_frames("BTCUSDT", range(1, 11)), then=how)  # type: ignore[arg-type]
    fake.script(*agg_frames("BTCUSDT", range(15, 21)))
    async with stream_of(fake) as stream:
        events = await collect(stream, trades=16, gaps=1)
        assert stream.reconnects == 1 and stream.connected
    gaps = [e for e in events if isinstance(e, TradeGap)]
    assert gaps == [
        TradeGap("BTCUSDT", 10, 15, START + 10 * STEP, START + 15 * STEP, reason="reconnect")
    ]
    assert gaps[0].missed == 4
    assert ids_of(events) == [*range(1, 11), *range(15, 21)]
    # the gap comes after the trades before it and before those after it
    at = events.index(gaps[0])
    assert ids_of(events[:at]) == list(range(1, 11))
    assert len(fake.paths) == 2


async def test_a_reconnect_that_resumes_in_sequence_is_no_gap(fake: FakeBinanceStream) -> None:
    fake.script(*agg_frames("BTCUSDT", range(1, 6)), then="close")
    fake.script(*agg_frames("BTCUSDT", range(6, 9)))
    async with stream_of(fake) as stream:
        events = await collect(stream, trades=8)
        assert stream.reconnects == 1
    assert ids_of(events) == list(range(1, 9)) and stream.gaps == 0


async def test_a_server_that_closes_at_once_is_retried_with_backoff(
    fake: FakeBinanceStream,
) -> None:
    for _ in range(3):
        fake.script(then="close")
    fake.script(*agg_frames("BTCUSDT", range(1, 4)))
    async with stream_of(fake) as stream:
        events = await collect(stream, trades=3)
        assert stream.reconnects == 3
    assert ids_of(events) == [1, 2, 3] and len(fake.paths) == 4


async def test_an_unreachable_server_is_retried_until_closed() -> None:
    async with FakeBinanceStream() as fake:
        url = fake.url
    stream = BinanceTradeStream(["BTCUSDT"], base_url=url, reconnect_first=0.01, reconnect_max=0.02)
    reader = asyncio.ensure_future(anext(aiter(stream), None))
    await asyncio.sleep(0.2)
    assert not reader.done() and not stream.connected
    await stream.aclose()
    assert await asyncio.wait_for(reader, 2) is None


async def test_close_ends_a_quiet_stream_promptly(fake: FakeBinanceStream) -> None:
    fake.script(*agg_frames("BTCUSDT", range(1, 4)))
    stream = stream_of(fake)
    events: list[TradeBatch | TradeGap] = []

    async def run() -> None:
        async for event in stream:
            events.append(event)

    reader = asyncio.ensure_future(run())
    while stream.trades < 3:
        await asyncio.sleep(0.01)
    stream.close()
    await asyncio.wait_for(reader, 2)
    assert ids_of(events) == [1, 2, 3] and not stream.connected


# ---- (c) skipped ids -------------------------------------------------------------------


async def test_skipped_ids_on_a_live_connection_are_a_gap_with_exact_ids_and_times(
    fake: FakeBinanceStream,
) -> None:
    fake.script(*agg_frames("BTCUSDT", [*range(1, 6), *range(9, 12), *range(100, 102)]))
    async with stream_of(fake) as stream:
        events = await collect(stream, trades=10, gaps=2)
        assert stream.reconnects == 0
    gaps = [e for e in events if isinstance(e, TradeGap)]
    assert gaps == [
        TradeGap("BTCUSDT", 5, 9, START + 5 * STEP, START + 9 * STEP, reason="skipped_ids"),
        TradeGap("BTCUSDT", 11, 100, START + 11 * STEP, START + 100 * STEP, reason="skipped_ids"),
    ]
    assert ids_of(events) == [1, 2, 3, 4, 5, 9, 10, 11, 100, 101]


async def test_gaps_are_per_symbol(fake: FakeBinanceStream) -> None:
    btc, eth = agg_frames("BTCUSDT", range(1, 5)), agg_frames("ETHUSDT", [7, 8, 10])
    fake.script(*btc[:2], *eth, *btc[2:])
    async with stream_of(fake, "BTCUSDT", "ETHUSDT") as stream:
        events = await collect(stream, trades=7, gaps=1)
    assert [e for e in events if isinstance(e, TradeGap)] == [
        TradeGap("ETHUSDT", 8, 10, START + 8 * STEP, START + 10 * STEP, reason="skipped_ids")
    ]
    assert ids_of(events, "BTCUSDT") == [1, 2, 3, 4]


# ---- (d) duplicates --------------------------------------------------------------------


async def test_ids_replayed_after_a_reconnect_are_not_yielded_twice(
    fake: FakeBinanceStream,
) -> None:
    fake.script(*agg_frames("BTCUSDT", range(1, 11)), then="close")
    fake.script(*agg_frames("BTCUSDT", range(7, 16)))  # 7..10 again, then new ones
    async with stream_of(fake) as stream:
        events = await collect(stream, trades=15)
        assert stream.duplicates == 4 and stream.reconnects == 1
    assert ids_of(events) == list(range(1, 16))
    assert stream.gaps == 0  # 11 follows 10: nothing was missed


async def test_replayed_ids_then_a_skip_after_a_reconnect_is_a_reconnect_gap(
    fake: FakeBinanceStream,
) -> None:
    fake.script(*agg_frames("BTCUSDT", range(1, 11)), then="drop")
    fake.script(*agg_frames("BTCUSDT", [9, 10, 12, 13]))
    async with stream_of(fake) as stream:
        events = await collect(stream, trades=12, gaps=1)
    assert stream.duplicates == 2
    assert [e.reason for e in events if isinstance(e, TradeGap)] == ["reconnect"]
    assert ids_of(events) == [*range(1, 11), 12, 13]


# ---- (e) junk --------------------------------------------------------------------------


async def test_junk_frames_are_counted_per_reason_and_good_ones_delivered(
    fake: FakeBinanceStream,
) -> None:
    good = agg_frames("BTCUSDT", range(1, 6))
    event = agg_trade("BTCUSDT", 99, time_ms=START)
    junk: list[bytes | str] = [
        "not json at all",
        b"\xff\xfe",
        orjson.dumps([1, 2, 3]),
        orjson.dumps({"result": None, "id": 1}),  # a subscription reply
        orjson.dumps({"stream": "dogeusdt@aggTrade", "data": {**event, "s": "DOGEUSDT"}}),
        orjson.dumps({"stream": "btcusdt@kline_1m", "data": {"e": "kline", "s": "BTCUSDT"}}),
        envelope({k: v for k, v in event.items() if k != "a"}),
        envelope({**event, "a": True}),
        envelope({**event, "T": "yesterday"}),
        envelope({**event, "p": "0"}),
        envelope({**event, "p": "NaN"}),
        envelope({**event, "q": "-1"}),
        envelope({**event, "q": "lots"}),
    ]
    fake.script(good[0], *junk[:6], *good[1:3], *junk[6:], *good[3:])
    async with stream_of(fake) as stream:
        events = await collect(stream, trades=5)
        await asyncio.sleep(0)
    assert ids_of(events) == [1, 2, 3, 4, 5]
    assert stream.bad.counts == {
        "not_json": 2,
        "malformed": 3,
        "other_stream": 3,
        "bad_time": 1,
        "bad_price": 2,
        "bad_qty": 2,
    }
    assert stream.frames == 5 + len(junk) and stream.trades == 5


def test_the_stream_url_names_lower_case_streams() -> None:
    stream = BinanceTradeStream(["btcusdt", "ETHUSDT"], base_url="wss://example.test:9443/")
    assert stream.url == "wss://example.test:9443/stream?streams=btcusdt@aggTrade/ethusdt@aggTrade"
    assert stream.symbols == ("BTCUSDT", "ETHUSDT")
    with pytest.raises(ValueError, match="at least one symbol"):
        BinanceTradeStream([], base_url="wss://example.test")


def test_the_default_base_url_is_a_setting() -> None:
    settings = tickbase.Settings()
    assert settings.binance_ws_url == "wss://stream.binance.com:9443"


# ---- (f) backfill ----------------------------------------------------------------------

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z: every bar of the gap is long final
MINUTE_MS = 60_000


def live_bar(open_ms: int, close: float) -> Kline:
    opens = datetime.fromtimestamp(open_ms / 1000, UTC)
    return Kline(opens, close, close, close, close, 1.0, close_time=opens + timedelta(minutes=1))


async def stored_rows(app: tickbase.App, interval: str) -> list[tuple[int, float, bool]]:
    async with app.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT (extract(epoch FROM open_time) * 1000)::bigint, close, backfilled"
            " FROM tickbase.klines WHERE source = 'binance' AND symbol = 'BTCUSDT'"
            " AND interval = %s ORDER BY open_time",
            (interval,),
        )
        return [(int(t), float(c), bool(b)) for t, c, b in await cursor.fetchall()]


async def test_a_gap_is_backfilled_marked_and_a_later_live_write_does_not_replace_it(
    app: tickbase.App,
) -> None:
    store = KlineStore(app.pool)
    # The live minute aggregated from incomplete trades, stored before the backfill.
    await store.upsert("binance", "BTCUSDT", "1m", [live_bar(T0, 7.0)], live=True)
    gap = TradeGap("BTCUSDT", 10, 20, T0 + 59_000, T0 + 61_000, reason="skipped_ids")
    with FakeExchange() as rest:
        backfill = GapBackfill(store, base_url=rest.url, intervals=("1m", "5m"), margin_ms=0)
        try:
            assert await backfill.backfill(gap) == 3
        finally:
            await backfill.aclose()
        asked = [(q["interval"], q["startTime"], q["endTime"]) for _, _, q in rest.requests()]
    # the two minutes the gap touches, then the one 5-minute bar; windows on open times
    assert asked == [
        ("1m", str(T0), str(T0 + 2 * MINUTE_MS - 1)),
        ("5m", str(T0), str(T0 + 5 * MINUTE_MS - 1)),
    ]
    served = {
        interval: grid_klines_between("btcusd-1M", interval, T0, end, 10)
        for interval, end in (("1m", T0 + 2 * MINUTE_MS - 1), ("5m", T0 + 5 * MINUTE_MS - 1))
    }
    assert await stored_rows(app, "1m") == [
        (T0, served["1m"][0].close, True),
        (T0 + MINUTE_MS, served["1m"][1].close, True),
    ]
    assert await stored_rows(app, "5m") == [(T0, served["5m"][0].close, True)]
    assert (backfill.gaps_backfilled, backfill.bars_backfilled, backfill.failures) == (1, 3, 0)

    # A later live write of the same minute (the real-time writer's) leaves it alone...
    await store.upsert("binance", "BTCUSDT", "1m", [live_bar(T0, 9.0)], live=True)
    assert (await stored_rows(app, "1m"))[0] == (T0, served["1m"][0].close, True)
    # ... while a bar no backfill touched is written as ever, and other writers still replace.
    await store.upsert("binance", "BTCUSDT", "1m", [live_bar(T0 + 5 * MINUTE_MS, 9.0)], live=True)
    assert (await stored_rows(app, "1m"))[-1] == (T0 + 5 * MINUTE_MS, 9.0, False)
    await store.upsert("binance", "BTCUSDT", "1m", [live_bar(T0, 8.0)])
    assert (await stored_rows(app, "1m"))[0] == (T0, 8.0, False)


async def test_a_backfill_waits_for_final_bars_and_retries_a_failed_fetch(
    app: tickbase.App,
) -> None:
    store = KlineStore(app.pool)
    gap = TradeGap("BTCUSDT", 1, 3, T0 + 10_000, T0 + 20_000, reason="reconnect")
    now = [(T0 + 20_500) / 1000]  # the gap just ended: its minute is not over
    naps: list[float] = []
    fetched_at: list[float] = []

    async def sleep(seconds: float) -> None:
        naps.append(seconds)
        now[0] += seconds
        await asyncio.sleep(0)

    with FakeExchange() as rest:
        rest.inject("/api/v3/klines", Fault.status(500, "busy"))
        backfill = GapBackfill(
            store,
            base_url=rest.url,
            intervals=("1m",),
            lateness_ms=2_000,
            margin_ms=500,
            retry_first=0.25,
            clock=lambda: now[0],
            sleep=sleep,
        )
        task = backfill.submit(gap)
        assert await asyncio.wait_for(task, 10) == 1
        fetched_at = [t for t, _, _ in rest.requests()]
        await backfill.aclose()
    assert len(fetched_at) == 2  # the 500, then the retry
    # waited until the minute closed + 2 s lateness + 0.5 s margin, then backed off once
    assert now[0] == pytest.approx((T0 + MINUTE_MS - 1 + 2_500) / 1000 + 0.25)
    assert naps[-1] == 0.25
    assert (backfill.failures, backfill.abandoned, backfill.gaps_backfilled) == (1, 0, 1)
    assert [row[2] for row in await stored_rows(app, "1m")] == [True]


async def test_a_backfill_gives_up_after_its_attempts(app: tickbase.App) -> None:
    gap = TradeGap("BTCUSDT", 1, 3, T0, T0 + 1_000, reason="skipped_ids")
    with FakeExchange() as rest:
        rest.fail_always("/api/v3/klines", Fault.status(503))
        backfill = GapBackfill(
            KlineStore(app.pool),
            base_url=rest.url,
            intervals=("1m", "5m"),
            attempts=2,
            retry_first=0.01,
        )
        try:
            assert await backfill.backfill(gap) == 0
        finally:
            await backfill.aclose()
        assert len(rest.requests()) == 4
    assert (backfill.failures, backfill.abandoned, backfill.gaps_backfilled) == (4, 2, 0)
    assert await stored_rows(app, "1m") == []


# ---- the ingest benchmark ----------------------------------------------------------------


def test_the_ingest_benchmark_streams_every_frame_over_a_real_socket() -> None:
    figures = ingest_rate(20_000)
    # every frame sent came out as a trade; the rates are printed, never asserted
    assert figures.trades == 20_000 and figures.batches >= 20
    assert min(figures.trades_per_second, figures.orjson_per_second, figures.parse_per_second) > 0
    assert set(figures.to_dict()) >= {"trades_per_second", "orjson_per_second"}
