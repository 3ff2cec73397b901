"""Task filters over the API and bulk cancel/retry with a dry run and an audit row (issue 16).

Over a real gateway: ``GET /api/v1/tasks`` filters by node, creation time and
JSON conditions (``where=payload.symbol = BTCUSDT``); ``POST /api/v1/task-bulk-actions``
counts first (dry run, answering ``upToId``) and then cancels exactly the
tasks it counted, not those enqueued since, writing who did it; a viewer is
refused; bad filters are 422 naming the problem and change nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from tests.support.gateway import RunningGateway, gateway_test_app, running_gateway
from tickbase.queue.models import EnqueueRequest


@pytest.fixture
async def gw(database_url: str) -> AsyncIterator[RunningGateway]:
    app = gateway_test_app(database_url)
    # No worker: the tasks stay pending, so what a bulk action meets is known.
    async with app, running_gateway(app, worker=False) as running:
        yield running


async def enqueue(
    gw: RunningGateway, *payloads: dict[str, Any], task_type: str = "t.add"
) -> list[int]:
    handles = await gw.app.enqueue_many([EnqueueRequest(task_type, p) for p in payloads])
    return [h.id for h in handles]


async def test_json_conditions_and_times_filter_the_listing(
    gw: RunningGateway, sql_conn: psycopg.Connection[Any]
) -> None:
    btc = await enqueue(gw, {"symbol": "BTCUSDT", "depth": 5}, {"symbol": "BTCUSDT", "depth": 9})
    eth = await enqueue(gw, {"symbol": "ETHUSDT", "depth": 5})
    sql_conn.execute(
        "UPDATE tickbase.tasks SET created_at = now() - interval '2 days', node_id = 'n-old'"
        " WHERE id = %s",
        (btc[0],),
    )
    async with gw.http() as http:

        async def ids(**query: Any) -> list[int]:
            answer = await http.get("/api/v1/tasks", params=query)
            assert answer.status_code == 200, answer.text
            return [t["id"] for t in answer.json()["items"]]

        assert await ids(where="payload.symbol = BTCUSDT") == sorted(btc, reverse=True)
        assert await ids(where=["payload.symbol = BTCUSDT", "payload.depth = 9"]) == [btc[1]]
        assert await ids(where="payload.depth = 5") == [eth[0], btc[0]]
        assert await ids(where='payload.depth = "5"') == []  # the string is not the number
        assert await ids(nodeId="n-old") == [btc[0]]
        yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
        assert await ids(createdBefore=yesterday) == [btc[0]]
        assert await ids(createdAfter=yesterday) == [eth[0], btc[1]]

        refused = await http.get("/api/v1/tasks", params={"where": "symbol = BTCUSDT"})
        assert refused.status_code == 422
        assert "payload.<path> = <value>" in refused.json()["error"]["message"]
        number = await http.get("/api/v1/tasks", params={"createdBefore": "0.5"})
        assert number.status_code == 422 and "createdBefore" in number.text
        naive = await http.get("/api/v1/tasks", params={"createdAfter": "2026-01-01T00:00:00"})
        assert naive.status_code == 422 and "time zone" in naive.json()["error"]["message"]


async def test_bulk_cancel_cancels_exactly_what_the_dry_run_counted(
    gw: RunningGateway, sql_conn: psycopg.Connection[Any]
) -> None:
    matching = await enqueue(gw, *({"symbol": "BTCUSDT", "n": i} for i in range(7)))
    other = await enqueue(gw, {"symbol": "ETHUSDT"})
    body = {"action": "cancel", "filter": {"where": ["payload.symbol = BTCUSDT"]}}
    async with gw.http() as http:
        dry = (await http.post("/api/v1/task-bulk-actions", json=body)).json()
        assert dry == {
            "action": "cancel",
            "dryRun": True,
            "matched": 7,
            "changed": 0,
            "upToId": max(matching),
            "auditId": None,
            "at": None,
        }
        assert sql_conn.execute("SELECT count(*) FROM tickbase.task_bulk_actions").fetchone() == (
            0,
        )
        # A task enqueued after the dry run is not part of what it counted.
        [late] = await enqueue(gw, {"symbol": "BTCUSDT", "n": "late"})
        run = await http.post(
            "/api/v1/task-bulk-actions", json={**body, "dryRun": False, "upToId": dry["upToId"]}
        )
        assert run.status_code == 200, run.text
        done = run.json()
        assert (done["matched"], done["changed"], done["dryRun"]) == (7, 7, False)
        assert done["auditId"] is not None
    statuses = dict(sql_conn.execute("SELECT id, status FROM tickbase.tasks").fetchall())
    assert [statuses[i] for i in matching] == ["cancelled"] * 7
    assert statuses[late] == "pending" and statuses[other[0]] == "pending"
    [audit] = sql_conn.execute(
        "SELECT actor, action, filter, up_to_id, matched, changed FROM tickbase.task_bulk_actions"
    ).fetchall()
    assert audit[0].startswith("test-admin-")
    assert audit[1:] == ("cancel", {"where": ['payload.symbol = "BTCUSDT"']}, max(matching), 7, 7)
    async with gw.http() as http:
        listed = (await http.get("/api/v1/task-bulk-actions")).json()["items"]
    assert [(a["action"], a["matched"], a["changed"]) for a in listed] == [("cancel", 7, 7)]


async def test_bulk_retry_copies_the_failed_ones(
    gw: RunningGateway, sql_conn: psycopg.Connection[Any]
) -> None:
    ids = await enqueue(gw, {"a": 1}, {"a": 2}, {"a": 3})
    sql_conn.execute(
        "UPDATE tickbase.tasks SET status = 'failed', finished_at = now() WHERE id = ANY(%s)",
        (ids[:2],),
    )
    body: dict[str, Any] = {"action": "retry", "filter": {"status": "failed"}}
    async with gw.http() as http:
        dry = (await http.post("/api/v1/task-bulk-actions", json=body)).json()
        assert dry["matched"] == 2
        done = (
            await http.post(
                "/api/v1/task-bulk-actions", json={**body, "dryRun": False, "upToId": dry["upToId"]}
            )
        ).json()
    assert (done["matched"], done["changed"]) == (2, 2)
    copies = sql_conn.execute(
        "SELECT detail->>'retry_of' FROM tickbase.task_events WHERE event = 'enqueued'"
        " AND detail ? 'retry_of' ORDER BY 1"
    ).fetchall()
    assert copies == [(str(ids[0]),), (str(ids[1]),)]


async def test_bulk_actions_are_refused_to_viewers_and_without_the_dry_run(
    gw: RunningGateway, sql_conn: psycopg.Connection[Any]
) -> None:
    await enqueue(gw, {"a": 1})
    body = {"action": "cancel", "filter": {}}
    async with gw.http(gw.viewer) as viewer, gw.http() as admin:
        assert (await viewer.post("/api/v1/task-bulk-actions", json=body)).status_code == 403
        no_dry_run = await admin.post("/api/v1/task-bulk-actions", json={**body, "dryRun": False})
        assert no_dry_run.status_code == 422 and "upToId" in no_dry_run.text
        unknown = await admin.post("/api/v1/task-bulk-actions", json={"action": "delete"})
        assert unknown.status_code == 422
        bad_filter = await admin.post(
            "/api/v1/task-bulk-actions", json={"action": "cancel", "filter": {"where": ["nope"]}}
        )
        assert bad_filter.status_code == 422
        assert (await viewer.get("/api/v1/task-bulk-actions")).status_code == 200
    assert sql_conn.execute("SELECT status FROM tickbase.tasks").fetchall() == [("pending",)]
    assert sql_conn.execute("SELECT count(*) FROM tickbase.task_bulk_actions").fetchone() == (0,)


async def test_a_listing_that_searches_too_long_is_refused_naming_the_fix(
    gw: RunningGateway, sql_conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tickbase.queue import listing

    sql_conn.execute(
        "INSERT INTO tickbase.tasks (task_type, payload)"
        " SELECT 't.add', jsonb_build_object('symbol', 'S' || n) FROM generate_series(1, 50000) n"
    )
    monkeypatch.setattr(listing, "LISTING_TIMEOUT_MS", 1)
    async with gw.http() as http:
        slow = await http.get("/api/v1/tasks", params={"where": "payload.symbol = NOWHERE"})
        assert slow.status_code == 422, slow.text
        assert "add a creation time range" in slow.json()["error"]["message"]
        monkeypatch.setattr(listing, "LISTING_TIMEOUT_MS", 3000)
        fast = await http.get("/api/v1/tasks", params={"where": "payload.symbol = S7"})
        assert [t["payload"] for t in fast.json()["items"]] == [{"symbol": "S7"}]


async def test_a_bulk_retry_blocked_by_a_held_dedupe_key_changes_nothing(
    gw: RunningGateway, sql_conn: psycopg.Connection[Any]
) -> None:
    failed = await enqueue(gw, {"a": 1}, {"a": 2})
    sql_conn.execute(
        "UPDATE tickbase.tasks SET status = 'failed', finished_at = now(), dedupe_key = 'eod'"
        " WHERE id = %s",
        (failed[0],),
    )
    sql_conn.execute(
        "UPDATE tickbase.tasks SET status = 'failed', finished_at = now() WHERE id = %s",
        (failed[1],),
    )
    await gw.app.enqueue_many([EnqueueRequest("t.add", {"a": 3}, dedupe_key="eod")])
    body: dict[str, Any] = {"action": "retry", "filter": {"status": "failed"}}
    async with gw.http() as http:
        dry = (await http.post("/api/v1/task-bulk-actions", json=body)).json()
        run = await http.post(
            "/api/v1/task-bulk-actions", json={**body, "dryRun": False, "upToId": dry["upToId"]}
        )
    assert run.status_code == 422, run.text
    assert "dedupe" in run.text
    assert sql_conn.execute("SELECT count(*) FROM tickbase.tasks").fetchone() == (3,)
    assert sql_conn.execute("SELECT count(*) FROM tickbase.task_bulk_actions").fetchone() == (0,)
