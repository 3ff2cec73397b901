"""The market-data sources' failures against a real local HTTP server: HTTP errors, delays and
closed ports map to the failure kinds, and API keys are required and never leak.

The fake exchange (tests/support/fake_exchange.py) injects the faults; every source here talks
to it over real HTTP with a real ``httpx.AsyncClient``. No database is needed. The formats the
sources parse, and the garbage they refuse, are in test_sources.py.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.support.fake_exchange import FakeExchange, Fault
from tickbase.marketdata.collector import (
    FailurePolicy,
    KlineRequest,
    RateLimited,
    SeriesRequest,
    SourceError,
    SourceSkipped,
    SourceTimeout,
    SourceUnavailable,
)
from tickbase.marketdata.sources import (
    BinanceKlines,
    FearGreedIndex,
    FredObservations,
    GlassnodeMetric,
)

NOW = datetime(2024, 6, 3, 12, 7, 30, tzinfo=UTC)
"""The fake exchange's clock for replayed bars."""

FAST = FailurePolicy(request_timeout=5.0)
ETH_1H = KlineRequest("ETHUSDT", "1h", 50)


@pytest.fixture(scope="module")
def exchange() -> Iterator[FakeExchange]:
    with FakeExchange(now=NOW) as fake:
        yield fake


@pytest.fixture
def fake(exchange: FakeExchange) -> FakeExchange:
    exchange.reset()
    exchange.now = NOW
    return exchange


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as http:
        yield http


def binance(fake: FakeExchange, request_timeout: float = FAST.request_timeout) -> BinanceKlines:
    return BinanceKlines(base_url=fake.url, policy=FailurePolicy(request_timeout=request_timeout))


async def fetch(source: Any, client: httpx.AsyncClient, request: Any) -> list[Any]:
    """collect → validate, as the collector does."""
    return list(source.validate(await source.collect(client, request), request))


# ---- HTTP failures map to the failure kinds -----------------------------------------------


async def test_rate_limited_with_and_without_retry_after(
    fake: FakeExchange, client: httpx.AsyncClient
) -> None:
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    fake.inject(
        "/api/v3/klines",
        Fault.rate_limited(retry_after="1"),
        Fault.rate_limited(retry_after=None),
        Fault.rate_limited(retry_after=when),
    )
    source = binance(fake)

    with pytest.raises(RateLimited) as first:
        await source.collect(client, ETH_1H)
    assert first.value.retry_after == 1.0
    assert "HTTP 429" in first.value.reason
    with pytest.raises(RateLimited) as second:
        await source.collect(client, ETH_1H)
    assert second.value.retry_after is None
    with pytest.raises(RateLimited) as third:
        await source.collect(client, ETH_1H)
    assert third.value.retry_after is not None and 25 <= third.value.retry_after <= 30

    assert len(await fetch(source, client, ETH_1H)) == 50  # the faults are used up
    times = [t for t, _, _ in fake.requests("/api/v3/klines")]
    assert len(times) == 4 and times == sorted(times)


async def test_delay_beyond_the_timeout_is_a_timeout(
    fake: FakeExchange, client: httpx.AsyncClient
) -> None:
    fake.inject("/api/v3/klines", Fault.delay(3.0))
    with pytest.raises(SourceTimeout, match=r"binance: no answer from /api/v3/klines within 0.2 s"):
        await binance(fake, request_timeout=0.2).collect(client, ETH_1H)


async def test_a_delayed_request_does_not_hold_up_the_others(
    fake: FakeExchange, client: httpx.AsyncClient
) -> None:
    fake.inject("/fng/", Fault.delay(1.0))
    slow = asyncio.create_task(
        fetch(FearGreedIndex(fake.url, policy=FAST), client, SeriesRequest("fear_greed", 3))
    )
    await asyncio.sleep(0.05)
    bars = await asyncio.wait_for(fetch(binance(fake), client, ETH_1H), 0.8)
    assert not slow.done() and len(bars) == 50
    assert len(await slow) == 3


async def test_server_error_and_fail_always(fake: FakeExchange, client: httpx.AsyncClient) -> None:
    source = binance(fake)
    fake.inject("/api/v3/klines", Fault.status(500, "Internal Server Error"))
    with pytest.raises(SourceUnavailable, match="binance: HTTP 500 from /api/v3/klines"):
        await source.collect(client, ETH_1H)

    fake.fail_always("/api", Fault.status(503))
    for _ in range(3):
        with pytest.raises(SourceUnavailable, match="HTTP 503"):
            await source.collect(client, ETH_1H)
    fake.reset()
    assert len(await fetch(source, client, ETH_1H)) == 50


def closed_port() -> int:
    """A port of 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_closed_port_is_unavailable(client: httpx.AsyncClient) -> None:
    source = BinanceKlines(base_url=f"http://127.0.0.1:{closed_port()}", policy=FAST)
    with pytest.raises(SourceUnavailable, match=r"binance: /api/v3/klines unreachable"):
        await source.collect(client, ETH_1H)


def shown_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions a traceback of it would print (causes, unsuppressed contexts)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None:
        chain.append(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    return chain


# ---- API keys ----------------------------------------------------------------------------


@pytest.mark.parametrize("key", [None, ""])
async def test_missing_api_key_skips_without_a_request(
    fake: FakeExchange, client: httpx.AsyncClient, key: str | None
) -> None:
    with pytest.raises(SourceSkipped) as fred:
        await FredObservations(api_key=key, base_url=fake.url).collect(
            client, SeriesRequest("DCOILWTICO")
        )
    assert fred.value.reason == "fred: no API key (set TICKBASE_FRED_API_KEY); skipped"
    with pytest.raises(SourceSkipped) as glassnode:
        await GlassnodeMetric(api_key=key, base_url=fake.url).collect(
            client, SeriesRequest("market/mvrv_z_score")
        )
    assert glassnode.value.reason == (
        "glassnode: no API key (set TICKBASE_GLASSNODE_API_KEY); skipped"
    )
    assert fake.requests() == []


async def test_api_key_never_appears_in_errors_or_logs(
    fake: FakeExchange, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = fake.api_key
    failures: list[SourceError] = []
    fred = FredObservations(api_key=key, base_url=fake.url, policy=FAST)
    glassnode = GlassnodeMetric(
        api_key=key, base_url=fake.url, policy=FailurePolicy(request_timeout=0.2)
    )
    fake.inject(
        "/fred",
        Fault.rate_limited("1"),
        Fault.status(500),
        Fault.body("<html>down</html>"),
        Fault.json({"observations": [{"date": "2024-01-02", "value": "n/a"}]}),
    )
    fake.inject("/v1/metrics", Fault.delay(2.0), Fault.json([{"t": "x", "v": 1}]))
    for _ in range(4):
        with pytest.raises(SourceError) as failed:
            await fetch(fred, client, SeriesRequest("DCOILWTICO", 5))
        failures.append(failed.value)
    for _ in range(2):
        with pytest.raises(SourceError) as failed:
            await fetch(glassnode, client, SeriesRequest("market/mvrv_z_score", 5))
        failures.append(failed.value)
    wrong = FredObservations(api_key="wrong-" + key, base_url=fake.url, policy=FAST)
    with pytest.raises(SourceUnavailable, match="HTTP 401") as refused:
        await wrong.collect(client, SeriesRequest("DCOILWTICO", 5))
    failures.append(refused.value)
    closed = GlassnodeMetric(api_key=key, base_url=f"http://127.0.0.1:{closed_port()}", policy=FAST)
    with pytest.raises(SourceUnavailable) as unreachable:
        await closed.collect(client, SeriesRequest("market/mvrv_z_score", 5))
    failures.append(unreachable.value)

    kinds = {type(f).__name__ for f in failures}
    assert kinds == {"RateLimited", "SourceUnavailable", "InvalidPayload", "SourceTimeout"}
    for failure in failures:
        assert key not in failure.reason, failure
        assert all(key not in str(exc) for exc in shown_chain(failure)), failure
    assert all(key not in record.getMessage() for record in caplog.records)
    assert any(key in str(q) for _, _, q in fake.requests())  # it did travel, in the query
