"""``tickbase klines ...`` and ``tickbase indicators``: the market-data store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from tickbase.cli.common import DatabaseUrlOption, JsonOption, run, with_app
from tickbase.cli.render import (
    console,
    fail,
    format_number,
    format_price,
    price_decimals,
    print_json,
    table,
)
from tickbase.errors import plural

cli = typer.Typer(help="K-lines: import files, list series.", no_args_is_help=True)

SymbolOption = typer.Option(..., "--symbol", help="Symbol, e.g. BTCUSDT.")
IntervalOption = typer.Option(..., "--interval", help="Bar interval, e.g. 1m, 1h, 1d, 1M.")
FileArgument = typer.Argument(
    ..., exists=True, dir_okay=False, help="A bar CSV file, optionally gzipped (.gz)."
)
GZIP_MAGIC = b"\x1f\x8b"


def read_bar_file(path: Path) -> str:
    """The text of a bar file, gunzipped when it is gzip (by content, not by name).

    Anything that is not UTF-8 text without NUL bytes is refused in one line
    naming the file and the first offending byte: a tool fed the wrong file
    should say so, not print a decoding traceback.
    """
    import gzip
    import zlib

    try:
        data = path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")
    if data.startswith(GZIP_MAGIC):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            fail(f"{path} is not a readable gzip file ({exc})")
    nul = data.find(b"\x00")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        at = exc.start if nul < 0 else min(exc.start, nul)
        fail(f"{path} is not a text CSV file (binary content at byte {at})")
    if nul >= 0:
        fail(f"{path} is not a text CSV file (binary content at byte {nul})")
    return text


def _check_series(symbol: str, interval: str) -> None:
    import re

    from tickbase.marketdata.store import INTERVAL_PATTERN, SYMBOL_PATTERN

    if not re.match(SYMBOL_PATTERN, symbol):
        fail(f"invalid symbol {symbol!r}: 1 to 40 letters, digits or _ . : / -")
    if not re.match(INTERVAL_PATTERN, interval):
        fail(f"invalid interval {interval!r}: a count and a unit, e.g. 1m, 4h, 1d, 1M")


@cli.command("import")
def import_file(
    path: Path = FileArgument,
    symbol: str = SymbolOption,
    interval: str = IntervalOption,
    source: str = typer.Option("import", "--source", help="Where the bars came from."),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Load a bar file (open_time,open,high,low,close,volume): good rows are stored,
    bad rows reported with their line numbers."""
    from tickbase.marketdata.bars import read_bar_text
    from tickbase.marketdata.store import KlineStore

    _check_series(symbol, interval)
    bars, problems = read_bar_text(read_bar_file(path))

    async def body(app: Any) -> int:
        stored: int = await KlineStore(app.pool).upsert(source, symbol, interval, bars)
        return stored

    stored = run(with_app(database_url, body)) if bars else 0
    if as_json:
        print_json(
            {
                "stored": stored,
                "refused": len(problems),
                "problems": [{"line": line, "reason": reason} for line, reason in problems],
            }
        )
    else:
        console.print(f"{symbol} {interval} ({source}): {plural(stored, 'bar')} stored")
        for line, reason in problems:
            console.print(f"[yellow]refused[/] {path.name} line {line}: {reason}")
    if not bars and problems:
        raise typer.Exit(1)


@cli.command("list")
def list_klines(
    symbol: str = typer.Argument(..., help="Symbol, e.g. BTCUSDT."),
    interval: str = IntervalOption,
    limit: int = typer.Option(100, "--limit", min=1, max=100_000, help="The latest N bars."),
    source: str | None = typer.Option(None, "--source", help="Only this source."),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """The latest bars of a series, oldest first."""
    from tickbase.marketdata.store import KlineStore

    _check_series(symbol, interval)

    async def body(app: Any) -> list[Any]:
        found: list[Any] = await KlineStore(app.pool).latest(
            symbol, interval, limit=limit, source=source
        )
        return found

    bars = run(with_app(database_url, body))
    if as_json:
        print_json([bar.to_dict() for bar in bars])
        return
    decimals = price_decimals(price for b in bars for price in (b.open, b.high, b.low, b.close))
    table(
        f"{symbol} {interval}",
        ["open_time", "open", "high", "low", "close", "volume", "source", "anomaly"],
        [
            (
                b.open_time.isoformat(),
                *(format_price(p, decimals) for p in (b.open, b.high, b.low, b.close)),
                format_number(b.volume),
                b.source,
                "yes" if b.is_anomaly else "",
            )
            for b in bars
        ],
    )


def register_indicator_command(root: typer.Typer) -> None:
    """Add ``tickbase indicators`` and ``tickbase observations`` to the root CLI."""

    @root.command()
    def observations(
        series: str = typer.Argument(..., help="Series, e.g. fear_greed, DGS10."),
        limit: int = typer.Option(100, "--limit", min=1, max=100_000, help="The latest N."),
        database_url: str | None = DatabaseUrlOption,
        as_json: bool = JsonOption,
    ) -> None:
        """The latest values of a non-price series (sentiment, macro, on-chain)."""
        import re

        from tickbase.marketdata.store import SERIES_PATTERN, ObservationStore

        if not re.match(SERIES_PATTERN, series):
            fail(f"invalid series {series!r}: 1 to 80 letters, digits or _ . : / -")

        async def body(app: Any) -> tuple[list[Any], list[tuple[str, str]]]:
            store = ObservationStore(app.pool)
            found = await store.latest(series, limit=limit)
            return found, ([] if found else await store.series())

        found, known = run(with_app(database_url, body))
        if not found:
            fail(f"no series {series!r} stored; stored: {', '.join(n for n, _ in known) or 'none'}")
        if as_json:
            print_json([o.to_dict() for o in found])
            return
        table(
            series,
            ["observed_at", "value", "label", "source", "filled"],
            [
                (
                    o.observed_at.isoformat(),
                    o.value,
                    o.label or "",
                    o.source,
                    "yes" if o.is_filled else "",
                )
                for o in found
            ],
        )

    @root.command()
    def indicators(
        symbol: str = typer.Argument(..., help="Symbol, e.g. BTCUSDT."),
        interval: str = IntervalOption,
        limit: int = typer.Option(
            100_000, "--limit", min=1, max=1_000_000, help="Over the latest N stored bars."
        ),
        path: str = typer.Option(
            "incremental", "--path", help="incremental (ours, O(1) per bar) or batch (TA-Lib)."
        ),
        database_url: str | None = DatabaseUrlOption,
        as_json: bool = JsonOption,
    ) -> None:
        """EMA21, EMA55, RSI14, MACD(12,26,9), Bollinger(20, 2), ATR14 per stored bar
        (null while warming up)."""
        from tickbase.marketdata.indicators import NAMES, IndicatorSet, batch
        from tickbase.marketdata.store import KlineStore

        _check_series(symbol, interval)
        if path not in ("incremental", "batch"):
            fail(f"invalid --path {path!r}: use incremental or batch")

        async def body(app: Any) -> list[Any]:
            found: list[Any] = await KlineStore(app.pool).latest(symbol, interval, limit=limit)
            return found

        bars = run(with_app(database_url, body))
        if not bars:
            fail(f"no {interval} bars of {symbol} stored (see `tickbase klines import`)")
        if path == "batch":
            values = batch(bars)
        else:
            calculators = IndicatorSet()
            values = [calculators.update_bar(bar) for bar in bars]
        source = bars[-1].source  # one source per series read (replay while offline)
        rows = [{**v.row(), "source": source} for v in values]
        if as_json:
            print_json(rows)
            return
        decimals = price_decimals(p for b in bars for p in (b.open, b.high, b.low, b.close))
        table(
            f"{symbol} {interval} ({source})",
            ["open_time", *NAMES],
            [
                [row["open_time"], *(_indicator(name, row[name], decimals) for name in NAMES)]
                for row in rows[-50:]
            ],
        )


def _indicator(name: str, value: float | None, decimals: int) -> str:
    """An indicator in the units it is read in: RSI as 0-100 with 2 decimals, the
    others (prices and price differences) with the series' price precision."""
    if value is None:
        return ""
    return f"{value:.2f}" if name.startswith("rsi") else format_price(value, decimals)
