"""K-line storage: validated bars in, series out (``tickbase.klines``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol

from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from tickbase.cluster.lease import Fence
from tickbase.db.errors import domain_errors
from tickbase.db.pool import AsyncConn
from tickbase.db.sqlfile import load_queries
from tickbase.errors import InvalidMarketData
from tickbase.marketdata.bars import BarLike, bar_problem

Q = load_queries("tickbase.marketdata")
logger = logging.getLogger("tickbase.marketdata")

ANOMALY_MOVE = 0.20  # a close this far from the previous close is flagged (and kept)
# What a series name may be (the klines table's CHECK constraints say the same).
SYMBOL_PATTERN = r"^[A-Za-z0-9_.:/-]{1,40}$"
INTERVAL_PATTERN = r"^[0-9]{1,3}[smhdwM]$"
SERIES_PATTERN = r"^[A-Za-z0-9_.:/-]{1,80}$"
"""What a non-price series name may be (``fear_greed``, ``DGS10``, ``BTC:market/mvrv_z_score``)."""
DEFAULT_SOURCE = "default"
"""The source of an observation a kind's default supplied (every source down, nothing
cached): stored ``is_filled`` so reads show it, and replaced by the first real value."""


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
    is_filled: bool = False
    """Forward-filled (not traded): stands in for a missing bar."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (the time as ISO 8601)."""
        return {**asdict(self), "open_time": self.open_time.isoformat()}


def upsert_params(
    source: str,
    symbol: str,
    interval: str,
    bars: Sequence[BarLike],
    durable: bool,
    *,
    backfilled: bool = False,
    live: bool = False,
) -> dict[str, Any]:
    """The parameters of ``klines_upsert`` for a batch of one series' bars."""
    return {
        "source": source,
        "symbol": symbol,
        "interval": interval,
        "open_times": [b.open_time for b in bars],
        # float(): a bar built with whole numbers (100 rather than 100.0) is a bar
        # too; psycopg refuses a list that mixes int and float.
        "opens": [float(b.open) for b in bars],
        "highs": [float(b.high) for b in bars],
        "lows": [float(b.low) for b in bars],
        "closes": [float(b.close) for b in bars],
        "volumes": [float(b.volume) for b in bars],
        "close_times": [getattr(b, "close_time", None) for b in bars],
        "quote_volumes": [getattr(b, "quote_volume", None) for b in bars],
        "trade_counts": [getattr(b, "trade_count", None) for b in bars],
        "taker_base": [getattr(b, "taker_buy_base_volume", None) for b in bars],
        "taker_quote": [getattr(b, "taker_buy_quote_volume", None) for b in bars],
        "filled": [bool(getattr(b, "is_filled", False)) for b in bars],
        "anomaly_move": ANOMALY_MOVE,
        "durable": durable,
        "backfilled": backfilled,
        "live": live,
        "new_state": None,
        "new_last": None,
        "state_from": None,
    }


def log_anomalies(source: str, symbol: str, interval: str, rows: Sequence[Any]) -> None:
    """One warning line for the bars ``klines_upsert`` newly flagged (its ``anomaly`` rows).

    Reads ``replay REPLAY:ES-1m 1m: 3 bars moved more than 20% (kept, flagged); first
    2026-12-01T17:12:00+00:00 (close 1631.25 from 1360.5), largest 27.4%``: one line per
    series and upsert, never one per bar.
    """
    flagged = [(when, close, previous) for kind, when, close, previous in rows if kind == "anomaly"]
    if not flagged:
        return
    flagged.sort(key=lambda row: row[0])
    first_at, first_close, first_previous = flagged[0]
    largest = max(abs(close - previous) / previous for _, close, previous in flagged if previous)
    count = len(flagged)
    logger.warning(
        "%s %s %s: %d bar%s moved more than %d%% (kept, flagged); first %s (close %s from %s), "
        "largest %.1f%%",
        source,
        symbol,
        interval,
        count,
        "" if count == 1 else "s",
        round(ANOMALY_MOVE * 100),
        first_at.isoformat(),
        first_close,
        first_previous,
        largest * 100,
    )


class KlineStore:
    """Upsert and read K-lines.

    Example::

        store = KlineStore(pool)
        await store.upsert("binance", "BTCUSDT", "1h", bars)
        latest = await store.latest("BTCUSDT", "1h", limit=100)
    """

    def __init__(self, pool: AsyncConnectionPool[AsyncConn]) -> None:
        self.pool = pool

    async def upsert(
        self,
        source: str,
        symbol: str,
        interval: str,
        bars: Sequence[BarLike],
        *,
        durable: bool = True,
        backfilled: bool = False,
        live: bool = False,
        fence: Fence | None = None,
    ) -> int:
        """Store validated bars of one series in one statement (one round trip); a close
        that moves more than 20% from the previous close is kept, flagged and logged.

        ``durable=False`` commits without waiting for the WAL flush: for collectors,
        whose bars are fetched again on their next run and whose task outcome, written
        after, flushes the WAL past them.

        ``backfilled=True`` stores the bars marked backfilled (fetched from the REST API
        after the live stream missed trades). ``live=True`` (the real-time writer) leaves a
        stored bar marked backfilled as it is: the live bar was aggregated from incomplete
        trades. Returns how many bars were given (stored or, live, left as they were).

        ``fence``: stored only while that lease is held with that token (the real-time
        pipeline's symbol lease), else :class:`~tickbase.errors.LeaseLost` and nothing is.
        """
        if not bars:
            return 0
        async with self.pool.connection() as conn, conn.transaction():
            if fence is not None:
                await fence.hold(conn)
            try:
                with domain_errors({"symbol": symbol, "interval": interval}):
                    cursor = await conn.execute(
                        Q["klines_upsert"],
                        upsert_params(
                            source,
                            symbol,
                            interval,
                            bars,
                            durable,
                            backfilled=backfilled,
                            live=live,
                        ),
                    )
            except InvalidMarketData as exc:
                # the database names only its check: say which bar broke it, and how
                bad = next(((b, p) for b in bars if (p := bar_problem(b)) is not None), None)
                if exc.field != "prices" or bad is None:
                    raise
                raise InvalidMarketData(
                    "prices", bad[0].open_time, f"{symbol} {interval} bar: {bad[1]}"
                ) from None
            log_anomalies(source, symbol, interval, await cursor.fetchall())
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


@dataclass(frozen=True, slots=True)
class StoredObservation:
    """A row of ``tickbase.observations``."""

    series: str
    observed_at: datetime
    kind: str
    source: str
    value: float
    label: str | None
    is_filled: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values (the time as ISO 8601)."""
        return {**asdict(self), "observed_at": self.observed_at.isoformat()}


class ObservationLike(Protocol):
    """What the store needs of a cleaned observation."""

    @property
    def observed_at(self) -> datetime: ...
    @property
    def value(self) -> float | None: ...
    @property
    def label(self) -> str | None: ...
    @property
    def is_filled(self) -> bool: ...


class ObservationStore:
    """Upsert and read non-price series (sentiment, macro, on-chain).

    Example::

        store = ObservationStore(pool)
        await store.upsert("fear_greed", "sentiment", "alternative.me", observations)
    """

    def __init__(self, pool: AsyncConnectionPool[AsyncConn]) -> None:
        self.pool = pool

    async def upsert(
        self, series: str, kind: str, source: str, observations: Sequence[ObservationLike]
    ) -> int:
        """Store cleaned observations of one series in one statement; how many were
        stored (a value that is still missing is a caller's bug: ValueError, nothing
        stored).

        ``source`` :data:`DEFAULT_SOURCE` marks values served by a kind's default: they
        never replace a value a source gave for the same instant, and a source's value
        replaces them.
        """
        if not observations:
            return 0
        missing = [o.observed_at.isoformat() for o in observations if o.value is None]
        if missing:
            raise ValueError(f"{series}: observations without a value at {missing[:5]}")
        async with self.pool.connection() as conn:
            with domain_errors({"series": series, "observation kind": kind}):
                cursor = await conn.execute(
                    Q["observations_upsert"],
                    {
                        "series": series,
                        "kind": kind,
                        "source": source,
                        "times": [o.observed_at for o in observations],
                        "values": [o.value for o in observations],
                        "labels": [o.label for o in observations],
                        "filled": [o.is_filled for o in observations],
                    },
                )
            return len(await cursor.fetchall())

    async def latest(self, series: str, *, limit: int = 100) -> list[StoredObservation]:
        """The latest ``limit`` observations of a series, oldest first."""
        async with self.pool.connection() as conn:
            cursor = conn.cursor(row_factory=dict_row)
            await cursor.execute(Q["observations_latest"], {"series": series, "limit": limit})
            return [StoredObservation(**row) for row in await cursor.fetchall()]

    async def series(self) -> list[tuple[str, str]]:
        """Every stored series with its kind, e.g. ``[("fear_greed", "sentiment")]``."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(Q["observations_series"])
            return [(row[0], row[1]) for row in await cursor.fetchall()]
