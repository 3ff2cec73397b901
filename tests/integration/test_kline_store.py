"""The K-line and observation stores over a real database: upserts replace a revised bar
instead of duplicating it, reads come oldest first from the series' current source, windows
are half-open, bad batches are refused whole with an error naming the problem and leave
what was stored untouched, and chart aggregation of real EUR/USD hours equals the same
aggregation done by hand.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import tickbase
from tickbase.marketdata.bars import Bar, BarLike, load_bars
from tickbase.marketdata.collector import Kline, Observation
from tickbase.marketdata.resample import aggregate, parse_resolution
from tickbase.marketdata.store import DEFAULT_SOURCE, KlineStore, ObservationStore

T0 = datetime(2024, 1, 1, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def minute_bars(*closes: float, start: int = 0) -> list[Kline]:
    return [
        Kline(T0 + (start + i) * MINUTE, close, close + 1, close / 2, close, 10.0 + i)
        for i, close in enumerate(closes)
    ]


def closes_of(bars: Sequence[BarLike]) -> list[float]:
    return [b.close for b in bars]


# ---- upserts ------------------------------------------------------------------------------


async def test_a_revised_bar_replaces_the_stored_one(app: tickbase.App) -> None:
    store = KlineStore(app.pool)
    assert await store.upsert("binance", "REV", "1m", minute_bars(100.0, 101.0, 102.0)) == 3
    revised = dataclasses.replace(minute_bars(101.5, start=1)[0], volume=99.0)
    assert await store.upsert("binance", "REV", "1m", [revised]) == 1

    stored = await store.latest("REV", "1m")
    assert [(b.open_time, b.close, b.volume) for b in stored] == [
        (T0, 100.0, 10.0),
        (T0 + MINUTE, 101.5, 99.0),
        (T0 + 2 * MINUTE, 102.0, 12.0),
    ]


async def test_an_empty_batch_stores_nothing_and_touches_no_connection(app: tickbase.App) -> None:
    store = KlineStore(app.pool)
    assert await store.upsert("binance", "NONE", "1m", []) == 0
    assert not await store.has_series("NONE", "1m")
    assert await ObservationStore(app.pool).upsert("nothing", "macro", "fred", []) == 0


async def test_binance_fields_and_the_filled_flag_are_kept(app: tickbase.App) -> None:
    full = Kline(T0, 10.0, 11.0, 9.0, 10.5, 7.0, T0 + MINUTE - timedelta(milliseconds=1), 73.5, 42)
    filled = Kline(T0 + MINUTE, 10.5, 10.5, 10.5, 10.5, 0.0, is_filled=True)
    await KlineStore(app.pool).upsert("binance", "FULL", "1m", [full, filled])
    async with app.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT close_time, quote_volume, trade_count, is_filled FROM tickbase.klines"
            " WHERE symbol = 'FULL' ORDER BY open_time"
        )
        rows = await cursor.fetchall()
    assert rows == [
        (T0 + MINUTE - timedelta(milliseconds=1), 73.5, 42, False),
        (None, None, None, True),
    ]
    stored = await KlineStore(app.pool).latest("FULL", "1m")
    assert [b.is_filled for b in stored] == [False, True]
    assert stored[0].to_dict()["open_time"] == "2024-01-01T00:00:00+00:00"
    assert stored[1].to_dict()["is_filled"] is True


async def test_a_bad_series_name_is_refused_naming_it_and_nothing_is_stored(
    app: tickbase.App,
) -> None:
    store = KlineStore(app.pool)
    for symbol, interval, field, given in [
        ("BTC USDT", "1m", "symbol", "BTC USDT"),
        ("X" * 41, "1m", "symbol", "X" * 41),
        ("BTCUSDT", "1x", "interval", "1x"),
        ("BTCUSDT", "minute", "interval", "minute"),
    ]:
        with pytest.raises(tickbase.InvalidMarketData) as refused:
            await store.upsert("binance", symbol, interval, minute_bars(10.0, 20.0))
        assert refused.value.field == field
        assert str(refused.value).startswith(f"invalid {field} {given!r}: ")
    assert await store.series() == []


async def test_a_batch_with_one_impossible_bar_is_refused_whole_naming_the_bar(
    app: tickbase.App,
) -> None:
    store = KlineStore(app.pool)
    await store.upsert("binance", "WHOLE", "1m", minute_bars(100.0, 101.0))
    good = minute_bars(200.0, 201.0, start=0)
    bad = Kline(T0 + 2 * MINUTE, 10.0, 9.0, 8.0, 10.0, 1.0)  # high below open and close
    with pytest.raises(tickbase.InvalidMarketData) as refused:
        await store.upsert("binance", "WHOLE", "1m", [*good, bad])
    assert str(refused.value) == (
        "invalid prices '2024-01-01T00:02:00+00:00': WHOLE 1m bar: "
        "high 9.0 is below max(open, close) 10.0"
    )
    assert refused.value.field == "prices"
    # the earlier bars are not half-replaced by the refused batch
    assert closes_of(await store.latest("WHOLE", "1m")) == [100.0, 101.0]


async def test_each_price_rule_is_named_in_the_refusal(app: tickbase.App) -> None:
    store = KlineStore(app.pool)
    rules: list[tuple[dict[str, Any], str]] = [
        ({"low": 0.0}, "low 0.0 is not a positive price"),
        ({"low": 10.5}, "low 10.5 is above min(open, close) 10.0"),
        ({"volume": -1.0}, "volume -1.0 is negative"),
        ({"high": float("inf")}, "high inf is not a finite number"),
    ]
    for change, problem in rules:
        bar = dataclasses.replace(Kline(T0, 10.0, 11.0, 9.0, 10.0, 1.0), **change)
        with pytest.raises(
            tickbase.InvalidMarketData, match=rf": RULE 1m bar: {re.escape(problem)}$"
        ):
            await store.upsert("binance", "RULE", "1m", [bar])
    assert not await store.has_series("RULE", "1m")


# ---- reads --------------------------------------------------------------------------------


async def test_latest_is_the_newest_limit_oldest_first(app: tickbase.App) -> None:
    store = KlineStore(app.pool)
    await store.upsert("binance", "LAST", "1m", minute_bars(*range(1, 11)))
    assert closes_of(await store.latest("LAST", "1m", limit=3)) == [8.0, 9.0, 10.0]
    assert closes_of(await store.latest("LAST", "1m", limit=100)) == [
        float(c) for c in range(1, 11)
    ]
    assert await store.latest("LAST", "1h") == []
    assert await store.latest("OTHER", "1m") == []


async def test_reads_follow_the_source_of_the_newest_bar(app: tickbase.App) -> None:
    store = KlineStore(app.pool)
    await store.upsert("replay", "MIX", "1m", minute_bars(1.0, 2.0, 3.0, 4.0))
    await store.upsert("binance", "MIX", "1m", minute_bars(30.0, 40.0, 50.0, start=2))

    current = await store.latest("MIX", "1m")
    assert {b.source for b in current} == {"binance"}
    assert closes_of(current) == [30.0, 40.0, 50.0]
    assert closes_of(await store.latest("MIX", "1m", source="replay")) == [1.0, 2.0, 3.0, 4.0]
    # a replayed bar as new as the live one does not take the series over
    await store.upsert("replay", "MIX", "1m", minute_bars(5.0, start=4))
    assert {b.source for b in await store.latest("MIX", "1m")} == {"binance"}

    window = await store.window("MIX", "1m", T0, T0 + 10 * MINUTE, limit=10)
    assert [b.source for b in window] == ["binance"] * 3
    assert await store.last_before("MIX", "1m", T0 + 3 * MINUTE) == T0 + 2 * MINUTE
    assert await store.last_before("MIX", "1m", T0 + 2 * MINUTE) is None  # binance starts there


async def test_window_is_half_open_and_keeps_the_newest_when_over_the_limit(
    app: tickbase.App,
) -> None:
    store = KlineStore(app.pool)
    await store.upsert("binance", "WIN", "1m", minute_bars(*range(1, 11)))
    inside = await store.window("WIN", "1m", T0 + 2 * MINUTE, T0 + 5 * MINUTE, limit=100)
    assert [b.open_time for b in inside] == [T0 + i * MINUTE for i in (2, 3, 4)]
    newest = await store.window("WIN", "1m", T0, T0 + 10 * MINUTE, limit=2)
    assert closes_of(newest) == [9.0, 10.0]
    assert await store.window("WIN", "1m", T0 + 20 * MINUTE, T0 + 30 * MINUTE, limit=5) == []
    assert await store.window("WIN", "1m", T0 + 5 * MINUTE, T0 + 5 * MINUTE, limit=5) == []


async def test_last_before_skips_gaps_and_is_none_before_the_first_bar(
    app: tickbase.App,
) -> None:
    store = KlineStore(app.pool)
    await store.upsert("binance", "GAP", "1m", minute_bars(1.0, 2.0))
    await store.upsert("binance", "GAP", "1m", minute_bars(3.0, start=60))
    assert await store.last_before("GAP", "1m", T0 + 60 * MINUTE) == T0 + MINUTE
    assert await store.last_before("GAP", "1m", T0 + 61 * MINUTE) == T0 + 60 * MINUTE
    assert await store.last_before("GAP", "1m", T0) is None
    assert await store.last_before("NOPE", "1m", T0 + 60 * MINUTE) is None


async def test_series_lists_every_symbol_and_interval_once(app: tickbase.App) -> None:
    store = KlineStore(app.pool)
    await store.upsert("binance", "B", "1m", minute_bars(1.0))
    await store.upsert("replay", "B", "1m", minute_bars(1.0))
    await store.upsert("binance", "B", "1h", minute_bars(1.0))
    await store.upsert("binance", "A", "1d", minute_bars(1.0))
    assert await store.series() == [("A", "1d"), ("B", "1h"), ("B", "1m")]
    assert await store.has_series("B", "1h")
    assert not await store.has_series("B", "4h")


# ---- observations -------------------------------------------------------------------------


def observations(*values: float | None, label: str | None = None) -> list[Observation]:
    return [
        Observation("DGS10", T0 + timedelta(days=i), value, label) for i, value in enumerate(values)
    ]


async def test_an_observation_without_a_value_refuses_the_batch_naming_it(
    app: tickbase.App,
) -> None:
    store = ObservationStore(app.pool)
    await store.upsert("DGS10", "macro", "fred", observations(4.0, 4.1))
    with pytest.raises(ValueError, match=r"^DGS10: observations without a value at \['2024-01-02"):
        await store.upsert("DGS10", "macro", "fred", observations(5.0, None, 5.2))
    assert [o.value for o in await store.latest("DGS10")] == [4.0, 4.1]


async def test_a_bad_series_or_kind_is_refused_and_nothing_is_stored(app: tickbase.App) -> None:
    store = ObservationStore(app.pool)
    with pytest.raises(tickbase.TickbaseError, match="series"):
        await store.upsert("bad series!", "macro", "fred", observations(1.0))
    with pytest.raises(tickbase.TickbaseError, match="kind"):
        await store.upsert("DGS10", "weather", "fred", observations(1.0))
    assert await store.series() == []


async def test_observations_are_replaced_read_newest_limit_and_listed(app: tickbase.App) -> None:
    store = ObservationStore(app.pool)
    assert await store.upsert("DGS10", "macro", "fred", observations(4.0, 4.1, 4.2)) == 3
    assert await store.upsert("DGS10", "macro", "fred", observations(4.0, 4.15)) == 2
    await store.upsert(
        "fear_greed", "sentiment", "alternative.me", observations(71.0, label="Greed")
    )

    latest = await store.latest("DGS10", limit=2)
    assert [(o.observed_at, o.value) for o in latest] == [
        (T0 + timedelta(days=1), 4.15),
        (T0 + timedelta(days=2), 4.2),
    ]
    fear = (await store.latest("fear_greed"))[0]
    assert fear.to_dict() == {
        "series": "fear_greed",
        "observed_at": "2024-01-01T00:00:00+00:00",
        "kind": "sentiment",
        "source": "alternative.me",
        "value": 71.0,
        "label": "Greed",
        "is_filled": False,
    }
    assert await store.series() == [("DGS10", "macro"), ("fear_greed", "sentiment")]


async def test_a_default_never_overwrites_a_real_value_but_another_default(
    app: tickbase.App,
) -> None:
    store = ObservationStore(app.pool)
    real = [Observation("fng", T0, 20.0)]
    default = [Observation("fng", T0, 50.0, is_filled=True)]
    await store.upsert("fng", "sentiment", "alternative.me", real)
    assert await store.upsert("fng", "sentiment", DEFAULT_SOURCE, default) == 0
    assert [(o.value, o.source) for o in await store.latest("fng")] == [(20.0, "alternative.me")]

    later = [Observation("fng", T0 + timedelta(days=1), 50.0, is_filled=True)]
    assert await store.upsert("fng", "sentiment", DEFAULT_SOURCE, later) == 1
    assert await store.upsert("fng", "sentiment", DEFAULT_SOURCE, later) == 1


# ---- chart aggregation of real bars -------------------------------------------------------


Row = tuple[datetime, float, float, float, float, float]


def by_hand(bars: Sequence[Bar], bucket_of: Callable[[datetime], datetime]) -> list[Row]:
    """open of the first, highest high, lowest low, close of the last, summed volume."""
    groups: dict[datetime, list[Bar]] = {}
    for bar in bars:
        groups.setdefault(bucket_of(bar.open_time), []).append(bar)
    return [
        (
            start,
            group[0].open,
            max(b.high for b in group),
            min(b.low for b in group),
            group[-1].close,
            sum(b.volume for b in group),
        )
        for start, group in groups.items()
    ]


@pytest.mark.parametrize("resolution", ["240", "1D", "1W"])
async def test_aggregating_real_hours_equals_doing_it_by_hand(
    app: tickbase.App, resolution: str
) -> None:
    hours = load_bars("eurusd-1h")[:600]  # 2017-04-19 … mid-May, weekends absent
    await KlineStore(app.pool).upsert("import", "EURUSD", "1h", hours)
    target = parse_resolution(resolution)
    start, end = hours[0].open_time, hours[-1].open_time + timedelta(hours=1)

    got = await aggregate(app.pool, "EURUSD", "1h", target, start, end, limit=10_000)
    expected = [row for row in by_hand(hours, target.bucket) if row[0] >= start]
    assert [(b.open_time, b.open, b.high, b.low, b.close) for b in got] == [
        row[:5] for row in expected
    ]
    for bar, row in zip(got, expected, strict=True):
        assert bar.volume == pytest.approx(row[5], rel=1e-12)
    # weekends hold no bars, so no weekend bucket is made up
    assert all(b.open_time.weekday() != 5 for b in got)

    newest = await aggregate(app.pool, "EURUSD", "1h", target, start, end, limit=2)
    assert newest == got[-2:]
