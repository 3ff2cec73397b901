"""The TradingView UDF datafeed speaks UDF: its error shape, symbol info from what the
instrument is, and coarser resolutions aggregated from stored bars (real uvicorn on
127.0.0.1, real PostgreSQL, real recorded series)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.support.gateway import RunningGateway, gateway_test_app, running_gateway
from tickbase.marketdata.bars import Bar, load_bars, read_bar_text
from tickbase.marketdata.store import KlineStore

EURUSD = "REPLAY:EURUSD-1h"
HOURS = 400  # about three weeks of the real EUR/USD file, weekend gap included

# Closes with 4 decimals, for a symbol no table knows.
XYZ = """open_time,open,high,low,close,volume
2024-01-01T00:00:00Z,1.2345,1.2399,1.2301,1.2377,10
2024-01-02T00:00:00Z,1.2377,1.24,1.23,1.2391,12
"""


@pytest.fixture
async def gw(database_url: str) -> AsyncIterator[RunningGateway]:
    app = gateway_test_app(database_url)
    async with app, running_gateway(app, worker=False) as running:
        store = KlineStore(app.pool)
        await store.upsert("replay", EURUSD, "1h", load_bars("eurusd-1h")[:HOURS])
        for symbol, sample, interval in (
            ("REPLAY:ES-1m", "es-1m", "1m"),
            ("REPLAY:SPX-1d", "spx-1d", "1d"),
            ("BTCUSDT", "spx-1d", "1d"),  # any real bars: symbol info reads the name
            ("SPX", "spx-1d", "1d"),
            ("ES", "es-1m", "1m"),
            ("EURUSD", "eurusd-1h", "1h"),
        ):
            await store.upsert("replay", symbol, interval, load_bars(sample)[:50])
        bars, problems = read_bar_text(XYZ)
        assert problems == []
        await store.upsert("import", "XYZ", "1d", bars)
        yield running


def history_params(symbol: str, resolution: str, start: int, end: int) -> dict[str, Any]:
    return {"symbol": symbol, "resolution": resolution, "from": start, "to": end}


async def test_udf_errors_are_in_udf_shape(gw: RunningGateway) -> None:
    async with gw.http(gw.viewer) as http:
        unknown = await http.get("/udf/symbols", params={"symbol": "NOPE"})
        assert unknown.status_code == 404
        body = unknown.json()
        assert body["s"] == "error" and "unknown symbol 'NOPE'" in body["errmsg"]
        assert EURUSD in body["errmsg"], "names what is stored"
        assert set(body) == {"s", "errmsg"}

        cases = {
            "unknown symbol": ({**history_params("NOPE", "60", 0, 10)}, 404, "unknown symbol"),
            "bad resolution": (history_params(EURUSD, "7X", 0, 10), 422, "invalid resolution"),
            "to before from": (history_params(EURUSD, "60", 20, 10), 422, "must be after"),
            "from not a number": (history_params(EURUSD, "60", 0, 10) | {"from": "x"}, 422, "from"),
            "no to": ({"symbol": EURUSD, "resolution": "60", "from": 0}, 422, "'to' is required"),
            "bad symbol": (history_params("no spaces", "60", 0, 10), 422, "invalid symbol"),
            "bad countback": (
                history_params(EURUSD, "60", 0, 10) | {"countback": "0"},
                422,
                "countback",
            ),
        }
        for case, (params, status, said) in cases.items():
            got = await http.get("/udf/history", params=params)
            assert got.status_code == status, case
            body = got.json()
            assert set(body) == {"s", "errmsg"} and body["s"] == "error", (case, body)
            assert said in body["errmsg"], (case, body)
        missing = await http.get("/udf/symbols")
        assert missing.status_code == 422 and missing.json()["s"] == "error"

        # no data in range stays UDF's no_data, with where to look instead
        first = load_bars("eurusd-1h")[0].open_time
        before = await http.get(
            "/udf/history",
            params=history_params(EURUSD, "60", 0, int(first.timestamp()) - 3600),
        )
        assert before.status_code == 200 and before.json() == {"s": "no_data"}
        later = int((first + timedelta(days=400)).timestamp())
        after = await http.get(
            "/udf/history", params=history_params(EURUSD, "60", later, later + 86_400)
        )
        last = load_bars("eurusd-1h")[HOURS - 1].open_time
        assert after.json() == {"s": "no_data", "nextTime": int(last.timestamp())}
        after_4h = await http.get(
            "/udf/history", params=history_params(EURUSD, "240", later, later + 86_400)
        )
        bucket = int(last.timestamp()) // 14_400 * 14_400
        assert after_4h.json() == {"s": "no_data", "nextTime": bucket}


@pytest.mark.parametrize(
    ("symbol", "kind", "session", "timezone", "pricescale", "minmov"),
    [
        ("BTCUSDT", "crypto", "24x7", "Etc/UTC", 100, 1),
        ("SPX", "index", "0930-1600:23456", "America/New_York", 100, 1),
        ("REPLAY:SPX-1d", "index", "0930-1600:23456", "America/New_York", 100, 1),
        ("ES", "futures", "1700-1600:23456", "America/Chicago", 100, 25),
        ("REPLAY:ES-1m", "futures", "1700-1600:23456", "America/Chicago", 100, 25),
        ("EURUSD", "forex", "1700-1700:23456", "America/New_York", 100_000, 1),
        (EURUSD, "forex", "1700-1700:23456", "America/New_York", 100_000, 1),
        ("XYZ", "stock", "24x7", "Etc/UTC", 10_000, 1),  # unknown: 4 decimals stored
    ],
)
async def test_symbol_info_says_what_the_instrument_is(
    gw: RunningGateway,
    symbol: str,
    kind: str,
    session: str,
    timezone: str,
    pricescale: int,
    minmov: int,
) -> None:
    async with gw.http(gw.viewer) as http:
        got = await http.get("/udf/symbols", params={"symbol": symbol})
    assert got.status_code == 200, got.text
    info = got.json()
    assert (info["name"], info["ticker"]) == (symbol, symbol)
    assert (info["type"], info["session"], info["timezone"]) == (kind, session, timezone)
    assert (info["pricescale"], info["minmov"]) == (pricescale, minmov)


def reference(bars: Sequence[Bar], seconds: int, origin: datetime) -> list[list[Any]]:
    """Bars aggregated by hand: [t, o, h, l, c, v] per UTC-aligned bucket."""
    buckets: dict[int, list[Bar]] = {}
    for bar in bars:
        elapsed = int((bar.open_time - origin).total_seconds())
        start = int(origin.timestamp()) + elapsed // seconds * seconds
        buckets.setdefault(start, []).append(bar)
    return [
        [
            t,
            group[0].open,
            max(b.high for b in group),
            min(b.low for b in group),
            group[-1].close,
            sum(b.volume for b in group),
        ]
        for t, group in sorted(buckets.items())
    ]


def rows(reply: dict[str, Any]) -> list[list[Any]]:
    assert reply["s"] == "ok", reply
    return [list(r) for r in zip(*(reply[k] for k in "tohlcv"), strict=True)]


async def test_coarser_resolutions_are_aggregated_from_stored_bars(gw: RunningGateway) -> None:
    bars = load_bars("eurusd-1h")[:HOURS]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    monday = datetime(1970, 1, 5, tzinfo=UTC)
    start = int(bars[0].open_time.timestamp())
    end = int(bars[-1].open_time.timestamp()) + 3600
    async with gw.http(gw.viewer) as http:
        info = (await http.get("/udf/symbols", params={"symbol": EURUSD})).json()
        served = info["supported_resolutions"]
        assert {"60", "120", "240", "720", "1D", "1W", "1M"} <= set(served)
        assert not {"1", "5", "30", "45", "1S"} & set(served), "finer than 1h: not served"
        assert info["has_intraday"] and info["has_daily"] and info["has_weekly_and_monthly"]

        for resolution, seconds, origin in (
            ("240", 4 * 3600, epoch),
            ("D", 86_400, epoch),
            ("1D", 86_400, epoch),
            ("1W", 7 * 86_400, monday),
        ):
            got = await http.get("/udf/history", params=history_params(EURUSD, resolution, 0, end))
            assert got.status_code == 200, got.text
            expected = reference(bars, seconds, origin)
            assert rows(got.json()) == expected, resolution
            assert all(t % 86_400 == 0 for t, *_ in expected) or seconds < 86_400

        # a range keeps the buckets that start in it; countback the last N of them
        day = 86_400
        first_day = start // day * day + day
        ranged = await http.get(
            "/udf/history", params=history_params(EURUSD, "1D", first_day, first_day + 3 * day)
        )
        assert [r[0] for r in rows(ranged.json())] == [
            first_day + i * day
            for i in range(3)
            if any(
                first_day + i * day <= b.open_time.timestamp() < first_day + (i + 1) * day
                for b in bars
            )
        ]
        back = await http.get(
            "/udf/history",
            params=history_params(EURUSD, "240", 0, end) | {"countback": 5},
        )
        assert rows(back.json()) == reference(bars, 4 * 3600, epoch)[-5:]
        # the stored interval itself: bar for bar
        exact = await http.get("/udf/history", params=history_params(EURUSD, "60", 0, end))
        assert [r[0] for r in rows(exact.json())] == [int(b.open_time.timestamp()) for b in bars]

        finer = await http.get("/udf/history", params=history_params(EURUSD, "15", 0, end))
        assert finer.status_code == 422
        body = finer.json()
        assert body["s"] == "error" and "finer than every stored interval (1h)" in body["errmsg"]
        odd = await http.get("/udf/history", params=history_params(EURUSD, "90", 0, end))
        assert odd.json()["s"] == "error" and "not a whole multiple" in odd.json()["errmsg"]
