"""Schedules listed a page at a time (issue 16: 10,000 schedules must not be one answer).

``GET /api/v1/schedules`` without ``limit`` answers every schedule (as
before); with it, a page by name, the next after the last name seen, with the
name (contains, any case) and task type filtered in the database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.gateway import RunningGateway, gateway_test_app, running_gateway
from tickbase.scheduler.models import ScheduleSpec


@pytest.fixture
async def gw(database_url: str) -> AsyncIterator[RunningGateway]:
    app = gateway_test_app(database_url)
    async with app, running_gateway(app, worker=False) as running:
        for i in range(7):
            task_type = "t.add" if i % 2 else "t.sleep"
            await app.schedules.create(ScheduleSpec.build(f"Feed-{i:02d}", task_type, every=3600))
        yield running


async def test_pages_follow_the_names(gw: RunningGateway) -> None:
    async with gw.http(gw.viewer) as http:

        async def names(**query: object) -> list[str]:
            answer = await http.get("/api/v1/schedules", params=query)
            assert answer.status_code == 200, answer.text
            return [s["name"] for s in answer.json()]

        every = await names()
        assert [n for n in every if n.startswith("Feed-")] == [f"Feed-{i:02d}" for i in range(7)]
        first = await names(limit=3, q="feed-")
        assert first == ["Feed-00", "Feed-01", "Feed-02"]
        assert await names(limit=3, q="FEED", after=first[-1]) == ["Feed-03", "Feed-04", "Feed-05"]
        assert await names(limit=3, q="feed", after="Feed-05") == ["Feed-06"]
        assert await names(q="feed", taskType="t.add") == ["Feed-01", "Feed-03", "Feed-05"]
        assert await names(q="nothing-like-it") == []
        assert (await http.get("/api/v1/schedules", params={"limit": 0})).status_code == 422
        assert (await http.get("/api/v1/schedules", params={"q": "a\x00b"})).status_code == 422
