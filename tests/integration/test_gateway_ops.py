"""The reads behind the dashboard's Nodes, Alerts and Limits pages (issue 16):
the leader lease, the alert webhooks (URLs redacted), concurrency keys in use,
and heartbeat ages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from tests.support.gateway import RunningGateway, gateway_test_app, running_gateway
from tickbase.cluster.alerts import AlertStore
from tickbase.cluster.lease import Lease


@pytest.fixture
async def gw(database_url: str) -> AsyncIterator[RunningGateway]:
    app = gateway_test_app(database_url)
    async with app, running_gateway(app, worker=False) as running:
        yield running


async def test_the_leader_lease_with_its_fencing_token(gw: RunningGateway) -> None:
    async with gw.http(gw.viewer) as http:
        assert (await http.get("/api/v1/cluster/leader")).json() == {
            "holder": None,
            "token": None,
            "acquiredAt": None,
            "expiresAt": None,
            "live": False,
        }
        first = Lease(gw.app.pool, holder="node-a", ttl=30)
        assert await first.acquire()
        leader = (await http.get("/api/v1/cluster/leader")).json()
        assert (leader["holder"], leader["token"], leader["live"]) == ("node-a", 1, True)
        await first.release()  # expires it: the next holder's token is one more
        second = Lease(gw.app.pool, holder="node-b", ttl=30)
        assert await second.acquire()
        leader = (await http.get("/api/v1/cluster/leader")).json()
        assert (leader["holder"], leader["token"], leader["live"]) == ("node-b", 2, True)
    async with gw.http("") as anonymous:
        anonymous.headers.pop("Authorization")
        assert (await anonymous.get("/api/v1/cluster/leader")).status_code == 401


async def test_nodes_carry_their_heartbeat_age(
    gw: RunningGateway, sql_conn: psycopg.Connection[Any]
) -> None:
    sql_conn.execute(
        "INSERT INTO tickbase.nodes (node_id, host, pid, roles, version, heartbeat_interval,"
        " heartbeat_at, metrics) VALUES ('n1', 'h1', 1, '{worker}', 'x', 5,"
        " now() - interval '12 seconds', '{\"running_tasks\": 2, \"processed\": 9}')"
    )
    async with gw.http(gw.viewer) as http:
        [node] = (await http.get("/api/v1/nodes")).json()
    assert node["nodeId"] == "n1" and node["roles"] == ["worker"] and node["alive"] is True
    assert 12 <= node["heartbeatAgeSeconds"] < 20
    assert node["metrics"]["runningTasks"] == 2 and node["metrics"]["processed"] == 9


async def test_webhooks_are_listed_without_their_secrets(gw: RunningGateway) -> None:
    store = AlertStore(gw.app.pool)
    async with gw.http(gw.viewer) as http:
        assert (await http.get("/api/v1/alert-webhooks")).json() == []
        await store.add_webhook("https://user:pw@hooks.example/ops?token=s3cret")
        [hook] = (await http.get("/api/v1/alert-webhooks")).json()
    assert hook["url"] == "https://hooks.example/ops" and hook["enabled"] is True
    assert "s3cret" not in str(hook) and "pw" not in hook["url"]
    assert set(hook) == {"id", "url", "enabled", "createdAt"}


def running_keyed(conn: psycopg.Connection[Any], key: str, n: int, limit: int | None) -> None:
    conn.execute(
        "INSERT INTO tickbase.tasks (task_type, status, attempts, started_at, lease_expires_at,"
        " node_id, concurrency_key, concurrency_limit)"
        " SELECT 't.keyed', 'running', 1, now(), now() + interval '1 minute', 'n', %s, %s"
        " FROM generate_series(1, %s)",
        (key, limit, n),
    )


async def test_concurrency_keys_in_use_by_key_with_paging(
    gw: RunningGateway, sql_conn: psycopg.Connection[Any]
) -> None:
    async with gw.http(gw.viewer) as http:
        empty = (await http.get("/api/v1/limits/concurrency-keys")).json()
        assert empty == {"items": [], "nextCursor": None}
        running_keyed(sql_conn, "ESZ5", 2, 3)
        running_keyed(sql_conn, "BTC:1h", 1, None)
        running_keyed(sql_conn, "GOOG", 1, 1)
        # Waiting tasks of a key do not count as in use.
        sql_conn.execute(
            "INSERT INTO tickbase.tasks (task_type, concurrency_key) VALUES ('t.keyed', 'IDLE')"
        )
        page = (await http.get("/api/v1/limits/concurrency-keys", params={"limit": 2})).json()
        assert [(k["key"], k["running"], k["concurrencyLimit"]) for k in page["items"]] == [
            ("BTC:1h", 1, 1),
            ("ESZ5", 2, 3),
        ]
        assert page["items"][0]["taskTypes"] == ["t.keyed"]
        assert page["items"][0]["oldestStartedAt"] is not None
        assert page["nextCursor"] == "ESZ5"
        rest = (
            await http.get("/api/v1/limits/concurrency-keys", params={"limit": 2, "cursor": "ESZ5"})
        ).json()
        assert [k["key"] for k in rest["items"]] == ["GOOG"] and rest["nextCursor"] is None
        bad = await http.get("/api/v1/limits/concurrency-keys", params={"cursor": "a\x00b"})
        assert bad.status_code == 422
