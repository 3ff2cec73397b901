"""Real Chromium (Debian's ``chromium``) driven by Playwright, for the dashboard's tests.

Playwright's own browser download is not reachable here, so the system
browser is launched by path. Each test gets a fresh browser context (its own
storage: no session leaks between tests); console errors and uncaught page
errors are collected and a test asserts there were none. Screenshots are
kept as artefacts under ``TICKBASE_TEST_ARTIFACTS`` (default
``.artifacts/`` in the checkout).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from playwright.async_api import Browser, BrowserContext, Page, async_playwright

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("TICKBASE_TEST_ARTIFACTS", REPO / ".artifacts")) / "screenshots"


def chromium_path() -> str:
    """Debian's chromium; a clear failure (not a skip) when it is missing."""
    for candidate in ("/usr/bin/chromium", shutil.which("chromium") or ""):
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError(
        "the dashboard's browser tests need Debian's chromium: apt-get install -y chromium "
        "(.ci/run installs it)"
    )


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Tab:
    """A page in its own context, and what went wrong on it."""

    context: BrowserContext
    page: Page
    base: str
    problems: list[str] = field(default_factory=list)

    async def open(self, path: str) -> None:
        await self.page.goto(self.base + path)

    async def sign_in(self, token: str) -> None:
        """Paste ``token`` on the sign-in form and wait for the signed-in layout."""
        await self.page.get_by_label("API token").fill(token)
        await self.page.get_by_role("button", name="Sign in").click()
        await self.page.get_by_role("button", name="Sign out").wait_for()

    async def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path


@contextlib.asynccontextmanager
async def tab(browser: Browser, base: str, *, color_scheme: str = "light") -> AsyncIterator[Tab]:
    context = await browser.new_context(
        viewport={"width": 1280, "height": 900},
        color_scheme=color_scheme,  # type: ignore[arg-type]
        timezone_id="Europe/Berlin",
    )
    page = await context.new_page()
    opened = Tab(context, page, base)
    page.on("console", lambda m: opened.problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: opened.problems.append(f"uncaught: {e}"))
    try:
        yield opened
    finally:
        await context.close()
