"""K-line reads over HTTP and the TradingView UDF datafeed (real uvicorn, real data)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from tests.support.gateway import RunningGateway, gateway_test_app, running_gateway
from tickbase.marketdata.bars import read_bar_text
from tickbase.marketdata.store import KlineStore

# The first real GOOG daily bars (../shared/data/goog-1d.csv).
GOOG = """open_time,open,high,low,close,volume
2004-08-19T00:00:00Z,100,104.06,95.96,100.34,22351900
2004-08-20T00:00:00Z,101.01,109.08,100.5,108.31,11428600
2004-08-23T00:00:00Z,110.75,113.48,109.05,109.4,9137200
2004-08-24T00:00:00Z,111.24,111.6,103.57,104.87,7631300
2004-08-25T00:00:00Z,104.96,108,103.88,106,4598900
"""


def ts(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp())


@pytest.fixture
async def gw(database_url: str) -> AsyncIterator[RunningGateway]:
    app = gateway_test_app(database_url)
    async with app, running_gateway(app, worker=False) as running:
        bars, problems = read_bar_text(GOOG)
        assert problems == []
        await KlineStore(app.pool).upsert("replay", "GOOG", "1d", bars)
        yield running


async def test_klines_read_api(gw: RunningGateway) -> None:
    async with gw.http(gw.viewer) as http:
        got = await http.get("/api/v1/klines", params={"symbol": "GOOG", "interval": "1d"})
        assert got.status_code == 200
        bars = got.json()
        assert [b["close"] for b in bars] == [100.34, 108.31, 109.4, 104.87, 106]
        assert bars[0]["openTime"].startswith("2004-08-19") and bars[0]["source"] == "replay"
        latest = await http.get(
            "/api/v1/klines", params={"symbol": "GOOG", "interval": "1d", "limit": 2}
        )
        assert [b["close"] for b in latest.json()] == [104.87, 106]
        unknown = await http.get("/api/v1/klines", params={"symbol": "AAPL", "interval": "1d"})
        assert unknown.status_code == 404
        assert unknown.json()["error"]["details"] == {"symbols": ["GOOG"]}
        wrong = await http.get("/api/v1/klines", params={"symbol": "GOOG", "interval": "1h"})
        assert wrong.status_code == 404 and wrong.json()["error"]["details"] == {
            "intervals": ["1d"]
        }
        bad = await http.get("/api/v1/klines", params={"symbol": "GOOG", "interval": "daily"})
        assert bad.status_code == 422
    async with gw.http("tb_" + "z" * 43) as stranger:
        assert (await stranger.get("/udf/config")).status_code == 401


async def test_udf_datafeed(gw: RunningGateway) -> None:
    async with gw.http(gw.viewer) as http:
        config = (await http.get("/udf/config")).json()
        assert "1D" in config["supported_resolutions"] and config["supports_time"] is True
        assert abs((await http.get("/udf/time")).json() - datetime.now(UTC).timestamp()) < 60
        symbol = (await http.get("/udf/symbols", params={"symbol": "GOOG"})).json()
        assert symbol["name"] == "GOOG"
        assert symbol["supported_resolutions"] == ["1D", "2D", "3D", "1W", "2W", "1M"]
        assert (await http.get("/udf/symbols", params={"symbol": "NOPE"})).status_code == 404

        history = await http.get(
            "/udf/history",
            params={
                "symbol": "GOOG",
                "resolution": "1D",
                "from": ts("2004-08-20"),
                "to": ts("2004-08-25"),
            },
        )
        assert history.json() == {
            "s": "ok",
            "t": [ts("2004-08-20"), ts("2004-08-23"), ts("2004-08-24")],
            "o": [101.01, 110.75, 111.24],
            "h": [109.08, 113.48, 111.6],
            "l": [100.5, 109.05, 103.57],
            "c": [108.31, 109.4, 104.87],
            "v": [11428600, 9137200, 7631300],
        }
        back = await http.get(
            "/udf/history",
            params={
                "symbol": "GOOG",
                "resolution": "D",
                "from": 0,
                "to": ts("2004-08-24"),
                "countback": 2,
            },
        )
        assert back.json()["t"] == [ts("2004-08-20"), ts("2004-08-23")]
        empty = await http.get(
            "/udf/history",
            params={
                "symbol": "GOOG",
                "resolution": "1D",
                "from": ts("2010-01-01"),
                "to": ts("2010-02-01"),
            },
        )
        assert empty.json() == {"s": "no_data", "nextTime": ts("2004-08-25")}
        before = await http.get(
            "/udf/history",
            params={"symbol": "GOOG", "resolution": "1D", "from": 0, "to": ts("2000-01-01")},
        )
        assert before.json() == {"s": "no_data"}
        bad = await http.get(
            "/udf/history",
            params={"symbol": "GOOG", "resolution": "7X", "from": 0, "to": 10},
        )
        assert bad.status_code == 422 and bad.json()["s"] == "error"
        assert "invalid resolution '7X'" in bad.json()["errmsg"]


async def test_indicators_read_api_equals_talib_reference(database_url: str) -> None:
    """``GET /api/v1/indicators`` over the whole real GOOG series: every value equals the
    TA-Lib reference file's (1e-9 relative), null exactly while warming up."""
    import csv
    from pathlib import Path

    from tickbase.marketdata.bars import load_bars
    from tickbase.marketdata.indicators import NAMES

    reference_file = Path(__file__).parents[1] / "data" / "reference" / "goog-1d.ta.csv"
    with reference_file.open() as handle:
        reference = list(csv.DictReader(handle))
    camel = {
        "macd_signal": "macdSignal",
        "macd_hist": "macdHist",
        "bb_upper": "bbUpper",
        "bb_middle": "bbMiddle",
        "bb_lower": "bbLower",
    }
    app = gateway_test_app(database_url)
    async with app, running_gateway(app, worker=False) as gw:
        await KlineStore(app.pool).upsert("replay", "GOOG", "1d", load_bars("goog-1d"))
        async with gw.http(gw.viewer) as http:
            for limit in (60, 2_148):
                got = await http.get(
                    "/api/v1/indicators",
                    params={"symbol": "GOOG", "interval": "1d", "limit": limit},
                )
                assert got.status_code == 200, got.text
                rows = got.json()
                assert len(rows) == limit
                for row, want in zip(rows, reference[-limit:], strict=True):
                    assert row["openTime"].replace("+00:00", "Z") == want["open_time"]
                    assert row["source"] == "replay"
                    for name in NAMES:
                        value = row[camel.get(name, name)]
                        if want[name] == "":
                            assert value is None, (row["openTime"], name)
                        else:
                            assert value == pytest.approx(float(want[name]), rel=1e-9, abs=1e-9)
            unknown = await http.get(
                "/api/v1/indicators", params={"symbol": "AAPL", "interval": "1d"}
            )
            assert unknown.status_code == 404
            assert unknown.json()["error"]["details"] == {"symbols": ["GOOG"]}
            wrong = await http.get(
                "/api/v1/indicators", params={"symbol": "GOOG", "interval": "4h"}
            )
            assert wrong.status_code == 404
            assert wrong.json()["error"]["details"] == {"intervals": ["1d"]}
            bad = await http.get(
                "/api/v1/indicators", params={"symbol": "GOOG", "interval": "daily"}
            )
            assert bad.status_code == 422


async def test_observations_read_api(database_url: str) -> None:
    from tickbase.marketdata.collector import Observation
    from tickbase.marketdata.store import ObservationStore

    app = gateway_test_app(database_url)
    async with app, running_gateway(app, worker=False) as gw:
        t = datetime(2019, 2, 26, tzinfo=UTC)
        await ObservationStore(app.pool).upsert(
            "fear_greed",
            "sentiment",
            "alternative.me",
            [
                Observation("fear_greed", t, 40.0, "Fear"),
                Observation("fear_greed", t.replace(day=27), 50.0, None, True),
            ],
        )
        async with gw.http(gw.viewer) as http:
            got = await http.get("/api/v1/observations", params={"series": "fear_greed"})
            assert got.status_code == 200, got.text
            assert [(o["value"], o["label"], o["isFilled"]) for o in got.json()] == [
                (40.0, "Fear", False),
                (50.0, None, True),
            ]
            assert got.json()[0]["observedAt"].startswith("2019-02-26")
            unknown = await http.get("/api/v1/observations", params={"series": "DGS10"})
            assert unknown.status_code == 404
            assert unknown.json()["error"]["details"] == {"series": ["fear_greed"]}
            bad = await http.get("/api/v1/observations", params={"series": "a b"})
            assert bad.status_code == 422
