"""Trades into K-lines per (symbol, interval), with a lateness window and change reports.

Why this shape:

- **Bucketing by the trade's own time** (``T``), not arrival time: a bar is what traded in
  its interval, whatever the network did. Within a bar, open and close are the trades
  with the lowest and highest ``(time, agg_id)``, so trades of one millisecond keep their
  exchange order and a shuffled arrival gives the same bar (between equal keys, the
  first arrival opens and the last closes, on both paths).
- **Lateness window** (default 2 s): the watermark of a symbol is the newest trade time
  seen. A trade at most ``lateness_ms`` older than the watermark amends its bar; an older
  one is counted in ``dropped_late`` for its symbol, exactly, and changes nothing. A bar is
  final once the watermark passes ``close_time + lateness_ms``: from then on every trade
  that could land in it would be dropped, so a final bar never changes again, and it is
  reported once and forgotten (the writer owns it then).
- **No trade, no bar**: buckets are created by trades only (Binance's meaning).
- **Change reports**: :meth:`Aggregator.changes` returns the bars updated since the last
  call and the bars that became final; this is what the pulling loop asks a worker for.
- **Two paths, one result**: :meth:`Aggregator.add_batch` is vectorised (one sort check,
  per-interval grouping with ``reduceat``, a Python step per *bar* touched, not per trade);
  :meth:`Aggregator.add_trade` is the plain per-trade reference. Both give identical bars:
  prices, ids, counts exactly; the float sums (volume, quote and taker volumes) exactly
  whenever the sums are exact in binary (integer quantities and prices on a 1/2ⁿ tick, as
  ES), otherwise to float rounding, since the batch path adds a batch's sum at once.

Trades are taken as valid (the parsers in :mod:`.trades` skip non-positive prices and
quantities); a trade delivered twice (same ``agg_id``) is counted twice: de-duplication and
id-gap detection belong to the stream source.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from tickbase.marketdata.realtime.columns import BAR_DTYPE, NO_WATERMARK, STATS_DTYPE, BarChunk
from tickbase.marketdata.realtime.kline import DEFAULT_INTERVALS, LiveKline, interval_ms
from tickbase.marketdata.realtime.trades import Floats, Int64s, TradeBatch

__all__ = ["DEFAULT_LATENESS_MS", "Aggregator", "Changes", "SymbolStats"]

DEFAULT_LATENESS_MS: Final = 2_000
_NO_TIME: Final = NO_WATERMARK


class _Bar:
    """The running state of one bar (mutable, so amending it allocates nothing)."""

    __slots__ = (
        "close",
        "close_a",
        "close_t",
        "count",
        "first_id",
        "high",
        "last_id",
        "low",
        "open",
        "open_a",
        "open_t",
        "quote",
        "taker_base",
        "taker_quote",
        "volume",
    )

    def __init__(
        self,
        open_t: int,
        open_a: int,
        open_price: float,
        close_t: int,
        close_a: int,
        close_price: float,
        high: float,
        low: float,
        volume: float,
        quote: float,
        count: int,
        taker_base: float,
        taker_quote: float,
        first_id: int,
        last_id: int,
    ) -> None:
        self.open_t, self.open_a, self.open = open_t, open_a, open_price
        self.close_t, self.close_a, self.close = close_t, close_a, close_price
        self.high, self.low = high, low
        self.volume, self.quote, self.count = volume, quote, count
        self.taker_base, self.taker_quote = taker_base, taker_quote
        self.first_id, self.last_id = first_id, last_id


@dataclass(slots=True)
class _Series:
    interval: str
    step: int
    bars: dict[int, _Bar] = field(default_factory=dict)
    """The bars not yet final, by open time (ms)."""


@dataclass(slots=True)
class _Symbol:
    series: list[_Series]
    watermark: int = _NO_TIME
    accepted: int = 0
    late: int = 0
    dropped_late: int = 0
    seq: int = 0
    """The next arrival number, the order key of trades that come without an ``agg_id``."""
    dirty: set[tuple[int, int]] = field(default_factory=set)
    """``(series index, open time)`` of the bars changed since the last report."""


@dataclass(frozen=True, slots=True)
class SymbolStats:
    """What the aggregator knows of one symbol's trades."""

    symbol: str
    watermark: int | None
    """The newest trade time seen (ms), ``None`` before the first trade."""
    accepted: int
    dropped_late: int
    open_bars: int
    """Bars held that are not final yet (all intervals)."""
    late: int = 0
    """Accepted trades older than the newest before them (they amended a bar)."""

    def __reduce__(self) -> tuple[type[SymbolStats], tuple[object, ...]]:
        # A plain tuple on the wire, as LiveKline: shards send one per symbol per cycle.
        return (
            SymbolStats,
            (self.symbol, self.watermark, self.accepted, self.dropped_late, self.open_bars,
             self.late),
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Changes:
    """One report: bars changed and not final, and bars that became final, both ordered by
    symbol, interval (as configured) and open time. A bar appears in one list at most."""

    updated: list[LiveKline]
    finalized: list[LiveKline]


class Aggregator:
    """K-lines of every symbol it is given, for the configured intervals.

    ``Aggregator(("1m", "5m", "1h"), lateness_ms=2000)``; feed it with :meth:`add_batch`
    (or :meth:`add_trade`), ask :meth:`changes` periodically, call :meth:`finish` at the
    end of a finite stream (a replay) to make the remaining bars final.
    """

    def __init__(
        self, intervals: Sequence[str] = DEFAULT_INTERVALS, lateness_ms: int = DEFAULT_LATENESS_MS
    ) -> None:
        if not intervals:
            raise ValueError("at least one interval is needed")
        if len(set(intervals)) != len(intervals):
            raise ValueError(f"intervals {list(intervals)} name one twice")
        if lateness_ms < 0:
            raise ValueError(f"lateness_ms {lateness_ms} must be >= 0")
        self.intervals: tuple[str, ...] = tuple(intervals)
        self.lateness_ms = lateness_ms
        self._steps = [interval_ms(i) for i in self.intervals]
        self._symbols: dict[str, _Symbol] = {}
        # The symbols whose bars or watermark changed since the last report: a report
        # visits those only (a shard with 1,000 symbols reports after every batch of one).
        self._touched: dict[str, _Symbol] = {}
        self._touched_all = False

    # ---- state ----------------------------------------------------------------------

    def _symbol(self, symbol: str) -> _Symbol:
        state = self._symbols.get(symbol)
        if state is None:
            series = [_Series(i, s) for i, s in zip(self.intervals, self._steps, strict=True)]
            state = self._symbols[symbol] = _Symbol(series)
        self._touched[symbol] = state
        return state

    def stats(self, symbol: str) -> SymbolStats:
        """Counts and watermark of ``symbol`` (zeros for a symbol never seen)."""
        state = self._symbols.get(symbol)
        if state is None:
            return SymbolStats(symbol, None, 0, 0, 0, 0)
        return SymbolStats(
            symbol,
            None if state.watermark == _NO_TIME else state.watermark,
            state.accepted,
            state.dropped_late,
            sum(len(s.bars) for s in state.series),
            state.late,
        )

    @property
    def symbols(self) -> list[str]:
        """Every symbol a trade was given for, in first-seen order."""
        return list(self._symbols)

    def bars(self, symbol: str, interval: str) -> list[LiveKline]:
        """The bars of one series not final yet, oldest first (a snapshot's content)."""
        state = self._symbols.get(symbol)
        if state is None:
            return []
        series = state.series[self.intervals.index(interval)]
        return [
            self._kline(symbol, series, t, series.bars[t], final=False) for t in sorted(series.bars)
        ]

    # ---- the per-trade reference path -----------------------------------------------

    def add_trade(
        self,
        symbol: str,
        time_ms: int,
        price: float,
        qty: float,
        agg_id: int | None = None,
        first_id: int | None = None,
        last_id: int | None = None,
        buyer_maker: bool | None = None,
    ) -> bool:
        """Aggregate one trade; ``False`` if it was dropped as too late.

        ``agg_id`` ``None``: the trade is ordered by arrival; ``first_id``/``last_id``
        ``None``: one trade with the id ``agg_id``; ``buyer_maker`` ``None``: unknown (no
        taker-buy volume).
        """
        state = self._symbol(symbol)
        if agg_id is None:
            agg_id = state.seq
            state.seq += 1
        if time_ms > state.watermark:
            state.watermark = time_ms
        elif state.watermark - time_ms > self.lateness_ms:
            state.dropped_late += 1
            return False
        elif time_ms < state.watermark:
            state.late += 1
        state.accepted += 1
        first = agg_id if first_id is None else first_id
        last = agg_id if last_id is None else last_id
        count = last - first + 1
        quote = price * qty
        taker = buyer_maker is False
        taker_base = qty if taker else 0.0
        taker_quote = quote if taker else 0.0
        for index, series in enumerate(state.series):
            open_ms = time_ms // series.step * series.step
            bar = series.bars.get(open_ms)
            if bar is None:
                series.bars[open_ms] = _Bar(
                    time_ms, agg_id, price, time_ms, agg_id, price, price, price, qty, quote,
                    count, taker_base, taker_quote, first, last,
                )  # fmt: skip
            else:
                if (time_ms, agg_id) < (bar.open_t, bar.open_a):
                    bar.open_t, bar.open_a, bar.open = time_ms, agg_id, price
                if (time_ms, agg_id) >= (bar.close_t, bar.close_a):
                    bar.close_t, bar.close_a, bar.close = time_ms, agg_id, price
                if price > bar.high:
                    bar.high = price
                if price < bar.low:
                    bar.low = price
                bar.volume += qty
                bar.quote += quote
                bar.count += count
                bar.taker_base += taker_base
                bar.taker_quote += taker_quote
                if first < bar.first_id:
                    bar.first_id = first
                if last > bar.last_id:
                    bar.last_id = last
            state.dirty.add((index, open_ms))
        return True

    def add_batch_plain(self, batch: TradeBatch) -> int:
        """:meth:`add_trade` for every trade of ``batch``, in order; returns how many were
        accepted. The reference the vectorised :meth:`add_batch` is tested against."""
        n = len(batch)
        none: list[None] = [None] * n
        ids: Iterable[int | None] = none if batch.agg_id is None else batch.agg_id.tolist()
        firsts: Iterable[int | None] = none if batch.first_id is None else batch.first_id.tolist()
        lasts: Iterable[int | None] = none if batch.last_id is None else batch.last_id.tolist()
        makers: Iterable[bool | None] = (
            none if batch.buyer_maker is None else batch.buyer_maker.tolist()
        )
        accepted = 0
        add = self.add_trade
        for t, p, q, a, f, last, m in zip(
            batch.time_ms.tolist(), batch.price.tolist(), batch.qty.tolist(),
            ids, firsts, lasts, makers, strict=True,
        ):  # fmt: skip
            accepted += add(batch.symbol, t, p, q, a, f, last, m)
        return accepted

    # ---- the vectorised path --------------------------------------------------------

    def add_batch(self, batch: TradeBatch) -> int:
        """Aggregate a batch of one symbol's trades (in arrival order) at numpy speed;
        returns how many were accepted. Same bars and counts as :meth:`add_batch_plain`."""
        n = len(batch)
        if n == 0:
            return 0
        state = self._symbol(batch.symbol)
        t = batch.time_ms
        if batch.agg_id is None:
            a = np.arange(state.seq, state.seq + n, dtype=np.int64)
            state.seq += n
        else:
            a = batch.agg_id
        # The watermark each trade meets is the newest time before it (or its own).
        running = np.maximum.accumulate(t)
        if state.watermark > int(running[0]):
            running = np.maximum(running, state.watermark)
        state.watermark = max(state.watermark, int(running[-1]))
        behind = running - t
        keep = behind <= self.lateness_ms
        kept = int(np.count_nonzero(keep))
        state.late += int(np.count_nonzero(keep & (behind > 0)))
        state.dropped_late += n - kept
        state.accepted += kept
        if kept == 0:
            return 0
        p, q = batch.price, batch.qty
        f = a if batch.first_id is None else batch.first_id
        last = a if batch.last_id is None else batch.last_id
        maker = batch.buyer_maker
        if kept < n:
            t, a, p, q, f, last = t[keep], a[keep], p[keep], q[keep], f[keep], last[keep]
            maker = None if maker is None else maker[keep]
        # Order by (time, agg_id); a feed in exchange order needs no sort.
        if t.shape[0] > 1:
            dt = np.diff(t)
            if not bool(np.all((dt > 0) | ((dt == 0) & (np.diff(a) > 0)))):
                order = np.lexsort((a, t))
                t, a, p, q, f, last = t[order], a[order], p[order], q[order], f[order], last[order]
                maker = None if maker is None else maker[order]
        quote = p * q
        counts = last - f + 1
        if maker is None:
            taker_base_col = taker_quote_col = None
        else:
            taker_base_col = np.where(maker, 0.0, q)
            taker_quote_col = np.where(maker, 0.0, quote)
        for index, series in enumerate(state.series):
            self._merge(state, index, series, t, a, p, q, quote, counts, f, last,
                        taker_base_col, taker_quote_col)  # fmt: skip
        return kept

    def _merge(
        self,
        state: _Symbol,
        index: int,
        series: _Series,
        t: Int64s,
        a: Int64s,
        p: Floats,
        q: Floats,
        quote: Floats,
        counts: Int64s,
        f: Int64s,
        last: Int64s,
        taker_base_col: Floats | None,
        taker_quote_col: Floats | None,
    ) -> None:
        """Group the sorted batch by this interval's bucket and fold each group into its bar."""
        step = series.step
        buckets = t // step * step
        starts = np.flatnonzero(buckets[1:] != buckets[:-1]) + 1
        starts = np.concatenate((np.zeros(1, dtype=np.intp), starts))
        ends = np.empty_like(starts)
        ends[:-1] = starts[1:] - 1
        ends[-1] = t.shape[0] - 1
        opens = buckets[starts].tolist()
        open_t, open_a, open_p = t[starts].tolist(), a[starts].tolist(), p[starts].tolist()
        close_t, close_a, close_p = t[ends].tolist(), a[ends].tolist(), p[ends].tolist()
        highs = np.maximum.reduceat(p, starts).tolist()
        lows = np.minimum.reduceat(p, starts).tolist()
        volumes = np.add.reduceat(q, starts).tolist()
        quotes = np.add.reduceat(quote, starts).tolist()
        n_trades = np.add.reduceat(counts, starts).tolist()
        firsts = np.minimum.reduceat(f, starts).tolist()
        lasts = np.maximum.reduceat(last, starts).tolist()
        if taker_base_col is None or taker_quote_col is None:
            taker_base = taker_quote = [0.0] * len(opens)
        else:
            taker_base = np.add.reduceat(taker_base_col, starts).tolist()
            taker_quote = np.add.reduceat(taker_quote_col, starts).tolist()
        bars, dirty = series.bars, state.dirty
        for i, open_ms in enumerate(opens):
            bar = bars.get(open_ms)
            if bar is None:
                bars[open_ms] = _Bar(
                    open_t[i], open_a[i], open_p[i], close_t[i], close_a[i], close_p[i],
                    highs[i], lows[i], volumes[i], quotes[i], n_trades[i],
                    taker_base[i], taker_quote[i], firsts[i], lasts[i],
                )  # fmt: skip
            else:
                if (open_t[i], open_a[i]) < (bar.open_t, bar.open_a):
                    bar.open_t, bar.open_a, bar.open = open_t[i], open_a[i], open_p[i]
                if (close_t[i], close_a[i]) >= (bar.close_t, bar.close_a):
                    bar.close_t, bar.close_a, bar.close = close_t[i], close_a[i], close_p[i]
                bar.high = max(bar.high, highs[i])
                bar.low = min(bar.low, lows[i])
                bar.volume += volumes[i]
                bar.quote += quotes[i]
                bar.count += n_trades[i]
                bar.taker_base += taker_base[i]
                bar.taker_quote += taker_quote[i]
                bar.first_id = min(bar.first_id, firsts[i])
                bar.last_id = max(bar.last_id, lasts[i])
            dirty.add((index, open_ms))

    # ---- reports --------------------------------------------------------------------

    def changes(self) -> Changes:
        """Bars updated since the last call (not final), and bars that became final.

        A final bar is reported once, then forgotten: a later trade for it is dropped late.
        (The objects of :meth:`report`; the shard sends the columns.)"""
        chunk = self.report()
        final = chunk.bars["final"]
        return Changes(chunk.klines(chunk.bars[~final]), chunk.klines(chunk.bars[final]))

    def report(self) -> BarChunk:
        """What changed since the last report, as columns: the bars that became final,
        then the bars updated and not final (each by symbol name, interval as configured
        and open time), and the counts of every symbol touched."""
        touched = self._symbols if self._touched_all else self._touched
        self._touched, self._touched_all = {}, False
        symbols = sorted(touched)
        finals: list[tuple[Any, ...]] = []
        updated: list[tuple[Any, ...]] = []
        stats: list[tuple[int, ...]] = []
        lateness = self.lateness_ms
        for code, symbol in enumerate(symbols):
            state = touched[symbol]
            horizon = state.watermark - lateness
            open_bars = 0
            for index, series in enumerate(state.series):
                bars, step = series.bars, series.step
                # close_time = open + step - 1 < horizon  <=>  open < horizon - step + 1
                limit = horizon - step + 1
                done = sorted(t for t in bars if t < limit)
                for open_ms in done:
                    finals.append(_row(code, index, True, open_ms, step, bars.pop(open_ms)))
                    state.dirty.discard((index, open_ms))
                open_bars += len(bars)
            for index, open_ms in sorted(state.dirty):
                step = self._steps[index]
                bar = state.series[index].bars[open_ms]
                updated.append(_row(code, index, False, open_ms, step, bar))
            state.dirty = set()
            stats.append(
                (code, state.watermark, state.accepted, state.dropped_late, open_bars, state.late)
            )
        finals.extend(updated)
        return BarChunk(
            tuple(symbols),
            self.intervals,
            np.array(finals, dtype=BAR_DTYPE),
            np.array(stats, dtype=STATS_DTYPE),
        )

    def advance(self, now_ms: int) -> None:
        """A live stream's clock: every symbol's watermark moves to at least ``now_ms``.

        Trades alone move the watermark, so a quiet symbol's bar would stay open until its
        next trade; a live source calls this with the wall clock (as Binance closes a
        kline at its close time, traded or not). A replay never calls it: its trade times
        are not now."""
        for state in self._symbols.values():
            state.watermark = max(state.watermark, now_ms)
        self._touched_all = True

    def finish(self, symbol: str | None = None) -> None:
        """End of a finite stream: every held bar of ``symbol`` (or of all symbols) becomes
        final at the next :meth:`changes`; the watermark moves past them, so any trade
        still arriving for them is dropped late."""
        for name, state in self._symbols.items():
            if symbol is not None and name != symbol:
                continue
            for series in state.series:
                if series.bars:
                    end = max(series.bars) + series.step - 1 + self.lateness_ms + 1
                    state.watermark = max(state.watermark, end)
            self._touched[name] = state

    @staticmethod
    def _kline(symbol: str, series: _Series, open_ms: int, bar: _Bar, final: bool) -> LiveKline:
        return LiveKline(
            symbol, series.interval, open_ms, open_ms + series.step - 1,
            bar.open, bar.high, bar.low, bar.close, bar.volume, bar.quote, bar.count,
            bar.taker_base, bar.taker_quote, bar.first_id, bar.last_id, final,
        )  # fmt: skip


def _row(code: int, index: int, final: bool, open_ms: int, step: int, bar: _Bar) -> tuple[Any, ...]:
    return (
        code, index, final, open_ms, open_ms + step - 1,
        bar.open, bar.high, bar.low, bar.close, bar.volume, bar.quote, bar.count,
        bar.taker_base, bar.taker_quote, bar.first_id, bar.last_id,
    )  # fmt: skip
