"""The real-time pipeline end to end: the ES trades of a replay file through two shard
processes, the pulling loop, the writer and a registered reader into the K-line table
(issue 17).

The file holds the 500,000 ES trades twice, as "ES" and "ES2" (a ``symbol`` column), so
each of the two shard processes owns one symbol. The 1m bars stored equal
``es-1m.csv`` for both in every field the CSV has, the 5m and 1h bars equal resampling
it, every final bar is stored once the replay ends, and a registered reader saw them.
"""

from __future__ import annotations

import csv
import gzip
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

import tickbase
from tickbase.marketdata.bars import load_bars
from tickbase.marketdata.realtime.bench import sample_trades
from tickbase.marketdata.realtime.indicators import VALUES_KEPT
from tickbase.marketdata.realtime.pipeline import RealtimePipeline
from tickbase.marketdata.realtime.replay_source import ReplaySource
from tickbase.marketdata.realtime.series import SeriesBars
from tickbase.marketdata.realtime.writer import kline_writer
from tickbase.marketdata.resample import aggregate_bars, parse_resolution
from tickbase.marketdata.store import KlineStore

pytestmark = pytest.mark.slow
REFERENCE = Path(__file__).parents[1] / "data" / "reference"


def two_symbol_file(path: Path) -> Path:
    """The ES trades as ES and ES2, interleaved by time, in one replay file."""
    es = sample_trades("ES")
    iso = [
        datetime.fromtimestamp(t / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t % 1000:03d}Z"
        for t in es.time_ms.tolist()
    ]
    lines = ["time,price,qty,symbol"]
    for stamp, price, qty in zip(iso, es.price.tolist(), es.qty.tolist(), strict=True):
        lines.append(f"{stamp},{price!r},{qty!r},ES")
        lines.append(f"{stamp},{price!r},{qty!r},ES2")
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=1))
    return path


async def test_a_replay_through_two_shards_stores_the_es_bars(
    app: tickbase.App, database_url: str, tmp_path: Path
) -> None:
    source = ReplaySource(two_symbol_file(tmp_path / "two.csv.gz"))
    pipeline = RealtimePipeline(
        source, kline_writer(KlineStore(app.pool), "replay"), workers=2, timeout=0.09
    )
    seen: dict[tuple[str, str], int] = {}

    def count_finals(snapshot: Any) -> None:
        for key, series in snapshot.values.items():
            if isinstance(series, SeriesBars):
                for bar in series.finals_after(seen.get(key)):
                    seen[key] = bar.open_time

    pipeline.register("count-finals", count_finals)
    await pipeline.start()
    try:
        await pipeline.wait_stored()
        counts = pipeline.counts()
    finally:
        await pipeline.stop()
    assert {s.name: len(syms) for s, syms in _owners(pipeline).items()} == {
        "shard-0": 1,
        "shard-1": 1,
    }

    bars = load_bars("es-1m")
    with psycopg.connect(database_url) as conn:
        for symbol in ("ES", "ES2"):
            for interval, expected in (
                ("1m", [(b.open_time, b.open, b.high, b.low, b.close, b.volume) for b in bars]),
                *[
                    (
                        interval,
                        [
                            (r.open_time, r.open, r.high, r.low, r.close, r.volume)
                            for r in aggregate_bars(bars, parse_resolution(resolution))
                        ],
                    )
                    for interval, resolution in (("5m", "5"), ("1h", "60"))
                ],
            ):
                rows: list[Any] = conn.execute(
                    "SELECT open_time, open, high, low, close, volume FROM tickbase.klines"
                    " WHERE source = 'replay' AND symbol = %s AND interval = %s"
                    " ORDER BY open_time",
                    (symbol, interval),
                ).fetchall()
                assert rows == expected, (symbol, interval)
        stored = conn.execute("SELECT count(*) FROM tickbase.klines").fetchone()
    assert stored is not None
    # 2,264 minutes make 461 five-minute and 39 hourly bars, per symbol
    assert counts.bars == stored[0] == 2 * (2264 + 461 + 39)
    assert counts.trades == 1_000_000 and counts.dropped == 0 and counts.refused_trades == 0
    assert seen[("ES", "1m")] == seen[("ES2", "1m")] == int(bars[-1].open_time.timestamp() * 1000)

    # The built-in indicators reader saw every closed bar, in order: its values for the
    # last 1m bars equal TA-Lib's reference over es-1m.csv.
    indicators = pipeline.indicators
    assert indicators.missed == 0 and indicators.bars == counts.bars
    with (REFERENCE / "es-1m.ta.csv").open(newline="") as handle:
        reference = list(csv.DictReader(handle))[-VALUES_KEPT:]
    for symbol in ("ES", "ES2"):
        for row in reference:
            at = int(datetime.fromisoformat(row["open_time"]).timestamp() * 1000)
            got = indicators.at(symbol, "1m", at)
            assert got is not None, (symbol, row["open_time"])
            for name, want in row.items():
                if name != "open_time":
                    assert getattr(got, name) == pytest.approx(float(want), rel=1e-9), name


def _owners(pipeline: RealtimePipeline) -> dict[Any, list[str]]:
    owners: dict[Any, list[str]] = {}
    for symbol in pipeline.symbols:
        owners.setdefault(pipeline._route[symbol], []).append(symbol)
    return owners
