"""``tickbase limits``: the cluster-wide limits (queue concurrency, task-type limits)."""

from __future__ import annotations

from typing import Any

import typer

from tickbase.cli.common import DatabaseUrlOption, JsonOption, run, with_app
from tickbase.cli.render import console, fail, print_json, table
from tickbase.gateway.admin_schemas import LimitsOut

cli = typer.Typer(
    help="Cluster-wide limits: queue concurrency, rate limits, concurrency keys.",
    no_args_is_help=True,
)


@cli.command("list")
def list_limits(database_url: str | None = DatabaseUrlOption, as_json: bool = JsonOption) -> None:
    """Limited queues (with their running tasks now) and task types with limits."""

    async def body(app: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return await app.limits.queue_limits(), await app.limits.task_limits()

    queues, task_types = run(with_app(database_url, body))
    if as_json:
        print_json({"queues": queues, "task_types": task_types}, LimitsOut)
        return
    table(
        "queues",
        ["queue", "concurrency", "running"],
        [(q["queue"], q["concurrency"], q["running"]) for q in queues],
    )
    table(
        "task types",
        ["task type", "rate limit", "concurrency key", "per key"],
        [
            (
                t["task_type"],
                f"{t['rate_max']}/{t['rate_window_seconds']:g}s" if t["rate_max"] else "",
                t["concurrency_key"] or "",
                t["concurrency_limit"] if t["concurrency_key"] else "",
            )
            for t in task_types
        ],
    )


@cli.command()
def queue(
    name: str = typer.Argument(..., help="Queue name."),
    concurrency: int | None = typer.Option(
        None, "--concurrency", help="At most this many running in the cluster (>= 1)."
    ),
    clear: bool = typer.Option(False, "--clear", help="Lift the queue's limit."),
    database_url: str | None = DatabaseUrlOption,
) -> None:
    """Set (``--concurrency N``) or lift (``--clear``) a queue's cluster-wide concurrency."""
    if (concurrency is None) == (not clear):
        fail("give exactly one of --concurrency N or --clear")

    async def body(app: Any) -> bool:
        if clear:
            lifted: bool = await app.limits.clear_queue_concurrency(name)
            return lifted
        await app.limits.set_queue_concurrency(name, concurrency)
        return True

    changed = run(with_app(database_url, body))
    if clear:
        console.print(f"queue {name}: " + ("limit lifted" if changed else "had no limit"))
    else:
        console.print(f"queue {name}: at most {concurrency} running in the cluster")
