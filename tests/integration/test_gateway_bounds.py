"""The gateway bounds every request before it costs anything (real uvicorn, raw sockets).

Authentication comes before the body is read, bodies and headers have size
and time limits, connections are capped below the descriptor limit, and the
method list of a path is complete.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest

import tickbase
from tests.support.gateway import RunningGateway, gateway_test_app, running_gateway
from tests.support.waiting import wait_until
from tickbase.errors import PayloadTooLarge
from tickbase.gateway.server import ServerLimits
from tickbase.queue.models import PAYLOAD_MAX_BYTES

LIMITS = ServerLimits(
    max_connections=40,
    header_timeout=0.5,
    max_header_bytes=4096,
    max_body_bytes=64 * 1024,
    body_timeout=0.5,
)


@pytest.fixture
async def gw(database_url: str) -> AsyncIterator[RunningGateway]:
    app = gateway_test_app(database_url)
    async with app, running_gateway(app, server_limits=LIMITS) as running:
        yield running


async def raw(port: int, data: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    return reader, writer


async def read_response(reader: asyncio.StreamReader, timeout: float = 5) -> tuple[int, str]:
    """The status and the whole text the server sent before closing."""
    async with asyncio.timeout(timeout):
        text = (await reader.read(65536)).decode(errors="replace")
    status = int(text.split(" ", 2)[1]) if text.startswith("HTTP/1.1 ") else 0
    return status, text


def post_head(path: str, length: int, token: str | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def test_unauthenticated_body_is_refused_before_it_is_sent(gw: RunningGateway) -> None:
    # 100 MB announced, none sent: the answer comes at once (the body would
    # be read and parsed first otherwise, and this client sends none).
    reader, writer = await raw(gw.port, post_head("/api/v1/tasks", 100_000_000))
    status, text = await read_response(reader, timeout=3)
    writer.close()
    assert status == 401, text
    assert '"code":"UNAUTHORIZED"' in text and "connection: close" in text.lower()


async def parts(*chunks: bytes) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def test_oversized_body_gets_413_unread_and_chunked_ones_too(
    gw: RunningGateway, sql_conn: psycopg.Connection[Any]
) -> None:
    reader, writer = await raw(gw.port, post_head("/api/v1/tasks", 10_000_000, gw.admin))
    status, text = await read_response(reader, timeout=3)
    writer.close()
    assert status == 413 and '"code":"BODY_TOO_LARGE"' in text and "65536 bytes" in text

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"taskType": "t.add", "payload": {"a": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}}'

    async with gw.http() as http:
        chunked = await http.post(
            "/api/v1/tasks", content=chunks(), headers={"content-type": "application/json"}
        )
        assert chunked.status_code == 413, chunked.text
        assert chunked.json()["error"]["details"] == {"maxBodyBytes": 65536}
        # Within the limit, a chunked body is read and parsed as usual.
        small = await http.post(
            "/api/v1/tasks",
            content=parts(b'{"taskType": "t.add", ', b'"payload": {"a": 1, "b": 2}}'),
            headers={"content-type": "application/json"},
        )
        assert small.status_code == 201, small.text
    assert sql_conn.execute("SELECT count(*) FROM tickbase.tasks").fetchone() == (1,)


async def test_large_unauthenticated_bodies_are_answered_not_reset(gw: RunningGateway) -> None:
    # The client sends all 20 MB before it reads: the server answers at the
    # headers, half-closes, and discards the rest, so the client reads a 401
    # instead of a connection reset.
    body = b"x" * 20_000_000
    async with httpx.AsyncClient(base_url=gw.base, timeout=10) as anonymous:
        for _ in range(3):
            response = await anonymous.post("/api/v1/tasks", content=body)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "UNAUTHORIZED"
        assert (await anonymous.get("/healthz")).status_code == 200


async def test_slow_body_gets_408(gw: RunningGateway) -> None:
    reader, writer = await raw(gw.port, post_head("/api/v1/tasks", 100, gw.admin) + b'{"task')
    status, text = await read_response(reader, timeout=3)
    writer.close()
    assert status == 408 and "request body not received within 0.5 s" in text


async def test_half_sent_requests_are_closed_within_the_header_timeout(
    gw: RunningGateway,
) -> None:
    silent = [await raw(gw.port, b"") for _ in range(10)]
    partial = [await raw(gw.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n") for _ in range(10)]
    answers = await asyncio.gather(*(read_response(r, timeout=3) for r, _ in silent + partial))
    assert {status for status, _ in answers} == {408}, answers[0]
    for _, writer in silent + partial:
        writer.close()
    # A keep-alive connection that starts a second request and stalls is closed too.
    reader, writer = await raw(gw.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    first = (await reader.readuntil(b'"details":{}}')).decode()
    assert first.startswith("HTTP/1.1 200")
    writer.write(b"GET /healthz HTTP/1.1\r\n")
    status, _ = await read_response(reader, timeout=3)
    writer.close()
    assert status == 408


async def test_headers_over_the_limit_get_431(gw: RunningGateway) -> None:
    reader, writer = await raw(
        gw.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8192 + b"\r\n\r\n"
    )
    status, text = await read_response(reader)
    writer.close()
    assert status == 431 and "HEADERS_TOO_LARGE" in text


async def test_connections_beyond_the_cap_are_refused_and_the_rest_served(
    gw: RunningGateway,
) -> None:
    held = [await raw(gw.port, b"") for _ in range(LIMITS.max_connections)]

    async def refused() -> bool:
        reader, writer = await raw(gw.port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, _ = await read_response(reader)
        writer.close()
        return status == 503

    assert await refused()
    for _, writer in held:
        writer.close()
    async with httpx.AsyncClient(base_url=gw.base, timeout=5) as client:

        async def served() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return (await client.get("/healthz")).status_code == 200
            return False

        await wait_until(served, timeout=5, message="served again once connections closed")


async def test_options_and_405_list_every_method_of_the_path(gw: RunningGateway) -> None:
    async with gw.http() as http:
        options = await http.options("/api/v1/schedules/some-name")
        assert options.status_code == 204
        assert options.headers["allow"] == "DELETE, GET, OPTIONS, PATCH"
        put = await http.put("/api/v1/schedules/some-name", json={})
        assert put.status_code == 405
        assert put.headers["allow"] == "DELETE, GET, OPTIONS, PATCH"
        assert put.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
        assert (await http.options("/api/v1/tasks")).headers["allow"] == "GET, OPTIONS, POST"
        assert (await http.options("/api/v1/nowhere")).status_code == 404
    async with httpx.AsyncClient(base_url=gw.base) as anonymous:
        assert (await anonymous.options("/api/v1/tasks")).status_code == 401


async def test_payload_limit_is_its_own_and_named(
    gw: RunningGateway, database_url: str, sql_conn: psycopg.Connection[Any]
) -> None:
    big = {"blob": "x" * (PAYLOAD_MAX_BYTES + 1)}
    with pytest.raises(PayloadTooLarge, match=r"over the 524288-byte limit on payloads"):
        tickbase.EnqueueRequest("t.add", big)
    with pytest.raises(PayloadTooLarge):
        await gw.app.defer("t.add", big)
    # Over HTTP the body limit comes first; with room for the payload, the
    # payload's own limit answers 413 and names it.
    app = gateway_test_app(database_url)
    roomy = ServerLimits(max_body_bytes=2 * PAYLOAD_MAX_BYTES)
    async with (
        app,
        running_gateway(app, server_limits=roomy, worker=False) as wide,
        wide.http() as http,
    ):
        response = await http.post("/api/v1/tasks", json={"taskType": "t.add", "payload": big})
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert "PAYLOAD_MAX_BYTES" in response.json()["error"]["message"]
    assert sql_conn.execute("SELECT count(*) FROM tickbase.tasks").fetchone() == (0,)


async def test_metrics_need_a_token_and_scrapes_share_one_connection(
    gw: RunningGateway, sql_conn: psycopg.Connection[Any]
) -> None:
    async with httpx.AsyncClient(base_url=gw.base) as anonymous:
        assert (await anonymous.get("/metrics")).status_code == 401
    async with gw.http(gw.viewer) as http:
        scrapes = await asyncio.gather(*(http.get("/metrics") for _ in range(30)))
        assert {s.status_code for s in scrapes} == {200}
        assert len({s.text for s in scrapes}) == 1  # one read served them all
        assert "tickbase_tasks" in scrapes[0].text
        first = sql_conn.execute(
            "SELECT array_agg(pid) FROM pg_stat_activity WHERE application_name LIKE"
            " 'tickbase-figures:%' AND datname = current_database()"
        ).fetchone()
        await asyncio.sleep(1.1)  # past the cache's age: the next scrape reads again
        await asyncio.gather(*(http.get("/metrics") for _ in range(10)))
        assert (await http.get("/api/v1/stats")).status_code == 200
        again = sql_conn.execute(
            "SELECT array_agg(pid) FROM pg_stat_activity WHERE application_name LIKE"
            " 'tickbase-figures:%' AND datname = current_database()"
        ).fetchone()
    assert first is not None and first[0] is not None and len(first[0]) == 1
    assert again == first  # the same one connection, kept
