"""``tickbase workflows``: stored DAGs and their runs."""

from __future__ import annotations

from typing import Any

import typer

from tickbase.cli.common import DatabaseUrlOption, JsonOption, run, with_app
from tickbase.cli.render import as_api, console, fail, print_json, table
from tickbase.gateway.schemas import RunSummary, WorkflowOut, run_out

cli = typer.Typer(help="Workflows (DAGs of tasks) and their runs.", no_args_is_help=True)


@cli.command("list")
def list_workflows(
    database_url: str | None = DatabaseUrlOption, as_json: bool = JsonOption
) -> None:
    """Stored workflows."""

    async def body(app: Any) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await app.workflows.list_workflows()
        return result

    workflows = run(with_app(database_url, body))
    if as_json:
        print_json(workflows, list[WorkflowOut])
        return
    table(
        None,
        ["name", "mode", "on failure", "max parallel", "steps", "updated"],
        [
            (
                w["name"],
                w["mode"],
                w["on_failure"],
                w["max_parallel"],
                len(w["steps"]),
                w["updated_at"],
            )
            for w in workflows
        ],
    )


@cli.command()
def show(
    name: str = typer.Argument(..., help="Workflow name."),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """A workflow's steps (in run order) and its latest runs."""

    async def body(app: Any) -> tuple[Any, list[dict[str, Any]]]:
        found = [w for w in await app.workflows.list_workflows() if w["name"] == name]
        return (found[0] if found else None), await app.workflows.list_runs(name, limit=10)

    workflow, runs = run(with_app(database_url, body))
    if workflow is None:
        fail(f"workflow {name!r} does not exist")
    if as_json:
        print_json({**as_api(WorkflowOut, workflow), "runs": as_api(list[RunSummary], runs)})
        return
    table(
        f"workflow {name} ({workflow['mode']}, on failure {workflow['on_failure']})",
        ["step", "task", "after", "payload"],
        [
            (s["name"], s["task_type"], ", ".join(s["after"]), s["payload"])
            for s in workflow["steps"]
        ],
    )
    table(
        "runs",
        ["id", "status", "created", "finished"],
        [(r["id"], r["status"], r["created_at"], r["finished_at"]) for r in runs],
    )


@cli.command("run")
def run_workflow(
    name: str = typer.Argument(..., help="Workflow name (stored)."),
    wait: bool = typer.Option(False, "--wait", help="Wait for the run to end."),
    timeout: float | None = typer.Option(None, "--timeout", help="Seconds to wait at most."),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Start a run of a stored workflow (needs a worker to make progress)."""

    async def body(app: Any) -> Any:
        started = await app.workflows.start(name)
        if wait:
            await started.wait(timeout=timeout)
        return started

    started = run(with_app(database_url, body))
    if as_json:
        print_json(run_out(started).model_dump(by_alias=True, mode="json"))
    else:
        console.print(f"workflow {name}: run {started.id} {started.status}")


@cli.command()
def runs(
    name: str | None = typer.Argument(None, help="Only runs of this workflow."),
    run_id: int | None = typer.Option(None, "--run", help="One run with its steps."),
    limit: int = typer.Option(50, "--limit", min=1, max=10_000),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Runs, newest first; ``--run ID`` shows one run's steps."""
    if run_id is not None:

        async def one(app: Any) -> Any:
            return await app.workflows.get(run_id)

        found = run(with_app(database_url, one))
        if as_json:
            print_json(run_out(found).model_dump(by_alias=True, mode="json"))
            return
        table(
            f"run {found.id}: {found.status}",
            ["step", "status", "task", "task status", "attempts", "duration s"],
            [
                (n, s.status, s.task_id, s.task_status, s.attempts, s.duration)
                for n, s in found.steps.items()
            ],
        )
        return

    async def body(app: Any) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await app.workflows.list_runs(name, limit=limit)
        return result

    listed = run(with_app(database_url, body))
    if as_json:
        print_json(listed, list[RunSummary])
        return
    table(
        None,
        ["id", "workflow", "status", "schedule", "created", "finished"],
        [
            (
                r["id"],
                r["workflow_name"],
                r["status"],
                r["schedule_id"],
                r["created_at"],
                r["finished_at"],
            )
            for r in listed
        ],
    )
