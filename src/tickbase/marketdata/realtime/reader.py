"""The serial read scheduler: registered handlers see each snapshot one at a time.

Overview
    Business handlers (incremental indicators, the WebSocket ``kline``
    channel, a strategy) read the pulling loop's snapshots. They are called
    one at a time, in registration order, never concurrently: a handler's
    author never thinks about races between handlers (the reference design's
    "Read Scheduler"). Each call is measured; the figures are in
    :attr:`SerialReader.stats`.

Failure cases
    A handler that raises is logged (once per error kind and handler, then
    counted) and the others still run; the scheduler never stops for one.
    A slow handler delays only the handlers after it and the next snapshot
    they see: the loop that publishes never waits for readers (the channel
    keeps only the newest snapshot).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from tickbase.marketdata.realtime.channel import LatestValue
from tickbase.service import Service

logger = logging.getLogger("tickbase.realtime")

S = TypeVar("S")
Handler = Callable[[S], Awaitable[None] | None]


@dataclass
class HandlerStats:
    """One handler's calls, failures and how long it took (seconds)."""

    calls: int = 0
    failures: int = 0
    total_seconds: float = 0.0
    max_seconds: float = 0.0
    last_seconds: float = 0.0
    _logged: set[str] = field(default_factory=set, repr=False)


class SerialReader(Service, Generic[S]):
    """Call every registered handler with each new snapshot, one after another.

    Example::

        reader = SerialReader(channel)
        reader.register("indicators", update_indicators)
        await reader.start()
    """

    name = "realtime-reader"

    def __init__(self, channel: LatestValue[S]) -> None:
        super().__init__()
        self.channel = channel
        self._handlers: dict[str, Handler[S]] = {}
        self.stats: dict[str, HandlerStats] = {}
        self.snapshots_read = 0
        self._seen = 0

    def register(self, name: str, handler: Handler[S]) -> Callable[[], None]:
        """Add a handler (sync or async) under a unique ``name``; returns its removal."""
        if name in self._handlers:
            raise ValueError(f"a handler named {name!r} is registered already")
        self._handlers[name] = handler
        self.stats[name] = HandlerStats()

        def remove() -> None:
            self._handlers.pop(name, None)

        return remove

    async def serve(self) -> None:
        self.mark_started()
        while not self.stopping:
            reading = asyncio.ensure_future(self.channel.next(self._seen))
            stop = asyncio.ensure_future(self.wait_stopping())
            done, _ = await asyncio.wait({reading, stop}, return_when=asyncio.FIRST_COMPLETED)
            if reading not in done:
                reading.cancel()
                break
            stop.cancel()
            self._seen, snapshot = reading.result()
            await self.dispatch(snapshot)

    async def dispatch(self, snapshot: S) -> None:
        """Call each handler with ``snapshot``, in order, measuring each."""
        self.snapshots_read += 1
        for name, handler in list(self._handlers.items()):
            stats = self.stats[name]
            began = time.perf_counter()
            try:
                outcome: Any = handler(snapshot)
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception as exc:
                stats.failures += 1
                kind = type(exc).__name__
                if kind not in stats._logged:
                    stats._logged.add(kind)
                    logger.exception(
                        "real-time handler %s failed (%s); it keeps running", name, kind
                    )
            finally:
                spent = time.perf_counter() - began
                stats.calls += 1
                stats.total_seconds += spent
                stats.last_seconds = spent
                stats.max_seconds = max(stats.max_seconds, spent)


__all__ = ["Handler", "HandlerStats", "SerialReader"]
