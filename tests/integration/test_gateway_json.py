"""One JSON convention: camelCase on every surface of the gateway (HTTP, WebSocket
pushes, webhook bodies) and request field names that match response ones."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from tests.support.gateway import Client, RunningGateway, gateway_test_app, running_gateway

CAMEL_KEYS = {"id", "event", "rule", "kind", "subject", "state", "value", "message", "detail"}


@pytest.fixture
async def gw(database_url: str) -> AsyncIterator[RunningGateway]:
    app = gateway_test_app(database_url)
    async with app, running_gateway(app) as running:
        yield running


async def test_ws_alert_push_is_camel_case(
    gw: RunningGateway, sql_conn: psycopg.Connection[Any]
) -> None:
    # The payload as the evaluation pass notifies it (snake_case, built in SQL).
    payload = {
        "id": 7,
        "event": "fired",
        "rule": "failures-last-hour",
        "kind": "failures_last_hour",
        "subject": "",
        "state": "firing",
        "value": 6.0,
        "message": "6 tasks failed",
        "detail": {"window_seconds": 3600, "by_task_type": {"my_task": 6}},
        "fired_at": "2030-01-01T00:00:00+00:00",
        "resolved_at": None,
    }
    async with gw.ws() as ws:
        client = Client(ws, [])
        await client.request("sub", "subscribe", channel="alert")
        await client.until_final("sub")
        sql_conn.execute("SELECT pg_notify('tickbase_alerts', %s)", (json.dumps(payload),))
        while True:
            frame = await client.next()
            if frame["type"] == "update" and frame["channel"] == "alert":
                break
    content = frame["content"]
    assert set(content) == CAMEL_KEYS | {"firedAt", "resolvedAt"}
    # detail's keys are camelCase; the task types it counts keep their names
    assert content["detail"] == {"windowSeconds": 3600, "byTaskType": {"my_task": 6}}


async def test_schedule_fields_are_named_alike_in_and_out(gw: RunningGateway) -> None:
    async with gw.http() as http:
        created = await http.post(
            "/api/v1/schedules",
            json={"name": "every-minute", "taskType": "t.add", "intervalSeconds": 60.0},
        )
        assert created.status_code == 201, created.text
        out = created.json()
        assert out["intervalSeconds"] == 60.0 and out["kind"] == "interval"
        changed = await http.patch("/api/v1/schedules/every-minute", json={"intervalSeconds": 30})
        assert changed.status_code == 200 and changed.json()["intervalSeconds"] == 30.0
        # Every field a schedule is created with comes back under the same name.
        spec = (await http.get("/openapi.json")).json()["components"]["schemas"]
        inputs = set(spec["ScheduleCreate"]["properties"]) - {"manual", "everySeconds"}
        assert inputs <= set(spec["ScheduleOut"]["properties"])
        # The old name is still accepted (deprecated), but not with the new one.
        old = await http.post(
            "/api/v1/schedules", json={"name": "old", "taskType": "t.add", "everySeconds": 5}
        )
        assert old.status_code == 201 and old.json()["intervalSeconds"] == 5.0
        both = await http.post(
            "/api/v1/schedules",
            json={"name": "b", "taskType": "t.add", "everySeconds": 5, "intervalSeconds": 5},
        )
        assert both.status_code == 422
