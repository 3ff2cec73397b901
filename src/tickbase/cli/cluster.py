"""``tickbase stats`` and ``tickbase metrics``: the cluster's figures."""

from __future__ import annotations

from typing import Any

import typer

from tickbase.cli.common import DatabaseUrlOption, JsonOption, run
from tickbase.cli.render import console, print_json, table


def _url(database_url: str | None) -> str:
    """The database URL, with the schema migrated as needed (the server is not started)."""
    from tickbase.app import App

    async def prepare() -> str:
        app = App(database_url)
        await app.open(start_server=False)
        try:
            assert app.url is not None
            return app.url
        finally:
            await app.close()

    return run(prepare())


def register_cluster_commands(cli: typer.Typer) -> None:
    """Add ``stats`` and ``metrics`` to the root CLI."""

    @cli.command()
    def stats(database_url: str | None = DatabaseUrlOption, as_json: bool = JsonOption) -> None:
        """Tasks by queue and status, throughput, backlog, latency, nodes, leader, schedule lag."""
        from tickbase.cluster.metrics import public_stats, read_stats_at

        figures = read_stats_at(_url(database_url))
        public = public_stats(figures)
        if as_json:
            from tickbase.gateway.schemas import StatsOut

            print_json(public, StatsOut)
            return
        table(
            "tasks",
            ["queue", "status", "count"],
            [(t["queue"], t["status"], t["count"]) for t in figures["tasks"]],
        )
        if figures["no_worker_by_type"]:
            table(
                "waiting: no live worker handles their type",
                ["type", "queue", "count"],
                [(u["task_type"], u["queue"], u["count"]) for u in figures["no_worker_by_type"]],
            )
        rows: list[tuple[str, Any]] = [
            (key, public[key])
            for key in (
                "throughput_per_s",
                "finished_last_minute",
                "failed_last_hour",
                "backlog",
                "no_worker",
                "oldest_due_seconds",
                "schedule_lag_seconds",
                "nodes_alive",
                "leader",
            )
        ]
        for name in ("latency_seconds", "duration_seconds"):
            summary = public[name]
            rows.append(
                (
                    f"{name} p50 / p95 / max (n={summary['count']})",
                    f"{summary['p50']} / {summary['p95']} / {summary['max']}",
                )
            )
        table("cluster", ["figure", "value"], rows)

    @cli.command()
    def metrics(
        port: int = typer.Option(
            9108, "--port", min=1, max=65535, help="Port of the /metrics endpoint."
        ),
        host: str = typer.Option("127.0.0.1", "--host"),
        database_url: str | None = DatabaseUrlOption,
    ) -> None:
        """Serve Prometheus /metrics (no token: keep it on 127.0.0.1) until Ctrl-C.

        The figures are read over one connection, at most once a second.
        """
        import time

        from prometheus_client import CollectorRegistry, start_http_server

        from tickbase.cluster.metrics import CachedStats, ClusterCollector

        registry = CollectorRegistry()
        registry.register(
            ClusterCollector(CachedStats(_url(database_url), label="tickbase-metrics").read)
        )
        start_http_server(port, addr=host, registry=registry)
        console.print(f"serving http://{host}:{port}/metrics (Ctrl-C to stop)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return
