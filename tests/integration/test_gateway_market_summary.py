"""What is stored and how complete (the market page's reads), over real bars."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.gateway import RunningGateway, gateway_test_app, running_gateway
from tickbase.marketdata.bars import Bar, load_bars
from tickbase.marketdata.cleaning import forward_fill
from tickbase.marketdata.pipeline import MarketData
from tickbase.marketdata.sources.chains import MarketSources
from tickbase.marketdata.store import KlineStore
from tickbase.marketdata.summary import daily_completeness, freshness


def test_freshness_counts_two_bars_and_the_slack() -> None:
    now = datetime(2026, 12, 4, 12, tzinfo=UTC)
    assert freshness("1m", now - timedelta(minutes=12), now) == "fresh"
    assert freshness("1m", now - timedelta(minutes=13), now) == "stale"
    assert freshness("1d", now - timedelta(days=2), now) == "fresh"
    assert freshness("1M", now - timedelta(days=70), now) == "stale"


def test_daily_completeness_splits_the_window_by_utc_day() -> None:
    start = datetime(2026, 12, 3, 20, tzinfo=UTC)
    days = daily_completeness(
        start, start + timedelta(hours=24), "1h", [start, start + timedelta(hours=5)]
    )
    assert [(d.day.isoformat(), d.expected, d.present) for d in days] == [
        ("2026-12-03", 4, 3),
        ("2026-12-04", 20, 19),
    ]
    assert days[0].completeness == 75.0


def recent_es(count: int) -> list[Bar]:
    """The last ``count`` real E-mini minutes of the sample, moved (by whole minutes)
    to end a minute ago."""
    bars = load_bars("es-1m")[-count:]
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    shift = now - timedelta(minutes=1) - bars[-1].open_time
    return [replace(b, open_time=b.open_time + shift) for b in bars]


@pytest.fixture
async def gw(database_url: str) -> AsyncIterator[RunningGateway]:
    app = gateway_test_app(database_url)
    async with app, running_gateway(app, worker=False) as running:
        store = KlineStore(app.pool)
        es = recent_es(60)
        await store.upsert("replay", "REPLAY:ES-1m", "1m", forward_fill(es[:50] + es[51:], "1m"))
        await store.upsert("replay", "GOOG", "1d", load_bars("goog-1d"))
        market = MarketData(app.pool, MarketSources.from_settings(app.settings))
        await market.check_integrity(["REPLAY:ES-1m"], ["1m"])
        yield running


async def test_series_and_integrity_reads(gw: RunningGateway) -> None:
    goog = load_bars("goog-1d")
    async with gw.http(gw.viewer) as http:
        got = await http.get("/api/v1/marketdata/series")
        assert got.status_code == 200
        series = {(s["symbol"], s["interval"]): s for s in got.json()}
        assert list(series) == [("GOOG", "1d"), ("REPLAY:ES-1m", "1m")]
        old = series["GOOG", "1d"]
        assert old["bars"] == len(goog) and old["source"] == "replay" and old["live"] is False
        assert old["firstOpenTime"].startswith(goog[0].open_time.date().isoformat())
        assert old["lastOpenTime"].startswith(goog[-1].open_time.date().isoformat())
        assert old["freshness"] == "stale" and old["intervalSeconds"] == 86400
        es = series["REPLAY:ES-1m", "1m"]
        assert es["bars"] == 60 and es["freshness"] == "fresh" and es["ageSeconds"] < 200

        filled = await http.get(
            "/api/v1/klines", params={"symbol": "REPLAY:ES-1m", "interval": "1m", "limit": 60}
        )
        assert [b["isFilled"] for b in filled.json()].count(True) == 1

        checks = (await http.get("/api/v1/marketdata/integrity")).json()
        assert [(c["symbol"], c["interval"]) for c in checks] == [("REPLAY:ES-1m", "1m")]
        check = checks[0]
        assert check["missing"] >= 1 and check["present"] < check["expected"]
        assert sum(d["expected"] for d in check["days"]) == check["expected"]
        assert sum(d["present"] for d in check["days"]) == check["present"]
        assert all(0 <= d["completeness"] <= 100 for d in check["days"])
    async with gw.http("tb_" + "z" * 43) as stranger:
        assert (await stranger.get("/api/v1/marketdata/series")).status_code == 401
        assert (await stranger.get("/api/v1/marketdata/integrity")).status_code == 401
