"""Report lost: the card is dead at once, its running session is stopped through its workflow,
operators are notified, and the driver cannot undo it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import select
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.worker import Worker

from db.billing_models import Notification
from db.engine import SessionFactory
from db.models import ChargingSession, EvCard
from tests.fixtures.auth import AuthService
from tests.helpers import eventually
from tests.identity.conftest import person, seed_card
from tests.workflows.conftest import FakeGateway, Seed
from workflows.charging_session import ChargingSessionWorkflow
from workflows.messages import PreAuthorizeInput, SessionInput, TransactionStarted

pytestmark = pytest.mark.timeout(120)


async def test_report_lost_stops_the_running_session(
    api: httpx.AsyncClient,
    worker: Worker,
    temporal_client: Client,
    auth_service: AuthService,
    session_factory: SessionFactory,
    task_queue: str,
) -> None:
    seed = Seed(session_factory)
    cb = await seed.charger()
    driver = await person(auth_service, "loser")
    tag = await seed_card(session_factory, owner=driver)
    gateway = FakeGateway()
    async with Worker(
        temporal_client,
        task_queue=f"gateway-{seed.gateway_instance}",
        activities=[gateway.send_charger_command],
    ):
        workflow_id = f"session:{cb}:tap:{tag}:{uuid.uuid4().hex[:6]}"
        start = WithStartWorkflowOperation(
            ChargingSessionWorkflow.run,
            SessionInput(charge_box_id=cb, id_tag=tag),
            id=workflow_id,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            task_queue=task_queue,
        )
        auth = await temporal_client.execute_update_with_start_workflow(
            ChargingSessionWorkflow.pre_authorize,
            PreAuthorizeInput(id_tag=tag, charge_box_id=cb, connector_id=1),
            start_workflow_operation=start,
        )
        assert auth.status == "Accepted"
        handle = await start.workflow_handle()
        await handle.signal(
            ChargingSessionWorkflow.transaction_started,
            TransactionStarted(
                event_id=1,
                transaction_id=uuid.uuid4().int % 1_000_000_000,
                charge_box_id=cb,
                connector_id=1,
                id_tag=tag,
                meter_start_wh=1000,
                started_at=datetime.now(UTC),
            ),
        )

        async def charging() -> bool:
            async with session_factory() as db:
                row = await db.get(ChargingSession, workflow_id)
            return row is not None and row.state == "charging"

        await eventually(charging, timeout=20, message="the session to be charging")
        listed = await api.get("/api/v1/me/sessions", headers=driver.headers)
        assert [s["workflow_id"] for s in listed.json()] == [workflow_id]

        lost = await api.post(f"/api/v1/me/cards/{tag}/report-lost", headers=driver.headers)
        assert lost.status_code == 200, lost.text
        body = lost.json()
        assert body["already_lost"] is False
        assert body["card"]["lost_at"] is not None and body["card"]["is_active"] is False
        assert body["stopped_sessions"] == [
            {"workflow_id": workflow_id, "accepted": True, "message": None}
        ]
        [command] = [c for c in gateway.commands if c.action == "RemoteStopTransaction"]
        assert command.charge_box_id == cb
        status = await handle.query(ChargingSessionWorkflow.status)
        assert status.state == "stopping"

    async with session_factory() as db:
        card = await db.get(EvCard, tag)
        notes = (
            await db.scalars(select(Notification).where(Notification.kind == "card.lost"))
        ).all()
    assert card is not None and card.lost_at is not None and not card.is_active
    assert any(n.data.get("id_tag") == tag and n.audience == "operators" for n in notes)
    # Irreversible by the driver: repeating it changes nothing, and no driver route re-enables.
    again = await api.post(f"/api/v1/me/cards/{tag}/report-lost", headers=driver.headers)
    assert again.json()["already_lost"] is True
    patch = await api.patch(
        f"/api/v1/cards/{tag}", json={"is_active": True}, headers=driver.headers
    )
    assert patch.status_code == 403
    audit = await api.get(
        "/api/v1/audit",
        params={"subject": tag},
        headers=(await person(auth_service, "auditor", role="admin")).headers,
    )
    assert {"card.lost", "session.remote_stop"} <= {row["action"] for row in audit.json()}
