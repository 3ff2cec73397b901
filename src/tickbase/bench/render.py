"""Presentation of queue-benchmark results: Rich tables and one-line JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping

from rich.console import Console, Group, RenderableType
from rich.table import Table

from tickbase.bench.harness import FIGURES

SUBJECT = "tickbase"
# The plain loop shows the headroom left by the database itself; it is not a queue
# product, so it never counts as the best peer.
REFERENCE_ONLY = frozenset({"plain"})

# Short on purpose: six figures plus the queue name must fit an 80-column terminal.
LABELS: dict[str, str] = {
    "enqueue_single_per_s": "single enq/s",
    "enqueue_batch_per_s": "batch enq/s",
    "drain_per_s": "drain/s",
    "latency_p50_ms": "p50 ms",
    "latency_p95_ms": "p95 ms",
    "latency_p99_ms": "p99 ms",
}

Results = Mapping[str, Mapping[str, float]]


def higher_is_better(figure: str) -> bool:
    """Throughput figures (``*_per_s``) are better high, latencies (``*_ms``) low."""
    return not figure.endswith("_ms")


def format_value(figure: str, value: float) -> str:
    """Format a figure for display: whole tasks per second, or milliseconds to 0.01."""
    return f"{value:,.2f}" if figure.endswith("_ms") else f"{value:,.0f}"


def results_table(results: Results) -> Table:
    """One row per adapter, one column per figure."""
    table = Table(title="Queue benchmark")
    table.add_column("queue", style="bold", no_wrap=True)
    for figure in FIGURES:
        table.add_column(LABELS[figure], justify="right")
    for name, figures in results.items():
        table.add_row(name, *(_cell(figures, figure) for figure in FIGURES))
    return table


def best_peers(results: Results, subject: str = SUBJECT) -> dict[str, tuple[str, float]]:
    """Return, per figure, the best peer's name and value.

    Peers are all adapters except ``subject`` and the reference-only ones. Throughput:
    the highest value; latency: the lowest. Figures no peer has are left out.
    """
    best: dict[str, tuple[str, float]] = {}
    for figure in FIGURES:
        candidates = [
            (name, figures[figure])
            for name, figures in results.items()
            if name != subject and name not in REFERENCE_ONLY and figure in figures
        ]
        if not candidates:
            continue
        pick = max if higher_is_better(figure) else min
        best[figure] = pick(candidates, key=lambda item: item[1])
    return best


def ratios(results: Results, subject: str = SUBJECT) -> dict[str, float]:
    """Return ``subject``'s value divided by the best peer's, per figure.

    Throughput: ``subject / max(peers)``, so above 1 is better; latency:
    ``subject / min(peers)``, so below 1 is better.
    """
    own = results.get(subject, {})
    return {
        figure: own[figure] / value
        for figure, (_name, value) in best_peers(results, subject).items()
        if figure in own and value > 0
    }


def ratio_table(results: Results, subject: str = SUBJECT) -> Table | None:
    """Table of ``subject`` against the best peer per figure, or None if nothing to compare."""
    best = best_peers(results, subject)
    ratio = ratios(results, subject)
    if subject not in results or not ratio:
        return None
    table = Table(title=f"{subject} vs best peer ({', '.join(sorted(REFERENCE_ONLY))} excluded)")
    table.add_column("figure", style="bold", no_wrap=True)
    table.add_column(subject, justify="right")
    table.add_column("best peer", no_wrap=True)
    table.add_column("peer value", justify="right")
    table.add_column("ratio", justify="right")
    for figure in FIGURES:
        if figure not in ratio:
            continue
        name, value = best[figure]
        better = ratio[figure] >= 1 if higher_is_better(figure) else ratio[figure] <= 1
        direction = "higher is better" if higher_is_better(figure) else "lower is better"
        table.add_row(
            f"{LABELS[figure]} ({direction})",
            format_value(figure, results[subject][figure]),
            name,
            format_value(figure, value),
            f"[{'green' if better else 'red'}]{ratio[figure]:.2f}x[/]",
        )
    return table


def render_results(results: Results) -> RenderableType:
    """The results table, followed by the ratio table when there is something to compare."""
    tables: list[RenderableType] = [results_table(results)]
    if len(results) > 1 and (comparison := ratio_table(results)) is not None:
        tables.append(comparison)
    return Group(*tables)


def print_results(results: Results, console: Console | None = None) -> None:
    """Print :func:`render_results` to ``console`` (stdout by default)."""
    (console or Console()).print(render_results(results))


def results_json(results: Results) -> str:
    """One line of JSON: ``{"tickbase": {...}, "pgqueuer": {...}, ...}``."""
    return json.dumps(
        {name: dict(figures) for name, figures in results.items()}, separators=(", ", ": ")
    )


def _cell(figures: Mapping[str, float], figure: str) -> str:
    return format_value(figure, figures[figure]) if figure in figures else "-"
