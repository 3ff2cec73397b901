"""Schedules in the database: run-time control, bad input, and ticks that fire once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import tickbase
from tests.support.waiting import wait_until
from tickbase import InvalidSchedule, ScheduleNotFound, ScheduleSpec
from tickbase.scheduler.ticker import Ticker


def spec(name: str = "bars", **kwargs: Any) -> ScheduleSpec:
    options: dict[str, Any] = {"cron": "*/5 * * * *"}
    options.update(kwargs)
    return ScheduleSpec.build(name, "tickbase.noop", **options)


def schedule_rows(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT name, kind, cron, interval_seconds, timezone, enabled, paused, next_fire_at"
        " FROM tickbase.schedules ORDER BY id"
    ).fetchall()


async def test_create_update_and_control(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    store = app.schedules
    created = await store.create(spec(payload={"symbol": "ESZ5"}, timezone="America/New_York"))
    assert created.status == "pending" and created.next_fire_at is not None
    assert created.next_fire_at.minute % 5 == 0 and created.next_fire_at > datetime.now(UTC)

    updated = await store.update("bars", every=30)
    assert updated.spec.kind == "interval" and updated.spec.cron is None
    assert updated.next_fire_at is not None
    assert 0 < (updated.next_fire_at - datetime.now(UTC)).total_seconds() <= 30
    same_timing = await store.update("bars", payload={"symbol": "NQZ5"})
    assert same_timing.next_fire_at == updated.next_fire_at  # timing unchanged: kept

    assert (await store.pause("bars")).status == "paused"
    assert (await store.resume("bars")).status == "pending"
    assert (await store.disable("bars")).status == "disabled"
    assert (await store.enable("bars")).status == "pending"

    task_id, fire_at = await store.trigger("bars")
    task = await app.queue.get(task_id)
    assert task.schedule_id == created.id and task.fire_at == fire_at
    assert task.payload == {"symbol": "NQZ5"}
    [execution] = await store.executions("bars")
    assert execution["manual"] is True and execution["id"] == task_id

    removed = await store.remove("bars")
    assert removed.removed_at is not None
    with pytest.raises(ScheduleNotFound):
        await store.get("bars")
    # history kept: the execution and the removed row are still there
    assert (await app.queue.get(task_id)).schedule_id == created.id
    assert [s.name for s in await store.list_schedules(include_removed=True)] == ["bars"]
    # the name is free again
    await store.create(spec())


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"cron": "61 * * * *"}, "minute field '61'"),
        ({"cron": None, "every": 0}, "interval"),
        ({"cron": None, "every": -5}, "interval"),
        ({"cron": "* * * * *", "every": 10}, "not both"),
        ({"cron": "* * * * *", "manual": True}, "manual schedule"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"queue": "no spaces"}, "queue name"),
        ({"max_instances": 0}, "max_instances"),
        ({"misfire_grace_seconds": -1}, "misfire_grace_seconds"),
        ({"payload": {"x": float("nan")}}, "payload"),
    ],
)
async def test_bad_definitions_leave_the_store_unchanged(
    app: tickbase.App, sql_conn: psycopg.Connection[Any], kwargs: dict[str, Any], fragment: str
) -> None:
    await app.schedules.create(spec("keep"))
    before = schedule_rows(sql_conn)
    with pytest.raises(InvalidSchedule) as excinfo:
        await app.schedules.create(spec("new", **kwargs))
    assert fragment in str(excinfo.value)
    if "manual" not in kwargs:  # the same change as an update of the stored schedule
        with pytest.raises(InvalidSchedule):
            await app.schedules.update("keep", **kwargs)
    assert schedule_rows(sql_conn) == before


async def test_duplicate_name_is_refused(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    await app.schedules.create(spec("dup"))
    before = schedule_rows(sql_conn)
    with pytest.raises(InvalidSchedule, match="already exists"):
        await app.schedules.create(spec("dup", cron="0 * * * *"))
    assert schedule_rows(sql_conn) == before
    with pytest.raises(ScheduleNotFound, match="did you mean 'dup'"):
        await app.schedules.pause("dpu")


async def test_code_schedules_sync_idempotently(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    @app.periodic(cron="0 * * * *", kwargs={"n": 1})
    async def hourly(n: int) -> int:
        return n

    first = await app.sync_schedules()
    assert first >= 3  # hourly + the two builtin maintenance schedules
    assert await app.sync_schedules() == 0
    await app.schedules.pause(hourly.name)  # operators' state survives a re-sync
    app._code_schedules[hourly.name] = ScheduleSpec.build(
        hourly.name, hourly.name, cron="30 * * * *", payload={"n": 1}, origin="code"
    )
    assert await app.sync_schedules() == 1
    current = await app.schedules.get(hourly.name)
    assert current.spec.cron == "30 * * * *" and current.paused
    assert current.next_fire_at is not None and current.next_fire_at.minute == 30
    builtin = await app.schedules.get("tickbase.prune")
    assert builtin.spec.origin == "builtin" and builtin.spec.interval_seconds == 3600


async def ticker_for(app: tickbase.App, node: str = "node-a") -> Ticker:
    ticker = Ticker(app.pool, app.listener, node_id=node, lease_ttl=30)
    assert await ticker.lease.acquire()
    return ticker


async def set_next_fire(conn: psycopg.Connection[Any], name: str, when: datetime) -> None:
    conn.execute("UPDATE tickbase.schedules SET next_fire_at = %s WHERE name = %s", (when, name))


async def fires(conn: psycopg.Connection[Any], name: str) -> list[datetime]:
    rows = conn.execute(
        "SELECT t.fire_at FROM tickbase.tasks t JOIN tickbase.schedules s ON s.id = t.schedule_id"
        " WHERE s.name = %s ORDER BY t.fire_at",
        (name,),
    ).fetchall()
    return [row[0] for row in rows]


async def test_stalled_scheduler_catches_up_within_grace_and_records_misses(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    await app.schedules.create(
        spec("sec", cron="* * * * * *", misfire_grace_seconds=5, max_instances=100)
    )
    now = datetime.now(UTC).replace(microsecond=0)
    await set_next_fire(sql_conn, "sec", now - timedelta(seconds=8))
    ticker = await ticker_for(app)
    fired = await ticker.tick(now=now)  # the tick happens at now, whatever the clock says
    stored = await fires(sql_conn, "sec")
    # within the grace (5 s late at most, inclusive): now-5 .. now
    assert fired == len(stored) == 6 and stored[0] == now - timedelta(seconds=5)
    events = await app.schedules.events("sec")
    missed = sorted(e["fire_at"] for e in events if e["event"] == "missed")
    assert missed == [now - timedelta(seconds=s) for s in (8, 7, 6)]
    assert not set(missed) & set(stored)
    # every second from the first missed fire on is either missed or fired, once
    assert sorted(missed + stored) == [
        missed[0] + timedelta(seconds=i) for i in range(len(missed) + len(stored))
    ]


async def test_coalesce_and_max_instances_with_a_stalled_scheduler(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    await app.schedules.create(spec("co", cron="* * * * * *", coalesce=True, max_instances=10))
    await app.schedules.create(spec("mi", cron="* * * * * *", max_instances=2))
    now = datetime.now(UTC).replace(microsecond=0)
    past = now - timedelta(seconds=5)  # six fires due at now: now-5 .. now
    await set_next_fire(sql_conn, "co", past)
    await set_next_fire(sql_conn, "mi", past)
    ticker = await ticker_for(app)
    await ticker.tick(now=now)
    assert await fires(sql_conn, "co") == [now]  # the latest one runs
    coalesced = [e for e in await app.schedules.events("co") if e["event"] == "coalesced"]
    assert len(coalesced) == 5
    assert await fires(sql_conn, "mi") == [past, past + timedelta(seconds=1)]
    skipped = [e for e in await app.schedules.events("mi") if e["event"] == "skipped"]
    assert len(skipped) == 4 and all(e["detail"]["reason"] == "max_instances" for e in skipped)


async def test_a_tick_fires_what_is_due_at_its_instant(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    """A schedule a minute away: a tick just before its instant does nothing, a
    tick at it fires it once and moves it a minute on (no waiting a minute)."""
    await app.schedules.create(spec("minutely", cron=None, every=60))
    due = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=60)
    await set_next_fire(sql_conn, "minutely", due)
    ticker = await ticker_for(app)
    assert await ticker._until_next_due(now=due - timedelta(seconds=10)) == 10.0
    assert await ticker.tick(now=due - timedelta(microseconds=1)) == 0
    assert await fires(sql_conn, "minutely") == []
    assert await ticker.tick(now=due) == 1
    assert await fires(sql_conn, "minutely") == [due]
    assert await ticker.tick(now=due) == 0  # once
    assert await ticker._until_next_due(now=due) == 60.0


async def test_two_tickers_never_double_a_fire(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    await app.schedules.create(spec("sec", cron="* * * * * *", max_instances=1000))
    past = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=20)
    leader = await ticker_for(app, "node-a")
    # a second ticker that (wrongly) believes it leads: same lease row, as if deposed late
    rogue = Ticker(app.pool, app.listener, node_id="node-a", lease_ttl=30)
    rogue.lease.token = leader.lease.token
    rogue.lease._valid_until = leader.lease._valid_until
    for _ in range(3):
        await set_next_fire(sql_conn, "sec", past)
        await asyncio.gather(leader.tick(), rogue.tick())
    stored = await fires(sql_conn, "sec")
    assert len(stored) == len(set(stored)) >= 20


async def test_deposed_leader_writes_nothing(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    await app.schedules.create(spec("sec", cron="* * * * * *", max_instances=1000))
    old = await ticker_for(app, "node-old")
    # the lease expires (old leader paused) and another node takes it
    sql_conn.execute("UPDATE tickbase.leases SET expires_at = clock_timestamp()")
    new = await ticker_for(app, "node-new")
    assert new.lease.token == (old.lease.token or 0) + 1
    await set_next_fire(sql_conn, "sec", datetime.now(UTC) - timedelta(seconds=3))
    with pytest.raises(tickbase.LeaseLost):
        await old.tick()  # fenced out: rolled back
    assert await fires(sql_conn, "sec") == []
    assert not old.lease.held
    assert await new.tick() >= 3


async def test_running_ticker_fires_on_time_and_wakes_on_changes(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    ticker = Ticker(app.pool, app.listener, node_id="node-a", lease_ttl=30)
    task = asyncio.create_task(ticker.run())
    try:
        await asyncio.wait_for(ticker.started.wait(), 10)
        await asyncio.sleep(0.3)
        # created while the ticker sleeps with nothing to do: the NOTIFY wakes it
        await app.schedules.create(spec("sec", cron="* * * * * *", max_instances=1000))

        async def three_fires() -> bool:
            return len(await fires(sql_conn, "sec")) >= 3

        await wait_until(three_fires, timeout=10, message="three fires")
        lags = sql_conn.execute(
            "SELECT extract(epoch FROM created_at - fire_at) FROM tickbase.tasks WHERE schedule_id IS NOT NULL"
        ).fetchall()
        assert all(0 <= float(lag) < 0.5 for (lag,) in lags), lags
        stats = await app.schedules.stats("sec")
        assert stats["pending"] >= 3 and stats["next_fire_at"] is not None
    finally:
        ticker.request_stop()
        await asyncio.wait_for(task, 10)


async def test_builtin_maintenance_tasks_run(
    app: tickbase.App, sql_conn: psycopg.Connection[Any]
) -> None:
    from tests.integration.test_worker import running_worker

    old = await app.defer("tickbase.noop", {})
    await app.queue.cancel(old.id)
    sql_conn.execute(
        "UPDATE tickbase.tasks SET finished_at = now() - interval '8 days' WHERE id = %s", (old.id,)
    )
    async with running_worker(app):
        await app.sync_schedules()
        pruned = await app.schedules.trigger("tickbase.prune")
        health = await app.schedules.trigger("tickbase.health")
        assert (await app.handle(pruned[0]).result(timeout=10))["removed"] == 1
        report = await app.handle(health[0]).result(timeout=10)
    assert report["database_ms"] >= 0 and report["unfinished_tasks"] >= 0
    with pytest.raises(tickbase.TaskNotFound):
        await app.queue.get(old.id)


async def test_without_market_data_its_stored_schedules_do_not_fire(
    database_url: str, sql_conn: psycopg.Connection[Any]
) -> None:
    """TICKBASE_MARKET_DATA=0: the market-data schedules a run with it on stored stay
    stored but unfired (and do not keep the ticker awake); the others fire."""
    from tests.conftest import fast_settings

    application = tickbase.App(settings=fast_settings(database_url, market_data=False))
    async with application:
        await application.schedules.create(
            ScheduleSpec.build("md", "marketdata.collect_klines", cron="* * * * *")
        )
        await application.schedules.create(spec("mine", cron="* * * * *"))
        past = datetime.now(UTC) - timedelta(seconds=5)
        await set_next_fire(sql_conn, "md", past)
        await set_next_fire(sql_conn, "mine", past)
        ticker = application.ticker()
        assert ticker.skip_task_types == ["marketdata.%"]
        assert await ticker.lease.acquire()
        assert await ticker.tick() == 1
        assert await fires(sql_conn, "md") == []
        assert len(await fires(sql_conn, "mine")) == 1
        # Not woken by the overdue md schedule: it sleeps until mine's next fire
        # (asked 30 s before it, so the answer does not depend on the clock's second).
        mine_next = sql_conn.execute(
            "SELECT next_fire_at FROM tickbase.schedules WHERE name = 'mine'"
        ).fetchone()
        assert mine_next is not None
        until = await ticker._until_next_due(now=mine_next[0] - timedelta(seconds=30))
        assert until == pytest.approx(30.0, abs=0.01)
        await ticker.lease.release()

    # With market data on again, the same stored schedule fires.
    on = tickbase.App(settings=fast_settings(database_url))
    async with on:
        ticker = on.ticker()
        assert await ticker.lease.acquire()
        assert await ticker.tick() >= 1
        assert len(await fires(sql_conn, "md")) == 1
        await ticker.lease.release()
