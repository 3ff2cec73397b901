"""Symbols shared between nodes by fenced leases (issue 17, "Several nodes").

Each symbol is owned by one node at a time; a node that stops renewing (dies) hands
its symbols over within the lease time; a deposed owner's writes are refused by the
database, whatever it believes.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import psycopg
import pytest

import tickbase
from tickbase.cluster.lease import Fence
from tickbase.errors import LeaseLost
from tickbase.marketdata.collector import Kline
from tickbase.marketdata.realtime.ownership import SYMBOL_PREFIX, SymbolOwnership, preferred
from tickbase.marketdata.realtime.replay_source import ReplaySource
from tickbase.marketdata.realtime.runner import LiveRun, SourceChoice, sample_replay
from tickbase.marketdata.realtime.writer import kline_writer
from tickbase.marketdata.store import KlineStore

SYMBOLS = [f"S{n:02d}" for n in range(12)]
TTL = 1.5


def bar(minute: int, close: float = 10.0) -> Kline:
    return Kline(datetime(2026, 1, 5, 10, minute, tzinfo=UTC), 10.0, 11.0, 9.0, close, 1.0)


async def test_two_nodes_split_the_symbols_without_overlap(app: tickbase.App) -> None:
    a = SymbolOwnership(app.pool, SYMBOLS, holder="node-a", ttl=TTL)
    b = SymbolOwnership(app.pool, SYMBOLS, holder="node-b", ttl=TTL)
    await a.rebalance()  # alone: a takes everything
    assert a.owned == set(SYMBOLS)
    await b.rebalance()  # b joins: it sees two members but a still holds its share
    await a.rebalance()  # a gives up what b prefers ...
    await b.rebalance()  # ... and b takes it
    assert a.owned | b.owned == set(SYMBOLS) and not a.owned & b.owned
    members = ["node-a", "node-b"]
    assert b.owned == {s for s in SYMBOLS if preferred(s, members) == "node-b"}
    assert a.owned and b.owned  # rendezvous hashing spreads 12 symbols over both
    # steady state: more rounds change nothing
    before = (a.owned, b.owned)
    await a.rebalance()
    await b.rebalance()
    assert (a.owned, b.owned) == before


async def test_a_dead_nodes_symbols_are_taken_over_within_the_lease_time(
    app: tickbase.App,
) -> None:
    a = SymbolOwnership(app.pool, SYMBOLS, holder="node-a", ttl=TTL)
    b = SymbolOwnership(app.pool, SYMBOLS, holder="node-b", ttl=TTL)
    for node in (a, b, a, b):
        await node.rebalance()
    lost = set(b.owned)
    assert lost
    # b dies: it renews nothing any more. a's rounds (every ttl/3) take b's symbols
    # once b's leases (and its member lease) expire.
    began = time.monotonic()
    while a.owned != set(SYMBOLS):
        assert time.monotonic() - began < TTL + TTL / 3 + 1.0, "no hand-over in the lease time"
        await asyncio.sleep(TTL / 3)
        await a.rebalance()
    assert time.monotonic() - began >= TTL * 0.5  # not before b's leases could expire


async def test_a_deposed_owners_writes_are_refused(app: tickbase.App, database_url: str) -> None:
    store = KlineStore(app.pool)
    old = SymbolOwnership(app.pool, ["BTCUSDT"], holder="node-old", ttl=TTL)
    await old.rebalance()
    stale = old.fence("BTCUSDT")
    assert stale is not None
    await asyncio.sleep(TTL + 0.2)  # old is paused past its lease ...
    new = SymbolOwnership(app.pool, ["BTCUSDT"], holder="node-new", ttl=TTL)
    await new.rebalance()  # ... and new takes it over (token + 1)
    fresh = new.fence("BTCUSDT")
    assert fresh is not None and fresh.token == stale.token + 1

    # the deposed node still believes its token: the database refuses it
    with pytest.raises(LeaseLost, match="node-old no longer holds the realtime:BTCUSDT lease"):
        await store.upsert("binance", "BTCUSDT", "1m", [bar(0)], live=True, fence=stale)
    writer = kline_writer(store, "binance", fence=lambda symbol: stale)
    await writer([("BTCUSDT", "1m", bar(1))])
    assert writer.fenced == 1
    # the new owner's write lands
    await kline_writer(store, "binance", fence=new.fence)([("BTCUSDT", "1m", bar(2, 10.5))])
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT extract(minute FROM open_time)::int, close FROM tickbase.klines"
        ).fetchall()
    assert rows == [(2, 10.5)]
    # a node that never held the symbol writes nothing either
    assert old.fence("BTCUSDT") is None  # its local view lapsed too
    unowned = kline_writer(store, "binance", fence=old.fence)
    await unowned([("BTCUSDT", "1m", bar(3))])
    assert unowned.fenced == 1


def test_a_fence_names_its_lease() -> None:
    fence = Fence(SYMBOL_PREFIX + "ETHUSDT", "n", 3)
    assert fence.name == "realtime:ETHUSDT" and fence.token == 3


def streamed(run: LiveRun) -> set[str]:
    source = run.pipeline.source
    assert isinstance(source, ReplaySource)
    return set(source.aliases["ES"])


@pytest.mark.slow
async def test_two_live_runs_share_the_symbols_and_one_takes_over(app: tickbase.App) -> None:
    """Two pipelines (their own shard processes) over the bundled trades at 30x, shifted
    to now: each streams only the symbols it owns; when one stops, the other streams
    them all within the lease time."""
    choice = SourceChoice("replay", "test", lambda owned: sample_replay(owned, speed=30.0))
    symbols = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF"]
    runs = [
        LiveRun(app.pool, choice, symbols, intervals=("1m",), workers=1, holder=h, lease_ttl=TTL)
        for h in ("node-a", "node-b")
    ]
    for run in runs:
        await run.start()
    try:
        began = time.monotonic()
        while True:
            owned = [r.ownership.owned for r in runs]
            if owned[0] | owned[1] == set(symbols) and not owned[0] & owned[1] and all(owned):
                break
            assert time.monotonic() - began < 10, owned
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        for run in runs:
            assert streamed(run) == run.ownership.owned
        await runs[1].stop()  # releases its leases: a takes them on its next round
        began = time.monotonic()
        while runs[0].ownership.owned != set(symbols):
            assert time.monotonic() - began < TTL + 1.0
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        assert streamed(runs[0]) == set(symbols)

        def fed() -> dict[str, int]:
            stats = runs[0].pipeline.kline_state.stats  # the counts now
            # (a restarted replay at 30x starts behind the clock the earlier one ran
            # ahead to: its trades may count as dropped late; they were fed all the same)
            return {s: stats[s].accepted + stats[s].dropped_late for s in symbols if s in stats}

        at = fed()
        await asyncio.sleep(1.5)
        now = fed()
        assert all(now[s] > at.get(s, 0) for s in symbols), (at, now)
    finally:
        for run in runs:
            await run.stop()
