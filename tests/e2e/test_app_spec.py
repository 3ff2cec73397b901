"""``--app module:attr`` from the current directory, and one name for a script's tasks."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import psycopg

from tests.e2e.conftest import Processes, tickbase_env
from tests.support.waiting import wait_until_sync

SCRIPT = """
import sys

from tickbase import App

app = App()


@app.task
def collect_klines(symbol: str) -> str:
    return symbol.lower()


if __name__ == "__main__":
    async def main() -> None:
        async with app:
            handle = await collect_klines.defer(symbol="ESZ5")
            print(handle.id, collect_klines.name, flush=True)

    import asyncio

    asyncio.run(main())
"""

# The console script, not ``python -m tickbase``: -m puts the cwd on sys.path
# by itself, and hides the bug.
TICKBASE = str(Path(sys.executable).parent / "tickbase")


def test_script_task_runs_under_app_from_cwd(
    tmp_path: Path, database_url: str, sql_conn: psycopg.Connection[Any], processes: Processes
) -> None:
    (tmp_path / "script.py").write_text(textwrap.dedent(SCRIPT))
    env = tickbase_env(database_url, TICKBASE_MARKET_DATA="0")
    env.pop("PYTHONPATH", None)
    produced = subprocess.run(
        [sys.executable, "script.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert produced.returncode == 0, produced.stderr
    task_id, name = produced.stdout.split()
    assert name == "script.collect_klines"  # not __main__.collect_klines

    worker = subprocess.Popen(
        [TICKBASE, "worker", "--app", "script:app"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    processes.started.append(worker)

    def status() -> tuple[str, Any]:
        row = sql_conn.execute(
            "SELECT status, result FROM tickbase.tasks WHERE id = %s", (int(task_id),)
        ).fetchone()
        assert row is not None
        return row[0], row[1]

    wait_until_sync(lambda: status()[0] == "succeeded" or worker.poll() is not None, timeout=30)
    assert worker.poll() is None, worker.stdout.read() if worker.stdout else ""
    assert status() == ("succeeded", "esz5")


def test_cli_refuses_an_unknown_type_with_did_you_mean(database_url: str) -> None:
    from tests.e2e.conftest import run_cli

    refused = run_cli("enqueue", "tickbase.ecoh", database_url=database_url)
    assert refused.returncode == 1
    assert "unknown task type 'tickbase.ecoh'" in refused.stderr
    assert "(did you mean 'tickbase.echo'?)" in refused.stderr
    accepted = run_cli("enqueue", "tickbase.echo", database_url=database_url)
    assert accepted.returncode == 0, accepted.stderr


def test_up_with_app_runs_the_market_data_pipeline_beside_the_users_tasks(
    tmp_path: Path, monkeypatch: Any
) -> None:
    from tickbase.cli.common import load_app

    (tmp_path / "md_app.py").write_text("import tickbase\napp = tickbase.App()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TICKBASE_MARKET_DATA", "1")
    up_app = load_app("md_app:app", None, market_data=True)
    assert "marketdata.collect_klines" in up_app.registry.names()
    assert up_app.extensions["marketdata"].series[0] == {
        "kind": "sentiment",
        "series": "fear_greed",
    }  # collected at start-up too, so `tickbase observations fear_greed` has a value at once
    load_app("md_app:app", None, market_data=True)  # installed once, not twice
    assert up_app.registry.names().count("marketdata.collect_klines") == 1
    monkeypatch.setenv("TICKBASE_MARKET_DATA", "0")
    (tmp_path / "md_off.py").write_text("import tickbase\napp = tickbase.App()\n")
    off = load_app("md_off:app", None, market_data=True)
    assert "marketdata.collect_klines" not in off.registry.names()
