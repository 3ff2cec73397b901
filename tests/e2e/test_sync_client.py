"""Synchronous programs: ``defer_sync`` and the sync client against a worker process."""

from __future__ import annotations

import signal

import pytest

import tickbase
from tests.conftest import fast_settings
from tests.e2e.conftest import Processes, tickbase_env


def test_defer_sync_and_blocking_result(database_url: str, processes: Processes) -> None:
    app = tickbase.App(settings=fast_settings(database_url))

    @app.task(name="test.echo_sync")
    def echo_sync(**payload: object) -> dict[str, object]:
        return payload

    worker = processes.start(
        "worker",
        "--app",
        "tests.support.apps:app",
        env=tickbase_env(database_url, TICKBASE_POLL_INTERVAL="0.2"),
    )
    client = app.sync
    try:
        handle = echo_sync.defer_sync(symbol="ESZ5", qty=2)
        assert client.result(handle.id, timeout=20) == {"symbol": "ESZ5", "qty": 2}
        handles = client.enqueue_many(
            [tickbase.EnqueueRequest("tickbase.echo", {"n": n}) for n in range(5)]
        )
        assert [client.result(h.id, timeout=20) for h in handles] == [{"n": n} for n in range(5)]
        # No worker handles this type: it waits pending instead of failing.
        waiting = client.enqueue(tickbase.EnqueueRequest("no.such.type"))
        with pytest.raises(tickbase.ResultTimeout, match=r"it is pending"):
            client.result(waiting.id, timeout=1.5)
        assert client.get(waiting.id).status is tickbase.TaskStatus.PENDING
    finally:
        client.close()
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=20) == 0
