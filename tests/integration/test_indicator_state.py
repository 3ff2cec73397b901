"""Indicators advanced per series with their state in the database: a restart
continues exactly, and the values equal TA-Lib's reference on a real series."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import psycopg

import tickbase
from tickbase.marketdata.bars import load_bars
from tickbase.marketdata.indicators import NAMES
from tickbase.marketdata.state import IndicatorStates
from tickbase.marketdata.store import KlineStore

REFERENCE = Path(__file__).parents[1] / "data" / "reference" / "goog-1d.ta.csv"


async def test_advance_continues_from_saved_state_and_equals_talib(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    bars = load_bars("goog-1d")
    store = KlineStore(app.pool)
    half = len(bars) // 2
    await store.upsert("replay", "GOOG", "1d", bars[:half])
    first = await IndicatorStates(app.pool).advance("replay", "GOOG", "1d")
    assert len(first) == half
    assert await IndicatorStates(app.pool).advance("replay", "GOOG", "1d") == []  # nothing new

    # a "restart": a new object, only the database carries the state
    await store.upsert("replay", "GOOG", "1d", bars[half:])
    second = await IndicatorStates(app.pool).advance("replay", "GOOG", "1d")
    assert len(second) == len(bars) - half
    saved = sql_conn.execute(
        "SELECT last_open_time, state->>'version' FROM tickbase.indicator_state"
    ).fetchone()
    assert saved is not None and saved[0] == bars[-1].open_time and saved[1] == "1"

    with REFERENCE.open() as handle:
        reference = list(csv.DictReader(handle))
    for got, want in zip(first + second, reference, strict=True):
        assert got.open_time.isoformat().replace("+00:00", "Z") == want["open_time"]
        for name, value in zip(NAMES, got.values(), strict=True):
            if want[name] == "":
                assert value is None, (got.open_time, name)
            else:
                expected = float(want[name])
                assert value is not None
                assert abs(value - expected) <= 1e-9 * max(abs(expected), 1.0), (
                    got.open_time,
                    name,
                )
