"""The market page's live K-line view in real Chromium over a real gateway (issue 17).

A :class:`RealtimePipeline` in the test's process replays a generated trade file
(ten minutes of two symbols at 20× real time, shifted to now, repeating), put in
``app.extensions["realtime"]`` as ``tickbase up`` does: the page lists its symbols and
intervals, subscribes to the ``kline`` channel and draws the candles as they form;
without a pipeline it says so.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.support.browser import chromium, tab
from tests.support.gateway import RunningGateway, gateway_test_app, running_gateway
from tests.support.realtime import GatedSource, start_warm, write_trades
from tickbase.marketdata.realtime.pipeline import RealtimePipeline
from tickbase.marketdata.realtime.replay_source import ReplaySource


@pytest.fixture
async def gateway(database_url: str) -> AsyncIterator[RunningGateway]:
    app = gateway_test_app(database_url)
    async with app, running_gateway(app, worker=False) as running:
        yield running


@pytest.fixture
async def pipeline(gateway: RunningGateway, tmp_path: Path) -> AsyncIterator[RealtimePipeline]:
    trades = write_trades(tmp_path / "trades.csv", minutes=10, per_minute=60)
    source = GatedSource(ReplaySource(trades, speed=20.0, shift_to_now=True, repeat=True))
    running = RealtimePipeline(
        source, None, intervals=("1m", "5m"), workers=1, symbols=("BTCUSDT", "ETHUSDT")
    )
    gateway.app.extensions["realtime"] = running
    try:
        await start_warm(running, source)
        yield running
    finally:
        await running.stop()
        del gateway.app.extensions["realtime"]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


async def test_the_live_chart_draws_candles_and_updates_them(
    gateway: RunningGateway, pipeline: RealtimePipeline, browser: Browser
) -> None:
    from axe_playwright_python.async_playwright import Axe

    async with tab(browser, gateway.base) as t:
        await t.open("/market")
        await t.sign_in(gateway.viewer)
        page = t.page
        panel = page.get_by_role("region", name="Live K-lines")
        symbol = panel.get_by_label("Symbol")
        await expect(symbol.locator("option")).to_have_text(["BTCUSDT", "ETHUSDT"])
        await expect(panel.get_by_label("Interval").locator("option")).to_have_text(["1m", "5m"])
        chart = panel.locator(".live-chart")
        await expect(chart.locator("canvas").first).to_be_attached()
        await expect(chart).to_have_attribute(
            "aria-label", re.compile("^Live K-line chart of BTCUSDT at 1m: ")
        )
        # At 20x a minute of trades passes every 3 s: candles form, then close.
        await page.wait_for_function(
            "() => Number(document.querySelector('.live-chart').dataset.finals) >= 2"
        )
        await expect(panel.locator("p.live-status")).to_contain_text("connected")
        await expect(panel.locator("p.live-status")).to_contain_text("last update")
        await expect(panel.locator("p.legend")).to_contain_text("trades")
        bars = int(await chart.get_attribute("data-bars") or 0)
        await page.wait_for_function(
            f"() => Number(document.querySelector('.live-chart').dataset.bars) > {bars}"
        )
        await t.screenshot("market-live")

        # Another symbol: the URL says so and its own bars are drawn.
        await symbol.select_option("ETHUSDT")
        await expect(page).to_have_url(f"{gateway.base}/market?live=ETHUSDT")
        await expect(chart).to_have_attribute(
            "aria-label", re.compile("^Live K-line chart of ETHUSDT at 1m: ")
        )
        await page.wait_for_function(
            "() => Number(document.querySelector('.live-chart').dataset.bars) >= 1"
        )
        results = await Axe().run(page)
        critical = [v for v in results.response["violations"] if v["impact"] == "critical"]
        assert critical == [], results.generate_report()
        assert t.problems == []


async def test_without_a_pipeline_the_live_view_says_so(
    gateway: RunningGateway, browser: Browser
) -> None:
    async with tab(browser, gateway.base) as t:
        await t.open("/market")
        await t.sign_in(gateway.viewer)
        off = t.page.get_by_role("region", name="Live K-lines").locator("[data-realtime=off]")
        await expect(off).to_contain_text("The real-time pipeline is not running")
        assert t.problems == []
