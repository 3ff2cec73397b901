"""The pulling loop's K-line state: one slot per symbol, however long the pipeline runs.

Why slots and columns: shards report their changes as
:class:`~tickbase.marketdata.realtime.columns.BarChunk` columns, about 1,500 forming bars
per shard per cycle with 1,000 symbols. :class:`KlineState` keeps the bar forming now of
every ``(symbol, interval)`` in pre-allocated structured arrays indexed by the symbol's
slot (given once, on its first report), and folds a chunk in with a few vectorised
assignments. Final bars, a few per series, are kept as objects: the last
:data:`FINALS_KEPT` of each series (a reader that skipped a snapshot still finds the final
bars it missed, as long as it is less than that far behind); each is handed to
``on_final`` once, in the loop's cycle (the persistence path starts there, not in a
reader that may skip); and kept in a bounded journal for readers that need every closed
bar (:meth:`KlineState.closed_since`: the incremental indicators).

A snapshot (:meth:`KlineState.snapshot`) is a :class:`KlineView`: a copy of the forming
arrays (a few hundred kilobytes) and the final bars' dictionary (shared until the next
final bar: copied on write), read as a mapping ``(symbol, interval)`` →
:class:`SeriesBars`, each built when it is read.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from tickbase.marketdata.realtime.aggregator import SymbolStats
from tickbase.marketdata.realtime.columns import (
    BAR_DTYPE,
    NO_WATERMARK,
    STATS_DTYPE,
    BarChunk,
    Rows,
    bar_from_row,
)
from tickbase.marketdata.realtime.kline import DEFAULT_INTERVALS, LiveKline

__all__ = ["FINALS_KEPT", "JOURNAL_CAPACITY", "KlineState", "KlineView", "SeriesBars"]

FINALS_KEPT: Final = 16
"""Final bars kept per series in the state (readers look back this far)."""

JOURNAL_CAPACITY: Final = 100_000
"""Final bars kept in the closed-bar journal, all series together."""

_FIRST_CAPACITY: Final = 64
_BAR_FIELDS: Final = 3
"""A :data:`BAR_DTYPE` row's fields before ``open_time`` (symbol, interval, final)."""


@dataclass(frozen=True, slots=True)
class SeriesBars:
    """One series in a snapshot: the bar forming now and the newest final bars."""

    symbol: str
    interval: str
    forming: LiveKline | None
    finals: tuple[LiveKline, ...]
    """Oldest first, at most :data:`FINALS_KEPT`."""

    @property
    def latest(self) -> LiveKline | None:
        """The newest bar of the series, forming or final."""
        last = self.finals[-1] if self.finals else None
        if self.forming is not None and (last is None or self.forming.open_time > last.open_time):
            return self.forming
        return last

    def finals_after(self, open_time: int | None) -> tuple[LiveKline, ...]:
        """The final bars opened after ``open_time`` (all kept ones for ``None``)."""
        if open_time is None:
            return self.finals
        return tuple(bar for bar in self.finals if bar.open_time > open_time)


class KlineView(Mapping[Hashable, SeriesBars]):
    """The series of a K-line state, ``(symbol, interval)`` → :class:`SeriesBars`
    (a snapshot's ``values``; see the module). Each series is built once, when read."""

    def __init__(
        self,
        symbols: Sequence[str],
        slots: Mapping[str, int],
        intervals: Sequence[str],
        forming: Rows,
        has_forming: Any,
        finals: Mapping[tuple[str, str], tuple[LiveKline, ...]],
    ) -> None:
        self._symbols = symbols
        self._slots = slots
        self._count = forming.shape[1]
        self._intervals = intervals
        self._index = {interval: i for i, interval in enumerate(intervals)}
        self._forming = forming
        self._has = has_forming
        self._finals = finals
        self._built: dict[Hashable, SeriesBars] = {}

    def __getitem__(self, key: Hashable) -> SeriesBars:
        found = self._built.get(key)
        if found is not None:
            return found
        if not isinstance(key, tuple) or len(key) != 2:
            raise KeyError(key)
        symbol, interval = key
        slot, index = self._slots.get(symbol), self._index.get(interval)
        if slot is None or index is None or slot >= self._count:
            raise KeyError(key)
        finals = self._finals.get(key, ())
        forming = None
        if self._has[index, slot]:
            fields = self._forming[index, slot].tolist()[_BAR_FIELDS:]
            forming = LiveKline._make((symbol, interval, *fields, False))
        elif not finals:
            raise KeyError(key)
        found = self._built[key] = SeriesBars(symbol, interval, forming, finals)
        return found

    def __iter__(self) -> Iterator[tuple[str, str]]:
        for slot in range(self._count):
            symbol = self._symbols[slot]
            for index, interval in enumerate(self._intervals):
                if self._has[index, slot] or (symbol, interval) in self._finals:
                    yield (symbol, interval)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def forming_count(self) -> int:
        """How many series have a bar still forming."""
        return int(np.count_nonzero(self._has))


class KlineState:
    """The loop's state for K-line shards (see the module).

    Example::

        state = KlineState(("1m", "5m"), on_final=persist)
        loop = PullingLoop(shards, state=state)
        loop.values[("ESZ5", "1m")]          # SeriesBars
        state.stats["ESZ5"]                  # SymbolStats (trades, late, dropped late)
    """

    def __init__(
        self,
        intervals: Sequence[str] = DEFAULT_INTERVALS,
        on_final: Callable[[LiveKline], None] | None = None,
        *,
        finals_kept: int = FINALS_KEPT,
        journal: int = JOURNAL_CAPACITY,
    ) -> None:
        self.intervals = tuple(intervals)
        self._index = {interval: i for i, interval in enumerate(self.intervals)}
        self.on_final = on_final
        self.finals_kept = finals_kept
        self._symbols: list[str] = []
        self._slots: dict[str, int] = {}
        self._forming = np.zeros((len(self.intervals), _FIRST_CAPACITY), dtype=BAR_DTYPE)
        self._has = np.zeros((len(self.intervals), _FIRST_CAPACITY), dtype=np.bool_)
        self._stats = np.zeros(_FIRST_CAPACITY, dtype=STATS_DTYPE)
        self._stats_known = np.zeros(_FIRST_CAPACITY, dtype=np.bool_)
        self._finals: dict[tuple[str, str], tuple[LiveKline, ...]] = {}
        self._finals_shared = False
        self.closed: deque[LiveKline] = deque(maxlen=journal)
        """The newest final bars of every series, in the order they closed (the
        journal :meth:`closed_since` reads)."""
        self.restated: Any = np.zeros(0, dtype=np.int64)
        """The watermarks (ms) the last cycle's reports brought, one per symbol touched."""
        self.finals_seen = 0

    # ---- the loop's state protocol ------------------------------------------------------

    def apply(self, pulled: Sequence[Mapping[Hashable, Any]]) -> None:
        """Fold one cycle's answers in (each shard's chunks, oldest first)."""
        restated = []
        for changes in pulled:
            for chunk in changes.values():
                if isinstance(chunk, BarChunk):
                    restated.append(self._chunk(chunk))
        self.restated = np.concatenate(restated) if restated else np.zeros(0, dtype=np.int64)

    def snapshot(self) -> KlineView:
        """An immutable view of the state now (see the module)."""
        count = len(self._symbols)
        self._finals_shared = True
        return KlineView(
            self._symbols,
            self._slots,
            self.intervals,
            self._forming[:, :count].copy(),
            self._has[:, :count].copy(),
            self._finals,
        )

    @property
    def values(self) -> KlineView:
        """The state now, read in place (the loop's ``values``)."""
        count = len(self._symbols)
        return KlineView(
            self._symbols,
            self._slots,
            self.intervals,
            self._forming[:, :count],
            self._has[:, :count],
            self._finals,
        )

    # ---- what readers ask ---------------------------------------------------------------

    @property
    def stats(self) -> dict[str, SymbolStats]:
        """Each reported symbol's counts (trades accepted, late, dropped late, watermark)."""
        known = np.flatnonzero(self._stats_known[: len(self._symbols)])
        return {
            self._symbols[slot]: SymbolStats(
                self._symbols[slot],
                None if watermark == NO_WATERMARK else watermark,
                accepted,
                dropped_late,
                open_bars,
                late,
            )
            for slot, (_, watermark, accepted, dropped_late, open_bars, late) in zip(
                known.tolist(), self._stats[known].tolist(), strict=True
            )
        }

    def forming_count(self) -> int:
        """How many series have a bar still forming."""
        return int(np.count_nonzero(self._has))

    def closed_since(self, seen: int) -> tuple[int, list[LiveKline], int]:
        """Every final bar after the first ``seen`` (a reader's position), the new
        position, and how many it missed (closed so long ago the journal let them go).

        For readers that need every closed bar (indicators): a snapshot holds the
        newest state only, and a reader may skip snapshots."""
        start = self.finals_seen - len(self.closed)
        missed = max(0, start - seen)
        first = max(seen, start) - start
        return self.finals_seen, list(itertools.islice(self.closed, first, None)), missed

    # ---- folding a chunk in -------------------------------------------------------------

    def _chunk(self, chunk: BarChunk) -> Any:
        """Fold one chunk in; the watermarks of its stats."""
        slots = self._slots_of(chunk.symbols)
        try:
            to_index = np.array([self._index[i] for i in chunk.intervals], dtype=np.intp)
        except KeyError as exc:
            raise ValueError(f"a shard reported interval {exc} not in {self.intervals}") from None
        bars = chunk.bars
        if len(bars):
            final = bars["final"]
            finals = int(np.count_nonzero(final))
            if finals:
                self._add_finals(chunk, bars[final], slots.tolist(), to_index.tolist())
            if finals < len(bars):
                self._set_forming(bars[~final] if finals else bars, slots, to_index)
        stats = chunk.stats
        if len(stats):
            at = slots[stats["symbol"]]
            self._stats[at] = stats
            self._stats_known[at] = True
        return stats["watermark"]

    def _set_forming(self, rows: Rows, slots: Any, to_index: Any) -> None:
        symbol, interval = rows["symbol"], rows["interval"]
        # Rows come by symbol, interval and open time; a series may have two bars
        # forming (the last one still in its lateness window): the newest wins.
        newest = np.ones(len(rows), dtype=np.bool_)
        newest[:-1] = (symbol[1:] != symbol[:-1]) | (interval[1:] != interval[:-1])
        if not newest.all():
            rows, symbol, interval = rows[newest], symbol[newest], interval[newest]
        at, index = slots[symbol], to_index[interval]
        # An older bar amended by a late trade stays out: its final state comes later.
        fresh = ~self._has[index, at] | (rows["open_time"] >= self._forming["open_time"][index, at])
        if not fresh.all():
            rows, at, index = rows[fresh], at[fresh], index[fresh]
        self._forming[index, at] = rows
        self._has[index, at] = True

    def _add_finals(
        self, chunk: BarChunk, rows: Rows, slots: list[int], to_index: list[int]
    ) -> None:
        if self._finals_shared:  # a snapshot holds the dictionary: copy on write
            self._finals = dict(self._finals)
            self._finals_shared = False
        kept_most = self.finals_kept
        finals, has, forming_open = self._finals, self._has, self._forming["open_time"]
        for row in rows.tolist():
            bar = bar_from_row(row, chunk.symbols, chunk.intervals)
            key = (bar.symbol, bar.interval)
            kept = finals.get(key, ())
            if kept and kept[-1].open_time >= bar.open_time:
                if any(f.open_time == bar.open_time for f in kept):
                    continue  # reported again (a shard restarted): stored once already
                kept = tuple(sorted((*kept, bar), key=lambda b: b.open_time))
            else:
                kept = (*kept, bar)
            finals[key] = kept[-kept_most:]
            slot, index = slots[row[0]], to_index[row[1]]
            if has[index, slot] and forming_open[index, slot] <= bar.open_time:
                has[index, slot] = False  # bars close in order: an older forming one is final too
            self.finals_seen += 1
            self.closed.append(bar)
            if self.on_final is not None:
                self.on_final(bar)

    def _slots_of(self, symbols: Sequence[str]) -> Any:
        slots = self._slots
        for symbol in symbols:
            if symbol not in slots:
                slots[symbol] = len(self._symbols)
                self._symbols.append(symbol)
        if len(self._symbols) > self._forming.shape[1]:
            self._grow(len(self._symbols))
        return np.array([slots[s] for s in symbols], dtype=np.intp)

    def _grow(self, needed: int) -> None:
        capacity = self._forming.shape[1]
        while capacity < needed:
            capacity *= 2
        grown = np.zeros((len(self.intervals), capacity), dtype=BAR_DTYPE)
        grown[:, : self._forming.shape[1]] = self._forming
        has = np.zeros((len(self.intervals), capacity), dtype=np.bool_)
        has[:, : self._has.shape[1]] = self._has
        stats = np.zeros(capacity, dtype=STATS_DTYPE)
        stats[: len(self._stats)] = self._stats
        known = np.zeros(capacity, dtype=np.bool_)
        known[: len(self._stats_known)] = self._stats_known
        self._forming, self._has, self._stats, self._stats_known = grown, has, stats, known
