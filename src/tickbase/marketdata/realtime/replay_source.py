"""A trade file as a trade source: as fast as possible, or at N× real time.

The file is read once (``read_replay_file``: one batch per symbol) and handed out
in the file's order (its arrival order: a late trade stays late), in slices: at
``speed=None`` ("max") slices of :data:`SLICE_TRADES` as fast as the shards take
them; at ``speed=X`` the trades whose time has come (``X`` ms of trade time per ms
of wall time since the start, by the newest time seen so far), every
:data:`PACE_SECONDS`. ``shift_to_now`` moves every trade time by one offset
so the first trade is now (``tickbase up``: bars form with today's times), and
``repeat`` starts again after the last trade, shifted on (a demo that never ends).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Final

import numpy as np

from tickbase.marketdata.realtime.trade_file import read_replay_file
from tickbase.marketdata.realtime.trades import BadInput, TradeBatch

__all__ = ["PACE_SECONDS", "SLICE_TRADES", "ReplaySource"]

SLICE_TRADES: Final = 25_000
PACE_SECONDS: Final = 0.02


class ReplaySource:
    """Trades of a replay file (``time,price,qty[,symbol]``), oldest first.

    Example::

        source = ReplaySource("es-ticks.csv.gz", symbol="ES", speed=60.0)
        async for batch in source:       # TradeBatch, one symbol each
            ...
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        symbol: str | None = None,
        speed: float | None = None,
        shift_to_now: bool = False,
        repeat: bool = False,
        aliases: dict[str, list[str]] | None = None,
        name: str = "replay",
    ) -> None:
        if speed is not None and not speed > 0:
            raise ValueError(f"replay speed must be positive (or max), got {speed}")
        if repeat and speed is None:
            raise ValueError("a repeating replay needs a speed (it would never end)")
        self.path = Path(path)
        self.symbol = symbol
        self.speed = speed
        self.shift_to_now = shift_to_now
        self.repeat = repeat
        self.aliases = aliases or {}
        """A file symbol's trades handed out under these names instead (the sample's ES
        trades as every symbol of a demo)."""
        self.name = name
        self.live = shift_to_now
        """Its trade times are now: the pipeline closes bars by the wall clock too."""
        self.bad = BadInput(f"replay {os.fspath(path)}")
        self.trades_sent = 0
        self.symbols: list[str] = []
        self._closed = False
        self._loaded: tuple[list[str], np.ndarray, np.ndarray, list[TradeBatch]] | None = None

    def close(self) -> None:
        """End the iteration at the next slice."""
        self._closed = True

    async def prepare(self) -> None:
        """Read the file now (in a thread), not at the first trade."""
        if self._loaded is None:
            self._loaded = await asyncio.to_thread(self._load)

    def _load(self) -> tuple[list[str], np.ndarray, np.ndarray, list[TradeBatch]]:
        batches = list(read_replay_file(self.path, symbol=self.symbol, bad=self.bad).values())
        names = [b.symbol for b in batches]
        # File order across symbols (a trade's agg_id is its row number): a file is its
        # arrival order, late trades where they came, as a live stream would give them.
        rows = np.concatenate([self._rows(b) for b in batches])
        times = np.concatenate([b.time_ms for b in batches])
        which = np.concatenate([np.full(len(b), i, dtype=np.int32) for i, b in enumerate(batches)])
        order = np.argsort(rows, kind="stable")
        # Paced by the newest time seen so far (what a live clock would show).
        due = np.maximum.accumulate(times[order]) if len(order) else times
        return names, due, which[order], batches

    @staticmethod
    def _rows(batch: TradeBatch) -> np.ndarray:
        assert batch.agg_id is not None  # read_replay_file numbers every row
        return batch.agg_id

    async def __aiter__(self) -> AsyncIterator[TradeBatch]:
        await self.prepare()
        assert self._loaded is not None
        names, times, which, batches = self._loaded
        self.symbols = [a for name in names for a in self.aliases.get(name, [name])]
        span = int(times[-1] - times[0]) + 1 if len(times) else 0
        rounds = 0
        while not self._closed and len(times):
            # Each round continues after the last (by the clock, or by the file's span).
            now_ms = int(time.time() * 1000)
            offset = now_ms - int(times[0]) if self.shift_to_now else rounds * span
            rounds += 1
            started = time.monotonic()
            taken = [0] * len(batches)
            start = 0
            while start < len(times) and not self._closed:
                if self.speed is None:
                    end = min(start + SLICE_TRADES, len(times))
                else:
                    await asyncio.sleep(PACE_SECONDS)
                    due = times[0] + (time.monotonic() - started) * 1000 * self.speed
                    end = int(np.searchsorted(times, due, side="right"))
                    if end == start:
                        continue
                for i in np.unique(which[start:end]).tolist():
                    n = int(np.count_nonzero(which[start:end] == i))
                    batch = batches[i].take(slice(taken[i], taken[i] + n))
                    taken[i] += n
                    if offset:
                        batch = _shifted(batch, offset)
                    for alias in self.aliases.get(batch.symbol, [batch.symbol]):
                        self.trades_sent += n
                        yield batch if alias == batch.symbol else replace(batch, symbol=alias)
                start = end
                if self.speed is None:
                    await asyncio.sleep(0)
            if not self.repeat:
                return


def _shifted(batch: TradeBatch, offset: int) -> TradeBatch:
    return TradeBatch(
        batch.symbol,
        batch.time_ms + offset,
        batch.price,
        batch.qty,
        batch.agg_id,
        batch.first_id,
        batch.last_id,
        batch.buyer_maker,
    )
