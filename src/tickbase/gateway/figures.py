"""The cluster's figures as the gateway serves them (``/metrics``, ``/api/v1/stats``).

Reading them costs a few aggregate queries. A scrape, or a flood of them,
must not cost a connection each (the process's descriptors) or a query
each: the figures are read over ONE connection kept for the purpose, at most
once per :data:`MAX_AGE_SECONDS`; every request in between, and every
request arriving while a read is under way, gets the same figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from typing import Any

import psycopg

from tickbase.cluster.metrics import ClusterCollector, read_stats
from tickbase.db.pool import configure_connection

MAX_AGE_SECONDS = 1.0
APPLICATION_NAME = "tickbase-figures"
CONNECT_TIMEOUT_SECONDS = 5


class ClusterFigures:
    """Cached cluster figures over one connection of their own (reconnected when lost).

    Example::

        figures = ClusterFigures(url)
        stats = await figures.stats()
        text = await figures.exposition()  # Prometheus text format
        figures.close()
    """

    def __init__(self, url: str, *, max_age: float = MAX_AGE_SECONDS) -> None:
        self.url = url
        self.max_age = max_age
        self._conn: psycopg.Connection[Any] | None = None
        self._lock = asyncio.Lock()
        self._stats: dict[str, Any] | None = None
        self._exposition: bytes | None = None
        self._read_at = -float("inf")

    async def stats(self) -> dict[str, Any]:
        """The figures, at most ``max_age`` seconds old."""
        async with self._lock:
            if self._stats is None or time.monotonic() - self._read_at > self.max_age:
                self._stats = await asyncio.to_thread(self._read)
                self._exposition = None
                self._read_at = time.monotonic()
            return self._stats

    async def exposition(self) -> bytes:
        """The figures in Prometheus' text exposition format."""
        from prometheus_client import CollectorRegistry, generate_latest

        stats = await self.stats()
        async with self._lock:
            if self._exposition is None or self._stats is not stats:
                registry = CollectorRegistry()
                registry.register(ClusterCollector(lambda: stats))
                self._exposition = generate_latest(registry)
            return self._exposition

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    def _read(self) -> dict[str, Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self.close()
            self._conn = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                application_name=f"{APPLICATION_NAME}:{os.getpid()}",
            )
            configure_connection(self._conn)
        try:
            return read_stats(self._conn)
        except psycopg.OperationalError:
            self.close()
            raise
