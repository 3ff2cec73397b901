"""The wire helpers every HTTP source shares: one parser of times and numbers, the payload shape checks, the base class.

A parser raises :class:`ValueError` naming what is wrong with one value; :func:`parse_rows`
turns that into :class:`~tickbase.errors.InvalidPayload` naming the source and the row, so
one bad row refuses the payload whole.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Literal, TypeVar

from tickbase.errors import InvalidPayload
from tickbase.marketdata.collector import (
    FailurePolicy,
    KlineRequest,
    Request,
    SeriesRequest,
    Source,
)

__all__ = [
    "EPOCH",
    "HttpSource",
    "TimeUnit",
    "expect_array",
    "expect_object",
    "json_kind",
    "kline_request",
    "parse_count",
    "parse_field",
    "parse_number",
    "parse_rows",
    "parse_time",
    "series_request",
    "stamp",
]

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

T = TypeVar("T")

TimeUnit = Literal["ms", "s", "date"]


def parse_time(value: Any, unit: TimeUnit) -> datetime:
    """A timezone-aware UTC time from a wire value; :class:`ValueError` says what is wrong.

    ``"ms"``/``"s"``: a whole count of milliseconds/seconds since the Unix epoch, as a JSON
    number or a string of digits (``1551157200``, ``"1551157200"``). ``"date"``: an ISO
    ``YYYY-MM-DD`` day, taken as 00:00 UTC.
    """
    if unit == "date":
        if not isinstance(value, str):
            raise ValueError(f"date {value!r} is not a string")
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise ValueError(f"date {value!r} is not YYYY-MM-DD") from None
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    what = "milliseconds" if unit == "ms" else "seconds"
    count: int
    if isinstance(value, bool):
        raise ValueError(f"time {value!r} is not a whole number of {what}")
    if isinstance(value, int):
        count = value
    elif (isinstance(value, float) and value.is_integer()) or (
        isinstance(value, str) and value.strip().removeprefix("-").isdigit()
    ):
        count = int(value)
    else:
        raise ValueError(f"time {value!r} is not a whole number of {what}")
    try:
        return EPOCH + (timedelta(milliseconds=count) if unit == "ms" else timedelta(seconds=count))
    except OverflowError:
        raise ValueError(f"time {value!r} ({what}) is out of range") from None


def parse_number(value: Any) -> float:
    """A finite float from a JSON number or a numeric string; :class:`ValueError` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{value!r} is not a number")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ValueError(f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number


def parse_count(value: Any) -> int:
    """A whole count from a JSON integer or a string of digits (a negative JSON integer
    passes: the caller checks the range, as :func:`check_klines` and the index's 0..100 do)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise ValueError(f"{value!r} is not a whole number")


def parse_field(name: str, value: Any, parse: Callable[[Any], T]) -> T:
    """``parse(value)``, its :class:`ValueError` prefixed with the field ``name``."""
    try:
        return parse(value)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def json_kind(value: Any) -> str:
    """How JSON would call ``value`` ("an object", "a string", ...)."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null" if value is None else type(value).__name__


def stamp(when: datetime) -> str:
    """``when`` as ISO 8601 with ``Z`` for UTC, as messages print times."""
    return when.isoformat().replace("+00:00", "Z")


def expect_array(source: str, raw: Any, what: str) -> list[Any]:
    """``raw`` if it is a JSON array; else :class:`InvalidPayload` saying it is not one of ``what``."""
    if not isinstance(raw, list):
        raise InvalidPayload(f"{source}: payload is {json_kind(raw)}, not an array of {what}")
    return raw


def expect_object(source: str, raw: Any, what: str) -> dict[str, Any]:
    """``raw`` if it is a JSON object; else :class:`InvalidPayload` saying it is not ``what``."""
    if not isinstance(raw, dict):
        raise InvalidPayload(f"{source}: payload is {json_kind(raw)}, not {what}")
    return raw


def parse_rows(source: str, rows: Sequence[Any], parse: Callable[[Any], T]) -> list[T]:
    """Every row through ``parse``; the first :class:`ValueError` refuses them all, naming the row."""
    parsed: list[T] = []
    for index, row in enumerate(rows):
        try:
            parsed.append(parse(row))
        except ValueError as exc:
            raise InvalidPayload(f"{source}: row {index}: {exc}") from None
    return parsed


def kline_request(source: str, request: Request) -> KlineRequest:
    """``request`` as a :class:`KlineRequest`; :class:`TypeError` (a caller's bug) otherwise."""
    if not isinstance(request, KlineRequest):
        raise TypeError(f"{source} serves klines: expected a KlineRequest, got {request!r}")
    return request


def series_request(source: str, request: Request) -> SeriesRequest:
    """``request`` as a :class:`SeriesRequest`; :class:`TypeError` (a caller's bug) otherwise."""
    if not isinstance(request, SeriesRequest):
        raise TypeError(f"{source} serves a series: expected a SeriesRequest, got {request!r}")
    return request


class HttpSource(Source):
    """A source behind one base URL, with an optional per-instance failure policy."""

    def __init__(self, base_url: str, *, policy: FailurePolicy | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        if policy is not None:
            self.policy = policy

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"
