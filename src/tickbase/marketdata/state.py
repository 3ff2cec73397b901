"""Indicators kept up to date per series, their state in the database.

After each K-line update, :meth:`IndicatorStates.advance` loads the series'
saved :class:`IndicatorSet` state (``tickbase.indicator_state``), feeds it only
the bars stored since, and saves the new state: O(new bars), never a
recomputation of the history, and a restarted process continues exactly where
the last one stopped.
"""

from __future__ import annotations

import orjson
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from tickbase.db.pool import AsyncConn
from tickbase.marketdata.indicators import IndicatorSet, IndicatorValues
from tickbase.marketdata.store import Q, StoredBar

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
        calculators = await self.load(source, symbol, interval) or IndicatorSet()
        values: list[IndicatorValues] = []
        while True:
            async with self.pool.connection() as conn:
                cursor = conn.cursor(row_factory=dict_row)
                await cursor.execute(
                    Q["klines_after"],
                    {
                        "source": source,
                        "symbol": symbol,
                        "interval": interval,
                        "after": calculators.last_open_time,
                        "limit": ADVANCE_BATCH,
                    },
                )
                bars = [StoredBar(**row) for row in await cursor.fetchall()]
                for bar in bars:
                    values.append(
                        calculators.update(
                            bar.open_time, bar.open, bar.high, bar.low, bar.close, bar.volume
                        )
                    )
                if bars:
                    await conn.execute(
                        Q["indicator_state_put"],
                        {
                            "source": source,
                            "symbol": symbol,
                            "interval": interval,
                            "last_open_time": calculators.last_open_time,
                            "state": orjson.dumps(calculators.state()).decode(),
                        },
                    )
            if len(bars) < ADVANCE_BATCH:
                return values
