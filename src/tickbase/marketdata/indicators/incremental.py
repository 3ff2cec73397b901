"""The incremental path: :class:`IndicatorSet`, all six calculators of one series, with a fast path.

See :class:`IndicatorSet` for the fast path (steady-state arithmetic inline) and
:mod:`tickbase.marketdata.indicators` for the state model and the failure cases.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, ClassVar, Final

import numpy as np
import numpy.typing as npt

from tickbase.errors import InvalidBar
from tickbase.marketdata.bars import BarLike
from tickbase.marketdata.indicators.calculators import Atr, Bollinger, Ema, Macd, Rsi
from tickbase.marketdata.indicators.checks import state_value, value_problem
from tickbase.marketdata.indicators.values import NAMES, IndicatorValues

__all__ = ["STATE_VERSION", "IndicatorSet"]

STATE_VERSION: Final = 1
"""Version of :meth:`IndicatorSet.state`; bump it when the layout changes."""


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
            problem = value_problem(raw)
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
        restored._ema21 = Ema.from_state(state_value(state, "ema21", dict))
        restored._ema55 = Ema.from_state(state_value(state, "ema55", dict))
        restored._rsi = Rsi.from_state(state_value(state, "rsi14", dict))
        restored._macd = Macd.from_state(state_value(state, "macd", dict))
        restored._bands = Bollinger.from_state(state_value(state, "bbands", dict))
        restored._atr = Atr.from_state(state_value(state, "atr14", dict))
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
