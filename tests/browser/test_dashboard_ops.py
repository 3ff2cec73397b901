"""The dashboard's Nodes, Alerts and Limits pages in real Chromium (issue 16).

Nodes: a live node with its roles, heartbeat and metrics, the leader marked
with its fencing token, a late heartbeat flagged. Alerts: a firing alert,
then one fired by another connection appears without a reload (the `alert`
channel). Limits: an admin sets a queue limit and sees it; a viewer sees no
control and the same PUT forged from its page is refused with 403. Each page
passes an axe check with no critical violation; screenshots are kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from playwright.async_api import Browser, expect

from tests.support.alerts import evaluate, fail_tasks
from tests.support.browser import chromium, tab
from tests.support.gateway import RunningGateway, gateway_test_app, running_gateway
from tests.support.waiting import wait_until
from tickbase.cluster.lease import Lease
from tickbase.cluster.nodes import NodeHeartbeat


@pytest.fixture
async def gateway(database_url: str) -> AsyncIterator[RunningGateway]:
    app = gateway_test_app(database_url)
    async with app, running_gateway(app, worker=False) as running:
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@pytest.fixture
async def node(gateway: RunningGateway) -> AsyncIterator[NodeHeartbeat]:
    """A real node heartbeating every half second, holding the leader lease."""
    beat = NodeHeartbeat(
        gateway.app.url,
        "node-live",
        roles=["worker", "scheduler"],
        queues=["default"],
        interval=0.5,
        running=lambda: 3,
        processed=lambda: 42,
    )
    await beat.start()
    lease = Lease(gateway.app.pool, holder="node-live", ttl=60)
    assert await lease.acquire()
    try:
        yield beat
    finally:
        await lease.release()
        await beat.stop()


def late_node(conn: psycopg.Connection[Any]) -> None:
    """A node whose last heartbeat is 12 s old at a 5 s interval: late, not yet dead."""
    conn.execute(
        "INSERT INTO tickbase.nodes (node_id, host, pid, roles, version, heartbeat_interval,"
        " heartbeat_at) VALUES ('node-late', 'elsewhere', 7, '{worker}', 'x', 5,"
        " now() - interval '12 seconds')"
    )


def limits_seen(conn: psycopg.Connection[Any]) -> None:
    """A rate-limited, keyed task type with two of its tasks running under one key."""
    conn.execute(
        "INSERT INTO tickbase.task_limits (task_type, rate_max, rate_window_seconds,"
        " concurrency_key, concurrency_limit) VALUES ('md.fetch', 10, 60, '{symbol}', 2)"
    )
    conn.execute(
        "INSERT INTO tickbase.tasks (task_type, status, attempts, started_at, lease_expires_at,"
        " node_id, concurrency_key, concurrency_limit, payload)"
        " SELECT 'md.fetch', 'running', 1, now(), now() + interval '10 minutes', 'n', 'ESZ5', 2,"
        ' \'{"symbol": "ESZ5"}\' FROM generate_series(1, 2)'
    )


async def test_nodes_page_shows_the_live_node_and_the_leader(
    gateway: RunningGateway,
    browser: Browser,
    node: NodeHeartbeat,
    sql_conn: psycopg.Connection[Any],
) -> None:
    late_node(sql_conn)
    async with tab(browser, gateway.base) as t:
        await t.open("/nodes")
        await t.sign_in(gateway.admin)
        await expect(t.page.get_by_role("heading", name="Nodes", exact=True)).to_be_visible()
        await expect(t.page.get_by_role("link", name="Nodes")).to_have_attribute(
            "aria-current", "page"
        )
        live = t.page.locator("tr[data-node-id='node-live']")
        await expect(live).to_contain_text("worker")
        await expect(live).to_contain_text("scheduler")
        await expect(live.locator(".status.leader")).to_have_text("leader")
        await expect(live.locator("td").nth(3)).to_have_text("3")  # running tasks
        await expect(live.locator("td").nth(4)).to_have_text("42")  # processed
        await expect(live.locator(".heartbeat")).not_to_have_class("heartbeat late")
        await expect(t.page.get_by_test_id("fencing-token")).to_have_text("1")
        await expect(t.page.locator(".leader-panel")).to_contain_text("node-live")
        late = t.page.locator("tr[data-node-id='node-late']")
        await expect(late.locator(".heartbeat")).to_have_class("heartbeat late")
        await expect(late.locator(".status.leader")).to_have_count(0)
        await t.screenshot("nodes")
        assert t.problems == []


async def test_alerts_page_shows_a_firing_alert_and_a_new_one_live(
    gateway: RunningGateway, browser: Browser, sql_conn: psycopg.Connection[Any]
) -> None:
    fail_tasks(sql_conn, 6)
    [failures] = await evaluate(gateway.app, kinds={"failures_last_hour"})
    async with tab(browser, gateway.base) as t:
        await t.open("/alerts")
        await t.sign_in(gateway.admin)
        await expect(t.page.get_by_role("status")).to_have_text("Live")
        first = t.page.locator(f"tr[data-alert-id='{failures.alert_id}']")
        await expect(first).to_contain_text("firing")
        await expect(first).to_contain_text("6 tasks failed in the last hour")
        await expect(t.page.locator("tr[data-rule='node-down']")).to_be_visible()
        await t.page.evaluate("window.__sameDocument = true")
        await asyncio.sleep(1.0)  # the page's subscription to `alert` reaches the gateway

        sql_conn.execute(
            "INSERT INTO tickbase.nodes (node_id, host, pid, version, heartbeat_interval,"
            " heartbeat_at) VALUES ('n-gone', 'h9', 9, 'x', 1, now() - interval '1 minute')"
        )
        [down] = await evaluate(gateway.app, kinds={"node_down"})
        fresh = t.page.locator(f"tr[data-alert-id='{down.alert_id}']")
        await expect(fresh).to_contain_text("node n-gone on h9", timeout=5000)
        await expect(t.page.locator("tbody tr").first).to_have_attribute(
            "data-alert-id", str(down.alert_id)
        )
        assert await t.page.evaluate("window.__sameDocument") is True  # no reload
        await t.screenshot("alerts-live")

        # The state filter lives in the URL.
        await t.page.get_by_label("State").select_option("resolved")
        await t.page.get_by_role("button", name="Apply").click()
        await expect(t.page).to_have_url(f"{gateway.base}/alerts?state=resolved")
        await expect(t.page.get_by_text("No alert has resolved yet.")).to_be_visible()
        assert t.problems == []


async def test_an_admin_disables_an_alert_rule(gateway: RunningGateway, browser: Browser) -> None:
    async with tab(browser, gateway.base) as t:
        await t.open("/alerts")
        await t.sign_in(gateway.admin)
        toggle = t.page.get_by_role("button", name="Disable rule backlog")
        await toggle.click()
        await expect(t.page.get_by_role("button", name="Enable rule backlog")).to_be_visible()
        [rule] = [r for r in await _rules(gateway) if r.name == "backlog"]
        assert rule.enabled is False
        threshold = t.page.get_by_label("Threshold of backlog")
        await threshold.fill("250")
        await t.page.locator("tr[data-rule='backlog']").get_by_role("button", name="Save").click()
        await expect(t.page.get_by_label("Threshold of backlog")).to_have_value("250")

        async def saved() -> bool:  # the PATCH answers after the page shows the value
            [rule] = [r for r in await _rules(gateway) if r.name == "backlog"]
            return rule.threshold == 250

        await wait_until(saved, timeout=5, message="the threshold saved")
        assert t.problems == []


async def _rules(gateway: RunningGateway) -> list[Any]:
    from tickbase.cluster.alerts import AlertStore

    return list(await AlertStore(gateway.app.pool).rules())


async def test_an_admin_sets_a_queue_limit_and_sees_it(
    gateway: RunningGateway, browser: Browser, sql_conn: psycopg.Connection[Any]
) -> None:
    limits_seen(sql_conn)
    async with tab(browser, gateway.base) as t:
        await t.open("/limits")
        await t.sign_in(gateway.admin)
        await expect(t.page.get_by_text("No queue is limited")).to_be_visible()
        await t.page.get_by_label("Queue", exact=True).fill("marketdata")
        await t.page.get_by_label("At most running").fill("2")
        await t.page.get_by_role("button", name="Set limit").click()
        row = t.page.locator("tr[data-queue='marketdata']")
        await expect(row.locator("td").nth(1)).to_have_text("2")
        assert (await gateway.app.limits.queue_limits())[0]["concurrency"] == 2
        keys = t.page.get_by_role("table", name="Concurrency keys held by running tasks")
        await expect(keys.locator("tbody tr")).to_contain_text("ESZ5")
        await expect(t.page.get_by_role("table", name="Task type limits")).to_contain_text(
            "10 per 60.0 s"
        )
        await t.screenshot("limits-admin")
        await t.page.get_by_role("button", name="Clear the limit of queue marketdata").click()
        await expect(t.page.get_by_text("No queue is limited")).to_be_visible()
        assert await gateway.app.limits.queue_limits() == []
        assert t.problems == []


async def test_a_viewer_sees_no_limit_control_and_a_forged_put_is_refused(
    gateway: RunningGateway, browser: Browser
) -> None:
    await gateway.app.limits.set_queue_concurrency("default", 4)
    async with tab(browser, gateway.base) as t:
        await t.open("/limits")
        await t.sign_in(gateway.viewer)
        await expect(t.page.locator("tr[data-queue='default']")).to_contain_text("4")
        await expect(t.page.get_by_role("button", name="Set limit")).to_have_count(0)
        await expect(t.page.get_by_role("button", name="Clear")).to_have_count(0)
        await expect(t.page.locator("main input")).to_have_count(0)
        await t.screenshot("limits-viewer")
        status = await t.page.evaluate(
            """async () => {
                const s = JSON.parse(localStorage.getItem('tickbase.session')).session;
                const r = await fetch('/api/v1/limits/queues/default', {method: 'PUT',
                    headers: {Authorization: `Bearer ${s}`, 'Content-Type': 'application/json'},
                    body: JSON.stringify({concurrency: 99})});
                return r.status;
            }"""
        )
        assert status == 403
        await t.open("/alerts")
        await expect(t.page.locator("tr[data-rule='backlog']")).to_be_visible()
        await expect(t.page.locator("main button", has_text="Enabled")).to_have_count(0)
        await expect(t.page.locator("main input")).to_have_count(0)
    assert (await gateway.app.limits.queue_limits())[0]["concurrency"] == 4


@pytest.mark.parametrize("path", ["/nodes", "/alerts", "/limits"])
async def test_no_critical_accessibility_violation(
    gateway: RunningGateway,
    browser: Browser,
    node: NodeHeartbeat,
    sql_conn: psycopg.Connection[Any],
    path: str,
) -> None:
    from axe_playwright_python.async_playwright import Axe

    fail_tasks(sql_conn, 6)
    await evaluate(gateway.app, kinds={"failures_last_hour"})
    limits_seen(sql_conn)
    await gateway.app.limits.set_queue_concurrency("default", 4)
    async with tab(browser, gateway.base, color_scheme="dark") as t:
        await t.open(path)
        await t.sign_in(gateway.admin)
        await t.page.locator("main table").first.wait_for()
        await t.screenshot(f"{path.strip('/')}-dark")
        results = await Axe().run(t.page)
        critical = [v for v in results.response["violations"] if v["impact"] == "critical"]
        assert critical == [], results.generate_report()
        assert t.problems == []
