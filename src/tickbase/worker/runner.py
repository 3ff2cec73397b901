"""Running one handler: eager start, timeouts, results and errors as JSON.

Why eager start
    Most handlers of a market-data system are short, and many never suspend.
    Wrapping each in an ``asyncio.Task`` costs more than running it. So a
    handler's coroutine is first stepped directly (what Python 3.12 calls an
    eager task): if it returns without suspending, its result is recorded at
    once and no Task, timer or context copy is created. Only a handler that
    suspends is wrapped in a Task, which then carries its timeout and can be
    cancelled. A handler that never suspended could not have been interrupted
    by a timeout or a cancel anyway: both act at suspension points.
"""

from __future__ import annotations

import traceback
import types
from collections.abc import Coroutine, Generator
from typing import Any

from tickbase.queue.models import encode_json

TRACEBACK_LINES = 20
TRIM_MARKER = "_tickbase_trimmed"


@types.coroutine
def resume(coro: Coroutine[Any, Any, Any], pending: Any) -> Generator[Any, Any, Any]:
    """Continue a coroutine that was stepped once by hand and yielded ``pending``.

    Behaves as ``await coro`` would have from that point: the Task running this
    hands ``pending`` to the event loop, then resumes (or throws into) ``coro``.
    """
    while True:
        try:
            yield pending
        except BaseException as exc:
            # Forward cancellation (or any error thrown by the Task) into the handler.
            try:
                pending = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
            continue
        return (yield from coro)


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
