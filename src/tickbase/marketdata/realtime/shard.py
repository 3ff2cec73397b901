"""A shard worker in its own process, and the loop's handle on it.

Overview
    :class:`ProcessShard` starts one child process (``spawn``: no state of
    the parent leaks in) that owns a set of symbols. The parent sends it
    trade batches with :meth:`ProcessShard.feed` and asks for changes with
    :meth:`ProcessShard.pull` (the :class:`~tickbase.marketdata.realtime.loop.Shard`
    protocol); the child aggregates with the ``aggregate`` function it was
    given (importable by name, e.g. ``"tickbase.marketdata.realtime...:make"``,
    called once in the child with ``options`` to build its state) and keeps a
    :class:`~tickbase.marketdata.realtime.changes.ChangeLog`.

Never blocking the event loop
    Messages to the child go through a bounded queue drained by one sender
    thread: a child that is stopped (SIGSTOP) or slow fills its pipe, the
    sender blocks, the queue fills, and :meth:`feed` refuses further batches
    (counted in ``refused``) instead of blocking the loop. Replies come on a
    second pipe, read by a receiver thread that hands each to the event
    loop; a reply to a pull the loop already gave up on is discarded.

Failure cases
    A child that died answers nothing: its pulls time out like a stopped
    one's, and ``alive`` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import itertools
import logging
import multiprocessing
import queue
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from multiprocessing.connection import Connection
from typing import Any

from tickbase.marketdata.realtime.changes import ChangeLog

logger = logging.getLogger("tickbase.realtime")

READY = "ready"
"""The child's first message: its state is built, it answers pulls."""

PUT_BACKLOG = 2
"""Messages waiting for the child before :meth:`ProcessShard.put` waits."""

OUTBOX_CAPACITY = 1024
"""Messages (trade batches, pulls) waiting for a slow child before feed refuses more."""

START_TIMEOUT_SECONDS = 60.0
"""How long :meth:`ProcessShard.start` waits for the child to be ready (spawned, its
imports done, its aggregation built)."""


Aggregate = Callable[[Sequence[Any], ChangeLog], None]
"""Fold a batch of trades into the change log (the child's state lives in its closure)."""


def _resolve(target: str) -> Callable[..., Aggregate]:
    module, _, name = target.partition(":")
    factory: Callable[..., Aggregate] = getattr(importlib.import_module(module), name)
    return factory


def _child(inbox: Connection, outbox: Connection, target: str, options: Mapping[str, Any]) -> None:
    """The child's loop: trades are folded in, pulls answered, in arrival order."""
    aggregate = _resolve(target)(**options)
    # The shard's state is bars and counters without reference cycles, freed by their
    # reference counts; the cyclic collector would only add pauses of tens of
    # milliseconds to pulls (its state frozen first: what start-up made is not scanned).
    gc.freeze()
    gc.disable()
    # An aggregation may defer its reporting to the pull (one report per pull, not per
    # message: a live stream sends a message every few milliseconds).
    report: Callable[[ChangeLog], None] | None = getattr(aggregate, "report", None)
    log = ChangeLog()
    outbox.send(READY)
    while True:
        try:
            message = inbox.recv()
        except (EOFError, OSError):
            return
        kind = message[0]
        if kind == "trades":
            aggregate(message[1], log)
        elif kind == "pull":
            _, request, since = message
            if report is not None:
                report(log)
            since = min(since, log.version)  # a restarted child starts again at 0
            log.acknowledge(since)  # the loop has these: settled ones are forgotten
            version, changes = log.since(since)
            outbox.send((request, version, dict(changes)))
        elif kind == "stop":
            return


class ProcessShard:
    """A shard worker process (see the module).

    Example::

        shard = ProcessShard("shard-0", "mypkg.agg:make_aggregator")
        await shard.start()
        shard.feed(trades)
        version, changes = await shard.pull(0)
        await shard.stop()
    """

    def __init__(
        self,
        name: str,
        target: str,
        *,
        options: Mapping[str, Any] | None = None,
        capacity: int = OUTBOX_CAPACITY,
    ) -> None:
        self.name = name
        self.target = target
        self.options = dict(options or {})
        """Keyword arguments of the target's factory (picklable), e.g. the intervals."""
        self._outbox: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self._requests = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[tuple[int, Mapping[Hashable, Any]]]] = {}
        self._process: Any = None
        self._conn: Connection | None = None
        self._replies: Connection | None = None
        self._threads: list[threading.Thread] = []
        self._ready = asyncio.Event()
        self.refused = 0
        """Messages refused because the child was not keeping up (or stopped)."""
        self._room = asyncio.Event()
        # Set by a waiting put before it tries: the sender wakes the event loop only then
        # (a wake-up per message cost the loop a self-pipe write and read each, 10,000/s
        # with a live stream). A put that finds the queue full leaves a message in it,
        # so the sender takes one more and sees the flag.
        self._want_room = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else int(self._process.pid)

    @property
    def alive(self) -> bool:
        return self._process is not None and bool(self._process.is_alive())

    async def start(self, timeout: float = START_TIMEOUT_SECONDS) -> None:
        """Spawn the child; return once it has built its state and answers."""
        context = multiprocessing.get_context("spawn")
        # One pipe each way, each end used by one thread with blocking I/O: an event
        # loop that sets a watched descriptor non-blocking (uvloop does) would turn a
        # large message's write or read into a half-sent, corrupt one.
        child_inbox, to_child = context.Pipe(duplex=False)
        from_child, child_outbox = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_child,
            args=(child_inbox, child_outbox, self.target, self.options),
            name=f"tickbase-{self.name}",
            daemon=True,
        )
        await asyncio.to_thread(self._process.start)
        child_inbox.close()
        child_outbox.close()
        self._conn = to_child
        self._replies = from_child
        self._loop = asyncio.get_running_loop()
        self._ready = asyncio.Event()
        for work, role in ((self._send_forever, "sender"), (self._receive_forever, "receiver")):
            thread = threading.Thread(target=work, name=f"tickbase-{self.name}-{role}", daemon=True)
            thread.start()
            self._threads.append(thread)
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            await self.stop()
            raise ConnectionError(
                f"shard {self.name} did not start within {timeout:.0f} s"
            ) from None

    def feed(self, trades: Any) -> bool:
        """Queue a trade batch for the child (never blocks); ``False``: refused."""
        return self._post(("trades", trades))

    async def put(self, trades: Any, backlog: int = PUT_BACKLOG) -> None:
        """Queue a trade batch once fewer than ``backlog`` messages wait for the child
        (a replay's back pressure: nothing is refused, and a pull never waits behind
        more than a few batches)."""
        while True:
            self._room.clear()
            self._want_room = True  # the sender wakes us only when someone waits
            if self._outbox.qsize() < backlog:
                try:
                    self._outbox.put_nowait(("trades", trades))
                    return
                except queue.Full:
                    pass
            if not self.alive:
                raise ConnectionError(f"shard {self.name} is not running")
            await self._room.wait()

    async def pull(self, since: int) -> tuple[int, Mapping[Hashable, Any]]:
        """The child's changes after ``since`` (wait for them; cancel to give up)."""
        request = next(self._requests)
        future: asyncio.Future[tuple[int, Mapping[Hashable, Any]]] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting[request] = future
        try:
            if not self._post(("pull", request, since)):
                raise ConnectionError(f"shard {self.name} is not keeping up: pull refused")
            return await future
        finally:
            self._waiting.pop(request, None)

    async def stop(self, timeout: float = 5.0) -> None:
        """Ask the child to stop, then make sure it has (terminated if it must be)."""
        with contextlib.suppress(queue.Full):
            self._outbox.put_nowait(("stop",))
        if self._process is not None:
            await asyncio.to_thread(self._process.join, timeout)
            if self._process.is_alive():
                self._process.kill()
                await asyncio.to_thread(self._process.join, timeout)
        self._outbox.put(None)  # the sender's end
        for end in (self._conn, self._replies):
            if end is not None:
                end.close()
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(ConnectionError(f"shard {self.name} stopped"))

    def _post(self, message: Any) -> bool:
        try:
            self._outbox.put_nowait(message)
        except queue.Full:
            self.refused += 1
            return False
        return True

    def _send_forever(self) -> None:
        while True:
            message = self._outbox.get()
            if self._want_room and self._loop is not None and not self._loop.is_closed():
                self._want_room = False
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    self._loop.call_soon_threadsafe(self._room.set)
            if message is None or self._conn is None:
                return
            try:
                self._conn.send(message)
            except (OSError, ValueError):
                return  # the child is gone (or we closed the pipe)

    def _receive_forever(self) -> None:
        """Read replies (blocking, off the event loop: unpickling a big answer never
        stalls it) and hand each to the loop."""
        assert self._replies is not None and self._loop is not None
        while True:
            try:
                reply = self._replies.recv()
            except (EOFError, OSError, ValueError):
                return  # the child is gone, or we closed the pipe
            try:
                self._loop.call_soon_threadsafe(self._deliver, reply)
            except RuntimeError:
                return  # the event loop is closed

    def _deliver(self, reply: Any) -> None:
        if reply == READY:
            self._ready.set()
            return
        request, version, changes = reply
        future = self._waiting.get(request)
        if future is not None and not future.done():
            future.set_result((version, changes))
        # else: the loop gave up on that pull; its next one asks again


__all__ = ["OUTBOX_CAPACITY", "START_TIMEOUT_SECONDS", "Aggregate", "ProcessShard"]
