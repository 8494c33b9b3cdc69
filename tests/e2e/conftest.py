"""The platform as separate real processes, so tests can kill any of them mid-session.

Per test: a Temporal dev server on its own SQLite file, a worker (``polaris worker``) and a
gateway (``polaris gateway``), all on the session's PostgreSQL and a Lago sandbox; a simulated
charger built on the real ``ocpp`` ChargePoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action, ConfigurationStatus, RemoteStartStopStatus
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert

from activities.lago import LagoBilling
from config.settings import Settings
from db.engine import SessionFactory
from db.models import BillingEvent, Charger, ChargingSession, Connector, Tariff, Transaction
from tests.billing.conftest import (  # noqa: F401  (fixtures re-exported for this folder)
    API_KEY,
    Driver,
    lago_sandbox,
    seed_driver,
)
from tests.e2e.processes import ManagedProcess, polaris_process, temporal_process
from tests.gateway.conftest import FAST_FORWARD_W
from tests.helpers import free_port
from tests.sandbox.conftest import RunningSandbox

SUBPROTOCOL = websockets.Subprotocol("ocpp1.6")


@dataclass
class Platform:
    temporal: ManagedProcess
    worker: ManagedProcess
    gateway: ManagedProcess
    gateway_url: str
    task_queue: str
    sandbox: RunningSandbox
    # http://127.0.0.1:<port>: each process's /metrics and /healthz.
    gateway_metrics_url: str = ""
    worker_metrics_url: str = ""
    # The environment the processes run with (a test may start another process beside them).
    env: dict[str, str] = field(default_factory=dict)

    def logs(self) -> str:
        return "\n".join(
            f"---- {p.name} ----\n{p.output()[-3000:]}"
            for p in (self.temporal, self.worker, self.gateway)
        )


@pytest.fixture
def platform_env() -> dict[str, str]:
    """Extra environment for the platform's processes; a test module overrides it to tune one."""
    return {}


@pytest.fixture
def platform(
    tmp_path: Path,
    pg_url: str,
    lago_sandbox: RunningSandbox,  # noqa: F811
    platform_env: dict[str, str],
) -> Iterator[Platform]:
    tmp_path.chmod(0o755)
    temporal_port, gateway_port = free_port(), free_port()
    gateway_metrics, worker_metrics = free_port(), free_port()
    task_queue = f"e2e-{uuid.uuid4().hex[:10]}"
    env = {
        "POLARIS_ENV": "test",
        "POLARIS_DATA_DIR": str(tmp_path / "data"),
        "POLARIS_DATABASE_URL": pg_url,
        "POLARIS_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "POLARIS_TEMPORAL_TASK_QUEUE": task_queue,
        "POLARIS_GATEWAY_PORT": str(gateway_port),
        "POLARIS_GATEWAY_INSTANCE": task_queue,
        "POLARIS_GATEWAY_METRICS_PORT": str(gateway_metrics),
        "POLARIS_WORKER_METRICS_PORT": str(worker_metrics),
        "POLARIS_METER_SIGNAL_INTERVAL_S": "0",
        "POLARIS_LAGO_API_URL": lago_sandbox.url,
        "POLARIS_LAGO_API_KEY": API_KEY,
        "POLARIS_AUTH_URL": "http://127.0.0.1:9",
        # Real processes refuse the secrets the repository publishes (config/startup.py).
        "POLARIS_AUTH_SECRET": secrets.token_urlsafe(32),
        "POLARIS_AUTH_INTERNAL_TOKEN": secrets.token_urlsafe(32),
        "POLARIS_LAGO_WEBHOOK_SECRET": secrets.token_urlsafe(32),
        "POLARIS_LOG_LEVEL": "INFO",
        **platform_env,
    }
    platform = Platform(
        temporal=temporal_process(tmp_path, temporal_port),
        worker=polaris_process("worker", "worker", tmp_path, env),
        gateway=polaris_process("gateway", "gateway", tmp_path, env, port=gateway_port),
        gateway_url=f"ws://127.0.0.1:{gateway_port}/ocpp",
        task_queue=task_queue,
        sandbox=lago_sandbox,
        gateway_metrics_url=f"http://127.0.0.1:{gateway_metrics}",
        worker_metrics_url=f"http://127.0.0.1:{worker_metrics}",
        env=env,
    )
    started: list[ManagedProcess] = []
    try:
        for proc in (platform.temporal, platform.worker, platform.gateway):
            proc.start()
            started.append(proc)
        yield platform
    finally:
        for proc in reversed(started):
            proc.stop()


@pytest.fixture
def lago_billing(
    base_settings: Settings,
    session_factory: SessionFactory,
    lago_sandbox: RunningSandbox,  # noqa: F811
) -> LagoBilling:
    from pydantic import SecretStr

    settings = base_settings.model_copy(
        update={"lago_api_url": lago_sandbox.url, "lago_api_key": SecretStr(API_KEY)}
    )
    return LagoBilling(settings, session_factory)


async def seed_charger(factory: SessionFactory) -> str:
    """A charger with 2 connectors and its own tariff: 0.30/kWh + 0.50 per session (EUR)."""
    charge_box_id = f"E2E-{uuid.uuid4().hex[:8]}"
    async with factory() as db, db.begin():
        tariff_id = (
            await db.execute(
                insert(Tariff)
                .values(
                    code=f"t-{charge_box_id}",
                    currency="EUR",
                    price_per_kwh_minor=30,
                    price_per_minute_minor=0,
                    price_per_session_minor=50,
                )
                .returning(Tariff.id)
            )
        ).scalar_one()
        # Simulated chargers deliver kWh in seconds: a power no real charger has keeps the
        # gateway's plausibility check (max power × elapsed time) out of these tests. Passwordless,
        # so the operator's exemption is needed outside dev (env="test" here).
        db.add(
            Charger(
                charge_box_id=charge_box_id,
                tariff_id=tariff_id,
                max_power_w=FAST_FORWARD_W,
                allow_unauthenticated=True,
            )
        )
        await db.flush()
        for connector_id in (1, 2):
            db.add(Connector(charge_box_id=charge_box_id, connector_id=connector_id))
    return charge_box_id


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


class AnsweringChargePoint(ChargePoint):  # type: ignore[misc]
    """A charge point that accepts the commands operators and workflows send it, and counts
    them (``commands``: action → how many arrived on this connection)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commands: dict[str, int] = {}

    def _count(self, action: str) -> None:
        self.commands[action] = self.commands.get(action, 0) + 1

    @on(Action.remote_start_transaction)
    def on_remote_start(self, id_tag: str, **_: Any) -> call_result.RemoteStartTransaction:
        self._count("RemoteStartTransaction")
        return call_result.RemoteStartTransaction(status=RemoteStartStopStatus.accepted)

    @on(Action.remote_stop_transaction)
    def on_remote_stop(self, transaction_id: int) -> call_result.RemoteStopTransaction:
        self._count("RemoteStopTransaction")
        return call_result.RemoteStopTransaction(status=RemoteStartStopStatus.accepted)

    @on(Action.get_configuration)
    def on_get_configuration(self, **_: Any) -> call_result.GetConfiguration:
        self._count("GetConfiguration")
        return call_result.GetConfiguration(
            configuration_key=[{"key": "HeartbeatInterval", "readonly": False, "value": "60"}]
        )

    @on(Action.change_configuration)
    def on_change_configuration(self, **_: Any) -> call_result.ChangeConfiguration:
        self._count("ChangeConfiguration")
        return call_result.ChangeConfiguration(status=ConfigurationStatus.accepted)


class SimulatedCharger:
    """A charge point on the real ``ocpp`` library that can lose its connection and come back
    (``answering``: it also accepts commands, see :class:`AnsweringChargePoint`)."""

    def __init__(self, url: str, charge_box_id: str, *, answering: bool = False) -> None:
        self.url = f"{url}/{charge_box_id}"
        self.charge_box_id = charge_box_id
        self._cp_class = AnsweringChargePoint if answering else ChargePoint
        self._ws: Any = None
        self._cp: ChargePoint | None = None
        self._listener: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        self._ws = await websockets.connect(self.url, subprotocols=[SUBPROTOCOL], open_timeout=30)
        self._cp = self._cp_class(self.charge_box_id, self._ws, response_timeout=30)
        self._listener = asyncio.create_task(self._cp.start())
        await self.call(
            call.BootNotification(charge_point_vendor="Polaris", charge_point_model="E2E")
        )

    def move_to(self, gateway_url: str) -> None:
        """Connect to another gateway from the next ``connect`` on (a load balancer's choice)."""
        self.url = f"{gateway_url}/{self.charge_box_id}"

    @property
    def commands(self) -> dict[str, int]:
        """Commands received on the current connection (an answering charger)."""
        return dict(getattr(self._cp, "commands", {}))

    async def disconnect(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        self._ws = self._cp = self._listener = None

    async def call(self, payload: Any) -> Any:
        assert self._cp is not None, "not connected"
        return await self._cp.call(payload, suppress=False)

    async def meter(self, transaction_id: int, register_wh: int) -> None:
        await self.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=transaction_id,
                meter_value=[
                    {
                        "timestamp": now_iso(),
                        "sampledValue": [
                            {
                                "value": str(register_wh),
                                "measurand": "Energy.Active.Import.Register",
                                "unit": "Wh",
                                "context": "Sample.Periodic",
                            }
                        ],
                    }
                ],
            )
        )


@pytest.fixture
async def charger_factory() -> AsyncIterator[list[SimulatedCharger]]:
    chargers: list[SimulatedCharger] = []
    yield chargers
    for charger in chargers:
        await charger.disconnect()


@dataclass
class Billed:
    workflow_id: str
    state: str
    events: list[BillingEvent]

    @property
    def energy_wh(self) -> int:
        return sum(e.energy_wh for e in self.events)

    @property
    def amount_minor(self) -> int:
        return sum(e.amount_minor for e in self.events)


async def workflow_of(factory: SessionFactory, transaction_id: int) -> str:
    async with factory() as db:
        return (
            await db.execute(
                select(Transaction.workflow_id).where(Transaction.id == transaction_id)
            )
        ).scalar_one()


async def billed(factory: SessionFactory, workflow_id: str) -> Billed | None:
    async with factory() as db:
        row = await db.get(ChargingSession, workflow_id)
        if row is None:
            return None
        events = (
            (
                await db.execute(
                    select(BillingEvent)
                    .where(BillingEvent.workflow_id == workflow_id)
                    .order_by(BillingEvent.sequence)
                )
            )
            .scalars()
            .all()
        )
        return Billed(workflow_id, row.state, list(events))


async def transactions_for(factory: SessionFactory, workflow_id: str) -> int:
    async with factory() as db:
        return (
            await db.execute(
                select(func.count())
                .select_from(Transaction)
                .where(Transaction.workflow_id == workflow_id)
            )
        ).scalar_one()


def lago_events(sandbox: RunningSandbox, subscription: str) -> list[dict[str, Any]]:
    """Every usage event Lago stored for a subscription (paged through GET /api/v1/events)."""
    events: list[dict[str, Any]] = []
    page = 1
    while True:
        response = sandbox.api(
            "GET",
            "/events",
            params={"external_subscription_id": subscription, "page": page, "per_page": 100},
        )
        response.raise_for_status()
        body = response.json()
        events.extend(body["events"])
        if not body.get("meta", {}).get("next_page"):
            return events
        page += 1


def lago_wh(events: list[dict[str, Any]]) -> int:
    """Sum of the kWh properties Lago received, back in integer Wh (exact: 3 decimals)."""
    from decimal import Decimal

    return int(sum(Decimal(str(e["properties"]["kwh"])) for e in events) * 1000)


__all__ = [
    "AnsweringChargePoint",
    "Billed",
    "Driver",
    "Platform",
    "SimulatedCharger",
    "billed",
    "lago_events",
    "lago_wh",
    "seed_charger",
    "seed_driver",
    "transactions_for",
    "workflow_of",
]
