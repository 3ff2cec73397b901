"""The workflows pages in real Chromium over a real gateway (issue 16).

A fan-out/fan-in workflow (``prepare`` -> ``left`` and ``right`` -> ``join``
-> ``publish``) whose middle steps wait on :class:`asyncio.Event` gates the
test releases: its run page draws one node per step, a step turns from
running to succeeded on the open page (no reload) when its gate opens, the
fan-in step says what it still waits for, the critical path is marked once
the run is done, a step opens its task by click and by keyboard. An admin
cancels a run from the page; a viewer sees no cancel (nor "Run now") and the
forged requests are refused with 403. The list and a run page pass axe.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from tests.support.browser import Tab, chromium, tab
from tests.support.gateway import RunningGateway, gateway_test_app, running_gateway

GATES = ("left", "right")


@pytest.fixture
def gates() -> dict[str, asyncio.Event]:
    return {name: asyncio.Event() for name in GATES}


@pytest.fixture
async def gateway(
    database_url: str, gates: dict[str, asyncio.Event]
) -> AsyncIterator[RunningGateway]:
    app = gateway_test_app(database_url)

    @app.task(name="wf.gate")
    async def gate(name: str) -> str:
        await gates[name].wait()
        return name

    async with app, running_gateway(app) as running:
        fan = app.workflow("fan", mode="parallel")
        fan.step("prepare", "t.add", payload={"a": 1, "b": 1})
        fan.step("left", "wf.gate", after=["prepare"], payload={"name": "left"})
        fan.step("right", "wf.gate", after=["prepare"], payload={"name": "right"})
        fan.step("join", "t.add", after=["left", "right"], payload={"a": 2, "b": 2})
        fan.step("publish", "t.add", after=["join"], payload={"a": 3, "b": 3})
        await fan.save()
        try:
            yield running
        finally:
            for event in gates.values():
                event.set()  # no step left waiting when the worker stops


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


def node(page: Page, step: str) -> Any:
    return page.locator(f"svg.dag g.dag-step[data-step='{step}']")


async def open_run(t: Tab, gateway: RunningGateway, run_id: int, token: str) -> None:
    await t.open(f"/runs/{run_id}")
    await t.sign_in(token)
    await expect(t.page.get_by_role("heading", name=f"Run {run_id} of fan")).to_be_visible()
    await expect(t.page.get_by_role("status")).to_have_text("Live")


async def test_a_run_page_draws_the_dag_and_follows_it_live(
    gateway: RunningGateway, browser: Browser, gates: dict[str, asyncio.Event]
) -> None:
    run = await gateway.app.workflows.start("fan")
    async with tab(browser, gateway.base) as t:
        await open_run(t, gateway, run.id, gateway.admin)
        page = t.page
        await expect(page.locator("svg.dag g.dag-step")).to_have_count(5)
        await expect(page.locator("svg.dag path.dag-edge")).to_have_count(5)
        await expect(node(page, "left")).to_have_attribute("data-state", "running", timeout=10_000)
        await expect(node(page, "right")).to_have_attribute("data-state", "running")
        # The fan-in step says what it waits for, on the DAG and in the table.
        await expect(node(page, "join")).to_have_attribute("data-state", "waiting")
        await expect(node(page, "join")).to_contain_text("waits for left, right")
        await expect(page.locator("tr[data-step='join']")).to_contain_text("waits for left, right")
        await t.screenshot("workflow-run-running")

        # From here on the page must follow without a reload.
        await page.evaluate("window.__sameDocument = true")
        gates["left"].set()
        await expect(node(page, "left")).to_have_attribute("data-state", "succeeded", timeout=5000)
        await expect(node(page, "join")).to_contain_text("waits for right")
        await expect(node(page, "right")).to_have_attribute("data-state", "running")

        # A step by click, and another by keyboard: its task link and timings.
        await node(page, "join").click()
        detail = page.locator("section.step-detail")
        await expect(detail).to_contain_text("This step waits for right.")
        await expect(detail).to_contain_text("none yet")
        right_task = (await gateway.app.workflows.get(run.id)).steps["right"].task_id
        await node(page, "right").focus()
        await page.keyboard.press("Enter")
        await expect(detail.get_by_role("heading")).to_contain_text("Step right")
        await expect(detail.get_by_role("link", name=f"Task {right_task}")).to_have_attribute(
            "href", f"/tasks/{right_task}"
        )
        aria = await node(page, "right").get_attribute("aria-label")
        assert aria and aria.startswith("Step right, running")

        await asyncio.sleep(0.3)  # right runs longer than left: the critical path goes through it
        gates["right"].set()
        heading = page.get_by_role("heading", name=f"Run {run.id} of fan")
        await expect(heading.locator(".status")).to_have_text("succeeded", timeout=10_000)
        for step in ("prepare", "left", "right", "join", "publish"):
            await expect(node(page, step)).to_have_attribute("data-state", "succeeded")
        await expect(detail).to_contain_text("Finished")
        assert await page.evaluate("window.__sameDocument") is True

        # The critical path: prepare -> right -> join -> publish, marked on nodes and edges.
        critical = page.locator("svg.dag g.dag-step.critical")
        await expect(critical).to_have_count(4)
        assert await node(page, "left").get_attribute("class") == "dag-step succeeded"
        edges = page.locator("svg.dag path.dag-edge.critical")
        assert sorted(await edges.evaluate_all("es => es.map(e => e.dataset.edge)")) == [
            "join>publish",
            "prepare>right",
            "right>join",
        ]
        await expect(page.locator("dd.critical-path")).to_contain_text(
            "prepare → right → join → publish"
        )
        await t.screenshot("workflow-run-done")
        assert t.problems == []


async def test_an_admin_cancels_a_run(
    gateway: RunningGateway, browser: Browser, gates: dict[str, asyncio.Event]
) -> None:
    run = await gateway.app.workflows.start("fan")
    async with tab(browser, gateway.base, color_scheme="dark") as t:
        await open_run(t, gateway, run.id, gateway.admin)
        await expect(node(t.page, "left")).to_have_attribute(
            "data-state", "running", timeout=10_000
        )
        await t.page.get_by_role("button", name="Cancel run").click()
        heading = t.page.get_by_role("heading", name=f"Run {run.id} of fan")
        await expect(heading.locator(".status")).to_have_text("cancelled")
        await expect(t.page.get_by_role("button", name="Cancel run")).to_have_count(0)
        await expect(node(t.page, "join")).to_have_attribute("data-state", "cancelled")
        await expect(node(t.page, "publish")).to_have_attribute("data-state", "cancelled")
        await t.screenshot("workflow-run-cancelled-dark")
        assert t.problems == []
    assert (await gateway.app.workflows.get(run.id)).status == "cancelled"


async def test_a_viewer_sees_no_cancel_and_is_refused_anyway(
    gateway: RunningGateway, browser: Browser
) -> None:
    run = await gateway.app.workflows.start("fan")
    async with tab(browser, gateway.base) as t:
        await open_run(t, gateway, run.id, gateway.viewer)
        await expect(t.page.locator("svg.dag g.dag-step")).to_have_count(5)
        await expect(t.page.get_by_role("button", name="Cancel run")).to_have_count(0)
        await expect(t.page.get_by_role("group", name="Run actions")).to_have_count(0)
        statuses = await t.page.evaluate(
            """async (id) => {
                const s = JSON.parse(localStorage.getItem('tickbase.session')).session;
                const post = (path) => fetch(path,
                    {method: 'POST', headers: {Authorization: `Bearer ${s}`}}).then(r => r.status);
                return [await post(`/api/v1/runs/${id}/cancel`), await post('/api/v1/workflows/fan/runs')];
            }""",
            run.id,
        )
        assert statuses == [403, 403]
        await t.open("/workflows/fan")
        await expect(t.page.get_by_role("heading", name="Workflow fan")).to_be_visible()
        await expect(t.page.get_by_role("button", name="Run now")).to_have_count(0)
        t.problems.clear()  # the forged requests' 403s are logged by the browser
    assert (await gateway.app.workflows.get(run.id)).status == "running"
    assert len(await gateway.app.workflows.list_runs("fan")) == 1


async def test_the_workflows_list_runs_filters_and_a_definition(
    gateway: RunningGateway, browser: Browser, gates: dict[str, asyncio.Event]
) -> None:
    done = await gateway.app.workflows.start("fan")
    for event in gates.values():
        event.set()
    assert await done.wait(timeout=15) == "succeeded"
    gates["left"].clear()  # the next runs stay running
    async with tab(browser, gateway.base) as t:
        await t.open("/workflows")
        await t.sign_in(gateway.admin)
        page = t.page
        await expect(page.get_by_role("heading", name="Workflows", exact=True)).to_be_visible()
        row = page.locator("tr[data-workflow='fan']")
        await expect(row).to_contain_text("parallel")
        await expect(row.locator("td").nth(1)).to_have_text("5")
        runs = page.locator("tr[data-run-id]")
        await expect(runs).to_have_count(1)
        await expect(runs.first).to_contain_text("succeeded")

        # A run started elsewhere appears without a reload.
        second = await gateway.app.workflows.start("fan")
        await expect(page.locator(f"tr[data-run-id='{second.id}']")).to_be_visible(timeout=5000)
        await t.screenshot("workflows")

        await page.get_by_label("Run status").select_option("succeeded")
        await page.get_by_role("button", name="Apply").click()
        await expect(page).to_have_url(f"{gateway.base}/workflows?status=succeeded")
        await expect(runs).to_have_count(1)
        await expect(runs.first).to_have_attribute("data-run-id", str(done.id))
        await t.open("/workflows?status=failed&workflow=fan")
        await expect(page.get_by_text("No run matches these filters")).to_be_visible()
        await expect(page.locator("select[name=workflow]")).to_have_value("fan")

        await t.open("/workflows")
        await row.get_by_role("link", name="fan", exact=True).click()
        await expect(page).to_have_url(f"{gateway.base}/workflows/fan")
        await expect(page.locator("svg.dag g.dag-step")).to_have_count(5)
        await node(page, "join").press("Enter")
        await expect(page.locator("section.step-detail")).to_contain_text("left, right")
        await expect(page.locator("tr[data-run-id]")).to_have_count(2)
        await t.screenshot("workflow-definition")
        await page.get_by_role("button", name="Run now").click()
        await expect(page.get_by_role("heading", name="of fan")).to_contain_text("Run ")
        assert len(await gateway.app.workflows.list_runs("fan")) == 3
        assert t.problems == []


@pytest.mark.parametrize("path", ["/workflows", "/workflows/fan", "/runs/{run}"])
async def test_no_critical_accessibility_violation(
    gateway: RunningGateway, browser: Browser, path: str
) -> None:
    from axe_playwright_python.async_playwright import Axe

    run = await gateway.app.workflows.start("fan")
    async with tab(browser, gateway.base) as t:
        await t.open(path.format(run=run.id))
        await t.sign_in(gateway.admin)
        await t.page.locator("main h1").wait_for()
        await t.page.locator("main table").first.wait_for()
        results = await Axe().run(t.page)
        critical = [v for v in results.response["violations"] if v["impact"] == "critical"]
        assert critical == [], results.generate_report()
