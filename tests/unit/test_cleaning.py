"""Cleaning rules on real series: prices forward-filled, on-chain interpolated, macro
carried, sentiment defaulting to 50; the source's own values never change."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tickbase.marketdata.bars import load_bars
from tickbase.marketdata.cleaning import (
    SENTIMENT_DEFAULT,
    carry_forward,
    clean_observations,
    closed_bars,
    forward_fill,
    interpolate,
    neutral_default,
)
from tickbase.marketdata.collector import Kline, Observation

MACRO = Path(__file__).parent.parent / "data" / "macro"


def _klines(sample: str) -> list[Kline]:
    return [Kline(b.open_time, b.open, b.high, b.low, b.close, b.volume) for b in load_bars(sample)]


def _observations(name: str, column: str) -> list[Observation]:
    with (MACRO / name).open() as handle:
        return [
            Observation(
                column,
                datetime.fromisoformat(row["date"]).replace(tzinfo=UTC),
                float(row[column]) if row[column] else None,
            )
            for row in csv.DictReader(handle)
        ]


def test_forward_fill_stands_in_for_missing_bars_with_the_previous_close() -> None:
    bars = _klines("es-1m")[:200]
    removed = {10, 11, 12, 50}
    holed = [b for i, b in enumerate(bars) if i not in removed]
    # es-1m itself has gaps (minutes without a trade): those are filled too.
    filled = forward_fill(holed, "1m")
    by_time = {b.open_time: b for b in filled}
    step = timedelta(minutes=1)
    times = [b.open_time for b in filled]
    assert times == [times[0] + i * step for i in range(len(times))], "a regular grid"
    for index in removed:
        bar = by_time[bars[index].open_time]
        previous = by_time[bar.open_time - step]
        assert bar.is_filled
        assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == (
            previous.close,
            previous.close,
            previous.close,
            previous.close,
            0.0,
        )
    originals = {b.open_time: b for b in holed}
    for bar in filled:
        if not bar.is_filled:
            assert bar == originals[bar.open_time], "a traded bar is never changed"


def test_forward_fill_leaves_month_bars_alone() -> None:
    bars = _klines("btcusd-1M")
    assert forward_fill(bars[::2], "1M") == bars[::2]


def test_closed_bars_drops_the_bar_still_open() -> None:
    bars = _klines("eurusd-1h")[:5]
    now = bars[-1].open_time + timedelta(minutes=30)
    assert closed_bars(bars, "1h", now) == bars[:-1]
    assert closed_bars(bars, "1h", now + timedelta(minutes=30)) == bars


def test_interpolation_draws_a_straight_line_between_known_values() -> None:
    series = _observations("core-cpi-1M.csv", "core_cpi")[:24]
    holed = [
        Observation(o.series, o.observed_at, None) if i in (5, 6, 7, 20) else o
        for i, o in enumerate(series)
    ]
    cleaned = interpolate(holed)
    assert len(cleaned) == len(series)
    a, b = series[4], series[8]
    assert a.value is not None and b.value is not None
    for i in (5, 6, 7):
        share = (series[i].observed_at - a.observed_at) / (b.observed_at - a.observed_at)
        assert cleaned[i].value == pytest.approx(a.value + (b.value - a.value) * share, rel=1e-12)
        assert cleaned[i].is_filled
    assert [o for i, o in enumerate(cleaned) if i not in (5, 6, 7, 20)] == [
        o for i, o in enumerate(series) if i not in (5, 6, 7, 20)
    ]


def test_interpolation_leaves_out_what_it_cannot_draw_to() -> None:
    series = _observations("core-cpi-1M.csv", "core_cpi")[:6]
    holed = [
        Observation("c", o.observed_at, None if i in (0, 5) else o.value)
        for i, o in enumerate(series)
    ]
    assert [o.observed_at for o in interpolate(holed)] == [o.observed_at for o in series[1:5]]


def test_macro_values_are_carried_from_the_last_period() -> None:
    # WTI spot from FRED: empty on US holidays (290 empty cells in the file).
    series = _observations("wti-1d.csv", "wti_usd")
    gaps = [i for i, o in enumerate(series) if o.value is None and i > 0]
    assert len(gaps) > 200
    cleaned = {o.observed_at: o for o in carry_forward(series)}
    for i in gaps:
        filled = cleaned[series[i].observed_at]
        last_known = next(o.value for o in reversed(series[:i]) if o.value is not None)
        assert (filled.value, filled.is_filled) == (last_known, True)


def test_missing_sentiment_is_neutral() -> None:
    t = datetime(2024, 1, 1, tzinfo=UTC)
    readings = [Observation("fear_greed", t, 20.0), Observation("fear_greed", t, None)]
    cleaned = neutral_default(readings)
    assert [(o.value, o.is_filled) for o in cleaned] == [(20.0, False), (SENTIMENT_DEFAULT, True)]
    assert SENTIMENT_DEFAULT == 50.0


def test_each_kind_gets_its_rule_and_an_unknown_kind_is_refused() -> None:
    t = datetime(2024, 1, 1, tzinfo=UTC)
    points = [
        Observation("s", t, 10.0),
        Observation("s", t + timedelta(days=1), None),
        Observation("s", t + timedelta(days=2), 20.0),
    ]
    assert [o.value for o in clean_observations("onchain", points)] == [10.0, 15.0, 20.0]
    assert [o.value for o in clean_observations("macro", points)] == [10.0, 10.0, 20.0]
    assert [o.value for o in clean_observations("sentiment", points)] == [10.0, 50.0, 20.0]
    with pytest.raises(ValueError, match="no cleaning rule"):
        clean_observations("klines", points)


T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _bar(minutes: int, close: float) -> Kline:
    return Kline(T0 + timedelta(minutes=minutes), close - 1, close + 1, close - 2, close, 5.0)


def test_forward_fill_marks_only_the_bars_it_made() -> None:
    bars = [_bar(0, 100.0), _bar(3, 103.0), _bar(4, 104.0)]
    filled = forward_fill(bars, "1m")
    assert [(b.open_time - T0, b.is_filled) for b in filled] == [
        (timedelta(minutes=0), False),
        (timedelta(minutes=1), True),
        (timedelta(minutes=2), True),
        (timedelta(minutes=3), False),
        (timedelta(minutes=4), False),
    ]
    # Both fills carry the close before the gap, not each other's or the next one's.
    assert {(b.open, b.high, b.low, b.close, b.volume) for b in filled if b.is_filled} == {
        (100.0, 100.0, 100.0, 100.0, 0.0)
    }
    assert [b for b in filled if not b.is_filled] == bars


def test_forward_fill_follows_the_interval_and_does_nothing_without_gaps() -> None:
    hourly = [Kline(T0, 1, 1, 1, 1.0, 1), Kline(T0 + timedelta(hours=2), 2, 2, 2, 2.0, 1)]
    filled = forward_fill(hourly, "1h")
    assert [b.open_time for b in filled] == [T0 + timedelta(hours=h) for h in range(3)]
    assert filled[1].is_filled and filled[1].close == 1.0
    regular = [_bar(m, 100.0 + m) for m in range(5)]
    assert forward_fill(regular, "1m") == regular


def test_interpolation_weighs_by_time_not_by_position() -> None:
    # Unevenly spaced gaps: 1 h and 3 h into a 4 h span from 0 to 100.
    points = [
        Observation("m", T0, 0.0),
        Observation("m", T0 + timedelta(hours=1), None),
        Observation("m", T0 + timedelta(hours=3), None),
        Observation("m", T0 + timedelta(hours=4), 100.0),
    ]
    cleaned = interpolate(points)
    assert [(o.value, o.is_filled) for o in cleaned] == [
        (0.0, False),
        (25.0, True),
        (75.0, True),
        (100.0, False),
    ]
    assert cleaned[1].series == "m" and cleaned[1].observed_at == points[1].observed_at


def test_interpolation_with_one_known_value_keeps_it_alone() -> None:
    points = [
        Observation("m", T0, None),
        Observation("m", T0 + timedelta(hours=1), 7.0),
        Observation("m", T0 + timedelta(hours=2), None),
    ]
    assert interpolate(points) == [points[1]]


def test_carry_forward_takes_the_latest_known_value_and_drops_leading_gaps() -> None:
    points = [
        Observation("cpi", T0, None),
        Observation("cpi", T0 + timedelta(days=31), 3.0),
        Observation("cpi", T0 + timedelta(days=60), None),
        Observation("cpi", T0 + timedelta(days=91), 3.5),
        Observation("cpi", T0 + timedelta(days=121), None),
        Observation("cpi", T0 + timedelta(days=152), None),
    ]
    cleaned = carry_forward(points)
    assert [(o.observed_at, o.value, o.is_filled) for o in cleaned] == [
        (points[1].observed_at, 3.0, False),
        (points[2].observed_at, 3.0, True),
        (points[3].observed_at, 3.5, False),
        (points[4].observed_at, 3.5, True),
        (points[5].observed_at, 3.5, True),
    ]


def test_a_known_value_is_never_marked_filled_even_if_equal_to_the_last() -> None:
    points = [Observation("cpi", T0, 3.0), Observation("cpi", T0 + timedelta(days=1), 3.0)]
    assert carry_forward(points) == points
    assert neutral_default(points) == points


def test_empty_input_gives_empty_output() -> None:
    assert forward_fill([], "1m") == []
    assert forward_fill([], "1M") == []
    assert closed_bars([], "1m", T0) == []
    assert interpolate([]) == []
    assert carry_forward([]) == []
    assert neutral_default([]) == []
    for kind in ("onchain", "macro", "sentiment"):
        assert clean_observations(kind, []) == []


def test_nothing_known_gives_nothing_for_lines_and_carries_but_neutral_for_sentiment() -> None:
    points = [Observation("s", T0 + timedelta(days=d), None) for d in range(3)]
    assert interpolate(points) == []
    assert carry_forward(points) == []
    assert [(o.value, o.is_filled) for o in neutral_default(points)] == [(50.0, True)] * 3
