"""A shard's circuit breaker: after k missed pulls in a row, skip it for a cool-down.

The pulling loop asks every shard for its changes each cycle with a timeout.
A shard that misses it once is a hiccup (its last good state is used); one
that misses :attr:`CircuitBreaker.threshold` cycles in a row is failing, and
asking it again every cycle would only cost the loop its timeout each time.
So its circuit **opens**: it is skipped, and the owner alerts. After
:attr:`CircuitBreaker.cooldown` seconds one **half-open** try is allowed: a
success closes the circuit, a failure opens it for another cool-down.

Times are given by the caller (``now``, monotonic seconds), so the breaker
is a plain value that tests drive without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class CircuitState(StrEnum):
    """Where a shard's circuit is."""

    CLOSED = "closed"
    """Pulled every cycle."""
    OPEN = "open"
    """Skipped until the cool-down has passed."""
    HALF_OPEN = "half_open"
    """One try allowed: its outcome closes or reopens the circuit."""


@dataclass
class CircuitBreaker:
    """Consecutive failures of one shard, and whether to pull it now.

    Example::

        breaker = CircuitBreaker(threshold=5, cooldown=5.0)
        if breaker.allow(now):
            ok = await pull()
            breaker.success() if ok else breaker.failure(now)
    """

    threshold: int = 5
    cooldown: float = 5.0
    state: CircuitState = CircuitState.CLOSED
    failures: int = 0
    """Failures in a row (reset by a success)."""
    opened_at: float | None = None
    opened: int = 0
    """How many times the circuit has opened (for the metrics)."""

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ValueError(f"threshold must be at least 1, got {self.threshold}")
        if not self.cooldown > 0:
            raise ValueError(f"cooldown must be positive seconds, got {self.cooldown}")

    def allow(self, now: float) -> bool:
        """Whether to pull the shard in the cycle starting at ``now``."""
        if self.state is CircuitState.OPEN:
            assert self.opened_at is not None
            if now - self.opened_at < self.cooldown:
                return False
            self.state = CircuitState.HALF_OPEN
        return True

    def success(self) -> bool:
        """Record a good pull; ``True`` when it closed an open circuit."""
        recovered = self.state is not CircuitState.CLOSED
        self.state = CircuitState.CLOSED
        self.failures = 0
        self.opened_at = None
        return recovered

    def failure(self, now: float) -> bool:
        """Record a missed pull; ``True`` when the circuit opened because of it."""
        self.failures += 1
        if self.state is CircuitState.HALF_OPEN or (
            self.state is CircuitState.CLOSED and self.failures >= self.threshold
        ):
            first = self.state is CircuitState.CLOSED
            self.state = CircuitState.OPEN
            self.opened_at = now
            if first:
                self.opened += 1
            return first
        return False
