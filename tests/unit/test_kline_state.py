"""The loop's columnar K-line state: chunks from real aggregators folded in."""

from __future__ import annotations

import numpy as np

from tickbase.marketdata.realtime.aggregator import Aggregator
from tickbase.marketdata.realtime.series import KlineState, SeriesBars
from tickbase.marketdata.realtime.trades import TradeBatch

MINUTE = 60_000
T0 = 1_700_000_040_000 // MINUTE * MINUTE


def trades(symbol: str, times: list[int], prices: list[float]) -> TradeBatch:
    return TradeBatch(
        symbol, np.array(times, dtype=np.int64), np.array(prices), np.ones(len(times))
    )


def test_forming_bars_final_bars_and_stats_fold_in_by_symbol_slot() -> None:
    aggregator = Aggregator(("1m",), lateness_ms=2_000)
    finals = []
    state = KlineState(("1m",), on_final=finals.append)
    # Two bars of AAA forming at once (the first still in its lateness window).
    aggregator.add_batch_plain(trades("AAA", [T0 + 1, T0 + MINUTE + 500], [10.0, 11.0]))
    aggregator.add_batch_plain(trades("BBB", [T0 + 5], [20.0]))
    state.apply([{("bars", 1): aggregator.report()}])
    aaa = state.values[("AAA", "1m")]
    assert isinstance(aaa, SeriesBars) and aaa.forming is not None
    assert aaa.forming.open_time == T0 + MINUTE and aaa.forming.close == 11.0  # newest wins
    assert state.values[("BBB", "1m")].forming.close == 20.0  # type: ignore[union-attr]
    snapshot = state.snapshot()

    # A late trade amends AAA's older bar: the forming one stays; then the clock closes it.
    aggregator.add_batch_plain(trades("AAA", [T0 + MINUTE - 1_000], [9.0]))
    state.apply([{("bars", 2): aggregator.report()}])
    assert state.values[("AAA", "1m")].forming.open_time == T0 + MINUTE  # type: ignore[union-attr]
    aggregator.advance(T0 + 2 * MINUTE + 2_001)
    chunk = aggregator.report()
    state.apply([{("bars", 3): chunk}])
    aaa = state.values[("AAA", "1m")]
    assert aaa.forming is None and [b.open_time for b in aaa.finals] == [T0, T0 + MINUTE]
    assert aaa.finals[0].low == 9.0 and aaa.finals[0].trade_count == 2
    assert [(b.symbol, b.open_time) for b in finals] == [
        ("AAA", T0), ("AAA", T0 + MINUTE), ("BBB", T0)
    ]  # fmt: skip
    # The same report again (a pull answered twice): stored once.
    state.apply([{("bars", 3): chunk}])
    assert len(finals) == 3 and state.finals_seen == 3
    assert state.stats["AAA"].accepted == 3 and state.stats["BBB"].accepted == 1

    # The snapshot taken before is unchanged by what came after.
    assert snapshot[("AAA", "1m")].forming.close == 11.0  # type: ignore[union-attr]
    assert snapshot[("AAA", "1m")].finals == ()
    assert set(snapshot) == {("AAA", "1m"), ("BBB", "1m")} and len(snapshot) == 2
    assert ("CCC", "1m") not in snapshot and ("AAA", "5m") not in snapshot


def test_the_state_grows_past_its_first_capacity() -> None:
    aggregator = Aggregator(("1m", "5m"))
    state = KlineState(("1m", "5m"))
    symbols = [f"S{i:03d}" for i in range(300)]
    for i, symbol in enumerate(symbols):
        aggregator.add_batch_plain(trades(symbol, [T0 + i], [float(i + 1)]))
    state.apply([{("bars", 1): aggregator.report()}])
    assert state.forming_count() == 600
    assert all(
        state.values[(s, iv)].forming.close == i + 1  # type: ignore[union-attr]
        for i, s in enumerate(symbols)
        for iv in ("1m", "5m")
    )
