"""``tickbase bench``: print figures; never assert times."""

from __future__ import annotations

import typer

from tickbase.cli.common import DatabaseUrlOption, JsonOption, run

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
