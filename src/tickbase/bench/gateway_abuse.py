"""``tickbase bench gateway --abuse``: what a hostile client costs one gateway.

Set-up
    As for ``bench gateway``: a fresh migrated database and ONE
    ``node --roles api,worker`` process on a free port of 127.0.0.1 (see
    :mod:`tickbase.bench.gateway_process`). Or, with ``--url`` and ``--pid``, a
    gateway that is already running (another version, to measure before and
    after a change on the same machine); it is used, never stopped.

Workloads (clients are this process, raw sockets on the event loop; the normal
client is a thread with its own blocking keep-alive connection)
    1. big bodies: :data:`BIG_BODIES` ``POST /api/v1/tasks`` with no token and a
       valid JSON body of :data:`BIG_BODY_BYTES`, written as fast as loopback takes
       it. Per body: the time from the first byte sent to the status line of the
       answer, and the answer's status -> ``big_body_refuse_max_s``,
       ``big_body_status``. The gateway's RSS is sampled every
       :data:`RSS_SAMPLE_S` -> ``rss_growth_mib`` (highest sample less the one
       before). Throughout, the normal client sends ``GET /healthz`` one after
       another -> ``bodies_healthz_p99_ms``.
    2. connections: :data:`KEEPALIVE_CONNECTIONS` keep-alive clients each send
       ``GET /healthz`` every :data:`KEEPALIVE_PERIOD_S` (inside the default 5 s
       keep-alive timeout), and :data:`HALF_OPEN_CONNECTIONS` connections send a
       request line and one header, then nothing. Held for the gateway's header
       timeout plus :data:`HALF_OPEN_GRACE_S`: per half-open connection, the time
       from its partial request until the server closed it ->
       ``half_open_closed``, ``half_open_close_max_s``; keep-alive clients still
       answered at the end -> ``keepalive_held``; the normal client meanwhile ->
       ``connections_healthz_p99_ms``.

A normal-client request that fails or takes over :data:`PROBE_TIMEOUT_S` counts as
that timeout in its percentile, so a stalled gateway shows as a stall, and in
``healthz_failures``. Percentiles are nearest-rank.

Targets (from the issue): each 100 MB body refused in < 1 s with RSS growth < 50 MiB,
``/healthz`` p99 < 100 ms in both workloads, and every half-open connection closed
within the header timeout (plus one second for the timer's granularity). Like every
benchmark here, this one prints the figures and whether each target was met, and
never fails on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import math
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from rich.console import Console

from tickbase.bench.gateway_process import (
    GatewayProcess,
    free_port,
    gateway_process,
    raise_fd_limit,
    wait_healthy,
)
from tickbase.bench.harness import BenchError, migrated_database, percentile, print_figures
from tickbase.bench.render import results_json
from tickbase.db.pool import resolve_database_url
from tickbase.gateway.server import ServerLimits
from tickbase.settings import load_settings

SUBJECT = "tickbase"
# The header timeout of a gateway started with default settings.
DEFAULT_HEADER_TIMEOUT_S = ServerLimits().header_timeout

BIG_BODIES = 3
BIG_BODY_BYTES = 100 * 1024 * 1024
BODY_CHUNK_BYTES = 1024 * 1024
KEEPALIVE_CONNECTIONS = 2_000
HALF_OPEN_CONNECTIONS = 5_000
KEEPALIVE_PERIOD_S = 4.0
HALF_OPEN_GRACE_S = 3.0
RSS_SAMPLE_S = 0.02
PROBE_TIMEOUT_S = 5.0
# A big body that is still not answered after this long counts as this long.
BODY_TIMEOUT_S = 120.0
OPEN_CONCURRENCY = 100
OPEN_TIMEOUT_S = 10.0
WORKER_CONCURRENCY = 10
# Descriptors this process needs besides the held connections.
SPARE_FDS = 200

TARGET_REFUSE_S = 1.0
TARGET_RSS_GROWTH_MIB = 50.0
TARGET_HEALTHZ_P99_MS = 100.0
CLOSE_SLACK_S = 1.0

LABELS: dict[str, str] = {
    "big_bodies": "unauthenticated bodies sent",
    "big_body_mib": "size of each (MiB)",
    "big_body_status": "status of the answer",
    "big_body_refuse_mean_s": "time to the answer, mean (s)",
    "big_body_refuse_max_s": f"time to the answer, max (s, target < {TARGET_REFUSE_S:g})",
    "rss_before_mib": "gateway RSS before (MiB)",
    "rss_growth_mib": f"gateway RSS growth (MiB, target < {TARGET_RSS_GROWTH_MIB:g})",
    "bodies_healthz_p99_ms": f"/healthz p99 meanwhile (ms, target < {TARGET_HEALTHZ_P99_MS:g})",
    "keepalive_connections": "keep-alive clients",
    "keepalive_held": "keep-alive clients still answered at the end",
    "half_open_connections": "half-open connections",
    "half_open_opened": "half-open connections accepted",
    "half_open_closed": "half-open connections closed by the gateway",
    "half_open_close_p50_s": "time to close them, p50 (s)",
    "half_open_close_max_s": "time to close them, max (s)",
    "header_timeout_s": "gateway header timeout (s)",
    "connections_healthz_p99_ms": (
        f"/healthz p99 with them open (ms, target < {TARGET_HEALTHZ_P99_MS:g})"
    ),
    "healthz_failures": "/healthz requests that failed",
}

VERDICTS: dict[str, str] = {
    "refuse_met": f"100 MB bodies refused in < {TARGET_REFUSE_S:g} s",
    "rss_growth_met": f"RSS growth < {TARGET_RSS_GROWTH_MIB:g} MiB",
    "healthz_met": f"/healthz p99 < {TARGET_HEALTHZ_P99_MS:g} ms",
    "half_open_met": "half-open connections closed within the header timeout",
}

FIGURES: tuple[str, ...] = (*LABELS, *VERDICTS)


@dataclass(frozen=True)
class AbuseLoad:
    """How hard to push: the issue's figures by default, smaller in tests."""

    big_bodies: int = BIG_BODIES
    big_body_bytes: int = BIG_BODY_BYTES
    keepalive_connections: int = KEEPALIVE_CONNECTIONS
    half_open_connections: int = HALF_OPEN_CONNECTIONS

    def __post_init__(self) -> None:
        for name in ("big_bodies", "big_body_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("keepalive_connections", "half_open_connections"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class ExistingGateway:
    """A gateway already running: its base URL, its pid (for RSS) and its header timeout."""

    url: str
    pid: int
    header_timeout: float = DEFAULT_HEADER_TIMEOUT_S


async def run_abuse_command(
    *,
    database_url: str | None,
    as_json: bool,
    load: AbuseLoad,
    existing: ExistingGateway | None = None,
) -> dict[str, float]:
    """Run the abuse benchmark and print it (a Rich table, or one JSON line)."""

    def progress(line: str) -> None:
        if not as_json:
            print(line, file=sys.stderr, flush=True)

    if existing is not None:
        figures = await measure_abuse(_existing(existing), existing, load, progress)
    else:
        settings = load_settings(database_url=database_url)
        server_dsn, _ = await asyncio.to_thread(resolve_database_url, settings, start=False)
        # The gateway started here inherits this environment, TICKBASE_* settings included.
        header_timeout = ServerLimits.from_settings(settings).header_timeout
        figures = await run_abuse_bench(server_dsn, load, header_timeout, progress)
    if as_json:
        print(results_json({SUBJECT: figures}), flush=True)
    else:
        _print_table(figures)
    return figures


async def run_abuse_bench(
    server_dsn: str,
    load: AbuseLoad,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT_S,
    progress: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Start a gateway on a fresh database and measure it."""
    report = progress if progress is not None else _ignore
    with tempfile.TemporaryDirectory(prefix="tickbase-bench-abuse-") as tmp:
        async with migrated_database(server_dsn, "gateway_abuse") as dsn:
            port = free_port()
            report(f"starting the gateway (node --roles api,worker) on 127.0.0.1:{port} ...")
            async with gateway_process(
                dsn, port, Path(tmp) / "gateway.log", WORKER_CONCURRENCY
            ) as gateway:
                base = f"http://127.0.0.1:{port}"
                target = ExistingGateway(base, gateway.pid, header_timeout)
                return await measure_abuse(gateway, target, load, report)


async def measure_abuse(
    gateway: GatewayProcess,
    target: ExistingGateway,
    load: AbuseLoad,
    report: Callable[[str], None],
) -> dict[str, float]:
    """Both workloads against the gateway at ``target.url`` (process ``gateway``)."""
    base_url = target.url
    parts = urlsplit(base_url)
    if parts.scheme != "http" or not parts.hostname:
        raise BenchError(f"--url must be http://HOST:PORT, got {base_url!r}")
    address = (parts.hostname, parts.port or 80)
    wanted = load.keepalive_connections + load.half_open_connections + SPARE_FDS
    if raise_fd_limit() < wanted:
        report(f"warning: the file descriptor limit is below {wanted:,}: not all may open")
    await wait_healthy(gateway, base_url)
    figures: dict[str, float] = {}
    report(f"big bodies: {load.big_bodies} x {load.big_body_bytes / 2**20:g} MiB, no token ...")
    figures.update(await _big_bodies(address, gateway, load))
    gateway.check_alive()
    report(
        f"connections: {load.keepalive_connections:,} keep-alive, "
        f"{load.half_open_connections:,} half-open, held "
        f"{target.header_timeout + HALF_OPEN_GRACE_S:g} s ..."
    )
    figures.update(await _connections(address, load, target.header_timeout))
    figures["header_timeout_s"] = target.header_timeout
    figures["healthz_failures"] = figures.pop("bodies_failures") + figures.pop(
        "connections_failures"
    )
    gateway.check_alive()
    figures.update(_verdicts(figures, load))
    return {key: figures[key] for key in FIGURES}


def _existing(target: ExistingGateway) -> GatewayProcess:
    gateway = GatewayProcess(pid=target.pid)
    gateway.check_alive()
    return gateway


# ---- the normal client -------------------------------------------------------------


@dataclass
class _Probe:
    """Latencies of back-to-back ``GET /healthz`` on one keep-alive connection."""

    latencies_ms: list[float] = field(default_factory=list)
    failures: int = 0

    def p99_ms(self) -> float:
        return percentile(self.latencies_ms, 99) if self.latencies_ms else math.nan


@contextlib.contextmanager
def _probing(address: tuple[str, int]) -> Iterator[_Probe]:
    """Probe ``/healthz`` from a thread (its own blocking socket) while the block runs.

    A thread, so that the probe's timing does not wait on this process's event
    loop, busy with thousands of abusive sockets.
    """
    probe = _Probe()
    stop = threading.Event()

    def run() -> None:
        conn = http.client.HTTPConnection(*address, timeout=PROBE_TIMEOUT_S)
        while not stop.is_set():
            started = time.perf_counter()
            try:
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
            elapsed = (time.perf_counter() - started) * 1000
            if ok:
                probe.latencies_ms.append(elapsed)
            else:
                probe.failures += 1
                probe.latencies_ms.append(max(elapsed, PROBE_TIMEOUT_S * 1000))
                conn.close()
                stop.wait(0.05)
        conn.close()

    thread = threading.Thread(target=run, name="healthz-probe", daemon=True)
    thread.start()
    try:
        yield probe
    finally:
        stop.set()
        thread.join(PROBE_TIMEOUT_S + 1)


# ---- workload 1: big unauthenticated bodies ----------------------------------------


async def _big_bodies(
    address: tuple[str, int], gateway: GatewayProcess, load: AbuseLoad
) -> dict[str, float]:
    before = gateway.rss_mib()
    peak = before
    sampling = True

    async def sample() -> None:
        nonlocal peak
        while sampling:
            with contextlib.suppress(Exception):
                peak = max(peak, gateway.rss_mib())
            await asyncio.sleep(RSS_SAMPLE_S)

    sampler = asyncio.create_task(sample())
    times: list[float] = []
    statuses: list[int] = []
    try:
        with _probing(address) as probe:
            for _ in range(load.big_bodies):
                status, seconds = await _send_big_body(address, load.big_body_bytes)
                statuses.append(status)
                times.append(seconds)
    finally:
        sampling = False
        await sampler
    return {
        "big_bodies": float(load.big_bodies),
        "big_body_mib": load.big_body_bytes / 2**20,
        # The status of every answer, when they agree; 0 when a connection ended unanswered.
        "big_body_status": float(statuses[0] if len(set(statuses)) == 1 else 0),
        "big_body_refuse_mean_s": sum(times) / len(times),
        "big_body_refuse_max_s": max(times),
        "rss_before_mib": before,
        "rss_growth_mib": peak - before,
        "bodies_healthz_p99_ms": probe.p99_ms(),
        "bodies_failures": float(probe.failures),
    }


async def _send_big_body(address: tuple[str, int], size: int) -> tuple[int, float]:
    """POST a valid JSON body of ``size`` bytes with no token; (status, seconds to the answer)."""
    prefix = b'{"taskType":"bench.abuse","payload":{"blob":"'
    suffix = b'"}}'
    filler = memoryview(b"x" * BODY_CHUNK_BYTES)
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(*address)
    head = (
        f"POST /api/v1/tasks HTTP/1.1\r\nHost: {address[0]}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
    ).encode("ascii")

    async def send() -> None:
        writer.write(head + prefix)
        left = size - len(prefix) - len(suffix)
        while left > 0:
            writer.write(filler[: min(left, BODY_CHUNK_BYTES)])
            left -= BODY_CHUNK_BYTES
            await writer.drain()
        writer.write(suffix)
        await writer.drain()

    sender = asyncio.create_task(send())
    status = 0
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            line = await reader.readline()
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            status = int(parts[1])
    except (OSError, TimeoutError):
        pass
    seconds = time.perf_counter() - started
    sender.cancel()
    with contextlib.suppress(asyncio.CancelledError, OSError):
        await sender
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return status, seconds


# ---- workload 2: keep-alive and half-open connections ------------------------------


async def _connections(
    address: tuple[str, int], load: AbuseLoad, header_timeout: float
) -> dict[str, float]:
    hold = header_timeout + HALF_OPEN_GRACE_S
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)
    stop = asyncio.Event()
    held = [False] * load.keepalive_connections
    close_times: list[float] = []
    opened = 0

    async def keepalive(index: int) -> None:
        async with _connection(address, gate) as streams:
            if streams is None:
                return
            reader, writer = streams
            request = f"GET /healthz HTTP/1.1\r\nHost: {address[0]}\r\n\r\n".encode("ascii")
            while True:
                writer.write(request)
                held[index] = await _read_response(reader)
                if not held[index]:
                    return
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(KEEPALIVE_PERIOD_S):
                        await stop.wait()
                if stop.is_set():
                    return

    async def half_open() -> None:
        nonlocal opened
        async with _connection(address, gate) as streams:
            if streams is None:
                return
            reader, writer = streams
            writer.write(f"GET /healthz HTTP/1.1\r\nHost: {address[0]}\r\n".encode("ascii"))
            sent = time.perf_counter()
            opened += 1
            try:
                async with asyncio.timeout(hold + OPEN_TIMEOUT_S):
                    while await reader.read(65536):
                        pass
            except TimeoutError:
                return
            except OSError:
                pass  # a reset closes the connection as well as an orderly close
            close_times.append(time.perf_counter() - sent)

    with _probing(address) as probe:
        tasks = [asyncio.create_task(keepalive(i)) for i in range(load.keepalive_connections)]
        tasks += [asyncio.create_task(half_open()) for _ in range(load.half_open_connections)]
        await asyncio.sleep(hold)
        stop.set()
        await asyncio.gather(*tasks)
    return {
        "keepalive_connections": float(load.keepalive_connections),
        "keepalive_held": float(sum(held)),
        "half_open_connections": float(load.half_open_connections),
        "half_open_opened": float(opened),
        "half_open_closed": float(len(close_times)),
        "half_open_close_p50_s": percentile(close_times, 50) if close_times else math.nan,
        "half_open_close_max_s": max(close_times) if close_times else math.nan,
        "connections_healthz_p99_ms": probe.p99_ms(),
        "connections_failures": float(probe.failures),
    }


@contextlib.asynccontextmanager
async def _connection(
    address: tuple[str, int], gate: asyncio.Semaphore
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter] | None]:
    """A TCP connection opened under ``gate`` (None when it could not open); closed on exit."""
    try:
        async with gate, asyncio.timeout(OPEN_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(*address)
    except (OSError, TimeoutError):
        yield None
        return
    try:
        yield reader, writer
    except OSError:
        pass
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _read_response(reader: asyncio.StreamReader) -> bool:
    """Read one HTTP response with a Content-Length; True when it was a 200."""
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            await reader.readexactly(length)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return False
    return lines[0].split()[1:2] == [b"200"]


# ---- report ------------------------------------------------------------------------


def _verdicts(figures: dict[str, float], load: AbuseLoad) -> dict[str, float]:
    closed_in_time = figures["half_open_closed"] >= figures["half_open_opened"] and (
        load.half_open_connections == 0
        or figures["half_open_close_max_s"] <= figures["header_timeout_s"] + CLOSE_SLACK_S
    )
    healthz = max(figures["bodies_healthz_p99_ms"], figures["connections_healthz_p99_ms"])
    return {
        "refuse_met": float(figures["big_body_refuse_max_s"] < TARGET_REFUSE_S),
        "rss_growth_met": float(figures["rss_growth_mib"] < TARGET_RSS_GROWTH_MIB),
        "healthz_met": float(healthz < TARGET_HEALTHZ_P99_MS),
        "half_open_met": float(closed_in_time),
    }


def _print_table(figures: dict[str, float]) -> None:
    print_figures(
        "Gateway under abuse (one gateway process on this machine)",
        {LABELS[key]: figures[key] for key in LABELS},
    )

    def verdict(met: float) -> str:
        return "[green]met[/]" if met else "[red]missed[/]"

    Console().print(
        "; ".join(f"{label}: {verdict(figures[key])}" for key, label in VERDICTS.items())
    )


def _ignore(_message: str) -> None:
    """Default progress sink: discard."""
