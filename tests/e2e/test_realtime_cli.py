"""``tickbase realtime replay`` as a user runs it: the real ES trades in, the stored bars
read back with ``klines list``; bad input refused with a clear error, nothing stored lost."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.e2e.conftest import run_cli
from tickbase.marketdata.bars import load_bars
from tickbase.marketdata.realtime.runner import sample_trades_path

pytestmark = pytest.mark.slow


def replay(*args: str, database_url: str) -> dict[str, Any]:
    done = run_cli("realtime", "replay", *args, "--json", database_url=database_url, timeout=120)
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = json.loads(done.stdout)
    return out


def test_the_es_trades_replayed_give_the_es_1m_bars(database_url: str) -> None:
    counts = replay(str(sample_trades_path()), "--symbol", "ES", "--workers", "2",
                    database_url=database_url)  # fmt: skip
    assert counts["trades"] == 500_000 and counts["dropped"] == 0 and counts["late"] == 0
    assert counts["bars"] == 2264 + 461 + 39
    assert counts["bySymbol"] == [{"symbol": "ES", "trades": 500_000, "late": 0, "dropped": 0}]
    listed = run_cli("klines", "list", "ES", "--interval", "1m", "--limit", "5000", "--json",
                     database_url=database_url)  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    stored = json.loads(listed.stdout)
    expected = load_bars("es-1m")
    assert [(b["openTime"], b["open"], b["high"], b["low"], b["close"], b["volume"])
            for b in stored] == [
        (b.open_time.isoformat(), b.open, b.high, b.low, b.close, b.volume) for b in expected
    ]  # fmt: skip
    assert {b["source"] for b in stored} == {"replay"}


def trade_file(path: Path, rows: list[tuple[str, float, float]], header: str = "time,price,qty"):
    path.write_text(header + "\n" + "".join(f"{t},{p},{q}\n" for t, p, q in rows))
    return path


def test_late_trades_amend_and_too_late_ones_are_counted(database_url: str, tmp_path: Path) -> None:
    rows = [
        ("2026-01-05T10:00:01.000Z", 100.0, 1.0),
        ("2026-01-05T10:00:05.000Z", 102.0, 1.0),
        ("2026-01-05T10:00:03.500Z", 99.0, 2.0),  # 1.5 s late: amends the bar
        ("2026-01-05T10:01:30.000Z", 103.0, 1.0),
        ("2026-01-05T10:00:59.000Z", 150.0, 1.0),  # 31 s late: dropped
    ]
    counts = replay(str(trade_file(tmp_path / "t.csv", rows)), "--symbol", "LATE",
                    "--intervals", "1m", database_url=database_url)  # fmt: skip
    assert (counts["trades"], counts["late"], counts["dropped"], counts["bars"]) == (4, 1, 1, 2)
    with psycopg.connect(database_url) as conn:
        bars = conn.execute(
            "SELECT open, high, low, close, volume, trade_count FROM tickbase.klines"
            " WHERE symbol = 'LATE' ORDER BY open_time"
        ).fetchall()
    assert bars == [(100.0, 102.0, 99.0, 102.0, 4.0, 3), (103.0, 103.0, 103.0, 103.0, 1.0, 1)]


def test_speed_paces_the_replay_by_trade_time(database_url: str, tmp_path: Path) -> None:
    rows = [(f"2026-01-05T10:00:{s:02d}.000Z", 100.0 + s, 1.0) for s in range(0, 21)]
    path = trade_file(tmp_path / "paced.csv", rows)
    began = time.monotonic()
    counts = replay(str(path), "--symbol", "PACE", "--speed", "10", "--intervals", "1s",
                    database_url=database_url)  # fmt: skip
    # 20 s of trades at 10x real time take at least 2 s
    assert time.monotonic() - began >= 2.0
    assert counts["trades"] == 21 and counts["bars"] == 21


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--speed", "fast"], "invalid speed 'fast'"),
        (["--speed", "-2"], "invalid speed '-2'"),
        (["--intervals", "1m,1M"], "invalid interval '1M'"),
        (["--intervals", "1m,7x"], "invalid interval '7x'"),
        ([], "no symbol column: give its symbol (--symbol)"),
    ],
)
def test_bad_options_are_refused_naming_the_problem(
    database_url: str, tmp_path: Path, args: list[str], message: str
) -> None:
    with psycopg.connect(database_url) as conn:
        before = conn.execute("SELECT count(*) FROM tickbase.klines").fetchone()
    path = trade_file(tmp_path / "t.csv", [("2026-01-05T10:00:01.000Z", 1.0, 1.0)])
    if args:
        args = ["--symbol", "X", *args]
    done = run_cli("realtime", "replay", str(path), *args, database_url=database_url)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT count(*) FROM tickbase.klines").fetchone() == before


def test_a_file_with_bad_rows_stores_the_good_ones_and_counts_the_rest(
    database_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text(
        "time,price,qty,symbol\n"
        "2026-01-05T10:00:01.000Z,10,1,MIX\n"
        "not-a-time,10,1,MIX\n"
        "2026-01-05T10:00:02.000Z,-5,1,MIX\n"
        "2026-01-05T10:00:03.000Z,11,0,MIX\n"
        "2026-01-05T10:00:04.000Z,12,2,MIX\n"
    )
    done = run_cli("realtime", "replay", str(path), "--intervals", "1m", "--json",
                   database_url=database_url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    counts = json.loads(done.stdout)
    assert counts["trades"] == 2 and counts["bars"] == 1
    assert "bad_time" in done.stderr and "bad_price" in done.stderr and "bad_qty" in done.stderr
