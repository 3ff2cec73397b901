"""Task types every worker knows without ``--app``."""

from __future__ import annotations

from typing import Any

from tickbase.worker.registry import Registry, TaskDefinition


async def noop(**_: Any) -> None:
    """Do nothing: the unit of benchmarks and health checks."""


async def echo(**payload: Any) -> dict[str, Any]:
    """Return the payload unchanged."""
    return payload


def register_builtins(registry: Registry) -> None:
    registry.add(TaskDefinition("tickbase.noop", noop, queue="default"))
    registry.add(TaskDefinition("tickbase.echo", echo, queue="default"))
