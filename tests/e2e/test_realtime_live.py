"""``tickbase realtime run`` over a fake Binance trading now (:mod:`tests.support.live_binance`):
a disconnect and skipped ids are backfilled from the REST klines, a SIGKILLed process
restarted misses no final bar, and a replay run stops cleanly on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import psycopg
import pytest

from tests.e2e.conftest import REPO, tickbase_env
from tests.support.live_binance import LiveBinance, Tape, tape_klines
from tickbase.marketdata.realtime.backfill import affected_bars
from tickbase.marketdata.realtime.kline import interval_ms

pytestmark = pytest.mark.slow

SYMBOLS = ("AAA", "BBB")
LATENESS_MS = 500  # room for a loaded machine: a trade sent late must not be dropped
MARGIN_MS = 200
SECOND = 1000

Row = tuple[Any, ...]


class Runs:
    """``tickbase realtime run`` processes, their output in files; killed at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
        log = self.tmp / f"run-{len(self.started)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "tickbase", "realtime", "run", *args],
                env=env,
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.started.append((process, log))
        return process

    def output(self, process: subprocess.Popen[bytes]) -> str:
        return next(log for p, log in self.started if p is process).read_text()

    def cleanup(self) -> None:
        for process, _ in self.started:
            if process.poll() is None:
                process.kill()
            process.wait(10)


@pytest.fixture
def runs(tmp_path: Path) -> Iterator[Runs]:
    started = Runs(tmp_path)
    yield started
    started.cleanup()


def live_env(database_url: str, fake: LiveBinance) -> dict[str, str]:
    return tickbase_env(
        database_url,
        TICKBASE_BINANCE_WS_URL=fake.ws_url,
        TICKBASE_BINANCE_URL=fake.url,
        TICKBASE_REALTIME_BACKFILL_MARGIN_MS=str(MARGIN_MS),
    )


def run_args(source: str = "binance", interval: str = "1s") -> list[str]:
    return ["--symbols", ",".join(SYMBOLS), "--intervals", interval, "--workers", "2",
            "--source", source, "--lateness-ms", str(LATENESS_MS)]  # fmt: skip


def stored(
    database_url: str, symbol: str, source: str = "binance", interval: str = "1s"
) -> dict[int, Row]:
    """open ms → (the Binance kline row's fields..., backfilled) of the stored bars."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT (extract(epoch FROM open_time) * 1000)::bigint, open, high, low, close,"
            " volume, (extract(epoch FROM close_time) * 1000)::bigint, quote_volume,"
            " trade_count, taker_buy_base_volume, taker_buy_quote_volume, backfilled"
            " FROM tickbase.klines WHERE source = %s AND symbol = %s AND interval = %s"
            " ORDER BY open_time",
            (source, symbol, interval),
        ).fetchall()
    return {int(r[0]): tuple(r) for r in rows}


def wait_for(what: Callable[[], bool], timeout: float, why: str) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {why}")
        time.sleep(0.05)


def same(row: Row, kline: list[Any]) -> bool:
    """A stored row equals a kline row (float sums compared to 1e-9)."""
    return row[0] == kline[0] and row[6] == kline[6] and row[8] == kline[8] and all(
        abs(a - b) <= 1e-9 * max(1.0, abs(b)) for a, b in zip(row[1:6] + row[7:8] + row[9:11],
                                                             kline[1:6] + kline[7:8] + kline[9:11],
                                                             strict=True)
    )  # fmt: skip


def check_bars(
    database_url: str,
    fake: LiveBinance,
    backfilled: dict[str, set[int]],
    until_ms: int,
    interval: str = "1s",
) -> None:
    """Every final ``interval`` bar from each symbol's first trade sent to ``until_ms`` is stored: the
    ``backfilled`` ones (and only those) marked, equal to the REST's (the whole tape's)
    bars; the others equal the aggregation of the trades the stream sent."""
    tape, step = fake.tape, interval_ms(interval)
    for symbol in SYMBOLS:
        rows = stored(database_url, symbol, interval=interval)
        sent = tape_klines((tape.trade(symbol, a) for a in sorted(fake.sent[symbol])), interval)
        truth = {k[0]: k for k in tape.klines(symbol, interval)}
        live = {k[0]: k for k in sent}
        first = tape.time_ms(fake.sent[symbol][0]) // step * step
        wanted = [t for t in sorted(truth) if first <= t and t + step + LATENESS_MS < until_ms]
        assert len(wanted) >= 3
        missing = [t for t in wanted if t not in rows]
        assert not missing, f"{symbol}: final bars missing at {missing}"
        for t in wanted:
            row = rows[t]
            assert row[-1] == (t in backfilled[symbol]), (symbol, t, row)
            expected = truth[t] if row[-1] else live[t]
            assert same(row, expected), (symbol, t, row, expected)
        assert backfilled[symbol] <= set(rows), (symbol, backfilled[symbol] - set(rows))


def gap_bars(fake: LiveBinance, after_offset: int, next_offset: int) -> set[int]:
    """The 1s bars a gap between two ids (offsets from the first sent) touches."""
    assert fake.first_id is not None
    return set(
        affected_bars(
            fake.tape.time_ms(fake.first_id + after_offset),
            fake.tape.time_ms(fake.first_id + next_offset),
            "1s",
        )
    )


def backfilled_rows(database_url: str, symbol: str, interval: str = "1s") -> set[int]:
    return {t for t, row in stored(database_url, symbol, interval=interval).items() if row[-1]}


def test_a_disconnect_and_skipped_ids_are_backfilled_from_the_rest_klines(
    database_url: str, runs: Runs
) -> None:
    tape = Tape(SYMBOLS, t0_ms=int(time.time() * 1000))
    # BBB misses 20 ids (0.5 s) on a live connection; after id 100 both lose the
    # connection, and the next resumes 8 ids later.
    with LiveBinance(tape, skip={"BBB": range(40, 60)}, disconnect_after=100) as fake:
        process = runs.start(live_env(database_url, fake), *run_args())
        wait_for(lambda: fake.first_id is not None, 30, "the first connection")
        first = fake.first_id
        assert first is not None
        wait_for(lambda: fake.sent["AAA"][-1] > first + 100, 30, "the reconnect")
        # the ids after 100 the second connection began with
        resumed = min(a for a in fake.sent["AAA"] if a > first + 100) - first
        assert resumed >= 109
        expected = {
            "AAA": gap_bars(fake, 100, resumed),
            "BBB": gap_bars(fake, 39, 60) | gap_bars(fake, 100, resumed),
        }
        wait_for(
            lambda: all(backfilled_rows(database_url, s) >= expected[s] for s in SYMBOLS),
            20,
            f"the backfills of {expected}",
        )
        until_ms = int(time.time() * 1000)
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0, runs.output(process)
    out = runs.output(process)
    assert "binance stream: reconnected" in out and "(reconnect)" in out, out
    assert "BBB missed aggregate trades" in out and "(skipped_ids)" in out, out
    check_bars(database_url, fake, expected, until_ms)


@pytest.mark.parametrize(
    ("interval", "dead_seconds"),
    [
        ("1s", 1.5),  # dead for whole bars
        # Back within two bars of the last stored one: the bar the kill cut in two must
        # still be backfilled (the restarted process saw only its end).
        ("5s", 0.0),
    ],
)
def test_a_killed_process_restarted_misses_no_final_bar(
    database_url: str, runs: Runs, interval: str, dead_seconds: float
) -> None:
    tape = Tape(SYMBOLS, t0_ms=int(time.time() * 1000))
    step = interval_ms(interval)

    def bars(symbol: str) -> dict[int, Row]:
        return stored(database_url, symbol, interval=interval)

    with LiveBinance(tape) as fake:
        env = live_env(database_url, fake)
        first_run = runs.start(env, *run_args(interval=interval))
        wait_for(lambda: all(len(bars(s)) >= 2 for s in SYMBOLS), 30, "the first run's bars")
        shards = psutil.Process(first_run.pid).children(recursive=True)
        first_run.send_signal(signal.SIGKILL)
        first_run.wait(10)
        killed_at = int(time.time() * 1000)
        last = {s: max(bars(s)) for s in SYMBOLS}
        time.sleep(dead_seconds)
        restarted_at = len(fake.sent["AAA"])
        second_run = runs.start(env, *run_args(interval=interval))
        wait_for(lambda: len(fake.sent["AAA"]) > restarted_at, 30, "the second connection")
        # The killed run's shard processes do not outlive it.
        assert not psutil.wait_procs(shards, timeout=5)[1]
        resumed = {s: min(a for a in fake.sent[s] if tape.time_ms(a) > killed_at)
                   for s in SYMBOLS}  # fmt: skip
        # What the restart backfills: from the bar after the last stored to the first
        # trade it received (whose bar it saw only part of).
        expected = {
            s: set(range(last[s] + step, tape.time_ms(resumed[s]) // step * step + 1, step))
            for s in SYMBOLS
        }
        wait_for(
            lambda: all(backfilled_rows(database_url, s, interval) >= expected[s]
                        for s in SYMBOLS),
            step / 1000 + 20,
            f"the restart's backfills of {expected}",
        )  # fmt: skip
        until_ms = int(time.time() * 1000)
        second_run.send_signal(signal.SIGTERM)
        assert second_run.wait(20) == 0, runs.output(second_run)
    out = runs.output(second_run)
    assert "were not aggregated here: backfilling them" in out, out
    check_bars(database_url, fake, expected, until_ms, interval)


def test_a_replay_run_stores_bars_and_stops_cleanly_on_sigterm(
    database_url: str, runs: Runs
) -> None:
    process = runs.start(tickbase_env(database_url), *run_args("replay"))
    wait_for(
        lambda: all(len(stored(database_url, s, "replay")) >= 2 for s in SYMBOLS),
        30,
        "replayed bars",
    )
    children = psutil.Process(process.pid).children(recursive=True)
    assert len(children) >= 2  # the shard workers
    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 0, runs.output(process)
    _gone, alive = psutil.wait_procs(children, timeout=5)
    assert not alive, f"orphaned children: {alive}"
    assert "stopped:" in runs.output(process)
