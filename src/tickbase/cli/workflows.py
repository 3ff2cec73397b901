"""``tickbase workflows``: stored DAGs and their runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from tickbase.cli.common import AppOption, DatabaseUrlOption, JsonOption, run, with_app
from tickbase.cli.render import as_api, console, fail, print_json, table
from tickbase.errors import plural
from tickbase.gateway.schemas import RunSummary, WorkflowOut, run_out

cli = typer.Typer(help="Workflows (DAGs of tasks) and their runs.", no_args_is_help=True)
DefinitionArgument = typer.Argument(
    ..., exists=True, dir_okay=False, help="The definition, a .json or .yaml file."
)


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


def read_definition(path: Path) -> Any:
    """The workflow body in ``path``: JSON (``.json``) or YAML (``.yaml``/``.yml``).

    The shape is the HTTP API's ``POST /api/v1/workflows`` body (``name``,
    ``mode``, ``on_failure``, ``max_parallel``, ``steps`` of ``name``,
    ``task_type``, ``after``, ``payload``), in snake_case or camelCase.
    """
    import json

    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        fail(f"{path}: use a .json, .yaml or .yml file (got {suffix or 'no suffix'!r})")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {path}: {exc}")
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            fail(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}")
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        fail(f"{path}: not valid YAML: {problem}{where}")


def parse_definition(path: Path, data: Any) -> Any:
    """``data`` checked against the API's workflow body; errors name field and problem."""
    from pydantic import ValidationError

    from tickbase.gateway.schemas import WorkflowIn

    if not isinstance(data, dict):
        fail(f"{path}: a workflow is an object with 'name' and 'steps', got {type(data).__name__}")
    try:
        return WorkflowIn.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or 'workflow'}: {error['msg']}"
            for error in exc.errors()
        ]
        fail(f"{path}: invalid workflow: " + "; ".join(problems))


@cli.command()
def create(
    path: Path = DefinitionArgument,
    app_spec: str | None = AppOption,
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Store (or replace) a workflow defined in a JSON or YAML file.

    The file holds what 'POST /api/v1/workflows' takes, for example::

        name: eod
        mode: parallel
        steps:
          - {name: bars, taskType: tickbase.echo, payload: {symbol: ES}}
          - name: report
            taskType: tickbase.echo
            after:
              - bars

    It is validated first (steps, dependencies, cycles, task types); nothing
    is stored when it is invalid.
    """
    body_in = parse_definition(path, read_definition(path))

    async def body(app: Any) -> Any:
        workflow = app.workflow(
            body_in.name,
            mode=body_in.mode,
            on_failure=body_in.on_failure,
            max_parallel=body_in.max_parallel,
        )
        for step in body_in.steps:
            workflow.step(step.name, step.task_type, after=step.after, payload=step.payload)
        await workflow.save()
        return await app.workflows.get_workflow(body_in.name)

    stored = run(with_app(database_url, body, spec=app_spec))
    if as_json:
        print_json(stored, WorkflowOut)
        return
    console.print(f"workflow {stored['name']} stored: {plural(len(stored['steps']), 'step')}")


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
