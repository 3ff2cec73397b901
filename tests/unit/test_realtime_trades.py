"""Trade inputs: Binance aggTrade frames in their wire format, replay files, bad input
counted per reason and logged rate-limited."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import numpy as np
import orjson
import pytest

from tickbase.marketdata.realtime.trade_file import read_replay_file
from tickbase.marketdata.realtime.trades import (
    BAD_PRICE,
    BAD_QTY,
    BAD_TIME,
    MALFORMED,
    NOT_JSON,
    OTHER_STREAM,
    AggTrade,
    BadInput,
    parse_agg_trade,
    parse_frames,
)

STREAMS = frozenset({"btcusdt@aggTrade", "ethusdt@aggTrade"})


def event(**changes: object) -> dict[str, object]:
    """A spot aggTrade event as Binance documents it (``M`` included, ignored)."""
    data: dict[str, object] = {
        "e": "aggTrade", "E": 1672515782136, "s": "BTCUSDT", "a": 26129,
        "p": "16500.01000000", "q": "0.00100000", "f": 27781, "l": 27783,
        "T": 1672515782134, "m": True, "M": True,
    }  # fmt: skip
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def frame(stream: str = "btcusdt@aggTrade", **changes: object) -> bytes:
    return orjson.dumps({"stream": stream, "data": event(**changes)})


def test_a_combined_stream_frame() -> None:
    bad = BadInput("binance")
    trade = parse_agg_trade(frame(), bad, STREAMS)
    assert trade == AggTrade("BTCUSDT", 26129, 16500.01, 0.001, 27781, 27783, 1672515782134, True)
    assert bad.counts == {}


def test_a_bare_event_and_text_frames() -> None:
    bad = BadInput("binance")
    trade = parse_agg_trade(orjson.dumps(event(m=False)).decode(), bad)
    assert trade is not None and trade.buyer_maker is False and trade.symbol == "BTCUSDT"


BAD_FRAMES = [
    (b"not json at all", NOT_JSON),
    (b'{"stream": "btcusdt@aggTrade", "data": ', NOT_JSON),
    (b"[1, 2]", MALFORMED),
    (b'{"result": null, "id": 1}', OTHER_STREAM),  # the reply to SUBSCRIBE
    (orjson.dumps({"stream": "btcusdt@kline_1m", "data": {"e": "kline"}}), OTHER_STREAM),
    (frame("bnbusdt@aggTrade", s="BNBUSDT"), OTHER_STREAM),  # not subscribed
    (frame("btcusdt@trade", e="trade"), OTHER_STREAM),
    (frame(s="ETHUSDT"), MALFORMED),  # symbol differs from its stream
    (frame(a=None), MALFORMED),
    (frame(a="26129"), MALFORMED),
    (frame(f=10, l=9), MALFORMED),
    (frame(m="yes"), MALFORMED),
    (frame(T=None), BAD_TIME),
    (frame(T="1672515782134"), BAD_TIME),
    (frame(T=0), BAD_TIME),
    (frame(T=True), BAD_TIME),
    (frame(p="0.00000000"), BAD_PRICE),
    (frame(p="-1"), BAD_PRICE),
    (frame(p="abc"), BAD_PRICE),
    (frame(p="NaN"), BAD_PRICE),
    (frame(p=None), BAD_PRICE),
    (frame(q="0"), BAD_QTY),
    (frame(q="-0.5"), BAD_QTY),
    (frame(q="inf"), BAD_QTY),
]


@pytest.mark.parametrize(("raw", "reason"), BAD_FRAMES)
def test_bad_frames_are_counted_by_reason(raw: bytes, reason: str) -> None:
    bad = BadInput("binance")
    assert parse_agg_trade(raw, bad, STREAMS) is None
    assert bad.counts == {reason: 1}


def test_parse_frames_keeps_the_good_and_counts_the_bad(caplog: pytest.LogCaptureFixture) -> None:
    good = [
        frame(a=1, f=1, l=1, T=1_000, p="10"),
        frame("ethusdt@aggTrade", s="ETHUSDT", a=7, f=70, l=72, T=1_001, m=False),
        frame(a=2, f=2, l=5, T=1_002, p="11", q="2"),
    ]
    frames = [good[0], *[raw for raw, _ in BAD_FRAMES], good[1], good[2]]
    bad = BadInput("binance wss://stream.binance.com:9443")
    with caplog.at_level(logging.WARNING, "tickbase.marketdata.realtime"):
        batches = parse_frames(frames, bad, STREAMS)
    assert set(batches) == {"BTCUSDT", "ETHUSDT"}
    btc = batches["BTCUSDT"]
    assert btc.time_ms.tolist() == [1_000, 1_002] and btc.price.tolist() == [10.0, 11.0]
    assert btc.agg_id is not None and btc.agg_id.tolist() == [1, 2]
    assert btc.last_id is not None and btc.last_id.tolist() == [1, 5]
    eth = batches["ETHUSDT"]
    assert eth.buyer_maker is not None and eth.buyer_maker.tolist() == [False]
    expected: dict[str, int] = {}
    for _, reason in BAD_FRAMES:
        expected[reason] = expected.get(reason, 0) + 1
    assert bad.counts == expected and bad.total == len(BAD_FRAMES)
    # one line per reason (rate-limited), each naming the source and the reason
    assert len(caplog.records) == len(expected)
    for record in caplog.records:
        assert record.getMessage().startswith("binance wss://stream.binance.com:9443: skipped")


def test_log_lines_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    bad = BadInput("replay x.csv", log_every=10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, "tickbase.marketdata.realtime"):
        for _ in range(1_000):
            bad.record(BAD_PRICE, "price '0'")
        now[0] = 10.0
        bad.record(BAD_PRICE, "price '-1'")
    assert bad.counts == {BAD_PRICE: 1_001}
    assert [r.getMessage() for r in caplog.records] == [
        "replay x.csv: skipped 1 bad trade input(s) (bad_price): price '0' (1 of this reason so far)",
        "replay x.csv: skipped 1000 bad trade input(s) (bad_price): price '-1' "
        "(1001 of this reason so far)",
    ]


# ---- replay files ---------------------------------------------------------------------

ROWS = """time,price,qty
2013-09-01T22:00:00.083Z,1640.25,8
2013-09-01T22:00:00.083Z,1640.25,1
2013-09-01T22:00:01.500Z,1640.5,3
"""


@pytest.mark.parametrize("compressed", [False, True])
def test_replay_file_plain_or_gzip(tmp_path: Path, compressed: bool) -> None:
    # the name says nothing: gzip is told by the content
    path = tmp_path / "trades.csv"
    path.write_bytes(gzip.compress(ROWS.encode()) if compressed else ROWS.encode())
    bad = BadInput("replay")
    (batch,) = read_replay_file(path, symbol="ES", bad=bad).values()
    assert batch.symbol == "ES"
    assert batch.time_ms.tolist() == [1378072800083, 1378072800083, 1378072801500]
    assert batch.price.tolist() == [1640.25, 1640.25, 1640.5]
    assert batch.qty.tolist() == [8.0, 1.0, 3.0]
    assert batch.agg_id is not None and batch.agg_id.tolist() == [0, 1, 2]
    assert bad.counts == {}


def test_replay_file_with_a_symbol_column_and_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv.gz"
    text = """symbol,time,price,qty
ES,2013-09-01T22:00:00.083Z,1640.25,8
NQ,2013-09-01T22:00:00.100Z,1500.5,2
ES,2013-09-01T22:00:00.200Z,0,1
ES,2013-09-01 22:00:00.300,1640.5,1
ES,yesterday,1640.5,1
NQ,2013-09-01T22:00:00.400Z,1500.75,-3
ES,2013-09-01T22:00:00.500Z,1640.5
ES,2013-09-01T22:00:00.600+00:00,1640.75,4
NQ,2013-09-01T22:00:00.700Z,abc,1
ES,2013-09-01T22:00:00.800Z,1641,5
"""
    path.write_bytes(gzip.compress(text.encode()))
    bad = BadInput("replay mixed")
    batches = read_replay_file(path, bad=bad)
    assert bad.counts == {MALFORMED: 1, BAD_TIME: 2, BAD_PRICE: 2, BAD_QTY: 1}
    assert list(batches) == ["ES", "NQ"]
    es, nq = batches["ES"], batches["NQ"]
    assert es.price.tolist() == [1640.25, 1640.75, 1641.0]
    assert es.agg_id is not None and es.agg_id.tolist() == [0, 7, 9]  # data row numbers
    assert es.time_ms.tolist() == [1378072800083, 1378072800600, 1378072800800]
    assert nq.price.tolist() == [1500.5] and nq.qty.tolist() == [2.0]


def test_replay_file_refusals(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("when,price,qty\n2013-09-01T22:00:00.083Z,1,1\n")
    with pytest.raises(ValueError, match="must name time, price, qty"):
        read_replay_file(path, symbol="ES")
    path.write_text(ROWS)
    with pytest.raises(ValueError, match="no symbol column: give its symbol"):
        read_replay_file(path)


def test_the_bundled_es_ticks() -> None:
    from tickbase.marketdata.realtime.bench import sample_trades

    batch = sample_trades()
    assert len(batch) == 500_000
    assert float(batch.qty.sum()) == 1_844_058
    assert (float(batch.price.min()), float(batch.price.max())) == (1630.75, 1650.0)
    assert bool(np.all(np.diff(batch.time_ms) >= 0))
    assert len(np.unique(batch.time_ms)) == 84_568
