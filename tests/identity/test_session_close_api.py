"""``POST /api/v1/sessions/{id}/close``: operators force-close a running session through the API
(live admin session, audited with the caller's address); drivers cannot."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import select
from temporalio.client import Client
from temporalio.worker import Worker

from db.engine import SessionFactory
from db.models import AuditLog, ChargingSession
from tests.fixtures.auth import AuthService
from tests.helpers import eventually
from tests.identity.conftest import person
from tests.workflows.conftest import Seed, at
from tests.workflows.test_charging_session import started, tap, tx_id
from workflows.charging_session import ChargingSessionWorkflow
from workflows.messages import MeterProgress

pytestmark = pytest.mark.timeout(120)


async def test_operators_force_close_a_session_through_the_api(
    api: httpx.AsyncClient,
    worker: Worker,
    auth_service: AuthService,
    temporal_client: Client,
    session_factory: SessionFactory,
    task_queue: str,
) -> None:
    admin = await person(auth_service, "closer", role="admin")
    driver = await person(auth_service, "notop")
    seed = Seed(session_factory)
    cb = await seed.charger()
    tag = await seed.card("apiclose")
    result, handle = await tap(temporal_client, task_queue, cb, tag)
    assert result.status == "Accepted"
    tx = tx_id()
    await handle.signal(ChargingSessionWorkflow.transaction_started, started(1, tx, cb, tag, 1000))
    await handle.signal(
        ChargingSessionWorkflow.meter_progress,
        MeterProgress(event_id=2, transaction_id=tx, energy_register_wh=2400, sampled_at=at(5)),
    )

    async def charging() -> bool:
        async with session_factory() as db:
            row = await db.get(ChargingSession, handle.id)
        return row is not None and row.state == "charging"

    await eventually(charging, timeout=30)
    url = f"/api/v1/sessions/{handle.id}/close"
    body: dict[str, Any] = {"reason": "charger offline", "energy_wh": 1500}

    assert (await api.post(url, json=body, headers=driver.headers)).status_code == 403
    bad = await api.post(url, json={"energy_wh": -1}, headers=admin.headers)
    assert bad.status_code == 422 and bad.json()["issues"]
    missing = await api.post("/api/v1/sessions/nope/close", json=body, headers=admin.headers)
    assert missing.status_code == 404

    closed = await api.post(url, json=body, headers=admin.headers)
    assert closed.status_code == 200, closed.text
    assert closed.json()["billed_energy_wh"] == 1500
    status = await eventually(lambda: _abandoned(handle), timeout=30)
    assert {"force_closed", "operator_energy"} <= set(status.flags)
    assert status.energy_wh == 1500

    again = await api.post(url, json=body, headers=admin.headers)
    assert again.status_code == 409 and again.json()["error"] == "SESSION_NOT_RUNNING"

    async with session_factory() as db:
        audit = (
            await db.scalars(
                select(AuditLog).where(AuditLog.subject == handle.id).order_by(AuditLog.id)
            )
        ).all()
    requests = [a for a in audit if a.action == "session.force_close"]
    assert [a.source for a in requests] == ["203.0.113.7", "203.0.113.7"]
    assert requests[0].details["energy_wh"] == 1500
    closure = [a for a in audit if a.action == "session.closed"]
    assert [a.actor for a in closure] == [f"user:{admin.user_id}"]


async def _abandoned(handle: Any) -> Any:
    status = await handle.query(ChargingSessionWorkflow.status)
    assert status.state == "abandoned" and status.billing_event_ids, status
    return status
