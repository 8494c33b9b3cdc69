"""Scan-to-login in a real Chromium against the real stack (docs/console.md, "Scan sign-in").

A charger with a password gets a QR secret from ``polaris scan rotate-secret`` (its QR URL is the
console's ``/console/scan?c=<id>#k=<secret>``). The driver opens that URL on a phone; a real
``ocpp`` 1.6 charge point sends the Authorize of the driver's card; the page lands on the
driver's dashboard, signed in by the JWT alone (no auth session cookie). A wrong code is
answered next to the code field; an operator's card is refused (the operator, signed in with a
password in that browser, stays so); axe runs on each page; the secret reaches neither a page nor
a log.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from ocpp.v16 import ChargePoint, call
from websockets.asyncio.client import connect

from tests.console.browser import check_accessibility
from tests.console.conftest import ConsoleStack
from tests.console.test_console_driver import PHONE, polaris, printed

pytestmark = pytest.mark.timeout(600)


@dataclass
class ScanCharger:
    charger: str
    password: str
    qr_url: str
    secret: str


@pytest.fixture(scope="module")
async def scan_charger(console_stack: ConsoleStack) -> ScanCharger:
    charger = f"CP-S-{uuid.uuid4().hex[:6].upper()}"
    added = await polaris(console_stack, "chargers", "add", charger, "--connectors", "1")
    rotated = await polaris(console_stack, "scan", "rotate-secret", charger)
    shown = dict(line.split(":", 1) for line in rotated.splitlines()[:3])
    return ScanCharger(
        charger, printed("password", added), shown["qr url"].strip(), shown["secret"].strip()
    )


async def linked_card(stack: ConsoleStack, email: str) -> str:
    card = f"04S{uuid.uuid4().hex[:8].upper()}"
    await polaris(stack, "cards", "add", card, "--label", "Scan card")
    linked = await polaris(stack, "cards", "link", card, "--email", email, "--name", "Sam")
    assert f"card {card} linked to {email}" in linked, linked
    return card


@asynccontextmanager
async def charge_point(stack: ConsoleStack, sc: ScanCharger) -> AsyncIterator[ChargePoint]:
    basic = base64.b64encode(f"{sc.charger}:{sc.password}".encode()).decode()
    async with connect(
        f"{stack.gateway_url}/{sc.charger}",
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        additional_headers={"Authorization": f"Basic {basic}"},
        open_timeout=30,
    ) as ws:
        cp = ChargePoint(sc.charger, ws, response_timeout=30)
        task = asyncio.create_task(cp.start())
        try:
            booted = await cp.call(
                call.BootNotification(charge_point_vendor="Polaris", charge_point_model="QR"),
                suppress=False,
            )
            assert booted.status == "Accepted", booted
            yield cp
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def tap(cp: ChargePoint, id_tag: str) -> str:
    answer = await cp.call(call.Authorize(id_tag=id_tag), suppress=False)
    return str(answer.id_tag_info["status"])


async def open_qr_and_wait_for_tap(page: Any, sc: ScanCharger) -> None:
    await page.goto(sc.qr_url)
    await page.get_by_role("heading", name="Tap your card").wait_for()
    # The secret left the address bar (and was never in a URL the server saw).
    assert sc.secret not in page.url
    assert sc.secret not in await page.content()
    await check_accessibility(page, "scan: tap your card")


async def test_a_driver_signs_in_by_scanning_a_chargers_code(
    console_stack: ConsoleStack, scan_charger: ScanCharger, new_page: Any
) -> None:
    stack, sc = console_stack, scan_charger
    assert sc.qr_url == f"{stack.api_url}/console/scan?c={sc.charger}#k={sc.secret}"
    driver = await stack.driver()
    card = await linked_card(stack, driver)
    page = await new_page(**PHONE)

    # A wrong code: the API's one 404, told next to the code field; nothing armed.
    await page.goto(f"/console/scan?c={sc.charger}#k=not-the-code-{uuid.uuid4().hex}")
    error = page.locator("#e-code")
    await error.wait_for()
    assert "does not open a sign-in" in await error.inner_text()
    assert await page.locator("#f-charger").input_value() == sc.charger
    assert await page.locator("#f-code").input_value() == ""
    await check_accessibility(page, "scan: wrong code")

    async with charge_point(stack, sc) as cp:
        await open_qr_and_wait_for_tap(page, sc)
        assert await tap(cp, card) == "Accepted"
        await page.wait_for_url("**/console/driver")
        await page.get_by_role("heading", name="My charging").wait_for()
        await check_accessibility(page, "driver dashboard after a scan")

    cookies = {c["name"]: c for c in await page.context.cookies()}
    assert "polaris_console" not in cookies  # no auth session: the JWT only
    scan_cookie = cookies["polaris_console_scan"]
    assert scan_cookie["httpOnly"] and scan_cookie["sameSite"] == "Lax"
    assert scan_cookie["expires"] > 0  # dies with the JWT, no refresh
    assert "polaris_console_scan_claim" not in cookies

    # A JWT that no longer verifies (here: tampered; likewise an expired one) is no sign-in.
    await page.context.add_cookies(
        [{**scan_cookie, "value": scan_cookie["value"][:-4] + "AAAA"}]  # type: ignore[typeddict-item]
    )
    await page.goto("/console/driver")
    await page.wait_for_url("**/console/sign-in")

    assert sc.secret not in stack.logs()


async def test_an_operators_card_cannot_sign_in_by_scanning(
    console_stack: ConsoleStack, scan_charger: ScanCharger, new_page: Any
) -> None:
    stack, sc = console_stack, scan_charger
    email, password = await stack.operator()
    card = await linked_card(stack, email)
    page = await new_page(**PHONE)
    # Already signed in with a password in this browser: the scan's forms carry that session's
    # CSRF token, and a refused scan leaves that session alone.
    await page.goto("/console/sign-in")
    await page.locator("#f-email").fill(email)
    await page.locator("#f-password").fill(password)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await page.wait_for_url("**/console/operator")
    async with charge_point(stack, sc) as cp:
        await open_qr_and_wait_for_tap(page, sc)
        # The tap itself is answered as always; only the sign-in is refused.
        assert await tap(cp, card) == "Accepted"
        refusal = page.get_by_role("alert")
        await refusal.get_by_text("cannot sign in by scanning").wait_for()
        await page.get_by_text("Not signed in.").wait_for()
        await check_accessibility(page, "scan: refused")
    assert "/console/scan/" in page.url
    cookies = {c["name"] for c in await page.context.cookies()}
    assert "polaris_console_scan" not in cookies and "polaris_console" in cookies
    await page.goto("/console")
    await page.wait_for_url("**/console/operator")
