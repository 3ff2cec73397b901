"""The wire helpers every HTTP source parses with, as pure functions: times in ms, s and ISO
days (strings or numbers, never booleans or fractions), finite numbers only, whole counts,
one bad row refusing a payload while naming the source and row, the request type checks,
and the time-order checks that let a missing bar through but not a duplicate.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tickbase.errors import InvalidPayload
from tickbase.marketdata.collector import Kline, KlineRequest, SeriesRequest
from tickbase.marketdata.sources.checks import check_klines, check_order
from tickbase.marketdata.sources.wire import (
    EPOCH,
    HttpSource,
    expect_array,
    expect_object,
    json_kind,
    kline_request,
    parse_count,
    parse_field,
    parse_number,
    parse_rows,
    parse_time,
    series_request,
    stamp,
)

MAR_2019 = datetime(2019, 2, 26, 5, tzinfo=UTC)
"""1551157200 s after the epoch."""


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (1551157200, "s", MAR_2019),
        ("1551157200", "s", MAR_2019),
        (" 1551157200 ", "s", MAR_2019),
        (1551157200.0, "s", MAR_2019),
        (1551157200000, "ms", MAR_2019),
        ("1551157200123", "ms", MAR_2019 + timedelta(milliseconds=123)),
        (0, "ms", EPOCH),
        ("-86400", "s", EPOCH - timedelta(days=1)),
        ("2024-02-29", "date", datetime(2024, 2, 29, tzinfo=UTC)),
    ],
)
def test_wire_times_become_utc(value: Any, unit: Any, expected: datetime) -> None:
    parsed = parse_time(value, unit)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("value", "unit", "message"),
    [
        (True, "s", "time True is not a whole number of seconds"),
        (1.5, "ms", "time 1.5 is not a whole number of milliseconds"),
        ("12a", "s", "time '12a' is not a whole number of seconds"),
        ("", "s", "time '' is not a whole number of seconds"),
        (None, "ms", "time None is not a whole number of milliseconds"),
        (10**20, "s", "time 100000000000000000000 (seconds) is out of range"),
        (20240101, "date", "date 20240101 is not a string"),
        ("2024-02-30", "date", "date '2024-02-30' is not YYYY-MM-DD"),
        ("29/02/2024", "date", "date '29/02/2024' is not YYYY-MM-DD"),
    ],
)
def test_bad_wire_times_are_refused_naming_the_value(value: Any, unit: Any, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_time(value, unit)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("value", "expected"), [(3, 3.0), (-2.5, -2.5), ("1.07219", 1.07219), ("1e3", 1000.0)]
)
def test_numbers_from_json_numbers_and_numeric_strings(value: Any, expected: float) -> None:
    assert parse_number(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "True is not a number"),
        (None, "None is not a number"),
        ([1], "[1] is not a number"),
        ("one", "'one' is not a number"),
        ("NaN", "'NaN' is not a finite number"),
        (float("-inf"), "-inf is not a finite number"),
        ("1e400", "'1e400' is not a finite number"),
    ],
)
def test_non_numbers_and_non_finite_numbers_are_refused(value: Any, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_number(value)
    assert str(refused.value) == message


def test_counts_are_whole_and_not_negative() -> None:
    assert parse_count(42) == 42
    assert parse_count("17") == 17
    for bad in (-1.0, "-3", "4.5", 2.0, True, None):
        with pytest.raises(ValueError, match="is not a whole number"):
            parse_count(bad)
    # an int is taken as it is; a negative one is caught by the kline check
    assert parse_count(-1) == -1


def test_a_field_error_is_prefixed_with_the_field_name() -> None:
    assert parse_field("close", "1.5", parse_number) == 1.5
    with pytest.raises(ValueError) as refused:
        parse_field("close", "abc", parse_number)
    assert str(refused.value) == "close: 'abc' is not a number"
    assert refused.value.__cause__ is None and refused.value.__suppress_context__


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ({}, "an object"),
        ([], "an array"),
        ("x", "a string"),
        (False, "a boolean"),
        (3, "a number"),
        (2.5, "a number"),
        (None, "null"),
        (b"x", "bytes"),
    ],
)
def test_json_kind_names_what_came(value: Any, kind: str) -> None:
    assert json_kind(value) == kind


def test_the_shape_checks_name_the_source_and_what_came() -> None:
    assert expect_array("binance", [1], "klines") == [1]
    assert expect_object("fred", {"a": 1}, "an observations object") == {"a": 1}
    with pytest.raises(InvalidPayload, match=r"^binance: payload is null, not an array of klines$"):
        expect_array("binance", None, "klines")
    with pytest.raises(InvalidPayload, match=r"^fred: payload is an array, not an obs object$"):
        expect_object("fred", [], "an obs object")


def test_one_bad_row_refuses_the_payload_naming_its_index() -> None:
    assert parse_rows("glassnode", ["1", "2"], parse_number) == [1.0, 2.0]
    with pytest.raises(InvalidPayload) as refused:
        parse_rows("glassnode", ["1", "2", "x", "y"], parse_number)
    assert str(refused.value) == "glassnode: row 2: 'x' is not a number"
    assert parse_rows("glassnode", [], parse_number) == []


def test_requests_of_the_wrong_kind_are_a_callers_bug() -> None:
    klines, series = KlineRequest("BTCUSDT", "1h", 5), SeriesRequest("fear_greed", 5)
    assert kline_request("binance", klines) is klines
    assert series_request("fred", series) is series
    with pytest.raises(TypeError, match=r"^binance serves klines: expected a KlineRequest"):
        kline_request("binance", series)
    with pytest.raises(TypeError, match=r"^fred serves a series: expected a SeriesRequest"):
        series_request("fred", klines)


def test_stamp_writes_utc_with_z_and_a_base_url_loses_its_slash() -> None:
    assert stamp(MAR_2019) == "2019-02-26T05:00:00Z"
    east = datetime(2019, 2, 26, 6, tzinfo=timezone(timedelta(hours=1)))
    assert stamp(east) == "2019-02-26T06:00:00+01:00"

    class Probe(HttpSource):
        name = "probe"

        async def collect(self, client: Any, request: Any) -> Any:
            raise NotImplementedError

        def validate(self, raw: Any, request: Any) -> Any:
            raise NotImplementedError

    probe = Probe("http://127.0.0.1:9/api/")
    assert probe.base_url == "http://127.0.0.1:9/api"
    assert repr(probe) == "Probe(base_url='http://127.0.0.1:9/api')"


# ---- time order ---------------------------------------------------------------------------

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def hours(*offsets: int) -> list[datetime]:
    return [T0 + timedelta(hours=h) for h in offsets]


def test_check_order_tells_the_direction_and_accepts_short_series() -> None:
    assert check_order("fng", hours(0, 1, 5)) is False
    assert check_order("fng", hours(5, 1, 0)) is True
    assert check_order("fng", hours(3)) is False
    assert check_order("fng", []) is False


def test_check_order_refuses_duplicates_and_a_change_of_direction() -> None:
    with pytest.raises(InvalidPayload) as dup:
        check_order("fng", hours(0, 1, 1))
    assert str(dup.value) == ("fng: row 2: time 2024-01-01T01:00:00Z duplicates row 1's")
    with pytest.raises(InvalidPayload) as turn:
        check_order("fred", hours(5, 4, 6))
    assert str(turn.value) == (
        "fred: row 2: time 2024-01-01T06:00:00Z breaks the newest-first order "
        "(row 1 is 2024-01-01T04:00:00Z)"
    )
    with pytest.raises(InvalidPayload, match="breaks the oldest-first order"):
        check_order("fred", hours(1, 2, 0))


def kline(hour: int, **changes: Any) -> Kline:
    fields: dict[str, Any] = {
        "open_time": T0 + timedelta(hours=hour),
        "open": 10.0,
        "high": 11.0,
        "low": 9.0,
        "close": 10.5,
        "volume": 3.0,
    } | changes
    return Kline(**fields)


def test_a_missing_bar_is_not_garbage_but_an_off_grid_one_is() -> None:
    with_gap = [kline(0), kline(1), kline(4)]
    assert check_klines("binance", with_gap, 3600) == with_gap
    assert check_klines("binance", [kline(0), kline(1)], None) == [kline(0), kline(1)]
    half = kline(0, open_time=T0 + timedelta(minutes=90))
    with pytest.raises(InvalidPayload) as refused:
        check_klines("binance", [kline(0), half], 3600)
    assert str(refused.value) == (
        "binance: row 1: open time 2024-01-01T01:30:00Z is 5400 s after the previous row's "
        "2024-01-01T00:00:00Z, not a multiple of the interval (3600 s)"
    )
    # without a fixed step (months) any later time is fine
    assert len(check_klines("binance", [kline(0), half], None)) == 2


def test_optional_binance_fields_and_the_zone_are_checked_too() -> None:
    with pytest.raises(InvalidPayload, match=r"^replay: row 0: trade count -1 is negative$"):
        check_klines("replay", [kline(0, trade_count=-1)], 3600)
    with pytest.raises(InvalidPayload, match=r"row 0: quote volume nan is not a finite number$"):
        check_klines("replay", [kline(0, quote_volume=float("nan"))], 3600)
    east = T0.astimezone(timezone(timedelta(hours=2)))
    with pytest.raises(InvalidPayload, match=r"row 0: open time 2024-01-01T02:00:00\+02:00 is not"):
        check_klines("replay", [kline(0, open_time=east)], 3600)
    flat = kline(0, open=10.0, high=10.0, low=10.0, close=10.0, volume=0.0)
    assert check_klines("replay", [flat], 3600) == [flat]
