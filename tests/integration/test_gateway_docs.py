"""The API documents itself offline: /docs and /redoc load only local assets,
and the OpenAPI document covers every route and every submit option."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.gateway import Client, RunningGateway, gateway_test_app, running_gateway


@pytest.fixture
async def gw(database_url: str) -> AsyncIterator[RunningGateway]:
    app = gateway_test_app(database_url)
    async with app, running_gateway(app) as running:
        yield running


def _asset_urls(html: str) -> list[str]:
    return re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_only_local_assets(gw: RunningGateway, page: str) -> None:
    async with httpx.AsyncClient(base_url=gw.base, timeout=10) as anonymous:
        response = await anonymous.get(page)
        assert response.status_code == 200, response.text
        urls = _asset_urls(response.text)
        assets = [u for u in urls if u.endswith((".js", ".css", ".png"))]
        assert assets, response.text
        for url in urls:
            assert url.startswith("/"), f"{page} loads {url} from elsewhere"
        assert "cdn" not in response.text.lower()
        for url in assets:
            asset = await anonymous.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 1000, url
        assert (await anonymous.get("/docs-assets/nothing.js")).status_code == 404
        traversal = await anonymous.get("/docs-assets/../api/v1/tasks")
        assert traversal.status_code in (401, 404)


async def test_openapi_lists_tokens_limits_and_alert_rules(gw: RunningGateway) -> None:
    async with gw.http() as http:
        spec = (await http.get("/openapi.json")).json()
        paths = spec["paths"]
        assert {"get", "post"} <= set(paths["/api/v1/tokens"])
        assert "delete" in paths["/api/v1/tokens/{token_id}"]
        assert "get" in paths["/api/v1/limits"]
        assert {"put", "delete"} <= set(paths["/api/v1/limits/queues/{queue}"])
        assert "get" in paths["/api/v1/alert-rules"]
        assert "patch" in paths["/api/v1/alert-rules/{name}"]

        created = await http.post("/api/v1/tokens", json={"role": "viewer", "name": "docs-v"})
        assert created.status_code == 201, created.text
        token = created.json()
        assert {"id", "name", "role", "prefix", "token"} == set(token)
        listed = (await http.get("/api/v1/tokens")).json()
        assert token["id"] in [t["id"] for t in listed]
        assert "token" not in listed[0] and "createdAt" in listed[0]
        viewer = gw.http(token["token"])
        async with viewer:
            assert (await viewer.get("/api/v1/tokens")).status_code == 403
            assert (await viewer.get("/api/v1/limits")).status_code == 200
        assert (await http.delete(f"/api/v1/tokens/{token['id']}")).status_code == 204
        assert (await http.delete(f"/api/v1/tokens/{token['id']}")).status_code == 404

        limited = await http.put("/api/v1/limits/queues/q1", json={"concurrency": 2})
        assert limited.status_code == 200, limited.text
        assert limited.json()["queues"][0] | {"updatedAt": None} == {
            "queue": "q1",
            "concurrency": 2,
            "running": 0,
            "updatedAt": None,
        }
        assert "taskTypes" in limited.json()
        assert (await http.delete("/api/v1/limits/queues/q1")).status_code == 204
        assert (await http.delete("/api/v1/limits/queues/q1")).status_code == 404

        rules = (await http.get("/api/v1/alert-rules")).json()
        assert rules and {"name", "kind", "threshold", "forSeconds", "enabled"} <= set(rules[0])
        name = rules[0]["name"]
        changed = await http.patch(f"/api/v1/alert-rules/{name}", json={"enabled": False})
        assert changed.status_code == 200, changed.text
        assert changed.json()["enabled"] is False
        unknown = await http.patch("/api/v1/alert-rules/nope", json={"enabled": False})
        assert unknown.status_code == 422


async def test_openapi_and_submit_carry_every_enqueue_option(gw: RunningGateway) -> None:
    async with gw.http() as http:
        spec = (await http.get("/openapi.json")).json()
        fields = set(spec["components"]["schemas"]["TaskSubmit"]["properties"])
        assert {"runAt", "dedupeKey", "maxAttempts", "timeout", "retryDelay"} <= fields

        created = await http.post(
            "/api/v1/tasks",
            json={
                "taskType": "t.add",
                "payload": {"a": 1, "b": 2},
                "runAt": "2099-01-01T00:00:00Z",
                "dedupeKey": "k-1",
                "maxAttempts": 4,
                "timeout": 7.5,
                "retryDelay": 2.0,
            },
        )
        assert created.status_code == 201, created.text
        task = created.json()
        assert task["runAt"].startswith("2099-01-01T00:00:00")
        assert (task["dedupeKey"], task["maxAttempts"], task["timeout"], task["retryDelay"]) == (
            "k-1",
            4,
            7.5,
            2.0,
        )
        held = await http.post(
            "/api/v1/tasks", json={"taskType": "t.add", "payload": {}, "dedupeKey": "k-1"}
        )
        assert held.status_code == 200 and held.json()["id"] == task["id"]
        both = await http.post(
            "/api/v1/tasks",
            json={"taskType": "t.add", "runAt": "2099-01-01T00:00:00Z", "delaySeconds": 1},
        )
        assert both.status_code == 422
        naive = await http.post(
            "/api/v1/tasks", json={"taskType": "t.add", "runAt": "2099-01-01T00:00:00"}
        )
        assert naive.status_code == 422


async def test_request_id_reused_with_another_body_is_a_conflict(gw: RunningGateway) -> None:
    body = {"taskType": "t.add", "payload": {"a": 1, "b": 2}, "requestId": "same-id"}
    async with gw.http() as http:
        first = await http.post("/api/v1/tasks", json=body)
        assert first.status_code == 201, first.text
        again = await http.post("/api/v1/tasks", json=dict(reversed(list(body.items()))))
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
        explicit = await http.post("/api/v1/tasks", json={**body, "maxAttempts": 1, "queue": None})
        assert explicit.status_code == 200 and explicit.json()["id"] == first.json()["id"]
        more = await http.post("/api/v1/tasks", json={**body, "maxAttempts": 3})
        assert more.status_code == 409, more.text
        other = await http.post("/api/v1/tasks", json={**body, "payload": {"a": 9, "b": 9}})
        assert other.status_code == 409, other.text
        error = other.json()["error"]
        assert error["code"] == "CONFLICT"
        assert "requestId 'same-id' was used for a different request" in error["message"]

    async with gw.ws() as ws:
        client = Client(ws, [])
        await client.request("same-id", "tasks.submit", taskType="t.add", payload={"a": 5})
        frame = await client.until_final("same-id")
        assert frame["type"] == "error" and frame["error"]["code"] == "CONFLICT", frame
