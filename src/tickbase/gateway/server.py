"""The gateway's HTTP server: uvicorn with every connection bounded.

Why not plain uvicorn
    uvicorn bounds neither the time a client may take to send its headers nor
    the number of connections it holds open: ``limit_concurrency`` answers 503
    only once a request's headers are complete, so sockets that never finish
    a request (slowloris, half-open floods) keep a file descriptor each until
    the process has none left for its database pool and heartbeat. Its
    httptools parser has no header size limit either. A proxy in front
    (nginx) would close these gaps, but tickbase runs as one process with one
    dependency, so the gaps are closed here, in a subclass of uvicorn's
    httptools protocol (:func:`bounded_protocol`):

    * **connection cap**: a connection beyond :attr:`ServerLimits.max_connections`
      (never more than the process's descriptor limit less a reserve) is
      answered 503 and closed as it is accepted;
    * **header timeout**: a request whose headers are not complete within
      :attr:`ServerLimits.header_timeout` of its first byte (or of the
      connection's opening) is closed, with a 408 when nothing was answered;
    * **header size**: a request line plus headers over
      :attr:`ServerLimits.max_header_bytes` get 431 and the connection closes;
    * **lingering close**: a response sent before its request's body was
      read (401, 413 from :mod:`tickbase.gateway.guard`) half-closes the
      connection and discards what the client still sends for a moment before
      closing, as nginx and Go do, so that the client reads the answer rather
      than a reset.

    Bodies are bounded by :class:`~tickbase.gateway.guard.RequestGuard` (it
    knows who is asking); WebSocket frames by uvicorn's ``ws_max_size``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    from fastapi import FastAPI

    from tickbase.settings import Settings

logger = logging.getLogger("tickbase.gateway")

MAX_FRAME_BYTES = 64 * 1024
PING_SECONDS = 30.0
# Descriptors kept for everything but client connections: the database pool,
# the LISTEN and heartbeat connections, log files, the libraries' own.
FD_RESERVE = 256
# How long a connection closed before its request body was read keeps
# discarding input, so the client gets to read the answer (Go: 500 ms; nginx:
# up to 30 s). Loopback moves 100 MB well inside it.
LINGER_SECONDS = 2.0


def _error_bytes(status_line: bytes, code: str, message: str) -> bytes:
    body = b'{"error":{"code":"%s","message":"%s","details":null}}' % (
        code.encode("ascii"),
        message.encode("ascii"),
    )
    return (
        b"HTTP/1.1 %s\r\ncontent-type: application/json\r\nconnection: close\r\n"
        b"content-length: %d\r\n\r\n%s" % (status_line, len(body), body)
    )


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Bounds of one gateway process (``TICKBASE_*`` settings of the same names)."""

    max_connections: int = 10_000
    """Client connections held at once (HTTP and WebSocket), capped by the descriptor limit."""
    header_timeout: float = 10.0
    """Seconds from a request's first byte (or the connection's opening) to its last header."""
    max_header_bytes: int = 64 * 1024
    """Request line and headers together."""
    keep_alive_timeout: float = 5.0
    """Seconds an idle keep-alive connection is kept open."""
    max_body_bytes: int = 1024 * 1024
    """Request bodies (enforced by the request guard, before anything parses them)."""
    body_timeout: float = 30.0
    """Seconds to receive a whole request body once its headers are in."""

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerLimits:
        return cls(
            max_connections=settings.max_connections,
            header_timeout=settings.header_timeout,
            max_header_bytes=settings.max_header_bytes,
            keep_alive_timeout=settings.keep_alive_timeout,
            max_body_bytes=settings.max_body_bytes,
            body_timeout=settings.body_timeout,
        )

    def effective_connections(self) -> int:
        """The connection cap this process can honour: at most its descriptors less a reserve."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            return self.max_connections
        return max(1, min(self.max_connections, soft - FD_RESERVE))


def raise_fd_limit() -> int:
    """Raise this process's soft descriptor limit to its hard limit; return the new soft limit.

    The default soft limit (often 1024) is a relic of ``select()``; servers
    (Go's runtime, nginx's ``worker_rlimit_nofile``) raise it at start. An
    unlimited hard limit is not a value the kernel accepts for descriptors, so
    then the soft limit goes to 2**20 (Linux's default ``nr_open``) at most.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return soft if soft != resource.RLIM_INFINITY else 1 << 30
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        return wanted
    return soft


class _LingeringTransport:
    """The connection's transport, closing gracefully when a request body is still coming."""

    def __init__(self, transport: asyncio.Transport, protocol: BoundedProtocol) -> None:
        self._transport = transport
        self._protocol = protocol

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        transport = self._transport
        if transport.is_closing() or not self._protocol.body_unread():
            transport.close()
            return
        self._protocol.discard_input()
        if transport.can_write_eof():
            transport.write_eof()  # FIN after the answer: the client may stop sending
        self._protocol.loop.call_later(LINGER_SECONDS, transport.close)


class BoundedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a connection cap, header timeout and size limit."""

    limits: ServerLimits = ServerLimits()
    connection_cap: int = ServerLimits().max_connections

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._discarding = False
        self._refused = False

    # ---- connection --------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.connection_cap:
            # Answered and closed before anything is parsed or allocated.
            self._refused = True
            transport.write(
                _error_bytes(b"503 Service Unavailable", "UNAVAILABLE", "too many connections")
            )
            transport.close()
            return
        super().connection_made(_LingeringTransport(transport, self))  # type: ignore[arg-type]
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        self._disarm_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._discarding or self._refused:
            return
        super().data_received(data)

    def discard_input(self) -> None:
        """From now on drop whatever the client sends (the connection is closing)."""
        self._discarding = True
        self._disarm_header_timer()
        self.flow.resume_reading()

    def body_unread(self) -> bool:
        """Whether the current request's body is still (partly) on its way."""
        return self.cycle is not None and self.cycle.more_body

    # ---- header bounds -----------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        if self._header_timer is None:  # the connection's first request keeps its timer
            self._arm_header_timer()

    def on_url(self, url: bytes) -> None:
        self._count_header_bytes(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header_bytes(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm_header_timer()
        super().on_headers_complete()

    def _count_header_bytes(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > self.limits.max_header_bytes and not self._discarding:
            self._abort(
                b"431 Request Header Fields Too Large",
                "HEADERS_TOO_LARGE",
                f"request line and headers over {self.limits.max_header_bytes} bytes",
            )

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.limits.header_timeout, self._header_timeout)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout(self) -> None:
        self._header_timer = None
        if self.transport is None or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is being answered; its own bounds apply
        self._abort(
            b"408 Request Timeout",
            "TIMEOUT",
            f"request headers not complete within {self.limits.header_timeout:g} s",
        )

    def _abort(self, status_line: bytes, code: str, message: str) -> None:
        self._discarding = True
        self._disarm_header_timer()
        self.transport.write(_error_bytes(status_line, code, message))
        self.transport.close()


def bounded_protocol(limits: ServerLimits) -> type[BoundedProtocol]:
    """A protocol class for uvicorn's ``http=`` setting, bound to ``limits``."""
    cap = limits.effective_connections()
    return type(
        "TickbaseHttpProtocol", (BoundedProtocol,), {"limits": limits, "connection_cap": cap}
    )


async def serve(
    api: FastAPI,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    stop: asyncio.Event | None = None,
    started: asyncio.Event | None = None,
    limits: ServerLimits | None = None,
) -> None:
    """Serve ``api`` on uvicorn until ``stop`` is set, every connection bounded by ``limits``.

    ``limits`` defaults to the ones :func:`~tickbase.gateway.app.create_gateway`
    read from the app's settings.
    """
    import uvicorn

    bounds: ServerLimits = limits or getattr(api.state, "server_limits", None) or ServerLimits()
    raise_fd_limit()
    protocol = bounded_protocol(bounds)
    config = uvicorn.Config(
        api,
        host=host,
        port=port,
        http=protocol,
        ws_max_size=MAX_FRAME_BYTES,
        ws_ping_interval=PING_SECONDS,
        ws_ping_timeout=PING_SECONDS,
        timeout_keep_alive=max(1, round(bounds.keep_alive_timeout)),
        log_level="warning",
        lifespan="on",
        access_log=False,
    )
    server = uvicorn.Server(config)
    # The CLI owns the signals (it stops every role together, gateway included).
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    serving = asyncio.create_task(server.serve())
    waiter = asyncio.create_task((stop or asyncio.Event()).wait())
    try:
        while not server.started and not serving.done():  # noqa: ASYNC110 (uvicorn has no started event)
            await asyncio.sleep(0.01)
        if started is not None and server.started:
            started.set()
            logger.info(
                "gateway on %s:%d: at most %d connections, headers within %g s, bodies up to %d bytes",
                host,
                port,
                protocol.connection_cap,
                bounds.header_timeout,
                bounds.max_body_bytes,
            )
        await asyncio.wait({serving, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        waiter.cancel()
        await serving
