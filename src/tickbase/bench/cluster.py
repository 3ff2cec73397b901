"""``tickbase bench cluster``: throughput with 1, 2 and 3 worker processes, the
same drain with every task under a concurrency key (the limited claim path),
and the time to rescue a task from a worker killed with SIGKILL (median of 5).

Each measurement runs in a fresh database on the same server. Workers are real
``tickbase worker`` processes (the database URL travels in their environment).
Rescue time runs from the SIGKILL of a worker to the moment its task is running
again on the surviving node (``tickbase node --roles worker,scheduler``, the
leader): the dead node is noticed after three missed heartbeats
(``TICKBASE_HEARTBEAT_SECONDS``) and reaped by the leader's next housekeeping
pass (every heartbeat interval), long before the task's lease expires.
"""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from typing import Any

from tickbase.app import App
from tickbase.bench.harness import migrated_database, print_figures
from tickbase.db.pool import resolve_database_url
from tickbase.queue.models import EnqueueRequest
from tickbase.queue.repository import Q as QUEUE_QUERIES
from tickbase.settings import load_settings

TASKS = 20_000
KEYS = 1_000
RESCUE_RUNS = 5
BENCH_APP = "tickbase.bench.tickbase_adapter:bench_app"


async def run_cluster_command(*, database_url: str | None, as_json: bool) -> dict[str, float]:
    """Measure and print (Rich table, or one JSON line)."""
    settings = load_settings(database_url=database_url)
    server, _ = await asyncio.to_thread(resolve_database_url, settings, start=False)
    figures: dict[str, float] = {}
    for workers in (1, 2, 3):
        figures[f"drain_per_s_{workers}_workers"] = await _fresh(
            server, f"drain{workers}", _drain, workers
        )
    # The limited claim path (serialised under the limits lock): the same
    # drain with every task under a concurrency key (KEYS keys, one at a time).
    figures["drain_keyed_per_s_1_worker"] = await _fresh(server, "keyed", _drain, -1)
    rescues = [await _fresh(server, f"rescue{n}", _rescue, 0) for n in range(RESCUE_RUNS)]
    figures["rescue_seconds_median"] = statistics.median(rescues)
    figures["rescue_seconds_max"] = max(rescues)
    figures["heartbeat_seconds"] = settings.heartbeat_seconds
    if as_json:
        import json

        print(json.dumps({"tickbase": figures}), flush=True)
    else:
        print_figures("Cluster benchmark (worker processes on this machine)", figures)
    return figures


async def _fresh(server: str, label: str, body: Any, argument: int) -> float:
    async with migrated_database(server, f"cl_{label}") as dsn:
        result: float = await body(dsn, argument)
        return result


def _start_worker(dsn: str, roles: str = "worker") -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": dsn}
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "tickbase", "node", "--roles", roles),
            *("--app", BENCH_APP, "--concurrency", "100"),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _drain(dsn: str, workers: int) -> float:
    """Drain TASKS no-op tasks with ``workers`` processes (-1: one process, keyed tasks)."""
    keyed = workers < 0
    workers = abs(workers)
    app = App(dsn)
    await app.open(apply_migrations=False)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for start in range(0, TASKS, 1000):
            await app.enqueue_many(
                [
                    EnqueueRequest(
                        "tickbase.noop", concurrency_key=f"k{n % KEYS}" if keyed else None
                    )
                    for n in range(start, start + 1000)
                ]
            )
        started = time.perf_counter()
        processes = [_start_worker(dsn) for _ in range(workers)]
        async with app.pool.connection() as conn:
            while True:
                row = await (await conn.execute(QUEUE_QUERIES["task_count_unfinished"])).fetchone()
                if row is not None and row[0] == 0:
                    break
                await asyncio.sleep(0.005)
        return TASKS / (time.perf_counter() - started)
    finally:
        _stop(processes)
        await app.close()


async def _rescue(dsn: str, _: int) -> float:
    app = App(dsn)
    await app.open(apply_migrations=False)
    doomed = _start_worker(dsn)
    survivor: subprocess.Popen[bytes] | None = None
    try:
        handle = await app.defer("tickbase.bench.sleep", {"seconds": 600}, max_attempts=3)
        task = await _wait_running(app, handle.id, str(doomed.pid))
        survivor = _start_worker(dsn, "worker,scheduler")
        await _wait_node(app, survivor.pid)
        await _wait_leader(app, survivor.pid)
        doomed.send_signal(signal.SIGKILL)
        killed = time.perf_counter()
        await _wait_running(app, task, str(survivor.pid))
        return time.perf_counter() - killed
    finally:
        _stop([p for p in (doomed, survivor) if p is not None])
        await app.close()


async def _wait_running(app: App, task_id: int, pid: str) -> int:
    while True:
        task = await app.queue.get(task_id)
        if task.status == "running" and task.node_id and f":{pid}:" in task.node_id:
            return task_id
        await asyncio.sleep(0.05)


async def _wait_leader(app: App, pid: int) -> None:
    from tickbase.cluster.lease import lease_holder

    while True:
        async with app.pool.connection() as conn:
            holder = await lease_holder(conn)
        if holder and holder["live"] and f":{pid}:" in holder["holder"]:
            return
        await asyncio.sleep(0.05)


async def _wait_node(app: App, pid: int) -> None:
    from tickbase.cluster.nodes import list_nodes

    while True:
        async with app.pool.connection() as conn:
            if any(n["pid"] == pid and n["alive"] for n in await list_nodes(conn)):
                return
        await asyncio.sleep(0.05)
