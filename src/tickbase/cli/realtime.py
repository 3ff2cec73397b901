"""``tickbase realtime run|replay``: the real-time K-line pipeline from the command line."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import typer

from tickbase.cli.common import (
    DatabaseUrlOption,
    JsonOption,
    configure_logging,
    run,
    stop_on_signals,
    with_app,
)
from tickbase.cli.render import console, fail, print_json, table

cli = typer.Typer(
    help="The real-time K-line pipeline: trades → shard workers → bars.", no_args_is_help=True
)

IntervalsOption = typer.Option(
    "1m,5m,1h", "--intervals", help="K-line intervals, comma-separated (fixed lengths)."
)
TradeFileArgument = typer.Argument(
    ...,
    exists=True,
    dir_okay=False,
    help="A trade file: CSV time,price,qty[,symbol], gzipped or not.",
)
WorkersOption = typer.Option(2, "--workers", min=1, max=64, help="Shard worker processes.")


def _intervals(text: str) -> tuple[str, ...]:
    from tickbase.marketdata.realtime.runner import parse_intervals

    try:
        return parse_intervals(text)
    except ValueError as exc:
        fail(str(exc))


@cli.command("replay")
def replay(
    path: Path = TradeFileArgument,
    symbol: str | None = typer.Option(
        None, "--symbol", help="The trades' symbol (needed unless the file has a symbol column)."
    ),
    intervals: str = IntervalsOption,
    workers: int = WorkersOption,
    speed: str = typer.Option(
        "max", "--speed", help="'max' (as fast as the workers take it) or a factor of real time."
    ),
    database_url: str | None = DatabaseUrlOption,
    as_json: bool = JsonOption,
) -> None:
    """Feed a trade file through the whole pipeline; exit once every final bar is stored."""
    from tickbase.marketdata.realtime.runner import parse_speed, replay_file
    from tickbase.marketdata.realtime.trade_file import check_replay_header

    chosen = _intervals(intervals)
    try:
        pace = parse_speed(speed)
        check_replay_header(path, symbol=symbol)
    except ValueError as exc:
        fail(str(exc))

    async def body(app: Any) -> Any:
        return await replay_file(
            app.pool, path, symbol=symbol, intervals=chosen, workers=workers, speed=pace
        )

    outcome = run(with_app(database_url, body))
    if as_json:
        print_json(outcome.to_dict())
        return
    counts = outcome.counts
    table(
        f"replayed {path.name} in {outcome.seconds:.1f} s",
        ["symbol", "trades", "late", "dropped late"],
        [
            (name, figures["trades"], figures["late"], figures["dropped"])
            for name, figures in counts.by_symbol.items()
        ],
    )
    console.print(
        f"{counts.trades:,} trades → {counts.bars:,} final bars stored "
        f"({', '.join(outcome.intervals)}; source replay); {counts.late:,} late, "
        f"{counts.dropped:,} dropped late"
    )


@cli.command("run")
def run_pipeline(
    symbols: str | None = typer.Option(
        None, "--symbols", help="Comma-separated symbols (default: TICKBASE_MARKET_SYMBOLS)."
    ),
    intervals: str = IntervalsOption,
    workers: int = WorkersOption,
    source: str = typer.Option(
        "auto",
        "--source",
        help="binance (the live aggTrade stream), replay (the bundled trades at real time, "
        "shifted to now) or auto (binance, else replay when no live stream answers).",
    ),
    lateness_ms: int | None = typer.Option(
        None,
        "--lateness-ms",
        min=0,
        help="How late a trade may be and still amend its bar (default: "
        "TICKBASE_REALTIME_LATENESS_MS, 2000).",
    ),
    database_url: str | None = DatabaseUrlOption,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run the pipeline until SIGINT/SIGTERM, storing every final bar."""
    from tickbase.marketdata.pipeline import split_names
    from tickbase.marketdata.realtime.runner import LiveRun, choose_source

    if source not in ("auto", "binance", "replay"):
        fail(f"invalid source {source!r}: binance, replay or auto")
    chosen = _intervals(intervals)
    configure_logging(verbose)

    async def body(app: Any) -> None:
        names = split_names(symbols or app.settings.market_symbols)
        if not names:
            fail("no symbol given: e.g. --symbols BTCUSDT,ETHUSDT")
        stop = asyncio.Event()
        stop_on_signals(stop)
        choice = await choose_source(app.settings, names, source)
        console.print(choice.said)
        live = LiveRun(
            app.pool,
            choice,
            names,
            intervals=chosen,
            workers=workers,
            binance_url=app.settings.binance_url,
            lateness_ms=app.settings.realtime_lateness_ms if lateness_ms is None else lateness_ms,
            backfill_margin_ms=app.settings.realtime_backfill_margin_ms,
        )
        await live.start()
        console.print(
            f"real-time pipeline: {', '.join(names)} ({', '.join(chosen)}) on {workers} "
            f"worker(s), bars stored as source {choice.name}; symbols shared with the other "
            f"nodes by lease (this one owns {len(live.ownership.owned)}); Ctrl-C to stop"
        )
        try:
            await stop.wait()
        finally:
            await live.stop()
        figures = live.pipeline.figures()
        console.print(
            f"stopped: {figures['trades']:,} trades, {figures['barsStored']:,} final bars stored"
        )

    run(with_app(database_url, body))
