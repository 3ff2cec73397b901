"""``tickbase tokens``: API tokens for the gateway (created, listed, revoked)."""

from __future__ import annotations

from typing import Any

import typer

from tickbase.cli.common import DatabaseUrlOption, JsonOption, run, with_app
from tickbase.cli.render import console, err_console, fail, print_json, table
from tickbase.gateway.admin_schemas import TokenCreated, TokenOut

cli = typer.Typer(help="API tokens for the HTTP API and WebSocket.", no_args_is_help=True)


def _store(app: Any) -> Any:
    from tickbase.gateway.auth import TokenStore

    return TokenStore(app.pool)


@cli.command()
def create(
    role: str = typer.Option(
        ..., "--role", help="admin (read and change) or viewer (read only).", show_default=False
    ),
    name: str | None = typer.Option(None, "--name", help="Who or what holds the token."),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Create a token; it is printed once and only its hash is stored."""
    from tickbase.errors import ConfigurationError
    from tickbase.gateway.auth import TOKEN_NAME_MAX, check_role

    try:
        # Refused before the database is opened (or an embedded one started).
        check_role(role)
    except ConfigurationError as exc:
        fail(str(exc))
    if name is not None and not 1 <= len(name.strip()) <= TOKEN_NAME_MAX:
        fail(f"invalid --name: must be 1 to {TOKEN_NAME_MAX} characters")

    async def body(app: Any) -> Any:
        return await _store(app).create(role, name=name)

    created = run(with_app(database_url, body))
    if as_json:
        print_json(
            {
                "id": created.id,
                "name": created.name,
                "role": created.role,
                "prefix": created.prefix,
                "token": created.token,
            },
            TokenCreated,
        )
        return
    table(
        None,
        ["id", "name", "role", "prefix"],
        [(created.id, created.name, created.role, created.prefix)],
    )
    console.print(f"token: {created.token}", markup=False, highlight=False, soft_wrap=True)
    # stderr, so that a script reading stdout is not handed the warning as data.
    err_console.print(
        "[yellow]This token is shown only once: store it now. "
        "tickbase keeps only its hash and cannot show it again.[/]",
        highlight=False,
    )


@cli.command("list")
def list_tokens(database_url: str | None = DatabaseUrlOption, as_json: bool = JsonOption) -> None:
    """Tokens, oldest first, with their prefixes (never the tokens themselves)."""

    async def body(app: Any) -> list[Any]:
        result: list[Any] = await _store(app).list()
        return result

    found = run(with_app(database_url, body))
    if as_json:
        print_json([t.to_dict() for t in found], list[TokenOut])
        return
    table(
        None,
        ["id", "name", "role", "prefix", "created", "last used", "revoked"],
        [
            (t.id, t.name, t.role, t.prefix + "…", t.created_at, t.last_used_at, t.revoked_at)
            for t in found
        ],
    )


@cli.command()
def revoke(
    token_id: int = typer.Argument(..., help="Token id (see `tickbase tokens list`)."),
    database_url: str | None = DatabaseUrlOption,
) -> None:
    """Revoke a token: requests with it are refused from now on."""

    async def body(app: Any) -> bool:
        revoked: bool = await _store(app).revoke(token_id)
        return revoked

    if not run(with_app(database_url, body)):
        fail(
            f"no active token with id {token_id}: it does not exist or is already revoked"
            " (`tickbase tokens list` lists them)"
        )
    console.print(f"token {token_id} revoked", highlight=False)
