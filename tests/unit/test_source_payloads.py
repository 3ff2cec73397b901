"""Each source's ``validate`` on payloads given directly (no HTTP): a row of the wrong JSON
type or a value out of range refuses the payload naming the row, newest-first documents come
back oldest first, and CoinGecko never makes up a bar from an incomplete group of candles.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tickbase.errors import InvalidPayload
from tickbase.marketdata.collector import KlineRequest, SeriesRequest
from tickbase.marketdata.sources import (
    CoinGeckoOhlc,
    FearGreedIndex,
    FredObservations,
    GlassnodeMetric,
)
from tickbase.marketdata.sources.coingecko import coingecko_days

T0 = datetime(2024, 6, 1, tzinfo=UTC)
BASE = "http://127.0.0.1:9"
FNG = SeriesRequest("fear_greed", 10)


def fng(*entries: Any) -> dict[str, Any]:
    return {"name": "Fear and Greed Index", "data": list(entries), "metadata": {"error": None}}


def entry(value: Any, day: int, label: Any = "Fear") -> dict[str, Any]:
    stamp = int((T0 + timedelta(days=day)).timestamp())
    return {"value": value, "value_classification": label, "timestamp": str(stamp)}


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (fng(entry("40", 1), "40"), "row 1: is a string, not an object"),
        (fng(entry("101", 0)), "row 0: value '101' is outside 0..100"),
        (fng(entry(-3, 0)), "row 0: value -3 is outside 0..100"),
        (fng(entry("4.5", 0)), "row 0: value: '4.5' is not a whole number"),
        (fng(entry("40", 0, label="")), "row 0: value_classification '' is not a non-empty"),
        (fng(entry("40", 0, label=None)), "row 0: value_classification None is not a non-empty"),
        ({"data": {"value": "40"}}, "'data' is an object, not an array"),
        (
            {"data": [], "metadata": {"error": "limit too high"}},
            "the API reported an error: 'limit",
        ),
    ],
)
def test_fear_greed_refuses_bad_entries_naming_them(document: Any, problem: str) -> None:
    with pytest.raises(InvalidPayload) as refused:
        FearGreedIndex(BASE).validate(document, FNG)
    assert str(refused.value).startswith(f"alternative.me: {problem}")


def test_fear_greed_bounds_are_inclusive_and_newest_first_is_turned() -> None:
    got = FearGreedIndex(BASE).validate(fng(entry("100", 2), entry(0, 1), entry("50", 0)), FNG)
    assert [(o.observed_at, o.value) for o in got] == [
        (T0, 50.0),
        (T0 + timedelta(days=1), 0.0),
        (T0 + timedelta(days=2), 100.0),
    ]


def fred(*rows: Any, **extra: Any) -> dict[str, Any]:
    return {"observations": list(rows), **extra}


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (fred(["2024-06-01", "4.2"]), "row 0: is an array, not an object"),
        (fred({"date": "2024-06-01"}), "row 0: value: None is not"),
        (fred({"date": "06/01/2024", "value": "4.2"}), "row 0: date: date '06/01/2024' is not"),
        ({"observations": None}, "'observations' is null, not an array"),
        (
            fred(error_message="Bad Request.  The series does not exist."),
            "the API reported an error: 'Bad",
        ),
        ([], "payload is an array, not an observations document"),
    ],
)
def test_fred_refuses_bad_documents_naming_the_problem(document: Any, problem: str) -> None:
    source = FredObservations(api_key="k", base_url=BASE)
    with pytest.raises(InvalidPayload) as refused:
        source.validate(document, SeriesRequest("DGS10", 5))
    assert str(refused.value).startswith(f"fred: {problem}")


def test_fred_newest_first_comes_back_oldest_first_with_gaps_kept() -> None:
    source = FredObservations(api_key="k", base_url=BASE)
    document = fred(
        {"date": "2024-06-03", "value": "4.3"},
        {"date": "2024-06-02", "value": "."},
        {"date": "2024-06-01", "value": "4.1"},
    )
    got = source.validate(document, SeriesRequest("DGS10", 5))
    assert [(o.series, o.observed_at.day, o.value) for o in got] == [
        ("DGS10", 1, 4.1),
        ("DGS10", 2, None),
        ("DGS10", 3, 4.3),
    ]


def test_glassnode_refuses_points_that_are_not_objects_and_turns_newest_first() -> None:
    source = GlassnodeMetric(api_key="k", base_url=BASE)
    request = SeriesRequest("market/mvrv_z_score", 10)
    with pytest.raises(InvalidPayload, match=r"^glassnode: row 1: is a number, not an object$"):
        source.validate([{"t": 1717200000, "v": 1.0}, 5], request)
    day = 86_400
    points = [{"t": 1717200000 + 2 * day, "v": 3.0}, {"t": 1717200000 + day, "v": None}]
    got = source.validate([*points, {"t": 1717200000, "v": "1.5"}], request)
    assert [(o.series, o.observed_at, o.value) for o in got] == [
        ("BTC:market/mvrv_z_score", T0, 1.5),
        ("BTC:market/mvrv_z_score", T0 + timedelta(days=1), None),
        ("BTC:market/mvrv_z_score", T0 + timedelta(days=2), 3.0),
    ]


# ---- CoinGecko grouping --------------------------------------------------------------------


def candles(closes_at: list[int], spacing_minutes: int = 30) -> list[list[Any]]:
    """Candles stamped with their close, ``closes_at`` in candle counts after T0."""
    out = []
    for k in closes_at:
        at = T0 + timedelta(minutes=spacing_minutes * k)
        price = 100.0 + k
        out.append([int(at.timestamp() * 1000), price, price + 2, price - 2, price + 1])
    return out


def test_coingecko_drops_an_hour_missing_one_of_its_half_hours() -> None:
    # half-hour candles closing at 00:30 … 04:00, the one closing at 02:00 missing
    rows = candles([1, 2, 3, 5, 6, 7, 8])
    got = CoinGeckoOhlc(BASE).validate(rows, KlineRequest("BTCUSDT", "1h", 10))
    assert [b.open_time for b in got] == [T0, T0 + timedelta(hours=2), T0 + timedelta(hours=3)]
    first = got[0]
    # open of the first half, close of the second, the extremes of both
    assert (first.open, first.high, first.low, first.close) == (101.0, 104.0, 99.0, 103.0)
    assert all(b.volume == 0.0 for b in got)


def test_coingecko_keeps_the_newest_limit_bars_and_refuses_months() -> None:
    rows = candles(list(range(1, 13)))  # six whole hours
    got = CoinGeckoOhlc(BASE).validate(rows, KlineRequest("BTCUSDT", "1h", 2))
    assert [b.open_time for b in got] == [T0 + timedelta(hours=4), T0 + timedelta(hours=5)]
    assert CoinGeckoOhlc(BASE).validate(rows, KlineRequest("BTCUSDT", "1h", 0)) == []
    with pytest.raises(InvalidPayload, match=r"interval 1M has no fixed length to group candles"):
        CoinGeckoOhlc(BASE).validate(rows, KlineRequest("BTCUSDT", "1M", 2))


def test_coingecko_refuses_short_candles_and_a_lone_candle_of_the_wrong_size() -> None:
    with pytest.raises(InvalidPayload, match=r"^coingecko: row 0: has 4 fields, an OHLC candle"):
        CoinGeckoOhlc(BASE).validate([[1717200000000, 1, 2, 0.5]], KlineRequest("BTCUSDT", "1h"))
    with pytest.raises(InvalidPayload, match=r"^coingecko: row 0: is an object, not an array"):
        CoinGeckoOhlc(BASE).validate([{"t": 1}], KlineRequest("BTCUSDT", "1h"))


def test_a_lone_candle_takes_the_size_coingecko_sends_for_the_days_asked() -> None:
    source = CoinGeckoOhlc(BASE)
    stamp = T0 + timedelta(hours=8)
    lone = [[int(stamp.timestamp() * 1000), 100.0, 102.0, 98.0, 101.0]]
    # 4h x 100 bars asks 30 days: 4-hour candles, so the candle is a whole bar
    [bar] = source.validate(lone, KlineRequest("BTCUSDT", "4h", 100))
    assert (bar.open_time, bar.open, bar.close) == (stamp - timedelta(hours=4), 100.0, 101.0)
    # 1h asks 1 day: half-hour candles, and half an hour is not an hour
    assert source.validate(lone, KlineRequest("BTCUSDT", "1h", 100)) == []
    # 1m: no candle size divides it
    with pytest.raises(
        InvalidPayload, match=r"candles are 30m apart, which does not divide .* 1m$"
    ):
        source.validate(lone, KlineRequest("BTCUSDT", "1m", 10))


def test_coingecko_days_for_intervals_it_cannot_serve() -> None:
    assert coingecko_days("1M", 10) is None  # no fixed length
    assert coingecko_days("1m", 10) is None  # finer than every candle size
