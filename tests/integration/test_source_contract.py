"""The HTTP source contract: every live source maps the same wire failures to the same errors.

Each source is built the way :meth:`MarketSources.from_settings` builds it (base URL and
API key from the settings; a dummy key for FRED and Glassnode), pointed at the real
local :class:`~tests.support.fake_exchange.FakeExchange`, and asked once through the
:class:`~tickbase.marketdata.collector.Source` interface (``collect`` then ``validate``,
as the collector does). The failure table, the same for every source:

=====================  ================================================  ======================
failure                 wire                                              error
=====================  ================================================  ======================
rate limited            HTTP 429, ``Retry-After: 7``                      RateLimited(7.0)
rate limited, no hint   HTTP 429, no ``Retry-After``                      RateLimited(None)
timeout                 no answer within the source's request timeout     SourceTimeout
server error            HTTP 500 / HTTP 503 (HTML page)                   SourceUnavailable
not JSON                HTTP 200 with an HTML page                        InvalidPayload
wrong shape             JSON that is not the source's document            InvalidPayload
NaN                     the source's own format, one number ``NaN``       InvalidPayload
negative                the same, a negative price (price sources only)   InvalidPayload
refused                 a closed port                                     SourceUnavailable
=====================  ================================================  ======================

FRED and Glassnode serve values that may well be negative (oil futures in April 2020,
an MVRV Z-score), so "negative" is garbage only for the price sources (Binance,
CoinGecko) and the fear-and-greed index (0..100). Every case asserts the error class
(and ``retry_after`` for a 429), that the source returned nothing (the pipeline stores
only what ``validate`` returns), that the message names the source, and that the API
key is in no message.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_HOME
from tests.support.fake_exchange import FakeExchange, Fault
from tests.support.gateway import free_port
from tickbase.errors import (
    InvalidPayload,
    RateLimited,
    SourceError,
    SourceTimeout,
    SourceUnavailable,
)
from tickbase.marketdata.collector import KlineRequest, Request, SeriesRequest, Source
from tickbase.marketdata.sources.chains import MarketSources
from tickbase.settings import load_settings

NOW = datetime(2024, 6, 3, 12, 7, 30, tzinfo=UTC)
KEY = "fake-key-7f3a9c"
"""The dummy API key: the one the fake exchange accepts."""
TIMEOUT = 0.3
"""The request timeout the timeout case tightens the source to (the default is 10 s)."""
MS = 1_717_372_800_000  # 2024-06-03 00:00 UTC, in milliseconds
SECONDS = MS // 1000
NAN = math.nan


def settings_at(url: str) -> Any:
    """The settings of every source at ``url`` (as ``TICKBASE_*_URL`` would set them)."""
    return load_settings(
        home=TEST_HOME,
        binance_url=url,
        coingecko_url=f"{url}/api/v3",
        fear_greed_url=url,
        fred_url=url,
        fred_api_key=KEY,
        glassnode_url=url,
        glassnode_api_key=KEY,
    )


@dataclass(frozen=True)
class Contract:
    """One source under the contract: where it sits in the chains and how it is asked."""

    name: str
    pick: Callable[[MarketSources], Source]
    path: str
    """The path prefix its requests go to (where faults are injected)."""
    request: Request
    wrong_shape: Any
    """Valid JSON, but not this source's document."""
    nan: Any
    """This source's own format with one number NaN."""
    negative: Any | None
    """This source's own format with a negative price; ``None``: negatives are valid here."""


def binance_row(price: Any) -> list[Any]:
    return [MS, price, "2", "0.5", "1.5", "10", MS + 3_599_999, "0", 0, "0", "0", "0"]


def coingecko_candles(price: Any) -> list[list[Any]]:
    # 4 h bars from 30 min candles (days=1..2): 8 candles a bar, each stamped with its close.
    return [[MS + (i + 1) * 1_800_000, price, 2, 0.5, 1.5] for i in range(16)]


def fear_greed(value: Any) -> dict[str, Any]:
    entry = {"value": value, "value_classification": "Fear", "timestamp": str(SECONDS)}
    return {"name": "Fear and Greed Index", "data": [entry], "metadata": {"error": None}}


CONTRACTS = [
    Contract(
        "binance",
        lambda s: s.klines[0],
        "/api/v3/klines",
        KlineRequest("BTCUSDT", "1h", 5),
        wrong_shape={"code": 0, "msg": "not klines"},
        nan=[binance_row("NaN")],
        negative=[binance_row("-1.5")],
    ),
    Contract(
        "coingecko",
        lambda s: s.klines[1],
        "/api/v3/coins/",
        KlineRequest("BTCUSDT", "4h", 1),
        wrong_shape={"prices": [[MS, 1.0]]},
        nan=coingecko_candles(NAN),
        negative=coingecko_candles(-1.5),
    ),
    Contract(
        "alternative.me",
        lambda s: s.sentiment[0],
        "/fng/",
        SeriesRequest("fear_greed", 5),
        wrong_shape=[{"value": "40"}],
        nan=fear_greed(NAN),
        negative=fear_greed("-5"),
    ),
    Contract(
        "fred",
        lambda s: s.macro[0],
        "/fred/series/observations",
        SeriesRequest("DCOILWTICO", 5),
        wrong_shape={"observations": {"date": "2024-06-03", "value": "1"}},
        nan={"observations": [{"date": "2024-06-03", "value": "NaN"}]},
        negative=None,
    ),
    Contract(
        "glassnode",
        lambda s: s.onchain[0],
        "/v1/metrics/",
        SeriesRequest("market/mvrv_z_score", 5),
        wrong_shape={"t": SECONDS, "v": 1.0},
        nan=[{"t": SECONDS, "v": NAN}],
        negative=None,
    ),
]


def test_every_source_from_the_settings_is_under_the_contract() -> None:
    sources = MarketSources.from_settings(settings_at("http://127.0.0.1:1"))
    live = [*sources.klines, *sources.sentiment, *sources.macro, *sources.onchain]
    assert sorted(s.name for s in live) == sorted(c.name for c in CONTRACTS)


@dataclass(frozen=True)
class Failure:
    """One row of the table: what the wire does, and what the source must raise."""

    name: str
    faults: Callable[[Contract], list[Fault] | None]
    """The faults to inject; ``None``: the case does not apply to this source."""
    error: type[SourceError]
    retry_after: float | None = None


FAILURES = [
    Failure("429_retry_after", lambda c: [Fault.rate_limited("7")], RateLimited, 7.0),
    Failure("429_no_retry_after", lambda c: [Fault.rate_limited(None)], RateLimited, None),
    Failure("timeout", lambda c: [Fault.delay(TIMEOUT * 10)], SourceTimeout),
    Failure("http_500", lambda c: [Fault.status(500)], SourceUnavailable),
    Failure("http_503_html", lambda c: [Fault.body("<h1>down</h1>", code=503)], SourceUnavailable),
    Failure("html_200", lambda c: [Fault.body("<html>maintenance</html>")], InvalidPayload),
    Failure("wrong_shape", lambda c: [Fault.json(c.wrong_shape)], InvalidPayload),
    Failure("nan", lambda c: [Fault.json(c.nan)], InvalidPayload),
    Failure(
        "negative",
        lambda c: None if c.negative is None else [Fault.json(c.negative)],
        InvalidPayload,
    ),
]

CASES = [
    pytest.param(contract, failure, id=f"{contract.name}-{failure.name}")
    for contract in CONTRACTS
    for failure in FAILURES
    if failure.faults(contract) is not None
]


@pytest.fixture(scope="module")
def exchange() -> Iterator[FakeExchange]:
    with FakeExchange(now=NOW, api_key=KEY) as fake:
        yield fake


@pytest.fixture
def fake(exchange: FakeExchange) -> FakeExchange:
    exchange.reset()
    return exchange


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


async def fetch(source: Source, client: httpx.AsyncClient, request: Request) -> list[Any]:
    """collect → validate, as the collector does."""
    return list(source.validate(await source.collect(client, request), request))


async def refuses(
    source: Source, client: httpx.AsyncClient, request: Request, error: type[SourceError]
) -> SourceError:
    """The error ``source`` raises for ``request``: of class ``error``, nothing returned."""
    returned: list[Any] | None = None
    with pytest.raises(error) as caught:
        returned = await fetch(source, client, request)
    assert returned is None
    assert type(caught.value) is error
    assert str(caught.value).startswith(f"{source.name}: ")  # the message names the source
    assert KEY not in str(caught.value)
    return caught.value


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.name)
async def test_each_source_serves_the_fake_when_nothing_fails(
    contract: Contract, fake: FakeExchange, client: httpx.AsyncClient
) -> None:
    # The harness is sound: without a fault each source answers, so a case below fails
    # on its fault, not on a wrongly built source.
    source = contract.pick(MarketSources.from_settings(settings_at(fake.url)))
    assert await fetch(source, client, contract.request)
    assert fake.requests(contract.path)


@pytest.mark.parametrize(("contract", "failure"), CASES)
async def test_wire_failure_maps_to_its_error(
    contract: Contract, failure: Failure, fake: FakeExchange, client: httpx.AsyncClient
) -> None:
    source = contract.pick(MarketSources.from_settings(settings_at(fake.url)))
    source.policy = replace(source.policy, request_timeout=TIMEOUT)
    faults = failure.faults(contract)
    assert faults is not None
    fake.inject(contract.path, *faults)

    error = await refuses(source, client, contract.request, failure.error)

    if isinstance(error, RateLimited):
        assert error.retry_after == failure.retry_after
    assert len(fake.requests(contract.path)) == 1  # one request, the faulty one


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.name)
async def test_refused_connection_is_unavailable(
    contract: Contract, client: httpx.AsyncClient
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    source = contract.pick(MarketSources.from_settings(settings_at(closed)))

    await refuses(source, client, contract.request, SourceUnavailable)
