"""The alternative.me crypto Fear & Greed Index (``GET /fng/``): the "alternative.me" sentiment source."""

from __future__ import annotations

from typing import Any, Final

import httpx

from tickbase.errors import InvalidPayload
from tickbase.marketdata.collector import FailurePolicy, Kind, Observation, Request, get_json
from tickbase.marketdata.sources.checks import check_order
from tickbase.marketdata.sources.wire import (
    HttpSource,
    expect_object,
    json_kind,
    parse_count,
    parse_field,
    parse_rows,
    parse_time,
)

__all__ = ["FEAR_GREED_SERIES", "FearGreedIndex"]

FEAR_GREED_SERIES: Final = "fear_greed"


def _fear_greed_entry(entry: Any) -> Observation:
    if not isinstance(entry, dict):
        raise ValueError(f"is {json_kind(entry)}, not an object")
    raw_value = entry.get("value")
    value = parse_field("value", raw_value, parse_count)
    if not 0 <= value <= 100:
        raise ValueError(f"value {raw_value!r} is outside 0..100")
    label = entry.get("value_classification")
    if not isinstance(label, str) or not label:
        raise ValueError(f"value_classification {label!r} is not a non-empty string")
    when = parse_field("timestamp", entry.get("timestamp"), lambda v: parse_time(v, "s"))
    return Observation(FEAR_GREED_SERIES, when, float(value), label)


class FearGreedIndex(HttpSource):
    """The alternative.me crypto Fear & Greed Index (``GET /fng/``), series ``fear_greed``.

    The wire format is ``{"name": ..., "data": [{"value": "40", "value_classification":
    "Fear", "timestamp": "1551157200", ...}], "metadata": {"error": null}}``, newest first.
    Each value becomes an :class:`Observation` with the classification as its label.
    """

    name = "alternative.me"
    kind: Kind = "sentiment"
    schedule = "0 * * * *"
    rate_limit = "60/m"

    def __init__(
        self, base_url: str = "https://api.alternative.me", *, policy: FailurePolicy | None = None
    ) -> None:
        super().__init__(base_url, policy=policy)

    async def collect(self, client: httpx.AsyncClient, request: Request) -> Any:
        """The raw index document for the last ``request.limit`` days."""
        params = {"limit": request.limit, "format": "json"}
        return await get_json(
            client,
            self.name,
            f"{self.base_url}/fng/",
            params=params,
            timeout=self.policy.request_timeout,
        )

    def validate(self, raw: Any, request: Request) -> list[Observation]:
        """Index values oldest first; :class:`InvalidPayload` refuses the document whole."""
        document = expect_object(self.name, raw, "the index document (an object)")
        metadata = document.get("metadata")
        if isinstance(metadata, dict) and metadata.get("error") is not None:
            raise InvalidPayload(f"{self.name}: the API reported an error: {metadata['error']!r}")
        data = document.get("data")
        if not isinstance(data, list):
            raise InvalidPayload(f"{self.name}: 'data' is {json_kind(data)}, not an array")
        observations = parse_rows(self.name, data, _fear_greed_entry)
        newest_first = check_order(self.name, [o.observed_at for o in observations])
        return observations[::-1] if newest_first else observations
