"""Shared CLI plumbing: settings from flags/env, running async commands, errors."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import typer

from tickbase.cli.render import fail, fail_with, json_errors
from tickbase.errors import TickbaseError

T = TypeVar("T")

DatabaseUrlOption = typer.Option(
    None,
    "--database-url",
    envvar="DATABASE_URL",
    help="PostgreSQL URL (else the embedded server).",
    show_envvar=True,
)
JsonOption = typer.Option(
    False,
    "--json",
    help="Print JSON instead of a table (errors too, on stderr).",
    callback=json_errors,
)
AppOption = typer.Option(
    None,
    "--app",
    envvar="TICKBASE_APP",
    show_envvar=True,
    help="Your task definitions, as module:attribute (an App).",
)


def stop_on_signals(stop: asyncio.Event) -> None:
    """Set ``stop`` on SIGTERM or SIGINT (a command that runs until told to stop)."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop when available; turn tickbase errors into exit 1."""
    try:
        return _run_loop(coro)
    except TickbaseError as exc:
        fail_with(exc)


def run_sync(call: Callable[[], T]) -> T:
    """``call()`` with tickbase errors turned into exit 1, like :func:`run`."""
    try:
        return call()
    except TickbaseError as exc:
        fail_with(exc)


def _run_loop(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    result: T = uvloop.run(coro)
    return result


def load_app(spec: str | None, database_url: str | None, *, market_data: bool = False) -> Any:
    """The user's App from ``module:attr``, or a fresh App with the built-in tasks.

    The market-data pipeline (unless ``TICKBASE_MARKET_DATA=0``) is on the
    fresh App, and on the user's with ``market_data`` (``tickbase up --app``
    runs everything ``tickbase up`` does, beside the user's tasks) unless that
    app installed it itself.
    """
    from tickbase.app import App

    if not spec:
        default_app = App(database_url)
        _with_market_data(default_app)
        return default_app
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        fail(f"--app must look like module:attribute, got {spec!r}")
    # As uvicorn and celery -A do: a module in the current directory is found
    # however tickbase was started (the console script does not put it on the path).
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        fail(f"cannot import {module_name!r} for --app: {exc}")
    app = getattr(module, attr, None)
    if not isinstance(app, App):
        fail(f"{spec!r} is not a tickbase.App (got {type(app).__name__})")
    if database_url:
        app.settings = app.settings.model_copy(update={"database_url": database_url})
    if market_data:
        _with_market_data(app)
    return app


def _with_market_data(app: Any) -> None:
    if app.settings.market_data and "marketdata" not in app.extensions:
        from tickbase.marketdata.pipeline import install

        install(app)


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("psycopg").setLevel(logging.WARNING)


async def with_app(
    database_url: str | None, body: Callable[[Any], Awaitable[T]], spec: str | None = None
) -> T:
    """Open an App for the duration of ``body(app)``.

    It never starts the embedded server (only ``db start``, ``up`` and the role
    commands do): a one-shot command against a stopped server says so.
    """
    app = load_app(spec, database_url)
    await app.open(start_server=False)
    try:
        return await body(app)
    finally:
        await app.close()
