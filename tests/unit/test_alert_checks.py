"""Alert settings checked before anything is stored or posted, without a database.

Thresholds and seconds must be finite numbers >= 0 (a boolean is not a
number); an unknown name gets the close match and the known names; a
notifier's timeout, attempts, backoff and batch are refused when they could
never deliver; and what logs and listings show of a webhook URL never holds
its credentials, query or path token.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest

from tickbase.cluster.alerts import AlertNotifier, check_webhook_url
from tickbase.cluster.alerts.rules import Alert, AlertRule, check_seconds_or_count, known_hint
from tickbase.cluster.alerts.webhooks import AlertWebhook, display_url, origin
from tickbase.errors import InvalidAlert

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
NO_POOL = cast(Any, None)  # the checks run before the pool is ever used


@pytest.mark.parametrize("value", [0, 0.0, 1, 2.5, 10**9])
def test_finite_non_negative_numbers_are_accepted(value: float) -> None:
    check_seconds_or_count("threshold", value)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (True, "must be a number"),
        (False, "must be a number"),
        ("5", "must be a number"),
        (None, "must be a number"),
        (-0.001, "must be a finite number >= 0"),
        (float("-inf"), "must be a finite number >= 0"),
        (float("inf"), "must be a finite number >= 0"),
        (float("nan"), "must be a finite number >= 0"),
    ],
)
def test_other_values_are_refused_naming_the_setting(value: Any, problem: str) -> None:
    with pytest.raises(InvalidAlert) as refused:
        check_seconds_or_count("for_seconds", value)
    assert refused.value.field == "for_seconds"
    assert refused.value.value is value or refused.value.value == value
    assert str(refused.value) == f"invalid for_seconds {value!r}: {problem}"


def test_known_hint_suggests_and_lists_sorted() -> None:
    assert known_hint("rules", "backlgo", ["node-down", "backlog"]) == (
        "no such rule (did you mean 'backlog'? known rules: backlog, node-down)"
    )
    assert known_hint("kinds", "zzz", ["b", "a"]) == "no such kind (known kinds: a, b)"


@pytest.mark.parametrize(
    ("kwargs", "field", "problem"),
    [
        ({"timeout": 0}, "timeout", "must be a finite number of seconds > 0"),
        ({"timeout": -1.0}, "timeout", "must be a finite number of seconds > 0"),
        ({"timeout": float("inf")}, "timeout", "must be a finite number of seconds > 0"),
        ({"timeout": float("nan")}, "timeout", "must be a finite number of seconds > 0"),
        ({"max_attempts": 0}, "max_attempts", "must be at least 1"),
        ({"backoff": -1.0}, "backoff", "need 0 <= backoff <= max_backoff, finite"),
        ({"backoff": 10.0, "max_backoff": 5.0}, "backoff", "need 0 <= backoff <= max_backoff"),
        ({"max_backoff": float("inf")}, "backoff", "need 0 <= backoff <= max_backoff, finite"),
        ({"batch_size": 0}, "batch_size", "must be at least 1"),
    ],
)
def test_a_notifier_that_could_never_deliver_is_refused(
    kwargs: dict[str, Any], field: str, problem: str
) -> None:
    with pytest.raises(InvalidAlert) as refused:
        AlertNotifier(NO_POOL, **kwargs)
    assert refused.value.field == field
    assert problem in str(refused.value)


async def test_retry_delay_doubles_up_to_the_cap() -> None:
    async with AlertNotifier(NO_POOL, backoff=2.0, max_backoff=30.0) as notifier:
        assert [notifier.retry_delay(n) for n in range(1, 7)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    async with AlertNotifier(NO_POOL, backoff=0.0, max_backoff=0.0) as immediate:
        assert immediate.retry_delay(5) == 0.0


@pytest.mark.parametrize(
    ("url", "shown_origin", "shown"),
    [
        (
            "https://user:pw@ops.example.com/hooks/abc?token=s",
            "https://ops.example.com",
            "/hooks/abc",
        ),
        ("http://127.0.0.1:8080/x#frag", "http://127.0.0.1:8080", "/x"),
        ("https://[::1]:9443/hook?k=v", "https://[::1]:9443", "/hook"),
        ("https://example.com", "https://example.com", ""),
        ("http://host:99999/x", "http://host", "/x"),  # a bad port is left out, not raised
    ],
)
def test_what_logs_show_of_a_url_has_no_secrets(url: str, shown_origin: str, shown: str) -> None:
    assert origin(url) == shown_origin
    assert display_url(url) == shown_origin + shown


def test_a_webhook_lists_without_its_secrets_unless_asked() -> None:
    hook = AlertWebhook(
        id=4, url="https://u:p@ops.example.com/h/T0KEN?sig=1", enabled=True, created_at=T0
    )
    assert hook.display_url == "https://ops.example.com/h/T0KEN"
    assert hook.to_dict() == {
        "id": 4,
        "url": "https://ops.example.com/h/T0KEN",
        "enabled": True,
        "created_at": T0,
    }
    assert hook.to_dict(secrets=True)["url"] == "https://u:p@ops.example.com/h/T0KEN?sig=1"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://host:0/x", "port 0 cannot be posted to"),
        ("example.com/hook", "not an http(s) URL (no scheme)"),
        (
            "mailto:ops@example.com",
            "the scheme must be http or https, not 'mailto' (did you forget",
        ),
        ("https://host/a b", "it contains whitespace (encode it as %20)"),
        (None, "it is empty"),
        ("   ", "it is empty"),
    ],
)
def test_more_bad_webhook_urls(url: Any, problem: str) -> None:
    with pytest.raises(InvalidAlert) as refused:
        check_webhook_url(url)
    assert problem in str(refused.value)
    assert refused.value.field == "webhook url"


@pytest.mark.parametrize(
    ("url", "stored"),
    [
        ("HTTP://Example.com:8080/Path", "http://Example.com:8080/Path"),
        ("https://[::1]/hook", "https://[::1]/hook"),
        ("\thttps://example.com/a\n", "https://example.com/a"),
    ],
)
def test_good_webhook_urls_are_stored_with_a_lower_case_scheme(url: str, stored: str) -> None:
    assert check_webhook_url(url) == stored


def test_rules_and_alerts_as_plain_dicts() -> None:
    rule = AlertRule("backlog", "backlog", 100.0, 300.0, True, None, T0)
    assert rule.to_dict() == {
        "name": "backlog",
        "kind": "backlog",
        "threshold": 100.0,
        "for_seconds": 300.0,
        "enabled": True,
        "description": None,
        "updated_at": T0,
    }
    alert = Alert(1, "node-down", "node_down", "n1", "firing", 61.0, "m", {"host": "h"}, T0, None)
    assert alert.to_dict()["subject"] == "n1" and alert.to_dict()["detail"] == {"host": "h"}
    assert alert.to_dict()["resolved_at"] is None
