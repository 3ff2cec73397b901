"""``tickbase tasks``: inspect and steer tasks."""

from __future__ import annotations

from typing import Any

import typer

from tickbase.cli.common import DatabaseUrlOption, JsonOption, run, with_app
from tickbase.cli.render import as_api, console, print_json, table
from tickbase.gateway.schemas import TaskDetailOut, TaskOut

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

    async def body(app: Any) -> tuple[dict[str, Any], list[Any]]:
        from tickbase.gateway.service import task_detail

        return await task_detail(app, task_id), await app.queue.events(task_id)

    detail, events = run(with_app(database_url, body))
    if as_json:
        data = as_api(TaskDetailOut, detail)
        data["events"] = [
            {"at": e.at.isoformat(), "event": e.event, "nodeId": e.node_id, "detail": e.detail}
            for e in events
        ]
        print_json(data)
        return
    rows = [(k, v) for k, v in detail.items() if k != "waiting" or v is not None]
    table(f"task {detail['id']}", ["field", "value"], rows)
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
