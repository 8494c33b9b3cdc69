"""The operator's console in a real Chromium against the real stack (issue #11): an operator
signs in, adds a charger, watches it connect, previews then sends a Reset and sees the charger's
answer, opens a live session and watches its kWh rise, and reads its workflow history after the
stop. axe-core checks every page visited; the README's screenshots are saved on the way
(docs/screenshots/)."""

from __future__ import annotations

import asyncio
import base64
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from ocpp.v16 import call
from pydantic import SecretStr
from websockets.asyncio.client import connect

from activities.lago import LagoBilling
from config.settings import Settings
from db.engine import make_engine, make_session_factory
from tests.billing.conftest import API_KEY, seed_driver
from tests.console.browser import SCREENSHOTS, api_call, check_accessibility
from tests.console.conftest import ConsoleStack
from tests.console.test_console_foundation import sign_in_with_password
from tests.operations.charger import OperationsCharger

pytestmark = pytest.mark.timeout(600)

MAX_POWER_W = 10_000_000  # a test charger delivers kWh in seconds


@asynccontextmanager
async def charge_point(
    stack: ConsoleStack, charge_box_id: str, password: str
) -> AsyncIterator[Any]:
    basic = base64.b64encode(f"{charge_box_id}:{password}".encode()).decode()
    async with connect(
        f"{stack.gateway_url}/{charge_box_id}",
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        additional_headers={"Authorization": f"Basic {basic}"},
        open_timeout=30,
    ) as ws:
        cp = OperationsCharger(charge_box_id, ws, response_timeout=30)
        task = asyncio.create_task(cp.start())
        try:
            await cp.call(
                call.BootNotification(charge_point_vendor="Polaris", charge_point_model="Bay"),
                suppress=False,
            )
            yield cp
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


async def meter(cp: Any, tx: int, wh: int) -> None:
    await cp.call(
        call.MeterValues(
            connector_id=1,
            transaction_id=tx,
            meter_value=[
                {
                    "timestamp": now(),
                    "sampledValue": [
                        {
                            "value": str(wh),
                            "measurand": "Energy.Active.Import.Register",
                            "unit": "Wh",
                            "context": "Sample.Periodic",
                        }
                    ],
                }
            ],
        ),
        suppress=False,
    )


async def a_driver_card(stack: ConsoleStack) -> str:
    """A card whose driver has a Lago customer and subscription: its idTag."""
    settings = Settings(
        env="test",
        database_url=stack.pg_url,
        lago_api_url=stack.sandbox.url,
        lago_api_key=SecretStr(API_KEY),
    )
    engine = make_engine(stack.pg_url)
    try:
        driver = await seed_driver(
            make_session_factory(engine), LagoBilling(settings, make_session_factory(engine))
        )
    finally:
        await engine.dispose()
    return driver.id_tag


async def test_operator_runs_a_charger_from_the_console(
    console_stack: ConsoleStack, new_page: Any
) -> None:
    stack = console_stack
    page = await new_page()
    email, password = await stack.operator()
    await sign_in_with_password(page, email, password)
    await page.wait_for_url("**/console/operator")

    # -- a tariff for the charger, so the session has a price and a cost ---------------------
    tariff = f"WEB-{uuid.uuid4().hex[:6].upper()}"
    made = await api_call(
        page,
        "POST",
        "/api/v1/tariffs",
        json={"code": tariff, "currency": "EUR", "price_per_kwh_minor": 35},
    )
    assert made["status"] == 201, made

    # -- add a charger: the API's error next to the field, then success -----------------------
    await page.get_by_role("link", name="Chargers").click()
    await page.wait_for_url("**/console/operator/chargers")
    await check_accessibility(page, "chargers")
    charge_box_id = f"WEB-{uuid.uuid4().hex[:8].upper()}"
    await page.locator("#f-charge_box_id").fill(charge_box_id)
    await page.locator("#f-connectors").fill("0")
    await page.get_by_role("button", name="Add charger").click()
    problem = page.locator("#e-connectors")
    await problem.wait_for()
    assert await page.locator("#f-connectors").get_attribute("aria-invalid") == "true"
    await check_accessibility(page, "add charger, refused")
    await page.locator("#f-connectors").fill("2")
    await page.locator("#f-max_power_w").fill(str(MAX_POWER_W))
    await page.locator("#f-tariff").fill(tariff)
    await page.get_by_role("button", name="Add charger").click()
    secret = await page.locator("[data-charger-password]").text_content()
    assert secret
    await check_accessibility(page, "charger added")
    await page.get_by_role("link", name="Open the charger").click()
    await page.wait_for_url(f"**/console/operator/chargers/{charge_box_id}")
    await page.locator("[data-live-status]", has_text="live").wait_for()
    await page.locator("[data-connection]", has_text="offline").wait_for()

    card = await a_driver_card(stack)
    async with charge_point(stack, charge_box_id, secret.strip()) as cp:
        # -- it connects: the page updates without a reload --------------------------------
        await page.locator("[data-connection]", has_text="online").wait_for()
        await check_accessibility(page, "charger detail")

        # -- the operation panel: dry run, then the real Reset ------------------------------
        await page.locator("#f-action").select_option("Reset")
        await page.locator("#f-fields").fill('{"type": "Sideways"}')
        await page.get_by_role("button", name="Preview the frame (dry run)").click()
        await page.locator("#e-fields").wait_for()  # the schema's complaint, next to the box
        await page.locator("#f-fields").fill('{"type": "Soft"}')
        await page.get_by_role("button", name="Preview the frame (dry run)").click()
        frame = await page.locator("[data-frame]").text_content()
        assert frame and '"Reset"' in frame and '"Soft"' in frame
        assert not [r for r in cp.received if r[1] == "Reset"], "a dry run sends nothing"
        await page.get_by_role("button", name="Send").click()
        await page.locator("[data-operation-status]", has_text="answered").wait_for()
        answer = await page.locator("[data-operation-response]").text_content()
        assert answer and "Accepted" in answer
        await check_accessibility(page, "operation answered")

        # -- a live session: the dashboard lists it, its kWh rise on the session page --------
        tapped = await cp.call(call.Authorize(id_tag=card), suppress=False)
        assert tapped.id_tag_info["status"] == "Accepted"
        started = await cp.call(
            call.StartTransaction(connector_id=1, id_tag=card, meter_start=0, timestamp=now()),
            suppress=False,
        )
        tx = int(started.transaction_id)
        await meter(cp, tx, 400)
        await page.get_by_role("link", name="Dashboard").click()
        await page.wait_for_url("**/console/operator")
        session_link = page.get_by_role("link", name=f"{charge_box_id}/1")
        await session_link.wait_for()
        await page.locator("[data-live-status]", has_text="live").wait_for()
        # The shot shows the live figures once they caught up: the session counted, its kWh.
        await page.locator("[data-kpi='active_sessions']", has_text="1").wait_for()
        await page.locator("[data-energy]", has_text="0.400 kWh").wait_for(timeout=60_000)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / "operator-dashboard.png"), full_page=True)
        await check_accessibility(page, "dashboard with a live session")
        await session_link.click()
        await page.wait_for_url(re.compile(r".*/console/operator/sessions/.+"))
        await page.locator("[data-live-status]", has_text="live").wait_for()
        energy = page.locator("[data-session-energy]")
        for wh in (1200, 2500):
            await meter(cp, tx, wh)
            await page.locator(f"[data-session-energy][data-wh='{wh}']").wait_for(timeout=60_000)
        assert "2.500 kWh" in (await energy.text_content() or "")
        chart = page.locator("[data-meter-chart]")
        await page.wait_for_function(
            "() => Number(document.querySelector('[data-meter-chart]').dataset.points || 0) >= 2"
        )
        assert await chart.locator("canvas").count() >= 1
        await check_accessibility(page, "live session")

        await cp.call(
            call.StopTransaction(
                meter_stop=3000, timestamp=now(), transaction_id=tx, id_tag=card, reason="Local"
            ),
            suppress=False,
        )
        # -- after the stop: the state and the workflow history on the same page -----------
        await page.locator(
            "[data-session-state]", has_text=re.compile("stopped|billed|closed")
        ).wait_for(timeout=90_000)
        # Billed under the charger's tariff: 3 kWh at 0.35 EUR.
        await page.locator(f"[data-session-tariff='{tariff}']").wait_for(timeout=90_000)
        await page.locator("[data-session-cost='105']").wait_for(timeout=90_000)
        timeline = page.locator("[data-timeline]")
        await timeline.locator("li[data-kind='activity']").first.wait_for(timeout=60_000)
        await timeline.locator("li[data-kind='signal']").first.wait_for()
        assert await page.get_by_role("link", name="Open in the Temporal UI").count() == 1
        await page.locator("#timeline").scroll_into_view_if_needed()
        await page.screenshot(
            path=str(SCREENSHOTS / "operator-session-timeline.png"), full_page=True
        )
        await check_accessibility(page, "session timeline")

    # -- the logs ----------------------------------------------------------------------------
    await page.get_by_role("link", name="Operations").click()
    await page.get_by_role("link", name="Reset").first.wait_for()
    await check_accessibility(page, "operations log")
    await page.get_by_role("link", name="Audit").click()
    await page.get_by_role("cell", name="operation.dry_run").first.wait_for()
    await check_accessibility(page, "audit log")
    await page.get_by_role("link", name="Sessions").click()
    await page.get_by_role("cell", name=charge_box_id + "/1").first.wait_for()
    await check_accessibility(page, "sessions")
