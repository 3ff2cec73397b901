"""The cluster's figures as the gateway serves them (``/metrics``, ``/api/v1/stats``).

Reading them costs a few aggregate queries. A scrape, or a flood of them,
must not cost a connection each (the process's descriptors) or a query
each: the figures come from one :class:`~tickbase.cluster.metrics.CachedStats`
(one connection, at most one read per second); every request in between, and
every request arriving while a read is under way, gets the same figures.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tickbase.cluster.metrics import MAX_AGE_SECONDS, CachedStats, ClusterCollector

APPLICATION_NAME = "tickbase-figures"


class ClusterFigures:
    """Cached cluster figures for async handlers.

    Example::

        figures = ClusterFigures(url)
        stats = await figures.stats()
        text = await figures.exposition()  # Prometheus text format
        figures.close()
    """

    def __init__(self, url: str, *, max_age: float = MAX_AGE_SECONDS) -> None:
        self._cached = CachedStats(url, label=APPLICATION_NAME, max_age=max_age)
        # Requests queue here, on the event loop, rather than each holding a
        # worker thread while it waits for the cache's own lock.
        self._lock = asyncio.Lock()
        self._stats: dict[str, Any] | None = None
        self._exposition: bytes | None = None

    async def stats(self) -> dict[str, Any]:
        """The figures, at most ``max_age`` seconds old."""
        async with self._lock:
            return await asyncio.to_thread(self._cached.read)

    async def exposition(self) -> bytes:
        """The figures in Prometheus' text exposition format."""
        from prometheus_client import CollectorRegistry, generate_latest

        stats = await self.stats()
        async with self._lock:
            if self._exposition is None or self._stats is not stats:
                registry = CollectorRegistry()
                registry.register(ClusterCollector(lambda: stats))
                self._exposition = generate_latest(registry)
                self._stats = stats
            return self._exposition

    def close(self) -> None:
        self._cached.close()
