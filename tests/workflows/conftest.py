"""Fixtures for the session workflow tests: seeded rows, a worker, a stand-in gateway."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from temporalio import activity
from temporalio.client import Client
from temporalio.worker import Worker

from config.settings import Settings
from db.engine import SessionFactory
from db.models import Charger, EvCard, Tariff, UserMapping
from sandbox.lago.config import SandboxConfig
from tests.sandbox.conftest import RunningSandbox, start_sandbox
from worker import build_worker
from workflows.messages import (
    ACTIVITY_SEND_CHARGER_COMMAND,
    ChargerCommandInput,
    ChargerCommandResult,
)


@dataclass
class Seed:
    """Unique rows for one test: a charger on its own gateway instance, a tariff, cards."""

    factory: SessionFactory
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def charge_box_id(self) -> str:
        return f"CB-{self.suffix}"

    @property
    def gateway_instance(self) -> str:
        return f"gw-{self.suffix}"

    def tag(self, name: str) -> str:
        return f"{name}-{self.suffix}"[:20]

    async def charger(
        self,
        *,
        charge_box_id: str | None = None,
        connected: bool = True,
        last_seen_at: datetime | None = None,
        tariff: tuple[int, int, int] | None = (30, 2, 50),
    ) -> str:
        cb = charge_box_id or self.charge_box_id
        async with self.factory() as db, db.begin():
            tariff_id = None
            if tariff is not None:
                row = Tariff(
                    code=f"t-{cb}",
                    currency="EUR",
                    price_per_kwh_minor=tariff[0],
                    price_per_minute_minor=tariff[1],
                    price_per_session_minor=tariff[2],
                )
                db.add(row)
                await db.flush()
                tariff_id = row.id
            db.add(
                Charger(
                    charge_box_id=cb,
                    tariff_id=tariff_id,
                    gateway_instance=self.gateway_instance,
                    connected=connected,
                    last_seen_at=last_seen_at or datetime.now(UTC),
                )
            )
        return cb

    async def card(
        self,
        name: str,
        *,
        mapped: bool = True,
        parent: str | None = None,
        blocked: bool = False,
        expires_at: datetime | None = None,
        max_concurrent_sessions: int = 1,
    ) -> str:
        tag = self.tag(name)
        async with self.factory() as db, db.begin():
            db.add(
                EvCard(
                    id_tag=tag,
                    parent_id_tag=parent,
                    blocked=blocked,
                    expires_at=expires_at,
                    max_concurrent_sessions=max_concurrent_sessions,
                )
            )
            await db.flush()
            if mapped:
                db.add(
                    UserMapping(
                        user_id=f"user-{tag}",
                        public_id="0000ABCD",
                        id_tag=tag,
                        lago_customer_external_id=f"cust-{tag}",
                    )
                )
        return tag


@pytest.fixture
def seed(session_factory: SessionFactory) -> Seed:
    return Seed(session_factory)


LAGO_API_KEY = "workflow-test-key"


@pytest.fixture(scope="module")
def session_lago() -> Iterator[RunningSandbox]:
    """A real Lago sandbox for the session workflow's usage events (cards here have a Lago
    customer id but no subscription: their sends end with the ``lago_unsent`` flag)."""
    running = start_sandbox(SandboxConfig(api_key=LAGO_API_KEY, admin_enabled=True))
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def session_settings(base_settings: Settings, session_lago: RunningSandbox) -> Settings:
    return base_settings.model_copy(
        update={"lago_api_url": session_lago.url, "lago_api_key": SecretStr(LAGO_API_KEY)}
    )


@pytest.fixture
async def session_worker(
    temporal_client: Client,
    session_settings: Settings,
    session_factory: SessionFactory,
    task_queue: str,
) -> AsyncIterator[Worker]:
    worker = build_worker(temporal_client, session_settings, session_factory, task_queue=task_queue)
    async with worker:
        yield worker


class FakeGateway:
    """Stands in for the gateway's ``send_charger_command`` activity on ``gateway-<instance>``."""

    def __init__(self) -> None:
        self.commands: list[ChargerCommandInput] = []
        self.answer: dict[str, object] = {"status": "Accepted"}

    @activity.defn(name=ACTIVITY_SEND_CHARGER_COMMAND)
    async def send_charger_command(self, input: ChargerCommandInput) -> ChargerCommandResult:
        self.commands.append(input)
        return ChargerCommandResult(payload=dict(self.answer))


@pytest.fixture
async def fake_gateway(temporal_client: Client, seed: Seed) -> AsyncIterator[FakeGateway]:
    gateway = FakeGateway()
    async with Worker(
        temporal_client,
        task_queue=f"gateway-{seed.gateway_instance}",
        activities=[gateway.send_charger_command],
    ):
        yield gateway


T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)
