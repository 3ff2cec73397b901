"""Long-running roles (``up``, ``worker``) and ``enqueue``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import typer

from tickbase.cli.common import (
    AppOption,
    DatabaseUrlOption,
    JsonOption,
    configure_logging,
    load_app,
    run,
    stop_on_signals,
    with_app,
)
from tickbase.cli.render import console, fail, print_json


async def _start_realtime(app: Any) -> Any:
    """``tickbase up``'s real-time pipeline (unless ``TICKBASE_REALTIME=0``): the default
    symbols from the live stream, or from the bundled trades when none answers."""
    settings = app.settings
    if not settings.realtime:
        return None
    from tickbase.marketdata.pipeline import split_names
    from tickbase.marketdata.realtime.runner import LiveRun, choose_source, parse_intervals

    symbols = split_names(settings.market_symbols)
    intervals = parse_intervals(settings.realtime_intervals)
    choice = await choose_source(settings, symbols)
    live = LiveRun(
        app.pool,
        choice,
        symbols,
        intervals=intervals,
        workers=settings.realtime_workers,
        binance_url=settings.binance_url,
        lateness_ms=settings.realtime_lateness_ms,
        backfill_margin_ms=settings.realtime_backfill_margin_ms,
    )
    await live.start()
    from tickbase.marketdata.realtime.metrics import NodeReport

    app.extensions["realtime"] = live.pipeline
    app.node_reports["realtime"] = NodeReport(live.pipeline.figures)
    console.print(
        f"{choice.said}; bars of {', '.join(intervals)} form live (TICKBASE_REALTIME=0: off)"
    )
    return live


async def _print_bootstrap_token(app: Any) -> None:
    """On the embedded database's first start: create an admin token and show it once."""
    from tickbase.gateway.auth import TokenStore

    created = await TokenStore(app.pool).ensure_bootstrap_admin()
    if created is not None:
        console.print(
            f"admin token (shown once, store it now): [bold]{created.token}[/]\n"
            "  use it as 'Authorization: Bearer <token>'; more with `tickbase tokens create`"
        )


def _parse_queues(queues: str | None) -> list[str] | None:
    if not queues:
        return None
    names = [q.strip() for q in queues.split(",") if q.strip()]
    from tickbase.queue.models import QUEUE_NAME

    for name in names:
        if not QUEUE_NAME.match(name):
            fail(f"invalid queue name {name!r}: use letters, digits or _ . : -")
    return names


async def _run_roles(app: Any, *, api: tuple[str, int] | None = None, **roles: Any) -> None:
    """Open the app and run the given roles (and the gateway on ``api``) until SIGTERM/SIGINT."""
    stop = asyncio.Event()
    stop_on_signals(stop)
    async with app:
        await _serve_roles(app, stop, api=api, **roles)


async def _serve_roles(
    app: Any, stop: asyncio.Event, *, api: tuple[str, int] | None = None, **roles: Any
) -> None:
    """Run the node's roles and, with ``api``, the gateway; one failing stops all."""
    jobs = [asyncio.create_task(app.run(stop=stop, other_roles=["api"] if api else [], **roles))]
    if api is not None:
        from tickbase.gateway.app import create_gateway, serve

        host, port = api
        jobs.append(
            asyncio.create_task(serve(create_gateway(app), host=host, port=port, stop=stop))
        )
    try:
        await asyncio.wait(jobs, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.set()
        results = await asyncio.gather(*jobs, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


HostOption = typer.Option("127.0.0.1", "--host", envvar="TICKBASE_API_HOST", help="API address.")
PortOption = typer.Option(
    8000, "--port", min=0, max=65535, envvar="TICKBASE_API_PORT", help="API port."
)


def register_run_commands(cli: typer.Typer) -> None:
    """Add ``up``, ``worker`` and ``enqueue`` to the root CLI."""

    @cli.command()
    def worker(
        app_spec: str | None = AppOption,
        queues: str | None = typer.Option(
            None,
            "--queues",
            "-q",
            envvar="TICKBASE_QUEUES",
            help="Comma-separated queues (default: all).",
        ),
        concurrency: int = typer.Option(
            10,
            "--concurrency",
            "-c",
            min=1,
            max=10_000,
            envvar="TICKBASE_CONCURRENCY",
            help="Handlers running at once.",
        ),
        database_url: str | None = DatabaseUrlOption,
        verbose: bool = typer.Option(False, "--verbose", "-v"),
    ) -> None:
        """Run a worker until SIGTERM/SIGINT; running tasks get a grace period."""
        configure_logging(verbose)
        queue_names = _parse_queues(queues)
        app = load_app(app_spec, database_url)

        run(_run_roles(app, scheduler=False, queues=queue_names, concurrency=concurrency))

    @cli.command()
    def scheduler(
        app_spec: str | None = AppOption,
        database_url: str | None = DatabaseUrlOption,
        verbose: bool = typer.Option(False, "--verbose", "-v"),
    ) -> None:
        """Run the scheduler role alone (any number may run: one leads, the others stand by)."""
        configure_logging(verbose)
        app = load_app(app_spec, database_url)

        run(_run_roles(app, worker=False))

    @cli.command()
    def node(
        roles: str = typer.Option(
            "worker,scheduler",
            "--roles",
            envvar="TICKBASE_ROLES",
            help="Comma-separated: worker, scheduler, api.",
        ),
        app_spec: str | None = AppOption,
        queues: str | None = typer.Option(
            None, "--queues", "-q", help="Queues the worker serves (default: all)."
        ),
        concurrency: int = typer.Option(10, "--concurrency", "-c", min=1, max=10_000),
        host: str = HostOption,
        port: int = PortOption,
        database_url: str | None = DatabaseUrlOption,
        verbose: bool = typer.Option(False, "--verbose", "-v"),
    ) -> None:
        """Run several roles in one process (a node of the cluster)."""
        configure_logging(verbose)
        chosen = {r.strip() for r in roles.split(",") if r.strip()}
        unknown = chosen - {"worker", "scheduler", "api"}
        if unknown or not chosen:
            fail(
                f"unknown roles {sorted(unknown)}: use worker, scheduler, api"
                if unknown
                else "no role given"
            )
        app = load_app(app_spec, database_url)
        run(
            _run_roles(
                app,
                api=(host, port) if "api" in chosen else None,
                worker="worker" in chosen,
                scheduler="scheduler" in chosen,
                queues=_parse_queues(queues),
                concurrency=concurrency,
            )
        )

    @cli.command()
    def api(
        app_spec: str | None = AppOption,
        host: str = HostOption,
        port: int = PortOption,
        database_url: str | None = DatabaseUrlOption,
        verbose: bool = typer.Option(False, "--verbose", "-v"),
    ) -> None:
        """Serve the gateway (HTTP /api/v1, WebSocket /ws, /metrics) until SIGTERM/SIGINT."""
        configure_logging(verbose)
        app = load_app(app_spec, database_url)
        console.print(f"gateway: http://{host}:{port} (dashboard /, API /api/v1, WebSocket /ws)")
        run(_run_roles(app, api=(host, port), worker=False, scheduler=False))

    @cli.command()
    def nodes(database_url: str | None = DatabaseUrlOption, as_json: bool = JsonOption) -> None:
        """Nodes of the cluster, their roles, heartbeats and metrics."""
        from tickbase.cli.render import table
        from tickbase.cluster.nodes import list_nodes

        async def body(app: Any) -> list[dict[str, Any]]:
            async with app.pool.connection() as conn:
                return await list_nodes(conn)

        found = run(with_app(database_url, body))
        if as_json:
            from tickbase.gateway.schemas import NodeOut

            print_json(found, list[NodeOut])
            return
        table(
            None,
            ["node", "roles", "leader", "alive", "heartbeat", "running", "cpu %", "rss MiB"],
            [
                (
                    n["node_id"],
                    ",".join(n["roles"]),
                    "leader" if n["leader"] else "",
                    n["alive"],
                    n["heartbeat_at"],
                    n["metrics"].get("running_tasks"),
                    n["metrics"].get("cpu_percent"),
                    round(n["metrics"].get("rss_bytes", 0) / 2**20, 1),
                )
                for n in found
            ],
        )

    @cli.command()
    def up(
        app_spec: str | None = AppOption,
        concurrency: int = typer.Option(10, "--concurrency", "-c", min=1, max=10_000),
        host: str = HostOption,
        port: int = PortOption,
        database_url: str | None = DatabaseUrlOption,
        verbose: bool = typer.Option(False, "--verbose", "-v"),
    ) -> None:
        """Run everything in one process: database, migrations, API, worker, scheduler."""
        configure_logging(verbose)
        app = load_app(app_spec, database_url, market_data=True)

        async def body() -> None:
            from tickbase.db.urls import redact_url

            stop = asyncio.Event()
            stop_on_signals(stop)
            try:
                async with app:
                    where = "embedded PostgreSQL" if not app.settings.database_url else "PostgreSQL"
                    console.print(f"[bold]tickbase up[/]: {where} at {redact_url(app.url or '')}")
                    console.print(
                        f"worker: all queues, concurrency {concurrency}; "
                        f"task types: {', '.join(app.registry.names())}"
                    )
                    console.print("scheduler: on (leader-elected; maintenance schedules included)")
                    console.print(f"dashboard: http://{host}:{port}/")
                    console.print(f"API: http://{host}:{port}/api/v1 (WebSocket /ws)")
                    console.print(f"API docs: http://{host}:{port}/docs")
                    console.print(f"data: {app.settings.home} (TICKBASE_HOME)")
                    if app.started_server or not app.settings.database_url:
                        await _print_bootstrap_token(app)
                    market = app.extensions.get("marketdata")
                    if market is not None:
                        await market.collect_now()
                        console.print(
                            f"market data: {', '.join(market.symbols)} "
                            f"({', '.join(market.intervals)}) every 5 min, collecting now "
                            "(no live source answering → the replayed real series REPLAY:*, marked replay)"
                        )
                    realtime = await _start_realtime(app)
                    console.print("press Ctrl-C to stop")
                    try:
                        await _serve_roles(app, stop, api=(host, port), concurrency=concurrency)
                    finally:
                        if realtime is not None:
                            await realtime.stop()
            finally:
                if app.started_server:
                    from tickbase.db.embedded import EmbeddedServer

                    await asyncio.to_thread(EmbeddedServer(app.settings.home).stop)
                    console.print("stopped the embedded PostgreSQL this process started")

        run(body())

    @cli.command()
    def enqueue(
        task_type: str = typer.Argument(..., help="Task type, e.g. tickbase.echo."),
        payload: str = typer.Option(
            "{}", "--payload", "-p", help="JSON object: the task's kwargs."
        ),
        queue: str | None = typer.Option(
            None, "--queue", help="Default: the queue the type's handler declares."
        ),
        priority: int = typer.Option(0, "--priority", help="0 runs first; up to 1000."),
        delay: float | None = typer.Option(None, "--delay", help="Seconds before it may run."),
        run_at: str | None = typer.Option(None, "--run-at", help="ISO 8601 time with zone."),
        retries: int = typer.Option(0, "--retries", min=0),
        timeout: float | None = typer.Option(None, "--timeout", help="Seconds per attempt."),
        dedupe_key: str | None = typer.Option(None, "--dedupe-key"),
        database_url: str | None = DatabaseUrlOption,
        as_json: bool = JsonOption,
    ) -> None:
        """Enqueue one task and print its id."""
        from datetime import datetime

        from tickbase.queue.models import DEFAULT_QUEUE, EnqueueRequest

        try:
            data = json.loads(payload)
        except json.JSONDecodeError as exc:
            fail(f"invalid payload: not valid JSON ({exc})")
        when = None
        if run_at is not None:
            try:
                when = datetime.fromisoformat(run_at)
            except ValueError:
                fail(f"invalid run_at {run_at!r}: not an ISO 8601 time")

        async def body(app: Any) -> Any:
            # Refused alike by the gateway: see Registry.defaults_for.
            defaults = await app.registry.defaults_for(task_type, app.pool)
            request = EnqueueRequest(
                task_type,
                data,
                queue=queue or defaults.get("queue") or DEFAULT_QUEUE,
                priority=priority,
                delay=delay,
                run_at=when,
                max_attempts=retries + 1,
                timeout=timeout,
                dedupe_key=dedupe_key,
            )
            [handle] = await app.enqueue_many([request])
            return handle

        handle = run(with_app(database_url, body))
        if as_json:
            print_json({"id": handle.id, "created": handle.created})
        else:
            verb = "enqueued" if handle.created else "already queued (dedupe key)"
            console.print(f"{verb}: task {handle.id}")
