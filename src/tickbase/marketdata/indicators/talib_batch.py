"""The batch path: TA-Lib itself over whole series (the reference the incremental path matches)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import talib

from tickbase.marketdata.bars import BarLike
from tickbase.marketdata.indicators.values import NAMES, IndicatorValues

__all__ = ["batch", "batch_arrays"]

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
