"""``tickbase bench``: print figures; never assert times."""

from __future__ import annotations

import typer

from tickbase.cli.common import DatabaseUrlOption, JsonOption, run
from tickbase.cli.render import fail

cli = typer.Typer(help="Benchmarks (figures, never pass/fail).", no_args_is_help=True)


@cli.command()
def queue(
    peers: bool = typer.Option(
        False, "--peers", help="Also run PgQueuer, Procrastinate and a plain loop."
    ),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
    concurrency: int = typer.Option(
        100, "--concurrency", help="tickbase worker concurrency for drain and latency."
    ),
) -> None:
    """Enqueue (single, batch), drain by one worker process, and latency — each in a fresh database."""
    from tickbase.bench.queue import run_queue_command

    run(
        run_queue_command(
            database_url=database_url, peers=peers, as_json=as_json, concurrency=concurrency
        )
    )


@cli.command()
def cron(
    schedules: int = typer.Option(
        1000, "--schedules", min=1, help="Schedules, each firing every second."
    ),
    seconds: float = typer.Option(
        60.0, "--seconds", min=1.0, help="Measured window, after start-up and warm-up."
    ),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """One scheduler process fires N every-second schedules: fire lag p50/p99 and its CPU."""
    from tickbase.bench.cron import run_cron_command
    from tickbase.bench.harness import BenchError

    try:
        run(
            run_cron_command(
                database_url=database_url, schedules=schedules, seconds=seconds, as_json=as_json
            )
        )
    except BenchError as exc:
        fail(f"bench cron: {exc}")


@cli.command()
def dashboard(
    rows: int = typer.Option(5_000_000, "--rows", min=1000, help="Task rows to load."),
    schedules: int = typer.Option(10_000, "--schedules", min=1, help="Schedules to load."),
    samples: int = typer.Option(40, "--samples", min=2, help="Loads of each page."),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Each dashboard page's data requests (p50/p95) at millions of rows, and the database's
    load with 1 and 20 open dashboards, in a fresh database."""
    from tickbase.bench.dashboard import run_dashboard_command
    from tickbase.bench.harness import BenchError

    try:
        run(
            run_dashboard_command(
                database_url=database_url,
                rows=rows,
                schedules=schedules,
                samples=samples,
                as_json=as_json,
            )
        )
    except BenchError as exc:
        fail(f"bench dashboard: {exc}")


@cli.command()
def workflow(
    steps: int = typer.Option(1000, "--steps", min=2, max=100_000, help="Steps per workflow."),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Per-step cost of a chain and throughput of a fan-out, against plain tasks."""
    from tickbase.bench.workflow import run_workflow_command

    run(run_workflow_command(database_url=database_url, steps=steps, as_json=as_json))


@cli.command()
def cluster(database_url: str | None = DatabaseUrlOption, as_json: bool = JsonOption) -> None:
    """Throughput with 1, 2 and 3 worker processes; rescue time after kill -9 (median of 5)."""
    from tickbase.bench.cluster import run_cluster_command

    run(run_cluster_command(database_url=database_url, as_json=as_json))


@cli.command()
def gateway(
    connections: int = typer.Option(
        5000, "--connections", min=1, help="Idle WebSocket connections to open and hold."
    ),
    requests: int = typer.Option(
        2000, "--requests", min=1, help="tasks.submit requests per timed run."
    ),
    abuse: bool = typer.Option(
        False,
        "--abuse",
        help="Instead: what hostile clients cost (100 MB unauthenticated bodies, "
        "keep-alive and half-open floods) and /healthz p99 meanwhile.",
    ),
    bodies: int = typer.Option(3, "--bodies", min=1, help="--abuse: big bodies to send."),
    body_mib: int = typer.Option(100, "--body-mib", min=1, help="--abuse: size of each (MiB)."),
    keepalive: int = typer.Option(
        2000, "--keepalive", min=0, help="--abuse: keep-alive clients polling /healthz."
    ),
    half_open: int = typer.Option(
        5000, "--half-open", min=0, help="--abuse: connections that send half a request."
    ),
    url: str | None = typer.Option(
        None,
        "--url",
        help="--abuse: measure this running gateway (http://HOST:PORT) instead of starting one.",
    ),
    pid: int | None = typer.Option(
        None, "--pid", min=1, help="--abuse with --url: the gateway's process id (for its RSS)."
    ),
    header_timeout: float = typer.Option(
        10.0,
        "--header-timeout",
        min=0.1,
        help="--abuse with --url: the header timeout that gateway is expected to enforce (s).",
    ),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """One gateway process: WebSocket ack and round-trip latency, idle connections held; or --abuse."""
    from tickbase.bench.harness import BenchError

    if (url is None) != (pid is None):
        fail("bench gateway: --url and --pid go together (the gateway's address and its pid)")
    if url is not None and not abuse:
        fail("bench gateway: --url measures a running gateway only with --abuse")
    try:
        if abuse:
            from tickbase.bench.gateway_abuse import AbuseLoad, ExistingGateway, run_abuse_command

            existing = (
                ExistingGateway(url, pid, header_timeout)
                if url is not None and pid is not None
                else None
            )
            load = AbuseLoad(
                big_bodies=bodies,
                big_body_bytes=body_mib * 2**20,
                keepalive_connections=keepalive,
                half_open_connections=half_open,
            )
            run(
                run_abuse_command(
                    database_url=database_url, as_json=as_json, load=load, existing=existing
                )
            )
            return
        from tickbase.bench.gateway import run_gateway_command

        run(
            run_gateway_command(
                database_url=database_url,
                as_json=as_json,
                connections=connections,
                requests=requests,
            )
        )
    except BenchError as exc:
        fail(f"bench gateway: {exc}")


@cli.command()
def indicators(
    bars: int = typer.Option(
        1_000_000, "--bars", min=100, help="Real bars for the incremental and TA-Lib figures."
    ),
    closed_bars: int = typer.Option(
        1000,
        "--closed-bars",
        min=1,
        max=4900,
        help="Closed bars stored and advanced one at a time (latency samples).",
    ),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Incremental indicator updates/s beside TA-Lib's batch over 1,000,000 real bars, and
    the closed bar -> stored indicators latency (fresh database)."""
    from tickbase.bench.harness import BenchError
    from tickbase.bench.indicators import run_indicators_command

    try:
        run(
            run_indicators_command(
                database_url=database_url, as_json=as_json, count=bars, latency_bars=closed_bars
            )
        )
    except BenchError as exc:
        fail(f"bench indicators: {exc}")


@cli.command()
def realtime(
    symbols: int = typer.Option(
        1000, "--symbols", min=1, help="Symbols of the live-like source (loop and memory)."
    ),
    seconds: float = typer.Option(
        15.0, "--seconds", min=0.5, help="Measured time of the loop section, after warm-up."
    ),
    rate: float = typer.Option(
        100_000.0, "--rate", min=1.0, help="Trades/s of the live-like source, all symbols."
    ),
    trades: int = typer.Option(
        500_000, "--trades", min=1000, max=500_000, hidden=True, help="ES trades used (tests)."
    ),
    warmup: float = typer.Option(
        3.0, "--warmup", min=0.0, hidden=True, help="Loop warm-up left out (s; tests)."
    ),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Real-time K-lines: aggregation per worker, replay end to end with 2 workers, loop
    p50/p99 with 1,000 symbols × 3 intervals, memory per symbol (fresh databases)."""
    from tickbase.bench.harness import BenchError
    from tickbase.bench.realtime import BenchSize, run_realtime_command

    size = BenchSize(trades=trades, symbols=symbols, seconds=seconds, warmup=warmup, rate=rate)
    try:
        run(run_realtime_command(database_url=database_url, as_json=as_json, size=size))
    except BenchError as exc:
        fail(f"bench realtime: {exc}")
