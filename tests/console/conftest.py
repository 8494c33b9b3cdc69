"""The console's browser tests: the platform as real processes, a real Chromium.

``console_stack`` (per module) starts what ``make dev`` runs — Temporal, ``polaris worker``,
``polaris gateway``, ``polaris api`` (which serves the console) and the BetterAuth service — on
the session's PostgreSQL, with a Lago sandbox that has a plan. The auth service trusts the API's
origin, so magic links land on the console. ``browser`` is Chromium under Playwright (see
browser.py for where it comes from); ``page`` is a fresh context per test that saves a screenshot
under ``test-artifacts/console/`` when the test fails.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from config.settings import libpq_url
from tests.billing.conftest import API_KEY, lago_sandbox  # noqa: F401  (re-exported fixture)
from tests.console.browser import (
    ARTIFACTS,
    BrowserUnavailable,
    chromium_executable,
    ensure_console_assets,
)
from tests.e2e.processes import ManagedProcess, polaris_process, temporal_process
from tests.fixtures.auth import AuthService, ensure_user, running_auth_service
from tests.helpers import eventually, free_port
from tests.sandbox.conftest import RunningSandbox

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ConsoleStack:
    processes: list[ManagedProcess]
    auth: AuthService
    sandbox: RunningSandbox
    api_url: str
    gateway_url: str
    pg_url: str
    # The environment of a `polaris` command run on a host of the platform.
    cli_env: dict[str, str]

    def logs(self) -> str:
        return "\n".join(f"---- {p.name} ----\n{p.output()[-4000:]}" for p in self.processes)

    def url(self, path: str) -> str:
        return f"{self.api_url}{path}"

    async def operator(self, *, role: str = "admin") -> tuple[str, str]:
        """A new staff user with a password: (e-mail, password)."""
        email = f"op-{uuid.uuid4().hex[:8]}@example.test"
        password = secrets.token_urlsafe(16)
        await ensure_user(self.auth, email, password=password, role=role, name="Operator")
        return email, password

    async def driver(self) -> str:
        """A new driver (no password: magic link only): their e-mail."""
        email = f"driver-{uuid.uuid4().hex[:8]}@example.test"
        await ensure_user(self.auth, email, name="Driver")
        return email

    async def magic_link(self, email: str) -> str:
        """The newest sign-in link mailed to ``email`` (the dev mail outbox)."""

        async def latest() -> str:
            async with await psycopg.AsyncConnection.connect(libpq_url(self.pg_url)) as conn:
                cur = await conn.execute(
                    "SELECT url FROM auth.mail_outbox WHERE to_email = %s ORDER BY id DESC",
                    (email,),
                )
                row = await cur.fetchone()
            assert row is not None, f"no mail for {email}"
            return str(row[0])

        return await eventually(latest, timeout=30, message=f"a sign-in link for {email}")


@pytest.fixture(scope="module")
async def console_stack(
    tmp_path_factory: pytest.TempPathFactory,
    pg_url: str,
    lago_sandbox: RunningSandbox,  # noqa: F811
) -> AsyncIterator[ConsoleStack]:
    ensure_console_assets()
    tmp = tmp_path_factory.mktemp("console")
    tmp.chmod(0o755)
    temporal_port, gateway_port, api_port = free_port(), free_port(), free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    queue = f"console-{uuid.uuid4().hex[:10]}"
    extra = {
        # The console's origin: its magic links land there (auth/auth.mjs consoleMagicLink).
        "POLARIS_AUTH_TRUSTED_ORIGINS": api_url,
        # The API passes the browser's address on, as a reverse proxy would.
        "POLARIS_AUTH_TRUSTED_PROXIES": "127.0.0.1",
    }
    async with running_auth_service(pg_url, tmp / "auth.log", extra) as auth:
        common = {
            "PYTHONPATH": str(ROOT),
            "POLARIS_ENV": "test",
            "POLARIS_DATA_DIR": str(tmp / "data"),
            "POLARIS_DATABASE_URL": pg_url,
            "POLARIS_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
            "POLARIS_TEMPORAL_TASK_QUEUE": queue,
            "POLARIS_GATEWAY_PORT": str(gateway_port),
            "POLARIS_GATEWAY_INSTANCE": queue,
            "POLARIS_API_HOST": "127.0.0.1",
            "POLARIS_API_PORT": str(api_port),
            "POLARIS_METER_SIGNAL_INTERVAL_S": "0",
            "POLARIS_SESSION_PROGRESS_EVENT_INTERVAL_S": "0",
            "POLARIS_LAGO_API_URL": lago_sandbox.url,
            "POLARIS_LAGO_API_KEY": API_KEY,
            "POLARIS_AUTH_URL": auth.base_url,
            "POLARIS_AUTH_INTERNAL_URL": auth.internal_url,
            # Real processes refuse the secrets the repository publishes (config/startup.py).
            "POLARIS_AUTH_SECRET": secrets.token_urlsafe(32),
            "POLARIS_LAGO_WEBHOOK_SECRET": secrets.token_urlsafe(32),
            "POLARIS_LOG_LEVEL": "INFO",
            # Timelines link into the Temporal UI (none runs here: the link is what is checked).
            "POLARIS_TEMPORAL_UI_URL": "http://127.0.0.1:8233",
        }

        def env(caller: str) -> dict[str, str]:
            return {**common, "POLARIS_AUTH_INTERNAL_TOKEN": auth.internal_tokens[caller]}

        processes = [
            temporal_process(tmp, temporal_port),
            polaris_process("worker", "worker", tmp, env("worker")),
            polaris_process("gateway", "gateway", tmp, env("gateway"), port=gateway_port),
            polaris_process("api", "api", tmp, env("api"), port=api_port),
        ]
        started: list[ManagedProcess] = []
        try:
            for proc in processes:
                proc.start()
                started.append(proc)
            yield ConsoleStack(
                processes=processes,
                auth=auth,
                sandbox=lago_sandbox,
                api_url=api_url,
                gateway_url=f"ws://127.0.0.1:{gateway_port}/ocpp",
                pg_url=pg_url,
                cli_env={**env("api"), "POLARIS_LOG_LEVEL": "WARNING"},
            )
        finally:
            for proc in reversed(started):
                proc.stop()


@pytest.fixture(scope="session")
def chromium_path() -> str | None:
    try:
        return chromium_executable()
    except BrowserUnavailable as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
async def browser(chromium_path: str | None) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=chromium_path,
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage"] if os.geteuid() == 0 else [],
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
async def new_page(
    browser: Any, request: pytest.FixtureRequest, console_stack: ConsoleStack
) -> AsyncIterator[Any]:
    """``await new_page()``: a page in a fresh browser context (cookies of its own). On failure
    every page the test opened is saved as a screenshot under test-artifacts/console/."""
    contexts: list[Any] = []
    pages: list[Any] = []

    async def make(**options: Any) -> Any:
        options = {"viewport": {"width": 1280, "height": 900}, **options}
        context = await browser.new_context(base_url=console_stack.api_url, **options)
        context.set_default_timeout(30_000)
        contexts.append(context)
        made = await context.new_page()
        pages.append(made)
        return made

    try:
        yield make
    finally:
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            for index, shown in enumerate(pages):
                name = f"{request.node.name}-{index}.png".replace("/", "_")
                try:
                    await shown.screenshot(path=str(ARTIFACTS / name), full_page=True)
                except Exception as exc:  # a closed page: nothing to save
                    print(f"screenshot {name} failed: {exc}")
        for context in contexts:
            await context.close()
