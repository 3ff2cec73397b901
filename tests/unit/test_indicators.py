"""Indicators against TA-Lib's own values, over every bundled real series.

The reference files (``tests/data/reference/<series>.ta.csv``) hold what TA-Lib computes;
both the incremental calculators and the batch path must equal them to 1e-9 relative
(``macd_hist``, which crosses zero: 1e-9 × close absolute), with ``None`` exactly where the
reference cell is empty.
"""

from __future__ import annotations

import csv
import functools
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from tickbase.marketdata.bars import Bar, InvalidBar, InvalidBarFile, load_bars, sample_names
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
    batch_arrays,
)

REFERENCE = Path(__file__).parent.parent / "data" / "reference"
SERIES = ("btcusd-1M", "es-1m", "eurusd-1h", "goog-1d", "msft-1d", "spx-1d")
REL_TOL = 1e-9


@dataclass(frozen=True)
class Reference:
    open_time: datetime
    values: tuple[float | None, ...]


@functools.cache
def bars_of(series: str) -> list[Bar]:
    return load_bars(series)


@functools.cache
def reference_of(series: str) -> list[Reference]:
    with (REFERENCE / f"{series}.ta.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["open_time", *NAMES]
        return [
            Reference(
                datetime.fromisoformat(row["open_time"]),
                tuple(float(row[n]) if row[n] else None for n in NAMES),
            )
            for row in reader
        ]


def assert_matches(series: str, rows: list[IndicatorValues], start: int = 0) -> None:
    """Every row from ``start`` equals the reference; reports the first mismatch precisely."""
    bars = bars_of(series)
    reference = reference_of(series)
    assert len(rows) == len(reference) - start
    for offset, (row, ref) in enumerate(zip(rows, reference[start:], strict=True)):
        i = start + offset
        assert row.open_time == ref.open_time == bars[i].open_time
        for name, got, want in zip(NAMES, row.values(), ref.values, strict=True):
            where = f"{series} row {i} ({ref.open_time:%Y-%m-%d %H:%M}) {name}"
            if want is None:
                assert got is None, f"{where}: expected None (warming up), got {got!r}"
                continue
            assert got is not None, f"{where}: expected {want!r}, got None"
            # macd_hist crosses zero, where a relative tolerance means nothing.
            scale = abs(bars[i].close) if name == "macd_hist" else abs(want)
            tolerance = REL_TOL * scale
            assert abs(got - want) <= tolerance, f"{where}: {got!r} != {want!r}"


def run(indicators: IndicatorSet, bars: list[Bar]) -> list[IndicatorValues]:
    return [indicators.update_bar(bar) for bar in bars]


def test_every_series_is_bundled_and_referenced() -> None:
    assert tuple(sample_names()) == SERIES
    for series in SERIES:
        assert len(bars_of(series)) == len(reference_of(series)) > 100


@pytest.mark.parametrize("series", SERIES)
def test_incremental_equals_talib(series: str) -> None:
    assert_matches(series, run(IndicatorSet(), bars_of(series)))


@pytest.mark.parametrize("series", SERIES)
def test_batch_equals_talib(series: str) -> None:
    assert_matches(series, batch(bars_of(series)))


@pytest.mark.parametrize("series", SERIES)
def test_restart_half_way_continues_exactly(series: str) -> None:
    bars = bars_of(series)
    middle = len(bars) // 2
    before = IndicatorSet()
    first_half = run(before, bars[:middle])
    saved = json.dumps(before.state())  # what would be stored in the database
    after = IndicatorSet.from_state(json.loads(saved))
    assert after.last_open_time == bars[middle - 1].open_time
    second_half = run(after, bars[middle:])
    assert_matches(series, first_half + second_half)
    # The restored run is not merely close: it is the uninterrupted run, float for float.
    assert second_half == run(IndicatorSet(), bars)[middle:]


def test_restart_during_warm_up_of_every_indicator() -> None:
    bars = bars_of("goog-1d")[:80]
    straight = run(IndicatorSet(), bars)
    for cut in (0, 1, 14, 15, 19, 20, 25, 30, 33, 54, 60):
        indicators = IndicatorSet()
        run(indicators, bars[:cut])
        restored = IndicatorSet.from_state(json.loads(json.dumps(indicators.state())))
        assert run(restored, bars[cut:]) == straight[cut:], f"cut at {cut}"


def test_single_calculators_restore_exactly() -> None:
    bars = bars_of("spx-1d")[:300]
    calculators: list[Ema | Rsi | Macd | Bollinger] = [Ema(21), Rsi(14), Macd(), Bollinger()]
    atr = Atr(14)
    for bar in bars[:150]:
        for calc in calculators:
            calc.update(bar.close)
        atr.update(bar.high, bar.low, bar.close)
    restored = [type(calc).from_state(json.loads(json.dumps(calc.state()))) for calc in calculators]
    restored_atr = Atr.from_state(json.loads(json.dumps(atr.state())))
    for bar in bars[150:]:
        for calc, twin in zip(calculators, restored, strict=True):
            assert calc.update(bar.close) == twin.update(bar.close)
        assert atr.update(bar.high, bar.low, bar.close) == restored_atr.update(
            bar.high, bar.low, bar.close
        )


def _warm_set() -> tuple[IndicatorSet, Bar]:
    bars = bars_of("eurusd-1h")[:100]
    indicators = IndicatorSet()
    run(indicators, bars)
    return indicators, bars[-1]


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("close", {"close": math.nan}),
        ("open", {"open": math.inf}),
        ("high", {"high": -math.inf}),
        ("low", {"low": math.nan}),
        ("volume", {"volume": math.nan}),
        ("volume", {"volume": -1.0}),
        ("volume", {"volume": True}),  # a flag passed by mistake is not a volume
        ("high", {"high": 1.0, "low": 1.5}),
        ("close", {"close": "1.07"}),
        ("open_time", {"open_time": "later"}),
        ("open_time", {"open_time": datetime(2030, 1, 1)}),  # naive
        ("open_time", {"open_time": None}),  # replaced below by the last bar's own time
    ],
)
def test_bad_bar_is_refused_and_changes_nothing(field: str, change: dict[str, object]) -> None:
    indicators, last = _warm_set()
    before = json.dumps(indicators.state())
    bar = {
        "open_time": last.open_time + timedelta(hours=1),
        "open": 1.1,
        "high": 1.2,
        "low": 1.0,
        "close": 1.1,
        "volume": 10.0,
        **change,
    }
    if bar["open_time"] is None:
        bar["open_time"] = last.open_time  # a replayed bar: not after the previous one
    with pytest.raises(InvalidBar) as caught:
        indicators.update(**bar)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError)
    assert caught.value.field == field
    assert str(caught.value).startswith("bar ")
    assert field in str(caught.value)
    assert json.dumps(indicators.state()) == before
    # ...and the next good bar still continues the series.
    good = Bar(last.open_time + timedelta(hours=1), 1.1, 1.2, 1.0, 1.1, 10.0)
    assert indicators.update_bar(good).open_time == good.open_time


def test_refusal_message_names_field_and_time() -> None:
    indicators = IndicatorSet()
    t = datetime(2024, 1, 2, 3, 4, tzinfo=UTC)
    with pytest.raises(
        ValueError, match=r"bar 2024-01-02T03:04:00\+00:00: close nan is not a finite number"
    ):
        indicators.update(t, 1.0, 1.0, 1.0, math.nan, 1.0)
    with pytest.raises(ValueError, match=r"high 1\.0 is below low 2\.0"):
        indicators.update(t, 1.0, 1.0, 2.0, 1.0, 1.0)
    assert indicators.state() == IndicatorSet().state()


def test_single_calculators_refuse_non_finite_values_unchanged() -> None:
    calculators: list[Ema | Rsi | Macd | Bollinger] = [Ema(3), Rsi(3), Macd(3, 5, 2), Bollinger(3)]
    atr = Atr(3)
    for x in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0):
        for calc in calculators:
            calc.update(x)
        atr.update(x + 1, x - 1, x)
    for calc in calculators:
        saved = calc.state()
        with pytest.raises(ValueError, match="close nan is not a finite number"):
            calc.update(math.nan)
        assert calc.state() == saved
    saved = atr.state()
    with pytest.raises(ValueError, match=r"high 1\.0 is below low 2\.0"):
        atr.update(1.0, 2.0, 1.5)
    assert atr.state() == saved


def test_state_size_does_not_grow() -> None:
    bars = bars_of("eurusd-1h")
    small, large = IndicatorSet(), IndicatorSet()
    run(small, bars[:100])
    run(large, bars)
    assert len(bars) == 5000
    # Floats print with up to 17 significant digits, so allow a little text-length jitter.
    assert abs(len(json.dumps(large.state())) - len(json.dumps(small.state()))) < 200
    assert len(large.state()["bbands"]["window"]) == 19


def test_state_from_another_version_is_refused() -> None:
    state = IndicatorSet().state()
    with pytest.raises(ValueError, match="version 2 is not supported"):
        IndicatorSet.from_state({**state, "version": 2})
    with pytest.raises(ValueError, match="lacks 'ema21'"):
        IndicatorSet.from_state({k: v for k, v in state.items() if k != "ema21"})
    with pytest.raises(ValueError, match="bad value"):
        IndicatorSet.from_state({**state, "rsi14": {**state["rsi14"], "gain": "x"}})


def test_flat_series_gives_rsi_zero_and_zero_width_bands() -> None:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    bars = [Bar(t0 + timedelta(minutes=i), 5.0, 5.0, 5.0, 5.0, 0.0) for i in range(40)]
    for row in (run(IndicatorSet(), bars)[-1], batch(bars)[-1]):
        assert row.rsi14 == 0.0
        assert row.bb_upper == row.bb_middle == row.bb_lower == 5.0
        assert row.atr14 == 0.0
        assert row.macd == row.macd_signal == row.macd_hist == 0.0


def test_batch_of_nothing_is_empty() -> None:
    assert batch([]) == []


@pytest.mark.parametrize("series", SERIES)
def test_batch_arrays_are_the_batch_rows(series: str) -> None:
    bars = bars_of(series)
    columns = batch_arrays(
        [b.high for b in bars], [b.low for b in bars], np.array([b.close for b in bars])
    )
    assert list(columns) == list(NAMES)
    rows = batch(bars)
    for name, column in columns.items():
        assert column.dtype == np.float64 and column.shape == (len(bars),)
        expected = [getattr(row, name) for row in rows]
        assert [None if math.isnan(v) else v for v in column.tolist()] == expected, name


def test_batch_arrays_refuse_columns_of_different_lengths() -> None:
    with pytest.raises(ValueError, match="one length"):
        batch_arrays([2.0, 2.0], [1.0, 1.0], [1.5])


@pytest.mark.parametrize("series", SERIES)
def test_fast_and_general_paths_agree_float_for_float(series: str) -> None:
    """update() has a fast path for warm calculators fed plain floats; numpy floats and ints
    take the general one. Both must give the same rows and the same state, bit for bit."""
    bars = bars_of(series)
    fast, general = IndicatorSet(), IndicatorSet()
    for i, bar in enumerate(bars):
        row = fast.update_bar(bar)
        volume = int(bar.volume) if i % 2 else np.float64(bar.volume)
        twin = general.update(
            bar.open_time,
            np.float64(bar.open),
            np.float64(bar.high),
            np.float64(bar.low),
            np.float64(bar.close),
            volume,  # type: ignore[arg-type]
        )
        assert row == twin
        assert [repr(v) for v in row.values()] == [repr(v) for v in twin.values()]  # -0.0 too
        assert all(type(v) is float for v in twin.values() if v is not None)
    assert json.dumps(fast.state()) == json.dumps(general.state())


def test_a_bar_that_only_overflows_the_fast_check_is_accepted() -> None:
    indicators, last = _warm_set()
    t = last.open_time + timedelta(hours=1)
    # Every price finite, their sum is not: the fast path's check fails, the full one passes.
    row = indicators.update(t, 1e308, 1e308, 1e308, 1e308, 1e308)
    assert row.open_time == t and row.ema21 is not None and math.isfinite(row.ema21)


def test_names_order() -> None:
    assert IndicatorSet.NAMES == NAMES
    assert len(NAMES) == 10
    assert list(IndicatorValues.__dataclass_fields__) == ["open_time", *NAMES]


def test_load_bars_reports_every_bad_row(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "open_time,open,high,low,close,volume\n"
        "2024-01-01T00:00:00Z,1,2,0.5,1.5,10\n"  # line 2: good
        "2024-01-01T01:00:00Z,1,1.2,0.5,1.5,10\n"  # line 3: high below close
        "2024-01-01T02:00:00Z,1,2,1.1,1.5,10\n"  # line 4: low above open
        "2024-01-01T03:00:00Z,1,2,0.5,nan,10\n"  # line 5: not finite
        "2024-01-01T04:00:00Z,1,2,0.5,1.5,-3\n"  # line 6: negative volume
        "2024-01-01T00:00:00Z,1,2,0.5,1.5,3\n"  # line 7: not after the last good bar (line 2)
        "2024-01-01T08:00:00,1,2,0.5,1.5,3\n"  # line 8: naive time
        "2024-01-01T09:00:00Z,1,2,0.5\n"  # line 9: short row
    )
    with pytest.raises(InvalidBarFile) as caught:
        load_bars(path)
    lines = [line for line, _ in caught.value.problems]
    assert lines == [3, 4, 5, 6, 7, 8, 9]
    assert "line 3: high 1.2 is below max(open, close) 1.5" in str(caught.value)


def test_load_bars_unknown_sample_suggests_a_name() -> None:
    with pytest.raises(LookupError, match="did you mean 'eurusd-1h'"):
        load_bars("eurusd-1H")


def test_load_bars_reads_a_path_like_the_sample(tmp_path: Path) -> None:
    path = tmp_path / "two.csv"
    path.write_text(
        "open_time,open,high,low,close,volume\n"
        "2017-04-19T09:00:00Z,1.0716,1.0722,1.07083,1.07219,1413\n"
        "2017-04-19T10:00:00Z,1.07219,1.0723,1.0715,1.0720,800\n"
    )
    bars = load_bars(str(path))
    assert bars[0] == Bar(
        datetime(2017, 4, 19, 9, tzinfo=UTC), 1.0716, 1.0722, 1.07083, 1.07219, 1413.0
    )
    assert bars_of("eurusd-1h")[0] == bars[0]
