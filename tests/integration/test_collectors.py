"""The failure policy end to end: a real fake exchange on 127.0.0.1, real PostgreSQL.

Each step of the policy is shown (429 → Retry-After or the default wait, timeouts →
3 tries 2 s apart (shortened here), then the next source, then the cached value marked
stale, then the replay source or the default), ending in the right source, cached
value or default, with every step in the record the collecting task keeps.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

import tickbase
from tests.support.fake_exchange import FakeExchange, Fault
from tests.support.gateway import free_port
from tests.support.grid import grid_klines
from tests.support.waiting import wait_until
from tickbase.cluster.alerts import evaluate_alerts
from tickbase.marketdata.bars import load_bars
from tickbase.marketdata.collector import FailurePolicy, Kline
from tickbase.marketdata.pipeline import MarketData, MarketSources, install
from tickbase.marketdata.replay import REPLAY_SERIES, ReplayKlines
from tickbase.marketdata.sources import (
    BinanceKlines,
    CoinGeckoOhlc,
    FearGreedIndex,
    FredObservations,
    GlassnodeMetric,
)
from tickbase.marketdata.store import KlineStore

FAST = FailurePolicy(
    retry_after_default=0.4, timeout_tries=3, timeout_spacing=0.2, request_timeout=0.4
)
KLINES = "/api/v3/klines"
COINGECKO = "/api/v3/coins"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeExchange]:
    with FakeExchange() as exchange:
        yield exchange


@pytest.fixture(autouse=True)
def clean_fake(fake: FakeExchange) -> Iterator[None]:
    fake.reset()
    yield
    fake.reset()


def sources_at(url: str, *, key: str | None = "fake-key-7f3a9c") -> MarketSources:
    return MarketSources(
        klines=[
            BinanceKlines(base_url=url, policy=FAST),
            CoinGeckoOhlc(base_url=f"{url}/api/v3", policy=FAST),
        ],
        replay=ReplayKlines(),
        sentiment=[FearGreedIndex(base_url=url, policy=FAST)],
        macro=[FredObservations(key, base_url=url, policy=FAST)],
        onchain=[GlassnodeMetric(key, base_url=url, policy=FAST)],
    )


def binance_rows(bars: Sequence[Kline]) -> list[list[Any]]:
    """Bars in Binance's wire format."""
    rows: list[list[Any]] = []
    for b in bars:
        opened = int(b.open_time.timestamp() * 1000)
        prices = [repr(b.open), repr(b.high), repr(b.low), repr(b.close), repr(b.volume)]
        rows.append([opened, *prices, opened + 3_599_999, "0", 0, "0", "0", "0"])
    return rows


def outcomes(record: dict[str, Any]) -> list[tuple[str, str]]:
    return [(step["source"], step["outcome"]) for step in record["steps"]]


def klines_rows(sql_conn: psycopg.Connection[Any], symbol: str) -> list[tuple[Any, ...]]:
    return sql_conn.execute(
        "SELECT source, interval, open_time, close, is_anomaly FROM tickbase.klines "
        "WHERE symbol = %s ORDER BY source, interval, open_time",
        (symbol,),
    ).fetchall()


async def test_429_waits_retry_after_then_the_same_source_serves(
    app: tickbase.App, fake: FakeExchange, sql_conn: psycopg.Connection[Any]
) -> None:
    fake.inject(KLINES, Fault.rate_limited(retry_after="1"))
    record = await MarketData(app.pool, sources_at(fake.url)).collect_klines("BTCUSDT", ["1h"])
    one = record["intervals"]["1h"]
    assert one["served_by"] == "binance" and one["stored"] == 100
    assert outcomes(one) == [("binance", "rate_limited"), ("binance", "served")]
    assert one["steps"][0]["waited"] == 1.0 and "Retry-After 1 s" in one["steps"][0]["reason"]
    (first, *_), (second, *_) = fake.requests(KLINES)
    assert second - first >= 1.0, "Retry-After was waited out"
    assert {row[0] for row in klines_rows(sql_conn, "BTCUSDT")} == {"binance"}


async def test_429_without_retry_after_waits_the_policy_default(
    app: tickbase.App, fake: FakeExchange
) -> None:
    assert FailurePolicy().retry_after_default == 60.0  # the reference document's wait
    fake.inject(KLINES, Fault.rate_limited(retry_after=None))
    record = await MarketData(app.pool, sources_at(fake.url)).collect_klines("BTCUSDT", ["1h"])
    one = record["intervals"]["1h"]
    assert outcomes(one) == [("binance", "rate_limited"), ("binance", "served")]
    assert one["steps"][0]["waited"] == FAST.retry_after_default
    (first, *_), (second, *_) = fake.requests(KLINES)
    assert second - first >= FAST.retry_after_default


async def test_three_timeouts_two_seconds_apart_then_the_next_source(
    app: tickbase.App, fake: FakeExchange, sql_conn: psycopg.Connection[Any]
) -> None:
    assert (FailurePolicy().timeout_tries, FailurePolicy().timeout_spacing) == (3, 2.0)
    fake.inject(KLINES, *[Fault.delay(3.0)] * 3)
    record = await MarketData(app.pool, sources_at(fake.url)).collect_klines("ETHUSDT", ["4h"])
    one = record["intervals"]["4h"]
    assert outcomes(one) == [
        ("binance", "timeout"),
        ("binance", "timeout"),
        ("binance", "timeout"),
        ("coingecko", "served"),
    ]
    assert "try 3 of 3" in one["steps"][2]["reason"]
    tries = [entry[0] for entry in fake.requests(KLINES)]
    assert len(tries) == 3
    assert all(
        b - a >= FAST.request_timeout + FAST.timeout_spacing for a, b in itertools.pairwise(tries)
    )
    assert one["source"] == "coingecko" and one["stored"] > 0
    assert {row[0] for row in klines_rows(sql_conn, "ETHUSDT")} == {"coingecko"}


async def test_garbage_and_500s_fall_through_to_the_stale_cache_and_keep_stored_data(
    app: tickbase.App,
    fake: FakeExchange,
    sql_conn: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    market = MarketData(app.pool, sources_at(fake.url))
    await market.collect_klines("BTCUSDT", ["1h"])
    before = klines_rows(sql_conn, "BTCUSDT")
    assert len(before) == 100

    fake.fail_always(KLINES, Fault.body("<html><body>502 Bad Gateway</body></html>"))
    fake.fail_always(COINGECKO, Fault.status(500))
    with caplog.at_level(logging.WARNING, logger="tickbase.marketdata"):
        record = await market.collect_klines("BTCUSDT", ["1h"])
    one = record["intervals"]["1h"]
    assert outcomes(one) == [
        ("binance", "invalid"),
        ("coingecko", "unavailable"),
        ("cache", "stale"),
    ]
    assert one["served_by"] == "cache" and one["stale"] is True and one["stored"] == 0
    assert "not JSON" in one["steps"][0]["reason"] and "HTTP 500" in one["steps"][1]["reason"]
    assert any("binance" in r.message and "refused" in r.message for r in caplog.records)
    assert klines_rows(sql_conn, "BTCUSDT") == before, "previous good data untouched"
    stale = sql_conn.execute(
        "SELECT stale FROM tickbase.market_cache WHERE key = 'klines:BTCUSDT:1h'"
    ).fetchone()
    assert stale == (True,)


@pytest.mark.parametrize(
    "garbage",
    [
        Fault.json({"code": -1121, "msg": "Invalid symbol."}),
        Fault.json([[1, "1", "2"]]),
        Fault.json([[0, "NaN", "1", "1", "1", "1", 0, "0", 0, "0", "0", "0"]]),
        Fault.json([[0, "-5", "1", "-6", "1", "1", 0, "0", 0, "0", "0", "0"]]),
        Fault.json([[0, "10", "9", "11", "10", "1", 0, "0", 0, "0", "0", "0"]]),
    ],
    ids=["object", "missing-fields", "nan", "negative", "high-below-low"],
)
async def test_garbage_is_refused_whole_and_never_stored(
    app: tickbase.App, fake: FakeExchange, sql_conn: psycopg.Connection[Any], garbage: Fault
) -> None:
    fake.inject(KLINES, garbage)
    sources = sources_at(fake.url)
    sources.klines = sources.klines[:1]  # Binance alone: nothing to fall back to
    record = await MarketData(app.pool, sources).collect_klines("BTCUSDT", ["1h"])
    one = record["intervals"]["1h"]
    assert outcomes(one)[0] == ("binance", "invalid")
    assert one["served_by"] is None and one["stored"] == 0, "no live source, nothing cached"
    assert klines_rows(sql_conn, "BTCUSDT") == [], "recorded data never under a live symbol"
    assert set(record["replay"]) == set(REPLAY_SERIES), "offline: the replayed series instead"


async def test_out_of_order_and_duplicated_bars_are_refused(
    app: tickbase.App, fake: FakeExchange, sql_conn: psycopg.Connection[Any]
) -> None:
    bars = grid_klines("spx-1d", "1h", 5)
    rows = binance_rows(bars)
    sources = sources_at(fake.url)
    sources.klines = sources.klines[:1]
    market = MarketData(app.pool, sources)
    for bad in ([rows[1], rows[0], *rows[2:]], [rows[0], rows[0], *rows[1:]]):
        fake.inject(KLINES, Fault.json(bad))
        record = await market.collect_klines("SPX", ["1h"])
        assert outcomes(record["intervals"]["1h"])[0] == ("binance", "invalid")
    assert klines_rows(sql_conn, "SPX") == []
    # a flat bar and zero volume are market data
    flat = [*rows[:-1], [rows[-1][0], "10", "10", "10", "10", "0", *rows[-1][6:]]]
    fake.inject(KLINES, Fault.json(flat))
    record = await market.collect_klines("SPX", ["1h"])
    assert record["intervals"]["1h"]["served_by"] == "binance"


async def test_offline_start_replays_real_series_says_so_once_and_returns_to_live(
    app: tickbase.App,
    fake: FakeExchange,
    sql_conn: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens: connection refused
    market = MarketData(app.pool, sources_at(nowhere))
    with caplog.at_level(logging.INFO, logger="tickbase.marketdata"):
        for _ in range(2):
            record = await market.collect_klines("BTCUSDT", ["1h", "1d"])
            assert {r["served_by"] for r in record["intervals"].values()} == {None}
            for symbol, series in REPLAY_SERIES.items():
                (interval, one), *others = record["replay"][symbol].items()
                assert (interval, others) == (series.interval, [])
                assert one["served_by"] == "replay" and one["live"] is False
    said = [r for r in caplog.records if "no live source answers" in r.message]
    assert len(said) == 1 and "REPLAY:ES-1m" in said[0].message
    assert klines_rows(sql_conn, "BTCUSDT") == [], "no replayed row under BTCUSDT"
    stored = sql_conn.execute(
        "SELECT DISTINCT source, symbol, interval FROM tickbase.klines ORDER BY symbol"
    ).fetchall()
    assert stored == [
        ("replay", "REPLAY:ES-1m", "1m"),
        ("replay", "REPLAY:EURUSD-1h", "1h"),
        ("replay", "REPLAY:SPX-1d", "1d"),
    ], "each replayed series at its own interval only"

    caplog.clear()
    market.sources.klines = sources_at(fake.url).klines  # the network is back
    with caplog.at_level(logging.INFO, logger="tickbase.marketdata"):
        record = await market.collect_klines("BTCUSDT", ["1h", "1d"])
    assert {r["served_by"] for r in record["intervals"].values()} == {"binance"}
    assert "replay" not in record
    assert any("live data again" in r.message for r in caplog.records)
    latest = await KlineStore(app.pool).latest("BTCUSDT", "1h")
    assert {bar.source for bar in latest} == {"binance"}, "reads follow the live source"


@pytest.mark.parametrize("symbol", sorted(REPLAY_SERIES))
async def test_replayed_closes_are_the_files_closes_exactly(
    app: tickbase.App, sql_conn: psycopg.Connection[Any], symbol: str
) -> None:
    """Shifted in time by whole weeks, never rescaled and never forward-filled: the stored
    closes are a run of consecutive rows of the real file, with the file's own gaps."""
    series = REPLAY_SERIES[symbol]
    market = MarketData(app.pool, sources_at(f"http://127.0.0.1:{free_port()}"))
    record = await market.collect_klines(symbol, [series.interval, "4h"])
    assert record["intervals"][series.interval]["stored"] == 100
    assert record["intervals"]["4h"]["served_by"] is None, "never stamped onto another grid"
    rows = sql_conn.execute(
        "SELECT open_time, close, is_filled FROM tickbase.klines WHERE symbol = %s "
        "ORDER BY open_time",
        (symbol,),
    ).fetchall()
    assert len(rows) == 100 and not any(filled for *_, filled in rows)
    file = load_bars(series.sample)
    closes = [bar.close for bar in file]
    stored = [close for _, close, _ in rows]
    starts = [i for i in range(len(file)) if closes[i] == stored[0]]
    loop = closes + closes  # the file plays in a loop
    matching = [i for i in starts if loop[i : i + 100] == stored]
    assert matching, f"{symbol}: stored closes are not consecutive closes of {series.sample}"
    start = matching[0]
    week = 7 * 86_400
    for offset, (at, _, _) in enumerate(rows):
        bar = file[(start + offset) % len(file)]
        shift = (at - bar.open_time).total_seconds()
        assert shift % week == 0, "shifted by whole weeks: same weekday and time of day"


async def test_anomalies_are_one_warning_line_per_series_and_run(
    app: tickbase.App, caplog: pytest.LogCaptureFixture
) -> None:
    bars = [
        Kline(b.open_time, b.open, b.high, b.low, b.close, b.volume) for b in load_bars("es-1m")
    ]
    window = bars[:50]
    jumped = [
        dataclasses.replace(b, high=b.high * 2, close=b.close * 2) if i in (10, 20, 30) else b
        for i, b in enumerate(window)
    ]
    store = KlineStore(app.pool)
    with caplog.at_level(logging.WARNING, logger="tickbase.marketdata"):
        await store.upsert("replay", "REPLAY:ES-1m", "1m", jumped)
    said = [r.getMessage() for r in caplog.records if "moved more than" in r.getMessage()]
    # bars 10, 11, 20, 21, 30, 31: each jump up and its fall back
    assert len(said) == 1, said
    assert said[0].startswith("replay REPLAY:ES-1m 1m: 6 bars moved more than 20% (kept, flagged)")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tickbase.marketdata"):
        await store.upsert("replay", "REPLAY:ES-1m", "1m", jumped)  # the next run, same window
    assert not [r for r in caplog.records if "moved more than" in r.getMessage()]


async def test_sentiment_default_then_live_then_stale_cache(
    app: tickbase.App, fake: FakeExchange, sql_conn: psycopg.Connection[Any]
) -> None:
    market = MarketData(app.pool, sources_at(fake.url))
    fake.fail_always("/fng/", Fault.status(503))
    record = await market.collect_series("sentiment", "fear_greed")
    assert (record["served_by"], record["value"]) == ("default", 50.0)
    assert outcomes(record) == [("alternative.me", "unavailable"), ("default", "default")]

    fake.reset()
    record = await market.collect_series("sentiment", "fear_greed", limit=30)
    assert record["served_by"] == "alternative.me" and record["stored"] == 30
    stored = sql_conn.execute(
        "SELECT value, label FROM tickbase.observations WHERE series = 'fear_greed' "
        "AND source = 'alternative.me' ORDER BY observed_at DESC LIMIT 1"
    ).fetchone()
    assert stored is not None and stored[0] == record["value"] and stored[1]

    fake.fail_always("/fng/", Fault.delay(3.0))
    record = await market.collect_series("sentiment", "fear_greed")
    assert record["served_by"] == "cache" and record["stale"] is True
    assert record["value"] == stored[0]


async def test_fred_without_a_key_is_skipped_with_a_clear_log_line(
    app: tickbase.App, fake: FakeExchange, caplog: pytest.LogCaptureFixture
) -> None:
    market = MarketData(app.pool, sources_at(fake.url, key=None))
    with caplog.at_level(logging.INFO, logger="tickbase.marketdata"):
        record = await market.collect_series("macro", "DCOILWTICO")
    assert outcomes(record) == [("fred", "skipped")]
    assert record["served_by"] is None
    assert any("TICKBASE_FRED_API_KEY" in r.message for r in caplog.records)
    assert fake.requests("/fred") == []


async def test_macro_carried_and_onchain_interpolated_when_stored(
    app: tickbase.App, fake: FakeExchange, sql_conn: psycopg.Connection[Any]
) -> None:
    market = MarketData(app.pool, sources_at(fake.url))
    fred = await market.collect_series("macro", "DCOILWTICO", limit=1000)
    glass = await market.collect_series("onchain", "market/mvrv_z_score", limit=1000)
    assert fred["served_by"] == "fred" and fred["filled"] > 0
    assert glass["served_by"] == "glassnode" and glass["filled"] > 0
    rows = sql_conn.execute(
        "SELECT series, observed_at, value, is_filled FROM tickbase.observations "
        "ORDER BY series, observed_at"
    ).fetchall()
    by_series: dict[str, list[tuple[Any, ...]]] = {}
    for series, at, value, filled in rows:
        by_series.setdefault(series, []).append((at, value, filled))
    for at_value in (by_series["DCOILWTICO"],):
        for (_, prev_value, _), (_, value, filled) in itertools.pairwise(at_value):
            if filled:
                assert value == prev_value, "macro: the last period's value"
    onchain = by_series["BTC:market/mvrv_z_score"]
    for i, (at, value, filled) in enumerate(onchain):
        if filled:
            (a_at, a_v, _), (b_at, b_v, _) = onchain[i - 1], onchain[i + 1]
            if not onchain[i + 1][2]:
                share = (at - a_at) / (b_at - a_at)
                assert value == pytest.approx(a_v + (b_v - a_v) * share, rel=1e-9)


async def test_a_25_percent_jump_in_a_real_series_is_kept_and_flagged(
    app: tickbase.App,
    fake: FakeExchange,
    sql_conn: psycopg.Connection[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    bars = grid_klines("spx-1d", "1h", 100)
    jumped = [
        dataclasses.replace(
            b, open=b.open * 1.25, high=b.high * 1.25, low=b.low * 1.25, close=b.close * 1.25
        )
        if i >= 60
        else b
        for i, b in enumerate(bars)
    ]
    rows = binance_rows(jumped)
    fake.inject(KLINES, Fault.json(rows))
    with caplog.at_level(logging.WARNING, logger="tickbase.marketdata"):
        await MarketData(app.pool, sources_at(fake.url)).collect_klines("SPX", ["1h"])
    stored = klines_rows(sql_conn, "SPX")
    assert len(stored) == 100
    flagged = [row[2] for row in stored if row[4]]
    assert flagged == [bars[60].open_time], "only the jump, kept with its price"
    assert stored[60][3] == jumped[60].close
    said = [r.getMessage() for r in caplog.records if "more than 20%" in r.getMessage()]
    assert said == [
        f"binance SPX 1h: 1 bar moved more than 20% (kept, flagged); first "
        f"{bars[60].open_time.isoformat()} (close {jumped[60].close} from {bars[59].close}), "
        f"largest {abs(jumped[60].close / bars[59].close - 1) * 100:.1f}%"
    ]


async def test_integrity_below_95_percent_fires_one_alert_per_series(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    now = datetime.now(UTC)
    market = MarketData(app.pool, sources_at("http://127.0.0.1:9"))
    bars = grid_klines("spx-1d", "1h", 24, now)
    await KlineStore(app.pool).upsert("binance", "BTCUSDT", "1h", bars)
    report = await market.check_integrity(["BTCUSDT"], ["1h"])
    assert report["series"][0]["completeness"] == 100.0

    holed = [b for i, b in enumerate(bars) if i not in (3, 9)]
    sql_conn.execute("DELETE FROM tickbase.klines")
    await KlineStore(app.pool).upsert("binance", "BTCUSDT", "1h", holed)
    report = await market.check_integrity(["BTCUSDT"], ["1h"])
    assert report["series"][0]["expected"] == 24 and report["series"][0]["present"] == 22
    async with app.pool.connection() as conn:
        changes = await evaluate_alerts(conn, kinds={"data_completeness"})
        again = await evaluate_alerts(conn, kinds={"data_completeness"})
    assert [(c.event, c.rule, c.subject) for c in changes] == [
        ("fired", "data-completeness", "BTCUSDT 1h")
    ]
    assert again == [], "fires once"
    assert "91.7% complete (22 of 24 bars" in changes[0].message

    await KlineStore(app.pool).upsert("binance", "BTCUSDT", "1h", bars)
    await market.check_integrity(["BTCUSDT"], ["1h"])
    async with app.pool.connection() as conn:
        changes = await evaluate_alerts(conn, kinds={"data_completeness"})
    assert [(c.event, c.subject) for c in changes] == [("resolved", "BTCUSDT 1h")]


async def test_collect_task_records_its_steps_and_advances_indicators(
    database_url: str, fake: FakeExchange, sql_conn: psycopg.Connection[Any]
) -> None:
    from tests.conftest import fast_settings
    from tests.integration.test_worker import running_worker

    app = tickbase.App(
        settings=fast_settings(database_url, market_symbols="BTCUSDT", market_intervals="1h,4h")
    )
    tasks = install(app, sources_at(fake.url))
    assert app.extensions["marketdata"] is tasks
    fake.inject(KLINES, Fault.rate_limited(retry_after="0.5"))
    async with app, running_worker(app, queues=["marketdata"]):
        handle = await tasks.collect_klines.defer(symbol="BTCUSDT", intervals=["1h", "4h"])
        result = await handle.result(timeout=30)

        async def indicators_saved() -> bool:
            row = sql_conn.execute(
                "SELECT count(*) FROM tickbase.indicator_state WHERE symbol = 'BTCUSDT'"
            ).fetchone()
            return row is not None and row[0] == 2

        await wait_until(indicators_saved, timeout=15, message="the follow-up tasks ran")
    stored = sql_conn.execute(
        "SELECT result FROM tickbase.tasks WHERE id = %s", (handle.id,)
    ).fetchone()
    assert stored is not None and stored[0] == result
    assert outcomes(result["intervals"]["1h"]) == [
        ("binance", "rate_limited"),
        ("binance", "served"),
    ]
    follow_ups = sql_conn.execute(
        "SELECT payload->>'interval', status FROM tickbase.tasks "
        "WHERE task_type = 'marketdata.indicators' ORDER BY 1"
    ).fetchall()
    assert follow_ups == [("1h", "succeeded"), ("4h", "succeeded")]


async def test_default_schedules_are_registered_and_adjustable(
    database_url: str, sql_conn: psycopg.Connection[Any]
) -> None:
    from tests.conftest import fast_settings

    app = tickbase.App(settings=fast_settings(database_url))
    install(app)
    async with app:
        await app.sync_schedules()
        await app.schedules.update("marketdata.fear-greed", cron="*/30 * * * *")
        await app.sync_schedules()  # a restart keeps the operator's change
    rows = dict(
        sql_conn.execute(
            "SELECT name, cron FROM tickbase.schedules WHERE name LIKE 'marketdata.%%'"
        ).fetchall()
    )
    assert rows == {
        "marketdata.klines.BTCUSDT": "*/5 * * * *",
        "marketdata.klines.ETHUSDT": "*/5 * * * *",
        "marketdata.fear-greed": "*/30 * * * *",
        "marketdata.fred.FEDFUNDS": "0 3 * * *",
        "marketdata.fred.M2SL": "0 3 * * *",
        "marketdata.fred.DGS10": "0 3 * * *",
        "marketdata.glassnode.market/mvrv_z_score": "0 * * * *",
        "marketdata.glassnode.indicators/nvt": "0 * * * *",
        "marketdata.glassnode.addresses/active_count": "0 * * * *",
        "marketdata.integrity": "*/30 * * * *",
    }
