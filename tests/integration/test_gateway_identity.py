"""Identity is the token's id: results, connection caps and sessions belong to it, not
to its name; and requests are exact (a requestId fires once, a drop frees its slots)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import psycopg
import pytest
import websockets

from tests.support.gateway import Client, RunningGateway, gateway_test_app, running_gateway
from tests.support.waiting import wait_until
from tickbase.errors import ConfigurationError, InvalidCredentials
from tickbase.gateway.auth import SESSION_MAX_AGE, Principal, SessionSigner, TokenStore
from tickbase.gateway.ws import WsLimits


@pytest.fixture
async def gw(database_url: str) -> AsyncIterator[RunningGateway]:
    app = gateway_test_app(database_url)
    limits = WsLimits(max_in_flight_per_user=20, idle_seconds=30)
    async with app, running_gateway(app, limits=limits) as running:
        yield running


def b64json(text: str) -> Any:
    import base64

    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


# ---- identity ------------------------------------------------------------------


async def test_names_are_unique_labels(gw: RunningGateway) -> None:
    tokens = TokenStore(gw.app.pool)
    first = await tokens.create("admin", name="ops")
    with pytest.raises(ConfigurationError, match="a live token already has it"):
        await tokens.create("viewer", name="ops")
    with pytest.raises(ConfigurationError, match="control characters"):
        await tokens.create("viewer", name="evil\x1b[2J")
    await tokens.revoke(first.id)
    again = await tokens.create("viewer", name="ops")  # a revoked token's name is free
    assert again.id != first.id and [t.name for t in await tokens.list()].count("ops") == 2


async def test_request_results_belong_to_the_token_not_its_name(gw: RunningGateway) -> None:
    tokens = TokenStore(gw.app.pool)
    admin = await tokens.create("admin", name="bootstrap-2")
    async with gw.http(admin.token) as http:
        created = await http.post(
            "/api/v1/tasks",
            json={"taskType": "t.add", "payload": {"a": 40, "b": 2}, "requestId": "secret-1"},
        )
        assert created.status_code == 201

        async def answered() -> bool:
            state = (await http.get("/api/v1/requests/secret-1")).json()
            return bool(state.get("data") == 42)

        await wait_until(answered, timeout=10, message="the admin reads its result")
    await tokens.revoke(admin.id)
    impostor = await tokens.create("viewer", name="bootstrap-2")  # same label, new token
    async with gw.http(impostor.token) as http:
        response = await http.get("/api/v1/requests/secret-1")
    assert response.status_code == 404, response.text


async def test_connection_cap_belongs_to_the_token(gw: RunningGateway) -> None:
    tokens = TokenStore(gw.app.pool)
    first = await tokens.create("viewer", name="wall")
    async with gw.ws(first.token), gw.ws(first.token), gw.ws(first.token) as held:
        await Client(held, gw.frames).request("p", "ping")
        await tokens.revoke(first.id)
        second = await tokens.create("viewer", name="wall")
        # The first token's three connections do not count against the second.
        async with gw.ws(second.token) as ws:
            client = Client(ws, gw.frames)
            await client.request("p2", "ping")
            assert (await client.until_final("p2"))["type"] == "success"


async def test_a_renewed_session_keeps_its_sign_in_time_and_ends(gw: RunningGateway) -> None:
    async with gw.http() as http:
        first = (await http.post("/api/v1/auth/session")).json()
    async with httpx.AsyncClient(base_url=gw.base) as browser:
        renewed = (
            await browser.post("/api/v1/auth/session", params={"session": first["session"]})
        ).json()
    original, again = (b64json(s["session"].split(".")[0]) for s in (first, renewed))
    assert again["ath"] == original["ath"] and again["tid"] == original["tid"]
    assert again["exp"] <= original["ath"] + SESSION_MAX_AGE

    signer = await SessionSigner.load(gw.app.pool)
    now = time.time()
    signed_in_long_ago = Principal("ops", "admin", 1, signed_in_at=now - SESSION_MAX_AGE + 60)
    session = signer.issue(signed_in_long_ago, ttl=3600, now=now)
    # Capped at the sign-in's maximum age, not an hour from now.
    assert b64json(session.split(".")[0])["exp"] == int(now + 60)
    with pytest.raises(InvalidCredentials, match="session expired"):
        signer.verify(session, now=now + 61)


async def test_binary_frame_closes_with_1003(gw: RunningGateway) -> None:
    async with gw.ws() as ws:
        await ws.send(b'{"type": "request"}')
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003
    assert "binary frames are not supported" in closed.value.rcvd.reason


# ---- exactly once ------------------------------------------------------------------


async def test_trigger_with_one_request_id_fires_once_over_both_doors(
    gw: RunningGateway, sql_conn: psycopg.Connection[Any]
) -> None:
    async with gw.http() as http:
        made = await http.post(
            "/api/v1/schedules", json={"name": "by-hand", "taskType": "t.add", "manual": True}
        )
        assert made.status_code == 201, made.text
        answers = [
            await http.post("/api/v1/schedules/by-hand/trigger", json={"requestId": "fire-1"})
            for _ in range(3)
        ]
        assert {a.status_code for a in answers} == {200}
        assert len({a.json()["fireAt"] for a in answers}) == 1
        async with gw.ws() as ws:
            client = Client(ws, gw.frames)
            frames = []
            for n in range(3):
                await client.request("fire-1", "schedules.trigger", name="by-hand")
                frames.append(await client.until_final("fire-1"))
                del n
        fire_at = {datetime.fromisoformat(f["data"]["fireAt"]) for f in frames}
        assert fire_at == {datetime.fromisoformat(answers[0].json()["fireAt"])}
        # A requestId already used for another action is refused, nothing fired.
        await http.post("/api/v1/tasks", json={"taskType": "t.add", "requestId": "sub-1"})
        clash = await http.post("/api/v1/schedules/by-hand/trigger", json={"requestId": "sub-1"})
        assert clash.status_code == 409
        # Concurrent repeats fire once too.
        burst = await asyncio.gather(
            *(
                http.post("/api/v1/schedules/by-hand/trigger", json={"requestId": "fire-2"})
                for _ in range(10)
            )
        )
        assert {b.status_code for b in burst} == {200}
        without_id = await http.post("/api/v1/schedules/by-hand/trigger")
        assert without_id.status_code == 200
    fired = sql_conn.execute(
        "SELECT count(*) FROM tickbase.tasks t JOIN tickbase.schedules s ON s.id = t.schedule_id"
        " WHERE s.name = 'by-hand'"
    ).fetchone()
    assert fired == (3,)  # fire-1 once, fire-2 once, the one without an id


async def test_dropped_connections_release_their_in_flight_slots_once(
    gw: RunningGateway,
) -> None:
    for round_ in range(5):
        ws = await gw.ws()
        client = Client(ws, gw.frames)
        for n in range(15):
            await client.request(
                f"d{round_}-{n}", "tasks.submit", taskType="t.sleep", payload={"seconds": 0.3}
            )
        acks = [await client.next() for _ in range(15)]
        assert {a["type"] for a in acks} == {"ack"}
        ws.transport.abort()  # gone mid-request, no close handshake

        async def released() -> bool:
            return gw.limits.in_flight == {}

        await wait_until(released, timeout=10, message="the dropped connection's slots released")

    await asyncio.sleep(0.5)  # the tasks of the last round end: nothing counted twice
    assert gw.limits.in_flight == {}
    # The cap still holds: 20 in flight, the 21st refused.
    async with gw.ws() as ws:
        client = Client(ws, gw.frames)
        for n in range(21):
            await client.request(
                f"c{n}", "tasks.submit", taskType="t.sleep", payload={"seconds": 1}
            )
        frames = [await client.next() for _ in range(21)]
        assert [f["type"] for f in frames[:20]] == ["ack"] * 20
        assert frames[20]["error"]["code"] == "RATE_LIMITED"
        await client.finals({f"c{n}" for n in range(20)})
    assert gw.limits.in_flight == {}


async def test_submit_under_backend_kills_never_500s_or_doubles(
    gw: RunningGateway, sql_conn: psycopg.Connection[Any]
) -> None:
    """Every answer is the task (201) or 503 with Retry-After; no task exists that a
    client was not told about, so a retry after a 503 creates no duplicate."""
    stop = threading.Event()
    dsn = sql_conn.info.dsn

    def kill_gateway_backends() -> None:
        # Backends caught running a statement: the kills land mid-request.
        deadline = time.monotonic() + 3.0
        with psycopg.connect(dsn, autocommit=True, password=sql_conn.info.password) as killer:
            while time.monotonic() < deadline:
                killer.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND application_name LIKE 'tickbase:%%' AND state = 'active'"
                )
        stop.set()

    statuses: list[int] = []

    async def client(http: httpx.AsyncClient, lane: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            response = await http.post(
                "/api/v1/tasks", json={"taskType": "t.add", "payload": {"a": lane, "b": n}}
            )
            statuses.append(response.status_code)
            if response.status_code != 201:
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"] == "1"
                assert response.json()["error"]["code"] == "UNAVAILABLE"

    killer = threading.Thread(target=kill_gateway_backends, daemon=True)
    killer.start()
    try:
        async with httpx.AsyncClient(base_url=gw.base, headers=gw.headers(), timeout=60) as http:
            await asyncio.gather(*(client(http, lane) for lane in range(8)))
    finally:
        stop.set()
        killer.join(10)
    assert 503 in statuses, "the killer never hit a request: the test proves nothing"
    stored = sql_conn.execute(
        "SELECT count(*) FROM tickbase.tasks WHERE task_type = 't.add'"
    ).fetchone()
    assert stored == (statuses.count(201),)


async def test_revoking_a_token_closes_its_open_connections(
    gw: RunningGateway, sql_conn: psycopg.Connection[Any]
) -> None:
    tokens = TokenStore(gw.app.pool)
    doomed = await tokens.create("viewer", name="doomed")
    other = await tokens.create("viewer", name="other")
    async with gw.ws(doomed.token) as ws, gw.ws(other.token) as kept:
        await tokens.revoke(doomed.id)  # NOTIFY: closed at once
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(3):
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
        assert "revoked" in closed.value.rcvd.reason
        await kept.send(json.dumps({"type": "request", "requestId": "p", "action": "ping"}))
        assert json.loads(await kept.recv())["type"] == "ack"  # others stay open
    # A revocation whose NOTIFY never reached this gateway (written by SQL
    # here) is caught by the gateway's periodic check.
    quiet = await tokens.create("viewer", name="quiet")
    async with gw.ws(quiet.token) as ws:
        sql_conn.execute(
            "UPDATE tickbase.api_tokens SET revoked_at = now() WHERE id = %s", (quiet.id,)
        )
        with pytest.raises(websockets.ConnectionClosed) as closed:
            async with asyncio.timeout(10):
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
