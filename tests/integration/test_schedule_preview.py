"""POST /api/v1/schedules/preview over a real gateway: the dashboard's as-you-type check (issue 16)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.gateway import RunningGateway, gateway_test_app, running_gateway
from tickbase.scheduler.triggers import CronTrigger

PREVIEW = "/api/v1/schedules/preview"


@pytest.fixture
async def gw(database_url: str) -> AsyncIterator[RunningGateway]:
    app = gateway_test_app(database_url)
    async with app, running_gateway(app, worker=False) as running:
        yield running


def instants(body: dict[str, object]) -> list[datetime]:
    return [datetime.fromisoformat(str(f)) for f in body["fires"]]  # type: ignore[attr-defined]


async def test_cron_fires_are_the_schedulers_own(gw: RunningGateway) -> None:
    timing = {"cron": "*/15 * * * *", "timezone": "America/New_York"}
    async with gw.http(gw.viewer) as http:  # a read: viewers may preview
        before = datetime.now(UTC)
        answer = await http.post(PREVIEW, json=timing)
        after = datetime.now(UTC)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["kind"] == "cron" and body["timezone"] == "America/New_York"
    fires = instants(body)
    trigger = CronTrigger("*/15 * * * *", "America/New_York")
    assert fires[0] in (trigger.next_after(before), trigger.next_after(after))
    walked = [fires[0]]
    while len(walked) < 5:
        walked.append(trigger.next_after(walked[-1]))
    assert fires == walked
    # A schedule created with the same timing stores the same first fire.
    async with gw.http() as http:
        created = await http.post(
            "/api/v1/schedules", json={"name": "q", "taskType": "t.add", **timing}
        )
    assert created.status_code == 201, created.text
    stored = datetime.fromisoformat(created.json()["nextFireAt"])
    assert stored in (fires[0], trigger.next_after(fires[0]))


async def test_an_interval_counts_from_now(gw: RunningGateway) -> None:
    async with gw.http() as http:
        before = datetime.now(UTC)
        answer = await http.post(PREVIEW, json={"intervalSeconds": 600})
        after = datetime.now(UTC)
    assert answer.status_code == 200, answer.text
    assert answer.json()["kind"] == "interval"
    fires = instants(answer.json())
    assert len(fires) == 5
    assert before + timedelta(seconds=600) <= fires[0] <= after + timedelta(seconds=600)
    assert all(b - a == timedelta(seconds=600) for a, b in itertools.pairwise(fires))


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"cron": "61 * * * *"}, "cron", "minute field '61'"),
        ({"cron": "*/15 * * *"}, "cron", "has 4 fields"),
        ({"cron": "@sometimes"}, "cron", "unknown nickname"),
        ({"cron": "* * * * *", "timezone": "America/Nowhere"}, "timezone", "unknown time zone"),
        ({}, "schedule", "give either a cron expression"),
        ({"cron": "* * * * *", "intervalSeconds": 5}, "schedule", "give either"),
    ],
)
async def test_refusals_are_422_naming_the_problem(
    gw: RunningGateway, body: dict[str, object], field: str, words: str
) -> None:
    async with gw.http() as http:
        answer = await http.post(PREVIEW, json=body)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "INVALID_SCHEDULE" and error["details"] == {"field": field}
    assert words in error["message"]


async def test_a_bad_interval_is_a_validation_error(gw: RunningGateway) -> None:
    async with gw.http() as http:
        answer = await http.post(PREVIEW, json={"intervalSeconds": 0})
        unknown = await http.post(PREVIEW, json={"cron": "* * * * *", "zone": "UTC"})
    assert answer.status_code == 422 and answer.json()["error"]["code"] == "VALIDATION_ERROR"
    assert "intervalSeconds" in answer.json()["error"]["details"][0]["path"]
    assert unknown.status_code == 422  # a typo'd field is refused, not ignored


async def test_previewing_needs_a_session(gw: RunningGateway) -> None:
    async with gw.http("tb_" + "x" * 43) as http:
        assert (await http.post(PREVIEW, json={"cron": "* * * * *"})).status_code == 401
