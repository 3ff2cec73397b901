"""A latest-value channel: readers see only the newest value; nothing queues up.

The pulling loop publishes one snapshot per cycle. A slow reader must never
make the loop wait or make snapshots pile up in memory: it simply sees the
newest one when it comes back (the others were superseded). This is
tokio's ``watch`` channel, which the reference design uses.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestValue(Generic[T]):
    """One slot, overwritten by :meth:`put`; :meth:`next` waits for a newer one.

    Example::

        channel: LatestValue[Snapshot] = LatestValue()
        channel.put(snapshot)                      # never blocks
        version, snapshot = await channel.next(0)  # the newest after version 0
    """

    def __init__(self) -> None:
        self._value: T | None = None
        self._version = 0
        self._changed = asyncio.Event()
        self.superseded = 0
        """Values replaced before any reader took them (readers were slower)."""
        self._taken = True

    @property
    def version(self) -> int:
        """How many values were put (0: none yet)."""
        return self._version

    def put(self, value: T) -> int:
        """Publish ``value`` (replacing the last); return its version."""
        if not self._taken:
            self.superseded += 1
        self._value = value
        self._version += 1
        self._taken = False
        # Wake every waiting reader; later ones see the version at once.
        self._changed.set()
        self._changed = asyncio.Event()
        return self._version

    def latest(self) -> tuple[int, T | None]:
        """The newest version and value, without waiting."""
        return self._version, self._value

    async def next(self, after: int) -> tuple[int, T]:
        """The newest value once its version is past ``after`` (waits for one)."""
        while self._version <= after:
            await self._changed.wait()
        assert self._value is not None
        self._taken = True
        return self._version, self._value
