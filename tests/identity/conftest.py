"""Identity tests: the real auth service, the real API app, a real worker, a Lago sandbox."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from lago_python_client.models import BillableMetric, Charge, Charges, Plan
from pydantic import SecretStr
from temporalio.client import Client
from temporalio.worker import Worker

from activities.lago import DEFAULT_PLAN_CODE
from api.app import create_app
from api.auth_jwt import JwtVerifier
from api.deps import AppState
from config.settings import Settings, libpq_url
from db.engine import SessionFactory
from db.models import EvCard, UserMapping
from sandbox.lago.config import SandboxConfig
from tests.fixtures.auth import AuthService, create_user_and_sign_in, ensure_user
from tests.helpers import eventually, reset_rate_limits
from tests.sandbox.conftest import RunningSandbox, start_sandbox
from worker import build_worker

API_KEY = "identity-test-key"
PASSWORD = "correct horse battery staple 42"


@pytest.fixture(scope="module")
def lago_sandbox() -> Iterator[RunningSandbox]:
    running = start_sandbox(SandboxConfig(api_key=API_KEY, admin_enabled=True))
    try:
        lago = running.client()
        metric = lago.billable_metrics.create(
            BillableMetric(
                name="Energy", code="ev_charging_kwh", aggregation_type="sum_agg", field_name="kwh"
            )
        )
        assert metric is not None
        lago.plans.create(
            Plan(
                name="EV charging",
                code=DEFAULT_PLAN_CODE,
                interval="monthly",
                amount_cents=0,
                amount_currency="EUR",
                pay_in_advance=False,
                charges=Charges(
                    __root__=[
                        Charge(
                            billable_metric_id=metric.lago_id,
                            charge_model="standard",
                            properties={"amount": "0.30"},
                        )
                    ]
                ),
            )
        )
        yield running
    finally:
        running.stop()


@pytest.fixture
def identity_settings(
    base_settings: Settings,
    auth_service: AuthService,
    lago_sandbox: RunningSandbox,
    task_queue: str,
) -> Settings:
    return base_settings.model_copy(
        update={
            "auth_url": auth_service.base_url,
            "auth_internal_url": auth_service.internal_url,
            # One settings object plays both the API and the worker here: with no process token
            # set, each side presents its own caller's token.
            "auth_internal_token": None,
            "auth_internal_token_api": SecretStr(auth_service.internal_tokens["api"]),
            "auth_internal_token_worker": SecretStr(auth_service.internal_tokens["worker"]),
            "lago_api_url": lago_sandbox.url,
            "lago_api_key": SecretStr(API_KEY),
            "temporal_task_queue": task_queue,
        }
    )


@pytest.fixture
async def api(
    identity_settings: Settings,
    engine: Any,
    session_factory: SessionFactory,
    temporal_client: Client,
) -> AsyncIterator[httpx.AsyncClient]:
    """The real API app (every router, the real authorization layer) over ASGI."""
    await reset_rate_limits(session_factory)
    app = create_app(identity_settings)
    async with httpx.AsyncClient(timeout=30.0) as http:
        state = AppState(
            settings=identity_settings,
            engine=engine,
            sessions=session_factory,
            http=http,
            verifier=JwtVerifier.for_auth_service(
                identity_settings.auth_base_url, http_client=http
            ),
        )
        state._temporal = temporal_client
        app.state.polaris = state
        transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


@pytest.fixture
async def worker(
    temporal_client: Client,
    identity_settings: Settings,
    session_factory: SessionFactory,
    task_queue: str,
) -> AsyncIterator[Worker]:
    w = build_worker(temporal_client, identity_settings, session_factory, task_queue=task_queue)
    async with w:
        yield w


@dataclass
class Person:
    user_id: str
    email: str
    session_token: str
    jwt: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.jwt}"}


def unique_email(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.com"


async def jwt_for(service: AuthService, session_token: str) -> str:
    async with httpx.AsyncClient(base_url=service.base_url, timeout=10.0) as client:
        answer = await client.get(
            "/api/auth/token", headers={"Authorization": f"Bearer {session_token}"}
        )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["token"])


async def person(service: AuthService, prefix: str, *, role: str | None = None) -> Person:
    email = unique_email(prefix)
    user = await ensure_user(service, email, password=PASSWORD, role=role)
    token = await create_user_and_sign_in(service, email, PASSWORD, role=role)
    return Person(str(user["id"]), email, token, await jwt_for(service, token))


async def seed_card(
    factory: SessionFactory,
    *,
    owner: Person | None = None,
    parent: str | None = None,
    public_id: str | None = None,
) -> str:
    id_tag = f"ID{uuid.uuid4().hex[:12].upper()}"
    async with factory() as db, db.begin():
        db.add(EvCard(id_tag=id_tag, parent_id_tag=parent))
        await db.flush()
        if owner is not None:
            db.add(
                UserMapping(
                    user_id=owner.user_id,
                    public_id=public_id or uuid.uuid4().hex[:8].upper(),
                    email=owner.email,
                    id_tag=id_tag,
                )
            )
    return id_tag


async def outbox_urls(pg_url: str, email: str) -> list[str]:
    async with await psycopg.AsyncConnection.connect(libpq_url(pg_url)) as conn:
        cur = await conn.execute(
            "SELECT url FROM auth.mail_outbox WHERE to_email = %s ORDER BY id", (email,)
        )
        return [str(row[0]) for row in await cur.fetchall()]


async def latest_link(pg_url: str, email: str) -> str:
    async def found() -> str:
        urls = await outbox_urls(pg_url, email)
        assert urls, f"no mail for {email}"
        return urls[-1]

    return await eventually(found, timeout=10)
