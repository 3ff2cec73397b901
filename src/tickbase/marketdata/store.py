"""K-line storage: validated bars in, series out (``tickbase.klines``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from tickbase.db.pool import AsyncConn
from tickbase.db.sqlfile import load_queries

Q = load_queries("tickbase.marketdata")
logger = logging.getLogger("tickbase.marketdata")

ANOMALY_MOVE = 0.20  # a close this far from the previous close is flagged (and kept)
# What a series name may be (the klines table's CHECK constraints say the same).
SYMBOL_PATTERN = r"^[A-Za-z0-9_.:/-]{1,40}$"
INTERVAL_PATTERN = r"^[0-9]{1,3}[smhdwM]$"


class BarLike(Protocol):
    """What the store needs of a bar (already validated)."""

    @property
    def open_time(self) -> datetime: ...
    @property
    def open(self) -> float: ...
    @property
    def high(self) -> float: ...
    @property
    def low(self) -> float: ...
    @property
    def close(self) -> float: ...
    @property
    def volume(self) -> float: ...


@dataclass(frozen=True, slots=True)
class StoredBar:
    """A row of ``tickbase.klines``."""

    source: str
    symbol: str
    interval: str
    open_time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float
    is_anomaly: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (the time as ISO 8601)."""
        return {**asdict(self), "open_time": self.open_time.isoformat()}


class KlineStore:
    """Upsert and read K-lines.

    Example::

        store = KlineStore(pool)
        await store.upsert("replay", "BTCUSDT", "1h", bars)
        latest = await store.latest("BTCUSDT", "1h", limit=100)
    """

    def __init__(self, pool: AsyncConnectionPool[AsyncConn]) -> None:
        self.pool = pool

    async def upsert(self, source: str, symbol: str, interval: str, bars: Sequence[BarLike]) -> int:
        """Store validated bars of one series in one statement; a close that moves
        more than 20% from the previous close is kept, flagged and logged."""
        if not bars:
            return 0
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    Q["klines_previous_close"],
                    {
                        "source": source,
                        "symbol": symbol,
                        "interval": interval,
                        "before": bars[0].open_time,
                    },
                )
            ).fetchone()
            previous = float(row[0]) if row else None
            anomalies = []
            for bar in bars:
                jump = previous is not None and abs(bar.close - previous) > ANOMALY_MOVE * previous
                if jump:
                    logger.warning(
                        "%s %s %s: close %s at %s moved more than 20%% from %s (kept, flagged)",
                        source,
                        symbol,
                        interval,
                        bar.close,
                        bar.open_time.isoformat(),
                        previous,
                    )
                anomalies.append(jump)
                previous = bar.close
            await conn.execute(
                Q["klines_upsert"],
                {
                    "source": source,
                    "symbol": symbol,
                    "interval": interval,
                    "open_times": [b.open_time for b in bars],
                    "opens": [b.open for b in bars],
                    "highs": [b.high for b in bars],
                    "lows": [b.low for b in bars],
                    "closes": [b.close for b in bars],
                    "volumes": [b.volume for b in bars],
                    "anomalies": anomalies,
                },
            )
        return len(bars)

    async def latest(
        self, symbol: str, interval: str, *, limit: int = 100, source: str | None = None
    ) -> list[StoredBar]:
        """The latest ``limit`` bars of a series, oldest first."""
        async with self.pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                Q["klines_latest"],
                {"symbol": symbol, "interval": interval, "source": source, "limit": limit},
            )
            return [StoredBar(**row) for row in await cursor.fetchall()]

    async def has_series(self, symbol: str, interval: str) -> bool:
        """Whether any bar of the series is stored."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                Q["klines_series_exists"], {"symbol": symbol, "interval": interval}
            )
            row = await cursor.fetchone()
        return bool(row and row[0])

    async def series(self) -> list[tuple[str, str]]:
        """Every stored (symbol, interval)."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(Q["klines_series"])
            return [(row[0], row[1]) for row in await cursor.fetchall()]

    async def window(
        self, symbol: str, interval: str, start: datetime, end: datetime, *, limit: int
    ) -> list[StoredBar]:
        """Bars with ``start <= open_time < end`` (the newest ``limit``), oldest first."""
        async with self.pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(
                Q["klines_range"],
                {
                    "symbol": symbol,
                    "interval": interval,
                    "start": start,
                    "end": end,
                    "limit": limit,
                },
            )
            return [StoredBar(**row) for row in await cursor.fetchall()]

    async def last_before(self, symbol: str, interval: str, before: datetime) -> datetime | None:
        """The open time of the series' last bar before ``before``."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                Q["klines_before"], {"symbol": symbol, "interval": interval, "before": before}
            )
            row = await cursor.fetchone()
        return row[0] if row else None
