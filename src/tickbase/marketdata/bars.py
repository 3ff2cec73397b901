"""OHLCV bars and the loader of bar CSV files (including the bundled sample series).

The file format is the one of ``marketdata/sample/`` (see its ``SOURCES.md``)::

    open_time,open,high,low,close,volume
    2017-04-19T09:00:00Z,1.0716,1.0722,1.07083,1.07219,1413

``open_time`` is ISO 8601 in UTC and is the time the bar *opens*. A file is loaded whole
or refused whole: :func:`load_bars` checks every row and reports all bad rows (with their
line numbers) in one :class:`InvalidBarFile`; :func:`read_bar_text` keeps the good rows
and lists the bad ones (for importers).
"""

from __future__ import annotations

import csv
import difflib
import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Protocol

from tickbase.errors import InvalidBar, InvalidBarFile

__all__ = [
    "COLUMNS",
    "Bar",
    "BarLike",
    "InvalidBar",
    "InvalidBarFile",
    "bar_problem",
    "load_bars",
    "read_bar_text",
    "sample_names",
]

COLUMNS = ("open_time", "open", "high", "low", "close", "volume")
"""The header of a bar file, in order."""


@dataclass(frozen=True, slots=True)
class Bar:
    """One OHLCV bar; ``open_time`` is timezone-aware UTC.

    Example: ``Bar(datetime(2017, 4, 19, 9, tzinfo=UTC), 1.0716, 1.0722, 1.07083, 1.07219, 1413.0)``.
    """

    open_time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


class BarLike(Protocol):
    """What the store and the batch indicators read of a bar: a :class:`Bar`, a
    :class:`~tickbase.marketdata.collector.Kline`, a stored K-line, ...

    The store also keeps Binance's other fields (``close_time``, ``quote_volume``,
    ``trade_count``, ``taker_buy_base_volume``, ``taker_buy_quote_volume``) and
    ``is_filled`` when the bar has them.
    """

    @property
    def open_time(self) -> datetime: ...
    @property
    def open(self) -> float: ...
    @property
    def high(self) -> float: ...
    @property
    def low(self) -> float: ...
    @property
    def close(self) -> float: ...
    @property
    def volume(self) -> float: ...


def sample_names() -> list[str]:
    """Names of the bundled sample series, e.g. ``["btcusd-1M", "es-1m", ...]``."""
    folder = resources.files("tickbase.marketdata") / "sample"
    return sorted(p.name[: -len(".csv")] for p in folder.iterdir() if p.name.endswith(".csv"))


def load_bars(path_or_name: str | os.PathLike[str]) -> list[Bar]:
    """Read and validate a bar CSV file; return its bars in file order.

    A :class:`~pathlib.Path`, or a string holding a path separator or ending in ``.csv``, is
    a file path; any other string names a bundled sample series (see :func:`sample_names`)::

        bars = load_bars("eurusd-1h")            # the bundled sample
        bars = load_bars(Path("data/my.csv"))     # a file of the same format

    Raises :class:`InvalidBarFile` listing every bad row (unparsable cell, non-finite number,
    high below open/close, low above them, negative volume, non-increasing ``open_time``),
    :class:`LookupError` for an unknown sample name.
    """
    if isinstance(path_or_name, os.PathLike):
        path = Path(path_or_name)
        return _parse(path.read_text(encoding="utf-8"), str(path))
    text = str(path_or_name)
    if os.sep in text or "/" in text or text.endswith(".csv"):
        return _parse(Path(text).read_text(encoding="utf-8"), text)
    names = sample_names()
    if text not in names:
        close = difflib.get_close_matches(text, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(names)}"
        raise LookupError(f"no sample bar series {text!r}{hint}")
    resource = resources.files("tickbase.marketdata") / "sample" / f"{text}.csv"
    return _parse(resource.read_text(encoding="utf-8"), f"sample {text}")


def _parse(text: str, source: str) -> list[Bar]:
    bars, problems = read_bar_text(text)
    if problems:
        raise InvalidBarFile(source, problems)
    return bars


def read_bar_text(text: str) -> tuple[list[Bar], list[tuple[int, str]]]:
    """The good bars of a bar file's text, and ``(line, message)`` for every bad row.

    For importers that keep what is good (``tickbase klines import``); a row
    whose time does not come after the last good bar's is refused too.
    """
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != COLUMNS:
        return [], [(1, f"header must be {','.join(COLUMNS)}, got {header!r}")]
    bars: list[Bar] = []
    problems: list[tuple[int, str]] = []
    # reader.line_num counts physical lines, so blank lines keep the numbers right.
    for row in reader:
        line = reader.line_num
        if not row:
            continue
        try:
            open_time = _row_time(row)
            if bars and open_time <= bars[-1].open_time:
                raise ValueError(
                    f"open_time {open_time.isoformat()} is not after the previous "
                    f"bar's {bars[-1].open_time.isoformat()} (out of order or duplicated)"
                )
            bars.append(_row_to_bar(open_time, row))
        except ValueError as exc:
            problems.append((line, str(exc)))
    return bars, problems


def _row_time(row: list[str]) -> datetime:
    if len(row) != len(COLUMNS):
        raise ValueError(f"expected {len(COLUMNS)} cells, got {len(row)}")
    stamp = row[0].strip()
    try:
        open_time = datetime.fromisoformat(stamp)
    except ValueError:
        raise ValueError(f"open_time {stamp!r} is not an ISO 8601 time") from None
    if open_time.tzinfo is None or open_time.utcoffset() != UTC.utcoffset(None):
        raise ValueError(f"open_time {stamp!r} must be in UTC (end in 'Z')")
    return open_time.astimezone(UTC)


def _row_to_bar(open_time: datetime, row: list[str]) -> Bar:
    values: list[float] = []
    for name, cell in zip(COLUMNS[1:], row[1:], strict=True):
        try:
            value = float(cell)
        except ValueError:
            raise ValueError(f"{name} {cell!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{name} {cell!r} is not a finite number")
        values.append(value)
    bar = Bar(open_time, *values)
    problem = bar_problem(bar)
    if problem is not None:
        raise ValueError(problem)
    return bar


def bar_problem(bar: BarLike) -> str | None:
    """Why ``bar`` cannot be stored (the rule of the klines table's price check), or None."""
    for name in ("open", "high", "low", "close", "volume"):
        if not math.isfinite(getattr(bar, name)):
            return f"{name} {getattr(bar, name)!r} is not a finite number"
    for name in ("open", "high", "low", "close"):
        if getattr(bar, name) <= 0:
            return f"{name} {getattr(bar, name)!r} is not a positive price"
    if bar.high < max(bar.open, bar.close):
        return f"high {bar.high!r} is below max(open, close) {max(bar.open, bar.close)!r}"
    if bar.low > min(bar.open, bar.close):
        return f"low {bar.low!r} is above min(open, close) {min(bar.open, bar.close)!r}"
    if bar.volume < 0:
        return f"volume {bar.volume!r} is negative"
    return None
