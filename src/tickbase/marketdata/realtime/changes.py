"""A shard's change log: what changed after a given version, newest values only.

The pulling loop acknowledges a version per shard and asks for what changed
after it (:mod:`~tickbase.marketdata.realtime.loop`). A shard keeps, per key,
the version of its last change, in the order of those changes: answering
reads only the keys changed since, oldest change first, and a pull that
the loop gave up on costs nothing (it asks again from
the same version). Several changes of one key between two pulls are one
entry: the newest value (the reference design's coalescing of bar updates).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any


class ChangeLog:
    """Values by key, each stamped with the version of its last change.

    Example::

        log = ChangeLog()
        log.set(("ESZ5", "1m", t), bar)
        version, changes = log.since(0)   # {("ESZ5", "1m", t): bar}
    """

    def __init__(self) -> None:
        self.version = 0
        self._values: dict[Hashable, Any] = {}
        self._changed_at: dict[Hashable, int] = {}
        self._settled: set[Hashable] = set()

    def set(self, key: Hashable, value: Any, *, settled: bool = False) -> int:
        """Record ``value`` as ``key``'s newest; return the new version.

        ``settled``: the key will not change again (a final bar): once the loop
        acknowledges a version past it (:meth:`acknowledge`) it is forgotten,
        so a shard's memory holds only the bars still forming."""
        self.version += 1
        self._values[key] = value
        # Moved to the end: the dict is in the order of last change, so an answer lists
        # changes as they happened (a bar that was forming, then final, comes after the
        # bars that closed before it) and is found by reading from the end.
        self._changed_at.pop(key, None)
        self._changed_at[key] = self.version
        if settled:
            self._settled.add(key)
        return self.version

    def acknowledge(self, version: int) -> int:
        """The loop has every change up to ``version``: forget the settled keys it
        has; how many were forgotten."""
        done = [k for k in self._settled if self._changed_at[k] <= version]
        for key in done:
            self.discard(key)
        return len(done)

    def discard(self, key: Hashable) -> None:
        """Forget ``key`` (a bar the loop has, and that will not change again)."""
        self._values.pop(key, None)
        self._changed_at.pop(key, None)
        self._settled.discard(key)

    def since(self, version: int) -> tuple[int, Mapping[Hashable, Any]]:
        """The current version and every key changed after ``version``."""
        if version > self.version:
            raise ValueError(f"version {version} is in the future (now {self.version})")
        newest_first = []
        for key in reversed(self._changed_at):
            if self._changed_at[key] <= version:
                break
            newest_first.append(key)
        return self.version, {k: self._values[k] for k in reversed(newest_first)}

    def __len__(self) -> int:
        return len(self._values)
