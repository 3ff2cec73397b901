"""One incremental calculator per indicator: EMA, RSI, ATR, MACD and Bollinger bands.

Each reproduces TA-Lib's floating-point operations in TA-Lib's order (the conventions are
listed in :mod:`tickbase.marketdata.indicators`), in O(1) per value, with a JSON
``state()`` and a ``from_state()`` that continues exactly where it stopped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from tickbase.marketdata.indicators.checks import (
    check_period,
    check_value,
    state_float,
    state_floats,
    state_value,
)

__all__ = ["Atr", "Bollinger", "Ema", "Macd", "Rsi"]


class Ema:
    """Exponential moving average, seeded like TA-Lib with the mean of the first ``n`` values.

    Example::

        ema = Ema(21)
        values = [ema.update(close) for close in closes]  # None for the first 20
    """

    __slots__ = ("_count", "_k", "_n", "_value")

    def __init__(self, n: int) -> None:
        self._n = check_period("n", n, minimum=1)
        # TA-Lib's PER_TO_K: 2.0 / (double)(per + 1).
        self._k = 2.0 / float(n + 1)
        self._count = 0
        # While warming up this is the running sum of the seed values, then the EMA.
        self._value = 0.0

    @property
    def value(self) -> float | None:
        """The current EMA, ``None`` while warming up."""
        return self._value if self._count >= self._n else None

    def update(self, close: float) -> float | None:
        """Add one value; return the EMA, or ``None`` for the first ``n - 1`` values."""
        x = check_value("close", close)
        return self._push(x)

    def _push(self, x: float) -> float | None:
        if self._count < self._n:
            self._value += x
            self._count += 1
            if self._count < self._n:
                return None
            self._value /= self._n
            return self._value
        self._value = (x - self._value) * self._k + self._value
        return self._value

    def state(self) -> dict[str, Any]:
        """Plain-JSON state; :meth:`from_state` continues from it."""
        return {"n": self._n, "count": self._count, "value": self._value}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Ema:
        """Rebuild a calculator from :meth:`state`; raises ``ValueError`` on a malformed dict."""
        ema = cls(state_value(state, "n", int))
        count = state_value(state, "count", int)
        if not 0 <= count <= ema._n:
            raise ValueError(f"indicator state 'count' out of range: {count}")
        ema._count = count
        ema._value = state_float(state, "value")
        return ema


class Rsi:
    """Relative Strength Index with Wilder smoothing, as TA-Lib's ``RSI`` (0 … 100).

    The first value comes with the ``n + 1``-th close. Example: ``Rsi(14).update(101.5)``.
    """

    __slots__ = ("_count", "_gain", "_loss", "_n", "_prev")

    def __init__(self, n: int = 14) -> None:
        self._n = check_period("n", n)
        self._count = 0  # closes seen, capped at n + 1 (past warm-up the count no longer matters)
        self._prev = 0.0
        self._gain = 0.0
        self._loss = 0.0

    def update(self, close: float) -> float | None:
        """Add one close; return the RSI, or ``None`` for the first ``n`` closes."""
        x = check_value("close", close)
        return self._push(x)

    def _push(self, x: float) -> float | None:
        n = self._n
        if self._count == 0:
            self._prev = x
            self._count = 1
            return None
        change = x - self._prev
        self._prev = x
        if self._count <= n:
            if change < 0:
                self._loss -= change
            else:
                self._gain += change
            self._count += 1
            if self._count <= n:
                return None
            self._loss /= n
            self._gain /= n
            return self._rsi()
        # TA-Lib multiplies, adds, then divides (not avg + (x - avg) / n): same order here.
        self._loss *= n - 1
        self._gain *= n - 1
        if change < 0:
            self._loss -= change
        else:
            self._gain += change
        self._loss /= n
        self._gain /= n
        return self._rsi()

    def _rsi(self) -> float:
        total = self._gain + self._loss
        return 100.0 * (self._gain / total) if total != 0.0 else 0.0

    def state(self) -> dict[str, Any]:
        """Plain-JSON state; :meth:`from_state` continues from it."""
        return {
            "n": self._n,
            "count": self._count,
            "prev": self._prev,
            "gain": self._gain,
            "loss": self._loss,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Rsi:
        """Rebuild a calculator from :meth:`state`; raises ``ValueError`` on a malformed dict."""
        rsi = cls(state_value(state, "n", int))
        count = state_value(state, "count", int)
        if not 0 <= count <= rsi._n + 1:
            raise ValueError(f"indicator state 'count' out of range: {count}")
        rsi._count = count
        rsi._prev = state_float(state, "prev")
        rsi._gain = state_float(state, "gain")
        rsi._loss = state_float(state, "loss")
        return rsi


class Atr:
    """Average True Range with Wilder smoothing, as TA-Lib's ``ATR``.

    The first bar only provides the previous close; the first ATR (bar ``n``, 0-based) is
    the mean of the true ranges of bars 1 … n. Example: ``Atr(14).update(high, low, close)``.
    """

    __slots__ = ("_count", "_n", "_prev_close", "_value")

    def __init__(self, n: int = 14) -> None:
        self._n = check_period("n", n)
        self._count = 0  # bars seen, capped at n + 1
        self._prev_close = 0.0
        self._value = 0.0  # sum of true ranges while warming up, then the ATR

    def update(self, high: float, low: float, close: float) -> float | None:
        """Add one bar; return the ATR, or ``None`` for the first ``n`` bars."""
        h = check_value("high", high)
        lo = check_value("low", low)
        c = check_value("close", close)
        if h < lo:
            raise ValueError(f"high {h!r} is below low {lo!r}")
        return self._push(h, lo, c)

    def _push(self, high: float, low: float, close: float) -> float | None:
        n = self._n
        if self._count == 0:
            self._prev_close = close
            self._count = 1
            return None
        prev = self._prev_close
        true_range = max(high - low, abs(prev - high), abs(prev - low))
        self._prev_close = close
        if self._count <= n:
            self._value += true_range
            self._count += 1
            if self._count <= n:
                return None
            self._value /= n
            return self._value
        self._value *= n - 1
        self._value += true_range
        self._value /= n
        return self._value

    def state(self) -> dict[str, Any]:
        """Plain-JSON state; :meth:`from_state` continues from it."""
        return {
            "n": self._n,
            "count": self._count,
            "prev_close": self._prev_close,
            "value": self._value,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Atr:
        """Rebuild a calculator from :meth:`state`; raises ``ValueError`` on a malformed dict."""
        atr = cls(state_value(state, "n", int))
        count = state_value(state, "count", int)
        if not 0 <= count <= atr._n + 1:
            raise ValueError(f"indicator state 'count' out of range: {count}")
        atr._count = count
        atr._prev_close = state_float(state, "prev_close")
        atr._value = state_float(state, "value")
        return atr


class Macd:
    """MACD line, signal and histogram, as TA-Lib's ``MACD(fast, slow, signal)``.

    Returns ``(macd, signal, hist)`` from value ``slow + signal - 2`` on (33 for 12/26/9).
    Example::

        macd = Macd(12, 26, 9)
        out = macd.update(close)  # None, or (macd, signal, hist)
    """

    __slots__ = ("_count", "_fast", "_signal", "_slow")

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        check_period("fast", fast)
        check_period("slow", slow)
        check_period("signal", signal, minimum=1)
        if fast >= slow:
            raise ValueError(f"fast ({fast}) must be shorter than slow ({slow})")
        self._fast = Ema(fast)
        self._slow = Ema(slow)
        self._signal = Ema(signal)
        self._count = 0  # closes seen, capped at slow - fast (when the fast EMA starts)

    def update(self, close: float) -> tuple[float, float, float] | None:
        """Add one close; return ``(macd, signal, hist)`` or ``None`` while warming up."""
        x = check_value("close", close)
        return self._push(x)

    def _push(self, x: float) -> tuple[float, float, float] | None:
        slow = self._slow._push(x)
        # TA-Lib seeds the fast EMA late, so that it yields its first value on the same bar
        # as the slow one: it skips the first slow - fast closes.
        if self._count < self._slow._n - self._fast._n:
            self._count += 1
            return None
        fast = self._fast._push(x)
        if fast is None or slow is None:
            return None
        line = fast - slow
        signal = self._signal._push(line)
        if signal is None:
            return None
        return line, signal, line - signal

    def state(self) -> dict[str, Any]:
        """Plain-JSON state; :meth:`from_state` continues from it."""
        return {
            "count": self._count,
            "fast": self._fast.state(),
            "slow": self._slow.state(),
            "signal": self._signal.state(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Macd:
        """Rebuild a calculator from :meth:`state`; raises ``ValueError`` on a malformed dict."""
        fast = Ema.from_state(state_value(state, "fast", dict))
        slow = Ema.from_state(state_value(state, "slow", dict))
        signal = Ema.from_state(state_value(state, "signal", dict))
        macd = cls(fast._n, slow._n, signal._n)
        count = state_value(state, "count", int)
        if not 0 <= count <= slow._n - fast._n:
            raise ValueError(f"indicator state 'count' out of range: {count}")
        macd._count = count
        macd._fast, macd._slow, macd._signal = fast, slow, signal
        return macd


class Bollinger:
    """Bollinger Bands over ``n`` closes with population σ, as TA-Lib's ``BBANDS`` (SMA).

    Returns ``(upper, middle, lower)`` from the ``n``-th close on. Like TA-Lib it keeps
    running sums of the values and of their squares (so a window of ``n - 1`` past closes
    plus two floats), which is what makes the result equal TA-Lib's rather than a two-pass
    window computation's. Example: ``Bollinger(20, 2.0).update(close)``.
    """

    __slots__ = ("_head", "_k", "_n", "_sum", "_sum2", "_window")

    def __init__(self, n: int = 20, k: float = 2.0) -> None:
        self._n = check_period("n", n)
        self._k = check_value("k", k)
        # The last n - 1 closes: a ring once full, _head pointing at the oldest.
        self._window: list[float] = []
        self._head = 0
        self._sum = 0.0
        self._sum2 = 0.0

    def update(self, close: float) -> tuple[float, float, float] | None:
        """Add one close; return ``(upper, middle, lower)`` or ``None`` while warming up."""
        x = check_value("close", close)
        return self._push(x)

    def _push(self, x: float) -> tuple[float, float, float] | None:
        n = self._n
        window = self._window
        if len(window) < n - 1:
            window.append(x)
            self._sum += x
            self._sum2 += x * x
            return None
        # TA-Lib's loop: add the new value, take the mean, then drop the oldest value; the
        # squares follow the same order.
        self._sum += x
        middle = self._sum / n
        self._sum2 += x * x
        mean2 = self._sum2 / n
        oldest = window[self._head]
        self._sum -= oldest
        self._sum2 -= oldest * oldest
        window[self._head] = x
        self._head = (self._head + 1) % (n - 1)
        variance = mean2 - middle * middle
        # Cancellation can make the variance of a flat window slightly negative: TA-Lib
        # takes σ = 0 then.
        sigma = math.sqrt(variance) if variance > 0.0 else 0.0
        width = sigma * self._k
        return middle + width, middle, middle - width

    def state(self) -> dict[str, Any]:
        """Plain-JSON state; :meth:`from_state` continues from it.

        The window is stored oldest first, so the layout does not depend on the ring's head.
        """
        window = self._window[self._head :] + self._window[: self._head]
        return {"n": self._n, "k": self._k, "window": window, "sum": self._sum, "sum2": self._sum2}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Bollinger:
        """Rebuild a calculator from :meth:`state`; raises ``ValueError`` on a malformed dict."""
        bands = cls(state_value(state, "n", int), state_float(state, "k"))
        bands._window = state_floats(state, "window", bands._n - 1)
        bands._sum = state_float(state, "sum")
        bands._sum2 = state_float(state, "sum2")
        return bands
