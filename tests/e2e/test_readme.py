"""The README is executable: its Python quick start runs verbatim next to ``tickbase up``,
and every command its table lists answers ``--help`` and, where it has one, ``--json``.

Both read README.md itself, so the document and the tests cannot drift apart.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.e2e.conftest import REPO, Processes, run_cli, start_up, tickbase_env
from tests.support.waiting import wait_until_sync

pytestmark = pytest.mark.slow

README = (REPO / "README.md").read_text()
COMMAND_WORD = re.compile(r"^[a-z][a-z0-9-]*$")


def section(heading: str) -> str:
    """The README's text under ``## heading``, up to the next ``## ``."""
    return README.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def fenced_blocks(text: str) -> list[str]:
    """The text of every fenced block, whatever its language (fences paired in order)."""
    blocks, current = [], None
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def listed_commands() -> list[list[str]]:
    """Every command path in the README's command table, alternatives expanded.

    A cell like ``tickbase db start\\|stop\\|status`` names three commands;
    ``tickbase tokens create ...`` / ``list`` names its siblings by their last word.
    """
    commands: list[list[str]] = []
    for line in section("Command line").splitlines():
        if not line.startswith("| `"):
            continue
        cell = line.split(" | ", 1)[0]
        parent: list[str] = []
        for span in re.findall(r"`([^`]+)`", cell):
            words = span.split()
            if words[0] != "tickbase":
                words = (["tickbase"] if parent and words[0] == parent[1] else parent) + words
            base: list[str] = []
            found: list[list[str]] = []
            for index, alternative in enumerate(" ".join(words).split("\\|")):
                tokens = alternative.split()
                lead: list[str] = []
                for token in tokens:
                    if not COMMAND_WORD.match(token):
                        break
                    lead.append(token)
                if index == 0:
                    base = lead
                    found.append(base)
                elif lead:
                    found.append([*base[:-1], lead[0]])
                else:
                    break
                # After an option the alternatives are the option's values, not commands.
                if any(token[0] in "-[(" for token in tokens):
                    break
            commands += [path for path in found if path not in commands]
            parent = base[:-1] if len(base) > 2 else base
    return commands


COMMANDS = listed_commands()


def test_the_command_table_is_read_whole() -> None:
    """The parser sees the table: a command of each kind of cell is there."""
    paths = {" ".join(path) for path in COMMANDS}
    expected = {
        "tickbase up",
        "tickbase tokens list",
        "tickbase tokens revoke",
        "tickbase alerts webhook-remove",
        "tickbase schedules add",
        "tickbase schedules remove",
        "tickbase db status",
        "tickbase klines list",
        "tickbase indicators",
    }
    assert expected <= paths, expected - paths
    assert len(COMMANDS) >= 50


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p[1:]) for p in COMMANDS])
def test_every_listed_command_answers_help(path: list[str]) -> None:
    done = run_cli(*path[1:], "--help", timeout=30)
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout and "Traceback" not in done.stderr


# ---- --json, wherever a command has it ------------------------------------------------

# Benchmarks take minutes at their defaults; their --json is proven by their own
# tests (tests/e2e/test_bench_*.py) with small figures.
SLOW = {"bench"}

# Bars of a made-up symbol (real GOOG daily prices) for klines and indicators.
BARS = """open_time,open,high,low,close,volume
2004-08-19T00:00:00Z,100,104.06,95.96,100.34,22351900
2004-08-20T00:00:00Z,101.01,109.08,100.5,108.31,11428600
2004-08-23T00:00:00Z,110.75,113.48,109.05,109.4,9137200
2004-08-24T00:00:00Z,111.24,111.6,103.57,104.87,7631300
2004-08-25T00:00:00Z,104.96,108,103.88,106,4598900
"""


# Trades of a made-up symbol for `realtime replay`.
TRADES = """time,price,qty
2026-01-05T10:00:01.000Z,100,1
2026-01-05T10:00:30.500Z,101,2
2026-01-05T10:01:02.000Z,99.5,1
"""


def json_commands() -> list[list[str]]:
    """The listed commands whose help offers ``--json`` (benchmarks aside)."""
    found = []
    for path in COMMANDS:
        if path[1] in SLOW:
            continue
        if "--json" in run_cli(*path[1:], "--help", timeout=30).stdout:
            found.append(path)
    return found


def first_id(value: Any) -> int:
    """The id in a command's JSON answer (an object with ``id``)."""
    assert isinstance(value, dict) and isinstance(value.get("id"), int), value
    return int(value["id"])


def test_every_listed_command_with_json_prints_valid_json(
    database_url: str, sql_conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    import asyncio

    import tickbase
    from tests.conftest import fast_settings

    async def define_workflow() -> None:
        app = tickbase.App(settings=fast_settings(database_url))
        async with app:
            await app.workflow("readme").step("a", "tickbase.echo", payload={"x": 1}).save()

    asyncio.run(define_workflow())
    csv = tmp_path / "bars.csv"
    csv.write_text(BARS)
    trades = tmp_path / "trades.csv"
    trades.write_text(TRADES)
    definition = tmp_path / "eod.json"
    definition.write_text(
        json.dumps({"name": "readme-file", "steps": [{"name": "a", "taskType": "tickbase.echo"}]})
    )
    sql_conn.execute(
        "INSERT INTO tickbase.observations (series, observed_at, kind, source, value, label,"
        " is_filled) VALUES ('DCOILWTICO', '1986-01-02', 'macro', 'fred', 25.56, NULL, false)"
    )

    def json_of(*args: str) -> Any:
        done = run_cli(*args, "--json", database_url=database_url, timeout=60)
        assert done.returncode == 0, f"tickbase {' '.join(args)} --json: {done.stderr}"
        try:
            return json.loads(done.stdout)
        except json.JSONDecodeError as exc:
            raise AssertionError(
                f"tickbase {' '.join(args)} --json: {exc}: {done.stdout!r}"
            ) from None

    # Objects the commands below act on, made by listed commands themselves.
    token = first_id(json_of("tokens", "create", "--role", "viewer", "--name", "readme"))
    task = first_id(json_of("enqueue", "tickbase.echo", "--payload", '{"x": 1}'))
    json_of("schedules", "add", "readme-demo", "--task", "tickbase.noop", "--manual")
    rule = json_of("alerts", "rules")[0]["name"]
    args: dict[str, list[str]] = {
        "tokens create": ["--role", "viewer", "--name", "readme-2"],
        "enqueue": ["tickbase.echo", "--payload", '{"x": 2}'],
        "tasks show": [str(task)],
        "tasks cancel": [str(task)],
        "tasks retry": [str(task)],
        "alerts rule": [rule],
        "alerts webhook-add": ["http://127.0.0.1:9/hook"],
        "workflows show": ["readme"],
        "workflows create": [str(definition)],
        "db sql": ["SELECT count(*) AS tasks FROM tickbase.tasks"],
        "workflows run": ["readme"],
        "workflows runs": ["readme"],
        "schedules add": ["readme-other", "--task", "tickbase.noop", "--manual"],
        "schedules update": ["readme-demo", "--every", "60"],
        "klines import": [str(csv), "--symbol", "README", "--interval", "1d"],
        "klines list": ["README", "--interval", "1d"],
        "indicators": ["README", "--interval", "1d"],
        "observations": ["DCOILWTICO"],
        "realtime replay": [str(trades), "--symbol", "README-RT", "--intervals", "1m"],
    }
    for verb in ("show", "pause", "resume", "enable", "disable", "trigger"):
        args[f"schedules {verb}"] = ["readme-demo"]
    # Last, as it removes what the others act on.
    args["schedules remove"] = ["readme-demo"]
    commands = json_commands()
    commands.sort(key=lambda path: " ".join(path[1:]) == "schedules remove")
    assert len(commands) >= 30, commands
    for path in commands:
        name = " ".join(path[1:])
        json_of(*path[1:], *args.get(name, []))
    assert token  # the viewer token made first is listed like any other
    assert token in [t["id"] for t in json_of("tokens", "list")]


# ---- the Python quick start, verbatim --------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_the_python_quick_start_runs_verbatim_beside_tickbase_up(
    database_url: str, sql_conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """README's first Python example, saved as a script: ``tickbase up --app`` and a
    second worker run its tasks, and every one of them succeeds."""
    example = code_blocks(section("Use it from Python"), "python")[0]
    script = tmp_path / "quickstart.py"
    script.write_text(example)
    env = tickbase_env(database_url)
    procs = Processes()
    try:
        _, printed = start_up(
            procs, env, "--app", "quickstart:app", "--port", str(free_port()), cwd=tmp_path
        )
        assert "press Ctrl-C" in printed[-1], "tickbase up exited first:\n" + "".join(printed)
        procs.start(
            *("worker", "--app", "quickstart:app", "--queues", "marketdata"), env=env, cwd=tmp_path
        )
        done = subprocess.run(
            [sys.executable, "quickstart.py"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        import ast

        printed_result = ast.literal_eval(done.stdout.strip().splitlines()[-1])
        assert printed_result == {"symbol": "BTCUSDT", "bars": 100}

        def statuses() -> list[tuple[str, str]]:
            return sql_conn.execute(
                "SELECT payload->>'symbol', status FROM tickbase.tasks"
                " WHERE task_type = 'quickstart.collect_klines' ORDER BY id"
            ).fetchall()

        wait_until_sync(
            lambda: [s for _, s in statuses()] == ["succeeded"] * 3,
            timeout=30,
            message="the three quick-start tasks to succeed",
        )
        assert [symbol for symbol, _ in statuses()] == ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
    finally:
        procs.cleanup()


def test_every_curl_example_runs_beside_tickbase_up(
    database_url: str, sql_conn: psycopg.Connection[Any]
) -> None:
    """Each README ``curl`` example, run by bash with ``$TOKEN`` an admin token
    (only the gateway's address is changed to the test's port), answers JSON
    that is not an error, and does what it says."""
    examples = [block for block in fenced_blocks(README) if block.startswith("curl ")]
    assert len(examples) >= 2, "the README's curl examples"
    env = tickbase_env(database_url)
    created = run_cli("tokens", "create", "--role", "admin", "--json", env=env)
    assert created.returncode == 0, created.stderr
    token = json.loads(created.stdout)["token"]
    port = free_port()
    procs = Processes()
    try:
        _, printed = start_up(procs, env, "--port", str(port))
        assert "press Ctrl-C" in printed[-1], "tickbase up exited first:\n" + "".join(printed)

        def listening() -> bool:
            with socket.socket() as probe:
                return probe.connect_ex(("127.0.0.1", port)) == 0

        wait_until_sync(listening, timeout=15, message="the gateway listening")
        for example in examples:
            command = example.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
            done = subprocess.run(
                ["bash", "-c", command],
                env={**env, "TOKEN": token},
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert done.returncode == 0, (example, done.stderr)
            answer = json.loads(done.stdout)
            assert list(answer) != ["error"], (example, answer)  # not the error shape
    finally:
        procs.cleanup()
    # The submit example made its task; the bulk example was a dry run and changed nothing.
    assert sql_conn.execute(
        "SELECT count(*) FROM tickbase.tasks WHERE task_type = 'tickbase.echo'"
    ).fetchone() == (1,)
    assert sql_conn.execute("SELECT count(*) FROM tickbase.task_bulk_actions").fetchone() == (0,)


def test_the_real_time_examples_run_verbatim(database_url: str) -> None:
    """The Real-time K-lines section's commands, run by bash as written: the replay
    stores the ES bars, and the listing reads the newest two back."""
    (block,) = code_blocks(section("Real-time K-lines"), "bash")
    outputs = []
    for line in block.strip().splitlines():
        done = subprocess.run(
            ["bash", "-c", line.replace("tickbase ", f"{sys.executable} -m tickbase ", 1)],
            env=tickbase_env(database_url),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, (line, done.stderr)
        outputs.append(json.loads(done.stdout))
    replayed, listed = outputs
    assert replayed["trades"] == 500_000 and replayed["bars"] == 2264 + 461 + 39
    assert [bar["openTime"] for bar in listed] == [
        "2013-09-03T18:50:00+00:00",
        "2013-09-03T18:51:00+00:00",
    ]
