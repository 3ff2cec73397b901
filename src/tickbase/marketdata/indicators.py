"""Technical indicators: incremental calculators (ours) and a batch path (TA-Lib).

Overview
--------
The six indicators of a series are EMA21, EMA55, RSI14, MACD(12, 26, 9), Bollinger(20, 2σ)
and ATR14. They are computed two ways that must agree:

- **Batch** (:func:`batch`, and :func:`batch_arrays` for plain columns): TA-Lib itself over
  whole numpy arrays. TA-Lib is the reference; we do not rewrite it.
- **Incremental** (:class:`IndicatorSet`, and one small class per indicator): O(1) time and
  memory per new bar, with a ``state()`` that is plain JSON and a ``from_state()`` that
  continues exactly as if the process had never stopped. TA-Lib keeps no state between
  calls, so this path is ours, written to reproduce TA-Lib's float operations one by one.

Matching TA-Lib bit for bit (near enough)
-----------------------------------------
Each class performs the same floating-point operations, in the same order, as TA-Lib's C
code, so the two agree to about 1e-15 (and 1e-12 for differences such as the MACD
histogram and the lower band). The conventions, from TA-Lib 0.6+ with the unstable period 0:

- EMA is seeded with the mean of the first ``n`` values (summed left to right, then divided);
  then ``ema = (x - ema) * k + ema`` with ``k = 2 / (n + 1)``.
- RSI and ATR use Wilder smoothing, ``avg = (avg * (n - 1) + x) / n``, seeded with the
  plain mean of the first ``n`` changes / true ranges. RSI is 0 when both averages are 0.
- MACD seeds the fast EMA late (from value ``slow - fast``), so fast and slow both start at
  value ``slow - 1``; the signal is an EMA of the MACD line; nothing is output before the
  signal exists (value ``slow + signal - 2``).
- Bollinger keeps TA-Lib's running sums rather than recomputing the window: the middle
  band is ``(sum + x) / n`` and σ² = ``(sum² + x²) / n - mid²`` (population), 0 when ≤ 0.
  The sums then drop the oldest value, exactly as TA-Lib's loop does.

State model
-----------
``state()`` of every calculator is a dict of ints, floats and lists of floats (JSON
round-trips floats exactly). Its size is bounded by the periods, never by the number of
bars seen. :class:`IndicatorSet` adds a ``version`` and the last bar's ``open_time``;
``from_state`` refuses a version it does not know.

Failure cases
-------------
A bar with a non-finite price or volume, a high below its low, a negative volume, or an
``open_time`` not after the previous bar's raises :class:`~tickbase.marketdata.bars.InvalidBar`
(a ``ValueError``) naming the field and the bar time, *before* anything is updated: a
refused bar leaves every calculator unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Final

import numpy as np
import numpy.typing as npt
import talib

from tickbase.errors import InvalidBar
from tickbase.marketdata.bars import BarLike

__all__ = [
    "NAMES",
    "STATE_VERSION",
    "Atr",
    "Bollinger",
    "Ema",
    "IndicatorSet",
    "IndicatorValues",
    "Macd",
    "Rsi",
    "batch",
    "batch_arrays",
]

NAMES: Final = (
    "ema21",
    "ema55",
    "rsi14",
    "macd",
    "macd_signal",
    "macd_hist",
    "bb_upper",
    "bb_middle",
    "bb_lower",
    "atr14",
)
"""The ten value columns of :class:`IndicatorValues`, in output order."""

STATE_VERSION: Final = 1
"""Version of :meth:`IndicatorSet.state`; bump it when the layout changes."""


def _check_period(name: str, value: int, minimum: int = 2) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _problem(value: object) -> str | None:
    """Why ``value`` cannot be a price or volume, or ``None`` when it can."""
    # bool is an int: refuse it so that a flag passed by mistake is not read as a price.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "is not a number"
    if not math.isfinite(value):
        return "is not a finite number"
    return None


def _check_value(name: str, value: float) -> float:
    problem = _problem(value)
    if problem is not None:
        raise ValueError(f"{name} {value!r} {problem}")
    return float(value)


def _get(state: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    try:
        value = state[key]
    except (KeyError, TypeError):
        raise ValueError(f"indicator state lacks {key!r}: {state!r}") from None
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"indicator state {key!r} has a bad value {value!r}")
    return value


def _get_float(state: Mapping[str, Any], key: str) -> float:
    return _as_float(key, _get(state, key, (int, float)))


def _as_float(key: str, raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError(f"indicator state {key!r} has a bad value {raw!r}")
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(f"indicator state {key!r} is not finite: {value!r}")
    return value


def _get_optional_float(state: Mapping[str, Any], key: str) -> float | None:
    if key in state and state[key] is None:
        return None
    return _get_float(state, key)


def _get_floats(state: Mapping[str, Any], key: str, max_len: int) -> list[float]:
    values = _get(state, key, list)
    if len(values) > max_len:
        raise ValueError(f"indicator state {key!r} holds {len(values)} values, at most {max_len}")
    return [_as_float(key, v) for v in values]


class Ema:
    """Exponential moving average, seeded like TA-Lib with the mean of the first ``n`` values.

    Example::

        ema = Ema(21)
        values = [ema.update(close) for close in closes]  # None for the first 20
    """

    __slots__ = ("_count", "_k", "_n", "_value")

    def __init__(self, n: int) -> None:
        self._n = _check_period("n", n, minimum=1)
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
        x = _check_value("close", close)
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
        ema = cls(_get(state, "n", int))
        count = _get(state, "count", int)
        if not 0 <= count <= ema._n:
            raise ValueError(f"indicator state 'count' out of range: {count}")
        ema._count = count
        ema._value = _get_float(state, "value")
        return ema


class Rsi:
    """Relative Strength Index with Wilder smoothing, as TA-Lib's ``RSI`` (0 … 100).

    The first value comes with the ``n + 1``-th close. Example: ``Rsi(14).update(101.5)``.
    """

    __slots__ = ("_count", "_gain", "_loss", "_n", "_prev")

    def __init__(self, n: int = 14) -> None:
        self._n = _check_period("n", n)
        self._count = 0  # closes seen, capped at n + 1 (past warm-up the count no longer matters)
        self._prev = 0.0
        self._gain = 0.0
        self._loss = 0.0

    def update(self, close: float) -> float | None:
        """Add one close; return the RSI, or ``None`` for the first ``n`` closes."""
        x = _check_value("close", close)
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
        rsi = cls(_get(state, "n", int))
        count = _get(state, "count", int)
        if not 0 <= count <= rsi._n + 1:
            raise ValueError(f"indicator state 'count' out of range: {count}")
        rsi._count = count
        rsi._prev = _get_float(state, "prev")
        rsi._gain = _get_float(state, "gain")
        rsi._loss = _get_float(state, "loss")
        return rsi


class Atr:
    """Average True Range with Wilder smoothing, as TA-Lib's ``ATR``.

    The first bar only provides the previous close; the first ATR (bar ``n``, 0-based) is
    the mean of the true ranges of bars 1 … n. Example: ``Atr(14).update(high, low, close)``.
    """

    __slots__ = ("_count", "_n", "_prev_close", "_value")

    def __init__(self, n: int = 14) -> None:
        self._n = _check_period("n", n)
        self._count = 0  # bars seen, capped at n + 1
        self._prev_close = 0.0
        self._value = 0.0  # sum of true ranges while warming up, then the ATR

    def update(self, high: float, low: float, close: float) -> float | None:
        """Add one bar; return the ATR, or ``None`` for the first ``n`` bars."""
        h = _check_value("high", high)
        lo = _check_value("low", low)
        c = _check_value("close", close)
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
        atr = cls(_get(state, "n", int))
        count = _get(state, "count", int)
        if not 0 <= count <= atr._n + 1:
            raise ValueError(f"indicator state 'count' out of range: {count}")
        atr._count = count
        atr._prev_close = _get_float(state, "prev_close")
        atr._value = _get_float(state, "value")
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
        _check_period("fast", fast)
        _check_period("slow", slow)
        _check_period("signal", signal, minimum=1)
        if fast >= slow:
            raise ValueError(f"fast ({fast}) must be shorter than slow ({slow})")
        self._fast = Ema(fast)
        self._slow = Ema(slow)
        self._signal = Ema(signal)
        self._count = 0  # closes seen, capped at slow - fast (when the fast EMA starts)

    def update(self, close: float) -> tuple[float, float, float] | None:
        """Add one close; return ``(macd, signal, hist)`` or ``None`` while warming up."""
        x = _check_value("close", close)
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
        fast = Ema.from_state(_get(state, "fast", dict))
        slow = Ema.from_state(_get(state, "slow", dict))
        signal = Ema.from_state(_get(state, "signal", dict))
        macd = cls(fast._n, slow._n, signal._n)
        count = _get(state, "count", int)
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
        self._n = _check_period("n", n)
        self._k = _check_value("k", k)
        # The last n - 1 closes: a ring once full, _head pointing at the oldest.
        self._window: list[float] = []
        self._head = 0
        self._sum = 0.0
        self._sum2 = 0.0

    def update(self, close: float) -> tuple[float, float, float] | None:
        """Add one close; return ``(upper, middle, lower)`` or ``None`` while warming up."""
        x = _check_value("close", close)
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
        bands = cls(_get(state, "n", int), _get_float(state, "k"))
        bands._window = _get_floats(state, "window", bands._n - 1)
        bands._sum = _get_float(state, "sum")
        bands._sum2 = _get_float(state, "sum2")
        return bands


@dataclass(frozen=True, slots=True)
class IndicatorValues:
    """The indicator values after one bar; each is ``None`` while that indicator warms up.

    Example: ``IndicatorValues(open_time=t, ema21=1.0712, ema55=None, ...)``.
    """

    open_time: datetime
    ema21: float | None
    ema55: float | None
    rsi14: float | None
    macd: float | None
    macd_signal: float | None
    macd_hist: float | None
    bb_upper: float | None
    bb_middle: float | None
    bb_lower: float | None
    atr14: float | None

    def values(self) -> tuple[float | None, ...]:
        """The ten values in :data:`NAMES` order (without ``open_time``)."""
        return (
            self.ema21,
            self.ema55,
            self.rsi14,
            self.macd,
            self.macd_signal,
            self.macd_hist,
            self.bb_upper,
            self.bb_middle,
            self.bb_lower,
            self.atr14,
        )

    def row(self) -> dict[str, Any]:
        """``open_time`` (ISO 8601) and the ten values by name: one line of
        ``tickbase indicators --json``."""
        return {
            "open_time": self.open_time.isoformat(),
            **dict(zip(NAMES, self.values(), strict=True)),
        }


def _slot_setter(name: str) -> Callable[[IndicatorValues, Any], None]:
    setter: Callable[[IndicatorValues, Any], None] = getattr(IndicatorValues, name).__set__
    return setter


# IndicatorSet.update builds its rows slot by slot: the frozen dataclass's own __init__ goes
# through object.__setattr__ once per field, which costs more than all six indicators.
_new_values = object.__new__
_set_open_time = _slot_setter("open_time")
_set_ema21 = _slot_setter("ema21")
_set_ema55 = _slot_setter("ema55")
_set_rsi14 = _slot_setter("rsi14")
_set_macd = _slot_setter("macd")
_set_macd_signal = _slot_setter("macd_signal")
_set_macd_hist = _slot_setter("macd_hist")
_set_bb_upper = _slot_setter("bb_upper")
_set_bb_middle = _slot_setter("bb_middle")
_set_bb_lower = _slot_setter("bb_lower")
_set_atr14 = _slot_setter("atr14")
_sqrt = math.sqrt

# The periods of IndicatorSet (from_state refuses others); the fast path divides and
# multiplies by them as floats, which gives the same results as the calculators' ints
# (an int operand is converted to exactly this float) without the mixed-type arithmetic.
_RSI_PERIOD = 14
_BB_PERIOD = 20
_ATR_PERIOD = 14
_RSI_N = float(_RSI_PERIOD)
_RSI_N_LESS_1 = float(_RSI_PERIOD - 1)
_BB_N = float(_BB_PERIOD)
_BB_WINDOW = _BB_PERIOD - 1
_ATR_N = float(_ATR_PERIOD)
_ATR_N_LESS_1 = float(_ATR_PERIOD - 1)


class IndicatorSet:
    """All six indicators of one series, updated bar by bar in O(1), restorable from JSON.

    Example::

        indicators = IndicatorSet()
        for bar in load_bars("eurusd-1h"):
            row = indicators.update(bar.open_time, bar.open, bar.high, bar.low, bar.close, bar.volume)
        saved = json.dumps(indicators.state())          # store it with the last bar
        indicators = IndicatorSet.from_state(json.loads(saved))  # after a restart

    Speed: once every indicator is past its warm-up (bar 55 on), a bar of plain ``float``
    prices takes a fast path that performs each calculator's steady-state arithmetic
    inline, on the calculators' own fields, in the same order as their ``_push``: same
    floats, same state, fewer calls. Anything else (warm-up, ``int`` or numpy prices, a bar
    that will be refused) takes the general path, which checks and reports as documented.
    """

    NAMES: ClassVar[tuple[str, ...]] = NAMES

    __slots__ = (
        "_atr",
        "_bands",
        "_ema21",
        "_ema55",
        "_last_open_time",
        "_macd",
        "_rsi",
        "_warm",
    )

    def __init__(self) -> None:
        self._ema21 = Ema(21)
        self._ema55 = Ema(55)
        self._rsi = Rsi(_RSI_PERIOD)
        self._macd = Macd(12, 26, 9)
        self._bands = Bollinger(_BB_PERIOD, 2.0)
        self._atr = Atr(_ATR_PERIOD)
        self._last_open_time: datetime | None = None
        self._warm = False

    @property
    def last_open_time(self) -> datetime | None:
        """``open_time`` of the last bar accepted, ``None`` before the first."""
        return self._last_open_time

    def update(
        self,
        open_time: datetime,
        open: float,
        high: float,
        low: float,
        close: float,
        volume: float,
    ) -> IndicatorValues:
        """Add the next bar of the series and return every indicator's value after it.

        Raises :class:`~tickbase.marketdata.bars.InvalidBar` (a ``ValueError``) for a
        non-finite or non-numeric price or volume, ``high < low``, a negative volume, or an
        ``open_time`` that is naive or not after the previous bar's; nothing changes then.
        """
        last = self._last_open_time
        # The fast path's gate. Any bar it lets through would pass every check of
        # _update_checked; anything else (a bad bar included) goes there. A sum of finite
        # floats times 0.0 is 0.0; an inf or nan anywhere makes it nan. (A finite sum that
        # overflows only sends a good bar the long way round.)
        if not (
            self._warm
            and type(close) is float
            and type(high) is float
            and type(low) is float
            and type(open) is float
            and type(volume) is float
            and (open + high + low + close + volume) * 0.0 == 0.0
            and low <= high
            and volume >= 0.0
            and type(open_time) is datetime
            and open_time.tzinfo is not None
            and last is not None
            and open_time > last
        ):
            return self._update_checked(open_time, open, high, low, close, volume)
        self._last_open_time = open_time
        # Each block below is the steady-state branch of that calculator's _push, operation
        # for operation (tests compare both paths, and TA-Lib, float for float).
        ema = self._ema21
        value = ema._value
        ema21 = (close - value) * ema._k + value
        ema._value = ema21

        ema = self._ema55
        value = ema._value
        ema55 = (close - value) * ema._k + value
        ema._value = ema55

        rsi = self._rsi
        change = close - rsi._prev
        rsi._prev = close
        loss = rsi._loss * _RSI_N_LESS_1
        gain = rsi._gain * _RSI_N_LESS_1
        if change < 0.0:
            loss -= change
        else:
            gain += change
        loss /= _RSI_N
        gain /= _RSI_N
        rsi._loss = loss
        rsi._gain = gain
        total = gain + loss
        rsi14 = 100.0 * (gain / total) if total != 0.0 else 0.0

        macd = self._macd
        ema = macd._slow
        value = ema._value
        slow = (close - value) * ema._k + value
        ema._value = slow
        ema = macd._fast
        value = ema._value
        fast = (close - value) * ema._k + value
        ema._value = fast
        line = fast - slow
        ema = macd._signal
        value = ema._value
        signal = (line - value) * ema._k + value
        ema._value = signal

        bands = self._bands
        window = bands._window
        head = bands._head
        total = bands._sum + close
        middle = total / _BB_N
        total2 = bands._sum2 + close * close
        mean2 = total2 / _BB_N
        oldest = window[head]
        bands._sum = total - oldest
        bands._sum2 = total2 - oldest * oldest
        window[head] = close
        head += 1
        bands._head = head if head < _BB_WINDOW else 0
        variance = mean2 - middle * middle
        width = (_sqrt(variance) if variance > 0.0 else 0.0) * bands._k

        atr = self._atr
        prev = atr._prev_close
        # max(high - low, abs(prev - high), abs(prev - low)) without the calls: max keeps
        # the first of equal values, and so does a strict comparison; a negated -0.0 never
        # beats high - low >= 0.0, so skipping abs's sign flip of zero changes nothing.
        true_range = high - low
        change = prev - high
        if change < 0.0:
            change = -change
        if change > true_range:
            true_range = change
        change = prev - low
        if change < 0.0:
            change = -change
        if change > true_range:
            true_range = change
        atr._prev_close = close
        atr14 = (atr._value * _ATR_N_LESS_1 + true_range) / _ATR_N
        atr._value = atr14

        row: IndicatorValues = _new_values(IndicatorValues)
        _set_open_time(row, open_time)
        _set_ema21(row, ema21)
        _set_ema55(row, ema55)
        _set_rsi14(row, rsi14)
        _set_macd(row, line)
        _set_macd_signal(row, signal)
        _set_macd_hist(row, line - signal)
        _set_bb_upper(row, middle + width)
        _set_bb_middle(row, middle)
        _set_bb_lower(row, middle - width)
        _set_atr14(row, atr14)
        return row

    def _update_checked(
        self,
        open_time: datetime,
        open: float,
        high: float,
        low: float,
        close: float,
        volume: float,
    ) -> IndicatorValues:
        """:meth:`update` for any bar: every check, then each calculator's ``_push``."""
        if not isinstance(open_time, datetime) or open_time.tzinfo is None:
            raise InvalidBar("open_time", open_time, open_time, "must be a timezone-aware datetime")
        if self._last_open_time is not None and open_time <= self._last_open_time:
            raise InvalidBar(
                "open_time",
                open_time,
                open_time,
                f"is not after the previous bar's {self._last_open_time.isoformat()}",
            )
        fields = (("open", open), ("high", high), ("low", low), ("close", close))
        for name, raw in (*fields, ("volume", volume)):
            problem = _problem(raw)
            if problem is not None:
                raise InvalidBar(name, raw, open_time, problem)
        h, lo, c = float(high), float(low), float(close)
        if h < lo:
            raise InvalidBar("high", high, open_time, f"is below low {low!r}")
        if volume < 0:
            raise InvalidBar("volume", volume, open_time, "is negative")
        # Every check is done: from here on nothing can fail half-way.
        self._last_open_time = open_time
        macd = self._macd._push(c)
        line, signal, hist = macd if macd is not None else (None, None, None)
        bands = self._bands._push(c)
        upper, middle, lower = bands if bands is not None else (None, None, None)
        row = IndicatorValues(
            open_time=open_time,
            ema21=self._ema21._push(c),
            ema55=self._ema55._push(c),
            rsi14=self._rsi._push(c),
            macd=line,
            macd_signal=signal,
            macd_hist=hist,
            bb_upper=upper,
            bb_middle=middle,
            bb_lower=lower,
            atr14=self._atr._push(h, lo, c),
        )
        if not self._warm:
            self._warm = self._warmed_up()
        return row

    def _warmed_up(self) -> bool:
        """Whether every calculator is past its warm-up (the fast path of :meth:`update`)."""
        macd = self._macd
        return (
            self._ema21._count >= self._ema21._n
            and self._ema55._count >= self._ema55._n
            and self._rsi._count > self._rsi._n
            and macd._count >= macd._slow._n - macd._fast._n
            and macd._fast._count >= macd._fast._n
            and macd._slow._count >= macd._slow._n
            and macd._signal._count >= macd._signal._n
            and len(self._bands._window) >= self._bands._n - 1
            and self._atr._count > self._atr._n
        )

    def update_bar(self, bar: BarLike) -> IndicatorValues:
        """:meth:`update` with a :class:`~tickbase.marketdata.bars.Bar`."""
        return self.update(bar.open_time, bar.open, bar.high, bar.low, bar.close, bar.volume)

    def state(self) -> dict[str, Any]:
        """Plain-JSON state (``version`` included); its size does not grow with the bars seen."""
        last = self._last_open_time
        return {
            "version": STATE_VERSION,
            "last_open_time": last.isoformat() if last is not None else None,
            "ema21": self._ema21.state(),
            "ema55": self._ema55.state(),
            "rsi14": self._rsi.state(),
            "macd": self._macd.state(),
            "bbands": self._bands.state(),
            "atr14": self._atr.state(),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> IndicatorSet:
        """Rebuild from :meth:`state`; refuses an unknown ``version`` or a malformed dict."""
        version = state.get("version") if isinstance(state, Mapping) else None
        if version != STATE_VERSION:
            raise ValueError(
                f"indicator state version {version!r} is not supported "
                f"(this code reads version {STATE_VERSION})"
            )
        restored = cls()
        restored._ema21 = Ema.from_state(_get(state, "ema21", dict))
        restored._ema55 = Ema.from_state(_get(state, "ema55", dict))
        restored._rsi = Rsi.from_state(_get(state, "rsi14", dict))
        restored._macd = Macd.from_state(_get(state, "macd", dict))
        restored._bands = Bollinger.from_state(_get(state, "bbands", dict))
        restored._atr = Atr.from_state(_get(state, "atr14", dict))
        expected = {"ema21": 21, "ema55": 55, "rsi14": _RSI_PERIOD, "atr14": _ATR_PERIOD}
        actual = {
            "ema21": restored._ema21._n,
            "ema55": restored._ema55._n,
            "rsi14": restored._rsi._n,
            "atr14": restored._atr._n,
        }
        if actual != expected or restored._bands._n != _BB_PERIOD:
            raise ValueError(f"indicator state has unexpected periods: {actual!r}")
        last = state.get("last_open_time")
        if last is not None:
            if not isinstance(last, str):
                raise ValueError(f"indicator state 'last_open_time' has a bad value {last!r}")
            restored._last_open_time = datetime.fromisoformat(last)
        restored._warm = restored._warmed_up()
        return restored


_FloatArray = npt.NDArray[np.float64]

# talib's __init__ re-exports MA_Type without listing it in __all__, so strict mypy calls it
# private; at run time MA_Type.SMA is the int 0 that TA-Lib's C API expects.
_SMA = talib.MA_Type.SMA  # type: ignore[attr-defined]


def _column(bars: Sequence[BarLike], name: str) -> _FloatArray:
    return np.fromiter((getattr(b, name) for b in bars), dtype=np.float64, count=len(bars))


def _optional(value: Any) -> float | None:
    number = float(value)
    return None if math.isnan(number) else number


def batch_arrays(
    high: npt.ArrayLike, low: npt.ArrayLike, close: npt.ArrayLike
) -> dict[str, _FloatArray]:
    """TA-Lib over whole columns: one float64 array per name of :data:`NAMES`, in that order.

    The columns are one series' highs, lows and closes, oldest first, of equal length and
    valid (finite, ``high >= low``); warm-up positions hold NaN. This is TA-Lib's own speed,
    with no Python object per bar. Example::

        columns = batch_arrays(highs, lows, closes)
        columns["rsi14"][-1]  # the RSI after the last bar
    """
    h = np.ascontiguousarray(high, dtype=np.float64)
    lo = np.ascontiguousarray(low, dtype=np.float64)
    c = np.ascontiguousarray(close, dtype=np.float64)
    if not h.ndim == lo.ndim == c.ndim == 1 or not len(h) == len(lo) == len(c):
        raise ValueError(
            f"high, low and close must be 1-D columns of one length, got shapes "
            f"{h.shape}, {lo.shape} and {c.shape}"
        )
    columns: list[_FloatArray] = [
        talib.EMA(c, timeperiod=21),
        talib.EMA(c, timeperiod=55),
        talib.RSI(c, timeperiod=14),
        *talib.MACD(c, fastperiod=12, slowperiod=26, signalperiod=9),
        *talib.BBANDS(c, timeperiod=20, nbdevup=2.0, nbdevdn=2.0, matype=_SMA),
        talib.ATR(h, lo, c, timeperiod=14),
    ]
    return dict(zip(NAMES, columns, strict=True))


def batch(bars: Iterable[BarLike]) -> list[IndicatorValues]:
    """Compute every indicator over a whole series with TA-Lib, one row per bar.

    The bars (anything with ``open_time``, ``high``, ``low`` and ``close``) must be valid, as
    :func:`~tickbase.marketdata.bars.load_bars` returns them; warm-up rows hold ``None``. Example: ``rows = batch(load_bars("goog-1d"))``. For the
    columns as arrays, without a row object per bar, see :func:`batch_arrays`.
    """
    series = list(bars)
    if not series:
        return []
    columns = batch_arrays(
        _column(series, "high"), _column(series, "low"), _column(series, "close")
    )
    rows = zip(*(column.tolist() for column in columns.values()), strict=True)
    return [
        IndicatorValues(bar.open_time, *(_optional(v) for v in row))
        for bar, row in zip(series, rows, strict=True)
    ]
