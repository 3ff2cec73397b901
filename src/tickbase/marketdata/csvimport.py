"""Reading bar files (``open_time,open,high,low,close,volume``) leniently:
every good row is kept, every bad one reported with its line number."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

COLUMNS = ("open_time", "open", "high", "low", "close", "volume")


@dataclass(frozen=True, slots=True)
class CsvBar:
    """One validated bar of a file."""

    open_time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True, slots=True)
class RowProblem:
    """A refused row: its line in the file and why."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


def read_bars(path: Path) -> tuple[list[CsvBar], list[RowProblem]]:
    """The good bars of ``path`` in file order, and the problems of the others.

    A row is refused when a field is missing or not a number, a price is not
    a finite positive number, the volume is negative, the bar is inconsistent
    (high below open/close or low above them) or its time does not come after
    the previous good bar's. A flat bar or a zero volume is valid market data.
    """
    with path.open(newline="", encoding="utf-8") as handle:
        return parse_rows(csv.reader(handle))


def parse_rows(rows: Iterable[list[str]]) -> tuple[list[CsvBar], list[RowProblem]]:
    """``read_bars`` over rows already split (the header first)."""
    bars: list[CsvBar] = []
    problems: list[RowProblem] = []
    iterator = iter(rows)
    header = next(iterator, None)
    if header is None or [h.strip() for h in header] != list(COLUMNS):
        return [], [RowProblem(1, f"the header must be {','.join(COLUMNS)}, got {header!r}")]
    for line, row in enumerate(iterator, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        try:
            bar = _bar(row)
        except ValueError as exc:
            problems.append(RowProblem(line, str(exc)))
            continue
        if bars and bar.open_time <= bars[-1].open_time:
            problems.append(
                RowProblem(
                    line,
                    f"open_time {bar.open_time.isoformat()} does not come after the previous"
                    f" bar's {bars[-1].open_time.isoformat()} (out of order or duplicated)",
                )
            )
            continue
        bars.append(bar)
    return bars, problems


def _bar(row: list[str]) -> CsvBar:
    if len(row) != len(COLUMNS):
        raise ValueError(f"expected {len(COLUMNS)} fields, got {len(row)}")
    stamp = row[0].strip()
    try:
        open_time = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"open_time {stamp!r} is not an ISO 8601 time") from None
    if open_time.tzinfo is None:
        raise ValueError(f"open_time {stamp!r} has no zone (write it in UTC, ending in Z)")
    values: dict[str, float] = {}
    for name, text in zip(COLUMNS[1:], row[1:], strict=True):
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{name} {text.strip()!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{name} {text.strip()!r} is not a finite number")
        values[name] = value
    for name in ("open", "high", "low", "close"):
        if values[name] <= 0:
            raise ValueError(f"{name} {values[name]!r} is not a positive price")
    if values["volume"] < 0:
        raise ValueError(f"volume {values['volume']!r} is negative")
    if values["high"] < max(values["open"], values["close"]):
        raise ValueError(f"high {values['high']!r} is below the open or the close")
    if values["low"] > min(values["open"], values["close"]):
        raise ValueError(f"low {values['low']!r} is above the open or the close")
    return CsvBar(open_time.astimezone(UTC), **values)
