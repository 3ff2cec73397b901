"""``tickbase schedules``: define and steer schedules at run time."""

from __future__ import annotations

import json
from typing import Any

import typer

from tickbase.cli.common import DatabaseUrlOption, JsonOption, run, with_app
from tickbase.cli.render import as_api, console, fail, print_json, table
from tickbase.gateway.schemas import Execution, ScheduleOut, ScheduleStats

cli = typer.Typer(help="Cron, interval and manual schedules.", no_args_is_help=True)

NameArgument = typer.Argument(..., help="Schedule name.")


def _show(schedule: Any, as_json: bool, verb: str) -> None:
    if as_json:
        print_json(schedule.to_dict(), ScheduleOut)
    else:
        console.print(f"schedule {schedule.name}: {verb} (status {schedule.status})")


def _parse_payload(payload: str) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as exc:
        fail(f"invalid payload: not valid JSON ({exc})")
    if not isinstance(data, dict):
        fail("invalid payload: must be a JSON object")
    return data


@cli.command("list")
def list_schedules(
    removed: bool = typer.Option(False, "--removed", help="Include removed schedules."),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Schedules with their computed status and next fire."""

    async def body(app: Any) -> list[Any]:
        result: list[Any] = await app.schedules.list_schedules(include_removed=removed)
        return result

    schedules = run(with_app(database_url, body))
    if as_json:
        print_json([s.to_dict() for s in schedules], list[ScheduleOut])
        return
    table(
        None,
        ["name", "task", "when", "tz", "status", "next fire", "last fire", "origin"],
        [
            (
                s.name,
                s.spec.task_type,
                s.spec.cron
                or (f"every {s.spec.interval_seconds:g}s" if s.spec.interval_seconds else "manual"),
                s.spec.timezone,
                s.status,
                s.next_fire_at,
                s.last_fire_at,
                s.spec.origin,
            )
            for s in schedules
        ],
    )


@cli.command()
def add(
    name: str = NameArgument,
    task: str = typer.Option(..., "--task", help="Task type each fire enqueues."),
    cron: str | None = typer.Option(None, "--cron", help="5 fields, or 6 with leading seconds."),
    every: float | None = typer.Option(None, "--every", help="Interval in seconds."),
    manual: bool = typer.Option(False, "--manual", help="Never fires by itself; trigger only."),
    tz: str = typer.Option("UTC", "--tz", help="IANA time zone of the cron expression."),
    payload: str = typer.Option("{}", "--payload", help="JSON object passed to each fire."),
    queue: str = typer.Option("default", "--queue"),
    priority: int = typer.Option(0, "--priority"),
    max_retries: int = typer.Option(0, "--max-retries"),
    retry_interval: float = typer.Option(
        1.0, "--retry-interval", help="Seconds (exponential backoff base)."
    ),
    timeout: float | None = typer.Option(None, "--timeout", help="Seconds per attempt."),
    misfire_grace: float = typer.Option(
        60.0, "--misfire-grace", help="Seconds a late fire still runs."
    ),
    coalesce: bool = typer.Option(False, "--coalesce", help="Run several missed fires once."),
    max_instances: int = typer.Option(1, "--max-instances"),
    description: str | None = typer.Option(None, "--description"),
    disabled: bool = typer.Option(False, "--disabled", help="Create it disabled."),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Create a schedule: exactly one of --cron, --every or --manual."""
    from tickbase.errors import TickbaseError
    from tickbase.scheduler.models import ScheduleSpec

    try:
        spec = ScheduleSpec.build(
            name,
            task,
            cron=cron,
            every=every,
            manual=manual,
            timezone=tz,
            payload=_parse_payload(payload),
            queue=queue,
            priority=priority,
            max_retries=max_retries,
            retry_interval=retry_interval,
            timeout=timeout,
            misfire_grace_seconds=misfire_grace,
            coalesce=coalesce,
            max_instances=max_instances,
            description=description,
            enabled=not disabled,
        )
    except TickbaseError as exc:
        fail(str(exc))

    async def body(app: Any) -> Any:
        return await app.schedules.create(spec)

    _show(run(with_app(database_url, body)), as_json, "created")


@cli.command()
def update(
    name: str = NameArgument,
    cron: str | None = typer.Option(None, "--cron"),
    every: float | None = typer.Option(None, "--every"),
    tz: str | None = typer.Option(None, "--tz"),
    payload: str | None = typer.Option(None, "--payload"),
    queue: str | None = typer.Option(None, "--queue"),
    max_instances: int | None = typer.Option(None, "--max-instances"),
    misfire_grace: float | None = typer.Option(None, "--misfire-grace"),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Change a schedule; a new expression, interval or zone recomputes the next fire."""
    changes: dict[str, Any] = {}
    if cron is not None:
        changes["cron"] = cron
    if every is not None:
        changes["every"] = every
    if tz is not None:
        changes["timezone"] = tz
    if payload is not None:
        changes["payload"] = _parse_payload(payload)
    if queue is not None:
        changes["queue"] = queue
    if max_instances is not None:
        changes["max_instances"] = max_instances
    if misfire_grace is not None:
        changes["misfire_grace_seconds"] = misfire_grace

    async def body(app: Any) -> Any:
        return await app.schedules.update(name, **changes)

    _show(run(with_app(database_url, body)), as_json, "updated")


def _state_command(action: str, verb: str) -> None:
    def command(
        name: str = NameArgument,
        database_url: str | None = DatabaseUrlOption,
        as_json: bool = JsonOption,
    ) -> None:
        async def body(app: Any) -> Any:
            return await getattr(app.schedules, action)(name)

        _show(run(with_app(database_url, body)), as_json, verb)

    command.__doc__ = f"{action.capitalize()} a schedule."
    cli.command(action)(command)


for _action, _verb in (
    ("pause", "paused"),
    ("resume", "resumed"),
    ("enable", "enabled"),
    ("disable", "disabled"),
    ("remove", "removed (history kept)"),
):
    _state_command(_action, _verb)


@cli.command()
def trigger(
    name: str = NameArgument,
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Fire now: enqueue one execution with fire_at = now, marked manual."""

    async def body(app: Any) -> Any:
        return await app.schedules.trigger(name)

    task_id, fire_at = run(with_app(database_url, body))
    if as_json:
        print_json({"name": name, "task_id": task_id, "fire_at": fire_at})
    else:
        console.print(f"schedule {name}: triggered, task {task_id}")


@cli.command()
def show(
    name: str = NameArgument,
    limit: int = typer.Option(20, "--limit", min=1, max=10_000, help="Executions shown."),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """A schedule with its stats, latest executions and events."""

    async def body(app: Any) -> tuple[Any, Any, Any, Any]:
        return (
            await app.schedules.get(name),
            await app.schedules.stats(name),
            await app.schedules.executions(name, limit=limit),
            await app.schedules.events(name, limit=limit),
        )

    schedule, stats, executions, events = run(with_app(database_url, body))
    if as_json:
        print_json(
            {
                **as_api(ScheduleOut, schedule.to_dict()),
                "stats": as_api(ScheduleStats, stats),
                "executions": as_api(list[Execution], executions),
                "events": events,
            }
        )
        return
    table(f"schedule {name}", ["field", "value"], list(schedule.to_dict().items()))
    table("stats", ["field", "value"], list(stats.items()))
    table(
        "executions",
        ["id", "fire_at", "status", "attempts", "duration", "manual"],
        [
            (e["id"], e["fire_at"], e["status"], e["attempts"], e["duration"], e["manual"])
            for e in executions
        ],
    )
    table(
        "events",
        ["at", "event", "fire_at", "detail"],
        [(e["at"], e["event"], e["fire_at"], e["detail"]) for e in events],
    )
