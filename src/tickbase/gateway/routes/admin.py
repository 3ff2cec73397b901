"""HTTP ``/api/v1``: API tokens, cluster-wide limits and alert rules.

What ``tickbase tokens``, ``tickbase limits`` and ``tickbase alerts rules``
do, over HTTP. Tokens are admin-only, even to list (their names and prefixes
say who can reach the cluster); limits and rules are read by viewers and
changed by admins.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from tickbase.cluster.alerts import AlertStore
from tickbase.gateway.admin_schemas import (
    AlertRuleOut,
    AlertRuleUpdate,
    AlertWebhookOut,
    ConcurrencyKeyPage,
    LimitsOut,
    QueueLimitIn,
    TokenCreate,
    TokenCreated,
    TokenOut,
)
from tickbase.gateway.auth import TokenStore
from tickbase.gateway.errors import ApiError
from tickbase.gateway.routes.deps import ERRORS, Admin, Gw, Limit, Reader
from tickbase.gateway.schemas import QUEUE_PATTERN

router = APIRouter(prefix="/api/v1", responses=ERRORS)

QueueName = Annotated[str, Path(pattern=QUEUE_PATTERN)]
RuleName = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.:-]{1,200}$")]
TokenId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.get("/tokens", response_model=list[TokenOut], tags=["tokens"])
async def list_tokens(gw: Gw, _: Admin) -> Any:
    """Every token, revoked ones too, oldest first (prefixes, never the tokens)."""
    return [t.to_dict() for t in await TokenStore(gw.app.pool).list()]


@router.post("/tokens", status_code=201, response_model=TokenCreated, tags=["tokens"])
async def create_token(body: TokenCreate, gw: Gw, _: Admin) -> Any:
    """Create a token; the answer is the only time its plaintext is shown."""
    created = await TokenStore(gw.app.pool).create(body.role, name=body.name)
    return {
        "id": created.id,
        "name": created.name,
        "role": created.role,
        "prefix": created.prefix,
        "token": created.token,
    }


@router.delete("/tokens/{token_id}", status_code=204, tags=["tokens"])
async def revoke_token(token_id: TokenId, gw: Gw, principal: Admin) -> Response:
    """Revoke a token: requests with it are refused from now on.

    The token this request is made with cannot revoke itself (that would lock
    its holder out mid-request); use another admin token or the CLI.
    """
    if principal.token_id == token_id:
        raise ApiError(
            409, "CONFLICT", f"token {token_id} is the one making this request: use another"
        )
    if not await TokenStore(gw.app.pool).revoke(token_id):
        raise ApiError(404, "NOT_FOUND", f"no active token with id {token_id}")
    return Response(status_code=204)


@router.get("/limits", response_model=LimitsOut, tags=["limits"])
async def list_limits(gw: Gw, _: Reader) -> Any:
    """Limited queues (with their running tasks now) and task types with limits."""
    return {
        "queues": await gw.app.limits.queue_limits(),
        "task_types": await gw.app.limits.task_limits(),
    }


@router.put("/limits/queues/{queue}", response_model=LimitsOut, tags=["limits"])
async def set_queue_limit(queue: QueueName, body: QueueLimitIn, gw: Gw, _: Admin) -> Any:
    """At most ``concurrency`` running tasks of ``queue`` in the cluster."""
    await gw.app.limits.set_queue_concurrency(queue, body.concurrency)
    return await list_limits(gw, _)


@router.delete("/limits/queues/{queue}", status_code=204, tags=["limits"])
async def clear_queue_limit(queue: QueueName, gw: Gw, _: Admin) -> Response:
    """Lift a queue's limit (404 when it had none)."""
    if not await gw.app.limits.clear_queue_concurrency(queue):
        raise ApiError(404, "NOT_FOUND", f"queue {queue!r} has no limit")
    return Response(status_code=204)


@router.get("/limits/concurrency-keys", response_model=ConcurrencyKeyPage, tags=["limits"])
async def concurrency_keys(
    gw: Gw,
    _: Reader,
    cursor: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=1000,
            pattern=r"^[^\x00]+$",
            description="nextCursor of the last page",
        ),
    ] = None,
    limit: Limit = 100,
) -> Any:
    """Concurrency keys held by running tasks now, by key: how many run under each,
    and the limit their task types set."""
    found = await gw.app.limits.concurrency_keys(after=cursor, limit=limit)
    next_cursor = found[-1]["key"] if len(found) == limit else None
    return {"items": found, "next_cursor": next_cursor}


@router.get("/alert-webhooks", response_model=list[AlertWebhookOut], tags=["alerts"])
async def list_alert_webhooks(gw: Gw, _: Reader) -> Any:
    """Webhooks POSTed on every alert change, by id (URLs without query or credentials,
    as ``tickbase alerts webhooks`` shows them)."""
    return [w.to_dict() for w in await AlertStore(gw.app.pool).webhooks()]


@router.get("/alert-rules", response_model=list[AlertRuleOut], tags=["alerts"])
async def list_alert_rules(gw: Gw, _: Reader) -> Any:
    """Alert rules with their limits, by name."""
    return [r.to_dict() for r in await AlertStore(gw.app.pool).rules()]


@router.patch("/alert-rules/{name}", response_model=AlertRuleOut, tags=["alerts"])
async def update_alert_rule(name: RuleName, body: AlertRuleUpdate, gw: Gw, _: Admin) -> Any:
    """Change a rule's ``threshold``, ``forSeconds`` or ``enabled`` (leave out what stays)."""
    changes = body.model_dump(exclude_unset=True)
    if not changes:
        raise ApiError(422, "VALIDATION_ERROR", "nothing to change: give at least one field")
    changed = await AlertStore(gw.app.pool).set_rule(name, **changes)
    return changed.to_dict()
