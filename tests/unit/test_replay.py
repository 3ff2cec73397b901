"""The replay source: real series under their own names, at their own interval, never rescaled."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tickbase.errors import SourceUnavailable
from tickbase.marketdata.bars import load_bars
from tickbase.marketdata.collector import KlineRequest
from tickbase.marketdata.replay import REPLAY_PREFIX, REPLAY_SERIES, ReplayKlines, replay_series

NOW = datetime(2026, 12, 3, 9, 55, tzinfo=UTC)  # a Thursday


async def test_a_live_symbol_or_another_interval_is_refused() -> None:
    source = ReplayKlines()
    assert source.live is False and source.rate_limit is None
    async with httpx.AsyncClient() as client:
        with pytest.raises(SourceUnavailable, match="never served under a live symbol"):
            await source.collect(client, KlineRequest("BTCUSDT", "1h", 10))
        with pytest.raises(SourceUnavailable, match="recorded at 1d only, not served at 1h"):
            await source.collect(client, KlineRequest("REPLAY:SPX-1d", "1h", 10))
        served = await source.collect(client, KlineRequest("REPLAY:SPX-1d", "1d", 10))
    assert len(source.validate(served, KlineRequest("REPLAY:SPX-1d", "1d", 10))) == 10
    assert all(name.startswith(REPLAY_PREFIX) for name in REPLAY_SERIES)


@pytest.mark.parametrize("symbol", sorted(REPLAY_SERIES))
def test_the_same_stamp_always_holds_the_same_bar(symbol: str) -> None:
    series = REPLAY_SERIES[symbol]
    first = replay_series(series, 300, NOW)
    later = replay_series(series, 300, NOW + timedelta(days=3))
    assert len(first) == len(later) == 300
    by_time = {bar.open_time: bar for bar in later}
    assert all(by_time[bar.open_time] == bar for bar in first if bar.open_time in by_time)
    assert all(bar.open_time + timedelta(minutes=1) <= NOW for bar in first)
    assert all(a.open_time < b.open_time for a, b in itertools.pairwise(first))


def test_the_loop_seam_joins_the_files_last_bar_to_its_first() -> None:
    """ES plays every week from Sunday 22:00 UTC (the Globex open): just after, the last
    100 bars end last week's loop and begin this week's, with the file's prices."""
    series = REPLAY_SERIES["REPLAY:ES-1m"]
    file = load_bars("es-1m")
    sunday = datetime(2026, 11, 29, 22, 30, tzinfo=UTC)
    bars = replay_series(series, 100, sunday)
    closes = [bar.close for bar in bars]
    assert closes == [bar.close for bar in file[-70:]] + [bar.close for bar in file[:30]]
    assert bars[70].open_time == datetime(2026, 11, 29, 22, 0, tzinfo=UTC)
    assert bars[70].open_time.weekday() == file[0].open_time.weekday() == 6
