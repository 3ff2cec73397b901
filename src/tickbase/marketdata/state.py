"""Indicators kept up to date per series, their state in the database.

After each K-line update, :meth:`IndicatorStates.advance` loads the series'
saved :class:`IndicatorSet` state (``tickbase.indicator_state``), feeds it only
the bars stored since, and saves the new state: O(new bars), never a
recomputation of the history, and a restarted process continues exactly where
the last one stopped.

Round trips
-----------
:meth:`IndicatorStates.store_and_advance` is the path from a closed bar to its
stored indicators. An instance remembers the state it last saved per series;
for the next bars of such a series it feeds them in memory and sends the new
state with the write, in one statement (``klines_upsert`` with ``new_state``)
that saves it only if the database still holds the state it started from and
no other bar lies between: one round trip. Otherwise (the first bar, another
writer, a bar out of turn) the bars are stored and the series advanced from
the database; the database's state always decides.

:meth:`IndicatorStates.advance` reads the state and the bars after it in one
statement (``indicator_state_klines_after``, one snapshot), feeds them and
saves the new state (``indicator_state_put_async``), per batch of
:data:`ADVANCE_BATCH` bars.

Saves commit without waiting for their WAL flush. The state is derived data: if
a database crash loses the last saves, the row left is an older, consistent
``(last_open_time, state)`` pair, and the next advance feeds the bars after it
and reaches the same state exactly (it returns those bars' values again).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson
from psycopg_pool import AsyncConnectionPool

from tickbase.db.errors import domain_errors
from tickbase.db.pool import AsyncConn
from tickbase.marketdata.bars import BarLike
from tickbase.marketdata.indicators import IndicatorSet, IndicatorValues
from tickbase.marketdata.store import Q, log_anomalies, upsert_params

ADVANCE_BATCH = 10_000


class IndicatorStates:
    """Load, advance and save the indicator state of stored series.

    Each instance remembers the state it last saved per series, so storing the next
    closed bar of a series it follows takes one round trip (see the module's notes).

    Example::

        states = IndicatorStates(pool)
        new_values = await states.advance("binance", "BTCUSDT", "1h")
    """

    def __init__(self, pool: AsyncConnectionPool[AsyncConn]) -> None:
        self.pool = pool
        self._held: dict[tuple[str, str, str], IndicatorSet] = {}
        """The state this instance last saved, per series (a hint: the database decides)."""

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
                if rows:
                    saved = rows[0][6]
                    calculators = (
                        IndicatorSet() if saved is None else IndicatorSet.from_state(saved)
                    )
                    update = calculators.update
                    values.extend(update(t, o, h, lo, c, v) for t, o, h, lo, c, v, _ in rows)
                    last, state = _saved(calculators)
                    await conn.execute(
                        Q["indicator_state_put_async"],
                        {**series, "last_open_time": last, "state": state},
                    )
                    self._held[(source, symbol, interval)] = calculators
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

        When this instance saved the series' state last, the bars are fed to it here
        and the new state travels with the write: one statement, saved only if the
        database still holds the state it started from and no other bar came between.
        Otherwise (first bar, another writer, bars out of turn) the bars are stored
        and the series advanced from the database. Returns the values of every bar
        fed (more than ``bars`` if earlier ones were stored without an advance).
        """
        key = (source, symbol, interval)
        params = upsert_params(source, symbol, interval, bars, durable)
        held = self._held.pop(key, None)  # back only once the database has agreed
        values: list[IndicatorValues] | None = None
        start = held.last_open_time if held is not None else None
        if held is not None and start is not None and bars and bars[0].open_time > start:
            try:
                values = [held.update_bar(bar) for bar in bars]
            except ValueError:
                values = None  # refused by the calculators: the store has its say below
            else:
                new_last, new_state = _saved(held)
                params.update(new_last=new_last, new_state=new_state, state_from=start)
        async with self.pool.connection() as conn:
            with domain_errors({"symbol": symbol, "interval": interval}):
                rows = await (await conn.execute(Q["klines_upsert"], params)).fetchall()
        log_anomalies(source, symbol, interval, rows)
        if values is not None and held is not None and any(r[0] == "saved" for r in rows):
            self._held[key] = held
            return values
        return await self.advance(source, symbol, interval)


def _saved(calculators: IndicatorSet) -> tuple[datetime | None, str]:
    """What saves ``calculators``: its last bar's time and its state as JSON."""
    return calculators.last_open_time, orjson.dumps(calculators.state()).decode()
