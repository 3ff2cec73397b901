"""``tickbase bench gateway``: WebSocket latency and idle-connection capacity of one gateway.

Set-up
    A fresh migrated database on the resolved server (dropped afterwards), its API tokens
    created directly with :class:`~tickbase.gateway.auth.TokenStore`, and ONE
    ``python -m tickbase node --roles api,worker -c 100`` subprocess (``DATABASE_URL`` in
    its environment, never on its command line) on a free port of 127.0.0.1: the gateway
    and a worker in one process, as ``tickbase up`` runs them. The benchmark waits for
    ``/healthz`` and then runs warm-up requests (discarded) so the worker, the pool and
    the LISTEN connection are up before anything is timed.

Workloads (clients are this process, ``websockets`` on the running event loop)
    1. sequential: one admin connection sends ``requests`` ``tasks.submit`` requests of
       ``tickbase.noop``, one at a time. Per request, on :func:`time.perf_counter`: send
       -> ``ack`` frame, and send -> ``success`` frame (the task written, claimed by the
       worker, run, and its NOTIFY turned into the final frame) -> ``ack_p50_ms``,
       ``ack_p99_ms``, ``roundtrip_p50_ms``, ``roundtrip_p99_ms``.
    2. loaded: ``requests`` more over :data:`LOADED_CONNECTIONS` connections with
       :data:`LOADED_IN_FLIGHT` requests in flight in all (below the per-user in-flight
       limit) -> ``loaded_*`` latencies and ``loaded_requests_per_s``.
    3. idle: ``connections`` WebSocket connections, three per viewer token (the
       gateway's per-user limit), opened in batches and then left silent for
       :data:`IDLE_SETTLE_S`; the gateway process's RSS is read with psutil before and
       after. Then every connection must answer a ``ping`` request (ack and success):
       ``idle_connections`` counts those that did. With the idle connections still open,
       a short sequential run measures ``idle_load_roundtrip_p50_ms`` / ``_p99_ms``
       (does holding them slow the live requests down?).

Clients offer permessage-deflate, as browsers do, so the server's compression state
per connection is part of the RSS figure. Percentiles are nearest-rank
(:func:`~tickbase.bench.harness.percentile`).

Targets (from the issue): ack p99 <= 5 ms, no-op round trip p50 <= 15 ms, at least
5,000 idle connections under 1 GiB RSS. Like every benchmark here, this one prints the
figures and whether each target was met, and never fails on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.protocol import State

from tickbase.bench.gateway_process import (
    GatewayProcess,
    fd_limit_of,
    free_port,
    gateway_process,
    raise_fd_limit,
)
from tickbase.bench.harness import (
    BenchError,
    _deadline,
    migrated_database,
    percentile,
    print_figures,
)
from tickbase.bench.render import results_json
from tickbase.db.pool import create_pool, resolve_database_url
from tickbase.gateway.auth import TokenStore
from tickbase.settings import load_settings

SUBJECT = "tickbase"
TASK_TYPE = "tickbase.noop"

TARGET_ACK_P99_MS = 5.0
TARGET_ROUNDTRIP_P50_MS = 15.0
TARGET_IDLE_CONNECTIONS = 5_000
TARGET_RSS_MIB = 1024.0

# The gateway's default per-user connection limit (WsLimits.max_connections_per_user):
# the idle connections share one viewer token per this many connections.
CONNECTIONS_PER_USER = 3
WORKER_CONCURRENCY = 100
# Discarded requests before each timed run: the first ones pay for the worker's start,
# the pool's growth and the first LISTEN round.
WARMUP_REQUESTS = 20
# Three admin connections (the per-user limit) with ten requests each in flight: a
# busy client, well below the per-user in-flight limit of 100.
LOADED_CONNECTIONS = 3
LOADED_IN_FLIGHT = 30
# Sequential round trips measured while the idle connections are held.
IDLE_LOAD_REQUESTS = 200
# Connection attempts in flight at once: far below uvicorn's accept backlog (2048), and
# enough to keep the gateway's authentication queries (its pool holds 10) busy.
OPEN_CONCURRENCY = 100
# Token inserts in flight at once, over a pool of this many connections.
TOKEN_CONCURRENCY = 8
# How long the idle connections stay silent before the RSS is read: the per-connection
# work of the handshake is over and the allocator has settled.
IDLE_SETTLE_S = 5.0
# File descriptors the gateway needs besides its WebSocket connections (pool, listener,
# logs, the embedded libraries).
SPARE_FDS = 200
REQUEST_TIMEOUT_S = 30.0
OPEN_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 5.0

FIGURES: tuple[str, ...] = (
    "requests",
    "ack_p50_ms",
    "ack_p99_ms",
    "roundtrip_p50_ms",
    "roundtrip_p99_ms",
    "loaded_in_flight",
    "loaded_ack_p50_ms",
    "loaded_ack_p99_ms",
    "loaded_roundtrip_p50_ms",
    "loaded_roundtrip_p99_ms",
    "loaded_requests_per_s",
    "connections",
    "idle_connections",
    "idle_open_failures",
    "idle_open_seconds",
    "rss_before_idle_mib",
    "rss_mib",
    "rss_per_connection_kib",
    "gateway_idle_cpu_percent",
    "gateway_fd_limit",
    "idle_load_roundtrip_p50_ms",
    "idle_load_roundtrip_p99_ms",
    "target_ack_p99_ms",
    "target_roundtrip_p50_ms",
    "target_idle_connections",
    "target_rss_mib",
    "ack_p99_met",
    "roundtrip_p50_met",
    "idle_connections_met",
)

LABELS: dict[str, str] = {
    "requests": "requests per timed run",
    "ack_p50_ms": "ack p50 (ms)",
    "ack_p99_ms": f"ack p99 (ms, target <= {TARGET_ACK_P99_MS:g})",
    "roundtrip_p50_ms": f"no-op round trip p50 (ms, target <= {TARGET_ROUNDTRIP_P50_MS:g})",
    "roundtrip_p99_ms": "no-op round trip p99 (ms)",
    "loaded_in_flight": "loaded: requests in flight",
    "loaded_ack_p50_ms": "loaded: ack p50 (ms)",
    "loaded_ack_p99_ms": "loaded: ack p99 (ms)",
    "loaded_roundtrip_p50_ms": "loaded: round trip p50 (ms)",
    "loaded_roundtrip_p99_ms": "loaded: round trip p99 (ms)",
    "loaded_requests_per_s": "loaded: requests per second",
    "connections": "idle connections asked",
    "idle_connections": f"idle connections held (target >= {TARGET_IDLE_CONNECTIONS:,})",
    "idle_open_failures": "idle connections that failed to open",
    "idle_open_seconds": "time to open them (s)",
    "rss_before_idle_mib": "gateway RSS before (MiB)",
    "rss_mib": f"gateway RSS with them (MiB, target < {TARGET_RSS_MIB:g})",
    "rss_per_connection_kib": "RSS per idle connection (KiB)",
    "gateway_idle_cpu_percent": "gateway CPU while they idle (% of a core)",
    "gateway_fd_limit": "gateway fd limit",
    "idle_load_roundtrip_p50_ms": "round trip p50 with them open (ms)",
    "idle_load_roundtrip_p99_ms": "round trip p99 with them open (ms)",
}

# The figures that only restate the targets or say whether they were met: JSON only,
# the table shows them as verdict lines under it.
_TARGET_FIGURES = frozenset(FIGURES) - frozenset(LABELS)


async def run_gateway_command(
    *,
    database_url: str | None,
    as_json: bool,
    connections: int = 5000,
    requests: int = 2000,
) -> dict[str, float]:
    """Run the gateway benchmark and print it (a Rich table, or one JSON line).

    Returns the figures of :data:`FIGURES` (booleans as 1.0 / 0.0).
    """
    if connections < 1:
        raise ValueError(f"connections must be >= 1, got {connections}")
    if requests < 1:
        raise ValueError(f"requests must be >= 1, got {requests}")
    settings = load_settings(database_url=database_url)
    server_dsn, _ = await asyncio.to_thread(resolve_database_url, settings, start=False)

    def progress(line: str) -> None:
        if not as_json:
            print(line, file=sys.stderr, flush=True)

    figures = await run_gateway_bench(server_dsn, connections, requests, progress=progress)
    if as_json:
        print(results_json({SUBJECT: figures}), flush=True)
    else:
        _print_table(figures)
    return figures


async def run_gateway_bench(
    server_dsn: str,
    connections: int,
    requests: int,
    progress: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Measure one gateway process; ``server_dsn`` must let its role run ``CREATE DATABASE``."""
    report = progress if progress is not None else _ignore
    fd_limit = raise_fd_limit()
    if fd_limit < connections + SPARE_FDS:
        report(
            f"warning: the file descriptor limit is {fd_limit:,}: "
            f"{connections:,} connections may not all open"
        )
    figures: dict[str, float] = {"requests": float(requests), "connections": float(connections)}
    with tempfile.TemporaryDirectory(prefix="tickbase-bench-gateway-") as tmp:
        log_path = Path(tmp) / "gateway.log"
        async with migrated_database(server_dsn, "gateway") as dsn:
            report(f"creating tokens (3 admin, {math.ceil(connections / 3):,} viewer) ...")
            admins, viewers = await _create_tokens(dsn, connections)
            port = free_port()
            report(f"starting the gateway (node --roles api,worker) on 127.0.0.1:{port} ...")
            async with gateway_process(dsn, port, log_path, WORKER_CONCURRENCY) as gateway:
                url = f"ws://127.0.0.1:{port}/ws"
                figures["gateway_fd_limit"] = float(fd_limit_of(gateway.pid))

                report(f"sequential: {requests:,} tasks.submit of {TASK_TYPE} ...")
                figures.update(await _sequential(url, admins[0], requests, gateway, "seq"))

                report(f"loaded: {requests:,} requests, {LOADED_IN_FLIGHT} in flight ...")
                figures.update(await _loaded(url, admins[1], requests, gateway))

                report(f"idle: opening {connections:,} connections ...")
                figures.update(await _idle(url, viewers, connections, admins[2], gateway, report))
            figures.update(_verdicts(figures))
    return {key: figures[key] for key in FIGURES}


# ---- set-up ------------------------------------------------------------------------


async def _create_tokens(dsn: str, connections: int) -> tuple[list[str], list[str]]:
    """Three admin tokens (one per timed run) and one viewer token per three idle connections."""
    count = math.ceil(connections / CONNECTIONS_PER_USER)
    gate = asyncio.Semaphore(TOKEN_CONCURRENCY)
    async with create_pool(
        dsn, min_size=1, max_size=TOKEN_CONCURRENCY, name="bench-gateway"
    ) as pool:
        store = TokenStore(pool)

        async def create(role: str, name: str) -> str:
            async with gate:
                return (await store.create(role, name=name)).token

        admins = await asyncio.gather(
            *(create("admin", f"bench-admin-{run}") for run in ("seq", "loaded", "idle"))
        )
        viewers = await asyncio.gather(
            *(create("viewer", f"bench-idle-{index:05d}") for index in range(count))
        )
    return list(admins), list(viewers)


# ---- clients -----------------------------------------------------------------------


async def _open(url: str, token: str) -> ClientConnection:
    """One WebSocket connection as a browser would open it (deflate offered)."""
    return await connect(
        url,
        additional_headers={"Authorization": f"Bearer {token}"},
        # No client pings: idle means silent (the server's own keepalive still runs).
        ping_interval=None,
        # The loopback gateway is reached directly, whatever proxy the environment names.
        proxy=None,
        open_timeout=OPEN_TIMEOUT_S,
        close_timeout=CLOSE_TIMEOUT_S,
    )


@dataclass
class _Pending:
    """One request in flight: when it was sent, acknowledged and answered."""

    sent_at: float
    done: asyncio.Future[Any]
    ack_at: float | None = None
    done_at: float | None = None


@dataclass
class _Client:
    """A connection whose reader task stamps each frame on arrival and matches its request.

    Stamping in the reader (not where the request is awaited) keeps the client's own
    scheduling delays out of the figures as far as one event loop allows.
    """

    ws: ClientConnection
    pending: dict[str, _Pending] = field(default_factory=dict)
    reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, url: str, token: str) -> _Client:
        client = cls(await _open(url, token))
        client.reader = asyncio.create_task(client._read())
        return client

    async def request(
        self, request_id: str, action: str, params: dict[str, Any]
    ) -> tuple[float, float]:
        """Send one request; return (send -> ack, send -> success) in seconds."""
        text = orjson.dumps(
            {"type": "request", "requestId": request_id, "action": action, "params": params}
        ).decode()
        pending = _Pending(sent_at=0.0, done=asyncio.get_running_loop().create_future())
        self.pending[request_id] = pending
        try:
            pending.sent_at = time.perf_counter()
            await self.ws.send(text)
            async with _deadline(REQUEST_TIMEOUT_S, f"the answer to request {request_id}"):
                await pending.done
        finally:
            self.pending.pop(request_id, None)
        if pending.ack_at is None or pending.done_at is None:
            raise BenchError(f"request {request_id}: a final frame came without an ack")
        return pending.ack_at - pending.sent_at, pending.done_at - pending.sent_at

    async def close(self) -> None:
        await self.ws.close()
        if self.reader is not None:
            await self.reader

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                now = time.perf_counter()
                frame = orjson.loads(message)
                pending = self.pending.get(frame.get("requestId", ""))
                if pending is None or pending.done.done():
                    continue
                kind = frame.get("type")
                if kind == "ack":
                    pending.ack_at = now
                elif kind == "success":
                    pending.done_at = now
                    pending.done.set_result(frame.get("data"))
                elif kind == "error":
                    pending.done.set_exception(BenchError(f"error frame: {frame.get('error')}"))
        except ConnectionClosed:
            pass
        # Whatever is still waiting will never be answered on this connection.
        reason = f"connection closed ({self.ws.close_code}: {self.ws.close_reason})"
        for pending in self.pending.values():
            if not pending.done.done():
                pending.done.set_exception(BenchError(reason))


def _submit_params() -> dict[str, Any]:
    return {"taskType": TASK_TYPE}


# ---- workloads ---------------------------------------------------------------------


async def _round_trips(
    client: _Client, prefix: str, count: int, gateway: GatewayProcess
) -> tuple[list[float], list[float]]:
    """``count`` sequential no-op submissions; (acks, round trips) in milliseconds."""
    acks: list[float] = []
    trips: list[float] = []
    for index in range(count):
        gateway.check_alive()
        ack, trip = await client.request(f"{prefix}-{index}", "tasks.submit", _submit_params())
        acks.append(ack * 1000.0)
        trips.append(trip * 1000.0)
    return acks, trips


async def _sequential(
    url: str, token: str, requests: int, gateway: GatewayProcess, prefix: str
) -> dict[str, float]:
    client = await _Client.open(url, token)
    try:
        await _round_trips(client, f"{prefix}-warm", WARMUP_REQUESTS, gateway)
        acks, trips = await _round_trips(client, prefix, requests, gateway)
    finally:
        await client.close()
    return {
        "ack_p50_ms": percentile(acks, 50),
        "ack_p99_ms": percentile(acks, 99),
        "roundtrip_p50_ms": percentile(trips, 50),
        "roundtrip_p99_ms": percentile(trips, 99),
    }


async def _loaded(url: str, token: str, requests: int, gateway: GatewayProcess) -> dict[str, float]:
    clients = [await _Client.open(url, token) for _ in range(LOADED_CONNECTIONS)]
    acks: list[float] = []
    trips: list[float] = []
    numbers = itertools.count()

    async def lane(client: _Client, prefix: str) -> None:
        # Each lane keeps one request in flight; lanes share the total by a counter.
        while (index := next(numbers)) < requests:
            ack, trip = await client.request(f"{prefix}-{index}", "tasks.submit", _submit_params())
            acks.append(ack * 1000.0)
            trips.append(trip * 1000.0)

    lanes_per_client = LOADED_IN_FLIGHT // LOADED_CONNECTIONS
    try:
        for number, client in enumerate(clients):
            await _round_trips(client, f"load-warm-{number}", WARMUP_REQUESTS, gateway)
        started = time.perf_counter()
        await asyncio.gather(
            *(
                lane(client, f"load-{number}-{lane_number}")
                for number, client in enumerate(clients)
                for lane_number in range(lanes_per_client)
            )
        )
        elapsed = time.perf_counter() - started
    finally:
        await asyncio.gather(*(client.close() for client in clients))
    gateway.check_alive()
    return {
        "loaded_in_flight": float(lanes_per_client * LOADED_CONNECTIONS),
        "loaded_ack_p50_ms": percentile(acks, 50),
        "loaded_ack_p99_ms": percentile(acks, 99),
        "loaded_roundtrip_p50_ms": percentile(trips, 50),
        "loaded_roundtrip_p99_ms": percentile(trips, 99),
        "loaded_requests_per_s": requests / elapsed,
    }


async def _idle(
    url: str,
    viewers: Sequence[str],
    connections: int,
    admin: str,
    gateway: GatewayProcess,
    report: Callable[[str], None],
) -> dict[str, float]:
    rss_before = gateway.rss_mib()
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)
    failures: list[str] = []

    async def open_one(index: int) -> ClientConnection | None:
        async with gate:
            try:
                return await _open(url, viewers[index // CONNECTIONS_PER_USER])
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                return None

    started = time.perf_counter()
    opened = await asyncio.gather(*(open_one(index) for index in range(connections)))
    open_seconds = time.perf_counter() - started
    held = [ws for ws in opened if ws is not None]
    report(
        f"idle: {len(held):,} open in {open_seconds:.1f} s"
        + (f", {len(failures):,} failed (first: {failures[0]})" if failures else "")
        + f"; holding them silent for {IDLE_SETTLE_S:g} s ..."
    )
    try:
        gateway.check_alive()
        cpu_before = gateway.cpu_seconds()
        await asyncio.sleep(IDLE_SETTLE_S)
        idle_cpu = (gateway.cpu_seconds() - cpu_before) / IDLE_SETTLE_S * 100.0
        rss = gateway.rss_mib()
        report(f"idle: gateway RSS {rss:,.1f} MiB; pinging every connection ...")
        answered = await _ping_all(held)
        report(f"idle: {answered:,} answered; {IDLE_LOAD_REQUESTS} round trips beside them ...")
        client = await _Client.open(url, admin)
        try:
            await _round_trips(client, "idle-warm", WARMUP_REQUESTS, gateway)
            _, trips = await _round_trips(client, "idle", IDLE_LOAD_REQUESTS, gateway)
        finally:
            await client.close()
    finally:
        await _close_all(held)
    gateway.check_alive()
    return {
        "idle_connections": float(answered),
        "idle_open_failures": float(len(failures)),
        "idle_open_seconds": open_seconds,
        "rss_before_idle_mib": rss_before,
        "rss_mib": rss,
        "rss_per_connection_kib": (rss - rss_before) * 1024.0 / max(1, len(held)),
        "gateway_idle_cpu_percent": idle_cpu,
        "idle_load_roundtrip_p50_ms": percentile(trips, 50),
        "idle_load_roundtrip_p99_ms": percentile(trips, 99),
    }


async def _ping_all(held: Sequence[ClientConnection]) -> int:
    """How many of ``held`` are open and answer a ``ping`` request with ack then success."""
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def ping(index: int, ws: ClientConnection) -> bool:
        if ws.state is not State.OPEN:
            return False
        request_id = f"idle-ping-{index}"
        frame = {"type": "request", "requestId": request_id, "action": "ping", "params": {}}
        async with gate:
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    await ws.send(orjson.dumps(frame).decode())
                    kinds = [orjson.loads(await ws.recv())["type"] for _ in range(2)]
            except (ConnectionClosed, TimeoutError):
                return False
        return kinds == ["ack", "success"]

    answers = await asyncio.gather(*(ping(index, ws) for index, ws in enumerate(held)))
    return sum(answers)


async def _close_all(held: Sequence[ClientConnection]) -> None:
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def close(ws: ClientConnection) -> None:
        async with gate:
            # A connection the gateway already dropped has nothing left to close cleanly.
            with contextlib.suppress(ConnectionClosed, OSError, TimeoutError):
                await ws.close()

    await asyncio.gather(*(close(ws) for ws in held))


# ---- report ------------------------------------------------------------------------


def _verdicts(figures: dict[str, float]) -> dict[str, float]:
    idle_met = (
        figures["idle_connections"] >= TARGET_IDLE_CONNECTIONS
        and figures["rss_mib"] < TARGET_RSS_MIB
    )
    return {
        "target_ack_p99_ms": TARGET_ACK_P99_MS,
        "target_roundtrip_p50_ms": TARGET_ROUNDTRIP_P50_MS,
        "target_idle_connections": float(TARGET_IDLE_CONNECTIONS),
        "target_rss_mib": TARGET_RSS_MIB,
        "ack_p99_met": float(figures["ack_p99_ms"] <= TARGET_ACK_P99_MS),
        "roundtrip_p50_met": float(figures["roundtrip_p50_ms"] <= TARGET_ROUNDTRIP_P50_MS),
        "idle_connections_met": float(idle_met),
    }


def _print_table(figures: dict[str, float]) -> None:
    print_figures(
        "Gateway benchmark (one node --roles api,worker process on this machine)",
        {LABELS[key]: value for key, value in figures.items() if key not in _TARGET_FIGURES},
    )

    def verdict(met: float) -> str:
        return "[green]met[/]" if met else "[red]missed[/]"

    console = Console()
    console.print(
        f"ack p99 <= {TARGET_ACK_P99_MS:g} ms: {verdict(figures['ack_p99_met'])}; "
        f"no-op round trip p50 <= {TARGET_ROUNDTRIP_P50_MS:g} ms: "
        f"{verdict(figures['roundtrip_p50_met'])}; "
        f">= {TARGET_IDLE_CONNECTIONS:,} idle connections under {TARGET_RSS_MIB:g} MiB RSS: "
        f"{verdict(figures['idle_connections_met'])}"
    )


def _ignore(_message: str) -> None:
    """Default progress sink: discard."""
