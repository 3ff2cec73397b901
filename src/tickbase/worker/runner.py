"""Encoding what a handler produced: results (trimmed) and errors as JSON."""

from __future__ import annotations

import traceback
from typing import Any

from tickbase.queue.models import encode_json

TRACEBACK_LINES = 20
TRIM_MARKER = "_tickbase_trimmed"


def encode_result(value: Any, max_bytes: int) -> str:
    """The JSON stored as a task's result, trimmed past ``max_bytes`` with a marker.

    Raises ``TypeError``/``ValueError`` (via InvalidTask) when the value is not
    JSON: the task then fails with that message.
    """
    text = encode_json(value, "result")
    if len(text) <= max_bytes:
        return text
    return encode_json(
        {
            TRIM_MARKER: True,
            "original_bytes": len(text.encode()),
            "preview": text[: max_bytes // 2],
        },
        "result",
    )


def encode_error(exc: BaseException, *, message: str | None = None) -> str:
    """``{"type", "message", "traceback"}`` of an exception, as JSON text."""
    kind = type(exc)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    lines = traceback.format_exception(exc)
    short = "".join(lines)[-4000:].splitlines()[-TRACEBACK_LINES:]
    return encode_json(
        {
            "type": name,
            "message": message if message is not None else str(exc),
            "traceback": "\n".join(short),
        },
        "error",
    )


def encode_error_message(kind: str, message: str) -> str:
    """An error without an exception object (no handler, lease lost)."""
    return encode_json({"type": kind, "message": message, "traceback": None}, "error")
