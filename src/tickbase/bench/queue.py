"""``tickbase bench queue``: tickbase (and, with ``--peers``, its peers) on one server."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from tickbase.bench.harness import QueueAdapter, run_queue_bench
from tickbase.bench.render import print_results, results_json
from tickbase.bench.tickbase_adapter import TickbaseAdapter
from tickbase.db.pool import resolve_database_url
from tickbase.settings import load_settings


async def run_queue_command(
    *, database_url: str | None, peers: bool, as_json: bool, concurrency: int
) -> dict[str, dict[str, float]]:
    """Run the queue benchmark and print it (Rich tables, or one JSON line)."""
    settings = load_settings(database_url=database_url)
    url, _ = await asyncio.to_thread(resolve_database_url, settings, start=False)
    adapters: list[QueueAdapter] = [TickbaseAdapter(concurrency=concurrency)]
    if peers:
        from tickbase.bench.peers import peer_adapters

        adapters += peer_adapters()

    def progress(line: str) -> None:
        if not as_json:
            print(line, file=sys.stderr, flush=True)

    results: dict[str, Any] = await run_queue_bench(url, adapters, progress=progress)
    if as_json:
        print(results_json(results), flush=True)
    else:
        print_results(results)
    return results
