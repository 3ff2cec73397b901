"""Alert changes as clients see them: the HTTP API's camelCase keys.

The evaluation pass builds each change in SQL (snake_case, like the tables)
and sends it as ``NOTIFY tickbase_alerts`` and into the webhook outbox; the
keys are turned to camelCase where the change leaves tickbase (a webhook POST,
a WebSocket ``alert`` push), here.
"""

from __future__ import annotations

from typing import Any

from pydantic.alias_generators import to_camel


def public_alert(payload: dict[str, Any]) -> dict[str, Any]:
    """An alert change as clients see it (webhook bodies, WebSocket ``alert`` pushes):
    camelCase keys, like the HTTP API, in the payload and its ``detail``.

    The values are left as they are: ``detail.byTaskType`` is keyed by task
    types, which keep their names.

    Example::

        public_alert({"fired_at": "...", "detail": {"window_seconds": 3600}})
        # {"firedAt": "...", "detail": {"windowSeconds": 3600}}
    """
    out = {to_camel(key): value for key, value in payload.items()}
    detail = out.get("detail")
    if isinstance(detail, dict):
        out["detail"] = {to_camel(key): value for key, value in detail.items()}
    return out
