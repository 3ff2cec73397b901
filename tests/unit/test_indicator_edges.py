"""Indicator edge cases a user meets at the start of a series or after a bad save: a series
shorter than a warm-up gives ``None`` (never a made-up value) on both paths and, where it has
values, TA-Lib's own; one-way markets give RSI 100 or 0; bad periods are refused naming the
parameter; a corrupted saved state is refused naming the key, not silently continued.
"""

from __future__ import annotations

import copy
import csv
import functools
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tickbase.marketdata.bars import Bar, load_bars
from tickbase.marketdata.indicators import (
    NAMES,
    Atr,
    Bollinger,
    Ema,
    IndicatorSet,
    IndicatorValues,
    Macd,
    Rsi,
    batch,
)

REFERENCE = Path(__file__).parent.parent / "data" / "reference"
FIRST_VALUE = {
    "ema21": 20,
    "ema55": 54,
    "rsi14": 14,
    "macd": 33,
    "macd_signal": 33,
    "macd_hist": 33,
    "bb_upper": 19,
    "bb_middle": 19,
    "bb_lower": 19,
    "atr14": 14,
}
"""The first row with a value (0-based), from the reference README."""


@functools.cache
def reference(series: str) -> list[tuple[float | None, ...]]:
    with (REFERENCE / f"{series}.ta.csv").open(newline="") as fh:
        return [tuple(float(r[n]) if r[n] else None for n in NAMES) for r in csv.DictReader(fh)]


def close_enough(got: float | None, want: float | None, close: float) -> bool:
    if want is None or got is None:
        return got is want
    return abs(got - want) <= 1e-9 * max(abs(want), abs(close))


@pytest.mark.parametrize("length", [1, 2, 14, 15, 20, 33, 34, 55])
@pytest.mark.parametrize("series", ["goog-1d", "btcusd-1M"])
def test_a_short_series_warms_up_like_talib_on_both_paths(series: str, length: int) -> None:
    bars = load_bars(series)[:length]
    indicators = IndicatorSet()
    incremental = [indicators.update_bar(bar) for bar in bars]
    batched = batch(bars)
    assert len(batched) == len(incremental) == length
    for i, (inc, bat, bar) in enumerate(zip(incremental, batched, bars, strict=True)):
        want = reference(series)[i]
        for name, a, b, w in zip(NAMES, inc.values(), bat.values(), want, strict=True):
            assert (w is None) == (i < FIRST_VALUE[name]), (series, i, name)
            assert close_enough(a, w, bar.close), (series, i, name, "incremental", a, w)
            assert close_enough(b, w, bar.close), (series, i, name, "batch", b, w)


def test_one_bar_gives_a_row_of_nothing_but_its_time() -> None:
    bar = load_bars("eurusd-1h")[0]
    for row in (IndicatorSet().update_bar(bar), batch([bar])[0]):
        assert row.open_time == bar.open_time
        assert row.values() == (None,) * len(NAMES)
        assert row.row() == {"open_time": bar.open_time.isoformat(), **dict.fromkeys(NAMES)}


def ramp(count: int, step: float) -> list[Bar]:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    closes = [100.0 + step * i for i in range(count)]
    return [Bar(t0 + timedelta(hours=i), c, c + 0.5, c - 0.5, c, 1.0) for i, c in enumerate(closes)]


def test_a_market_that_only_rises_has_rsi_100_and_only_falls_rsi_0() -> None:
    for step, rsi in ((1.0, 100.0), (-1.0, 0.0)):
        bars = ramp(40, step)
        indicators = IndicatorSet()
        rows_inc = [indicators.update_bar(b) for b in bars]
        for rows in (rows_inc, batch(bars)):
            assert rows[13].rsi14 is None
            assert all(r.rsi14 == pytest.approx(rsi, abs=1e-9) for r in rows[14:])


def test_a_straight_line_is_followed_by_every_average() -> None:
    bars = ramp(60, 2.0)
    indicators = IndicatorSet()
    last = [indicators.update_bar(b) for b in bars][-1]
    close = bars[-1].close
    # an EMA of a line lags it by (n - 1) / 2 steps, a 20-bar SMA by 9.5 steps
    assert last.ema21 == pytest.approx(close - 2.0 * 10, rel=1e-9)
    assert last.bb_middle == pytest.approx(close - 2.0 * 9.5, rel=1e-12)
    # population sd of 20 evenly spaced values, 2 apart: 2 * sqrt((20**2 - 1) / 12)
    width = 2 * 2.0 * math.sqrt((20**2 - 1) / 12)
    assert last.bb_upper is not None and last.bb_lower is not None
    assert last.bb_middle is not None
    assert last.bb_upper - last.bb_middle == pytest.approx(width, rel=1e-9)
    assert last.bb_middle - last.bb_lower == pytest.approx(width, rel=1e-9)
    assert last.atr14 == pytest.approx(2.5, rel=1e-12)  # |high - previous close| = 0.5 + 2
    assert last.macd == pytest.approx(2.0 * (25 - 11) / 2, rel=1e-9)
    assert last.macd_hist == pytest.approx(0.0, abs=1e-9)


# ---- parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Ema(0), "n must be an int >= 1, got 0"),
        (lambda: Ema(True), "n must be an int >= 1, got True"),
        (lambda: Rsi(14.0), "n must be an int >= 2, got 14.0"),  # type: ignore[arg-type]
        (lambda: Atr(0), "n must be an int >= 2, got 0"),
        (lambda: Bollinger(20, math.nan), "k nan is not a finite number"),
        (lambda: Bollinger(1), "n must be an int >= 2, got 1"),
        (lambda: Macd(26, 12), "fast (26) must be shorter than slow (12)"),
        (lambda: Macd(12, 12), "fast (12) must be shorter than slow (12)"),
        (lambda: Macd(12, 26, 0), "signal must be an int >= 1, got 0"),
    ],
)
def test_bad_periods_are_refused_naming_the_parameter(make: Any, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        make()
    assert str(refused.value) == message


def test_a_one_bar_signal_line_is_the_macd_itself() -> None:
    macd = Macd(3, 5, 1)
    out = [macd.update(float(x)) for x in (1, 3, 2, 5, 4, 6, 8)]
    assert out[:4] == [None] * 4
    for value in out[4:]:
        assert value is not None
        line, signal, hist = value
        assert signal == line and hist == 0.0


# ---- corrupted saved states ---------------------------------------------------------------


def warm_state() -> dict[str, Any]:
    indicators = IndicatorSet()
    for bar in load_bars("goog-1d")[:60]:
        indicators.update_bar(bar)
    return indicators.state()


def corrupt(path: str, value: Any) -> dict[str, Any]:
    state = copy.deepcopy(warm_state())
    *parents, key = path.split(".")
    node = state
    for parent in parents:
        node = node[parent]
    node[key] = value
    return state


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("ema21.count", 22, "indicator state 'count' out of range: 22"),
        ("ema21.count", -1, "indicator state 'count' out of range: -1"),
        ("rsi14.count", 16, "indicator state 'count' out of range: 16"),
        ("atr14.count", 99, "indicator state 'count' out of range: 99"),
        ("macd.count", 15, "indicator state 'count' out of range: 15"),
        ("ema55.value", math.inf, "indicator state 'value' is not finite: inf"),
        ("ema55.value", True, "indicator state 'value' has a bad value True"),
        ("ema21.n", 0, "n must be an int >= 1, got 0"),
        ("ema21.n", 20, "indicator state 'count' out of range: 21"),
        ("rsi14.prev", None, "indicator state 'prev' has a bad value None"),
        ("bbands.window", [1.0] * 20, "indicator state 'window' holds 20 values, at most 19"),
        ("bbands.window", "1,2,3", "indicator state 'window' has a bad value '1,2,3'"),
        ("bbands.window", [1.0, "2"], "indicator state 'window' has a bad value '2'"),
        ("bbands.sum2", math.nan, "indicator state 'sum2' is not finite: nan"),
        ("macd.fast", "x", "indicator state 'fast' has a bad value 'x'"),
        ("macd.fast", {"count": 0}, "indicator state lacks 'n'"),
    ],
)
def test_a_corrupted_state_is_refused_naming_the_key(path: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        IndicatorSet.from_state(corrupt(path, value))
    assert message in str(refused.value)


def test_a_sound_state_round_trips_and_continues_like_the_straight_run() -> None:
    bars = load_bars("goog-1d")[:80]
    straight = IndicatorSet()
    expected: list[IndicatorValues] = [straight.update_bar(b) for b in bars]
    restored = IndicatorSet.from_state(warm_state())
    assert restored.last_open_time == bars[59].open_time
    assert [restored.update_bar(b) for b in bars[60:]] == expected[60:]
