"""Output for the CLI: Rich tables for people, one JSON document for programs."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NoReturn

from rich.console import Console
from rich.table import Table

# Piped output is not cut at 80 columns: a table read by a program or a log
# must keep whole ids and names.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

NO_WRAP_COLUMNS = frozenset({"id", "type", "status", "queue", "created"})
STATUS_STYLES = {
    "pending": "cyan",
    "running": "yellow",
    "retrying": "magenta",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "dim",
}


PRICE_DECIMALS_MAX = 8


def price_decimals(prices: Iterable[float | None]) -> int:
    """Decimals that show every one of ``prices`` as stored: an instrument's precision.

    EUR/USD quotes carry 5 decimals, ES futures 2, BTCUSDT 2; read from the
    values themselves (their shortest exact form), between 2 and 8.

    Example::

        price_decimals([1.08345, 1.0831])  # 5
    """
    decimals = 2
    for price in prices:
        if price is None or not math.isfinite(price):
            continue
        text = repr(float(price))
        if "e" in text:
            return PRICE_DECIMALS_MAX
        decimals = max(decimals, len(text.partition(".")[2].rstrip("0")))
    return min(decimals, PRICE_DECIMALS_MAX)


def format_price(value: float | None, decimals: int) -> str:
    """A price with its instrument's ``decimals`` and thousands separators."""
    return "" if value is None else f"{value:,.{decimals}f}"


def format_number(value: float) -> str:
    """A number rounded for reading: whole numbers without decimals, large ones
    with 2, around 1 with 3, small ones with 4 significant digits (never 0.000)."""
    if not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return f"{value:,.0f}"
    size = abs(value)
    if size >= 100:
        return f"{value:,.2f}"
    if size >= 1:
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    return f"{value:.4g}"


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


# Values under these keys are the user's own data (or a task's outcome), and
# keep their keys as written; everything else tickbase names is camelCase.
OPAQUE_KEYS = frozenset({"payload", "result", "error", "inputs", "progress", "params", "data"})
_json_errors = False


def camel_keys(value: Any) -> Any:
    """``value`` with tickbase's own keys in camelCase, as the HTTP API writes them.

    Example::

        camel_keys({"task_id": 1, "payload": {"my_arg": 2}})
        # {"taskId": 1, "payload": {"my_arg": 2}}
    """
    from pydantic.alias_generators import to_camel

    if isinstance(value, dict):
        return {
            to_camel(key) if isinstance(key, str) else key: (
                item if key in OPAQUE_KEYS else camel_keys(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [camel_keys(item) for item in value]
    return value


def as_api(model: Any, value: Any) -> Any:
    """``value`` serialised as the HTTP API serialises it with ``model`` (a schema of
    :mod:`tickbase.gateway.schemas`, or ``list[...]`` of one): one serialisation
    for both doors.

    Example::

        as_api(TaskOut, task.to_dict())  # {"id": 1, "taskType": ..., "runAt": "..."}
    """
    from pydantic import TypeAdapter

    adapter: TypeAdapter[Any] = TypeAdapter(model)
    return adapter.dump_python(adapter.validate_python(value), by_alias=True, mode="json")


def print_json(value: Any, model: Any = None) -> None:
    """One JSON document on stdout (no Rich markup, no wrapping), with the HTTP
    API's keys: through ``model`` when the API has one for the object, else with
    :func:`camel_keys`."""
    document = as_api(model, value) if model is not None else camel_keys(value)
    sys.stdout.write(json.dumps(document, default=_default, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def json_errors(enabled: bool) -> bool:
    """Typer callback of ``--json``: errors are then JSON on stderr too."""
    global _json_errors
    _json_errors = enabled
    return enabled


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """A Rich table; ``status`` columns are coloured."""
    out = Table(title=title, header_style="bold")
    for column in columns:
        out.add_column(column, overflow="fold", no_wrap=column in NO_WRAP_COLUMNS)
    status_index = columns.index("status") if "status" in columns else -1
    for row in rows:
        cells = []
        for index, cell in enumerate(row):
            text = _cell(cell)
            if index == status_index:
                text = f"[{STATUS_STYLES.get(text, 'white')}]{text}[/]"
            cells.append(text)
        out.add_row(*cells)
    console.print(out)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    if isinstance(value, float):
        return format_number(value)
    if isinstance(value, dict | list):
        text = json.dumps(value, default=_default, ensure_ascii=False)
        return text if len(text) <= 80 else text[:77] + "..."
    return str(value)


def fail(
    message: str, code: int = 1, *, error: str = "INVALID_INPUT", details: Any = None
) -> NoReturn:
    """Print an error to stderr and exit with ``code``.

    Under ``--json`` the error is one JSON document on stderr, in the HTTP
    API's shape: ``{"error": {"code": error, "message": message, "details": details}}``.
    """
    import typer

    if _json_errors:
        body = {"error": {"code": error, "message": message, "details": details}}
        sys.stderr.write(json.dumps(body, default=_default, ensure_ascii=False) + "\n")
        sys.stderr.flush()
        raise typer.Exit(code)
    err_console.print(f"[red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


def fail_with(exc: Exception, code: int = 1) -> NoReturn:
    """:func:`fail` for a tickbase error, with the code the HTTP API gives it."""
    from tickbase.gateway.errors import api_error

    fail(str(exc), code, error=api_error(exc).code)
