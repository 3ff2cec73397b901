"""The pulling loop's K-line state: one entry per series, however long the pipeline runs.

Why not one entry per bar: shards report bars keyed by open time, and a state that kept
every key would grow by a bar a minute per series and copy all of them into each
snapshot. :class:`KlineState` folds the shards' answers into one :class:`SeriesBars` per
``(symbol, interval)``: the bar forming now and the last few final bars (a reader that
skipped a snapshot still finds the final bars it missed, as long as it is less than
:data:`FINALS_KEPT` bars behind). Each final bar is also handed to ``on_final`` once, in
the loop's cycle: the persistence path starts there, not in a reader that may skip;
and kept in a bounded journal for readers that need every closed bar
(:meth:`KlineState.closed_since`: the incremental indicators).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from tickbase.marketdata.realtime.aggregator import SymbolStats
from tickbase.marketdata.realtime.kline import LiveKline

__all__ = ["FINALS_KEPT", "JOURNAL_CAPACITY", "KlineState", "SeriesBars"]

FINALS_KEPT: Final = 16
"""Final bars kept per series in the state (readers look back this far)."""

JOURNAL_CAPACITY: Final = 100_000
"""Final bars kept in the closed-bar journal, all series together."""


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


class KlineState:
    """The loop's ``apply`` for K-line shards (see the module).

    Example::

        state = KlineState(on_final=persist)
        loop = PullingLoop(shards, apply=state)
        loop.values[("ESZ5", "1m")]          # SeriesBars
        state.stats["ESZ5"]                  # SymbolStats (trades, late, dropped late)
    """

    def __init__(
        self,
        on_final: Callable[[LiveKline], None] | None = None,
        *,
        finals_kept: int = FINALS_KEPT,
        journal: int = JOURNAL_CAPACITY,
    ) -> None:
        self.on_final = on_final
        self.finals_kept = finals_kept
        self.stats: dict[str, SymbolStats] = {}
        self.closed: deque[LiveKline] = deque(maxlen=journal)
        """The newest final bars of every series, in the order they closed (the
        journal :meth:`closed_since` reads)."""
        self.restated: list[SymbolStats] = []
        """The stats the last call brought (the symbols whose trades were aggregated)."""
        self.finals_seen = 0

    def __call__(
        self, values: dict[Hashable, Any], pulled: Sequence[Mapping[Hashable, Any]]
    ) -> None:
        self.restated = []
        for changes in pulled:
            for value in changes.values():
                if isinstance(value, LiveKline):
                    self._bar(values, value)
                elif isinstance(value, SymbolStats):
                    self.stats[value.symbol] = value
                    self.restated.append(value)

    def closed_since(self, seen: int) -> tuple[int, list[LiveKline], int]:
        """Every final bar after the first ``seen`` (a reader's position), the new
        position, and how many it missed (closed so long ago the journal let them go).

        For readers that need every closed bar (indicators): a snapshot holds the
        newest state only, and a reader may skip snapshots."""
        start = self.finals_seen - len(self.closed)
        missed = max(0, start - seen)
        first = max(seen, start) - start
        return self.finals_seen, list(itertools.islice(self.closed, first, None)), missed

    def forming(self, values: Mapping[Hashable, Any]) -> int:
        """How many series of ``values`` have a bar still forming."""
        return sum(
            1 for v in values.values() if isinstance(v, SeriesBars) and v.forming is not None
        )

    def _bar(self, values: dict[Hashable, Any], bar: LiveKline) -> None:
        key = (bar.symbol, bar.interval)
        entry: SeriesBars | None = values.get(key)
        if entry is None:
            entry = SeriesBars(bar.symbol, bar.interval, None, ())
        forming = entry.forming
        if bar.is_final:
            if any(f.open_time == bar.open_time for f in entry.finals):
                return  # reported again (a shard restarted): stored once already
            finals = tuple(sorted((*entry.finals, bar), key=lambda b: b.open_time))
            if forming is not None and forming.open_time <= bar.open_time:
                forming = None  # bars close in order: an older forming one is final too
            values[key] = SeriesBars(bar.symbol, bar.interval, forming, finals[-self.finals_kept :])
            self.finals_seen += 1
            self.closed.append(bar)
            if self.on_final is not None:
                self.on_final(bar)
        elif forming is None or bar.open_time >= forming.open_time:
            # An older bar amended by a late trade stays out: its final state comes later.
            values[key] = SeriesBars(bar.symbol, bar.interval, bar, entry.finals)
