"""The source chains: which sources serve each kind, in fallback order, built from the settings.

Not re-exported from :mod:`tickbase.marketdata.sources`: this module needs the replay
source, and :mod:`tickbase.marketdata.replay` needs the package's kline checks, so the
package itself must not import it (import it from here, or from
:mod:`tickbase.marketdata.pipeline`). What serves when a whole chain is down (the stale
cache, then the kind's default) is :class:`~tickbase.marketdata.collector.Collector`'s
and :mod:`~tickbase.marketdata.pipeline`'s business, not this module's.
"""

from __future__ import annotations

from dataclasses import dataclass

from tickbase.marketdata.collector import Source
from tickbase.marketdata.replay import ReplayKlines
from tickbase.marketdata.sources.binance import BinanceKlines
from tickbase.marketdata.sources.coingecko import CoinGeckoOhlc
from tickbase.marketdata.sources.feargreed import FearGreedIndex
from tickbase.marketdata.sources.fred import FredObservations
from tickbase.marketdata.sources.glassnode import GlassnodeMetric
from tickbase.settings import Settings

__all__ = ["MarketSources"]


@dataclass
class MarketSources:
    """The sources of each kind, in fallback order, built from the settings."""

    klines: list[Source]
    replay: ReplayKlines
    """Serves only its own ``REPLAY:*`` series, collected while the live chain is down."""
    sentiment: list[Source]
    macro: list[Source]
    onchain: list[Source]

    @classmethod
    def from_settings(cls, settings: Settings) -> MarketSources:
        """Base URLs and API keys from ``TICKBASE_*`` (see :class:`~tickbase.settings.Settings`)."""
        fred_key = settings.fred_api_key.get_secret_value() if settings.fred_api_key else None
        glassnode_key = (
            settings.glassnode_api_key.get_secret_value() if settings.glassnode_api_key else None
        )
        return cls(
            klines=[
                BinanceKlines(base_url=settings.binance_url),
                CoinGeckoOhlc(base_url=settings.coingecko_url),
            ],
            replay=ReplayKlines(),
            sentiment=[FearGreedIndex(base_url=settings.fear_greed_url)],
            macro=[FredObservations(fred_key, base_url=settings.fred_url)],
            onchain=[GlassnodeMetric(glassnode_key, base_url=settings.glassnode_url)],
        )
