"""``tickbase tasks``: inspect and steer tasks."""

from __future__ import annotations

from typing import Any

import typer

from tickbase.cli.common import DatabaseUrlOption, JsonOption, run, with_app
from tickbase.cli.render import as_api, console, print_json, table
from tickbase.gateway.schemas import TaskOut

cli = typer.Typer(help="List, show, cancel and retry tasks.", no_args_is_help=True)


@cli.command("list")
def list_tasks(
    status: str | None = typer.Option(None, help="Only tasks in this status."),
    queue: str | None = typer.Option(None, help="Only tasks of this queue."),
    task_type: str | None = typer.Option(None, "--type", help="Only tasks of this type."),
    limit: int = typer.Option(50, min=1, max=10_000, help="At most this many rows."),
    before: int | None = typer.Option(None, help="Page: only ids below this one."),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Tasks, newest first."""

    async def body(app: Any) -> list[Any]:
        tasks: list[Any] = await app.queue.list_tasks(
            status=status, queue=queue, task_type=task_type, before_id=before, limit=limit
        )
        return tasks

    tasks = run(with_app(database_url, body))
    if as_json:
        print_json([task.to_dict() for task in tasks], list[TaskOut])
        return
    table(
        None,
        ["id", "type", "queue", "prio", "status", "attempts", "created", "duration s", "node"],
        [
            (
                t.id,
                t.task_type,
                t.queue,
                t.priority,
                t.status,
                f"{t.attempts}/{t.max_attempts}",
                t.created_at,
                t.duration,
                t.node_id,
            )
            for t in tasks
        ],
    )


@cli.command()
def show(
    task_id: int = typer.Argument(..., help="Task id."),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """One task with its lifecycle events."""

    async def body(app: Any) -> tuple[Any, list[Any], str | None]:
        from tickbase.cluster.nodes import known_task_types

        task = await app.queue.get(task_id)
        waiting = None
        if task.status in ("pending", "retrying"):
            async with app.pool.connection() as conn:
                known = await known_task_types(conn)
            if not known.get(task.task_type, {}).get("handled"):
                waiting = f"no live worker handles type {task.task_type}"
        return task, await app.queue.events(task_id), waiting

    task, events, waiting = run(with_app(database_url, body))
    if as_json:
        data = as_api(TaskOut, task.to_dict())
        data["waiting"] = waiting
        data["events"] = [
            {"at": e.at.isoformat(), "event": e.event, "nodeId": e.node_id, "detail": e.detail}
            for e in events
        ]
        print_json(data)
        return
    rows = list(task.to_dict().items())
    if waiting is not None:
        rows.append(("waiting", waiting))
    table(f"task {task.id}", ["field", "value"], rows)
    table(
        "events",
        ["at", "event", "node", "detail"],
        [(e.at, e.event, e.node_id, e.detail) for e in events],
    )


@cli.command()
def cancel(
    task_id: int = typer.Argument(..., help="Task id."),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Cancel a task: pending ends at once; running gets a cancel request."""

    async def body(app: Any) -> Any:
        return await app.queue.cancel(task_id, reason="tickbase tasks cancel")

    status = run(with_app(database_url, body))
    if as_json:
        print_json({"id": task_id, "status": str(status)})
    else:
        note = " (cancel requested; its worker stops it)" if str(status) == "running" else ""
        console.print(f"task {task_id}: {status}{note}")


@cli.command()
def retry(
    task_id: int = typer.Argument(..., help="Id of a failed or cancelled task."),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Enqueue a fresh copy of a failed or cancelled task."""

    async def body(app: Any) -> int:
        new_id: int = await app.queue.retry(task_id)
        return new_id

    new_id = run(with_app(database_url, body))
    if as_json:
        print_json({"id": task_id, "new_id": new_id})
    else:
        console.print(f"task {task_id} retried as task {new_id}")
