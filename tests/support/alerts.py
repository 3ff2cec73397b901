"""Helpers of the alert tests: a real local webhook receiver and evaluation passes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg

import tickbase
from tickbase.cluster.alerts import AlertChange, evaluate_alerts


@dataclass
class Received:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A real HTTP/1.1 server on 127.0.0.1 that records POSTs.

    ``script`` says how to answer each request in turn: an HTTP status, or
    "hang" (never answer); once it runs out, every request gets 200.
    """

    script: list[int | str] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for handler in list(self._handlers):
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            request_line = (await reader.readline()).decode().strip()
            headers: dict[str, str] = {}
            while (line := (await reader.readline()).decode().strip()) != "":
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            method, target, _ = request_line.split(" ", 2)
            self.requests.append(Received(method, target, headers, body))
            action = self.script.pop(0) if self.script else 200
            if action == "hang":
                await asyncio.Event().wait()
            status = int(action)
            reason = {200: "OK", 500: "Internal Server Error"}.get(status, "Status")
            text = b"ok" if status < 300 else b"boom"
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\ncontent-length: {len(text)}\r\n"
                "connection: close\r\n\r\n".encode()
                + text
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self._handlers.discard(task)


async def evaluate(app: tickbase.App, **kwargs: Any) -> list[AlertChange]:
    async with app.pool.connection() as conn, conn.transaction():
        return await evaluate_alerts(conn, **kwargs)


def fail_tasks(conn: psycopg.Connection[Any], n: int, task_type: str = "t") -> None:
    conn.execute(
        "INSERT INTO tickbase.tasks (task_type, status, attempts, finished_at)"
        " SELECT %s, 'failed', 1, now() FROM generate_series(1, %s)",
        (task_type, n),
    )


def alert_rows(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT rule, subject, state, value FROM tickbase.alerts ORDER BY id"
    ).fetchall()


def deliveries(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    cursor = conn.cursor(row_factory=psycopg.rows.dict_row)
    return cursor.execute("SELECT * FROM tickbase.alert_deliveries ORDER BY id").fetchall()


def events(changes: Iterable[AlertChange]) -> list[tuple[str, str, str]]:
    return [(c.event, c.rule, c.subject) for c in changes]
