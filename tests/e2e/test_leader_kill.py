"""Exactly-once fires while the scheduler leader is killed again and again.

Three scheduler processes share one database; a `* * * * * *` schedule fires
every second. The leader is found through the lease row and killed with
SIGKILL several times during the window (a new process replaces it each time).
Every second of the window must have exactly one fire: none doubled (unique
key), none missing (the new leader catches up within the misfire grace).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import timedelta
from typing import Any

import psycopg
import pytest

import tickbase
from tests.conftest import fast_settings
from tests.e2e.conftest import Processes, tickbase_env
from tests.support.waiting import wait_until_sync

WINDOW_SECONDS = float(os.environ.get("TICKBASE_TEST_LEADER_WINDOW", "120"))
KILL_EVERY_SECONDS = min(20.0, WINDOW_SECONDS / 5)
LEASE_SECONDS = "3"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(WINDOW_SECONDS + 180)]


def leader_pid(conn: psycopg.Connection[Any]) -> int | None:
    row = conn.execute(
        "SELECT holder FROM tickbase.leases WHERE name = 'leader' AND expires_at > clock_timestamp()"
    ).fetchone()
    return int(row[0].split(":")[1]) if row else None


def test_leader_killed_repeatedly_every_second_fires_once(
    database_url: str, sql_conn: psycopg.Connection[Any], processes: Processes
) -> None:
    async def create() -> None:
        app = tickbase.App(settings=fast_settings(database_url))
        async with app:
            await app.schedules.create(
                tickbase.ScheduleSpec.build(
                    "every-second", "tickbase.noop", cron="* * * * * *", max_instances=1_000_000
                )
            )

    asyncio.run(create())
    env = tickbase_env(database_url, TICKBASE_LEADER_LEASE_SECONDS=LEASE_SECONDS)
    schedulers = {p.pid: p for p in (processes.start("scheduler", env=env) for _ in range(3))}

    wait_until_sync(lambda: leader_pid(sql_conn) in schedulers, timeout=30, message="a leader")
    started = time.monotonic()
    kills = 0
    while time.monotonic() - started < WINDOW_SECONDS:
        time.sleep(min(KILL_EVERY_SECONDS, max(0.0, WINDOW_SECONDS - (time.monotonic() - started))))
        if time.monotonic() - started >= WINDOW_SECONDS - 5:
            break
        pid = wait_until_sync(lambda: leader_pid(sql_conn), timeout=30, message="a live leader")
        assert pid in schedulers, f"leader {pid} is not one of ours"
        schedulers.pop(pid).send_signal(signal.SIGKILL)
        kills += 1
        replacement = processes.start("scheduler", env=env)
        schedulers[replacement.pid] = replacement
    assert kills >= 3

    # Let the last leader settle and catch up, then look at the whole window.
    wait_until_sync(
        lambda: leader_pid(sql_conn) in schedulers, timeout=30, message="a final leader"
    )
    time.sleep(2 * float(LEASE_SECONDS))
    rows = sql_conn.execute(
        "SELECT t.fire_at, count(*) FROM tickbase.tasks t JOIN tickbase.schedules s"
        " ON s.id = t.schedule_id WHERE s.name = 'every-second' GROUP BY t.fire_at ORDER BY t.fire_at"
    ).fetchall()
    counts = dict(rows)
    assert max(counts.values()) == 1, "a fire was enqueued twice"
    fires = sorted(counts)
    # the window: from the first fire to a few seconds before the latest one
    first, last = fires[0], fires[-1] - timedelta(seconds=2)
    expected = [
        first + timedelta(seconds=i) for i in range(int((last - first).total_seconds()) + 1)
    ]
    missing = sorted(set(expected) - set(counts))
    assert missing == [], f"{len(missing)} seconds without a fire, e.g. {missing[:5]}"
    assert (last - first).total_seconds() >= WINDOW_SECONDS - 10
    misses = sql_conn.execute(
        "SELECT count(*) FROM tickbase.schedule_events e JOIN tickbase.schedules s"
        " ON s.id = e.schedule_id WHERE s.name = 'every-second' AND e.event IN ('missed', 'skipped')"
    ).fetchone()
    assert misses == (0,)
    for process in schedulers.values():
        process.send_signal(signal.SIGTERM)
    for process in schedulers.values():
        assert process.wait(timeout=30) == 0
