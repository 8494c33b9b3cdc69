"""The driver's pages in a real Chromium (phone viewport) against the real stack.

A driver signs in with the magic link read from the mail outbox, finds a charger by the phone's
location, starts a charge on it — a real ``ocpp`` 1.6 charge point that answers
RemoteStartTransaction and starts a transaction — watches the kWh and kW rise without reloading
(the SSE stream makes htmx re-fetch the figures), stops it (RemoteStopTransaction, the charger
stops) and sees the session billed and the notice in the inbox. A second driver without a card
is refused with NO_CARD's message next to the connector, gets 404 for the first driver's pages
and for operator pages. Reservations: a taken slot answers with free slots, one click reserves
one, cancel. axe-core runs on every driver page. The live session's screenshot goes to
docs/screenshots/ for the README.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import re
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ocpp.routing import after, on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action
from websockets.asyncio.client import connect

from tests.console.browser import SCREENSHOTS, check_accessibility
from tests.console.conftest import ROOT, ConsoleStack
from tests.helpers import eventually

pytestmark = pytest.mark.timeout(600)

# A phone, in UTC (the reservation form's times are the browser's).
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "is_mobile": True,
    "has_touch": True,
    "timezone_id": "UTC",
}


def at(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def now() -> str:
    return at(datetime.now(UTC))


class ChargingPoint(ChargePoint):  # type: ignore[misc]
    """A charger that starts a transaction when told to (RemoteStartTransaction), reports its
    register and power when the test says so, and stops when told to.

    Its transaction starts half an hour ago, and each reading is dated some minutes after that
    start: the gateway flags energy a charger of its power could not have delivered in the time
    between two readings, so a reading must not come seconds after the previous one."""

    __test__ = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.register_wh = 0
        self.transaction_id: int | None = None
        self.started_at = datetime.now(UTC)
        self.id_tag: str | None = None
        self.started = asyncio.Event()
        self.stopped = asyncio.Event()

    @on(Action.remote_start_transaction)
    async def on_remote_start(self, id_tag: str, **_: Any) -> Any:
        return call_result.RemoteStartTransaction(status="Accepted")

    @after(Action.remote_start_transaction)
    async def begin(self, id_tag: str, connector_id: int = 1, **_: Any) -> None:
        self.id_tag = id_tag
        await self.call(
            call.StatusNotification(
                connector_id=connector_id, error_code="NoError", status="Preparing"
            )
        )
        self.started_at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
        answer = await self.call(
            call.StartTransaction(
                connector_id=connector_id,
                id_tag=id_tag,
                meter_start=self.register_wh,
                timestamp=at(self.started_at),
            )
        )
        self.transaction_id = int(answer.transaction_id)
        await self.call(
            call.StatusNotification(
                connector_id=connector_id, error_code="NoError", status="Charging"
            )
        )
        self.started.set()

    async def meter(self, register_wh: int, power_w: int, *, minutes: int) -> None:
        """A reading dated ``minutes`` after the transaction's start."""
        assert self.transaction_id is not None
        self.register_wh = register_wh
        await self.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=self.transaction_id,
                meter_value=[
                    {
                        "timestamp": at(self.started_at + timedelta(minutes=minutes)),
                        "sampledValue": [
                            {
                                "value": str(register_wh),
                                "measurand": "Energy.Active.Import.Register",
                                "unit": "Wh",
                                "context": "Sample.Periodic",
                            },
                            {
                                "value": str(power_w),
                                "measurand": "Power.Active.Import",
                                "unit": "W",
                                "context": "Sample.Periodic",
                            },
                        ],
                    }
                ],
            )
        )

    @on(Action.remote_stop_transaction)
    async def on_remote_stop(self, transaction_id: int, **_: Any) -> Any:
        return call_result.RemoteStopTransaction(status="Accepted")

    @after(Action.remote_stop_transaction)
    async def end(self, transaction_id: int, **_: Any) -> None:
        await self.call(
            call.StopTransaction(
                meter_stop=self.register_wh,
                timestamp=now(),
                transaction_id=transaction_id,
                id_tag=self.id_tag,
                reason="Remote",
            )
        )
        await self.call(
            call.StatusNotification(connector_id=1, error_code="NoError", status="Available")
        )
        self.stopped.set()


@dataclass
class Network:
    site: str
    lat: float
    lon: float
    charger: str
    password: str
    card: str
    driver: str


async def polaris(stack: ConsoleStack, *args: str) -> str:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "cli.main", *args],
        env={**os.environ, **stack.cli_env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr, stack.logs())
    return done.stdout


def printed(label: str, text: str) -> str:
    found = re.search(rf"^{re.escape(label)}: (\S+)", text, re.MULTILINE)
    assert found, f"no {label!r} line in:\n{text}"
    return found.group(1)


@pytest.fixture(scope="module")
async def network(console_stack: ConsoleStack) -> Network:
    """A site somewhere nobody else's is, a tariff, a charger with two connectors, and a driver
    whose card is linked (the link saga gives them a Lago customer and subscription)."""
    suffix = uuid.uuid4().hex[:6].upper()
    # 5 decimals: what "use my location" fills in.
    lat, lon = round(random.uniform(-50, 50), 5), round(random.uniform(-150, 150), 5)
    site, tariff, charger, card = (
        f"Harbour {suffix}",
        f"DRV-{suffix}",
        f"CP-D-{suffix}",
        f"04D{suffix}",
    )
    stack = console_stack
    await polaris(stack, "sites", "add", site, "--address", "Quay 1", "--lat", str(lat),
                  "--lon", str(lon), "--timezone", "UTC")  # fmt: skip
    await polaris(stack, "tariffs", "add", tariff, "--currency", "EUR", "--kwh-minor", "30",
                  "--session-minor", "50")  # fmt: skip
    added = await polaris(stack, "chargers", "add", charger, "--connectors", "2", "--site",
                          site, "--tariff", tariff, "--max-power-w", "22000")  # fmt: skip
    driver = await stack.driver()
    await polaris(stack, "cards", "add", card, "--label", "My card")
    linked = await polaris(stack, "cards", "link", card, "--email", driver, "--name", "Dana")
    assert f"card {card} linked to {driver}" in linked, linked
    return Network(site, lat, lon, charger, printed("password", added), card, driver)


@asynccontextmanager
async def charge_point(stack: ConsoleStack, net: Network) -> AsyncIterator[ChargingPoint]:
    basic = base64.b64encode(f"{net.charger}:{net.password}".encode()).decode()
    async with connect(
        f"{stack.gateway_url}/{net.charger}",
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        additional_headers={"Authorization": f"Basic {basic}"},
        open_timeout=30,
    ) as ws:
        cp = ChargingPoint(net.charger, ws, response_timeout=30)
        task = asyncio.create_task(cp.start())
        try:
            booted = await cp.call(
                call.BootNotification(charge_point_vendor="Polaris", charge_point_model="Bay"),
                suppress=False,
            )
            assert booted.status == "Accepted", booted
            for connector in (0, 1, 2):
                await cp.call(
                    call.StatusNotification(
                        connector_id=connector, error_code="NoError", status="Available"
                    ),
                    suppress=False,
                )

            async def online() -> bool:
                shown = json.loads(await polaris(stack, "chargers", "show", net.charger, "--json"))
                assert shown["connected"] is True, shown
                return True

            await eventually(online, timeout=60, message=f"{net.charger} connected")
            yield cp
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def sign_in(stack: ConsoleStack, page: Any, email: str) -> None:
    await page.goto("/console/sign-in")
    await page.locator("#f-magic_email").fill(email)
    await page.get_by_role("button", name="E-mail me a sign-in link").click()
    await page.get_by_role("heading", name="Check your e-mail").wait_for()
    await page.goto(await stack.magic_link(email))
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/console/driver")


async def no_wider_than_the_phone(page: Any) -> None:
    width = await page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["viewport"]["width"], f"{page.url} is {width}px wide"  # type: ignore[index]


async def visit(page: Any, path: str, heading: str) -> None:
    await page.goto(path)
    await page.get_by_role("heading", name=heading, exact=True).first.wait_for()
    await no_wider_than_the_phone(page)
    await check_accessibility(page, path)


async def test_a_driver_charges_from_the_phone(
    console_stack: ConsoleStack, network: Network, new_page: Any
) -> None:
    stack, net = console_stack, network
    page = await new_page(
        **PHONE,
        geolocation={"latitude": net.lat, "longitude": net.lon},
        permissions=["geolocation"],
    )
    await sign_in(stack, page, net.driver)
    await page.get_by_role("heading", name="My charging").wait_for()
    await check_accessibility(page, "driver dashboard")

    async with charge_point(stack, net) as cp:
        # Find the charger by the phone's location; start on connector 1.
        await visit(page, "/console/driver/chargers", "Find a charger")
        await page.get_by_role("button", name="Use my location").click()
        start = page.get_by_role("button", name=f"Start charging on {net.charger} connector 1")
        await start.wait_for()
        assert "€0.30 per kWh" in await page.locator(f'[data-charger="{net.charger}"]').inner_text()
        await no_wider_than_the_phone(page)
        await check_accessibility(page, "nearby chargers")
        await start.click()
        await page.wait_for_url("**/console/driver/sessions/**")
        session_url = page.url
        await asyncio.wait_for(cp.started.wait(), 60)
        assert cp.id_tag == net.card

        # Live: the figures follow the charger's meter values without a reload.
        await page.locator("[data-live-status]", has_text="live").wait_for()
        await page.evaluate("() => { window.__sameDocument = true; }")
        kwh = page.locator("[data-live-kwh]")
        await cp.meter(1500, 11000, minutes=10)
        await page.locator("[data-live-kwh]", has_text="1.500").wait_for(timeout=60_000)
        await cp.meter(3200, 11500, minutes=20)
        await page.locator("[data-live-kwh]", has_text="3.200").wait_for(timeout=60_000)
        await page.locator("[data-live-kw]", has_text="11.5").wait_for(timeout=60_000)
        assert await page.evaluate("() => window.__sameDocument === true")
        await page.locator("[data-meter-chart] canvas").first.wait_for()
        await page.wait_for_function(
            "() => Number(document.querySelector('[data-meter-chart]').dataset.lastKwh) >= 3.2",
            timeout=60_000,
        )
        assert await kwh.inner_text() == "3.200"
        await no_wider_than_the_phone(page)
        await check_accessibility(page, "live session")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(
            path=str(SCREENSHOTS / "console-driver-live-session.png"), full_page=True
        )

        # Stop: the charger stops its transaction; the session is billed (3.2 kWh × 0.30 + 0.50).
        await page.get_by_role("button", name="Stop charging").click()
        await asyncio.wait_for(cp.stopped.wait(), 60)
        billed = page.locator("[data-billed]")
        await billed.wait_for(timeout=180_000)
        assert "1.46 EUR" in await billed.inner_text()
        await check_accessibility(page, "billed session")

        # A second driver, without a card: NO_CARD's message next to the connector.
        other_email = await stack.driver()
        other = await new_page(
            **PHONE,
            geolocation={"latitude": net.lat, "longitude": net.lon},
            permissions=["geolocation"],
        )
        await sign_in(stack, other, other_email)
        await other.goto(f"/console/driver/chargers?lat={net.lat}&lon={net.lon}&radius_km=1")
        await other.get_by_role(
            "button", name=f"Start charging on {net.charger} connector 2"
        ).click()
        refusal = other.locator("#start-error-2")
        await refusal.wait_for()
        assert "no charging card" in await refusal.inner_text()
        await check_accessibility(other, "start refused")

        # ... and nothing of the first driver's, nor any operator page.
        for path in (
            session_url.removeprefix(stack.api_url),
            session_url.removeprefix(stack.api_url) + "/meter.json",
            session_url.removeprefix(stack.api_url) + "/live",
            "/console/operator",
            "/console/operator/sessions",
        ):
            answer = await other.goto(path)
            assert answer is not None and answer.status == 404, path

    # The inbox has the billed session; read it, archive it.
    await visit(page, "/console/driver/notifications", "Notifications")
    notice = page.locator(".notification", has_text=net.charger).first
    await notice.wait_for(timeout=60_000)
    await notice.get_by_role("button", name=re.compile("^Mark .* read$")).click()
    await page.get_by_role("heading", name="Notifications").wait_for()
    notice = page.locator(".notification", has_text=net.charger).first
    assert await notice.locator(".badge", has_text="new").count() == 0
    await notice.get_by_role("button", name=re.compile("^Archive ")).click()
    await visit(page, "/console/driver/notifications?archived=true", "Notifications")
    await page.locator(".notification", has_text=net.charger).first.wait_for()

    # The other pages: history, dashboard (last sessions, usage chart), cards, billing.
    await visit(page, "/console/driver/sessions", "My sessions")
    assert "1.46 EUR" in await page.locator("table").inner_text()
    await visit(page, "/console/driver", "My charging")
    await page.locator("[data-usage-chart] canvas").first.wait_for()
    assert net.charger in await page.locator("#last-h + ul").inner_text()
    await visit(page, "/console/driver/cards", "My cards")
    await visit(page, "/console/driver/billing", "Billing")
    await visit(page, "/console/driver/reservations", "My reservations")


async def test_reservations_suggest_free_slots_and_cancel(
    console_stack: ConsoleStack, network: Network, new_page: Any
) -> None:
    stack, net = console_stack, network
    page = await new_page(**PHONE)
    await sign_in(stack, page, net.driver)
    await visit(page, "/console/driver/reservations", "My reservations")
    start = (datetime.now(UTC) + timedelta(days=2)).replace(
        hour=9, minute=0, second=0, microsecond=0
    )

    async def reserve(when: str) -> None:
        await page.locator("#f-charge_box_id").fill(net.charger)
        await page.locator("#f-connector_id").fill("2")
        await page.locator("#f-starts_at").fill(when)
        await page.locator("#f-duration_min").fill("30")
        await page.get_by_role("button", name="Reserve", exact=True).click()

    await reserve(start.strftime("%Y-%m-%dT%H:%M"))
    await page.wait_for_url("**/console/driver/reservations")
    rows = page.locator(".reservation")
    await rows.first.wait_for()
    assert await rows.count() == 1
    # The same slot again: taken, with free slots nearby.
    await reserve(start.strftime("%Y-%m-%dT%H:%M"))
    await page.locator("#e-starts_at").wait_for()
    assert "already reserved" in await page.locator("#e-starts_at").inner_text()
    assert await page.locator("#f-starts_at").get_attribute("aria-invalid") == "true"
    assert "SLOT_TAKEN" in await page.locator("#reserve-error").inner_text()
    suggested = page.locator("[data-suggested-slot]")
    assert await suggested.count() >= 1
    await check_accessibility(page, "slot taken")
    await suggested.first.click()
    await page.wait_for_url("**/console/driver/reservations")
    await page.locator(".reservation").nth(1).wait_for()
    assert await page.locator(".reservation").count() == 2

    # The duration the API refuses: its issue next to the minutes.
    await page.locator("#f-charge_box_id").fill(net.charger)
    await page.locator("#f-starts_at").fill(start.strftime("%Y-%m-%dT%H:%M"))
    await page.locator("#f-duration_min").fill("5")
    await page.get_by_role("button", name="Reserve", exact=True).click()
    await page.locator("#e-duration_min").wait_for()
    await check_accessibility(page, "reservation refused")

    # Cancel both.
    for _ in range(2):
        await page.get_by_role("button", name=re.compile("^Cancel the reservation")).first.click()
        await page.wait_for_url("**/console/driver/reservations")
    assert await page.locator(".reservation .badge", has_text="cancelled").count() == 2
    # The dashboard's next reservation is gone too.
    await visit(page, "/console/driver", "My charging")
