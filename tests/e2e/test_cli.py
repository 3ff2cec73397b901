"""The ``tickbase`` command line, run as a user would run it."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.e2e.conftest import Processes, run_cli, start_up, tickbase_env
from tests.support.gateway import free_port
from tests.support.waiting import wait_until_sync
from tickbase.db.embedded import EmbeddedServer
from tickbase.db.urls import redact_url


def task_count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM tickbase.tasks").fetchone()
    assert row is not None
    return int(row[0])


def test_enqueue_list_show_cancel_retry(
    database_url: str, sql_conn: psycopg.Connection[Any]
) -> None:
    done = run_cli(
        "enqueue",
        "tickbase.echo",
        "--payload",
        '{"symbol": "ESZ5"}',
        "--json",
        database_url=database_url,
    )
    assert done.returncode == 0, done.stderr
    task_id = json.loads(done.stdout)["id"]

    listing = run_cli("tasks", "list", "--json", database_url=database_url)
    [row] = json.loads(listing.stdout)
    assert (
        row["id"] == task_id and row["status"] == "pending" and row["payload"] == {"symbol": "ESZ5"}
    )

    shown = json.loads(
        run_cli("tasks", "show", str(task_id), "--json", database_url=database_url).stdout
    )
    assert shown["events"] == []  # creation is the row itself; the log holds transitions

    cancelled = run_cli("tasks", "cancel", str(task_id), "--json", database_url=database_url)
    assert json.loads(cancelled.stdout) == {"id": task_id, "status": "cancelled"}
    retried = json.loads(
        run_cli("tasks", "retry", str(task_id), "--json", database_url=database_url).stdout
    )
    assert retried["newId"] != task_id
    assert task_count(sql_conn) == 2

    table = run_cli("tasks", "list", database_url=database_url)
    assert table.returncode == 0 and "tickbase.echo" in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--payload", "{not json"], "invalid payload: not valid JSON"),
        (["--payload", "[1, 2]"], "must be a JSON object"),
        (["--queue", "bad queue!"], "invalid queue name 'bad queue!'"),
        (["--priority", "-1"], "invalid priority -1"),
        (["--run-at", "next tuesday"], "invalid run_at 'next tuesday'"),
        (["--run-at", "2026-01-01T10:00:00"], "timezone-aware"),
    ],
)
def test_bad_input_is_refused_and_nothing_stored(
    database_url: str, sql_conn: psycopg.Connection[Any], args: list[str], message: str
) -> None:
    result = run_cli("enqueue", "tickbase.echo", *args, database_url=database_url)
    assert result.returncode == 1
    assert message in " ".join(result.stderr.split())
    assert task_count(sql_conn) == 0


def test_unknown_task_and_cancel_errors(database_url: str) -> None:
    missing = run_cli("tasks", "show", "424242", database_url=database_url)
    assert missing.returncode == 1 and "task 424242 does not exist" in missing.stderr
    status = run_cli("tasks", "list", "--status", "done", database_url=database_url)
    assert status.returncode == 1 and "status filter" in status.stderr


def test_db_status_and_url(database_url: str) -> None:
    status = run_cli("db", "status", "--json", database_url=database_url)
    data = json.loads(status.stdout)
    assert data["current"] is True and data["schemaVersion"] == data["codeVersion"] >= 1
    assert data["server"]["kind"] == "external"
    url = run_cli("db", "url", database_url=database_url)
    assert url.stdout.strip().splitlines()[-1] == database_url


def test_db_status_hides_passwords(database_url: str) -> None:
    result = run_cli("db", "status", "--json", database_url=database_url + " password=s3cret")
    assert "s3cret" not in result.stdout + result.stderr


def test_up_runs_a_worker_and_stops_on_sigint(database_url: str, processes: Processes) -> None:
    port = free_port()
    env = tickbase_env(database_url, TICKBASE_POLL_INTERVAL="0.2", TICKBASE_API_PORT=str(port))
    up, lines = start_up(processes, env)
    assert any(f"http://127.0.0.1:{port}/api/v1" in line for line in lines), lines
    assert not any("admin token" in line for line in lines)  # not on the user's own database

    def healthy() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        except httpx.TransportError:
            return False

    wait_until_sync(healthy, timeout=20, message="tickbase up serves the API")
    done = run_cli(
        "enqueue", "tickbase.echo", "--payload", '{"x": 1}', "--json", database_url=database_url
    )
    task_id = json.loads(done.stdout)["id"]

    def succeeded() -> bool:
        shown = run_cli("tasks", "show", str(task_id), "--json", database_url=database_url)
        return json.loads(shown.stdout)["status"] == "succeeded"

    wait_until_sync(succeeded, timeout=20, message="tickbase up ran the task")
    up.send_signal(signal.SIGINT)
    assert up.wait(timeout=20) == 0


def test_embedded_server_is_shared_and_stopped_only_by_its_starter(
    tmp_path: Path, processes: Processes
) -> None:
    home = tmp_path / "home"
    env = tickbase_env(None, TICKBASE_HOME=str(home), TICKBASE_API_PORT=str(free_port()))
    server = EmbeddedServer(home)
    try:
        started = run_cli("db", "start", env=env, timeout=120)
        assert started.returncode == 0, started.stderr
        first_pid = server.running()
        assert first_pid is not None
        # `db start` shows the URL without the password; `db url` prints the working one
        url = run_cli("db", "url", env=env).stdout.strip().splitlines()[-1]
        assert redact_url(url) == started.stdout.strip().splitlines()[-1]
        assert first_pid.password and first_pid.password not in started.stdout
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("tickbase",)
        status_text = run_cli("db", "status", "--json", env=env).stdout
        assert first_pid.password not in status_text
        status = json.loads(status_text)
        assert status["server"]["pid"] == first_pid.pid and status["server"]["running"] is True

        # `up` reuses the running server and leaves it running on exit; on the
        # embedded database's first start it prints an admin token, once
        up, first_lines = start_up(processes, env)
        assert sum("admin token" in line for line in first_lines) == 1, first_lines
        # the banner says where the data lives and where the API documents itself
        assert any(f"data: {home} (TICKBASE_HOME)" in line for line in first_lines), first_lines
        assert any(line.startswith("API docs: http://") and "/docs" in line for line in first_lines)
        assert not any(first_pid.password in line for line in first_lines)
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=30) == 0
        again = server.running()
        assert again is not None and again.pid == first_pid.pid

        stopped = run_cli("db", "stop", env=env)
        assert stopped.returncode == 0 and server.running() is None

        # `up` on a stopped home starts the server and stops it again on exit
        up, lines = start_up(processes, env)
        assert not any("admin token" in line for line in lines)  # the first start only
        assert server.running() is not None
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=30) == 0
        assert server.running() is None
    finally:
        server.stop()


def test_workflows_cli(database_url: str) -> None:
    import asyncio

    import tickbase
    from tests.conftest import fast_settings

    async def define() -> None:
        app = tickbase.App(settings=fast_settings(database_url))
        async with app:
            wf = app.workflow("eod", mode="parallel").step("a", "tickbase.echo", payload={"x": 1})
            wf.step("b", "tickbase.noop", after=["a"])
            await wf.save()

    asyncio.run(define())
    listed = json.loads(run_cli("workflows", "list", "--json", database_url=database_url).stdout)
    assert [w["name"] for w in listed] == ["eod"]
    started = json.loads(
        run_cli("workflows", "run", "eod", "--json", database_url=database_url).stdout
    )
    steps = {step["name"]: step for step in started["steps"]}  # as GET /api/v1/runs/{id}
    assert started["status"] == "running" and steps["a"]["status"] == "enqueued"
    assert steps["b"]["status"] == "waiting"
    shown = json.loads(
        run_cli("workflows", "show", "eod", "--json", database_url=database_url).stdout
    )
    assert [s["name"] for s in shown["steps"]] == ["a", "b"] and shown["runs"][0]["id"] == started[
        "id"
    ]
    runs = json.loads(
        run_cli("workflows", "runs", "eod", "--json", database_url=database_url).stdout
    )
    assert [r["id"] for r in runs] == [started["id"]]
    one = json.loads(
        run_cli(
            "workflows", "runs", "--run", str(started["id"]), "--json", database_url=database_url
        ).stdout
    )
    assert one["steps"][0]["name"] == "a" and one["steps"][0]["taskStatus"] == "pending"
    missing = run_cli("workflows", "run", "nope", database_url=database_url)
    assert missing.returncode == 1 and "no workflow with this name is stored" in missing.stderr


def test_node_roles_and_nodes_listing(database_url: str, processes: Processes) -> None:
    env = tickbase_env(database_url, TICKBASE_HEARTBEAT_SECONDS="0.2")
    bad = run_cli("node", "--roles", "worker,chef", database_url=database_url)
    assert bad.returncode == 1 and "unknown roles ['chef']" in bad.stderr
    node = processes.start("node", "--roles", "worker", "--queues", "md", env=env)

    def listed() -> list[dict[str, Any]]:
        found = json.loads(run_cli("nodes", "--json", database_url=database_url).stdout)
        return [n for n in found if n["pid"] == node.pid and n["alive"]]

    [row] = wait_until_sync(listed, timeout=20, message="the node registered")
    assert row["roles"] == ["worker"] and row["queues"] == ["md"]
    assert row["leader"] is False  # only nodes with the scheduler role lead
    leader = processes.start("node", "--roles", "worker,scheduler", env=env)

    def leading() -> list[dict[str, Any]]:
        found = json.loads(run_cli("nodes", "--json", database_url=database_url).stdout)
        return [n for n in found if n["pid"] == leader.pid and n["leader"]]

    wait_until_sync(leading, timeout=20, message="the scheduler node leads")
    table = run_cli("nodes", database_url=database_url)
    assert table.returncode == 0 and "leader" in table.stdout
    for process in (node, leader):
        process.send_signal(signal.SIGTERM)
    assert leader.wait(timeout=20) == 0
    assert node.wait(timeout=20) == 0
    assert json.loads(run_cli("nodes", "--json", database_url=database_url).stdout) == []


def test_stats_and_metrics_endpoint(database_url: str, processes: Processes) -> None:
    import socket
    import urllib.request

    for payload in ('{"a": 1}', '{"b": 2}'):
        run_cli(
            "enqueue",
            "tickbase.echo",
            "--payload",
            payload,
            "--queue",
            "md",
            database_url=database_url,
        )
    stats = json.loads(run_cli("stats", "--json", database_url=database_url).stdout)
    assert stats["tasks"] == [{"queue": "md", "status": "pending", "count": 2}]
    assert stats["backlog"] == 2 and stats["nodesAlive"] == 0 and stats["leader"] is None

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    exporter = processes.start("metrics", "--port", str(port), env=tickbase_env(database_url))

    def scrape() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                return str(response.read().decode())
        except OSError:
            return ""

    text = wait_until_sync(scrape, timeout=20, message="the metrics endpoint")
    assert 'tickbase_tasks{queue="md",status="pending"} 2.0' in text
    assert "tickbase_backlog 2.0" in text
    assert "tickbase_enqueue_to_start_seconds_bucket" in text
    # A burst of scrapes is served over the exporter's one connection.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(10) as scrapers:
        assert all("tickbase_backlog 2.0" in t for t in scrapers.map(lambda _: scrape(), range(30)))
    import psycopg

    with psycopg.connect(database_url) as conn:
        (connections,) = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE"
            " 'tickbase-metrics:%' AND datname = current_database()"
        ).fetchone() or (0,)
    assert connections == 1
    exporter.send_signal(signal.SIGINT)
    exporter.wait(timeout=10)


def test_limits_cli(database_url: str) -> None:
    done = run_cli("limits", "queue", "marketdata", "--concurrency", "2", database_url=database_url)
    assert done.returncode == 0, done.stderr
    assert "at most 2 running" in done.stdout
    bad = run_cli("limits", "queue", "marketdata", "--concurrency", "0", database_url=database_url)
    assert bad.returncode != 0 and "concurrency must be an integer >= 1, got 0" in bad.stderr
    both = run_cli(
        "limits", "queue", "marketdata", "--clear", "--concurrency", "3", database_url=database_url
    )
    assert both.returncode != 0 and "exactly one of" in both.stderr
    listing = run_cli("limits", "list", "--json", database_url=database_url)
    assert listing.returncode == 0, listing.stderr
    data = json.loads(listing.stdout)
    assert [(q["queue"], q["concurrency"], q["running"]) for q in data["queues"]] == [
        ("marketdata", 2, 0)
    ]
    cleared = run_cli("limits", "queue", "marketdata", "--clear", database_url=database_url)
    assert cleared.returncode == 0 and "limit lifted" in cleared.stdout
    listing = run_cli("limits", "list", "--json", database_url=database_url)
    assert json.loads(listing.stdout)["queues"] == []


def test_up_offline_feeds_replay_and_serves_it(database_url: str, processes: Processes) -> None:
    """No market-data source answers (as on a machine without internet): ``tickbase up``
    says so once per symbol, stores nothing under BTCUSDT and replays the real series
    under their own names (``REPLAY:EURUSD-1h`` at 1h), marked ``source = replay`` in
    the CLI, indicators included."""
    port = free_port()
    env = tickbase_env(database_url, TICKBASE_POLL_INTERVAL="0.2", TICKBASE_API_PORT=str(port))
    up, lines = start_up(processes, env)
    assert any("market data: BTCUSDT, ETHUSDT (1h, 4h, 1d)" in line for line in lines), lines

    def listed(symbol: str = "REPLAY:EURUSD-1h") -> list[dict[str, Any]]:
        shown = run_cli(
            "klines", "list", symbol, "--interval", "1h", "--json", database_url=database_url
        )
        rows: list[dict[str, Any]] = json.loads(shown.stdout) if shown.returncode == 0 else []
        return rows

    wait_until_sync(lambda: len(listed()) == 100, timeout=30, message="replayed K-lines stored")
    assert {row["source"] for row in listed()} == {"replay"}
    assert listed("BTCUSDT") == []

    with psycopg.connect(database_url, autocommit=True) as conn:

        def indicators_advanced() -> bool:
            row = conn.execute(
                "SELECT count(*) FROM tickbase.indicator_state WHERE source = 'replay'"
            ).fetchone()
            return row is not None and row[0] == 3

        wait_until_sync(indicators_advanced, timeout=30, message="indicators after the klines")

        def realtime_reported() -> bool:
            # The real-time pipeline's compact figures ride on the node heartbeat.
            row = conn.execute(
                "SELECT metrics -> 'realtime' FROM tickbase.nodes WHERE metrics ? 'realtime'"
            ).fetchone()
            return row is not None and row[0]["shards"] >= 1 and row[0]["circuits_open"] == []

        wait_until_sync(realtime_reported, timeout=30, message="the pipeline in the heartbeat")
        btc = conn.execute("SELECT count(*) FROM tickbase.klines WHERE symbol = 'BTCUSDT'")
        assert btc.fetchone() == (0,)
    computed = run_cli(
        "indicators", "REPLAY:SPX-1d", "--interval", "1d", "--json", database_url=database_url
    )
    rows = json.loads(computed.stdout)
    assert len(rows) == 100 and rows[-1]["ema55"] is not None

    up.send_signal(signal.SIGINT)
    assert up.wait(timeout=30) == 0
    assert up.stdout is not None
    rest = up.stdout.read()
    said = [line for line in [*lines, *rest.splitlines()] if "no live source answers" in line]
    assert len(said) == 2, said  # once per symbol
    assert all("replay" in line for line in said)
