"""Indicators kept up to date per series, their state in the database.

After each K-line update, :meth:`IndicatorStates.advance` loads the series'
saved :class:`IndicatorSet` state (``tickbase.indicator_state``), feeds it only
the bars stored since, and saves the new state: O(new bars), never a
recomputation of the history, and a restarted process continues exactly where
the last one stopped.

Round trips
-----------
A closed bar is stored and then advanced, so ``advance`` is on the path from a
closed bar to its stored indicators and costs two round trips per batch of up
to :data:`ADVANCE_BATCH` bars, on one pooled connection:

1. ``indicator_state_klines_after``: the saved state and the bars after it, in
   one statement (one snapshot: they always belong together);
2. ``indicator_state_put_async``: the new state, committed without waiting for
   its WAL flush (``synchronous_commit`` off for that one statement). The state
   is derived data: if a database crash loses the last saves, the row left is
   an older, consistent ``(last_open_time, state)`` pair, and the next
   ``advance`` feeds the bars after it and reaches the same state exactly (it
   returns those bars' values again). Everything else about the save is
   unchanged: it is visible to every session as soon as ``advance`` returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from psycopg_pool import AsyncConnectionPool

from tickbase.db.pool import AsyncConn
from tickbase.marketdata.bars import BarLike
from tickbase.marketdata.indicators import IndicatorSet, IndicatorValues
from tickbase.marketdata.store import Q, log_anomalies, upsert_params

ADVANCE_BATCH = 10_000


class IndicatorStates:
    """Load, advance and save the indicator state of stored series.

    Example::

        states = IndicatorStates(pool)
        new_values = await states.advance("binance", "BTCUSDT", "1h")
    """

    def __init__(self, pool: AsyncConnectionPool[AsyncConn]) -> None:
        self.pool = pool

    async def load(self, source: str, symbol: str, interval: str) -> IndicatorSet | None:
        """The saved state of a series, or ``None`` before its first advance."""
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    Q["indicator_state_get"],
                    {"source": source, "symbol": symbol, "interval": interval},
                )
            ).fetchone()
        return IndicatorSet.from_state(row[0]) if row else None

    async def advance(self, source: str, symbol: str, interval: str) -> list[IndicatorValues]:
        """Feed the bars stored since the saved state; save it; return their values."""
        series: dict[str, Any] = {"source": source, "symbol": symbol, "interval": interval}
        values: list[IndicatorValues] = []
        while True:
            async with self.pool.connection() as conn:
                cursor = await conn.execute(
                    Q["indicator_state_klines_after"], {**series, "limit": ADVANCE_BATCH}
                )
                rows = await cursor.fetchall()
                values.extend(await _feed_and_save(conn, series, rows))
            if len(rows) < ADVANCE_BATCH:
                return values

    async def store_and_advance(
        self,
        source: str,
        symbol: str,
        interval: str,
        bars: Sequence[BarLike],
        *,
        durable: bool = False,
    ) -> list[IndicatorValues]:
        """Store closed bars (as :meth:`KlineStore.upsert`) and advance the series'
        indicators over them: the path from a closed bar to its stored indicators.

        The write and the read of the saved state travel together (pipeline mode: one
        round trip, two statements run in order), the new state in a second round trip.
        Returns the values of every bar fed (more than ``bars`` if earlier ones were
        stored without an advance).
        """
        series: dict[str, Any] = {"source": source, "symbol": symbol, "interval": interval}
        async with self.pool.connection() as conn:
            async with conn.pipeline():
                stored = await conn.execute(
                    Q["klines_upsert"], upsert_params(source, symbol, interval, bars, durable)
                )
                after = await conn.execute(
                    Q["indicator_state_klines_after"], {**series, "limit": ADVANCE_BATCH}
                )
            log_anomalies(source, symbol, interval, await stored.fetchall())
            rows = await after.fetchall()
            values = await _feed_and_save(conn, series, rows)
        if len(rows) == ADVANCE_BATCH:
            values.extend(await self.advance(source, symbol, interval))
        return values


async def _feed_and_save(
    conn: AsyncConn, series: dict[str, Any], rows: Sequence[tuple[Any, ...]]
) -> list[IndicatorValues]:
    """Feed ``indicator_state_klines_after`` rows to their saved state and save it."""
    if not rows:
        return []
    saved = rows[0][6]
    calculators = IndicatorSet() if saved is None else IndicatorSet.from_state(saved)
    update = calculators.update
    values = [update(t, o, h, lo, c, v) for t, o, h, lo, c, v, _ in rows]
    await conn.execute(
        Q["indicator_state_put_async"],
        {
            **series,
            "last_open_time": calculators.last_open_time,
            "state": orjson.dumps(calculators.state()).decode(),
        },
    )
    return values
