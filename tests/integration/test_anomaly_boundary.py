"""The 20% anomaly flag of ``klines_upsert``: more than 20% from the previous close is
flagged (and kept); exactly 20% is not, up or down; the first bar has nothing to compare."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import tickbase
from tickbase.marketdata.collector import Kline
from tickbase.marketdata.store import ANOMALY_MOVE, KlineStore

T0 = datetime(2024, 1, 1, tzinfo=UTC)


async def stored_flags(app: tickbase.App, symbol: str) -> list[tuple[float, bool]]:
    async with app.pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT close, is_anomaly FROM tickbase.klines WHERE symbol = %s ORDER BY open_time",
            (symbol,),
        )
        return [(float(close), bool(flag)) for close, flag in await cursor.fetchall()]


def bars(*closes: float, start: int = 0) -> list[Kline]:
    return [
        Kline(T0 + timedelta(minutes=start + i), close, close, close, close, 1.0)
        for i, close in enumerate(closes)
    ]


async def test_exactly_twenty_percent_is_not_flagged_just_over_is(app: tickbase.App) -> None:
    assert ANOMALY_MOVE == 0.20
    closes = (
        100.0,  # first: nothing to compare with
        120.0,  # +20% exactly
        96.0,  # -20% exactly
        115.21,  # +20.01%
        92.16,  # -20.007%
        92.16,  # no move
    )
    await KlineStore(app.pool).upsert("replay", "EDGE", "1m", bars(*closes))
    assert await stored_flags(app, "EDGE") == [
        (100.0, False),
        (120.0, False),
        (96.0, False),
        (115.21, True),
        (92.16, True),
        (92.16, False),
    ]


async def test_the_first_bar_of_a_batch_is_judged_against_the_stored_one(
    app: tickbase.App,
) -> None:
    store = KlineStore(app.pool)
    await store.upsert("replay", "EDGE2", "1m", bars(100.0))
    await store.upsert("replay", "EDGE2", "1m", bars(120.0, start=1))
    await store.upsert("replay", "EDGE2", "1m", bars(144.01, start=2))
    assert await stored_flags(app, "EDGE2") == [(100.0, False), (120.0, False), (144.01, True)]
