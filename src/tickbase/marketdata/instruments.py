"""What a series is: instrument type, trading session, timezone and price precision.

A chart needs to know more than the bars: whether the market shuts (a session), in
which timezone its days start, and how many decimals a price has. These are facts of
the instrument, not of the bars, so they live in a small table of the instruments
tickbase knows (the live crypto pairs and the replayed series of
:mod:`tickbase.marketdata.replay`). Any other symbol gets a description derived from
what is stored (see :func:`describe`).

Sessions use TradingView's session syntax (``HHMM-HHMM`` in the instrument's
timezone, ``:days`` with 1 = Sunday … 7 = Saturday; an overnight session belongs to
the day it ends):

- crypto trades around the clock: ``24x7`` in UTC;
- the S&P 500 index is computed during NYSE hours: ``0930-1600``, Monday to Friday,
  America/New_York;
- the E-mini S&P 500 future trades on CME Globex from 17:00 to 16:00 Chicago time
  (the hour between is the daily maintenance halt), Sunday evening to Friday
  afternoon: ``1700-1600:23456`` in America/Chicago. (Written in New York time the
  same hours are ``1800-1700``; the exchange states them in Chicago time, so do we.)
- spot forex trades 24 hours, 5 days, from Sunday 17:00 to Friday 17:00 New York time
  (the replayed EUR/USD file has its Sunday-evening bars): ``1700-1700:23456`` in
  America/New_York. A UTC ``0000-2400:23456`` would put those Sunday bars outside
  every session.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from psycopg_pool import AsyncConnectionPool

from tickbase.db.pool import AsyncConn
from tickbase.marketdata.store import Q

MAX_DECIMALS: Final = 8
"""A derived precision never goes finer than this (float noise is not precision)."""
DECIMALS_SAMPLE: Final = 500
"""How many of the newest stored closes the derived precision looks at."""
CRYPTO_QUOTES: Final = ("USDT", "USDC", "BUSD", "FDUSD", "TUSD", "BTC", "ETH")
"""Quote assets that mark a symbol as a crypto pair (``BTCUSDT``, ``ETHBTC``)."""


@dataclass(frozen=True, slots=True)
class Instrument:
    """How a chart should present a series (the UDF symbol-info fields it fills).

    ``minmov / pricescale`` is the price's tick: ES moves in quarters of a point, so
    ``minmov=25, pricescale=100`` (a 0.25 tick shown with 2 decimals).
    """

    type: str
    """TradingView's symbol type: ``crypto``, ``index``, ``futures``, ``forex``, ``stock``."""
    session: str
    timezone: str
    pricescale: int
    description: str
    minmov: int = 1
    exchange: str = "tickbase"


def _crypto(pair: str, decimals: int = 2) -> Instrument:
    return Instrument("crypto", "24x7", "Etc/UTC", 10**decimals, f"{pair} (crypto pair)")


_SPX = Instrument("index", "0930-1600:23456", "America/New_York", 100, "S&P 500 index")
_ES = Instrument(
    "futures",
    "1700-1600:23456",
    "America/Chicago",
    100,
    "E-mini S&P 500 future (CME Globex)",
    minmov=25,
    exchange="CME",
)
_EURUSD = Instrument("forex", "1700-1700:23456", "America/New_York", 100_000, "EUR/USD spot")

KNOWN: Final = MappingProxyType(
    {
        "BTCUSDT": _crypto("BTC/USDT"),
        "ETHUSDT": _crypto("ETH/USDT"),
        "SPX": _SPX,
        "REPLAY:SPX-1d": _SPX,
        "ES": _ES,
        "REPLAY:ES-1m": _ES,
        "EURUSD": _EURUSD,
        "EUR/USD": _EURUSD,
        "REPLAY:EURUSD-1h": _EURUSD,
    }
)
"""The instruments tickbase knows, by symbol (the replayed series under their own names)."""


def is_crypto_pair(symbol: str) -> bool:
    """``BTCUSDT``, ``ETHBTC``: a base asset then a known quote asset."""
    upper = symbol.upper()
    return any(upper.endswith(q) and len(upper) > len(q) for q in CRYPTO_QUOTES)


def derived(symbol: str, decimals: int | None) -> Instrument:
    """The description of a symbol not in :data:`KNOWN`, from its name and the decimals
    seen in its stored closes (``None``: nothing stored, 2 decimals assumed).

    A crypto pair trades 24x7; any other symbol's session is unknown, so it is shown
    as ``24x7`` too: a session narrower than the market's would hide stored bars, a
    wider one only shows its gaps.
    """
    places = 2 if decimals is None else max(0, min(decimals, MAX_DECIMALS))
    if is_crypto_pair(symbol):
        return Instrument("crypto", "24x7", "Etc/UTC", 10**places, f"{symbol} (crypto pair)")
    return Instrument("stock", "24x7", "Etc/UTC", 10**places, symbol)


async def describe(pool: AsyncConnectionPool[AsyncConn], symbol: str) -> Instrument:
    """The instrument of ``symbol``: the known one, else one derived from stored closes."""
    known = KNOWN.get(symbol)
    if known is not None:
        return known
    async with pool.connection() as conn:
        cursor = await conn.execute(
            Q["klines_price_decimals"], {"symbol": symbol, "sample": DECIMALS_SAMPLE}
        )
        row = await cursor.fetchone()
    return derived(symbol, None if row is None or row[0] is None else int(row[0]))
