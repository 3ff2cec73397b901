"""The concrete market-data sources: one :class:`~tickbase.marketdata.collector.Source` per wire format.

- :class:`BinanceKlines` ("binance", klines): Binance ``GET /api/v3/klines``;
- :class:`CoinGeckoOhlc` ("coingecko", klines): CoinGecko ``GET /coins/{id}/ohlc``;
- :class:`FearGreedIndex` ("alternative.me", sentiment): ``GET /fng/``;
- :class:`FredObservations` ("fred", macro): ``GET /fred/series/observations`` (API key);
- :class:`GlassnodeMetric` ("glassnode", onchain): ``GET /v1/metrics/{metric}`` (API key);

(The replay source, not live, is :mod:`tickbase.marketdata.replay`.)

Every source refuses a payload whole (:class:`InvalidPayload`, naming the source, the row
and the problem): one bad row and nothing of it is stored. The kline checks are one
function, :func:`check_klines`, shared by every kline source; times are parsed by one
function, :func:`parse_time`. API keys travel only in query strings, which
:func:`~tickbase.marketdata.collector.get_json` keeps out of every message.
"""

from tickbase.marketdata.sources.binance import BinanceKlines
from tickbase.marketdata.sources.checks import check_klines
from tickbase.marketdata.sources.coingecko import (
    COINGECKO_OHLC_DAYS,
    DEFAULT_COIN_IDS,
    CoinGeckoOhlc,
    coingecko_candle_seconds,
    coingecko_days,
)
from tickbase.marketdata.sources.feargreed import FearGreedIndex
from tickbase.marketdata.sources.fred import FredObservations
from tickbase.marketdata.sources.glassnode import GlassnodeMetric
from tickbase.marketdata.sources.wire import parse_number, parse_time

__all__ = [
    "COINGECKO_OHLC_DAYS",
    "DEFAULT_COIN_IDS",
    "BinanceKlines",
    "CoinGeckoOhlc",
    "FearGreedIndex",
    "FredObservations",
    "GlassnodeMetric",
    "check_klines",
    "coingecko_candle_seconds",
    "coingecko_days",
    "parse_number",
    "parse_time",
]
