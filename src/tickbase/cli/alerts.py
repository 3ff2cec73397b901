"""``tickbase alerts``: firing and resolved alerts, their rules, and the webhooks told of them."""

from __future__ import annotations

from typing import Any

import typer

from tickbase.cli.common import DatabaseUrlOption, JsonOption, run, with_app
from tickbase.cli.render import console, fail, print_json, table
from tickbase.gateway.admin_schemas import AlertRuleOut
from tickbase.gateway.schemas import AlertOut

cli = typer.Typer(help="Alerts, alert rules and alert webhooks.", no_args_is_help=True)


def _store(app: Any) -> Any:
    from tickbase.cluster.alerts import AlertStore

    return AlertStore(app.pool)


def _rule_rows(rules: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (
            r.name,
            r.kind,
            r.threshold,
            r.for_seconds,
            "yes" if r.enabled else "no",
            r.description,
        )
        for r in rules
    ]


RULE_COLUMNS = ["name", "kind", "threshold", "for (s)", "enabled", "description"]


@cli.command("list")
def list_alerts(
    state: str | None = typer.Option(
        None, "--state", help="Only 'firing' or only 'resolved' alerts."
    ),
    limit: int = typer.Option(100, "--limit", min=1, max=10_000, help="Newest N alerts."),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Alerts, newest first."""
    if state is not None and state not in ("firing", "resolved"):
        fail(f"invalid --state {state!r}: must be 'firing' or 'resolved'")

    async def body(app: Any) -> list[Any]:
        result: list[Any] = await _store(app).alerts(state=state, limit=limit)
        return result

    alerts = run(with_app(database_url, body))
    if as_json:
        print_json([a.to_dict() for a in alerts], list[AlertOut])
        return
    table(
        None,
        ["id", "rule", "subject", "state", "value", "fired", "resolved", "message"],
        [
            (a.id, a.rule, a.subject, a.state, a.value, a.fired_at, a.resolved_at, a.message)
            for a in alerts
        ],
    )


@cli.command()
def rules(database_url: str | None = DatabaseUrlOption, as_json: bool = JsonOption) -> None:
    """Alert rules with their limits."""

    async def body(app: Any) -> list[Any]:
        result: list[Any] = await _store(app).rules()
        return result

    found = run(with_app(database_url, body))
    if as_json:
        print_json([r.to_dict() for r in found], list[AlertRuleOut])
        return
    table(None, RULE_COLUMNS, _rule_rows(found))


@cli.command()
def rule(
    name: str = typer.Argument(..., help="Rule name (see `tickbase alerts rules`)."),
    threshold: float | None = typer.Option(
        None, "--threshold", help="Fire when the figure exceeds this."
    ),
    for_seconds: float | None = typer.Option(
        None, "--for-seconds", help="How long the condition must hold before firing."
    ),
    enabled: bool | None = typer.Option(
        None, "--enable/--disable", help="Turn the rule on or off.", show_default=False
    ),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Change a rule's threshold, hold time or enabled flag (and show it)."""

    async def body(app: Any) -> Any:
        return await _store(app).set_rule(
            name, threshold=threshold, for_seconds=for_seconds, enabled=enabled
        )

    changed = run(with_app(database_url, body))
    if as_json:
        print_json(changed.to_dict(), AlertRuleOut)
        return
    table(None, RULE_COLUMNS, _rule_rows([changed]))


@cli.command()
def webhooks(database_url: str | None = DatabaseUrlOption, as_json: bool = JsonOption) -> None:
    """Webhooks POSTed on every alert change (URLs shown without query or credentials)."""

    async def body(app: Any) -> list[Any]:
        result: list[Any] = await _store(app).webhooks()
        return result

    found = run(with_app(database_url, body))
    if as_json:
        print_json([w.to_dict() for w in found])
        return
    table(
        None,
        ["id", "url", "enabled", "created"],
        [(w.id, w.display_url, "yes" if w.enabled else "no", w.created_at) for w in found],
    )


@cli.command("webhook-add")
def webhook_add(
    url: str = typer.Argument(..., help="http(s) URL to POST alert changes to (JSON)."),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Register a webhook for every alert change."""
    from tickbase.cluster.alerts import check_webhook_url, display_url
    from tickbase.errors import InvalidAlert

    try:
        # Refused before the database is opened (or an embedded one started).
        check_webhook_url(url)
    except InvalidAlert as exc:
        fail(str(exc))

    async def body(app: Any) -> int:
        webhook_id: int = await _store(app).add_webhook(url)
        return webhook_id

    webhook_id = run(with_app(database_url, body))
    if as_json:
        print_json({"id": webhook_id, "url": display_url(url)})
        return
    console.print(f"webhook {webhook_id}: {display_url(url)}")


@cli.command("webhook-remove")
def webhook_remove(
    webhook_id: int = typer.Argument(..., help="Webhook id (see `tickbase alerts webhooks`)."),
    database_url: str | None = DatabaseUrlOption,
) -> None:
    """Remove a webhook; deliveries still queued for it are dropped."""

    async def body(app: Any) -> None:
        await _store(app).remove_webhook(webhook_id)

    run(with_app(database_url, body))
    console.print(f"webhook {webhook_id} removed")
