"""Numbers in CLI tables: rounded for reading, prices at their instrument's precision."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import typer
from pydantic import ValidationError

from tickbase.cli.render import (
    as_api,
    camel_keys,
    fail,
    fail_with,
    format_number,
    format_price,
    json_errors,
    price_decimals,
    print_json,
)
from tickbase.errors import ConfigurationError, InvalidCredentials
from tickbase.gateway.schemas import SessionOut, TaskOut


@pytest.mark.parametrize(
    ("prices", "decimals"),
    [
        ([1.08345, 1.0831, 1.08], 5),  # EUR/USD
        ([5912.25, 5912.5, 5913.0], 2),  # ES futures
        ([93381.5, 93400.0], 2),  # BTCUSDT, at least 2
        ([0.000012345], 8),  # capped
        ([1e-9], 8),
        ([None, float("nan")], 2),
    ],
)
def test_price_decimals_follow_the_instrument(prices: list[float | None], decimals: int) -> None:
    assert price_decimals(prices) == decimals


def test_prices_keep_their_decimals() -> None:
    assert format_price(1.0831, 5) == "1.08310"
    assert format_price(93381.5, 2) == "93,381.50"
    assert format_price(None, 5) == ""


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (22351900.0, "22,351,900"),
        (1234.5678, "1,234.57"),
        (12.3456, "12.346"),
        (12.5, "12.5"),
        (0.000123456, "0.0001235"),
        (0.5, "0.5"),
        (-3.0, "-3"),
        (float("inf"), "inf"),
    ],
)
def test_numbers_are_rounded_for_reading(value: float, text: str) -> None:
    assert format_number(value) == text


# ---- JSON output ---------------------------------------------------------------------


def test_camel_keys_renames_tickbase_keys_and_leaves_user_data_alone() -> None:
    value = {
        "task_id": 1,
        "run_at": None,
        "payload": {"my_arg": {"inner_key": 2}},
        "result": {"out_value": [{"deep_key": 1}]},
        "error": {"error_type": "x"},
        "inputs": {"step_a": 1},
        "progress": {"done_count": 3},
        "params": {"window_size": 14},
        "data": {"raw_field": 1},
        "nested_items": [{"schedule_id": 2, "payload": {"keep_me": 1}}],
        "pair_list": ({"next_cursor": "c"},),
        7: {"int_key": 1},
    }
    assert camel_keys(value) == {
        "taskId": 1,
        "runAt": None,
        "payload": {"my_arg": {"inner_key": 2}},
        "result": {"out_value": [{"deep_key": 1}]},
        "error": {"error_type": "x"},
        "inputs": {"step_a": 1},
        "progress": {"done_count": 3},
        "params": {"window_size": 14},
        "data": {"raw_field": 1},
        "nestedItems": [{"scheduleId": 2, "payload": {"keep_me": 1}}],
        "pairList": [{"nextCursor": "c"}],
        7: {"intKey": 1},
    }
    assert camel_keys([1, "a_b", None]) == [1, "a_b", None]  # values are never renamed


def test_as_api_serialises_as_the_http_api() -> None:
    created = datetime(2026, 3, 1, 12, 30, 0, 250000, tzinfo=UTC)
    task = {
        "id": 5,
        "task_type": "t.add",
        "queue": "default",
        "priority": 0,
        "status": "pending",
        "payload": {"my_arg": 1},
        "attempts": 0,
        "max_attempts": 3,
        "retry_delay": 1.5,
        "run_at": created,
        "created_at": created,
    }
    out = as_api(TaskOut, task)
    assert out["id"] == 5 and out["taskType"] == "t.add" and out["maxAttempts"] == 3
    assert out["payload"] == {"my_arg": 1}
    assert out["runAt"] == "2026-03-01T12:30:00.250000Z"
    assert out["startedAt"] is None and "task_type" not in out
    listed = as_api(list[TaskOut], [task, task | {"id": 6}])
    assert [item["id"] for item in listed] == [5, 6] and listed[1] == out | {"id": 6}
    session = as_api(SessionOut, {"session": "s", "expires_at": created, "role": "viewer"})
    assert session == {"session": "s", "expiresAt": "2026-03-01T12:30:00.250000Z", "role": "viewer"}


def test_as_api_refuses_what_the_model_refuses() -> None:
    with pytest.raises(ValidationError):
        as_api(SessionOut, {"session": "s"})


def test_print_json_writes_one_document_with_iso_datetimes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    at = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    print_json(
        {"created_at": at, "payload": {"when_at": "x"}, "name": "é", "other": Decimal("1.5")}
    )
    out, err = capsys.readouterr()
    assert err == "" and out.endswith("\n") and out.count("\n") == 1
    assert json.loads(out) == {
        "createdAt": "2026-03-01T12:00:00+00:00",
        "payload": {"when_at": "x"},
        "name": "é",
        "other": "1.5",
    }
    assert "é" in out  # not escaped
    print_json({"session": "s", "expires_at": at, "role": "admin"}, SessionOut)
    assert json.loads(capsys.readouterr().out)["expiresAt"] == "2026-03-01T12:00:00Z"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (1e15, "1,000,000,000,000,000.00"),  # past exact whole floats: 2 decimals
        (100.0, "100"),
        (100.004, "100.00"),
        (99.9999, "100"),  # 3 decimals, then trailing zeros dropped
        (1.0005, "1"),
        (1.2, "1.2"),
        (-0.00001234567, "-1.235e-05"),
        (float("nan"), "nan"),
        (float("-inf"), "-inf"),
    ],
)
def test_number_rounding_at_each_size(value: float, text: str) -> None:
    assert format_number(value) == text


@pytest.mark.parametrize(
    ("prices", "decimals"),
    [
        ([], 2),
        ([1.1], 2),
        ([1.123], 3),
        ([1.12345678], 8),
        ([1.123456789], 8),  # more than 8 decimals: capped
        ([100, 1.5], 2),  # ints
        ([float("inf"), 1.2345], 4),
        ([1e20], 8),  # exponent notation: at the cap
    ],
)
def test_price_precision_edges(prices: list[float], decimals: int) -> None:
    assert price_decimals(prices) == decimals


def test_format_price_rounds_to_the_decimals() -> None:
    assert format_price(1.234567, 4) == "1.2346"
    assert format_price(1234567.0, 0) == "1,234,567"
    assert format_price(-0.5, 2) == "-0.50"


# ---- errors ----------------------------------------------------------------------------


@pytest.fixture
def json_mode() -> Iterator[None]:
    json_errors(True)
    try:
        yield
    finally:
        json_errors(False)


def test_fail_prints_the_message_and_exits_with_the_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(typer.Exit) as exited:
        fail("no such schedule 'x'", 4)
    assert exited.value.exit_code == 4
    out, err = capsys.readouterr()
    assert out == "" and err.strip() == "error: no such schedule 'x'"
    with pytest.raises(typer.Exit) as exited:
        fail("bad")
    assert exited.value.exit_code == 1


def test_fail_under_json_writes_the_api_error_shape_to_stderr(
    json_mode: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(typer.Exit) as exited:
        fail("too big", 3, error="PAYLOAD_TOO_LARGE", details={"limit_bytes": 10})
    assert exited.value.exit_code == 3
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert json.loads(err) == {
        "error": {"code": "PAYLOAD_TOO_LARGE", "message": "too big", "details": {"limit_bytes": 10}}
    }
    with pytest.raises(typer.Exit) as exited:
        fail("plain")
    assert exited.value.exit_code == 1
    assert json.loads(capsys.readouterr().err) == {
        "error": {"code": "INVALID_INPUT", "message": "plain", "details": None}
    }


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (ConfigurationError("bad value"), "INVALID_INPUT"),
        (InvalidCredentials("session expired"), "UNAUTHORIZED"),
        (RuntimeError("boom"), "INTERNAL"),
    ],
)
def test_fail_with_uses_the_api_code(
    exc: Exception, code: str, json_mode: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(typer.Exit) as exited:
        fail_with(exc, 2)
    assert exited.value.exit_code == 2
    body = json.loads(capsys.readouterr().err)["error"]
    assert body["code"] == code and body["message"] == str(exc)
