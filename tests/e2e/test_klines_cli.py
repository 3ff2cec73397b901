"""``tickbase klines import`` and ``klines list`` as a user runs them."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import psycopg
from pydantic.alias_generators import to_camel

from tests.e2e.conftest import run_cli

# The first real GOOG daily bars (tests/../shared/data/goog-1d.csv), with bad rows
# mixed in and a 25% jump injected on the 5th bar (kept and flagged).
GOOG = """open_time,open,high,low,close,volume
2004-08-19T00:00:00Z,100,104.06,95.96,100.34,22351900
2004-08-20T00:00:00Z,101.01,109.08,100.5,108.31,11428600
2004-08-23T00:00:00Z,110.75,113.48,109.05,109.4,9137200
2004-08-23T00:00:00Z,110.75,113.48,109.05,109.4,9137200
2004-08-24T00:00:00Z,111.24,111.6,103.57,104.87,not-a-number
2004-08-24T00:00:00Z,111.24,111.6,103.57,NaN,7631300
2004-08-24T00:00:00Z,111.24,101.6,103.57,104.87,7631300
2004-08-24T00:00:00Z,111.24,111.6,103.57,-104.87,7631300
2004-08-24T00:00:00Z,111.24,111.6,103.57,104.87,7631300
2004-08-25T00:00:00Z,104.96,140,103.88,131.25,4598900
2004-08-26T00:00:00,104.95,107.95,104.66,107.91,3551000
2004-08-26T00:00:00Z,104.95,107.95,104.66,107.91,0
"""


def test_import_keeps_good_rows_reports_bad_ones(
    database_url: str, sql_conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    path = tmp_path / "goog-1d.csv"
    path.write_text(GOOG)
    done = run_cli(
        "klines",
        "import",
        str(path),
        "--symbol",
        "GOOG",
        "--interval",
        "1d",
        "--json",
        database_url=database_url,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["stored"] == 6 and report["refused"] == 6
    lines = {p["line"]: p["reason"] for p in report["problems"]}
    assert set(lines) == {5, 6, 7, 8, 9, 12}
    assert "is not after the previous" in lines[5] and "volume 'not-a-number'" in lines[6]
    assert "not a finite number" in lines[7] and "is below max(open, close)" in lines[8]
    assert "not a positive price" in lines[9] and "must be in UTC" in lines[12]

    listed = run_cli(
        "klines", "list", "GOOG", "--interval", "1d", "--json", database_url=database_url
    )
    bars = json.loads(listed.stdout)
    assert [b["openTime"][:10] for b in bars] == [
        "2004-08-19",
        "2004-08-20",
        "2004-08-23",
        "2004-08-24",
        "2004-08-25",
        "2004-08-26",
    ]
    assert [b["isAnomaly"] for b in bars] == [False, False, False, False, True, False]
    assert bars[-1]["volume"] == 0 and bars[0]["source"] == "import"

    # importing again changes nothing (upsert), a bad series name is refused
    again = run_cli(
        "klines",
        "import",
        str(path),
        "--symbol",
        "GOOG",
        "--interval",
        "1d",
        database_url=database_url,
    )
    assert again.returncode == 0 and "line 5:" in again.stdout
    assert sql_conn.execute("SELECT count(*) FROM tickbase.klines").fetchone() == (6,)
    bad = run_cli(
        "klines",
        "import",
        str(path),
        "--symbol",
        "GOOG",
        "--interval",
        "1 day",
        database_url=database_url,
    )
    assert bad.returncode != 0 and "invalid interval '1 day'" in bad.stderr


def test_import_reads_a_gzipped_file(
    database_url: str, sql_conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    path = tmp_path / "goog-1d.csv.gz"
    path.write_bytes(gzip.compress(GOOG.encode()))
    done = run_cli(
        "klines",
        "import",
        str(path),
        "--symbol",
        "GOOG",
        "--interval",
        "1d",
        database_url=database_url,
    )
    assert done.returncode == 0, done.stderr
    [(count,)] = sql_conn.execute("SELECT count(*) FROM tickbase.klines").fetchall()
    assert count == 6


def test_import_refuses_a_binary_file_in_one_line(database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "bars.parquet"
    path.write_bytes(b"PAR1\x15\x04\x15\x00\xff\xfe rest")
    done = run_cli(
        "klines",
        "import",
        str(path),
        "--symbol",
        "GOOG",
        "--interval",
        "1d",
        database_url=database_url,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert f"{path} is not a text CSV file (binary content at byte 7)" in line


def test_indicators_cli_equals_talib_reference(database_url: str, tmp_path: Path) -> None:
    """The bundled GOOG daily series imported, then ``tickbase indicators`` by both paths:
    every value equals TA-Lib's reference file to 1e-9 relative."""
    import csv
    from importlib import resources

    sample = resources.files("tickbase.marketdata") / "sample" / "goog-1d.csv"
    path = tmp_path / "goog-1d.csv"
    path.write_text(sample.read_text(encoding="utf-8"))
    done = run_cli(
        "klines",
        "import",
        str(path),
        "--symbol",
        "GOOG",
        "--interval",
        "1d",
        database_url=database_url,
    )
    assert done.returncode == 0, done.stderr
    reference_path = Path(__file__).parents[1] / "data" / "reference" / "goog-1d.ta.csv"
    with reference_path.open() as handle:
        reference = list(csv.DictReader(handle))
    for calc in ("incremental", "batch"):
        shown = run_cli(
            "indicators",
            "GOOG",
            "--interval",
            "1d",
            "--path",
            calc,
            "--json",
            database_url=database_url,
        )
        assert shown.returncode == 0, shown.stderr
        rows = json.loads(shown.stdout)
        assert len(rows) == len(reference) == 2148
        assert rows[0]["ema21"] is None and rows[20]["ema21"] is not None
        for got, want in zip(rows, reference, strict=True):
            for name, text in want.items():
                if name == "open_time":
                    continue
                name = to_camel(name)  # the CLI's JSON keys are the HTTP API's
                if text == "":
                    assert got[name] is None, (calc, got["openTime"], name)
                else:
                    expected = float(text)
                    assert abs(got[name] - expected) <= 1e-9 * max(abs(expected), 1.0), (
                        calc,
                        got["openTime"],
                        name,
                        got[name],
                        expected,
                    )


def test_observations_cli_shows_what_a_collection_stored(
    database_url: str, sql_conn: psycopg.Connection[Any]
) -> None:
    """``tickbase observations SERIES --json``: the stored values, oldest first, with the
    ones cleaning supplied marked; an unknown series names those stored."""
    sql_conn.execute(
        "INSERT INTO tickbase.observations (series, observed_at, kind, source, value, label,"
        " is_filled) VALUES ('DCOILWTICO', '1986-01-02', 'macro', 'fred', 25.56, NULL, false),"
        " ('DCOILWTICO', '1986-01-03', 'macro', 'fred', 25.56, NULL, true)"
    )
    done = run_cli("observations", "DCOILWTICO", "--json", database_url=database_url)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [(r["value"], r["isFilled"], r["source"]) for r in rows] == [
        (25.56, False, "fred"),
        (25.56, True, "fred"),
    ]
    assert rows[0]["observedAt"].startswith("1986-01-02")
    missing = run_cli("observations", "fear_greed", database_url=database_url)
    assert missing.returncode != 0 and "DCOILWTICO" in missing.stderr + missing.stdout
    bad = run_cli("observations", "no spaces", database_url=database_url)
    assert bad.returncode != 0 and "invalid series" in bad.stderr + bad.stdout


EURUSD = """open_time,open,high,low,close,volume
2024-01-02T00:00:00Z,1.10385,1.10412,1.10301,1.10322,1523.25
2024-01-02T01:00:00Z,1.10322,1.1035,1.10277,1.10291,1210.5
"""


def test_list_shows_prices_at_the_instruments_precision(database_url: str, tmp_path: Path) -> None:
    path = tmp_path / "eurusd-1h.csv"
    path.write_text(EURUSD)
    done = run_cli(
        *("klines", "import", str(path), "--symbol", "EURUSD", "--interval", "1h"),
        database_url=database_url,
    )
    assert done.returncode == 0, done.stderr
    listed = run_cli("klines", "list", "EURUSD", "--interval", "1h", database_url=database_url)
    assert listed.returncode == 0, listed.stderr
    # 5 decimals for every price (1.1035 is shown as 1.10350), volumes rounded.
    for price in ("1.10385", "1.10412", "1.10301", "1.10322", "1.10350", "1.10277", "1.10291"):
        assert price in listed.stdout
    assert "1,523.25" in listed.stdout and "1.104 " not in listed.stdout
