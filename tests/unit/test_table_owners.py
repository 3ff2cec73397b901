"""One block writes each table: only the queue's statements write ``tickbase.tasks``.

Another block that needs a task row (the gateway's requests, the scheduler's
fires, a workflow's steps and its cancellation) calls the queue's methods on
its own connection, so the defaults and the state rules have one copy.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import tickbase

PACKAGE = Path(tickbase.__file__).parent
# Migrations belong to the db block: they may move any table's rows.
STATEMENT_FILES = sorted(
    p for p in PACKAGE.rglob("*.sql") if "migrations" not in p.relative_to(PACKAGE).parts
)
WRITES_TASKS = re.compile(
    r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM|MERGE\s+INTO|TRUNCATE(\s+TABLE)?|COPY)\s+"
    r"tickbase\.tasks\b",
    re.IGNORECASE,
)
OWNERS = {"queue"}
# The dashboard benchmark loads a synthetic history into its own scratch
# database (5 million rows: the queue's one-row statements would take an hour).
SYNTHETIC_LOADERS = {"bench/dashboard_queries.sql"}


def _without_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*", "", sql)


def test_statement_files_are_found() -> None:
    blocks = {p.relative_to(PACKAGE).parts[0] for p in STATEMENT_FILES}
    assert {"queue", "scheduler", "workflows", "gateway", "cluster", "marketdata"} <= blocks


@pytest.mark.parametrize(
    "path", STATEMENT_FILES, ids=[str(p.relative_to(PACKAGE)) for p in STATEMENT_FILES]
)
def test_only_the_queue_writes_tasks(path: Path) -> None:
    block = path.relative_to(PACKAGE).parts[0]
    writes = [m.group(0) for m in WRITES_TASKS.finditer(_without_comments(path.read_text()))]
    if block in OWNERS or str(path.relative_to(PACKAGE)) in SYNTHETIC_LOADERS:
        return
    assert not writes, f"{path.relative_to(PACKAGE)} writes tickbase.tasks: {writes}"


def test_the_pattern_sees_a_write() -> None:
    # The guard itself can fail: each way of writing the table is recognised.
    for sql in (
        "INSERT INTO tickbase.tasks (task_type) VALUES ('t')",
        "update  tickbase.tasks SET status = 'failed'",
        "WITH x AS (DELETE FROM tickbase.tasks RETURNING id) SELECT 1",
    ):
        assert WRITES_TASKS.search(sql), sql
    assert not WRITES_TASKS.search("SELECT * FROM tickbase.tasks JOIN tickbase.task_events")
    assert not WRITES_TASKS.search(_without_comments("-- UPDATE tickbase.tasks\nSELECT 1"))


def test_python_sources_hold_no_task_writes() -> None:
    # SQL lives in .sql files; a write hidden in a Python string would escape the guard.
    offenders = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if "bench" not in p.relative_to(PACKAGE).parts and WRITES_TASKS.search(p.read_text())
    ]
    assert offenders == []
