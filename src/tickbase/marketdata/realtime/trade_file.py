"""Replay files: trades as CSV (``time,price,qty[,symbol]``), gzipped or not.

Read at numpy speed: the cells are split in one go when every row has the header's
cell count, times parsed by numpy's ISO parser with a per-cell fallback; bad rows are
counted in a :class:`~tickbase.marketdata.realtime.trades.BadInput` under their reason
and skipped; only what makes the whole file unusable (no ``time,price,qty`` header)
raises.
"""

from __future__ import annotations

import gzip
import math
import os
from datetime import datetime
from itertools import repeat
from pathlib import Path
from typing import Final

import numpy as np

from tickbase.marketdata.realtime.trades import (
    BAD_PRICE,
    BAD_QTY,
    BAD_TIME,
    MALFORMED,
    BadInput,
    Floats,
    Int64s,
    TradeBatch,
)

__all__ = ["check_replay_header", "read_replay_file"]


_GZIP_MAGIC: Final = b"\x1f\x8b"
_REQUIRED: Final = ("time", "price", "qty")


def read_replay_file(
    path: str | os.PathLike[str], *, symbol: str | None = None, bad: BadInput | None = None
) -> dict[str, TradeBatch]:
    """The trades of a replay file, one batch per symbol, in file order.

    The file is CSV with a header naming ``time,price,qty`` and optionally ``symbol`` (any
    column order), gzip-compressed or not (told by its first bytes, not its name). ``time``
    is ISO 8601 UTC (``2013-09-01T22:00:00.083Z``). Without a ``symbol`` column every trade
    is ``symbol``'s (required then). A trade's ``agg_id`` is its data row number (0-based,
    counting bad rows), so trades of one millisecond keep the file's order.

    Bad rows (wrong cell count, unparsable or zone-less time, non-positive or non-finite
    price or quantity) are counted in ``bad`` and skipped; a bad header raises
    :class:`ValueError`.
    """
    raw = Path(path).read_bytes()
    if raw[:2] == _GZIP_MAGIC:
        raw = gzip.decompress(raw)
    lines = raw.decode("utf-8").splitlines()
    source = bad or BadInput(f"replay {os.fspath(path)}")
    header = _header(path, lines[0] if lines else None, symbol)
    has_symbol = "symbol" in header
    width = len(header)
    at = {name: header.index(name) for name in header}
    columns, good = _columns(lines, width, source)
    ids = np.array(good, dtype=np.int64)
    times = _times(columns[at["time"]], source)
    price = _numbers(columns[at["price"]])
    qty = _numbers(columns[at["qty"]])
    ok = times > 0
    price_ok = ok & np.isfinite(price) & (price > 0)
    if int(ok.sum() - price_ok.sum()):
        first = int(np.flatnonzero(ok & ~price_ok)[0])
        source.record(
            BAD_PRICE, f"price {columns[at['price']][first]!r}", int(ok.sum() - price_ok.sum())
        )
    qty_ok = price_ok & np.isfinite(qty) & (qty > 0)
    if int(price_ok.sum() - qty_ok.sum()):
        first = int(np.flatnonzero(price_ok & ~qty_ok)[0])
        source.record(
            BAD_QTY, f"qty {columns[at['qty']][first]!r}", int(price_ok.sum() - qty_ok.sum())
        )
    keep = np.flatnonzero(qty_ok)
    if not has_symbol:
        assert symbol is not None
        return {symbol: TradeBatch(symbol, times[keep], price[keep], qty[keep], ids[keep])}
    names = np.array([c.strip() for c in columns[at["symbol"]]], dtype=object)[keep]
    out: dict[str, TradeBatch] = {}
    for name in dict.fromkeys(names.tolist()):
        picked = keep[names == name]
        out[str(name)] = TradeBatch(
            str(name), times[picked], price[picked], qty[picked], ids[picked]
        )
    return out


def check_replay_header(path: str | os.PathLike[str], *, symbol: str | None = None) -> None:
    """Refuse a replay file whose header :func:`read_replay_file` would refuse, reading
    only its first line (a command says so before starting anything)."""
    try:
        with open(path, "rb") as raw:
            zipped = raw.read(2) == _GZIP_MAGIC
        opener = gzip.open if zipped else open
        with opener(path, "rt", encoding="utf-8") as file:
            first = file.readline().rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"replay file {os.fspath(path)}: unreadable ({exc})") from None
    _header(path, first or None, symbol)


def _header(path: str | os.PathLike[str], first: str | None, symbol: str | None) -> list[str]:
    if first is None:
        raise ValueError(f"replay file {os.fspath(path)}: empty, expected a time,price,qty header")
    header = [h.strip() for h in first.split(",")]
    missing = [c for c in _REQUIRED if c not in header]
    if missing or len(set(header)) != len(header):
        raise ValueError(
            f"replay file {os.fspath(path)}: header {first!r} must name time, price, qty "
            "(and optionally symbol), each once"
        )
    if "symbol" not in header and not symbol:
        raise ValueError(
            f"replay file {os.fspath(path)} has no symbol column: give its symbol (--symbol)"
        )
    return header


def _columns(lines: list[str], width: int, bad: BadInput) -> tuple[list[list[str]], list[int]]:
    """The cells of the data rows, column by column, and the data row numbers kept.

    A file whose every row has ``width`` cells is split in one go (the fast path); otherwise
    row by row, and the rows with another cell count are counted ``malformed``.
    """
    body = [line for line in lines[1:] if line]
    if set(map(str.count, body, repeat(","))) <= {width - 1}:
        flat = ",".join(body).split(",")
        return [flat[c::width] for c in range(width)], list(range(len(body)))
    rows = [line.split(",") for line in body]
    good = [i for i, r in enumerate(rows) if len(r) == width]
    first = next(i for i, r in enumerate(rows) if len(r) != width)
    bad.record(
        MALFORMED,
        f"{len(rows) - len(good)} row(s) without {width} cells, first {body[first]!r}",
        len(rows) - len(good),
    )
    return [[rows[i][c] for i in good] for c in range(width)], good


def _numbers(cells: list[str]) -> Floats:
    try:
        return np.array(cells, dtype=np.float64)
    except ValueError:
        return np.array([_float(c) for c in cells], dtype=np.float64)


def _float(cell: str) -> float:
    try:
        return float(cell)
    except ValueError:
        return math.nan  # refused as a bad price / quantity


def _times(cells: list[str], bad: BadInput) -> Int64s:
    """Epoch ms per row; 0 where the time is bad (counted as ``bad_time``)."""
    stamps = [c.strip() for c in cells]
    if all(s.endswith("Z") and len(s) >= 20 and s[10] == "T" for s in stamps):
        try:
            # numpy parses ISO 8601 in C; the zone suffix is checked above.
            parsed = np.array([s[:-1] for s in stamps], dtype="datetime64[ms]")
            return parsed.astype(np.int64)
        except ValueError:
            pass
    out = np.zeros(len(stamps), dtype=np.int64)
    last_stamp, last_ms = "", 0
    bad_count, first_bad = 0, ""
    for i, stamp in enumerate(stamps):
        if stamp == last_stamp:
            out[i] = last_ms
            continue
        ms = _stamp_ms(stamp)
        if ms is None:
            bad_count += 1
            first_bad = first_bad or stamp
            continue
        out[i] = last_ms = ms
        last_stamp = stamp
    if bad_count:
        bad.record(BAD_TIME, f"time {first_bad!r} (need ISO 8601 UTC)", bad_count)
    return out


def _stamp_ms(stamp: str) -> int | None:
    try:
        at = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    offset = at.utcoffset()
    if offset is None or offset.total_seconds() != 0:
        return None
    ms = round(at.timestamp() * 1000)
    return ms if ms > 0 else None
