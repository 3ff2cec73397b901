"""load_settings from the environment: defaults, parsing, and refusals that name the key.

(test_sqlfile_states.py covers three refused overrides.)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tickbase.errors import ConfigurationError
from tickbase.settings import (
    LEASE_SECONDS_DEFAULT,
    POLL_INTERVAL_DEFAULT,
    RESULT_MAX_BYTES_DEFAULT,
    SHUTDOWN_GRACE_DEFAULT,
    Settings,
    default_home,
    load_settings,
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.startswith("TICKBASE_") or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    return monkeypatch


def test_defaults() -> None:
    settings = load_settings()
    assert settings.database_url is None
    assert settings.home == default_home()
    assert settings.poll_interval == POLL_INTERVAL_DEFAULT == 1.0
    assert settings.lease_seconds == LEASE_SECONDS_DEFAULT == 30.0
    assert settings.result_max_bytes == RESULT_MAX_BYTES_DEFAULT == 64 * 1024
    assert settings.shutdown_grace == SHUTDOWN_GRACE_DEFAULT == 10.0
    assert settings.heartbeat_seconds == 5.0
    assert settings.leader_lease_seconds == 15.0
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.max_connections == 10_000
    assert settings.pool_max_size == 10
    assert settings.market_data is True
    assert settings.market_symbols == "BTCUSDT,ETHUSDT"
    assert settings.market_intervals == "1h,4h,1d"
    assert settings.fred_api_key is None and settings.glassnode_api_key is None


def test_the_environment_is_read_with_the_tickbase_prefix(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TICKBASE_POLL_INTERVAL", "0.25")
    clean_env.setenv("TICKBASE_RESULT_MAX_BYTES", "4096")
    clean_env.setenv("TICKBASE_HOME", "/tmp/tickbase-home")
    clean_env.setenv("TICKBASE_MARKET_SYMBOLS", "SOLUSDT")
    clean_env.setenv("DATABASE_URL", "postgresql://db/tickbase")
    clean_env.setenv("POLL_INTERVAL", "7")  # no prefix: not ours
    settings = load_settings()
    assert settings.poll_interval == 0.25
    assert settings.result_max_bytes == 4096
    assert settings.home == Path("/tmp/tickbase-home")
    assert settings.market_symbols == "SOLUSDT"
    assert settings.database_url == "postgresql://db/tickbase"


def test_overrides_win_over_the_environment_and_none_means_not_given(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("TICKBASE_POLL_INTERVAL", "2")
    clean_env.setenv("DATABASE_URL", "postgresql://env/db")
    assert load_settings(poll_interval=0.5).poll_interval == 0.5
    assert load_settings(poll_interval=None).poll_interval == 2.0
    assert load_settings(database_url="postgresql://flag/db").database_url == (
        "postgresql://flag/db"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        ("on", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
    ],
)
def test_booleans_are_read_from_the_usual_words(
    clean_env: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    clean_env.setenv("TICKBASE_MARKET_DATA", value)
    assert load_settings().market_data is expected


@pytest.mark.parametrize(
    ("variable", "value", "key", "fragment"),
    [
        ("TICKBASE_MARKET_DATA", "maybe", "market_data", "valid boolean"),
        ("TICKBASE_MARKET_DATA", "", "market_data", "valid boolean"),
        ("TICKBASE_MARKET_DATA", "2", "market_data", "valid boolean"),
        ("TICKBASE_POLL_INTERVAL", "abc", "poll_interval", "valid number"),
        ("TICKBASE_POLL_INTERVAL", "0", "poll_interval", "greater than 0"),
        ("TICKBASE_POLL_INTERVAL", "61", "poll_interval", "less than or equal to 60"),
        ("TICKBASE_POLL_INTERVAL", "nan", "poll_interval", "nan"),
        ("TICKBASE_LEASE_SECONDS", "-1", "lease_seconds", "greater than 0"),
        ("TICKBASE_RESULT_MAX_BYTES", "1e3", "result_max_bytes", "valid integer"),
        ("TICKBASE_RESULT_MAX_BYTES", "255", "result_max_bytes", "greater than or equal to 256"),
        ("TICKBASE_SHUTDOWN_GRACE", "-0.5", "shutdown_grace", "greater than or equal to 0"),
        ("TICKBASE_POOL_MAX_SIZE", "1", "pool_max_size", "greater than or equal to 2"),
        ("TICKBASE_POOL_MAX_SIZE", "201", "pool_max_size", "less than or equal to 200"),
        ("TICKBASE_MAX_BODY_BYTES", "1023", "max_body_bytes", "greater than or equal to 1024"),
        ("TICKBASE_MAX_CONNECTIONS", "0", "max_connections", "greater than or equal to 1"),
        ("TICKBASE_HEARTBEAT_SECONDS", "601", "heartbeat_seconds", "less than or equal to 600"),
        ("TICKBASE_HEADER_TIMEOUT", "ten", "header_timeout", "valid number"),
    ],
)
def test_a_bad_value_is_refused_naming_its_setting_and_the_value(
    clean_env: pytest.MonkeyPatch, variable: str, value: str, key: str, fragment: str
) -> None:
    clean_env.setenv(variable, value)
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings()
    message = str(excinfo.value)
    assert message.startswith("invalid tickbase settings: ")
    assert f"{key}={value!r}" in message
    assert fragment in message
    assert isinstance(excinfo.value, ValueError)


def test_every_bad_setting_is_named_at_once(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TICKBASE_POLL_INTERVAL", "abc")
    clean_env.setenv("TICKBASE_MARKET_DATA", "maybe")
    with pytest.raises(ConfigurationError) as excinfo:
        load_settings(lease_seconds=0)
    message = str(excinfo.value)
    for part in ("poll_interval='abc'", "market_data='maybe'", "lease_seconds=0"):
        assert part in message
    assert message.count("; ") == 2


def test_a_bad_override_is_refused_even_when_the_environment_is_good(
    clean_env: pytest.MonkeyPatch,
) -> None:
    clean_env.setenv("TICKBASE_POOL_MAX_SIZE", "5")
    with pytest.raises(ConfigurationError, match=r"pool_max_size=500"):
        load_settings(pool_max_size=500)


def test_bounds_themselves_are_accepted(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TICKBASE_POLL_INTERVAL", "60")
    clean_env.setenv("TICKBASE_RESULT_MAX_BYTES", "256")
    clean_env.setenv("TICKBASE_SHUTDOWN_GRACE", "0")
    clean_env.setenv("TICKBASE_POOL_MAX_SIZE", "200")
    settings = load_settings()
    assert (settings.poll_interval, settings.result_max_bytes) == (60.0, 256)
    assert (settings.shutdown_grace, settings.pool_max_size) == (0.0, 200)


def test_api_keys_are_secret(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TICKBASE_FRED_API_KEY", "fred-key-123")
    settings = load_settings()
    assert settings.fred_api_key is not None
    assert settings.fred_api_key.get_secret_value() == "fred-key-123"
    assert "fred-key-123" not in repr(settings) and "fred-key-123" not in str(settings)


def test_unknown_variables_are_ignored(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("TICKBASE_NO_SUCH_SETTING", "x")
    assert isinstance(load_settings(), Settings)
