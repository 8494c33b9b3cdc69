"""The console's foundation in a real Chromium against the real stack: sign-in by password and by
magic link (read from the mail outbox), the session cookie, CSRF, sign-out, the operator and
driver areas kept apart, themes, and an axe-core check on every page visited."""

from __future__ import annotations

import httpx
import pytest

from tests.console.browser import check_accessibility
from tests.console.conftest import ConsoleStack

pytestmark = pytest.mark.timeout(420)


async def sign_in_with_password(page: object, email: str, password: str) -> None:
    await page.goto("/console/sign-in")  # type: ignore[attr-defined]
    await page.locator("#f-email").fill(email)  # type: ignore[attr-defined]
    await page.locator("#f-password").fill(password)  # type: ignore[attr-defined]
    await page.get_by_role("button", name="Sign in", exact=True).click()  # type: ignore[attr-defined]


async def test_operator_signs_in_with_a_password_and_out(
    console_stack: ConsoleStack, new_page: object
) -> None:
    page = await new_page()  # type: ignore[operator]
    await page.goto("/console")
    await page.wait_for_url("**/console/sign-in")
    await check_accessibility(page, "sign-in")

    email, password = await console_stack.operator()
    # A wrong password: the auth service's message, next to the password field.
    await sign_in_with_password(page, email, "not-the-password")
    error = page.locator("#e-password")
    await error.wait_for()
    assert await page.locator("#f-password").get_attribute("aria-invalid") == "true"
    await check_accessibility(page, "sign-in with an error")

    await sign_in_with_password(page, email, password)
    await page.wait_for_url("**/console/operator")
    await page.get_by_role("heading", name="Dashboard").wait_for()
    # The live stream connects (fetch-based SSE with a JWT from /console/token).
    await page.locator("[data-live-status]", has_text="live").wait_for()
    await check_accessibility(page, "dashboard")

    cookies = {c["name"]: c for c in await page.context.cookies()}
    session = cookies["polaris_console"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Lax"

    # A form without its CSRF token is refused.
    async with httpx.AsyncClient(
        base_url=console_stack.api_url, cookies={"polaris_console": session["value"]}
    ) as client:
        refused = await client.post("/console/sign-out")
    assert refused.status_code == 403, refused.text

    # The theme toggle switches and remembers.
    toggle = page.locator("[data-theme-toggle]")
    before = await page.evaluate("() => document.documentElement.dataset.theme || ''")
    await toggle.click()
    after = await page.evaluate("() => document.documentElement.dataset.theme")
    assert after in ("light", "dark") and after != before
    await page.reload()
    assert await page.evaluate("() => document.documentElement.dataset.theme") == after
    await check_accessibility(page, f"dashboard, {after} theme")

    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url("**/console/sign-in")
    await page.goto("/console/operator")
    await page.wait_for_url("**/console/sign-in")


async def test_driver_signs_in_by_magic_link_and_stays_in_the_driver_area(
    console_stack: ConsoleStack, new_page: object
) -> None:
    email = await console_stack.driver()
    page = await new_page()  # type: ignore[operator]
    await page.goto("/console/sign-in")
    await page.locator("#f-magic_email").fill(email)
    await page.get_by_role("button", name="E-mail me a sign-in link").click()
    await page.get_by_role("heading", name="Check your e-mail").wait_for()
    await check_accessibility(page, "magic link sent")

    link = await console_stack.magic_link(email)
    assert link.startswith(f"{console_stack.api_url}/console/auth/magic?token="), link
    await page.goto(link)
    await check_accessibility(page, "magic link landing")
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url("**/console/driver")
    await page.get_by_text(email).first.wait_for()
    await check_accessibility(page, "driver home")

    # Operator pages do not exist for a driver.
    answer = await page.goto("/console/operator")
    assert answer is not None and answer.status == 404
    answer = await page.goto("/console/operator/chargers")
    assert answer is not None and answer.status == 404

    # The link worked once.
    other = await new_page()  # type: ignore[operator]
    await other.goto(link)
    await other.get_by_role("button", name="Sign in").click()
    await other.get_by_text("expired or was already used").wait_for()


async def test_phone_layout(console_stack: ConsoleStack, new_page: object) -> None:
    page = await new_page(viewport={"width": 390, "height": 844}, is_mobile=True)  # type: ignore[operator]
    await page.goto("/console/sign-in")
    # Nothing wider than the screen.
    width = await page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390
    # Keyboard: the first Tab reaches the skip link.
    await page.keyboard.press("Tab")
    focused = await page.evaluate("() => document.activeElement.className")
    assert "skip-link" in focused
