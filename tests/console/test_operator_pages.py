"""The operator console's other pages in a real Chromium against the real stack (issue #11):
tariffs (a refused then an added version), sites, cards (the link saga's steps, report lost),
users (impersonation with its banner and "Stop impersonating", ban and unban), reservations
(cancel), billing (the Lago webhook log, a replay, the breaker's reset) and firmware campaigns
(start, halt). axe-core checks every page visited."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from pydantic import SecretStr

from activities.lago import LagoBilling
from cli.service_context import open_service_context
from config.settings import Settings, libpq_url
from db.engine import make_engine, make_session_factory
from services import reservations
from services.actor import Actor
from tests.billing.conftest import API_KEY, seed_driver
from tests.console.browser import api_call, check_accessibility
from tests.console.conftest import ConsoleStack
from tests.console.test_console_foundation import sign_in_with_password

pytestmark = pytest.mark.timeout(600)


def _settings(stack: ConsoleStack) -> Settings:
    env = stack.cli_env
    return Settings(
        env="test",
        database_url=stack.pg_url,
        temporal_address=env["POLARIS_TEMPORAL_ADDRESS"],
        temporal_task_queue=env["POLARIS_TEMPORAL_TASK_QUEUE"],
        lago_api_url=stack.sandbox.url,
        lago_api_key=SecretStr(API_KEY),
    )


async def _sql(stack: ConsoleStack, query: str, *args: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(libpq_url(stack.pg_url)) as conn:
        cur = await conn.execute(query, args)
        rows = await cur.fetchall() if cur.description else []
        await conn.commit()
    return list(rows)


async def _lago_webhook(stack: ConsoleStack, kind: str) -> int:
    """A signed Lago webhook delivered to the API, as Lago delivers it: the stored event's id."""
    body = json.dumps(
        {
            "webhook_type": kind,
            "object_type": "invoice",
            "invoice": {"lago_id": str(uuid.uuid4()), "number": "WEB-0001", "status": "draft"},
        }
    ).encode()
    secret = stack.cli_env["POLARIS_LAGO_WEBHOOK_SECRET"]
    signature = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.post(
            stack.url("/api/webhook/lago"),
            content=body,
            headers={
                "content-type": "application/json",
                "x-lago-signature": signature.decode(),
                "x-lago-signature-algorithm": "hmac",
                "x-lago-unique-key": str(uuid.uuid4()),
            },
        )
    assert answer.status_code == 200, answer.text
    return int(answer.json()["id"])


async def test_operator_pages(console_stack: ConsoleStack, new_page: Any) -> None:
    stack = console_stack
    page = await new_page()
    email, password = await stack.operator()
    await sign_in_with_password(page, email, password)
    await page.wait_for_url("**/console/operator")
    await page.locator("[data-breaker-state]").wait_for()  # the breaker, on the dashboard
    suffix = uuid.uuid4().hex[:6].upper()

    # -- tariffs: add one, a refused version (the error next to its field), then a version ---
    await page.get_by_role("link", name="Tariffs").click()
    await page.wait_for_url("**/console/operator/tariffs")
    await check_accessibility(page, "tariffs")
    code = f"WEB-{suffix}"
    await page.locator("#f-code").fill(code)
    await page.locator("#f-currency").fill("euro")
    await page.locator("#f-price_per_kwh_minor").fill("35")
    await page.get_by_role("button", name="Add tariff").click()
    await page.locator("#e-currency").wait_for()
    assert await page.locator("#f-currency").get_attribute("aria-invalid") == "true"
    await check_accessibility(page, "tariff refused")
    await page.locator("#f-currency").fill("EUR")
    await page.get_by_role("button", name="Add tariff").click()
    await page.wait_for_url(f"**/console/operator/tariffs/{code}")
    await page.locator("[data-version='1']").wait_for()
    await page.locator("#f-price_per_kwh_minor").fill("-1")
    await page.get_by_role("button", name="Add version").click()
    await page.locator("#e-price_per_kwh_minor").wait_for()
    await page.locator("#f-price_per_kwh_minor").fill("42")
    await page.locator("#f-price_per_kwh_minor").press("Enter")  # by keyboard: Enter submits
    version = page.locator("[data-version='2']")
    await version.wait_for()
    assert "0.42 EUR" in (await version.text_content() or "")
    await check_accessibility(page, "tariff with two versions")

    # -- sites: coordinates go in pairs (both fields say so), then add and rename -------------
    await page.get_by_role("link", name="Sites").click()
    await page.wait_for_url("**/console/operator/sites")
    await check_accessibility(page, "sites")
    await page.locator("#f-name").fill(f"Depot {suffix}")
    await page.locator("#f-latitude").fill("52.37")
    await page.get_by_role("button", name="Add site").click()
    await page.locator("#e-longitude").wait_for()
    await page.locator("#f-longitude").fill("4.89")
    await page.get_by_role("button", name="Add site").click()
    await page.wait_for_url("**/console/operator/sites/*")
    await page.locator("#f-name").fill(f"Depot {suffix} North")
    await page.get_by_role("button", name="Save site").click()
    await page.get_by_role("status").filter(has_text="Saved").wait_for()
    assert await page.locator("h1").text_content() == f"Site Depot {suffix} North"
    await check_accessibility(page, "site")

    # -- cards: add one, link it and watch the saga's steps, report it lost -----------------
    await page.get_by_role("link", name="Cards").click()
    await page.wait_for_url("**/console/operator/cards")
    await check_accessibility(page, "cards")
    id_tag = f"WC{suffix}"
    await page.locator("#f-id_tag").fill(id_tag)
    await page.get_by_role("button", name="Add card").click()
    await page.wait_for_url(f"**/console/operator/cards/{id_tag}")
    await check_accessibility(page, "card")
    await page.locator("#f-email").fill("not-an-address")
    await page.get_by_role("button", name="Link the card").click()
    await page.locator("#e-email").wait_for()
    driver_email = f"linked-{suffix.lower()}@example.test"
    await page.locator("#f-email").fill(driver_email)
    await page.get_by_role("button", name="Link the card").click()
    await page.locator("[data-link-status='linked']").wait_for(timeout=120_000)
    for step in ("prepare", "lago_customer", "lago_subscription", "auth_user", "mapping"):
        await page.locator(f"[data-step='{step}'][data-step-state='done']").wait_for()
    await check_accessibility(page, "card linked")
    await page.reload()
    await page.get_by_role("link", name=driver_email).wait_for()
    await page.get_by_role("button", name="Report lost").click()
    await page.locator("[data-card-state]", has_text="lost").wait_for()
    assert await page.get_by_role("button", name="Report lost").count() == 0
    await check_accessibility(page, "card lost")

    # -- users: impersonate (banner, stop), ban (a refused length first), unban -------------
    await page.get_by_role("link", name="Users").click()
    await page.wait_for_url("**/console/operator/users")
    await check_accessibility(page, "users")
    await page.locator("#f-search").fill(driver_email)
    await page.get_by_role("button", name="Search").click()
    await page.get_by_role("link", name=driver_email).click()
    await page.wait_for_url("**/console/operator/users/*")
    user_url = page.url
    await check_accessibility(page, "user")
    await page.get_by_role("button", name="View as this driver").click()
    await page.wait_for_url("**/console/driver")
    banner = page.get_by_role("status").filter(has_text="Viewing as")
    await banner.wait_for()
    assert driver_email in (await banner.text_content() or "")
    await check_accessibility(page, "impersonating")
    await page.get_by_role("button", name="Stop impersonating").click()
    await page.wait_for_url("**/console/operator/users")
    assert await page.get_by_text("Viewing as").count() == 0
    await page.goto(user_url)
    await page.locator("#f-expires_in_s").fill("5")
    await page.get_by_role("button", name="Ban", exact=True).click()
    await page.locator("#e-expires_in_s").wait_for()
    await page.locator("#f-expires_in_s").fill("")
    await page.locator("#f-reason").fill("console test")
    await page.get_by_role("button", name="Ban", exact=True).click()
    await page.locator("[data-user-state]", has_text="banned").wait_for()
    await check_accessibility(page, "user banned")
    await page.get_by_role("button", name="Unban").click()
    await page.locator("[data-user-state]", has_text="active").wait_for()
    audit = await _sql(
        stack,
        "SELECT action FROM audit_log WHERE action IN "
        "('impersonation.started', 'impersonation.ended', 'user.banned', 'user.unbanned')",
    )
    assert {a for (a,) in audit} == {
        "impersonation.started",
        "impersonation.ended",
        "user.banned",
        "user.unbanned",
    }

    # -- reservations: a driver's reservation, cancelled by the operator ---------------------
    settings = _settings(stack)
    engine = make_engine(stack.pg_url)
    try:
        driver = await seed_driver(
            make_session_factory(engine), LagoBilling(settings, make_session_factory(engine))
        )
    finally:
        await engine.dispose()
    charger = f"RSV-{suffix}"
    added = await api_call(
        page, "POST", "/api/v1/chargers", json={"charge_box_id": charger, "connectors": 1}
    )
    assert added["status"] == 201, added
    async with open_service_context(settings) as ctx:
        reservation = await reservations.create(
            ctx,
            Actor(id=f"user-{driver.public_id}", role="customer", source="test"),
            f"user-{driver.public_id}",
            reservations.ReservationIn(
                charge_box_id=charger,
                starts_at=datetime.now(UTC) + timedelta(hours=2),
                duration_min=30,
            ),
        )
    await page.get_by_role("link", name="Reservations").click()
    await page.wait_for_url("**/console/operator/reservations")
    await check_accessibility(page, "reservations")
    row = page.locator(f"[data-reservation='{reservation.id}']")
    await row.locator("input[name='reason']").fill("site closed")
    await row.get_by_role("button", name="Cancel").click()
    await page.locator(
        f"[data-reservation='{reservation.id}'] [data-reservation-status]", has_text="cancelled"
    ).wait_for()

    # -- billing: the webhook log, a replay, the breaker open then reset ---------------------
    event_id = await _lago_webhook(stack, "invoice.created")
    await _sql(
        stack,
        "INSERT INTO circuit_breakers (name, consecutive_failures, opened_at, last_error) "
        "VALUES ('lago_webhooks', 5, now(), 'test: Lago unreachable') "
        "ON CONFLICT (name) DO UPDATE SET consecutive_failures = 5, opened_at = now(), "
        "last_error = 'test: Lago unreachable'",
    )
    await page.get_by_role("link", name="Dashboard").click()
    await page.locator("[data-breaker-state='open']").wait_for()
    await page.get_by_role("link", name="Billing").click()
    await page.wait_for_url("**/console/operator/billing")
    await page.locator(f"[data-webhook-event='{event_id}']").wait_for()
    await check_accessibility(page, "billing")
    await page.get_by_role("button", name=f"Replay event {event_id}").click()
    await page.locator("[data-webhook-event]", has_text=f"replay of {event_id}").wait_for()
    await page.get_by_role("button", name="Reset the breaker").click()
    await page.locator("[data-breaker-state='closed']").wait_for()
    assert "Last reset" in (await page.locator("#breaker").text_content() or "")
    resets = await _sql(
        stack,
        "SELECT details FROM audit_log WHERE action = 'lago_webhooks.breaker_reset'",
    )
    assert [d for (d,) in resets if d.get("was_open")], resets
    await check_accessibility(page, "breaker reset")

    # -- firmware campaigns: start one (two waves, a long pause), then halt it ---------------
    uploaded = await api_call(
        page,
        "POST",
        f"/api/v1/firmware?name=fw-{suffix}.bin&version=1.2.{suffix}",
        text="firmware image bytes",
    )
    assert uploaded["status"] == 201, uploaded
    second = f"FW-{suffix}"
    added = await api_call(
        page, "POST", "/api/v1/chargers", json={"charge_box_id": second, "connectors": 1}
    )
    assert added["status"] == 201, added
    await page.get_by_role("link", name="Firmware").click()
    await page.wait_for_url("**/console/operator/firmware-campaigns")
    await check_accessibility(page, "campaigns")
    await page.locator("#f-chargers").fill(f"{charger} NOPE-{suffix}")
    await page.get_by_role("button", name="Start campaign").click()
    await page.locator(".form-error", has_text=f"NOPE-{suffix}").wait_for()
    await page.locator("#f-chargers").fill(f"{charger}, {second}")
    await page.locator("#f-wave_size").fill("1")
    await page.locator("#f-pause_s").fill("3600")
    await page.locator("#f-max_failures").fill("5")
    await page.get_by_role("button", name="Start campaign").click()
    await page.wait_for_url("**/console/operator/firmware-campaigns/*")
    await page.locator("[data-live-status]", has_text="live").wait_for()
    await page.locator("progress[max='2']").wait_for()
    await check_accessibility(page, "campaign")
    await page.locator("#f-reason").fill("console test")
    await page.get_by_role("button", name="Halt the campaign").click()
    # The halt is a signal: the page shows the workflow's answer when it arrives (live).
    await page.locator("[data-campaign-state='halted']").wait_for(timeout=60_000)
    await check_accessibility(page, "campaign halted")

    # -- every list again, now that it lists what this test made ------------------------------
    for path, shown in (
        ("/console/operator/tariffs", code),
        ("/console/operator/sites", f"Depot {suffix} North"),
        (f"/console/operator/cards?q={id_tag}", id_tag),
        (f"/console/operator/users?search={driver_email}", driver_email),
        (f"/console/operator/reservations?charge_box_id={charger}", charger),
        ("/console/operator/firmware-campaigns", f"fw-{suffix}.bin"),
        ("/console/operator/billing", f"replay of {event_id}"),
    ):
        await page.goto(path)
        await page.locator("main").get_by_text(shown).first.wait_for()
        await check_accessibility(page, f"{path} with rows")
