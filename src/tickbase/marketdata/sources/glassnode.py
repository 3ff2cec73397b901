"""One Glassnode metric (``GET /v1/metrics/{metric}``): the "glassnode" on-chain source."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from tickbase.errors import SourceSkipped
from tickbase.marketdata.collector import FailurePolicy, Kind, Observation, Request, get_json
from tickbase.marketdata.sources.checks import check_order
from tickbase.marketdata.sources.wire import (
    HttpSource,
    expect_array,
    json_kind,
    parse_field,
    parse_number,
    parse_rows,
    parse_time,
    series_request,
)

__all__ = ["GlassnodeMetric"]


def _glassnode_point(point: Any) -> tuple[datetime, float | None]:
    if not isinstance(point, dict):
        raise ValueError(f"is {json_kind(point)}, not an object")
    if "t" not in point or "v" not in point:
        raise ValueError(f"has keys {sorted(point)}, a point needs 't' and 'v'")
    when = parse_field("t", point["t"], lambda v: parse_time(v, "s"))
    value = None if point["v"] is None else parse_field("v", point["v"], parse_number)
    return when, value


class GlassnodeMetric(HttpSource):
    """One Glassnode metric of one asset (``GET /v1/metrics/{metric}``); needs an API key.

    ``SeriesRequest.series`` is the metric path (``"market/mvrv_z_score"``); the
    observations' series is ``"<asset>:<metric>"``. The wire format is ``[{"t": unix
    seconds, "v": number or null}, ...]`` oldest first; ``null`` becomes ``value=None``.
    Daily resolution (``i=24h``). Without an API key the source is skipped, no request made.
    """

    name = "glassnode"
    kind: Kind = "onchain"
    schedule = "0 * * * *"
    rate_limit = "10/m"

    def __init__(
        self,
        api_key: str | None,
        asset: str = "BTC",
        base_url: str = "https://api.glassnode.com",
        *,
        policy: FailurePolicy | None = None,
    ) -> None:
        super().__init__(base_url, policy=policy)
        self._api_key = api_key
        self.asset = asset

    async def collect(self, client: httpx.AsyncClient, request: Request) -> Any:
        """The raw point array of the metric ``request.series``."""
        wanted = series_request(self.name, request)
        if not self._api_key:
            raise SourceSkipped("glassnode: no API key (set TICKBASE_GLASSNODE_API_KEY); skipped")
        url = f"{self.base_url}/v1/metrics/{wanted.series.strip('/')}"
        params = {"a": self.asset, "i": "24h", "api_key": self._api_key}
        return await get_json(
            client, self.name, url, params=params, timeout=self.policy.request_timeout
        )

    def validate(self, raw: Any, request: Request) -> list[Observation]:
        """The last ``limit`` points, oldest first; :class:`InvalidPayload` refuses the array whole."""
        wanted = series_request(self.name, request)
        points = parse_rows(self.name, expect_array(self.name, raw, "points"), _glassnode_point)
        if check_order(self.name, [when for when, _ in points]):
            points.reverse()
        series = f"{self.asset}:{wanted.series.strip('/')}"
        observations = [Observation(series, when, value) for when, value in points]
        return observations[-wanted.limit :] if wanted.limit > 0 else []
