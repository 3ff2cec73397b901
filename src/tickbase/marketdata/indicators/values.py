"""The indicator row both paths produce: :data:`NAMES` and :class:`IndicatorValues`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

__all__ = ["NAMES", "IndicatorValues"]

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
