"""What the alert modules share: the statements of ``cluster/alerts.sql`` and jsonb decoding."""

from __future__ import annotations

import logging
from typing import Any

import orjson

from tickbase.db.sqlfile import load_queries

# The file stays beside the other cluster statements (tests and the EXPLAIN
# guard name it as cluster/alerts.sql); it is parsed once, here.
Q = load_queries("tickbase.cluster", "alerts.sql")
# One logger for the three modules: operators filter on this name.
logger = logging.getLogger("tickbase.alerts")


def decode_json(value: Any) -> dict[str, Any]:
    """A jsonb value as a dict: decoded on configured connections, text otherwise."""
    if isinstance(value, str | bytes):
        decoded: dict[str, Any] = orjson.loads(value)
        return decoded
    return dict(value)
