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

from tickbase.marketdata.indicators.calculators import Atr, Bollinger, Ema, Macd, Rsi
from tickbase.marketdata.indicators.incremental import STATE_VERSION, IndicatorSet
from tickbase.marketdata.indicators.talib_batch import batch, batch_arrays
from tickbase.marketdata.indicators.values import NAMES, IndicatorValues

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
