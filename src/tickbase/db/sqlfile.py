"""Load named SQL statements from ``.sql`` files beside the block that owns them.

File format (procrastinate's)::

    -- task_claim --
    -- Claim due tasks of the given queues for one worker.
    UPDATE ...;

Each block is named ``noun_verb``; the description lines that follow the name
are dropped. A file with a duplicate or empty block fails at import, not at
first use.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import LiteralString

_HEADER = re.compile(r"^-- (?P<name>[a-z0-9_]+) --$", re.MULTILINE)


def load_queries(package: str, filename: str = "queries.sql") -> dict[str, LiteralString]:
    """Return ``{name: statement}`` for every block of ``package/filename``."""
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    queries: dict[str, LiteralString] = {}
    headers = list(_HEADER.finditer(text))
    if not headers:
        raise ValueError(f"{package}/{filename} holds no named query")
    for index, header in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(text)
        body_lines = [
            line
            for line in text[header.end() : end].strip().splitlines()
            if not line.lstrip().startswith("--")
        ]
        body = "\n".join(body_lines).strip().rstrip(";").strip()
        name = header["name"]
        if not body:
            raise ValueError(f"{package}/{filename}: query {name!r} is empty")
        if name in queries:
            raise ValueError(f"{package}/{filename}: query {name!r} is defined twice")
        # The files are part of the package, never user input: safe as literal SQL.
        queries[name] = body
    return queries
