"""Trades into K-lines: the 500,000 real ES trades against their 1m bars, resampling,
lateness (shuffled within the window, delayed beyond it), finality, Binance's fields."""

from __future__ import annotations

from functools import cache
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from tickbase.marketdata.bars import load_bars
from tickbase.marketdata.realtime.aggregator import Aggregator
from tickbase.marketdata.realtime.bench import sample_trades
from tickbase.marketdata.realtime.kline import LiveKline
from tickbase.marketdata.realtime.trades import TradeBatch
from tickbase.marketdata.resample import aggregate_bars, parse_resolution

LATENESS = 2_000


@cache
def es() -> TradeBatch:
    return sample_trades("ES")


def run(
    batch: TradeBatch, *, plain: bool = False, size: int = 7_919
) -> tuple[Aggregator, list[LiveKline]]:
    """Feed ``batch`` in slices (a report after each), finish; every final bar."""
    agg = Aggregator(("1m", "5m", "1h"), lateness_ms=LATENESS)
    final: list[LiveKline] = []
    for start in range(0, len(batch), size):
        part = batch.take(slice(start, start + size))
        if plain:
            agg.add_batch_plain(part)
        else:
            agg.add_batch(part)
        final += agg.changes().finalized
    agg.finish()
    final += agg.changes().finalized
    # reports split differently as batches do; compare the bars, not when they came
    return agg, sorted(final, key=lambda b: (b.interval, b.open_time))


def by_interval(bars: list[LiveKline], interval: str) -> list[LiveKline]:
    return sorted((b for b in bars if b.interval == interval), key=lambda b: b.open_time)


def ohlcv(bar: LiveKline) -> tuple[object, ...]:
    k = bar.to_kline()
    return (k.open_time, k.open, k.high, k.low, k.close, k.volume)


@cache
def es_final() -> tuple[LiveKline, ...]:
    return tuple(run(es())[1])


def test_es_trades_give_the_es_1m_file() -> None:
    bars = by_interval(list(es_final()), "1m")
    expected = load_bars("es-1m")
    assert len(bars) == len(expected) == 2264
    assert [ohlcv(b) for b in bars] == [
        (e.open_time, e.open, e.high, e.low, e.close, e.volume) for e in expected
    ]
    assert all(b.close_time == b.open_time + 59_999 and b.is_final for b in bars)
    # one row = one trade, its id its row number: ids and counts tile the file
    assert sum(b.trade_count for b in bars) == 500_000
    assert sum(b.volume for b in bars) == 1_844_058
    assert bars[0].first_trade_id == 0 and bars[-1].last_trade_id == 499_999
    assert all(a.last_trade_id + 1 == b.first_trade_id for a, b in pairwise(bars))
    assert all(b.trade_count == b.last_trade_id - b.first_trade_id + 1 for b in bars)


@pytest.mark.parametrize(("interval", "resolution"), [("5m", "5"), ("1h", "60")])
def test_5m_and_1h_equal_resampled_1m(interval: str, resolution: str) -> None:
    final = list(es_final())
    resampled = aggregate_bars(load_bars("es-1m"), parse_resolution(resolution))
    assert [ohlcv(b) for b in by_interval(final, interval)] == [
        (r.open_time, r.open, r.high, r.low, r.close, r.volume) for r in resampled
    ]


def test_the_per_trade_path_gives_identical_bars() -> None:
    agg, plain = run(es(), plain=True)
    assert plain == list(es_final())
    assert agg.stats("ES").accepted == 500_000 and agg.stats("ES").dropped_late == 0


def arrival(batch: TradeBatch, order: NDArray[Any]) -> TradeBatch:
    return batch.take(order.astype(np.intp))


def test_trades_shuffled_within_the_lateness_window_give_identical_bars() -> None:
    batch = es()
    rng = np.random.default_rng(17)
    # Each trade is delayed by 0..LATENESS ms: the watermark it meets is at most
    # LATENESS past its own time, so every trade is accepted.
    delay = rng.integers(0, LATENESS + 1, len(batch))
    order = np.argsort(batch.time_ms + delay, kind="stable")
    assert not np.array_equal(order, np.arange(len(batch)))
    shuffled = arrival(batch, order)
    # late: arrived after a newer trade (behind the running newest time)
    times = shuffled.time_ms
    late = int(np.count_nonzero(np.maximum.accumulate(times) > times))
    assert late > 100_000
    for plain in (False, True):
        agg, final = run(shuffled, plain=plain)
        assert final == list(es_final())
        assert agg.stats("ES").dropped_late == 0
        assert agg.stats("ES").late == late


def test_trades_delayed_beyond_the_window_are_dropped_late_exactly() -> None:
    batch = es()
    t = batch.time_ms
    rng = np.random.default_rng(4)
    late = np.sort(rng.choice(len(batch) - 50_000, 1_000, replace=False))
    keep = np.setdiff1d(np.arange(len(batch)), late)
    # each chosen trade arrives right after the first on-time trade more than LATENESS newer
    after = keep[np.searchsorted(t[keep], t[late] + LATENESS, side="right")]
    assert np.all(t[after] - t[late] > LATENESS)
    arrival_key = np.concatenate((keep.astype(np.float64), after + 0.5))
    order = np.concatenate((keep, late))[np.argsort(arrival_key, kind="stable")]
    for plain in (False, True):
        agg, final = run(arrival(batch, order), plain=plain)
        assert agg.stats("ES").dropped_late == 1_000
        assert agg.stats("ES").accepted == len(batch) - 1_000
        _, expected = run(batch.take(keep))
        assert final == expected


def trades(symbol: str, rows: list[tuple[int, float, float]]) -> TradeBatch:
    return TradeBatch(
        symbol,
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype=np.float64),
        np.array([r[2] for r in rows], dtype=np.float64),
    )


@pytest.mark.parametrize("plain", [False, True])
def test_lateness_boundary_and_finality(plain: bool) -> None:
    agg = Aggregator(("1m",), lateness_ms=LATENESS)
    feed = agg.add_batch_plain if plain else agg.add_batch
    feed(trades("X", [(10_000, 5.0, 1.0), (61_999, 6.0, 1.0)]))
    changes = agg.changes()
    assert [b.open_time for b in changes.updated] == [0, 60_000] and changes.finalized == []
    # exactly LATENESS late: amends its bar; one ms more: dropped
    assert feed(trades("X", [(59_999, 4.0, 2.0), (59_998, 9.0, 1.0)])) == 1
    assert agg.stats("X").dropped_late == 1
    assert agg.stats("X").late == 1
    changes = agg.changes()
    (first,) = changes.updated
    assert (first.open, first.high, first.low, first.close, first.volume) == (
        5.0,
        5.0,
        4.0,
        4.0,
        3.0,
    )
    assert changes.finalized == []  # watermark 61,999: close 59,999 + 2,000 not passed
    feed(trades("X", [(62_000, 6.5, 1.0)]))
    changes = agg.changes()
    assert [b.open_time for b in changes.finalized] == [0] and changes.finalized[0].is_final
    assert [b.open_time for b in changes.updated] == [60_000]
    assert agg.changes() == type(changes)([], [])  # nothing new: nothing reported
    # a minute with no trade has no bar
    feed(trades("X", [(185_000, 7.0, 1.0)]))
    agg.finish()
    assert [b.open_time for b in agg.changes().finalized] == [60_000, 180_000]


@pytest.mark.parametrize("plain", [False, True])
def test_binance_fields_from_aggregate_trades(plain: bool) -> None:
    batch = TradeBatch(
        "BTCUSDT",
        np.array([1_000, 1_000, 2_500, 1_500], dtype=np.int64),
        np.array([100.0, 101.0, 99.5, 102.0]),
        np.array([0.5, 1.0, 2.0, 0.25]),
        agg_id=np.array([11, 10, 13, 12], dtype=np.int64),
        first_id=np.array([105, 100, 120, 110], dtype=np.int64),
        last_id=np.array([109, 104, 120, 119], dtype=np.int64),
        buyer_maker=np.array([True, False, False, True]),
    )
    agg = Aggregator(("1m",))
    (agg.add_batch_plain if plain else agg.add_batch)(batch)
    (bar,) = agg.changes().updated
    assert bar == LiveKline(
        "BTCUSDT", "1m", 0, 59_999,
        open=101.0,  # agg id 10 is first within the millisecond
        high=102.0, low=99.5, close=99.5,
        volume=3.75, quote_volume=50.0 + 101.0 + 199.0 + 25.5,
        trade_count=5 + 5 + 1 + 10,
        taker_buy_base_volume=3.0, taker_buy_quote_volume=101.0 + 199.0,
        first_trade_id=100, last_trade_id=120,
    )  # fmt: skip
    kline = bar.to_kline()
    assert kline.close_time is not None and kline.trade_count == 21
    assert (kline.close_time - kline.open_time).total_seconds() == 59.999


def test_symbols_are_aggregated_apart() -> None:
    agg = Aggregator(("1m",))
    agg.add_batch(trades("A", [(1_000, 1.0, 1.0)]))
    agg.add_batch(trades("B", [(100_000, 2.0, 1.0), (1_000, 2.0, 1.0)]))
    assert agg.stats("A").dropped_late == 0 and agg.stats("B").dropped_late == 1
    assert [b.symbol for b in agg.changes().updated] == ["A", "B"]
    with pytest.raises(ValueError, match="no fixed length"):
        Aggregator(("1M",))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batch_and_per_trade_paths_agree_on_disordered_binance_like_trades(seed: int) -> None:
    """Random arrival disorder (some beyond the window), repeated ids, random batch sizes:
    prices on a 0.25 tick and whole quantities keep every sum exact, so bars are equal."""
    rng = np.random.default_rng(seed)
    n = 20_000
    t = np.sort(rng.integers(0, 3_600_000, n)).astype(np.int64)
    ids = np.arange(n, dtype=np.int64)
    ids[rng.choice(n, 200)] = ids[rng.choice(n, 200)]  # repeated deliveries
    order = np.argsort(t + rng.integers(0, 3_000, n), kind="stable")
    first = ids * 3
    batch = TradeBatch(
        "BTCUSDT",
        t[order],
        (400 + rng.integers(0, 40, n) / 4)[order],
        rng.integers(1, 10, n).astype(np.float64)[order],
        agg_id=ids[order],
        first_id=first[order],
        last_id=(first + rng.integers(0, 3, n))[order],
        buyer_maker=rng.random(n)[order] < 0.5,
    )
    intervals = ("1m", "5m", "1h")
    vectorised, plain = Aggregator(intervals), Aggregator(intervals)
    got: list[LiveKline] = []
    want: list[LiveKline] = []
    start = 0
    while start < n:
        size = int(rng.integers(1, 2_000))
        part = batch.take(slice(start, start + size))
        assert vectorised.add_batch(part) == plain.add_batch_plain(part)
        got_changes, want_changes = vectorised.changes(), plain.changes()
        assert got_changes == want_changes
        got += got_changes.finalized
        want += want_changes.finalized
        start += size
    assert vectorised.stats("BTCUSDT") == plain.stats("BTCUSDT")
    assert vectorised.stats("BTCUSDT").dropped_late > 0
    vectorised.finish()
    plain.finish()
    assert vectorised.changes() == plain.changes()


@pytest.mark.parametrize("plain", [False, True])
def test_a_live_clock_closes_a_quiet_symbols_bar_without_a_trade(plain: bool) -> None:
    agg = Aggregator(("1m",), lateness_ms=LATENESS)
    feed = agg.add_batch_plain if plain else agg.add_batch
    feed(trades("Q", [(10_000, 5.0, 1.0)]))
    agg.advance(59_999 + LATENESS)  # not past close + lateness yet
    assert agg.changes().finalized == []
    agg.advance(60_000 + LATENESS)
    (bar,) = agg.changes().finalized
    assert (bar.open_time, bar.close, bar.is_final) == (0, 5.0, True)
    # the clock is a watermark: a trade older than it by more than the window is late
    assert feed(trades("Q", [(60_000 + LATENESS - LATENESS - 1, 6.0, 1.0)])) == 0
    assert agg.stats("Q").dropped_late == 1
