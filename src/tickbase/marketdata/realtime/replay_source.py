"""A trade file as a trade source: as fast as possible, or at N× real time.

The file is read once (``read_replay_file``: one batch per symbol) and handed out
in time order across symbols, in slices: at ``speed=None`` ("max") slices of
:data:`SLICE_TRADES` as fast as the shards take them; at ``speed=X`` the trades
whose time has come (``X`` ms of trade time per ms of wall time since the start),
every :data:`PACE_SECONDS`. ``shift_to_now`` moves every trade time by one offset
so the first trade is now (``tickbase up``: bars form with today's times), and
``repeat`` starts again after the last trade, shifted on (a demo that never ends).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import numpy as np

from tickbase.marketdata.realtime.trades import BadInput, TradeBatch, read_replay_file

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
        self.name = name
        self.live = shift_to_now
        """Its trade times are now: the pipeline closes bars by the wall clock too."""
        self.bad = BadInput(f"replay {os.fspath(path)}")
        self.trades_sent = 0
        self.symbols: list[str] = []
        self._closed = False

    def close(self) -> None:
        """End the iteration at the next slice."""
        self._closed = True

    def _load(self) -> tuple[list[str], np.ndarray, np.ndarray, list[TradeBatch]]:
        batches = list(read_replay_file(self.path, symbol=self.symbol, bad=self.bad).values())
        names = [b.symbol for b in batches]
        times = np.concatenate([b.time_ms for b in batches])
        which = np.concatenate([np.full(len(b), i, dtype=np.int32) for i, b in enumerate(batches)])
        order = np.argsort(times, kind="stable")  # time order; a file's order within a ms
        return names, times[order], which[order], batches

    async def __aiter__(self) -> AsyncIterator[TradeBatch]:
        names, times, which, batches = await asyncio.to_thread(self._load)
        self.symbols = names
        # Each symbol's trades are in time order in ``times``; where symbol i's k-th
        # trade (in time order) sits in its own batch:
        own = [np.argsort(b.time_ms, kind="stable") for b in batches]
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
                    index = own[i][taken[i] : taken[i] + n]
                    taken[i] += n
                    batch = batches[i].take(index)
                    if offset:
                        batch = _shifted(batch, offset)
                    self.trades_sent += n
                    yield batch
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
