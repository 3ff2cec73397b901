"""One settings object, read from ``TICKBASE_*`` environment variables and validated once.

Every field documents its meaning, unit and default. CLI flags mirror these
variables; a flag given on the command line wins over the environment.
"""

from __future__ import annotations

from pathlib import Path

import platformdirs
from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from tickbase.errors import ConfigurationError

POLL_INTERVAL_DEFAULT = 1.0  # seconds
LEASE_SECONDS_DEFAULT = 30.0  # seconds
RESULT_MAX_BYTES_DEFAULT = 64 * 1024
SHUTDOWN_GRACE_DEFAULT = 10.0  # seconds


def default_home() -> Path:
    """The per-user data directory used when ``TICKBASE_HOME`` is not set."""
    return Path(platformdirs.user_data_dir("tickbase", appauthor=False))


class Settings(BaseSettings):
    """Runtime configuration of a tickbase process.

    Example::

        TICKBASE_POLL_INTERVAL=0.5 tickbase worker
    """

    model_config = SettingsConfigDict(env_prefix="TICKBASE_", extra="ignore", populate_by_name=True)

    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    """PostgreSQL URL. Unset: tickbase starts (or reuses) its embedded server. Env: DATABASE_URL."""

    home: Path = Field(default_factory=default_home)
    """Data directory of the embedded server and local state. Defaults to the per-user data dir."""

    poll_interval: float = Field(default=POLL_INTERVAL_DEFAULT, gt=0, le=60)
    """Seconds between the slow polls that cover lost notifications. Defaults to 1 s."""

    lease_seconds: float = Field(default=LEASE_SECONDS_DEFAULT, gt=0, le=3600)
    """How long a running task's lease lasts without a heartbeat. Defaults to 30 s.
    The worker renews leases every third of this."""

    result_max_bytes: int = Field(default=RESULT_MAX_BYTES_DEFAULT, ge=256)
    """Results larger than this (as JSON) are stored trimmed, with a marker. Defaults to 64 KiB."""

    shutdown_grace: float = Field(default=SHUTDOWN_GRACE_DEFAULT, ge=0)
    """Seconds a stopping worker lets running tasks finish before re-queueing them. Defaults to 10 s."""

    heartbeat_seconds: float = Field(default=5.0, gt=0, le=600)
    """Seconds between a node's heartbeats; silent for three of them, it is dead. Defaults to 5 s."""

    leader_lease_seconds: float = Field(default=15.0, gt=0, le=3600)
    """Time to live of the leader lease: a dead leader is replaced within it. Defaults to 15 s."""

    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=1024**3)
    """Largest HTTP request body the gateway accepts (413 beyond, the body unread). Defaults to 1 MiB."""

    max_connections: int = Field(default=10_000, ge=1, le=1_000_000)
    """Client connections (HTTP and WebSocket) one gateway process holds at once; never more than
    its file-descriptor limit less a reserve for the database. Beyond: 503 and closed. Defaults to 10,000."""

    header_timeout: float = Field(default=10.0, gt=0, le=3600)
    """Seconds a client has to send a request's headers (else 408 and closed). Defaults to 10 s."""

    max_header_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024**2)
    """Largest request line plus headers (431 beyond). Defaults to 64 KiB."""

    body_timeout: float = Field(default=30.0, gt=0, le=3600)
    """Seconds a client has to send a request's whole body (else 408). Defaults to 30 s."""

    keep_alive_timeout: float = Field(default=5.0, gt=0, le=3600)
    """Seconds an idle keep-alive HTTP connection stays open. Defaults to 5 s."""

    pool_max_size: int = Field(default=10, ge=2, le=200)
    """Most connections one process's pool opens. Defaults to 10."""

    # ---- market data (``tickbase up`` collects; see tickbase.marketdata.pipeline) ----

    market_data: bool = True
    """Whether ``tickbase up`` and the default app collect market data. Defaults to on."""

    market_symbols: str = "BTCUSDT,ETHUSDT"
    """Symbols whose K-lines are collected, comma-separated."""

    market_intervals: str = "1h,4h,1d"
    """K-line intervals collected for each symbol, comma-separated."""

    realtime: bool = True
    """Whether ``tickbase up`` runs the real-time K-line pipeline. Defaults to on."""

    realtime_intervals: str = "1m,5m,1h"
    """K-line intervals the real-time pipeline aggregates from trades, comma-separated."""

    realtime_workers: int = Field(default=2, ge=1, le=64)
    """Shard worker processes of the real-time pipeline. Defaults to 2."""

    realtime_lateness_ms: int = Field(default=2_000, ge=0)
    """How late (ms) a trade may arrive and still amend its bar; later ones are dropped.
    A bar is final this long after its close. Defaults to 2 s."""

    realtime_backfill_margin_ms: int = Field(default=3_000, ge=0)
    """After a bar a stream gap touched is final, how long (ms) the exchange is given to
    settle before its REST bar is fetched. Defaults to 3 s."""

    binance_url: str = "https://api.binance.com"
    """Base URL of the Binance spot REST API (``/api/v3/klines``)."""

    binance_ws_url: str = "wss://stream.binance.com:9443"
    """Base URL of the Binance spot WebSocket streams (``/stream?streams=...@aggTrade``)."""

    coingecko_url: str = "https://api.coingecko.com/api/v3"
    """Base URL of the CoinGecko API (the K-line fallback, ``/coins/{id}/ohlc``)."""

    fear_greed_url: str = "https://api.alternative.me"
    """Base URL of alternative.me (``/fng/``)."""

    fred_url: str = "https://api.stlouisfed.org"
    """Base URL of the FRED API (``/fred/series/observations``)."""

    fred_api_key: SecretStr | None = None
    """FRED API key; without one the FRED collection is skipped (and says so)."""

    fred_series: str = "FEDFUNDS,M2SL,DGS10"
    """FRED series collected daily at 03:00 UTC, comma-separated."""

    glassnode_url: str = "https://api.glassnode.com"
    """Base URL of the Glassnode API (``/v1/metrics/...``)."""

    glassnode_api_key: SecretStr | None = None
    """Glassnode API key; without one the on-chain collection is skipped (and says so)."""

    glassnode_metrics: str = "market/mvrv_z_score,indicators/nvt,addresses/active_count"
    """Glassnode metrics collected hourly, comma-separated."""


def load_settings(**overrides: object) -> Settings:
    """Read the environment, apply explicit overrides, and validate.

    Raises :class:`ConfigurationError` naming the key and the bad value.
    """
    clean = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**clean)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}={err.get('input')!r}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigurationError(f"invalid tickbase settings: {problems}") from None
