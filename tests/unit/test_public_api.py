"""The error tree and the public API are complete: what a user catches or uses is in ``tickbase``."""

from __future__ import annotations

import inspect

import pytest

import tickbase
import tickbase.errors
from tickbase.db.errors import CONSTRAINTS


def error_classes() -> list[type[BaseException]]:
    return [
        value
        for value in vars(tickbase.errors).values()
        if inspect.isclass(value)
        and issubclass(value, tickbase.errors.TickbaseError)
        and value.__module__ == "tickbase.errors"
    ]


def test_every_tickbase_error_is_exported_and_in_the_tree() -> None:
    tree = tickbase.errors.__doc__ or ""
    for kind in error_classes():
        assert getattr(tickbase, kind.__name__, None) is kind, f"tickbase.{kind.__name__}"
        assert kind.__name__ in tree, f"{kind.__name__} is missing from the tree in tickbase.errors"


def test_market_data_errors_are_tickbase_errors() -> None:
    from tickbase.marketdata.bars import InvalidBar
    from tickbase.marketdata.collector import SourceError

    assert issubclass(InvalidBar, tickbase.TickbaseError)
    assert issubclass(SourceError, tickbase.TickbaseError)
    assert issubclass(tickbase.RateLimited, tickbase.SourceError)
    assert issubclass(tickbase.ResolutionError, ValueError)


@pytest.mark.parametrize(
    "name", ["TaskContext", "Workflow", "WorkflowRun", "Retry", "Snooze", "Cancel", "TaskHandle"]
)
def test_the_names_the_readme_uses_are_exported(name: str) -> None:
    assert name in tickbase.__all__ and getattr(tickbase, name) is not None


def test_the_constraint_table_only_names_exported_errors() -> None:
    # A constraint's error is one a caller can catch by its public name.
    for meaning in CONSTRAINTS.values():
        if meaning is None:
            continue
        made = meaning.error(meaning.field, {}, "x")
        assert getattr(tickbase, type(made).__name__) is type(made)


def test_not_found_errors_are_lookup_errors() -> None:
    assert isinstance(tickbase.WorkflowRunNotFound(7), LookupError)
    assert str(tickbase.WorkflowRunNotFound(7)) == "workflow run 7 does not exist"
    assert isinstance(tickbase.AppNotOpen(), RuntimeError)
