"""The dashboard in real Chromium over a real gateway (issue 16).

Each page is opened signed in, its main content asserted, and a screenshot
kept (``.artifacts/screenshots``). Live: a task enqueued by ``tickbase
enqueue`` (another process) appears on the open tasks page within a second,
without a reload; with the WebSocket blocked the page says it polls and
still shows the task. A viewer sees no mutating control, and the same
request forged from its page is refused with 403. The session never appears
in a URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, WebSocketRoute, expect

from tests.e2e.conftest import run_cli
from tests.support.browser import chromium, tab
from tests.support.gateway import RunningGateway, gateway_test_app, running_gateway
from tickbase.errors import TaskFailed


@pytest.fixture
async def gateway(database_url: str) -> AsyncIterator[RunningGateway]:
    app = gateway_test_app(database_url)
    async with app, running_gateway(app) as running:
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


async def enqueue(gateway: RunningGateway, task_type: str, **payload: Any) -> int:
    return (await gateway.app.defer(task_type, payload)).id


async def finished(gateway: RunningGateway, task_type: str, **payload: Any) -> int:
    """Enqueue a task and wait until it ended (succeeded or not)."""
    handle = await gateway.app.defer(task_type, payload)
    with contextlib.suppress(TaskFailed):
        await handle.result(timeout=10)
    return handle.id


async def test_the_shell_is_public_and_holds_no_data(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.base) as anonymous:
        for path in ("/", "/tasks", "/tasks/12", "/sign-in"):
            page = await anonymous.get(path)
            assert page.status_code == 200, path
            assert page.headers["content-type"].startswith("text/html")
            policy = page.headers["content-security-policy"]
            assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
            assert '<script type="module" src="/ui/app.js">' in page.text
        asset = await anonymous.get("/ui/app.js")
        assert asset.status_code == 200 and "javascript" in asset.headers["content-type"]
        assert asset.headers["x-content-type-options"] == "nosniff"
        # The data behind the pages is not public.
        assert (await anonymous.get("/api/v1/dashboard/overview")).status_code == 401
        assert (await anonymous.get("/api/v1/tasks")).status_code == 401
        # No way out of the assets' directory.
        assert (await anonymous.get("/ui/%2e%2e/serving.py")).status_code == 404
        assert (await anonymous.get("/ui/..%2fserving.py")).status_code == 404
        assert (await anonymous.get("/nothing-here")).status_code == 401


async def test_sign_in_overview_and_sign_out(gateway: RunningGateway, browser: Browser) -> None:
    await enqueue(gateway, "t.add", a=1, b=2)
    async with tab(browser, gateway.base) as t:
        await t.open("/")
        await expect(t.page.get_by_role("heading", name="Sign in to tickbase")).to_be_visible()
        await t.screenshot("sign-in")
        await t.page.get_by_label("API token").fill("tb_" + "x" * 43)
        await t.page.get_by_role("button", name="Sign in").click()
        await expect(t.page.get_by_role("alert")).to_contain_text("unknown or revoked API token")
        t.problems.clear()  # the refused sign-in's 401 is logged by the browser

        await t.sign_in(gateway.admin)
        await expect(t.page.get_by_role("heading", name="Overview")).to_be_visible()
        await expect(t.page.get_by_text("Nodes alive")).to_be_visible()
        await expect(t.page.get_by_role("status")).to_have_text("Live")
        await expect(t.page.get_by_role("cell", name="default")).to_be_visible()
        await t.screenshot("overview")
        # The session lives in storage, never in the URL or the history.
        assert "session" not in t.page.url and gateway.admin not in t.page.url
        stored = await t.page.evaluate("localStorage.getItem('tickbase.session')")
        assert stored and gateway.admin not in stored

        await t.page.get_by_role("button", name="Sign out").click()
        await expect(t.page.get_by_label("API token")).to_be_visible()
        assert await t.page.evaluate("localStorage.getItem('tickbase.session')") is None
        assert t.problems == []


async def test_a_task_enqueued_elsewhere_appears_within_a_second(
    gateway: RunningGateway, browser: Browser, database_url: str
) -> None:
    async with tab(browser, gateway.base) as t:
        await t.open("/tasks")
        await t.sign_in(gateway.admin)
        await expect(t.page.get_by_role("status")).to_have_text("Live")
        await expect(t.page.get_by_text("No task matches")).to_be_visible()
        done = await asyncio.to_thread(
            run_cli,
            "enqueue",
            "tickbase.echo",
            "--payload",
            '{"x": 1}',
            "--json",
            database_url=database_url,
        )
        assert done.returncode == 0, done.stderr
        enqueued_at = time.monotonic()
        row = t.page.locator("tbody tr").first
        await expect(row).to_contain_text("tickbase.echo", timeout=1000)
        assert time.monotonic() - enqueued_at < 1.0
        await expect(row.locator(".status")).to_have_text("succeeded", timeout=5000)
        await t.screenshot("tasks-live")
        assert t.problems == []


async def test_without_the_websocket_the_page_polls_and_says_so(
    gateway: RunningGateway, browser: Browser
) -> None:
    async with tab(browser, gateway.base) as t:
        # As a proxy that cuts WebSockets would: each one closes before the
        # gateway ever answers a frame.
        async def cut(ws: WebSocketRoute) -> None:
            await ws.close(code=1013, reason="blocked by the test")

        await t.context.route_web_socket("**/ws*", cut)
        await t.open("/tasks")
        await t.sign_in(gateway.admin)
        await expect(t.page.get_by_role("status")).to_have_text(
            "Live updates unavailable: refreshing every 15 s"
        )
        task_id = await enqueue(gateway, "t.add", a=5, b=8)
        await expect(t.page.locator(f"tr[data-task-id='{task_id}']")).to_be_visible(timeout=20_000)
        await t.screenshot("tasks-polling")
        # Chromium reports each refused WebSocket handshake as a console error.
        assert [p for p in t.problems if "WebSocket" not in p] == []


async def test_a_task_page_shows_its_timeline_and_error(
    gateway: RunningGateway, browser: Browser
) -> None:
    failed = await finished(gateway, "t.boom")
    async with tab(browser, gateway.base, color_scheme="dark") as t:
        await t.open(f"/tasks/{failed}")
        await t.sign_in(gateway.admin)
        await expect(t.page.get_by_role("heading", name=f"Task {failed}")).to_contain_text("failed")
        await expect(
            t.page.locator("p", has_text="RuntimeError: exploded on purpose")
        ).to_be_visible()
        await expect(t.page.get_by_text("Traceback", exact=True)).to_be_visible()
        timeline = t.page.locator("ol.timeline li")
        await expect(timeline.first).to_contain_text("created")
        await expect(timeline.last).to_contain_text("failed")
        await t.screenshot("task-failed-dark")

        await t.page.get_by_role("button", name="Retry as a new task").click()
        await expect(t.page).to_have_url(f"{gateway.base}/tasks/{failed + 1}")
        await expect(t.page.get_by_role("heading", name=f"Task {failed + 1}")).to_be_visible()
        assert t.problems == []


async def test_a_viewer_sees_no_mutating_control_and_is_refused_anyway(
    gateway: RunningGateway, browser: Browser
) -> None:
    running = await enqueue(gateway, "t.sleep", seconds=30)
    async with tab(browser, gateway.base) as t:
        await t.open(f"/tasks/{running}")
        await t.sign_in(gateway.viewer)
        await expect(t.page.get_by_role("heading", name=f"Task {running}")).to_be_visible()
        await expect(t.page.get_by_role("button", name="Cancel")).to_have_count(0)
        await expect(t.page.get_by_role("group", name="Task actions")).to_have_count(0)
        await t.screenshot("task-viewer")
        # The request the admin's button sends, forged from the viewer's page.
        status = await t.page.evaluate(
            """async (id) => {
                const s = JSON.parse(localStorage.getItem('tickbase.session')).session;
                const r = await fetch(`/api/v1/tasks/${id}/cancel`,
                    {method: 'POST', headers: {Authorization: `Bearer ${s}`}});
                return r.status;
            }""",
            running,
        )
        assert status == 403
    task = await gateway.app.queue.get(running)
    assert str(task.status) in ("pending", "running") and not task.cancel_requested
    await gateway.app.queue.cancel(running)


async def test_tasks_filters_live_in_the_url(gateway: RunningGateway, browser: Browser) -> None:
    await finished(gateway, "t.add", a=1, b=1)
    await finished(gateway, "t.boom")
    async with tab(browser, gateway.base) as t:
        await t.open("/tasks")
        await t.sign_in(gateway.admin)
        await t.page.get_by_label("Status").select_option("failed")
        await t.page.get_by_role("button", name="Apply").click()
        await expect(t.page).to_have_url(f"{gateway.base}/tasks?status=failed")
        rows = t.page.locator("tbody tr")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_contain_text("t.boom")
        # The same link in a new tab opens the same view.
        await t.open("/tasks?status=succeeded&taskType=t.add")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_contain_text("t.add")
        await expect(t.page.get_by_label("Type")).to_have_value("t.add")
        await t.open("/tasks?status=cancelled")
        await expect(t.page.get_by_text("No task matches these filters")).to_be_visible()
        assert t.problems == []


async def test_bulk_cancel_of_a_json_filter_cancels_the_dry_runs_count(
    database_url: str, browser: Browser
) -> None:
    app = gateway_test_app(database_url)
    # No worker: the tasks wait, so the count the page shows is the one acted on.
    async with app, running_gateway(app, worker=False) as gateway:
        for i in range(6):
            await enqueue(gateway, "t.add", a=i, b=0, symbol="BTCUSDT" if i % 2 else "ETHUSDT")
        async with tab(browser, gateway.base) as t:
            await t.open("/tasks")
            await t.sign_in(gateway.admin)
            await t.page.get_by_label("JSON conditions (one per line)").fill(
                "payload.symbol = BTCUSDT"
            )
            await t.page.get_by_role("button", name="Apply").click()
            await expect(t.page).to_have_url(
                f"{gateway.base}/tasks?where=payload.symbol+%3D+BTCUSDT"
            )
            await expect(t.page.locator("tbody tr")).to_have_count(3)
            await t.page.get_by_role("button", name="Cancel all matching…").click()
            bulk = t.page.get_by_role("region", name="Bulk actions")
            await expect(bulk.get_by_role("status")).to_contain_text("3 tasks match this filter")
            await t.screenshot("tasks-bulk-dry-run")
            await bulk.get_by_role("button", name="Cancel 3").click()
            await expect(bulk.get_by_role("status")).to_contain_text("Cancelled 3 of 3 (audit #")
            await expect(t.page.locator("tbody .status")).to_have_text(["cancelled"] * 3)
            assert t.problems == []
        statuses = sorted(str(t.status) for t in await app.queue.list_tasks(limit=10))
        assert statuses == ["cancelled"] * 3 + ["pending"] * 3
        [audit] = await app.queue.bulk_actions()
        assert (audit.action, audit.matched, audit.changed) == ("cancel", 3, 3)


@pytest.mark.parametrize("path", ["/", "/tasks", "/tasks/1"])
async def test_no_critical_accessibility_violation(
    gateway: RunningGateway, browser: Browser, path: str
) -> None:
    from axe_playwright_python.async_playwright import Axe

    await finished(gateway, "t.add", a=1, b=1)
    async with tab(browser, gateway.base) as t:
        await t.open(path)
        await t.sign_in(gateway.admin)
        await t.page.locator("main h1").wait_for()
        results = await Axe().run(t.page)
        critical = [v for v in results.response["violations"] if v["impact"] == "critical"]
        assert critical == [], results.generate_report()
