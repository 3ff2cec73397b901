"""One gateway process for the gateway benchmarks: started, watched, stopped.

``python -m tickbase node --roles api,worker`` on a free port of 127.0.0.1, with
``DATABASE_URL`` in its environment (never on its command line) and this very copy
of tickbase on its ``PYTHONPATH``; ready once ``/healthz`` answers 200.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from tickbase.bench.harness import _PACKAGE_ROOT, BenchError, _deadline, _stop, _tail
from tickbase.gateway.server import raise_fd_limit

__all__ = [
    "GatewayProcess",
    "fd_limit_of",
    "free_port",
    "gateway_process",
    "raise_fd_limit",
    "wait_healthy",
]

GATEWAY_STARTUP_TIMEOUT_S = 60.0
HEALTH_POLL_S = 0.05


@dataclass
class GatewayProcess:
    """A gateway to measure: its pid, and the subprocess when this run started it."""

    pid: int
    log_path: Path | None = None
    process: asyncio.subprocess.Process | None = None

    def check_alive(self) -> None:
        """Raise :class:`BenchError` (with the log tail when known) if the gateway has exited."""
        if self.process is not None and self.process.returncode is not None:
            tail = _tail(self.log_path) if self.log_path is not None else ""
            raise BenchError(f"the gateway exited with status {self.process.returncode}:\n{tail}")
        if self.process is None and not psutil.pid_exists(self.pid):
            raise BenchError(f"the gateway (pid {self.pid}) is gone")

    def rss_mib(self) -> float:
        return float(psutil.Process(self.pid).memory_info().rss) / 2**20

    def cpu_seconds(self) -> float:
        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)


@contextlib.asynccontextmanager
async def gateway_process(
    dsn: str, port: int, log_path: Path, worker_concurrency: int
) -> AsyncIterator[GatewayProcess]:
    """Start ``node --roles api,worker`` on ``127.0.0.1:port``; stop it on exit."""
    env = dict(os.environ)
    env["DATABASE_URL"] = dsn
    # This very copy of tickbase, even when it is not the installed one.
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p
    )
    # The child gets its own descriptor, so ours can be closed right after spawning.
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "tickbase", "node", "--roles", "api,worker"),
            *("--host", "127.0.0.1", "--port", str(port), "-c", str(worker_concurrency)),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
            env=env,
        )
    gateway = GatewayProcess(pid=process.pid, log_path=log_path, process=process)
    try:
        await wait_healthy(gateway, f"http://127.0.0.1:{port}")
        yield gateway
    finally:
        await _stop(process)


async def wait_healthy(gateway: GatewayProcess, base_url: str) -> None:
    """Poll ``/healthz`` until it answers 200 (:class:`BenchError` on exit or timeout)."""
    # trust_env=False: a proxy from the environment must not carry a loopback request.
    async with (
        httpx.AsyncClient(trust_env=False, timeout=2.0) as client,
        _deadline(GATEWAY_STARTUP_TIMEOUT_S, "the gateway's /healthz"),
    ):
        while True:
            gateway.check_alive()
            with contextlib.suppress(httpx.HTTPError):
                response = await client.get(f"{base_url}/healthz")
                if response.status_code == 200:
                    return
            await asyncio.sleep(HEALTH_POLL_S)


def fd_limit_of(pid: int) -> int:
    """The soft descriptor limit of process ``pid``."""
    soft, _ = psutil.Process(pid).rlimit(psutil.RLIMIT_NOFILE)
    return int(soft) if soft != psutil.RLIM_INFINITY else 1 << 30


def free_port() -> int:
    """A port free right now on 127.0.0.1 (the gateway binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
