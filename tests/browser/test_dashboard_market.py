"""The market-data page in real Chromium over a real gateway (issue 16).

Stored with the project's own store from the bundled real samples: the E-mini
minutes moved to end a minute ago with one bar dropped and forward-filled (a
fresh series with a filled bar), GOOG daily from 2004 (stale), BTC/USD monthly
(real moves over 20%: anomalies); the integrity check run over the first two.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from playwright.async_api import Browser, expect

from tests.support.browser import chromium, tab
from tests.support.gateway import RunningGateway, gateway_test_app, running_gateway
from tickbase.marketdata.bars import Bar, load_bars
from tickbase.marketdata.cleaning import forward_fill
from tickbase.marketdata.pipeline import MarketData
from tickbase.marketdata.sources.chains import MarketSources
from tickbase.marketdata.store import KlineStore

ES = "REPLAY:ES-1m"


def recent_es(count: int) -> list[Bar]:
    """The sample's last ``count`` E-mini minutes, moved by whole minutes to end now."""
    bars = load_bars("es-1m")[-count:]
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    shift = now - timedelta(minutes=1) - bars[-1].open_time
    return [replace(b, open_time=b.open_time + shift) for b in bars]


def shown(value: float) -> str:
    """A price as the page writes it (at most 6 decimals, no grouping)."""
    return f"{value:.6f}".rstrip("0").rstrip(".")


@pytest.fixture
async def gateway(database_url: str) -> AsyncIterator[RunningGateway]:
    app = gateway_test_app(database_url)
    async with app, running_gateway(app, worker=False) as running:
        store = KlineStore(app.pool)
        es = recent_es(240)
        await store.upsert("replay", ES, "1m", forward_fill(es[:225] + es[226:], "1m"))
        await store.upsert("replay", "GOOG", "1d", load_bars("goog-1d"))
        await store.upsert("replay", "BTCUSD", "1M", load_bars("btcusd-1M"))
        market = MarketData(app.pool, MarketSources.from_settings(app.settings))
        await market.check_integrity([ES], ["1m"])
        await market.check_integrity(["GOOG"], ["1d"])
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


async def test_market_page_lists_series_draws_the_chart_and_keeps_the_selection(
    gateway: RunningGateway, browser: Browser
) -> None:
    es = forward_fill(recent_es(240)[:225] + recent_es(240)[226:], "1m")
    async with tab(browser, gateway.base) as t:
        await t.open("/market")
        await t.sign_in(gateway.admin)
        page = t.page
        rows = page.get_by_role("table", name="Stored series").locator("tbody tr")
        await expect(rows).to_have_count(3)
        await expect(rows.first).to_contain_text("BTCUSD")
        # No selection in the URL: the first series is chosen, and the URL says so.
        await expect(page).to_have_url(f"{gateway.base}/market?symbol=BTCUSD&interval=1M")

        await page.get_by_role("link", name=ES).first.click()
        await expect(page).to_have_url(f"{gateway.base}/market?symbol=REPLAY%3AES-1m&interval=1m")
        chart = page.locator(".kline-chart")
        await expect(chart.locator("canvas").first).to_be_attached()
        legend = page.locator("p.legend")
        await expect(legend).to_contain_text(f"C {shown(es[-1].close)}")
        await expect(legend).to_contain_text(f"H {shown(es[-1].high)}")
        await expect(page.locator("p.freshness")).to_have_attribute("data-freshness", "fresh")
        await expect(page.locator("p.freshness")).to_contain_text("replay")
        await expect(page.get_by_text("Europe/Berlin").first).to_be_visible()

        # The forward-filled bar is marked, and listed.
        filled = page.get_by_role("list", name="Marked bars").locator("li[data-kind=filled]")
        await expect(filled).to_have_count(1)
        await expect(chart).to_have_attribute("data-markers", "1")

        # Indicator toggles redraw without them.
        series = "candles volume ema21 ema55 bb rsi macd"
        await expect(chart).to_have_attribute("data-series", series)
        await page.get_by_label("EMA 21").uncheck()
        await page.get_by_label("RSI 14").uncheck()
        await page.get_by_label("ATR 14").check()
        await expect(chart).to_have_attribute("data-series", "candles volume ema55 bb macd atr")
        await expect(chart.locator("canvas").first).to_be_attached()
        await t.screenshot("market-light")

        # A reload keeps the selection.
        await page.reload()
        await expect(page.get_by_role("heading", name=f"{ES} · 1m")).to_be_visible()
        await expect(page.locator("p.legend")).to_contain_text(f"C {shown(es[-1].close)}")
        assert t.problems == []


async def test_stale_and_anomalous_series_are_marked(
    gateway: RunningGateway, browser: Browser
) -> None:
    btc = load_bars("btcusd-1M")
    moved = sum(1 for a, b in itertools.pairwise(btc) if abs(b.close - a.close) > 0.2 * a.close)
    assert moved > 0
    async with tab(browser, gateway.base) as t:
        await t.open("/market?symbol=GOOG&interval=1d")
        await t.sign_in(gateway.viewer)
        page = t.page
        freshness = page.locator("p.freshness")
        await expect(freshness).to_have_attribute("data-freshness", "stale")
        await expect(freshness).to_contain_text("stale")
        await expect(freshness).to_contain_text("years old")
        marked = page.get_by_role("list", name="Marked bars")
        await expect(marked.locator("li[data-kind=stale]")).to_have_count(1)

        await page.get_by_label("Series", exact=True).select_option(label="BTCUSD · 1M · replay")
        await expect(page).to_have_url(f"{gateway.base}/market?symbol=BTCUSD&interval=1M")
        await expect(marked.locator("li[data-kind=anomaly]")).to_have_count(moved)
        await expect(page.locator(".kline-chart canvas").first).to_be_attached()
        # A viewer's page: nothing here changes anything.
        buttons = await page.locator("main button").count()
        assert buttons == 0
        assert t.problems == []


async def test_completeness_heatmap_and_dark_mode(
    gateway: RunningGateway, browser: Browser
) -> None:
    async with tab(browser, gateway.base, color_scheme="dark") as t:
        await t.open(f"/market?symbol={ES}&interval=1m")
        await t.sign_in(gateway.admin)
        page = t.page
        heat = page.get_by_role(
            "table", name="Share of expected bars present, per series and UTC day"
        )
        rows = heat.locator("tbody tr")
        await expect(rows).to_have_count(2)
        await expect(rows.nth(0)).to_have_attribute("data-series", "GOOG 1d")
        await expect(rows.nth(1)).to_have_attribute("data-series", f"{ES} 1m")
        cells = heat.locator("td.cell")
        assert await cells.count() >= 2
        for index in range(await cells.count()):
            assert await cells.nth(index).get_attribute("title")
        es_cells = rows.nth(1).locator("td.cell:not(.none)")
        assert "bars present" in (await es_cells.first.get_attribute("title") or "")
        # GOOG's last bar is from 2012: none of its window's days hold a bar.
        await expect(rows.nth(0).locator("td.cell.poor").first).to_be_visible()
        await expect(page.get_by_role("list", name="Legend")).to_contain_text("100%")
        await expect(page.locator(".kline-chart canvas").first).to_be_attached()
        await t.screenshot("market-dark")
        assert t.problems == []


async def test_market_page_has_no_critical_accessibility_violation(
    gateway: RunningGateway, browser: Browser
) -> None:
    from axe_playwright_python.async_playwright import Axe

    async with tab(browser, gateway.base) as t:
        await t.open(f"/market?symbol={ES}&interval=1m")
        await t.sign_in(gateway.admin)
        await t.page.locator(".kline-chart canvas").first.wait_for(state="attached")
        results = await Axe().run(t.page)
        critical = [v for v in results.response["violations"] if v["impact"] == "critical"]
        assert critical == [], results.generate_report()
