"""The ``tickbase`` command line. Sub-apps live beside this file; heavy imports
are made inside commands so that ``tickbase --help`` and a worker start fast."""

from __future__ import annotations

import typer

from tickbase.cli import (
    alerts,
    bench,
    db,
    limits,
    marketdata,
    realtime,
    schedules,
    tasks,
    tokens,
    workflows,
)
from tickbase.cli.cluster import register_cluster_commands
from tickbase.cli.marketdata import register_indicator_command
from tickbase.cli.run import register_run_commands

cli = typer.Typer(
    name="tickbase",
    help="A PostgreSQL-coordinated task system for market-data and quant platforms.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
cli.add_typer(db.cli, name="db")
cli.add_typer(tasks.cli, name="tasks")
cli.add_typer(schedules.cli, name="schedules")
cli.add_typer(workflows.cli, name="workflows")
cli.add_typer(bench.cli, name="bench")
cli.add_typer(alerts.cli, name="alerts")
cli.add_typer(limits.cli, name="limits")
cli.add_typer(marketdata.cli, name="klines")
cli.add_typer(tokens.cli, name="tokens")
cli.add_typer(realtime.cli, name="realtime")
register_run_commands(cli)
register_cluster_commands(cli)
register_indicator_command(cli)


def _print_version(value: bool) -> None:
    if value:
        from tickbase._version import __version__

        print(f"tickbase {__version__}")
        raise typer.Exit()


@cli.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """A PostgreSQL-coordinated task system for market-data and quant platforms."""


def main() -> None:
    """Console-script entry point."""
    from tickbase.cli.helptext import plain_help

    command = typer.main.get_command(cli)
    plain_help(command)
    command(prog_name="tickbase")
