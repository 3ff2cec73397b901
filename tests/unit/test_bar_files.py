"""The bar-file reader an importer relies on: each rule refuses a row with a message naming
the cell and its value, line numbers stay right across blank lines, duplicated and
out-of-order rows are refused against the last *good* bar while every good row is kept, and
the real bundled series (tickbase/marketdata/sample, as in the shared data's README) read
whole.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

import pytest

from tickbase.marketdata.bars import (
    COLUMNS,
    Bar,
    InvalidBarFile,
    bar_problem,
    load_bars,
    read_bar_text,
    sample_names,
)

HEADER = ",".join(COLUMNS)
GOOD = "2024-01-01T00:00:00Z,10,11,9,10.5,100"


def one_row(row: str) -> list[tuple[int, str]]:
    """The problems of a file holding one good bar, then ``row``."""
    bars, problems = read_bar_text(f"{HEADER}\n{GOOD}\n{row}\n")
    assert len(bars) == 1
    return problems


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("2024-01-01T01:00:00Z,10,11,9,abc,100", "close 'abc' is not a number"),
        ("2024-01-01T01:00:00Z,10,11,9,10,", "volume '' is not a number"),
        ("2024-01-01T01:00:00Z,10,inf,9,10,1", "high 'inf' is not a finite number"),
        ("2024-01-01T01:00:00Z,0,11,0,10,1", "open 0.0 is not a positive price"),
        ("2024-01-01T01:00:00Z,10,11,-1,10,1", "low -1.0 is not a positive price"),
        ("2024-01-01T01:00:00Z,10,11,10.5,10.2,1", "low 10.5 is above min(open, close) 10.0"),
        ("yesterday,10,11,9,10,1", "open_time 'yesterday' is not an ISO 8601 time"),
        ("2024-01-01T01:00:00+01:00,10,11,9,10,1", "must be in UTC (end in 'Z')"),
        ("2024-01-01T01:00:00Z,10,11,9,10,1,7", "expected 6 cells, got 7"),
    ],
)
def test_each_bad_cell_is_named_with_its_value(row: str, message: str) -> None:
    problems = one_row(row)
    assert len(problems) == 1
    line, reason = problems[0]
    assert line == 3
    assert message in reason


def test_a_utc_offset_written_as_plus_zero_is_utc_and_numbers_in_any_float_form() -> None:
    bars, problems = read_bar_text(
        f"{HEADER}\n2024-01-01T00:00:00+00:00,1e1,1.1E1,9.0,10,0\n"
        "2024-01-01T01:00:00.500Z, 10 ,11,9,10,1.5\n"
    )
    assert problems == []
    assert bars == [
        Bar(datetime(2024, 1, 1, tzinfo=UTC), 10.0, 11.0, 9.0, 10.0, 0.0),
        Bar(datetime(2024, 1, 1, 1, 0, 0, 500_000, tzinfo=UTC), 10.0, 11.0, 9.0, 10.0, 1.5),
    ]
    assert all(b.open_time.tzinfo is UTC for b in bars)


@pytest.mark.parametrize(
    "header",
    ["", "time,open,high,low,close,volume", "open_time,open,high,low,close", "open,high"],
)
def test_a_wrong_header_refuses_the_file_at_line_1(header: str) -> None:
    bars, problems = read_bar_text(f"{header}\n{GOOD}\n" if header else "")
    assert bars == []
    assert len(problems) == 1
    assert problems[0][0] == 1
    assert problems[0][1].startswith("header must be open_time,open,high,low,close,volume, got")


def test_a_header_with_spaces_around_names_is_accepted() -> None:
    bars, problems = read_bar_text(" open_time , open,high,low,close,volume \n" + GOOD)
    assert (len(bars), problems) == (1, [])


def test_blank_lines_are_skipped_and_keep_line_numbers_right() -> None:
    text = f"{HEADER}\n\n{GOOD}\n\n\n2024-01-01T01:00:00Z,10,11,9,x,1\n"
    bars, problems = read_bar_text(text)
    assert len(bars) == 1
    assert problems == [(6, "close 'x' is not a number")]


def test_duplicates_and_disorder_are_refused_against_the_last_good_bar() -> None:
    text = "\n".join(
        [
            HEADER,
            "2024-01-01T00:00:00Z,10,11,9,10,1",  # 2 good
            "2024-01-01T02:00:00Z,10,11,9,10,x",  # 3 bad cell: not a "last" bar
            "2024-01-01T01:00:00Z,10,11,9,10,1",  # 4 good: after line 2, line 3 did not count
            "2024-01-01T01:00:00Z,10,11,9,10,2",  # 5 duplicate of line 4
            "2024-01-01T00:30:00Z,10,11,9,10,1",  # 6 goes back in time
            "2024-01-01T03:00:00Z,10,11,9,10,1",  # 7 good
        ]
    )
    bars, problems = read_bar_text(text)
    assert [b.open_time.hour for b in bars] == [0, 1, 3]
    assert [line for line, _ in problems] == [3, 5, 6]
    assert problems[1][1] == (
        "open_time 2024-01-01T01:00:00+00:00 is not after the previous bar's "
        "2024-01-01T01:00:00+00:00 (out of order or duplicated)"
    )
    assert "2024-01-01T00:30:00+00:00 is not after" in problems[2][1]


def test_load_bars_refuses_the_file_whole_naming_it_and_every_line(tmp_path: Path) -> None:
    path = tmp_path / "two-bad.csv"
    path.write_text(f"{HEADER}\n{GOOD}\nnot-a-time,1,1,1,1,1\n{GOOD}\n")
    with pytest.raises(InvalidBarFile) as refused:
        load_bars(path)
    assert [line for line, _ in refused.value.problems] == [3, 4]
    message = str(refused.value)
    assert str(path) in message and "line 3" in message and "line 4" in message


def test_a_string_path_is_a_file_and_a_bare_name_a_sample(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text(f"{HEADER}\n{GOOD}\n")
    assert len(load_bars(str(path))) == 1
    with pytest.raises(FileNotFoundError):
        load_bars("missing.csv")  # .csv: a path, not a sample name
    with pytest.raises(LookupError, match=r"no sample bar series 'zzz'; known: btcusd-1M, "):
        load_bars("zzz")
    assert sample_names() == ["btcusd-1M", "es-1m", "eurusd-1h", "goog-1d", "msft-1d", "spx-1d"]


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({}, None),
        ({"open": float("nan")}, "open nan is not a finite number"),
        ({"volume": float("inf")}, "volume inf is not a finite number"),
        ({"close": -1.0}, "close -1.0 is not a positive price"),
        ({"high": 9.5}, "high 9.5 is below max(open, close) 10.0"),
        ({"volume": -0.5}, "volume -0.5 is negative"),
    ],
)
def test_bar_problem_states_the_storage_rule(change: dict[str, float], problem: str | None) -> None:
    fields = {"open": 10.0, "high": 11.0, "low": 9.0, "close": 10.0, "volume": 1.0} | change
    assert bar_problem(Bar(datetime(2024, 1, 1, tzinfo=UTC), **fields)) == problem


# ---- the real files -----------------------------------------------------------------------

REAL_COUNTS = {
    "btcusd-1M": 156,
    "eurusd-1h": 5_000,
    "goog-1d": 2_148,
    "spx-1d": 5_031,
    "msft-1d": 7_983,
    "es-1m": 2_264,
}
"""Bars per file, as the data README lists them."""


def real_text(name: str) -> str:
    sample = resources.files("tickbase.marketdata") / "sample" / f"{name}.csv"
    return sample.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(REAL_COUNTS))
def test_every_real_file_reads_whole_in_time_order(name: str) -> None:
    bars, problems = read_bar_text(real_text(name))
    assert problems == []
    assert len(bars) == REAL_COUNTS[name]
    assert all(a.open_time < b.open_time for a, b in itertools.pairwise(bars))
    assert bars == load_bars(name)  # by name: the same bars


def test_an_importer_keeps_a_real_file_minus_its_damaged_rows() -> None:
    lines = real_text("es-1m").splitlines()
    damaged = list(lines)
    damaged.insert(101, lines[100])  # a duplicated minute (file line 102)
    damaged[500], damaged[501] = damaged[501], damaged[500]  # two minutes swapped
    bars, problems = read_bar_text("\n".join(damaged))
    assert [line for line, _ in problems] == [102, 502]
    assert all("(out of order or duplicated)" in reason for _, reason in problems)
    # every minute but the swapped-back one is kept, and each only once
    times = [b.open_time for b in bars]
    assert len(times) == REAL_COUNTS["es-1m"] - 1 == len(set(times))
    assert times == sorted(times)
    # the real Labor Day close stays a gap: nothing is made up
    assert max(b - a for a, b in itertools.pairwise(times)) == timedelta(hours=6, minutes=31)
