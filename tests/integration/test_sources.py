"""The market-data sources against a real local HTTP server speaking their real wire formats.

The fake exchange (tests/support/fake_exchange.py) serves the bundled sample bars and the
macro CSVs of tests/data/macro; every source here talks to it over real HTTP with a real
``httpx.AsyncClient``. No database is needed. HTTP failures and API keys are in
test_source_failures.py.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.support.fake_exchange import (
    FakeExchange,
    Fault,
    fear_greed_label,
    glassnode_null,
    read_macro,
)
from tests.support.grid import grid_klines
from tickbase.marketdata.bars import load_bars
from tickbase.marketdata.collector import (
    FailurePolicy,
    InvalidPayload,
    Kline,
    KlineRequest,
    SeriesRequest,
    SourceSkipped,
)
from tickbase.marketdata.sources import (
    BinanceKlines,
    CoinGeckoOhlc,
    FearGreedIndex,
    FredObservations,
    GlassnodeMetric,
)

NOW = datetime(2024, 6, 3, 12, 7, 30, tzinfo=UTC)
"""The fake exchange's clock for replayed bars (so tests can recompute them)."""

FAST = FailurePolicy(request_timeout=5.0)
HOUR = timedelta(hours=1)


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


def coingecko(fake: FakeExchange) -> CoinGeckoOhlc:
    return CoinGeckoOhlc(base_url=f"{fake.url}/api/v3", policy=FAST)


async def fetch(source: Any, client: httpx.AsyncClient, request: Any) -> list[Any]:
    """collect → validate, as the collector does."""
    return list(source.validate(await source.collect(client, request), request))


def ohlcv(bars: list[Kline]) -> list[tuple[Any, ...]]:
    return [(k.open_time, k.open, k.high, k.low, k.close, k.volume) for k in bars]


def binance_row(kline: Kline, **changes: Any) -> list[Any]:
    """A real-format Binance row for ``kline``, with some cells replaced."""
    opens = int(kline.open_time.timestamp() * 1000)
    row: list[Any] = [opens, repr(kline.open), repr(kline.high), repr(kline.low)]
    row += [repr(kline.close), repr(kline.volume), opens + 3_599_999, "1000.5", 42]
    row += ["0.5", "600.25", "0"]
    index = {"open_time": 0, "open": 1, "high": 2, "low": 3, "close": 4, "volume": 5}
    for name, value in changes.items():
        row[index[name]] = value
    return row


def good_rows(count: int = 3) -> list[list[Any]]:
    return [binance_row(k) for k in grid_klines("eurusd-1h", "1h", count, NOW)]


ETH_1H = KlineRequest("ETHUSDT", "1h", 50)


# ---- each source parses its real format ---------------------------------------------------


async def test_binance_rows_are_the_replayed_sample_bars(
    fake: FakeExchange, client: httpx.AsyncClient
) -> None:
    bars = await fetch(binance(fake), client, ETH_1H)

    expected = grid_klines("eurusd-1h", "1h", 50, NOW)
    assert ohlcv(bars) == ohlcv(expected)
    assert [k.close_time for k in bars] == [k.close_time for k in expected]
    # ... which are the real EUR/USD hours, re-stamped on the grid:
    sample = load_bars("eurusd-1h")
    for bar in bars:
        row = sample[int(bar.open_time.timestamp()) // 3600 % len(sample)]
        assert (bar.open, bar.high, bar.low, bar.close) == (row.open, row.high, row.low, row.close)
    # Every Binance field is filled, times are UTC, the last bar has closed by NOW.
    for bar in bars:
        assert bar.open_time.tzinfo is UTC and bar.close_time is not None
        assert None not in (bar.quote_volume, bar.trade_count, bar.taker_buy_base_volume)
        assert bar.taker_buy_quote_volume is not None and isinstance(bar.trade_count, int)
    assert bars[-1].open_time + HOUR <= NOW < bars[-1].open_time + 2 * HOUR
    [(_, _, query)] = fake.requests("/api/v3/klines")
    assert query == {"symbol": "ETHUSDT", "interval": "1h", "limit": "50"}


async def test_coingecko_4h_candles_stamped_with_close_time(
    fake: FakeExchange, client: httpx.AsyncClient
) -> None:
    request = KlineRequest("BTCUSDT", "4h", 30)
    bars = await fetch(coingecko(fake), client, request)

    # 30 bars of 4 h: 7 days asked, which CoinGecko serves as 4 h candles (42 of them).
    [(_, path, query)] = fake.requests()
    assert path == "/api/v3/coins/bitcoin/ohlc"
    assert query == {"vs_currency": "usd", "days": "7"}
    expected = grid_klines("btcusd-1M", "4h", 42, NOW)[-30:]
    assert ohlcv(bars) == [(*t[:5], 0.0) for t in ohlcv(expected)]
    assert all(k.quote_volume is None and k.trade_count is None for k in bars)


async def test_coingecko_groups_30_minute_candles_into_hours(
    fake: FakeExchange, client: httpx.AsyncClient
) -> None:
    request = KlineRequest("BTCUSDT", "1h", 10)
    bars = await fetch(coingecko(fake), client, request)

    assert fake.requests()[0][2]["days"] == "1"  # 30 min candles: the size that divides 1h
    halves = grid_klines("btcusd-1M", "30m", 48, NOW)
    pairs = [halves[i : i + 2] for i in range(0, 48, 2)][-10:]
    assert [k.open_time for k in bars] == [a.open_time for a, _ in pairs]
    assert [(k.open, k.high, k.low, k.close) for k in bars] == [
        (a.open, max(a.high, b.high), min(a.low, b.low), b.close) for a, b in pairs
    ]


async def test_coingecko_skips_without_a_request(
    fake: FakeExchange, client: httpx.AsyncClient
) -> None:
    with pytest.raises(SourceSkipped, match="no coin id for symbol DOGEUSDT"):
        await coingecko(fake).collect(client, KlineRequest("DOGEUSDT", "1h", 10))
    with pytest.raises(SourceSkipped, match="divides interval 45m"):
        await coingecko(fake).collect(client, KlineRequest("BTCUSDT", "45m", 10))
    assert fake.requests() == []


async def test_fear_greed_oldest_first_with_labels(
    fake: FakeExchange, client: httpx.AsyncClient
) -> None:
    observations = await fetch(
        FearGreedIndex(fake.url, policy=FAST), client, SeriesRequest("fear_greed", 30)
    )

    vix = [(day, float(cell)) for day, cell in read_macro("vix-1d") if cell][-30:]
    assert [o.observed_at.date().isoformat() for o in observations] == [d for d, _ in vix]
    assert [o.value for o in observations] == [round(min(max(v, 0), 100)) for _, v in vix]
    assert [o.label for o in observations] == [
        fear_greed_label(int(o.value or 0)) for o in observations
    ]
    assert {o.series for o in observations} == {"fear_greed"}
    assert fake.requests("/fng/")[0][2] == {"limit": "30", "format": "json"}


async def test_fear_greed_accepts_oldest_first_too(
    fake: FakeExchange, client: httpx.AsyncClient
) -> None:
    source, request = FearGreedIndex(fake.url, policy=FAST), SeriesRequest("fear_greed", 5)
    newest_first = await source.collect(client, request)
    flipped = {**newest_first, "data": newest_first["data"][::-1]}
    assert source.validate(flipped, request) == source.validate(newest_first, request)


async def test_fred_missing_value_dot_becomes_none(
    fake: FakeExchange, client: httpx.AsyncClient
) -> None:
    source = FredObservations(api_key=fake.api_key, base_url=fake.url, policy=FAST)
    observations = await fetch(source, client, SeriesRequest("DCOILWTICO", 30))

    wti = read_macro("wti-1d")[-30:]
    assert [(o.observed_at.date().isoformat(), o.value) for o in observations] == [
        (day, float(cell) if cell else None) for day, cell in wti
    ]
    # Christmas Eve/Day and New Year's Eve/Day 2018 among them:
    assert sum(o.value is None for o in observations) == sum(not cell for _, cell in wti) >= 4
    assert {o.series for o in observations} == {"DCOILWTICO"}
    query = fake.requests()[0][2]
    assert query["sort_order"] == "desc" and query["file_type"] == "json"
    assert query["limit"] == "30"


async def test_fred_whole_history_keeps_all_290_gaps(
    fake: FakeExchange, client: httpx.AsyncClient
) -> None:
    source = FredObservations(api_key=fake.api_key, base_url=fake.url, policy=FAST)
    observations = await fetch(source, client, SeriesRequest("DCOILWTICO", 100_000))
    assert len(observations) == 8611
    assert sum(o.value is None for o in observations) == 290


async def test_glassnode_null_becomes_none(fake: FakeExchange, client: httpx.AsyncClient) -> None:
    source = GlassnodeMetric(api_key=fake.api_key, base_url=fake.url, policy=FAST)
    observations = await fetch(source, client, SeriesRequest("market/mvrv_z_score", 1000))

    cpi = read_macro("core-cpi-1M")
    assert [(o.observed_at.date().isoformat(), o.value) for o in observations] == [
        (day, None if glassnode_null(i) else float(cell)) for i, (day, cell) in enumerate(cpi)
    ]
    assert 0 < sum(o.value is None for o in observations) < 10
    assert {o.series for o in observations} == {"BTC:market/mvrv_z_score"}
    [(_, path, query)] = fake.requests()
    assert path == "/v1/metrics/market/mvrv_z_score"
    assert query == {"a": "BTC", "i": "24h", "api_key": fake.api_key}


async def test_glassnode_keeps_the_last_limit_points(
    fake: FakeExchange, client: httpx.AsyncClient
) -> None:
    source = GlassnodeMetric(api_key=fake.api_key, asset="ETH", base_url=fake.url, policy=FAST)
    observations = await fetch(source, client, SeriesRequest("market/mvrv_z_score", 3))
    assert [o.observed_at.date().isoformat() for o in observations] == [
        day for day, _ in read_macro("core-cpi-1M")[-3:]
    ]
    assert observations[0].series == "ETH:market/mvrv_z_score"


# ---- garbage is refused whole -------------------------------------------------------------


def _binance_garbage() -> list[Any]:
    rows = good_rows()
    bar = grid_klines("eurusd-1h", "1h", 1, NOW)[0]
    shifted = [*rows[:2], binance_row(bar, open_time=rows[1][0] + 1_800_000)]
    return [
        pytest.param(
            Fault.body("<html><body><h1>502 Bad Gateway</h1></body></html>"),
            r"answered text/html, not JSON",
            id="html-page",
        ),
        pytest.param(
            Fault.json({"code": -1121, "msg": "Invalid symbol."}),
            r"payload is an object, not an array of klines",
            id="object-not-array",
        ),
        pytest.param(
            Fault.json([rows[0], rows[1][:6]]), r"row 1: has 6 fields", id="missing-fields"
        ),
        pytest.param(
            Fault.json([rows[0], "1717400000000"]), r"row 1: is a string", id="row-not-array"
        ),
        pytest.param(
            Fault.json([binance_row(bar, close="NaN")]),
            r"row 0: close: 'NaN' is not a finite number",
            id="nan",
        ),
        pytest.param(
            Fault.json([binance_row(bar, volume="Infinity")]),
            r"row 0: volume: 'Infinity' is not a finite number",
            id="inf",
        ),
        pytest.param(
            Fault.json([binance_row(bar, close="abc")]),
            r"row 0: close: 'abc' is not a number",
            id="unparsable",
        ),
        pytest.param(
            Fault.json([rows[0], binance_row(bar, open="-1.07", low="-1.08")]),
            r"row 1: open -1.07 is not positive",
            id="negative-price",
        ),
        pytest.param(
            Fault.json([binance_row(bar, volume="-5")]),
            r"row 0: volume -5.0 is negative",
            id="negative-volume",
        ),
        pytest.param(
            Fault.json([binance_row(bar, high=repr(bar.low - 0.01))]),
            r"row 0: high .* is below low",
            id="high-below-low",
        ),
        pytest.param(
            Fault.json([binance_row(bar, high=repr(bar.open), close=repr(bar.open + 0.0001))]),
            r"row 0: high .* is below max\(open, close\)",
            id="high-below-close",
        ),
        pytest.param(
            Fault.json([binance_row(bar, low=repr(bar.close), open=repr(bar.close - 0.0001))]),
            r"row 0: low .* is above min\(open, close\)",
            id="low-above-open",
        ),
        pytest.param(
            Fault.json([rows[1], rows[0], rows[2]]), r"row 1: .*\(out of order\)", id="out-of-order"
        ),
        pytest.param(
            Fault.json([rows[0], rows[1], rows[1]]),
            r"row 2: open time .* duplicates the previous row's",
            id="duplicate-open-time",
        ),
        pytest.param(
            Fault.json(shifted), r"row 2: .*not a multiple of the interval", id="off-grid"
        ),
    ]


@pytest.mark.parametrize(("fault", "problem"), _binance_garbage())
async def test_binance_refuses_garbage_whole(
    fake: FakeExchange, client: httpx.AsyncClient, fault: Fault, problem: str
) -> None:
    fake.inject("/api/v3/klines", fault)
    source = binance(fake)
    with pytest.raises(InvalidPayload, match=rf"^binance: .*{problem}") as refused:
        await fetch(source, client, ETH_1H)
    assert refused.value.outcome == "invalid"
    # The fault was one request's: the next one is served normally.
    assert len(await fetch(source, client, ETH_1H)) == 50


async def test_flat_bar_and_zero_volume_are_valid(
    fake: FakeExchange, client: httpx.AsyncClient
) -> None:
    first, second = grid_klines("eurusd-1h", "1h", 2, NOW)
    flat = binance_row(first, open="1.1", high="1.1", low="1.1", close="1.1")
    fake.inject("/api/v3/klines", Fault.json([flat, binance_row(second, volume="0")]))

    bars = await fetch(binance(fake), client, ETH_1H)

    assert (bars[0].open, bars[0].high, bars[0].low, bars[0].close) == (1.1, 1.1, 1.1, 1.1)
    assert bars[1].volume == 0.0


async def test_month_interval_skips_the_spacing_check(
    fake: FakeExchange, client: httpx.AsyncClient
) -> None:
    bars = grid_klines("btcusd-1M", "1d", 2, NOW)
    # Calendar months: 31 then 30 days apart.
    stamps = [datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 4, 1, tzinfo=UTC)]
    rows = [
        binance_row(k, open_time=int(t.timestamp() * 1000))
        for k, t in zip(bars, stamps, strict=True)
    ]
    fake.inject("/api/v3/klines", Fault.json(rows))
    got = await fetch(binance(fake), client, KlineRequest("BTCUSDT", "1M", 2))
    assert [k.open_time for k in got] == stamps


async def test_coingecko_refuses_candles_that_do_not_divide_the_interval(
    fake: FakeExchange, client: httpx.AsyncClient
) -> None:
    # Asked for 1 h bars (days=1: 30 min candles) but answered with 4 h candles.
    start = int(datetime(2024, 6, 1, tzinfo=UTC).timestamp() * 1000)
    candles = [[start + i * 14_400_000, 10.0, 11.0, 9.0, 10.5] for i in range(6)]
    fake.inject("/api/v3/coins", Fault.json(candles))
    with pytest.raises(
        InvalidPayload,
        match=r"coingecko: candles are 4h apart, which does not divide the interval 1h",
    ):
        await fetch(coingecko(fake), client, KlineRequest("BTCUSDT", "1h", 10))


async def test_coingecko_refuses_nan_and_disorder(
    fake: FakeExchange, client: httpx.AsyncClient
) -> None:
    start = int(datetime(2024, 6, 1, tzinfo=UTC).timestamp() * 1000)
    good = [[start + i * 1_800_000, 10.0, 11.0, 9.0, 10.5] for i in range(4)]
    fake.inject(
        "/api/v3/coins",
        Fault.json([*good[:2], [good[2][0], math.nan, 11.0, 9.0, 10.5]]),  # a bare NaN token
        Fault.json([good[0], good[2], good[1]]),
        Fault.json([good[0], [good[1][0], 10.0, 11.0, -9.0, 10.5]]),
    )
    request = KlineRequest("BTCUSDT", "1h", 10)
    with pytest.raises(InvalidPayload, match=r"row 2: open: nan is not a finite number"):
        await fetch(coingecko(fake), client, request)
    with pytest.raises(InvalidPayload, match=r"row 2: .*out of order"):
        await fetch(coingecko(fake), client, request)
    with pytest.raises(InvalidPayload, match=r"row 1: low -9.0 is not positive"):
        await fetch(coingecko(fake), client, request)


def _fng(*entries: tuple[Any, str], error: str | None = None) -> dict[str, Any]:
    data = [
        {"value": value, "value_classification": "Fear", "timestamp": stamp}
        for value, stamp in entries
    ]
    return {"name": "Fear and Greed Index", "data": data, "metadata": {"error": error}}


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (
            _fng(("40", "1551243600"), ("150", "1551157200")),
            r"row 1: value '150' is outside 0\.\.100",
        ),
        (_fng(("-3", "1551157200")), r"row 0: value: '-3' is not a whole number"),
        (_fng(("40.5", "1551157200")), r"row 0: value: '40.5' is not a whole number"),
        (
            _fng(error="Limit must be an integer"),
            r"the API reported an error: 'Limit must be an integer'",
        ),
        (_fng(("40", "1551157200"), ("41", "1551157200")), r"row 1: time .* duplicates row 0's"),
        (
            _fng(("40", "1551243600"), ("41", "1551157200"), ("42", "1551330000")),
            r"row 2: .* breaks the newest-first order",
        ),
        ([{"value": "40"}], r"payload is an array, not the index document"),
        ({"data": "none"}, r"'data' is a string, not an array"),
    ],
    ids=[
        "value-150",
        "negative",
        "fraction",
        "metadata-error",
        "duplicate",
        "unordered",
        "array",
        "no-data",
    ],
)
async def test_fear_greed_refuses_garbage(
    fake: FakeExchange, client: httpx.AsyncClient, document: Any, problem: str
) -> None:
    fake.inject("/fng/", Fault.json(document))
    source = FearGreedIndex(fake.url, policy=FAST)
    with pytest.raises(InvalidPayload, match=rf"^alternative\.me: .*{problem}"):
        await fetch(source, client, SeriesRequest("fear_greed", 2))


async def test_fred_and_glassnode_refuse_garbage(
    fake: FakeExchange, client: httpx.AsyncClient
) -> None:
    fred = FredObservations(api_key=fake.api_key, base_url=fake.url, policy=FAST)
    fake.inject(
        "/fred",
        Fault.json({"observations": [{"date": "2024-01-02", "value": "NaN"}]}),
        Fault.json({"observations": [{"date": "02/01/2024", "value": "3.9"}]}),
        Fault.json({"observations": [{"date": "2024-01-02", "value": ""}]}),
    )
    for problem in ("'NaN' is not a finite number", "is not YYYY-MM-DD", "'' is not a number"):
        with pytest.raises(InvalidPayload, match=rf"^fred: row 0: .*{problem}"):
            await fetch(fred, client, SeriesRequest("DCOILWTICO", 1))

    glassnode = GlassnodeMetric(api_key=fake.api_key, base_url=fake.url, policy=FAST)
    fake.inject(
        "/v1/metrics",
        Fault.json({"t": 1, "v": 2}),
        Fault.json([{"t": 1704153600, "v": 1.0}, {"t": 1704153600, "v": 2.0}]),
        Fault.json([{"t": 1704153600}]),
    )
    request = SeriesRequest("market/mvrv_z_score", 10)
    for problem in (
        "payload is an object",
        "row 1: time .* duplicates",
        "row 0: has keys \\['t'\\]",
    ):
        with pytest.raises(InvalidPayload, match=rf"^glassnode: .*{problem}"):
            await fetch(glassnode, client, request)
