"""Chart resolutions: parsing, which stored interval serves one, buckets (no database)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tickbase.errors import ResolutionError
from tickbase.marketdata.resample import (
    CHART_RESOLUTIONS,
    EPOCH,
    MONDAY,
    is_exact,
    parse_resolution,
    source_interval,
    supported,
)

HOUR, DAY, WEEK = 3600, 86_400, 7 * 86_400


@pytest.mark.parametrize(
    ("name", "seconds"),
    [
        ("1", 60),
        ("5", 300),
        ("60", HOUR),
        ("240", 4 * HOUR),
        ("1440", DAY),
        ("9999", 9999 * 60),
        ("1S", 1),
        ("30S", 30),
        ("D", DAY),
        ("1D", DAY),
        ("3D", 3 * DAY),
        ("W", WEEK),
        ("2W", 2 * WEEK),
        ("M", None),
        ("1M", None),
        ("S", 1),
    ],
)
def test_valid_resolutions_parse_to_their_length(name: str, seconds: int | None) -> None:
    resolution = parse_resolution(name)
    assert resolution.name == name
    assert resolution.seconds == seconds


@pytest.mark.parametrize(
    "name",
    ["", "0", "0D", "00", "-1", "1.5", "1h", "1d", "D1", "12345", "60 ", " 60", "60\n", "1Y", "MM"],
)
def test_malformed_resolutions_are_refused_naming_them(name: str) -> None:
    with pytest.raises(ResolutionError) as excinfo:
        parse_resolution(name)
    assert repr(name) in str(excinfo.value)
    assert "invalid resolution" in str(excinfo.value)


@pytest.mark.parametrize("name", ["2M", "12M"])
def test_only_one_month_bars_are_served(name: str) -> None:
    with pytest.raises(ResolutionError, match=r"only one-month bars"):
        parse_resolution(name)


def test_every_chart_resolution_parses_finest_first() -> None:
    lengths = [parse_resolution(name).seconds for name in CHART_RESOLUTIONS]
    fixed = [s for s in lengths if s is not None]
    assert fixed == sorted(fixed) and len(set(fixed)) == len(fixed)
    assert lengths[-1] is None  # the month, last


# ---- which stored interval serves a resolution -------------------------------------


@pytest.mark.parametrize(
    ("resolution", "stored", "serving"),
    [
        ("60", ["1h", "4h", "1d"], "1h"),  # exact
        ("240", ["1h", "4h", "1d"], "4h"),  # exact beats a finer divisor
        ("1D", ["1h", "4h", "1d"], "1d"),
        ("120", ["1h", "4h", "1d"], "1h"),  # aggregated from the coarsest divisor
        ("720", ["1h", "4h", "1d"], "4h"),
        ("1W", ["1h", "4h", "1d"], "1d"),
        ("3D", ["1h", "1d"], "1d"),
        ("1M", ["1h", "1d"], "1d"),  # months are whole days
        ("1M", ["1d", "1M"], "1M"),
        ("1M", ["4h"], "4h"),
        ("15", ["1m", "5m", "1h"], "5m"),
        ("30S", ["1s", "15s"], "15s"),
        ("60", ["1h", "1h"], "1h"),
    ],
)
def test_the_stored_interval_that_serves_a_resolution(
    resolution: str, stored: list[str], serving: str
) -> None:
    assert source_interval(parse_resolution(resolution), stored) == serving


@pytest.mark.parametrize(
    ("resolution", "stored", "fragment"),
    [
        ("15", ["1h", "4h", "1d"], "finer than every stored interval (1h, 4h, 1d)"),
        ("1S", ["1m"], "finer than every stored interval"),
        ("1W", ["1M"], "finer than every stored interval"),
        ("45", ["1h", "4h"], "finer than every stored interval"),
        ("90", ["1h"], "not a whole multiple of any stored interval (1h)"),
        ("1M", ["7h"], "not a whole multiple"),
        ("60", [], "not a whole multiple of any stored interval (none)"),
    ],
)
def test_a_resolution_no_stored_interval_serves_is_refused(
    resolution: str, stored: list[str], fragment: str
) -> None:
    with pytest.raises(ResolutionError) as excinfo:
        source_interval(parse_resolution(resolution), stored)
    assert fragment in str(excinfo.value)
    assert repr(resolution) in str(excinfo.value)


@pytest.mark.parametrize(
    ("interval", "resolution", "exact"),
    [
        ("1h", "60", True),
        ("4h", "240", True),
        ("1d", "1D", True),
        ("1d", "D", True),
        ("1w", "1W", True),
        ("1M", "1M", True),
        ("15s", "15S", True),
        ("1h", "240", False),
        ("1d", "1W", False),
        ("1d", "1M", False),
        ("1M", "1D", False),
    ],
)
def test_is_exact(interval: str, resolution: str, exact: bool) -> None:
    assert is_exact(interval, parse_resolution(resolution)) is exact


def test_supported_resolutions_of_the_default_intervals() -> None:
    assert supported(["1h", "4h", "1d"]) == [
        "60", "120", "180", "240", "360", "480", "720", "1D", "2D", "3D", "1W", "2W", "1M",
    ]  # fmt: skip


def test_supported_resolutions_of_other_stores() -> None:
    assert supported([]) == []
    assert supported(["1M"]) == ["1M"]
    assert supported(["1d"]) == ["1D", "2D", "3D", "1W", "2W", "1M"]
    assert supported(["1s"]) == list(CHART_RESOLUTIONS)
    assert supported(["45m"]) == ["45", "180", "360", "720", "1D", "2D", "3D", "1W", "2W", "1M"]


def test_each_supported_resolution_is_served() -> None:
    stored = ["5m", "1h", "1d"]
    for name in supported(stored):
        assert source_interval(parse_resolution(name), stored) in stored
    for name in set(CHART_RESOLUTIONS) - set(supported(stored)):
        with pytest.raises(ResolutionError):
            source_interval(parse_resolution(name), stored)


# ---- buckets -----------------------------------------------------------------------


def test_weeks_are_binned_from_a_monday_the_rest_from_the_epoch() -> None:
    assert parse_resolution("1W").origin == MONDAY == datetime(1970, 1, 5, tzinfo=UTC)
    assert MONDAY.weekday() == 0
    assert parse_resolution("2W").origin == MONDAY
    assert parse_resolution("1D").origin == EPOCH
    assert parse_resolution("1M").origin == EPOCH


def test_bucket_and_after() -> None:
    at = datetime(2026, 3, 5, 13, 47, 12, tzinfo=UTC)  # a Thursday
    four_hours = parse_resolution("240")
    assert four_hours.bucket(at) == datetime(2026, 3, 5, 12, tzinfo=UTC)
    assert four_hours.after(four_hours.bucket(at)) == datetime(2026, 3, 5, 16, tzinfo=UTC)
    week = parse_resolution("1W")
    assert week.bucket(at) == datetime(2026, 3, 2, tzinfo=UTC)  # that Monday
    assert week.after(week.bucket(at)) == datetime(2026, 3, 9, tzinfo=UTC)
    assert parse_resolution("1D").bucket(at) == datetime(2026, 3, 5, tzinfo=UTC)
    start = datetime(2026, 3, 2, tzinfo=UTC)
    assert week.bucket(start) == start  # a bucket's start is its own bucket


def test_month_buckets_start_on_the_first_and_roll_over_the_year() -> None:
    month = parse_resolution("1M")
    assert month.bucket(datetime(2026, 2, 28, 23, 59, tzinfo=UTC)) == datetime(
        2026, 2, 1, tzinfo=UTC
    )
    assert month.after(datetime(2026, 11, 1, tzinfo=UTC)) == datetime(2026, 12, 1, tzinfo=UTC)
    assert month.after(datetime(2026, 12, 1, tzinfo=UTC)) == datetime(2027, 1, 1, tzinfo=UTC)
