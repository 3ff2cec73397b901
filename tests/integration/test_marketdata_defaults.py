"""A kind's default is visible: the fear-and-greed 50 served while every source is down is
stored as an observation (``is_filled``, source ``default``), listed by ``tickbase
observations``, replaced by a real value for the same instant, and never replaces one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import tickbase
from tests.conftest import fast_settings
from tests.e2e.conftest import run_cli
from tests.support.fake_exchange import FakeExchange
from tests.support.gateway import free_port
from tickbase.marketdata.collector import Observation
from tickbase.marketdata.pipeline import FEAR_GREED_SERIES, MarketData, MarketSources

NOW = datetime(2026, 12, 3, 13, 20, tzinfo=UTC)
TODAY = datetime(2026, 12, 3, tzinfo=UTC)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeExchange]:
    with FakeExchange() as exchange:
        yield exchange


def market_at(app: tickbase.App, database_url: str, url: str) -> MarketData:
    """The pipeline with its sources from the settings, fear-and-greed at ``url``."""
    settings = fast_settings(database_url, fear_greed_url=url)
    return MarketData(app.pool, MarketSources.from_settings(settings), clock=lambda: NOW)


def fear_greed_rows(sql_conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return sql_conn.execute(
        "SELECT observed_at, value, is_filled, source FROM tickbase.observations "
        "WHERE series = 'fear_greed' ORDER BY observed_at"
    ).fetchall()


async def test_default_is_stored_and_listed_then_replaced_by_a_real_value(
    app: tickbase.App, database_url: str, sql_conn: psycopg.Connection[Any]
) -> None:
    closed = market_at(app, database_url, f"http://127.0.0.1:{free_port()}")
    record = await closed.collect_series("sentiment", FEAR_GREED_SERIES)
    assert (record["served_by"], record["value"], record["stored"]) == ("default", 50.0, 1)
    assert record["observed_at"] == TODAY.isoformat()
    assert fear_greed_rows(sql_conn) == [(TODAY, 50.0, True, "default")]

    listed = run_cli("observations", "fear_greed", "--json", database_url=database_url)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert [(r["value"], r["isFilled"], r["source"]) for r in rows] == [(50.0, True, "default")]
    assert datetime.fromisoformat(rows[0]["observedAt"]) == TODAY

    # still down an hour later: the same instant, one row (not one per collection)
    await closed.collect_series("sentiment", FEAR_GREED_SERIES)
    assert len(fear_greed_rows(sql_conn)) == 1

    # a real value for that instant replaces the default
    await closed.observations.upsert(
        FEAR_GREED_SERIES,
        "sentiment",
        "alternative.me",
        [Observation(FEAR_GREED_SERIES, TODAY, 23.0, "Extreme Fear")],
    )
    assert fear_greed_rows(sql_conn) == [(TODAY, 23.0, False, "alternative.me")]


async def test_a_default_never_overwrites_a_real_value(
    app: tickbase.App, database_url: str, sql_conn: psycopg.Connection[Any], fake: FakeExchange
) -> None:
    live = market_at(app, database_url, fake.url)
    record = await live.collect_series("sentiment", FEAR_GREED_SERIES, limit=30)
    assert record["served_by"] == "alternative.me"
    real = fear_greed_rows(sql_conn)
    assert real and all(source == "alternative.me" for *_, source in real)
    # the down source's default lands on a stored real reading's instant: it is kept
    newest = real[-1][0]
    down = MarketData(
        app.pool,
        MarketSources.from_settings(
            fast_settings(database_url, fear_greed_url=f"http://127.0.0.1:{free_port()}")
        ),
        clock=lambda: newest + timedelta(hours=5),
    )
    sql_conn.execute("DELETE FROM tickbase.market_cache")  # nothing cached: the default
    record = await down.collect_series("sentiment", FEAR_GREED_SERIES)
    assert (record["served_by"], record["stored"]) == ("default", 0)
    assert fear_greed_rows(sql_conn) == real
