"""WebSocket ``/ws``: request → ack → success | error, and pushes.

Protocol
    client  ``{"type":"request","requestId":"r1","action":"tasks.submit","params":{...}}``
    server  ``{"type":"ack","requestId":"r1"}`` at once, before any work
    server  ``{"type":"success","requestId":"r1","data":...}`` or
            ``{"type":"error","requestId":"r1","error":{"code","message","details"}}``,
            exactly one per request
    server  ``{"type":"update","channel":"task","content":{...}}`` pushes (no requestId)

    ``subscribe``/``unsubscribe`` take ``{"channel": ...}``; the ``kline`` channel
    also a ``symbol`` and an ``interval`` (one subscription per series, see
    :mod:`tickbase.gateway.kline_ws`).

    ``requestId`` is the client's; the server's task id never appears in a
    frame. A malformed frame, an unknown type or action, a missing or
    duplicate in-flight ``requestId`` or bad params get an ``error`` and the
    connection stays open. Failed authentication closes with 4401, a user's
    fourth connection with 4429, its token's revocation with 4401, a
    connection silent for ``idle_seconds``
    with 4408, a binary frame with 1003; frames over the size limit are closed
    by the server (1009).

Why requests survive a restart
    ``tasks.submit`` writes the task and the user's ledger row in one
    statement before anything is awaited; the result is read from the
    database when the task's NOTIFY arrives. A client that lost its
    connection asks ``tasks.status`` (or polls ``GET /api/v1/requests/{id}``)
    and gets the final state; re-sending the same ``tasks.submit`` never runs
    the task twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from fastapi import WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from tickbase.cluster.alert_json import public_alert
from tickbase.errors import InvalidTransition, TickbaseError
from tickbase.gateway.auth import Principal
from tickbase.gateway.errors import ApiError, api_error, validation_details
from tickbase.gateway.feed import FEED_CHANNELS, DashboardFeed
from tickbase.gateway.hub import Hub, TaskState
from tickbase.gateway.kline_ws import KLINE_CHANNEL, KlineFanout, KlineSubscribe, KlineUnsubscribe
from tickbase.gateway.schemas import REQUEST_ID_PATTERN, InModel, TaskSubmit
from tickbase.gateway.service import GatewayService, request_state, task_error

logger = logging.getLogger("tickbase.gateway.ws")

CLOSE_UNAUTHORIZED = 4401
CLOSE_TOO_MANY = 4429
CLOSE_IDLE = 4408
CLOSE_UNSUPPORTED = 1003  # RFC 6455: a data type the endpoint cannot accept
HANDLER_GRACE_SECONDS = 10.0
CHANNELS = frozenset({"task", "alert", KLINE_CHANNEL, *FEED_CHANNELS})
MAX_PENDING_PUSHES = 64
"""Feed and kline pushes queued for one slow client before further ones are refused."""
WRITE_ACTIONS = frozenset({"tasks.submit", "tasks.cancel", "schedules.trigger"})

_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)


class SubmitParams(TaskSubmit):
    """``tasks.submit`` params: the envelope's requestId names the request."""

    request_id: None = None


class RequestRef(InModel):
    request_id: str


class ScheduleRef(InModel):
    name: str


class ChannelRef(InModel):
    channel: str


class WsLimits:
    """Per-process limits of the WebSocket door, counted per principal key (token id).

    The counts change only through the ``acquire_*``/``release_*`` pairs, and
    each :class:`Connection` releases a request exactly once (it owns the set
    of its in-flight ids), so no path can count a request twice.
    """

    def __init__(
        self,
        *,
        max_connections_per_user: int = 3,
        max_in_flight_per_user: int = 100,
        idle_seconds: float = 300.0,
    ) -> None:
        self.max_connections_per_user = max_connections_per_user
        self.max_in_flight_per_user = max_in_flight_per_user
        self.idle_seconds = idle_seconds
        self.connections: dict[str, int] = {}
        self.in_flight: dict[str, int] = {}

    def acquire_connection(self, key: str) -> bool:
        """Count a new connection of ``key``; ``False`` (nothing counted) when at the cap."""
        return _acquire(self.connections, key, self.max_connections_per_user)

    def release_connection(self, key: str) -> None:
        _release(self.connections, key)

    def acquire_request(self, key: str) -> bool:
        """Count a request in flight for ``key``; ``False`` (nothing counted) when at the cap."""
        return _acquire(self.in_flight, key, self.max_in_flight_per_user)

    def release_request(self, key: str) -> None:
        _release(self.in_flight, key)


def _acquire(counts: dict[str, int], key: str, cap: int) -> bool:
    current = counts.get(key, 0)
    if current >= cap:
        return False
    counts[key] = current + 1
    return True


def _release(counts: dict[str, int], key: str) -> None:
    remaining = counts.get(key, 0) - 1
    if remaining > 0:
        counts[key] = remaining
    else:
        # Never below zero, and no entry kept per token that ever connected.
        counts.pop(key, None)


class Connection:
    """One client connection: its in-flight requests, subscriptions and pushes."""

    def __init__(
        self,
        websocket: WebSocket,
        principal: Principal,
        service: GatewayService,
        hub: Hub,
        limits: WsLimits,
        feed: DashboardFeed | None = None,
        klines: KlineFanout | None = None,
    ) -> None:
        self.websocket = websocket
        self.feed = feed
        self.klines = klines
        self._unfeed: dict[str, Callable[[], None]] = {}
        self._pending_pushes = 0
        self.principal = principal
        self.service = service
        self.hub = hub
        self.limits = limits
        self.in_flight: set[str] = set()
        # Submissions not yet written: a status or cancel sent right after the
        # submit's ack (before its row exists) waits for the row.
        self.writing: dict[str, asyncio.Event] = {}
        self.channels: set[str] = set()
        self._unwatch: dict[str, Callable[[], None]] = {}
        self._send_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._unwatch_alerts = hub.watch_alerts(self._on_alert)
        self._unwatch_token = (
            hub.watch_token(principal.token_id, self._on_revoked)
            if principal.token_id is not None
            else _nothing
        )

    # ---- sending -------------------------------------------------------------------

    async def send(self, frame: dict[str, Any]) -> None:
        if self._closed:
            return
        text = orjson.dumps(frame, default=_json_default).decode()
        async with self._send_lock:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
                await self.websocket.send_text(text)

    async def error(
        self, request_id: str | None, code: str, message: str, details: Any = None
    ) -> None:
        frame: dict[str, Any] = {
            "type": "error",
            "error": {"code": code, "message": message, "details": details},
        }
        if request_id is not None:
            frame["requestId"] = request_id
        await self.send(frame)

    def _spawn(self, work: Awaitable[None], name: str = "push") -> None:
        task = asyncio.ensure_future(work)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- receiving ---------------------------------------------------------------

    async def serve(self) -> None:
        """Read frames until the client leaves or goes silent."""
        try:
            while True:
                try:
                    async with asyncio.timeout(self.limits.idle_seconds):
                        message = await self.websocket.receive()
                except TimeoutError:
                    await self.websocket.close(
                        CLOSE_IDLE, f"idle for {self.limits.idle_seconds:g} s"
                    )
                    return
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                if text is None:
                    await self.websocket.close(
                        CLOSE_UNSUPPORTED, "binary frames are not supported: send JSON as text"
                    )
                    return
                await self.handle(text)
        except (WebSocketDisconnect, RuntimeError):
            return
        finally:
            await self._shut()

    def _on_revoked(self) -> None:
        # Revoking a token ends what it opened: its connections close at once,
        # on every gateway (a NOTIFY), not at their next authentication.
        self._spawn(self._close_revoked(), name="revoked")

    async def _close_revoked(self) -> None:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
            await self.websocket.close(CLOSE_UNAUTHORIZED, "the API token was revoked")

    async def _shut(self) -> None:
        self._closed = True
        self._unwatch_alerts()
        self._unwatch_token()
        if self.klines is not None:
            self.klines.drop(self)
        for unfeed in self._unfeed.values():
            unfeed()
        self._unfeed.clear()
        for unwatch in self._unwatch.values():
            unwatch()
        self._unwatch.clear()
        # An acked request is honoured even if its client left: let the
        # handlers finish writing (they are short), then drop the rest.
        handlers = [task for task in self._tasks if task.get_name() == "handler"]
        if handlers:
            await asyncio.wait(handlers, timeout=HANDLER_GRACE_SECONDS)
        for task in list(self._tasks):
            task.cancel()
        # What is still counted (requests waiting for their task, handlers cut
        # short) is released here, each id once: _finish owns the count.
        for request_id in list(self.in_flight):
            self._finish(request_id)

    async def handle(self, text: str) -> None:
        try:
            frame = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            await self.error(None, "INVALID_FRAME", f"not JSON: {exc}")
            return
        if not isinstance(frame, dict):
            await self.error(None, "INVALID_FRAME", "a frame must be a JSON object")
            return
        request_id = frame.get("requestId")
        if request_id is not None and (
            not isinstance(request_id, str) or not _REQUEST_ID.match(request_id)
        ):
            await self.error(
                None,
                "INVALID_REQUEST_ID",
                "requestId must be 1 to 128 letters, digits or _ . : -",
            )
            return
        if frame.get("type") != "request":
            await self.error(
                request_id,
                "UNKNOWN_TYPE",
                f"unknown frame type {frame.get('type')!r}: clients send type 'request'",
            )
            return
        if request_id is None:
            await self.error(None, "MISSING_REQUEST_ID", "a request needs a requestId")
            return
        action = frame.get("action")
        handler = _ACTIONS.get(action) if isinstance(action, str) else None
        if handler is None:
            await self.error(
                request_id,
                "UNKNOWN_ACTION",
                f"unknown action {action!r}",
                {"actions": sorted(_ACTIONS)},
            )
            return
        if request_id in self.in_flight:
            await self.error(
                request_id, "DUPLICATE_REQUEST", f"request {request_id!r} is already in flight"
            )
            return
        if not self.limits.acquire_request(self.principal.key):
            await self.error(
                request_id,
                "RATE_LIMITED",
                f"at most {self.limits.max_in_flight_per_user} requests in flight per user",
            )
            return
        params = frame.get("params", {})
        self.in_flight.add(request_id)
        if action == "tasks.submit":
            self.writing[request_id] = asyncio.Event()
        await self.send({"type": "ack", "requestId": request_id})
        self._spawn(self._run(handler, request_id, str(action), params), name="handler")

    async def _run(self, handler: Handler, request_id: str, action: str, params: Any) -> None:
        done = True
        try:
            if action in WRITE_ACTIONS and not self.principal.can_write:
                raise ApiError(403, "FORBIDDEN", f"{action} needs an admin token")
            if not isinstance(params, dict):
                raise ApiError(422, "VALIDATION_ERROR", "params must be a JSON object")
            done = await handler(self, request_id, params)
        except ValidationError as exc:
            await self.error(
                request_id,
                "VALIDATION_ERROR",
                "invalid params",
                validation_details(exc.errors()),
            )
        except (ApiError, TickbaseError) as exc:
            error = api_error(exc)
            await self.error(request_id, error.code, error.message, error.details)
        except Exception:
            logger.exception("request %s (%s) failed", request_id, action)
            await self.error(request_id, "INTERNAL", "internal error (logged on the server)")
        finally:
            written = self.writing.pop(request_id, None) if action == "tasks.submit" else None
            if written is not None:
                written.set()
            if done:
                self._finish(request_id)

    async def written(self, request_id: str) -> None:
        """Wait until this connection's submission ``request_id`` (if any) is stored."""
        event = self.writing.get(request_id)
        if event is not None:
            await event.wait()

    def _finish(self, request_id: str) -> None:
        """Release ``request_id``'s in-flight slot (once, however often it is called)."""
        if request_id in self.in_flight:
            self.in_flight.discard(request_id)
            self.limits.release_request(self.principal.key)

    # ---- pushes --------------------------------------------------------------------

    def _on_alert(self, alert: dict[str, Any]) -> None:
        if "alert" in self.channels:
            content = public_alert(alert)
            self._spawn(self.send({"type": "update", "channel": "alert", "content": content}))

    def follow_feed(self, channel: str) -> None:
        """Push the dashboard feed's ``channel`` to this client (once per channel)."""
        if self.feed is None or channel in self._unfeed:
            return

        def on_content(content: dict[str, Any]) -> None:
            # Refused when the client is far behind: a page reloads what it shows.
            self.push(channel, [content])

        self._unfeed[channel] = self.feed.watch(channel, on_content)

    def unfollow_feed(self, channel: str) -> None:
        self._unfeed.pop(channel, _nothing)()

    def push(self, channel: str, contents: Sequence[dict[str, Any]]) -> bool:
        """Send ``contents`` as ``update`` frames of ``channel``, in order, without
        waiting; ``False`` (nothing queued) when :data:`MAX_PENDING_PUSHES` pushes
        are pending already (a slow client). Never blocks the caller."""
        if self._closed:
            return True  # nobody to tell: taken and forgotten
        if self._pending_pushes >= MAX_PENDING_PUSHES:
            return False
        self._pending_pushes += 1
        self._spawn(self._send_pushes(channel, contents))
        return True

    async def _send_pushes(self, channel: str, contents: Sequence[dict[str, Any]]) -> None:
        try:
            for content in contents:
                await self.send({"type": "update", "channel": channel, "content": content})
        finally:
            self._pending_pushes -= 1

    def watch_request(self, request_id: str, action: str, task_id: int, *, fresh: bool) -> None:
        """Until the task is final: push its state changes, then send the final frame.

        ``fresh``: the task was just created (an old one, found by a re-sent
        requestId, may have ended long ago: it is read at once)."""

        if self._closed:
            return  # the client left while the task was written: nobody to tell

        def on_state(state: TaskState) -> None:
            self._spawn(self._on_state(request_id, action, state))

        self._unwatch[request_id] = self.hub.watch(
            task_id, on_state, progress="task" in self.channels
        )
        if not fresh:
            self._spawn(self.hub.check([task_id]))

    async def _on_state(self, request_id: str, action: str, state: TaskState) -> None:
        if request_id not in self.in_flight:
            return  # already answered
        status = request_state(request_id, action, state).status
        if "task" in self.channels:
            await self.send(
                {
                    "type": "update",
                    "channel": "task",
                    "content": {"requestId": request_id, "status": status},
                }
            )
        if not state.final:
            return
        self._unwatch.pop(request_id, lambda: None)()
        self._finish(request_id)
        if state.status == "succeeded":
            await self.send({"type": "success", "requestId": request_id, "data": state.result})
        else:
            body = task_error(state)
            await self.error(request_id, body.code, body.message, body.details)


Handler = Callable[[Connection, str, dict[str, Any]], Awaitable[bool]]
"""An action: returns False when its final frame comes later (a task's end)."""


def _nothing() -> None:
    """Unwatch of nothing (a principal without a token)."""


async def _submit(conn: Connection, request_id: str, params: dict[str, Any]) -> bool:
    body = SubmitParams.model_validate(params)
    submitted = await conn.service.submit(conn.principal, body, request_id, "tasks.submit")
    conn.watch_request(request_id, "tasks.submit", submitted.task_id, fresh=submitted.created)
    return False


async def _status(conn: Connection, request_id: str, params: dict[str, Any]) -> bool:
    ref = RequestRef.model_validate(params)
    await conn.written(ref.request_id)
    state = await conn.service.request_state(conn.principal, ref.request_id)
    await conn.send(
        {"type": "success", "requestId": request_id, "data": state.model_dump(by_alias=True)}
    )
    return True


async def _cancel(conn: Connection, request_id: str, params: dict[str, Any]) -> bool:
    ref = RequestRef.model_validate(params)
    await conn.written(ref.request_id)
    task_id = await conn.service.request_task(conn.principal, ref.request_id)
    try:
        status = await conn.service.app.queue.cancel(task_id, reason="cancelled by its requester")
    except InvalidTransition as exc:
        # Its message names the task id, which never reaches a client: name the request.
        why = str(exc).partition(": ")[2]
        raise ApiError(
            409, "CONFLICT", f"cannot cancel request {ref.request_id!r}: {why}"
        ) from None
    await conn.send(
        {
            "type": "success",
            "requestId": request_id,
            "data": {"requestId": ref.request_id, "status": str(status)},
        }
    )
    return True


async def _trigger(conn: Connection, request_id: str, params: dict[str, Any]) -> bool:
    ref = ScheduleRef.model_validate(params)
    fired = await conn.service.trigger(conn.principal, ref.name, request_id)
    await conn.send(
        {
            "type": "success",
            "requestId": request_id,
            "data": {"name": ref.name, "fireAt": fired.fire_at},
        }
    )
    return True


async def _subscribe(conn: Connection, request_id: str, params: dict[str, Any]) -> bool:
    if params.get("channel") == KLINE_CHANNEL:
        return await _subscribe_kline(conn, request_id, params)
    ref = ChannelRef.model_validate(params)
    if ref.channel not in CHANNELS:
        raise ApiError(
            422,
            "UNKNOWN_CHANNEL",
            f"unknown channel {ref.channel!r}",
            {"channels": sorted(CHANNELS)},
        )
    conn.channels.add(ref.channel)
    if ref.channel in FEED_CHANNELS:
        conn.follow_feed(ref.channel)
    await conn.send(
        {"type": "success", "requestId": request_id, "data": {"channels": sorted(conn.channels)}}
    )
    return True


async def _unsubscribe(conn: Connection, request_id: str, params: dict[str, Any]) -> bool:
    if params.get("channel") == KLINE_CHANNEL:
        return await _unsubscribe_kline(conn, request_id, params)
    ref = ChannelRef.model_validate(params)
    conn.channels.discard(ref.channel)
    conn.unfollow_feed(ref.channel)
    await conn.send(
        {"type": "success", "requestId": request_id, "data": {"channels": sorted(conn.channels)}}
    )
    return True


async def _subscribe_kline(conn: Connection, request_id: str, params: dict[str, Any]) -> bool:
    ref = KlineSubscribe.model_validate(params)
    if conn.klines is None:
        raise ApiError(503, "REALTIME_NOT_RUNNING", "the real-time pipeline is not running here")
    # Synchronous up to the success frame's send: the catch-up pushes queue behind it.
    series = conn.klines.subscribe(conn, ref.symbol, ref.interval)
    conn.channels.add(KLINE_CHANNEL)
    await _kline_success(conn, request_id, series)
    return True


async def _unsubscribe_kline(conn: Connection, request_id: str, params: dict[str, Any]) -> bool:
    ref = KlineUnsubscribe.model_validate(params)
    series = conn.klines.unsubscribe(conn, ref.symbol, ref.interval) if conn.klines else []
    if not series:
        conn.channels.discard(KLINE_CHANNEL)
    await _kline_success(conn, request_id, series)
    return True


async def _kline_success(conn: Connection, request_id: str, series: list[tuple[str, str]]) -> None:
    data = {
        "channels": sorted(conn.channels),
        "klines": [{"symbol": symbol, "interval": interval} for symbol, interval in series],
    }
    await conn.send({"type": "success", "requestId": request_id, "data": data})


async def _ping(conn: Connection, request_id: str, _: dict[str, Any]) -> bool:
    await conn.send(
        {"type": "success", "requestId": request_id, "data": {"pong": True, "time": time.time()}}
    )
    return True


_ACTIONS: dict[str, Handler] = {
    "tasks.submit": _submit,
    "tasks.status": _status,
    "tasks.cancel": _cancel,
    "schedules.trigger": _trigger,
    "subscribe": _subscribe,
    "unsubscribe": _unsubscribe,
    "ping": _ping,
}


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise TypeError(f"not JSON-encodable: {type(value).__name__}")
