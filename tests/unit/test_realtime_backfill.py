"""Pure parts of the Binance live source: the bars a gap affects, when they are final, the
reconnect jitter, and the trade parser's fast path agreeing with its full checks."""

from __future__ import annotations

import random

import orjson
import pytest

from tickbase.marketdata.realtime.backfill import affected_bars, final_at_ms
from tickbase.marketdata.realtime.binance_stream import full_jitter
from tickbase.marketdata.realtime.trades import BadInput, _checked_row, parse_agg_trade_row
from tickbase.service import Backoff

H = 3_600_000


@pytest.mark.parametrize(
    ("start", "end", "interval", "opens"),
    [
        (59_000, 61_000, "1m", [0, 60_000]),  # straddles a minute boundary
        (60_000, 60_000, "1m", [60_000]),  # an instant on the open
        (59_999, 59_999, "1m", [0]),  # on the close: still the first minute
        (10_000, 20_000, "1m", [0]),
        (59_000, 61_000, "5m", [0]),
        (299_999, 300_000, "5m", [0, 300_000]),
        (H - 1, 2 * H + 5, "1h", [0, H, 2 * H]),
        (0, 3 * 60_000 - 1, "1m", [0, 60_000, 120_000]),
    ],
)
def test_affected_bars_are_those_overlapping_the_gap(
    start: int, end: int, interval: str, opens: list[int]
) -> None:
    assert affected_bars(start, end, interval) == opens


def test_a_gap_ending_before_it_starts_is_refused() -> None:
    with pytest.raises(ValueError, match="ends before it starts"):
        affected_bars(10, 5, "1m")
    with pytest.raises(ValueError, match="no fixed length"):
        affected_bars(0, 5, "1M")


def test_a_bar_is_final_after_its_close_the_lateness_and_the_margin() -> None:
    assert final_at_ms(60_000, "1m", 2_000, 500) == 60_000 + 59_999 + 2_500
    assert final_at_ms(0, "1h", 0, 0) == H - 1


def test_full_jitter_stays_within_the_backoff() -> None:
    rng = random.Random(17)
    backoff = Backoff(0.1, 2.0)
    for _ in range(200):
        ceiling = backoff.next()
        delay = full_jitter(ceiling, rng)
        assert 0.0 <= delay <= ceiling <= 2.0
    draws = [full_jitter(1.0, rng) for _ in range(2_000)]
    # spread over the whole window, not clustered at its end
    assert min(draws) < 0.05 and max(draws) > 0.95
    assert 0.45 < sum(draws) / len(draws) < 0.55
    assert full_jitter(-1.0, rng) == 0.0


EVENT = {
    "e": "aggTrade",
    "E": 1672515782136,
    "s": "BTCUSDT",
    "a": 26129,
    "p": "0.01633102",
    "q": "4.70443515",
    "f": 27781,
    "l": 27781,
    "T": 1672515782136,
    "m": True,
    "M": True,
}
VARIANTS: list[object] = [
    EVENT,
    {**EVENT, "p": 5},
    {**EVENT, "p": True},
    {**EVENT, "p": "inf"},
    {**EVENT, "p": "nan"},
    {**EVENT, "q": "0"},
    {**EVENT, "q": " 1.5 "},
    {**EVENT, "a": 1.0},
    {**EVENT, "T": 0},
    {**EVENT, "l": 27780},
    {**EVENT, "m": 1},
    {**EVENT, "s": "ETHUSDT"},
    {**EVENT, "e": "trade"},
    {k: v for k, v in EVENT.items() if k != "f"},
]


@pytest.mark.parametrize("stream", ["btcusdt@aggTrade", "ethusdt@aggTrade", None, 7])
@pytest.mark.parametrize("data", VARIANTS)
def test_the_fast_path_accepts_exactly_what_the_full_checks_accept(
    data: object, stream: object
) -> None:
    message = data if stream is None else {"stream": stream, "data": data}
    streams = frozenset({"btcusdt@aggTrade", "ethusdt@aggTrade"})
    fast, full = BadInput("fast"), BadInput("full")
    assert parse_agg_trade_row(orjson.dumps(message), fast, streams) == _checked_row(
        message, full, streams
    )
    assert fast.counts == full.counts
