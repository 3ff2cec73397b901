"""The dashboard's schedule pages in real Chromium over a real gateway (issue 16).

The list shows each schedule's computed status, timing and fires, filters
live in the URL, and a row refreshes when one of its schedule's tasks is
pushed. A schedule's page shows its facts, stats and executions; an admin
pauses, resumes and triggers it and sees the result. The form checks a cron
expression as it is typed and shows the next five fires the scheduler would
compute. A viewer sees no mutating control and is refused anyway.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import datetime

import pytest
from playwright.async_api import Browser, expect

from tests.support.browser import chromium, tab
from tests.support.gateway import RunningGateway, gateway_test_app, running_gateway
from tickbase.scheduler.models import ScheduleSpec
from tickbase.scheduler.triggers import CronTrigger


@pytest.fixture
async def gateway(database_url: str) -> AsyncIterator[RunningGateway]:
    app = gateway_test_app(database_url)
    async with app, running_gateway(app) as running:
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


async def add_schedules(gateway: RunningGateway) -> None:
    store = gateway.app.schedules
    await store.create(
        ScheduleSpec.build(
            "add-yearly",
            "t.add",
            cron="0 9 1 1 *",
            timezone="America/New_York",
            payload={"a": 1, "b": 2},
        )
    )
    await store.create(ScheduleSpec.build("sleep-weekly", "t.sleep", every=7 * 86400.0))
    await store.create(ScheduleSpec.build("boom by hand", "t.boom", manual=True))


async def forged(t: object, method: str, path: str, body: object = None) -> int:
    status: int = await t.page.evaluate(  # type: ignore[attr-defined]
        """async ([method, path, body]) => {
            const s = JSON.parse(localStorage.getItem('tickbase.session')).session;
            const headers = {Authorization: `Bearer ${s}`, 'Content-Type': 'application/json'};
            const r = await fetch(path, {method, headers,
                body: body === null ? undefined : JSON.stringify(body)});
            return r.status;
        }""",
        [method, path, body],
    )
    return status


async def test_the_list_shows_every_schedule_filters_and_refreshes_live(
    gateway: RunningGateway, browser: Browser
) -> None:
    await add_schedules(gateway)
    await gateway.app.schedules.pause("sleep-weekly")
    async with tab(browser, gateway.base) as t:
        await t.open("/schedules")
        await t.sign_in(gateway.admin)
        await expect(t.page.get_by_role("heading", name="Schedules")).to_be_visible()
        rows = t.page.locator("tbody tr")
        await expect(rows).to_have_count(3)
        yearly = t.page.locator("tr[data-schedule='add-yearly']")
        await expect(yearly).to_contain_text("0 9 1 1 *")
        await expect(yearly).to_contain_text("America/New_York")
        await expect(yearly.locator(".status")).to_have_text("pending")
        await expect(yearly.locator("time")).to_have_count(1)  # next fire; never fired yet
        weekly = t.page.locator("tr[data-schedule='sleep-weekly']")
        await expect(weekly.locator(".status")).to_have_text("paused")
        await expect(weekly).to_contain_text("every 168.0 h")
        manual = t.page.locator("tr[data-schedule='boom by hand']")
        await expect(manual).to_contain_text("manual")
        await t.screenshot("schedules-list")

        # A fire made elsewhere reaches the row through the `tasks` channel.
        await expect(t.page.locator(".live-state")).to_have_text("Live")
        await gateway.app.schedules.trigger("add-yearly")
        await expect(yearly.locator(".status")).to_have_text("succeeded", timeout=8000)

        await t.page.get_by_label("Status").select_option("paused")
        await t.page.get_by_role("button", name="Apply").click()
        await expect(t.page).to_have_url(f"{gateway.base}/schedules?status=paused")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_contain_text("sleep-weekly")
        await t.open("/schedules?q=BY%20HAND")
        await expect(rows).to_have_count(1)
        await expect(t.page.get_by_label("Name contains")).to_have_value("BY HAND")
        await t.open("/schedules?taskType=t.add")
        await expect(rows).to_have_count(1)
        await t.open("/schedules?status=failed")
        await expect(t.page.get_by_text("No schedule matches these filters")).to_be_visible()
        await t.open("/schedules")
        await t.page.get_by_role("link", name="boom by hand").click()
        await expect(t.page).to_have_url(f"{gateway.base}/schedules/boom%20by%20hand")
        await expect(t.page.get_by_role("heading", name="Schedule boom by hand")).to_be_visible()
        assert t.problems == []


async def test_an_admin_pauses_resumes_and_triggers_a_schedule(
    gateway: RunningGateway, browser: Browser
) -> None:
    await add_schedules(gateway)
    async with tab(browser, gateway.base) as t:
        await t.open("/schedules/add-yearly")
        await t.sign_in(gateway.admin)
        heading = t.page.get_by_role("heading", name="Schedule add-yearly")
        await expect(heading.locator(".status")).to_have_text("pending")
        await expect(t.page.get_by_text("No execution yet")).to_be_visible()
        await expect(t.page.locator("dl.facts")).to_contain_text("America/New_York")

        await t.page.get_by_role("button", name="Pause").click()
        await expect(t.page.locator(".feedback")).to_have_text("Paused.")
        await expect(heading.locator(".status")).to_have_text("paused")
        await t.screenshot("schedule-paused")
        await t.page.get_by_role("button", name="Resume").click()
        await expect(t.page.locator(".feedback")).to_have_text("Resumed.")
        await expect(heading.locator(".status")).to_have_text("pending")

        await t.page.get_by_role("button", name="Trigger now").click()
        await expect(t.page.locator(".feedback")).to_contain_text("Fired: task")
        task_id = await t.page.locator(".feedback a").text_content()
        assert task_id is not None
        number = task_id.removeprefix("task ")
        row = t.page.locator(f"tr[data-task-id='{number}']")
        await expect(row).to_contain_text("hand (trigger)")
        await expect(row.locator(".status")).to_have_text("succeeded", timeout=8000)
        await expect(heading.locator(".status")).to_have_text("succeeded")
        await expect(t.page.locator(".stats")).to_contain_text("succeeded1")
        await t.screenshot("schedule-triggered")

        await t.page.get_by_role("button", name="Disable").click()
        await expect(heading.locator(".status")).to_have_text("disabled")
        await t.page.get_by_role("button", name="Enable").click()
        await expect(heading.locator(".status")).to_have_text("succeeded")

        await row.get_by_role("link", name=number).click()
        await expect(t.page.get_by_role("heading", name=f"Task {number}")).to_be_visible()
        assert t.problems == []


async def test_the_form_checks_the_cron_expression_as_it_is_typed(
    gateway: RunningGateway, browser: Browser
) -> None:
    async with tab(browser, gateway.base) as t:
        await t.open("/schedules?new=1")
        await t.sign_in(gateway.admin)
        await expect(t.page.get_by_role("heading", name="New schedule")).to_be_visible()
        form = t.page.locator("form.schedule-form")
        cron = form.get_by_role("textbox", name="Cron expression")
        await cron.fill("61 * * * *")
        error = t.page.locator("#timing-error")
        await expect(error).to_contain_text("minute field '61' is invalid")
        await expect(cron).to_have_attribute("aria-invalid", "true")
        await expect(t.page.get_by_role("button", name="Create schedule")).to_be_disabled()
        await t.screenshot("schedule-form-error")

        await cron.fill("*/15 * * * *")
        await form.get_by_label("Time zone").fill("America/New_York")
        fires = t.page.locator("ol.fires li")
        await expect(fires).to_have_count(5)
        await expect(error).to_be_empty()
        await expect(fires.first.locator("time")).to_have_attribute("data-zone", "America/New_York")
        await expect(fires.first).to_contain_text("your time")  # the browser's zone (Berlin) too
        shown = [
            datetime.fromisoformat(str(await f.locator("time").get_attribute("datetime")))
            for f in await fires.all()
        ]
        trigger = CronTrigger("*/15 * * * *", "America/New_York")
        assert all(b == trigger.next_after(a) for a, b in itertools.pairwise(shown))
        assert all(f.minute % 15 == 0 and f.second == 0 for f in shown)
        await t.screenshot("schedule-form-preview")

        await form.get_by_label("Name", exact=True).fill("add-quarterly")
        await form.get_by_label("Task type", exact=True).fill("t.add")
        await form.get_by_label("Payload (JSON object)").fill("[1, 2]")
        await t.page.get_by_role("button", name="Create schedule").click()
        await expect(t.page.locator("#payload-error")).to_contain_text("must be a JSON object")
        await form.get_by_label("Payload (JSON object)").fill('{"a": 2, "b": 3}')
        await t.page.get_by_role("button", name="Create schedule").click()
        await expect(t.page).to_have_url(f"{gateway.base}/schedules/add-quarterly")
        await expect(t.page.get_by_role("heading", name="Schedule add-quarterly")).to_be_visible()
        stored = await gateway.app.schedules.get("add-quarterly")
        assert stored.spec.cron == "*/15 * * * *" and stored.spec.timezone == "America/New_York"
        assert stored.spec.payload == {"a": 2, "b": 3} and stored.next_fire_at in shown[:2]

        # Edit: an interval instead; the page shows the change.
        await t.page.get_by_role("link", name="Edit").click()
        await expect(t.page).to_have_url(f"{gateway.base}/schedules/add-quarterly?edit=1")
        await form.get_by_label("every N seconds").check()
        await form.get_by_label("Interval seconds").fill("600")
        await expect(fires).to_have_count(5)
        await t.page.get_by_role("button", name="Save changes").click()
        await expect(t.page).to_have_url(f"{gateway.base}/schedules/add-quarterly")
        await expect(t.page.locator("dl.facts")).to_contain_text("every 10 min")
        assert (await gateway.app.schedules.get("add-quarterly")).spec.interval_seconds == 600
        # A refusal by the server is shown, not swallowed.
        await t.open("/schedules?new=1")
        await form.get_by_label("Name", exact=True).fill("add-quarterly")
        await form.get_by_label("Task type", exact=True).fill("t.add")
        await cron.fill("@daily")
        await expect(fires).to_have_count(5)
        await t.page.get_by_role("button", name="Create schedule").click()
        await expect(t.page.locator("form .banner.bad")).to_be_visible()
        t.problems.clear()  # the refused create's 409/422 is logged by the browser


async def test_a_viewer_sees_no_mutating_control_and_is_refused_anyway(
    gateway: RunningGateway, browser: Browser
) -> None:
    await add_schedules(gateway)
    async with tab(browser, gateway.base) as t:
        await t.open("/schedules")
        await t.sign_in(gateway.viewer)
        await expect(t.page.locator("tbody tr")).to_have_count(3)
        await expect(t.page.get_by_role("link", name="New schedule")).to_have_count(0)
        await t.open("/schedules?new=1")
        await expect(t.page.get_by_text("Only an admin can create schedules")).to_be_visible()
        await expect(t.page.locator("form.schedule-form")).to_have_count(0)
        await t.open("/schedules/add-yearly?edit=1")
        await expect(t.page.get_by_role("heading", name="Schedule add-yearly")).to_be_visible()
        await expect(t.page.get_by_role("group", name="Schedule actions")).to_have_count(0)
        await expect(t.page.get_by_role("button")).to_have_count(1)  # Sign out only
        await expect(t.page.locator("form.schedule-form")).to_have_count(0)
        await t.screenshot("schedule-viewer")
        for method, path, body in (
            ("POST", "/api/v1/schedules/add-yearly/pause", None),
            ("POST", "/api/v1/schedules/add-yearly/trigger", None),
            ("PATCH", "/api/v1/schedules/add-yearly", {"cron": "* * * * *"}),
            ("POST", "/api/v1/schedules", {"name": "x", "taskType": "t.add", "manual": True}),
        ):
            assert await forged(t, method, path, body) == 403, path
        # Previewing is a read.
        assert await forged(t, "POST", "/api/v1/schedules/preview", {"cron": "@daily"}) == 200
        t.problems.clear()  # the forged requests' 403s are logged by the browser
    stored = await gateway.app.schedules.get("add-yearly")
    assert not stored.paused and stored.spec.cron == "0 9 1 1 *" and stored.last_fire_at is None


@pytest.mark.parametrize("path", ["/schedules", "/schedules/add-yearly", "/schedules?new=1"])
async def test_no_critical_accessibility_violation(
    gateway: RunningGateway, browser: Browser, path: str
) -> None:
    from axe_playwright_python.async_playwright import Axe

    await add_schedules(gateway)
    await gateway.app.schedules.trigger("add-yearly")
    async with tab(browser, gateway.base) as t:
        await t.open(path)
        await t.sign_in(gateway.admin)
        await t.page.locator("main h1, main h2").first.wait_for()
        await t.page.locator("table, form.schedule-form").first.wait_for()
        results = await Axe().run(t.page)
        critical = [v for v in results.response["violations"] if v["impact"] == "critical"]
        assert critical == [], results.generate_report()
        assert t.problems == []
