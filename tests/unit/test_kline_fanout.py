"""The ``kline`` fanout's bookkeeping, snapshot by snapshot (no sockets: the real-socket
tests are ``tests/integration/test_gateway_kline.py``): each final bar once, no forming
state twice, and a connection that refuses its frames (too many pending) is offered the
same final bars again on the next snapshot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tickbase.gateway.kline_ws import KlineFanout
from tickbase.marketdata.realtime.kline import LiveKline
from tickbase.marketdata.realtime.loop import Snapshot
from tickbase.marketdata.realtime.pipeline import RealtimePipeline
from tickbase.marketdata.realtime.replay_source import ReplaySource
from tickbase.marketdata.realtime.series import SeriesBars

KEY = ("BTCUSDT", "1m")


class Recorder:
    """A connection's push path: records what it takes, refuses while ``full``."""

    def __init__(self) -> None:
        self.full = False
        self.frames: list[dict[str, Any]] = []

    def push(self, channel: str, contents: Sequence[dict[str, Any]]) -> bool:
        assert channel == "kline"
        if self.full:
            return False
        self.frames.extend(contents)
        return True


def bar(minute: int, close: float, *, final: bool = False) -> LiveKline:
    start = 1_767_603_600_000 + minute * 60_000
    return LiveKline(
        "BTCUSDT", "1m", start, start + 59_999, 1.0, 2.0, 0.5, close, 3.0, 4.0, 5, 1.0, 2.0, 1, 5,
        is_final=final,
    )  # fmt: skip


def snapshot(cycle: int, forming: LiveKline | None, *finals: LiveKline) -> Snapshot:
    return Snapshot(cycle, {KEY: SeriesBars("BTCUSDT", "1m", forming, finals)}, 0.0)


async def test_finals_once_forming_on_change_and_a_refused_push_offered_again(
    tmp_path: Path,
) -> None:
    (tmp_path / "t.csv").write_text("time,price,qty,symbol\n")
    pipeline = RealtimePipeline(
        ReplaySource(tmp_path / "t.csv"), None, intervals=("1m",), symbols=("BTCUSDT",)
    )
    fanout = KlineFanout(lambda: pipeline)
    conn = Recorder()
    assert fanout.subscribe(conn, *KEY) == [KEY]
    # one handler, registered lazily (beside the built-in indicators)
    assert pipeline.reader.stats.keys() == {"indicators", "ws-kline"}

    fanout(snapshot(1, bar(0, 10.0)))
    fanout(snapshot(2, bar(0, 10.0)))  # the same state: nothing
    fanout(snapshot(3, bar(0, 11.0)))
    assert [(f["openTime"], f["close"], f["isFinal"]) for f in conn.frames] == [
        (bar(0, 0).open_time, 10.0, False),
        (bar(0, 0).open_time, 11.0, False),
    ]

    # The client is slow: its frames are refused and its state stays where it was.
    conn.full = True
    fanout(snapshot(4, bar(1, 20.0), bar(0, 11.0, final=True)))
    fanout(snapshot(5, bar(2, 30.0), bar(0, 11.0, final=True), bar(1, 21.0, final=True)))
    assert len(conn.frames) == 2 and fanout.deferred == 2
    conn.full = False
    fanout(snapshot(6, bar(2, 30.0), bar(0, 11.0, final=True), bar(1, 21.0, final=True)))
    fanout(snapshot(7, bar(2, 30.0), bar(0, 11.0, final=True), bar(1, 21.0, final=True)))
    assert [(f["close"], f["isFinal"]) for f in conn.frames[2:]] == [
        (11.0, True),
        (21.0, True),
        (30.0, False),
    ]

    # A second subscriber is caught up from the newest snapshot at once.
    pipeline.loop.channel.put(
        snapshot(8, bar(2, 31.0)._replace(), bar(0, 11.0, final=True), bar(1, 21.0, final=True))
    )
    late = Recorder()
    fanout.subscribe(late, *KEY)
    assert [(f["close"], f["isFinal"]) for f in late.frames] == [
        (11.0, True),
        (21.0, True),
        (31.0, False),
    ]
    fanout.drop(conn)
    fanout.drop(late)
    assert fanout.subscriptions == 0
    fanout.close()
    assert pipeline.reader.stats.keys() == {
        "indicators",
        "ws-kline",
    }  # stats stay; the handler is gone
    assert list(pipeline.reader._handlers) == ["indicators"]
