"""Error messages read as sentences: counts agree, states read naturally, times are ISO 8601."""

from __future__ import annotations

from datetime import datetime

import pytest

from tickbase.errors import InvalidTransition, ResultTimeout, plural
from tickbase.queue.models import EnqueueRequest


@pytest.mark.parametrize(
    ("status", "ending"),
    [
        ("succeeded", "it has already succeeded"),
        ("failed", "it has already failed"),
        ("cancelled", "it has already been cancelled"),
        ("running", "it is running"),
    ],
)
def test_a_refused_transition_names_the_state_in_a_sentence(status: str, ending: str) -> None:
    assert str(InvalidTransition(7, status, "cancel")) == f"cannot cancel task 7: {ending}"


def test_a_result_timeout_reads_as_a_sentence() -> None:
    message = str(ResultTimeout(7, 2.5, "succeeded"))
    assert message == "task 7 did not finish within 2.5 s (it has already succeeded)"


def test_counts_agree_with_their_noun() -> None:
    assert plural(1, "field") == "1 field"
    assert plural(6, "field") == "6 fields"
    assert plural(0, "series", "series") == "0 series"


def test_a_datetime_is_quoted_in_iso_8601() -> None:
    with pytest.raises(ValueError) as excinfo:
        EnqueueRequest("tickbase.echo", {}, run_at=datetime(2026, 1, 2, 3, 4, 5))
    message = str(excinfo.value)
    assert "datetime.datetime" not in message
    assert "invalid run_at '2026-01-02T03:04:05': must be timezone-aware" in message
