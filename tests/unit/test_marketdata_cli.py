"""What ``tickbase klines`` does before it touches a database, in process: a bar file is read as
text whether gzipped or not (by content, not by name), a byte-order mark is dropped, anything
else is refused in one line naming the file and the first bad byte; series names are checked
with the store's own patterns; indicators print in the units they are read in.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import typer

from tickbase.cli.marketdata import _check_series, _indicator, read_bar_file
from tickbase.marketdata.bars import read_bar_text
from tickbase.marketdata.store import INTERVAL_PATTERN, SYMBOL_PATTERN

TEXT = "open_time,open,high,low,close,volume\n2024-01-01T00:00:00Z,10,11,9,10.5,100\n"


def refused(capsys: pytest.CaptureFixture[str], call: Callable[..., object], *args: object) -> str:
    """The one error line ``call(*args)`` fails with (exit code 1)."""
    with pytest.raises(typer.Exit) as exited:
        call(*args)
    assert exited.value.exit_code == 1
    out, err = capsys.readouterr()
    assert out == ""
    [line] = err.strip().splitlines()
    assert line.startswith("error: ")
    return line.removeprefix("error: ")


def test_plain_and_gzipped_text_read_the_same_whatever_the_name(tmp_path: Path) -> None:
    plain = tmp_path / "bars.csv"
    plain.write_text(TEXT)
    zipped = tmp_path / "bars-but-gzipped.csv"  # named .csv, holding gzip
    zipped.write_bytes(gzip.compress(TEXT.encode()))
    named = tmp_path / "bars.csv.gz"
    named.write_bytes(gzip.compress(TEXT.encode()))
    assert read_bar_file(plain) == read_bar_file(zipped) == read_bar_file(named) == TEXT
    bars, problems = read_bar_text(read_bar_file(zipped))
    assert len(bars) == 1 and problems == []


def test_a_byte_order_mark_is_not_part_of_the_header(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + TEXT.encode())
    text = read_bar_file(path)
    assert text == TEXT
    assert read_bar_text(text)[1] == []


def test_a_truncated_gzip_is_refused_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(gzip.compress(TEXT.encode())[:-12])
    message = refused(capsys, read_bar_file, path)
    assert message.startswith(f"{path} is not a readable gzip file (")


@pytest.mark.parametrize(
    ("data", "byte"),
    [
        (b"open_time\x00,open", 9),  # NUL in otherwise valid UTF-8
        (b"open_time,\xff\xfeopen", 10),  # not UTF-8
        (b"ok\xff then \x00", 2),  # the first of the two
        (b"a\x00b\xff", 1),
    ],
)
def test_binary_content_is_refused_at_its_first_byte(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: bytes, byte: int
) -> None:
    path = tmp_path / "bars.bin"
    path.write_bytes(data)
    assert refused(capsys, read_bar_file, path) == (
        f"{path} is not a text CSV file (binary content at byte {byte})"
    )


def test_gzipped_binary_is_refused_like_plain_binary(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bars.parquet.gz"
    path.write_bytes(gzip.compress(b"PAR1\x15\x04\x00"))
    assert refused(capsys, read_bar_file, path) == (
        f"{path} is not a text CSV file (binary content at byte 6)"
    )


def test_an_unreadable_path_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    message = refused(capsys, read_bar_file, tmp_path)  # a directory
    assert message.startswith(f"cannot read {tmp_path}: ")
    assert "Traceback" not in message


@pytest.mark.parametrize("symbol", ["BTCUSDT", "REPLAY:ES-1m", "BTC/USD", "a.b_c", "X" * 40])
@pytest.mark.parametrize("interval", ["1m", "15m", "4h", "1d", "1w", "1M", "30s", "120m"])
def test_good_series_names_pass(symbol: str, interval: str) -> None:
    _check_series(symbol, interval)
    assert re.match(SYMBOL_PATTERN, symbol) and re.match(INTERVAL_PATTERN, interval)


@pytest.mark.parametrize(
    ("symbol", "interval", "message"),
    [
        ("BTC USDT", "1h", "invalid symbol 'BTC USDT': 1 to 40 letters, digits or _ . : / -"),
        ("", "1h", "invalid symbol '': 1 to 40 letters, digits or _ . : / -"),
        ("X" * 41, "1h", f"invalid symbol {'X' * 41!r}: 1 to 40 letters, digits or _ . : / -"),
        ("BTCUSDT", "1x", "invalid interval '1x': a count and a unit, e.g. 1m, 4h, 1d, 1M"),
        ("BTCUSDT", "h", "invalid interval 'h': a count and a unit, e.g. 1m, 4h, 1d, 1M"),
        ("BTCUSDT", "1000m", "invalid interval '1000m': a count and a unit, e.g. 1m, 4h, 1d, 1M"),
    ],
)
def test_bad_series_names_are_refused_before_any_database_work(
    capsys: pytest.CaptureFixture[str], symbol: str, interval: str, message: str
) -> None:
    assert refused(capsys, _check_series, symbol, interval) == message


@pytest.mark.parametrize(
    ("name", "value", "decimals", "text"),
    [
        ("rsi14", 55.123456, 5, "55.12"),
        ("rsi14", 100.0, 2, "100.00"),
        ("ema21", 1.0721912345, 5, "1.07219"),
        ("bb_upper", 65432.1, 2, "65,432.10"),
        ("macd_hist", -0.000123, 5, "-0.00012"),
        ("atr14", None, 2, ""),
        ("rsi14", None, 2, ""),
    ],
)
def test_indicators_print_in_their_units(
    name: str, value: float | None, decimals: int, text: str
) -> None:
    assert _indicator(name, value, decimals) == text
