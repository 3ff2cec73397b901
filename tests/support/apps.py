"""Task definitions loaded by worker subprocesses in end-to-end tests (``--app``).

Handlers record what they did in files named by environment variables, so
the test can count executions without trusting the database it checks.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import tickbase

app = tickbase.App()


def _record(env: str, line: str) -> None:
    path = os.environ.get(env)
    if path:
        with open(path, "a") as handle:
            handle.write(line + "\n")


@app.task(name="test.record")
async def record(n: int) -> int:
    """Run once per task: log ``n`` with this process's pid."""
    _record("TICKBASE_TEST_RUNS", f"{n} {os.getpid()}")
    return n


@app.task(name="test.slow", retries=3)
async def slow(n: int, seconds: float = 2.0) -> int:
    """Log the start, sleep, then log the completion."""
    _record("TICKBASE_TEST_STARTS", f"{n} {os.getpid()}")
    await asyncio.sleep(seconds)
    _record("TICKBASE_TEST_RUNS", f"{n} {os.getpid()}")
    return n


@app.task(name="test.echo_sync")
def echo_sync(**payload: Any) -> dict[str, Any]:
    return payload


@app.task(name="test.wf_step", retries=3)
async def wf_step(n: int, seconds: float = 0.0) -> int:
    """A workflow step: log the start, sleep, log the success."""
    _record("TICKBASE_TEST_STARTS", f"{n} {os.getpid()}")
    await asyncio.sleep(seconds)
    _record("TICKBASE_TEST_RUNS", f"{n} {os.getpid()}")
    return n


@app.task(name="test.rated", rate_limit="10/m")
async def rated(n: int) -> int:
    """At most 10 starts in any minute, across the cluster."""
    _record("TICKBASE_TEST_RUNS", f"{n} {os.getpid()}")
    return n


@app.task(name="test.keyed", concurrency_key="{symbol}")
async def keyed(symbol: str, n: int, seconds: float = 0.2) -> int:
    """One task per symbol at a time, in enqueue order."""
    await asyncio.sleep(seconds)
    return n
