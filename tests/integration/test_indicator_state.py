"""Indicators advanced per series with their state in the database: a restart
continues exactly, and the values equal TA-Lib's reference on a real series."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

import tickbase
from tickbase.marketdata import state
from tickbase.marketdata.bars import Bar, load_bars
from tickbase.marketdata.indicators import NAMES, IndicatorSet
from tickbase.marketdata.state import IndicatorStates
from tickbase.marketdata.store import KlineStore

REFERENCE = Path(__file__).parents[1] / "data" / "reference"
SERIES = ("btcusd-1M", "es-1m", "eurusd-1h", "goog-1d", "msft-1d", "spx-1d")


@pytest.mark.parametrize("series", SERIES)
async def test_advance_continues_from_saved_state_and_equals_talib(
    app: tickbase.App, sql_conn: psycopg.Connection[Any], series: str
) -> None:
    """Every real series, stored in two halves with a "restart" between (a new object:
    only the database carries the state): every value equals TA-Lib's to 1e-9 relative
    (``macd_hist``, which crosses zero: 1e-9 × close absolute)."""
    bars = load_bars(series)
    store = KlineStore(app.pool)
    half = len(bars) // 2
    await store.upsert("replay", "S", "1d", bars[:half])
    first = await IndicatorStates(app.pool).advance("replay", "S", "1d")
    assert len(first) == half
    assert await IndicatorStates(app.pool).advance("replay", "S", "1d") == []  # nothing new

    await store.upsert("replay", "S", "1d", bars[half:])
    second = await IndicatorStates(app.pool).advance("replay", "S", "1d")
    assert len(second) == len(bars) - half
    saved = sql_conn.execute(
        "SELECT last_open_time, state->>'version' FROM tickbase.indicator_state"
    ).fetchone()
    assert saved is not None and saved[0] == bars[-1].open_time and saved[1] == "1"

    with (REFERENCE / f"{series}.ta.csv").open() as handle:
        reference = list(csv.DictReader(handle))
    for bar, got, want in zip(bars, first + second, reference, strict=True):
        assert got.open_time.isoformat().replace("+00:00", "Z") == want["open_time"]
        for name, value in zip(NAMES, got.values(), strict=True):
            if want[name] == "":
                assert value is None, (got.open_time, name)
                continue
            expected = float(want[name])
            assert value is not None
            scale = bar.close if name == "macd_hist" else abs(expected)
            assert abs(value - expected) <= 1e-9 * scale, (got.open_time, name, value, expected)


async def test_advance_in_batches_reads_only_its_source_and_equals_one_straight_run(
    app: tickbase.App, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state, "ADVANCE_BATCH", 97)  # several batches, the last one partial
    bars = load_bars("msft-1d")[:500]
    store = KlineStore(app.pool)
    await store.upsert("replay", "MSFT", "1d", bars[:250])
    # Another source's copy of the series is another series: never fed to this one.
    await store.upsert("other", "MSFT", "1d", [replace(b, close=b.open) for b in bars])
    states = IndicatorStates(app.pool)
    first = await states.advance("replay", "MSFT", "1d")
    await store.upsert("replay", "MSFT", "1d", bars[250:])
    second = await states.advance("replay", "MSFT", "1d")
    assert len(first) == 250 and len(second) == 250

    straight = IndicatorSet()
    assert first + second == [straight.update_bar(bar) for bar in bars]
    saved = await states.load("replay", "MSFT", "1d")
    assert saved is not None and saved.state() == straight.state()
    assert await states.advance("replay", "MSFT", "1d") == []


async def test_store_and_advance_equals_upsert_then_advance(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    """The closed-bar path (write and state read in one round trip) stores what upsert
    stores and yields what advance yields, bar by bar, a 25% jump flagged on the way."""
    bars = load_bars("eurusd-1h")[:300]
    jumped = [
        Bar(b.open_time, b.open * 1.25, b.high * 1.25, b.low * 1.25, b.close * 1.25, b.volume)
        if i >= 200
        else b
        for i, b in enumerate(bars)
    ]
    states = IndicatorStates(app.pool)
    store = KlineStore(app.pool)
    one_by_one = [
        value for bar in jumped for value in await states.store_and_advance("a", "EU", "1h", [bar])
    ]
    await store.upsert("b", "EU", "1h", jumped)
    in_bulk = await states.advance("b", "EU", "1h")
    assert [v.values() for v in one_by_one] == [v.values() for v in in_bulk]
    rows = sql_conn.execute(
        "SELECT source, open_time, close, is_anomaly FROM tickbase.klines "
        "ORDER BY source, open_time"
    ).fetchall()
    a_rows = [r[1:] for r in rows if r[0] == "a"]
    assert a_rows == [r[1:] for r in rows if r[0] == "b"]
    assert [r[0] for r in a_rows if r[2]] == [jumped[200].open_time]


async def test_store_and_advance_with_other_writers_equals_one_straight_run(
    app: tickbase.App,
) -> None:
    """Two processes' worth of writers on one series, and bars stored by a plain upsert
    in between: whoever writes, the state in the database decides, and every bar's
    values equal one straight run's."""
    bars = load_bars("goog-1d")[:400]
    first, second = IndicatorStates(app.pool), IndicatorStates(app.pool)
    store = KlineStore(app.pool)
    got = []
    for index, bar in enumerate(bars):
        if index % 50 == 7:
            await store.upsert("x", "G", "1d", [bar])  # stored, not advanced
            continue
        writer = first if (index // 20) % 2 == 0 else second
        got.extend(await writer.store_and_advance("x", "G", "1d", [bar]))
    straight = IndicatorSet()
    assert [v.values() for v in got] == [straight.update_bar(b).values() for b in bars]
    # a bar again (a revision): stored, nothing fed, nothing lost
    assert await first.store_and_advance("x", "G", "1d", [bars[-1]]) == []
    assert (await first.load("x", "G", "1d")) is not None
