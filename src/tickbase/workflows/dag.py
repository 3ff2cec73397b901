"""Workflow graphs: validation and ordering, pure (no I/O).

A workflow is a list of steps; each names its task type, payload and the
steps it runs after. Validation refuses, naming the offenders: an empty
workflow, a duplicate step name, an unknown dependency, an unknown task type,
a cycle (with its path, ``a -> b -> c -> a``) and ``max_parallel`` < 1.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from tickbase.errors import InvalidWorkflow
from tickbase.queue.models import encode_payload

MODES = ("serial", "parallel")
FAILURE_POLICIES = ("stop", "continue")


@dataclass(frozen=True)
class StepSpec:
    """One step of a workflow definition."""

    name: str
    task_type: str
    after: tuple[str, ...] = ()
    payload: dict[str, Any] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    """queue, priority, max_attempts, retry_delay, timeout of the step's task."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task_type": self.task_type,
            "after": list(self.after),
            "payload": self.payload,
            "options": self.options,
        }


def validate(
    name: str,
    steps: Sequence[StepSpec],
    *,
    mode: str,
    on_failure: str,
    max_parallel: int | None,
    known_task_types: Collection[str] | None = None,
) -> list[StepSpec]:
    """Check a definition; return its steps in run order (topological, ties by declaration)."""
    if not isinstance(name, str) or not 0 < len(name) <= 200:
        raise InvalidWorkflow(name, "the workflow name must be 1 to 200 characters")
    if mode not in MODES:
        raise InvalidWorkflow(name, f"mode {mode!r} is not one of {', '.join(MODES)}")
    if on_failure not in FAILURE_POLICIES:
        raise InvalidWorkflow(
            name, f"on_failure {on_failure!r} is not one of {', '.join(FAILURE_POLICIES)}"
        )
    if max_parallel is not None and (type(max_parallel) is not int or max_parallel < 1):
        raise InvalidWorkflow(name, f"max_parallel must be an integer >= 1, got {max_parallel!r}")
    if not steps:
        raise InvalidWorkflow(name, "the workflow is empty: add at least one step")
    seen: set[str] = set()
    for step in steps:
        if not isinstance(step.name, str) or not 0 < len(step.name) <= 200:
            raise InvalidWorkflow(name, f"step name {step.name!r} must be 1 to 200 characters")
        if step.name in seen:
            raise InvalidWorkflow(name, f"duplicate step name {step.name!r}")
        seen.add(step.name)
        if known_task_types is not None and step.task_type not in known_task_types:
            raise InvalidWorkflow(name, f"step {step.name!r}: unknown task type {step.task_type!r}")
        if not isinstance(step.payload, dict):
            raise InvalidWorkflow(name, f"step {step.name!r}: payload must be a JSON object")
        encode_payload(step.payload, f"payload of step {step.name!r}")
    for step in steps:
        for dependency in step.after:
            if dependency not in seen:
                raise InvalidWorkflow(
                    name, f"step {step.name!r} depends on unknown step {dependency!r}"
                )
    cycle = find_cycle(steps)
    if cycle:
        raise InvalidWorkflow(name, f"cycle: {' -> '.join(cycle)}")
    return topological_order(steps)


def find_cycle(steps: Sequence[StepSpec]) -> list[str] | None:
    """A dependency cycle as a path in run order that returns to its start, or None.

    Iterative depth-first search: a 1,000-step chain must not hit Python's
    recursion limit.
    """
    after = {step.name: step.after for step in steps}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in after:
        if root in state:
            continue
        path: list[str] = [root]
        iterators = [iter(after[root])]
        state[root] = 1
        while iterators:
            dependency = next(iterators[-1], None)
            if dependency is None:
                state[path.pop()] = 2
                iterators.pop()
                continue
            if state.get(dependency) == 1:
                # path holds dependents before their dependencies: print it in
                # run order (dependency first), closing the loop.
                loop = [*path[path.index(dependency) :], dependency]
                return list(reversed(loop))
            if dependency not in state and dependency in after:
                state[dependency] = 1
                path.append(dependency)
                iterators.append(iter(after[dependency]))
    return None


def topological_order(steps: Sequence[StepSpec]) -> list[StepSpec]:
    """Kahn's algorithm, always taking the earliest-declared ready step."""
    position = {step.name: index for index, step in enumerate(steps)}
    waiting_on = {step.name: len(set(step.after)) for step in steps}
    dependents: dict[str, list[str]] = {step.name: [] for step in steps}
    for step in steps:
        for dependency in set(step.after):
            dependents[dependency].append(step.name)
    ready = [position[name] for name, count in waiting_on.items() if count == 0]
    heapq.heapify(ready)
    ordered: list[StepSpec] = []
    while ready:
        step = steps[heapq.heappop(ready)]
        ordered.append(step)
        for child in dependents[step.name]:
            waiting_on[child] -= 1
            if waiting_on[child] == 0:
                heapq.heappush(ready, position[child])
    return ordered


def downstream(steps: Sequence[StepSpec], roots: Collection[str]) -> set[str]:
    """Every step that depends, directly or not, on one of ``roots``."""
    dependents: dict[str, list[str]] = {step.name: [] for step in steps}
    for step in steps:
        for dependency in step.after:
            dependents[dependency].append(step.name)
    found: set[str] = set()
    frontier = list(roots)
    while frontier:
        for child in dependents.get(frontier.pop(), ()):
            if child not in found:
                found.add(child)
                frontier.append(child)
    return found
