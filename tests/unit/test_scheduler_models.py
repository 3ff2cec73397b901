"""ScheduleSpec validation (through build and the constructor) and its statement params.

Cron field errors and trigger walking are in test_triggers.py; the interval
range and huge durations in test_models.py.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest

from tickbase.errors import InvalidSchedule
from tickbase.queue.models import PAYLOAD_MAX_BYTES
from tickbase.scheduler.models import (
    INTERVAL_MAX_SECONDS,
    INTERVAL_MIN_SECONDS,
    MISFIRE_GRACE_DEFAULT,
    NAME_MAX,
    SPEC_FIELDS,
    ScheduleSpec,
)
from tickbase.scheduler.triggers import CRON_NICKNAMES


def _refusal(**kwargs: Any) -> InvalidSchedule:
    name = kwargs.pop("name", "s")
    task_type = kwargs.pop("task_type", "t")
    if not {"cron", "every", "manual"} & set(kwargs):
        kwargs["every"] = 60
    with pytest.raises(InvalidSchedule) as excinfo:
        ScheduleSpec.build(name, task_type, **kwargs)
    return excinfo.value


# ---- the kind: cron, every or manual -----------------------------------------------


def test_build_makes_each_kind() -> None:
    cron = ScheduleSpec.build("c", "t", cron="*/5 * * * *")
    assert (cron.kind, cron.cron, cron.interval_seconds) == ("cron", "*/5 * * * *", None)
    every = ScheduleSpec.build("i", "t", every=90)
    assert (every.kind, every.cron, every.interval_seconds) == ("interval", None, 90)
    manual = ScheduleSpec.build("m", "t", manual=True)
    assert (manual.kind, manual.cron, manual.interval_seconds) == ("manual", None, None)
    assert manual.trigger(datetime(2026, 1, 1, tzinfo=UTC)) is None


def test_build_needs_one_of_cron_every_or_manual() -> None:
    with pytest.raises(InvalidSchedule) as excinfo:
        ScheduleSpec.build("nightly", "t")
    assert excinfo.value.field == "schedule"
    assert excinfo.value.value == "nightly"
    assert "--cron" in str(excinfo.value) and "--manual" in str(excinfo.value)


def test_cron_and_every_together_are_refused() -> None:
    error = _refusal(cron="* * * * *", every=60)
    assert error.field == "cron"
    assert "not both" in error.reason


@pytest.mark.parametrize(
    ("given", "field"), [({"cron": "@daily"}, "cron"), ({"every": 60}, "every")]
)
def test_a_manual_schedule_with_a_timing_is_refused(given: dict[str, Any], field: str) -> None:
    error = _refusal(manual=True, **given)
    assert error.field == field
    assert "never fires by itself" in error.reason


def test_the_constructor_holds_the_kind_to_its_fields() -> None:
    with pytest.raises(InvalidSchedule, match="use one of cron, interval, manual"):
        ScheduleSpec("s", "t", "weekly")
    with pytest.raises(InvalidSchedule, match="not both"):
        ScheduleSpec("s", "t", "cron", cron="* * * * *", interval_seconds=60)
    with pytest.raises(InvalidSchedule, match="not both"):
        ScheduleSpec("s", "t", "interval", cron="* * * * *", interval_seconds=60)
    with pytest.raises(InvalidSchedule, match="never fires"):
        ScheduleSpec("s", "t", "manual", interval_seconds=60)
    with pytest.raises(InvalidSchedule, match="empty expression"):
        ScheduleSpec("s", "t", "cron")


# ---- cron --------------------------------------------------------------------------


@pytest.mark.parametrize("nickname", sorted(CRON_NICKNAMES))
def test_cron_nicknames_are_stored_as_written(nickname: str) -> None:
    assert ScheduleSpec.build("s", "t", cron=nickname).cron == nickname


@pytest.mark.parametrize("cron", ["0 9 * * 1-5", "*/15 * * * *", "30 */2 * * * *"])
def test_valid_cron_expressions_are_accepted(cron: str) -> None:
    assert ScheduleSpec.build("s", "t", cron=cron).cron == cron


@pytest.mark.parametrize(
    ("cron", "fragment"),
    [
        ("", "empty expression"),
        ("   ", "empty expression"),
        ("@fortnightly", "unknown nickname"),
        ("* * *", "has 3 fields"),
        ("* * * * * * *", "has 7 fields"),
        ("61 * * * *", "minute"),
        ("0 0 30 2 *", "never matches"),
    ],
)
def test_bad_cron_expressions_are_refused(cron: str, fragment: str) -> None:
    error = _refusal(cron=cron)
    assert error.field == "cron"
    assert fragment in str(error)


# ---- interval ----------------------------------------------------------------------


@pytest.mark.parametrize("seconds", [INTERVAL_MIN_SECONDS, 1, 0.5, 3600, INTERVAL_MAX_SECONDS])
def test_intervals_in_range_are_accepted(seconds: float) -> None:
    assert ScheduleSpec.build("s", "t", every=seconds).interval_seconds == seconds


@pytest.mark.parametrize("seconds", [0, -1, math.nan, True, "60", INTERVAL_MAX_SECONDS * 2])
def test_intervals_out_of_range_or_not_numbers_are_refused(seconds: Any) -> None:
    error = _refusal(every=seconds)
    assert error.field == "interval"
    assert "ten years" in error.reason


def test_a_trigger_of_an_interval_spec_fires_after_its_anchor() -> None:
    anchor = datetime(2026, 1, 1, tzinfo=UTC)
    trigger = ScheduleSpec.build("s", "t", every=60).trigger(anchor)
    assert trigger is not None
    assert trigger.next_after(anchor) == datetime(2026, 1, 1, 0, 1, tzinfo=UTC)


# ---- time zones, names, task types -------------------------------------------------


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Europe/London", "Asia/Tokyo"])
def test_iana_zones_are_accepted(zone: str) -> None:
    assert ScheduleSpec.build("s", "t", cron="@daily", timezone=zone).timezone == zone


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "EST5EDT/x", "../etc/passwd", 5])
def test_unknown_zones_are_refused_naming_them(zone: Any) -> None:
    error = _refusal(cron="@daily", timezone=zone)
    assert error.field == "timezone"
    assert "IANA" in error.reason


def test_name_length_bounds() -> None:
    assert ScheduleSpec.build("n" * NAME_MAX, "t", manual=True).name == "n" * NAME_MAX
    for name in ("", "   ", "n" * (NAME_MAX + 1), None, 7):
        error = _refusal(name=name)
        assert error.field == "name", name
        assert f"1 to {NAME_MAX}" in error.reason


@pytest.mark.parametrize("task_type", ["", "x" * 201, None])
def test_bad_task_types_are_refused(task_type: Any) -> None:
    assert _refusal(task_type=task_type).field == "task type"


@pytest.mark.parametrize("queue", ["", "bad queue", "q\n", None, "x" * 65])
def test_bad_queues_are_refused(queue: Any) -> None:
    assert _refusal(queue=queue).field == "queue name"


@pytest.mark.parametrize("priority", [-1, 1001, 1.0, True])
def test_bad_priorities_are_refused(priority: Any) -> None:
    assert _refusal(priority=priority).field == "priority"


# ---- run options -------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1, 2])
def test_max_instances_of_one_or_more_is_accepted_and_zero_refused(count: int) -> None:
    if count >= 1:
        assert ScheduleSpec.build("s", "t", every=60, max_instances=count).max_instances == count
    else:
        assert _refusal(max_instances=count).field == "max_instances"


@pytest.mark.parametrize("count", [1.0, True, None, "2", -3])
def test_max_instances_that_are_not_positive_ints_are_refused(count: Any) -> None:
    error = _refusal(max_instances=count)
    assert error.field == "max_instances"
    assert ">= 1" in error.reason


@pytest.mark.parametrize("grace", [0, 0.0, 30, MISFIRE_GRACE_DEFAULT, INTERVAL_MAX_SECONDS])
def test_misfire_grace_of_zero_to_ten_years_is_accepted(grace: float) -> None:
    spec = ScheduleSpec.build("s", "t", every=60, misfire_grace_seconds=grace)
    assert spec.misfire_grace_seconds == grace


@pytest.mark.parametrize("grace", [-1, math.inf, math.nan, None, "60", False])
def test_bad_misfire_grace_is_refused(grace: Any) -> None:
    error = _refusal(misfire_grace_seconds=grace)
    assert error.field == "misfire_grace_seconds"
    assert ">= 0" in error.reason


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        ("max_retries", -1, ">= 0"),
        ("max_retries", 1.0, ">= 0"),
        ("retry_interval", -0.1, ">= 0"),
        ("retry_interval", math.inf, ">= 0"),
        ("timeout", 0, "> 0"),
        ("timeout", -5, "> 0"),
        ("origin", "cli", "api, code or builtin"),
    ],
)
def test_bad_run_options_are_refused_naming_them(option: str, value: Any, fragment: str) -> None:
    error = _refusal(**{option: value})
    assert error.field == option
    assert fragment in error.reason


def test_zero_retry_interval_and_a_positive_timeout_are_accepted() -> None:
    spec = ScheduleSpec.build("s", "t", every=60, retry_interval=0, timeout=0.5, max_retries=3)
    assert (spec.retry_interval, spec.timeout, spec.max_retries) == (0, 0.5, 3)


def test_defaults() -> None:
    spec = ScheduleSpec.build("s", "t", every=60)
    assert spec.timezone == "UTC" and spec.queue == "default" and spec.priority == 0
    assert spec.payload == {} and spec.max_instances == 1 and spec.origin == "api"
    assert spec.misfire_grace_seconds == MISFIRE_GRACE_DEFAULT
    assert spec.enabled is True and spec.coalesce is False


# ---- payload -----------------------------------------------------------------------


@pytest.mark.parametrize("payload", [[], "x", None, 1])
def test_a_payload_that_is_not_a_dict_is_refused(payload: Any) -> None:
    error = _refusal(payload=payload)
    assert error.field == "payload"
    assert "JSON object" in error.reason


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"x": math.nan}, "not JSON-encodable"),
        ({"at": datetime(2026, 1, 1, tzinfo=UTC)}, "not JSON-encodable"),
        ({"s": "\x00"}, "U+0000"),
        ({"x": "a" * PAYLOAD_MAX_BYTES}, "PAYLOAD_MAX_BYTES"),
    ],
)
def test_payloads_a_task_could_not_take_are_refused_as_schedules(
    payload: dict[str, Any], fragment: str
) -> None:
    error = _refusal(payload=payload)
    assert type(error) is InvalidSchedule
    assert error.field == "payload"
    assert fragment in error.reason


# ---- params ------------------------------------------------------------------------


def test_params_hold_every_field_with_the_payload_as_json_and_the_next_fire() -> None:
    spec = ScheduleSpec.build(
        "collect-btc",
        "marketdata.collect",
        cron="*/5 * * * *",
        payload={"symbol": "BTCUSDT", "n": [1, 2]},
        timezone="America/New_York",
        queue="md",
        priority=7,
        description="five-minute bars",
        origin="code",
    )
    at = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
    params = spec.params(at)
    assert set(params) == set(SPEC_FIELDS) | {"next_fire_at"}
    assert params["payload"] == '{"symbol":"BTCUSDT","n":[1,2]}'
    assert json.loads(params["payload"]) == spec.payload
    assert params["next_fire_at"] == at
    for name in SPEC_FIELDS:
        if name != "payload":
            assert params[name] == getattr(spec, name), name
    assert spec.params(None)["next_fire_at"] is None
    # the spec itself is unchanged (params copies)
    assert spec.payload == {"symbol": "BTCUSDT", "n": [1, 2]}


def test_a_spec_rebuilt_from_its_fields_is_equal() -> None:
    spec = ScheduleSpec.build("s", "t", every=30, payload={"a": 1}, max_instances=2)
    assert ScheduleSpec(**{name: getattr(spec, name) for name in SPEC_FIELDS}) == spec
