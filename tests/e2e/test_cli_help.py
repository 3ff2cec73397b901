"""Every command's ``--help`` reads as plain text with conventional metavars."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import typer

from tests.e2e.conftest import run_cli
from tickbase.cli import cli
from tickbase.cli.helptext import plain_text

# What Typer shows by itself: '<str>', '<bool>', '<int range>', '{name}' in usage.
TYPER_LABELS = re.compile(r"<(str|bool|int|float|path|int range|float range)>|\{[a-z_]+\}")


def command_paths() -> list[tuple[str, ...]]:
    root = typer.main.get_command(cli)
    paths: list[tuple[str, ...]] = [()]

    def walk(command: object, prefix: tuple[str, ...]) -> None:
        for name, sub in getattr(command, "commands", {}).items():
            paths.append((*prefix, name))
            walk(sub, (*prefix, name))

    walk(root, ())
    return paths


def test_every_help_is_plain_text_with_metavars() -> None:
    paths = command_paths()
    assert len(paths) > 40
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda path: (path, run_cli(*path, "--help")), paths))
    for path, done in results:
        assert done.returncode == 0, (path, done.stderr)
        assert "``" not in done.stdout, (path, done.stdout)
        assert not re.search(r":[a-z]+:`", done.stdout), (path, done.stdout)
        assert not TYPER_LABELS.search(done.stdout), (path, done.stdout)
    enqueue = dict(results)[("enqueue",)].stdout
    assert "Usage: tickbase enqueue [OPTIONS] TASK_TYPE" in enqueue
    assert re.search(r"--database-url\s+URL", enqueue)
    assert re.search(r"--priority\s+INTEGER", enqueue)


def test_plain_text_turns_markup_into_quotes() -> None:
    assert plain_text("``tickbase db url`` and :func:`~tickbase.x`") == (
        "'tickbase db url' and 'tickbase.x'"
    )
    assert plain_text("Example::\n\n    x") == "Example:\n\n    x"
