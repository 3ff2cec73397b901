"""Workflow graphs: what validation refuses (naming the offender), run order, downstream skips."""

from __future__ import annotations

from typing import Any

import pytest

from tickbase.errors import InvalidWorkflow
from tickbase.workflows.dag import StepSpec, downstream, find_cycle, topological_order, validate


def step(name: str, *after: str, task_type: str = "echo", **fields: Any) -> StepSpec:
    return StepSpec(name=name, task_type=task_type, after=after, **fields)


def check(
    steps: list[StepSpec],
    *,
    name: str = "wf",
    mode: str = "parallel",
    on_failure: str = "stop",
    max_parallel: int | None = None,
    known: set[str] | None = None,
) -> list[str]:
    ordered = validate(
        name,
        steps,
        mode=mode,
        on_failure=on_failure,
        max_parallel=max_parallel,
        known_task_types=known,
    )
    return [s.name for s in ordered]


def refused(steps: list[StepSpec], **kwargs: Any) -> str:
    with pytest.raises(InvalidWorkflow) as info:
        check(steps, **kwargs)
    return info.value.reason


# -- validation -------------------------------------------------------------


def test_a_valid_definition_is_accepted_in_run_order() -> None:
    assert check([step("load", "fetch"), step("fetch")]) == ["fetch", "load"]


def test_empty_workflow_refused() -> None:
    assert "empty" in refused([])


def test_duplicate_step_named() -> None:
    assert refused([step("a"), step("b"), step("a")]) == "duplicate step name 'a'"


def test_unknown_dependency_named_with_its_dependent() -> None:
    reason = refused([step("a"), step("b", "a", "nope")])
    assert reason == "step 'b' depends on unknown step 'nope'"


def test_unknown_task_type_named_only_when_types_are_known() -> None:
    steps = [step("a"), step("b", "a", task_type="tyop")]
    assert refused(steps, known={"echo"}) == "step 'b': unknown task type 'tyop'"
    # Without a registry to check against, any type passes.
    assert check(steps) == ["a", "b"]


def test_cycle_reported_with_its_path_in_run_order() -> None:
    # c runs after b, b after a, a after c: printed dependency first, closing the loop.
    reason = refused([step("a", "c"), step("b", "a"), step("c", "b"), step("d")])
    assert reason == "cycle: a -> b -> c -> a"


def test_self_dependency_is_a_cycle() -> None:
    assert refused([step("a", "a")]) == "cycle: a -> a"


def test_find_cycle_none_on_a_dag_and_survives_a_long_chain() -> None:
    chain = [step("s0")] + [step(f"s{i}", f"s{i - 1}") for i in range(1, 3000)]
    assert find_cycle(chain) is None
    looped = [step("s0", "s2999"), *chain[1:]]
    cycle = find_cycle(looped)
    assert cycle is not None and len(cycle) == 3001


@pytest.mark.parametrize("mode", ["", "Serial", "fanout"])
def test_bad_mode_refused(mode: str) -> None:
    assert refused([step("a")], mode=mode) == f"mode {mode!r} is not one of serial, parallel"


@pytest.mark.parametrize("mode", ["serial", "parallel"])
def test_both_modes_accepted(mode: str) -> None:
    assert check([step("a")], mode=mode) == ["a"]


def test_bad_on_failure_refused() -> None:
    reason = refused([step("a")], on_failure="retry")
    assert reason == "on_failure 'retry' is not one of stop, continue"
    assert check([step("a")], on_failure="continue") == ["a"]


@pytest.mark.parametrize("bad", [0, -1, True, 2.0, "3"])
def test_bad_max_parallel_refused(bad: Any) -> None:
    assert "max_parallel must be an integer >= 1" in refused([step("a")], max_parallel=bad)


def test_max_parallel_one_and_none_accepted() -> None:
    assert check([step("a")], max_parallel=1) == ["a"]
    assert check([step("a")], max_parallel=None) == ["a"]


def test_workflow_name_length_bounds() -> None:
    assert check([step("a")], name="w" * 200) == ["a"]
    for bad in ("", "w" * 201):
        with pytest.raises(InvalidWorkflow, match="1 to 200 characters"):
            check([step("a")], name=bad)


def test_step_name_length_bounds() -> None:
    assert check([step("s" * 200)]) == ["s" * 200]
    for bad in ("", "s" * 201):
        assert refused([step(bad)]) == f"step name {bad!r} must be 1 to 200 characters"


def test_payload_must_be_a_json_object() -> None:
    bad = StepSpec(name="a", task_type="echo", payload=[1, 2])  # type: ignore[arg-type]
    assert refused([bad]) == "step 'a': payload must be a JSON object"


# -- run order --------------------------------------------------------------


def test_independent_steps_keep_declaration_order() -> None:
    assert check([step("c"), step("a"), step("b")]) == ["c", "a", "b"]


def test_ties_broken_by_declaration_not_by_discovery() -> None:
    # z and y both become ready once root ran; y was declared first, and a
    # late-declared independent step still waits its declaration turn.
    steps = [step("root"), step("y", "root"), step("x"), step("z", "root")]
    assert check(steps) == ["root", "y", "x", "z"]
    steps = [step("late", "first"), step("early"), step("first")]
    assert [s.name for s in topological_order(steps)] == ["early", "first", "late"]


def test_dependencies_always_run_first_and_duplicates_in_after_count_once() -> None:
    steps = [step("d", "b", "c", "b"), step("c", "a"), step("b", "a"), step("a")]
    order = check(steps)
    assert order == ["a", "c", "b", "d"]
    assert len(order) == len(steps)


# -- downstream ---------------------------------------------------------------


def test_downstream_is_transitive_and_excludes_the_failed_step() -> None:
    steps = [step("a"), step("b", "a"), step("c", "b"), step("d")]
    assert downstream(steps, {"a"}) == {"b", "c"}
    assert downstream(steps, {"b"}) == {"c"}
    assert downstream(steps, {"c"}) == set()


def test_downstream_of_a_diamond() -> None:
    #   a
    #  / \
    # b   c
    #  \ /
    #   d -> e
    steps = [step("a"), step("b", "a"), step("c", "a"), step("d", "b", "c"), step("e", "d")]
    assert downstream(steps, {"a"}) == {"b", "c", "d", "e"}
    # One arm failing skips the join (it needs both) but not the other arm.
    assert downstream(steps, {"b"}) == {"d", "e"}


def test_downstream_of_several_roots_is_their_union() -> None:
    steps = [step("a"), step("b"), step("x", "a"), step("y", "b"), step("z")]
    assert downstream(steps, {"a", "b"}) == {"x", "y"}
    assert downstream(steps, ()) == set()
