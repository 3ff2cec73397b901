"""What the gateway does, whichever door a request came through (HTTP or WebSocket).

Requests are written as tasks together with a ledger row keyed by the user
and the client's ``requestId`` (``tickbase.gateway_requests``); their state is
always read back from the database, so a gateway restart loses nothing and
HTTP polling sees exactly what the WebSocket would have sent.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from tickbase.app import App
from tickbase.cluster.nodes import waiting_reason
from tickbase.db.sqlfile import load_queries
from tickbase.gateway.auth import Principal
from tickbase.gateway.errors import ApiError
from tickbase.gateway.hub import TaskState
from tickbase.gateway.schemas import ErrorBody, RequestState, TaskSubmit
from tickbase.queue.models import EnqueueRequest, Task, TaskOptions
from tickbase.queue.repository import TaskQueue
from tickbase.types import TaskStatus

Q = load_queries("tickbase.gateway")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Submitted:
    task: Task
    created: bool
    """False when this user's requestId was already used: the existing task stands."""

    @property
    def task_id(self) -> int:
        return self.task.id


TRIGGER = "schedules.trigger"


@dataclass(frozen=True, slots=True)
class Triggered:
    task_id: int
    fire_at: datetime
    created: bool
    """False when this user's requestId was already used: that fire stands."""


class GatewayService:
    """Operations shared by the HTTP routes and the WebSocket protocol."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def enqueue_request(self, params: TaskSubmit) -> EnqueueRequest:
        """Validate a submission into an enqueue request, with the defaults the
        task's handler declares: from this process's registry, else as a live
        node publishes them (its worker may run types this gateway never
        imported), else a stored schedule's queue. Any other type is refused.
        """
        defaults = TaskOptions.from_mapping(
            await self.app.registry.defaults_for(params.task_type, self.app.pool)
        )
        return EnqueueRequest(
            params.task_type,
            params.payload,
            queue=params.queue or defaults.queue,
            priority=_given(params.priority, defaults.priority),
            run_at=params.run_at,
            delay=params.delay_seconds,
            max_attempts=_given(params.max_attempts, defaults.max_attempts),
            retry_delay=float(_given(params.retry_delay, defaults.retry_delay)),
            timeout=_given(params.timeout, defaults.timeout),
            dedupe_key=params.dedupe_key,
            request_id=params.request_id,
        )

    async def submit(
        self, principal: Principal, params: TaskSubmit, request_id: str, action: str
    ) -> Submitted:
        """Enqueue ``params`` as ``principal``'s request ``request_id`` (once per id).

        The same id again with the same body answers with the first task; with
        a different body (or for another action) it is a 409: a client that
        re-uses an id by mistake learns it instead of being handed a task it
        did not ask for.
        """
        # The task carries its request's id: a worker's claim then tells the
        # gateways it started (tickbase_task_started is sent for requested tasks).
        request = dataclasses.replace(await self.enqueue_request(params), request_id=request_id)
        ledger = {"user_id": principal.key, "request_id": request_id, "action": action}
        async with self.app.pool.connection() as conn, conn.transaction():
            # The ledger row and the task commit together, or neither does.
            reserved = await (await conn.execute(Q["request_reserve"], ledger)).fetchone()
            if reserved is not None:
                task = await TaskQueue.enqueue_reserved(conn, request, int(reserved[0]))
                if task is None:
                    # Raised inside the transaction: the reservation is rolled back.
                    raise ApiError(
                        409,
                        "CONFLICT",
                        f"dedupeKey {request.dedupe_key!r} is held by an unfinished task",
                    )
                # The whole row came back with the write: nothing is read after
                # the commit (a read a lost connection could fail once the task exists).
                return Submitted(task, created=True)
        # This user's requestId was used before (or by a request committing
        # meanwhile: the reservation waited for it): answer with that task.
        _, recorded_action, task_id, *_ = await self._ledger(principal, request_id)
        task = await self.app.queue.get(int(task_id))
        if recorded_action != action or not same_request(task, request):
            raise ApiError(
                409,
                "CONFLICT",
                f"requestId {request_id!r} was used for a different request: "
                "send a new requestId for a new request",
                {"requestId": request_id, "action": recorded_action},
            )
        return Submitted(task, created=False)

    async def trigger(self, principal: Principal, name: str, request_id: str) -> Triggered:
        """Fire schedule ``name`` now as ``principal``'s request ``request_id`` (once per id).

        The request is recorded in the transaction that fires, so a re-sent
        request (same id, however often, from any door) fires once; it is
        answered with the first fire.
        """
        params = {"user_id": principal.key, "request_id": request_id, "action": TRIGGER}
        async with self.app.pool.connection() as conn, conn.transaction():
            reserved = await (await conn.execute(Q["request_reserve"], params)).fetchone()
            if reserved is not None:
                task_id, fire_at = await self.app.schedules.trigger(
                    name, conn=conn, task_id=int(reserved[0])
                )
                return Triggered(task_id, fire_at, created=True)
        _, action, task_id, *_, fire_at = await self._ledger(principal, request_id)
        if action != TRIGGER:
            raise ApiError(
                409, "CONFLICT", f"requestId {request_id!r} was already used for {action}"
            )
        return Triggered(int(task_id), fire_at, created=False)

    async def request_state(self, principal: Principal, request_id: str) -> RequestState:
        """The state of one of ``principal``'s requests (404 when unknown to that user)."""
        _, action, task_id, status, result, error, _ = await self._ledger(principal, request_id)
        return request_state(request_id, action, TaskState(task_id, status, result, error))

    async def request_task(self, principal: Principal, request_id: str) -> int:
        """The task behind one of ``principal``'s requests (never shown to clients)."""
        return int((await self._ledger(principal, request_id))[2])

    async def _ledger(self, principal: Principal, request_id: str) -> tuple[Any, ...]:
        async with self.app.pool.connection() as conn:
            cursor = await conn.execute(
                Q["request_get"], {"user_id": principal.key, "request_id": request_id}
            )
            row = await cursor.fetchone()
        if row is None:
            raise ApiError(404, "NOT_FOUND", f"no request {request_id!r} of this user")
        return tuple(row)


async def task_detail(app: App, task_id: int) -> dict[str, Any]:
    """A task's fields with ``waiting`` (see :class:`~tickbase.gateway.schemas.TaskDetailOut`):
    one answer for ``GET /api/v1/tasks/{id}`` and ``tickbase tasks show``."""
    task = await app.queue.get(task_id)
    detail = task.to_dict()
    detail["waiting"] = None
    if task.status in (TaskStatus.PENDING, TaskStatus.RETRYING):
        async with app.pool.connection() as conn:
            detail["waiting"] = await waiting_reason(conn, task.task_type, task.queue)
    return detail


def _given(value: T | None, default: T) -> T:
    return default if value is None else value


def same_request(task: Task, request: EnqueueRequest) -> bool:
    """Whether ``task`` is what ``request`` asks for: a re-sent request, not another
    one under a re-used ``requestId``.

    The stored fields are compared with the request's, defaults resolved (a
    field left out and the same value sent are the same request; the
    payload's key order does not matter). A relative ``delaySeconds`` cannot
    be compared with a stored time and is not; an explicit ``runAt`` is.
    """
    return (
        task.task_type == request.task_type
        and task.payload == request.payload
        and task.queue == request.queue
        and task.priority == request.priority
        and task.max_attempts == request.max_attempts
        and task.retry_delay == float(request.retry_delay)
        and task.timeout == request.timeout
        and task.dedupe_key == request.dedupe_key
        and (request.run_at is None or task.run_at == request.run_at)
    )


def request_state(request_id: str, action: str, state: TaskState) -> RequestState:
    """A task's state as the client sees its request: status, and data or error when final."""
    status = state.status if state.status != "retrying" else "pending"
    if state.status == "succeeded":
        return RequestState(
            request_id=request_id, action=action, status="succeeded", data=state.result
        )
    if state.status in ("failed", "cancelled"):
        return RequestState(
            request_id=request_id,
            action=action,
            status=state.status,
            error=task_error(state),
        )
    return RequestState(request_id=request_id, action=action, status=status)


def task_error(state: TaskState) -> ErrorBody:
    """The client-facing error of a failed or cancelled task (no task id in it)."""
    error: dict[str, Any] = state.error if isinstance(state.error, dict) else {}
    if state.status == "cancelled":
        return ErrorBody(
            code="TASK_CANCELLED",
            message=error.get("message") or "cancelled",
            details={"type": error.get("type")} if error else None,
        )
    return ErrorBody(
        code="TASK_FAILED",
        message=str(error.get("message") or "the task failed"),
        details={"type": error.get("type")},
    )
