"""FRED series observations (``GET /fred/series/observations``): the "fred" macro source."""

from __future__ import annotations

from typing import Any

import httpx

from tickbase.errors import InvalidPayload, SourceSkipped
from tickbase.marketdata.collector import FailurePolicy, Kind, Observation, Request, get_json
from tickbase.marketdata.sources.checks import check_order
from tickbase.marketdata.sources.wire import (
    HttpSource,
    expect_object,
    json_kind,
    parse_field,
    parse_number,
    parse_rows,
    parse_time,
    series_request,
)

__all__ = ["FredObservations"]


def _fred_value(value: Any) -> float | None:
    if value == ".":
        return None  # FRED's missing value; cleaning fills it
    return parse_number(value)


class FredObservations(HttpSource):
    """FRED series observations (``GET /fred/series/observations``); needs an API key.

    The wire format is ``{"observations": [{"date": "2024-01-02", "value": "3.95", ...}]}``,
    asked newest first; FRED's missing value ``"."`` becomes ``value=None``. The series
    is the FRED series id. Without an API key the source is skipped, no request made.
    """

    name = "fred"
    kind: Kind = "macro"
    schedule = "0 3 * * *"
    rate_limit = "120/m"

    def __init__(
        self,
        api_key: str | None,
        base_url: str = "https://api.stlouisfed.org",
        *,
        policy: FailurePolicy | None = None,
    ) -> None:
        super().__init__(base_url, policy=policy)
        self._api_key = api_key

    async def collect(self, client: httpx.AsyncClient, request: Request) -> Any:
        """The raw observations document for ``request`` (a :class:`SeriesRequest`)."""
        wanted = series_request(self.name, request)
        if not self._api_key:
            raise SourceSkipped("fred: no API key (set TICKBASE_FRED_API_KEY); skipped")
        params = {
            "series_id": wanted.series,
            "api_key": self._api_key,
            "file_type": "json",
            "sort_order": "desc",
            "limit": wanted.limit,
        }
        url = f"{self.base_url}/fred/series/observations"
        return await get_json(
            client, self.name, url, params=params, timeout=self.policy.request_timeout
        )

    def validate(self, raw: Any, request: Request) -> list[Observation]:
        """Observations oldest first; :class:`InvalidPayload` refuses the document whole."""
        wanted = series_request(self.name, request)
        document = expect_object(self.name, raw, "an observations document (an object)")
        if "error_message" in document:
            raise InvalidPayload(
                f"{self.name}: the API reported an error: {document['error_message']!r}"
            )
        rows = document.get("observations")
        if not isinstance(rows, list):
            raise InvalidPayload(f"{self.name}: 'observations' is {json_kind(rows)}, not an array")

        def parse(row: Any) -> Observation:
            if not isinstance(row, dict):
                raise ValueError(f"is {json_kind(row)}, not an object")
            when = parse_field("date", row.get("date"), lambda v: parse_time(v, "date"))
            return Observation(
                wanted.series, when, parse_field("value", row.get("value"), _fred_value)
            )

        observations = parse_rows(self.name, rows, parse)
        newest_first = check_order(self.name, [o.observed_at for o in observations])
        return observations[::-1] if newest_first else observations
