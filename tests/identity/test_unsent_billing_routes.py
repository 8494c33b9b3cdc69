"""The admin routes over unsent billing lines: admins list and resend, drivers get 403."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import pytest

from db.engine import SessionFactory
from db.models import BillingEvent, ChargingSession
from tests.fixtures.auth import AuthService
from tests.identity.conftest import person

pytestmark = pytest.mark.timeout(120)


async def test_admin_lists_and_resends_drivers_are_refused(
    api: httpx.AsyncClient, auth_service: AuthService, session_factory: SessionFactory
) -> None:
    workflow_id = f"session:unsent-route:{uuid.uuid4().hex[:8]}"
    async with session_factory() as db, db.begin():
        db.add(ChargingSession(workflow_id=workflow_id, state="closed", charge_box_id="CB-X"))
        db.add(
            BillingEvent(
                transaction_id=f"{workflow_id}:1",
                workflow_id=workflow_id,
                sequence=1,
                kind="final",
                energy_wh=500,
                amount_minor=15,
                currency="EUR",
                occurred_at=datetime.now(UTC),
                lago_customer_external_id=None,  # no customer: Lago cannot take it yet
            )
        )
    admin = await person(auth_service, "unsent-admin", role="admin")
    listed = await api.get(
        "/api/v1/billing/unsent", params={"session": workflow_id}, headers=admin.headers
    )
    assert listed.status_code == 200, listed.text
    assert [(r["session"], r["energy_wh"]) for r in listed.json()] == [(workflow_id, 500)]
    resent = await api.post(
        "/api/v1/billing/unsent/resend", json={"session": workflow_id}, headers=admin.headers
    )
    assert resent.status_code == 200, resent.text
    # Still no customer: nothing sent, the line stays listed.
    assert resent.json()["sessions"][0]["ok"] is False

    driver = await person(auth_service, "unsent-driver")
    assert (await api.get("/api/v1/billing/unsent", headers=driver.headers)).status_code == 403
    refused = await api.post("/api/v1/billing/unsent/resend", json={}, headers=driver.headers)
    assert refused.status_code == 403
