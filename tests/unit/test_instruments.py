"""Instrument descriptions: the known ones, and those derived for other symbols.

``describe`` reads the database only for unknown symbols; a fake pool stands in.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from tickbase.marketdata.instruments import (
    DECIMALS_SAMPLE,
    KNOWN,
    MAX_DECIMALS,
    Instrument,
    derived,
    describe,
    is_crypto_pair,
)


class _Cursor:
    def __init__(self, row: tuple[Any, ...] | None) -> None:
        self.row = row

    async def fetchone(self) -> tuple[Any, ...] | None:
        return self.row


class _Pool:
    """Answers the decimals query with ``row``; records what was asked."""

    def __init__(self, row: tuple[Any, ...] | None) -> None:
        self.row = row
        self.params: list[dict[str, Any]] = []

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[_Pool]:
        yield self

    async def execute(self, query: Any, params: dict[str, Any]) -> _Cursor:
        self.params.append(params)
        return _Cursor(self.row)


class _NoPool:
    def connection(self) -> Any:
        raise AssertionError("a known instrument needs no database")


def _describe(pool: Any, symbol: str) -> Instrument:
    return asyncio.run(describe(pool, symbol))


@pytest.mark.parametrize(
    ("symbol", "kind", "session", "zone", "pricescale", "minmov", "exchange"),
    [
        ("BTCUSDT", "crypto", "24x7", "Etc/UTC", 100, 1, "tickbase"),
        ("ETHUSDT", "crypto", "24x7", "Etc/UTC", 100, 1, "tickbase"),
        ("SPX", "index", "0930-1600:23456", "America/New_York", 100, 1, "tickbase"),
        ("REPLAY:SPX-1d", "index", "0930-1600:23456", "America/New_York", 100, 1, "tickbase"),
        ("ES", "futures", "1700-1600:23456", "America/Chicago", 100, 25, "CME"),
        ("REPLAY:ES-1m", "futures", "1700-1600:23456", "America/Chicago", 100, 25, "CME"),
        ("EURUSD", "forex", "1700-1700:23456", "America/New_York", 100_000, 1, "tickbase"),
        ("EUR/USD", "forex", "1700-1700:23456", "America/New_York", 100_000, 1, "tickbase"),
        (
            "REPLAY:EURUSD-1h",
            "forex",
            "1700-1700:23456",
            "America/New_York",
            100_000,
            1,
            "tickbase",
        ),
    ],
)
def test_known_instruments_are_described_without_the_database(
    symbol: str, kind: str, session: str, zone: str, pricescale: int, minmov: int, exchange: str
) -> None:
    instrument = _describe(_NoPool(), symbol)
    assert instrument is KNOWN[symbol]
    assert (instrument.type, instrument.session, instrument.timezone) == (kind, session, zone)
    assert (instrument.pricescale, instrument.minmov, instrument.exchange) == (
        pricescale,
        minmov,
        exchange,
    )


def test_every_known_symbol_is_tested() -> None:
    assert set(KNOWN) == {
        "BTCUSDT", "ETHUSDT", "SPX", "REPLAY:SPX-1d", "ES", "REPLAY:ES-1m",
        "EURUSD", "EUR/USD", "REPLAY:EURUSD-1h",
    }  # fmt: skip


def test_known_descriptions_name_the_instrument() -> None:
    assert KNOWN["BTCUSDT"].description == "BTC/USDT (crypto pair)"
    assert KNOWN["ES"].description.startswith("E-mini S&P 500")
    assert KNOWN["EURUSD"].description == "EUR/USD spot"


def test_the_table_cannot_be_changed() -> None:
    with pytest.raises(TypeError):
        KNOWN["X"] = KNOWN["ES"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("row", "pricescale"),
    [
        ((4,), 10_000),
        ((0,), 1),
        ((2,), 100),
        ((20,), 10**MAX_DECIMALS),
        ((None,), 100),
        (None, 100),
    ],
)
def test_an_unknown_symbols_pricescale_comes_from_its_stored_decimals(
    row: tuple[Any, ...] | None, pricescale: int
) -> None:
    pool = _Pool(row)
    instrument = _describe(pool, "SOLUSDT")
    assert instrument.pricescale == pricescale
    assert pool.params == [{"symbol": "SOLUSDT", "sample": DECIMALS_SAMPLE}]


def test_an_unknown_crypto_pair_is_crypto_around_the_clock() -> None:
    instrument = _describe(_Pool((3,)), "SOLUSDT")
    assert instrument == Instrument("crypto", "24x7", "Etc/UTC", 1000, "SOLUSDT (crypto pair)")


def test_any_other_unknown_symbol_is_a_stock_shown_around_the_clock() -> None:
    instrument = _describe(_Pool(None), "AAPL")
    assert instrument == Instrument("stock", "24x7", "Etc/UTC", 100, "AAPL")
    assert (instrument.minmov, instrument.exchange) == (1, "tickbase")


def test_lookup_is_by_exact_symbol() -> None:
    # "es" is not ES: it is derived (a stock of 2 decimals), and asks the database
    pool = _Pool(None)
    assert _describe(pool, "es").type == "stock"
    assert pool.params


@pytest.mark.parametrize(
    ("decimals", "pricescale"), [(None, 100), (-3, 1), (0, 1), (5, 100_000), (9, 10**8)]
)
def test_derived_precision_is_clamped(decimals: int | None, pricescale: int) -> None:
    assert derived("X", decimals).pricescale == pricescale


@pytest.mark.parametrize(
    ("symbol", "crypto"),
    [
        ("BTCUSDT", True),
        ("ethbtc", True),
        ("SOLFDUSD", True),
        ("ETHUSDC", True),
        ("USDT", False),  # a quote alone is no pair
        ("BTC", False),
        ("AAPL", False),
        ("EURUSD", False),
    ],
)
def test_is_crypto_pair(symbol: str, crypto: bool) -> None:
    assert is_crypto_pair(symbol) is crypto
