"""Task filters: JSON conditions as typed, refused naming the problem, as statement parameters."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tickbase.errors import InvalidTask
from tickbase.queue.filters import MAX_CONDITIONS, JsonCondition, TaskFilter


@pytest.mark.parametrize(
    ("text", "root", "path", "value"),
    [
        ("payload.symbol = BTCUSDT", "payload", ("symbol",), "BTCUSDT"),
        ("payload.symbol=BTCUSDT", "payload", ("symbol",), "BTCUSDT"),
        ("result.bars = 0", "result", ("bars",), 0),
        ('result.bars = "0"', "result", ("bars",), "0"),
        ("payload.opts.fast = true", "payload", ("opts", "fast"), True),
        ("payload.x = null", "payload", ("x",), None),
        ("payload.price = 101.5", "payload", ("price",), 101.5),
        ("payload.name = two words", "payload", ("name",), "two words"),
        ("payload.list = [1, 2]", "payload", ("list",), [1, 2]),
        ("payload.eq = a=b", "payload", ("eq",), "a=b"),
    ],
)
def test_a_condition_reads_as_typed(
    text: str, root: str, path: tuple[str, ...], value: object
) -> None:
    condition = JsonCondition.parse(text)
    assert (condition.root, condition.path, condition.value) == (root, path, value)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("symbol = BTCUSDT", "payload.<path> = <value>"),
        ("payloads.symbol = x", "payload.<path> = <value>"),
        ("payload.symbol", "payload.<path> = <value>"),
        ("payload. = x", "path step ''"),
        ("payload.a..b = x", "path step ''"),
        ("payload.two words = x", "path step 'two words'"),
        ("payload." + "k" * 101 + " = x", "1 to 100 characters"),
        ("", "payload.<path> = <value>"),
    ],
)
def test_a_bad_condition_is_refused_naming_it(text: str, reason: str) -> None:
    with pytest.raises(InvalidTask) as refused:
        JsonCondition.parse(text)
    assert refused.value.field == "filter" and refused.value.value == text
    assert reason in refused.value.reason


def test_conditions_on_one_document_become_one_containment() -> None:
    task_filter = TaskFilter.parse(
        where=[
            "payload.symbol = BTCUSDT",
            "payload.opts.fast = true",
            "payload.opts.depth = 5",
            "result.bars = 0",
        ]
    )
    params = task_filter.params()
    assert json.loads(params["payload_contains"]) == {
        "symbol": "BTCUSDT",
        "opts": {"fast": True, "depth": 5},
    }
    assert json.loads(params["result_contains"]) == {"bars": 0}


def test_no_condition_means_no_containment_and_the_shorthands_pass_through() -> None:
    after = datetime(2026, 1, 1, tzinfo=UTC)
    params = TaskFilter(
        status="failed", queue="q", task_type="t", node_id="n", created_after=after
    ).params()
    assert params == {
        "status": "failed",
        "queue": "q",
        "task_type": "t",
        "node_id": "n",
        "created_after": after,
        "created_before": None,
        "payload_contains": None,
        "result_contains": None,
    }


def test_bad_filters_are_refused_naming_the_field() -> None:
    with pytest.raises(InvalidTask, match="use one of"):
        TaskFilter(status="done")
    with pytest.raises(InvalidTask, match=f"at most {MAX_CONDITIONS}"):
        TaskFilter.parse(where=[f"payload.k{i} = {i}" for i in range(MAX_CONDITIONS + 1)])
    with pytest.raises(InvalidTask, match="time zone") as naive:
        TaskFilter(created_after=datetime(2026, 1, 1))
    assert naive.value.field == "createdAfter"
    start = datetime(2026, 1, 2, tzinfo=UTC)
    with pytest.raises(InvalidTask, match="after createdAfter") as backwards:
        TaskFilter(created_after=start, created_before=start)
    assert backwards.value.field == "createdBefore"


def test_the_audit_form_names_only_what_was_given() -> None:
    task_filter = TaskFilter.parse(where=["payload.symbol = BTCUSDT"], status="pending")
    assert task_filter.to_dict() == {"status": "pending", "where": ['payload.symbol = "BTCUSDT"']}
    assert TaskFilter().to_dict() == {}
    # What the audit row shows parses back to the same filter.
    again = TaskFilter.parse(where=task_filter.to_dict()["where"], status="pending")
    assert again == task_filter
