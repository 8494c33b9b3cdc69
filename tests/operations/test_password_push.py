"""Password rotation of a connected charger: the new password reaches the charger through
``ChangeConfiguration AuthorizationKey`` (an operation like any other, with the value kept out of
the operations log, the audit trail and the workflow's history); the charger reconnects with it,
and from then on the old one is refused."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from temporalio.client import Client

from db.engine import SessionFactory
from db.models import AuditLog
from db.operation_models import ChargerOperation
from gateway.main import Gateway
from services import chargers
from services.context import ServiceContext
from tests.gateway.conftest import uid
from tests.gateway.test_charger_auth import basic, handshake_status
from tests.operations.conftest import ADMIN, operations_charger

pytestmark = pytest.mark.timeout(120)


async def test_a_connected_charger_gets_its_new_password_and_reconnects_with_it(
    gateway: Gateway,
    ops_ctx: ServiceContext,
    session_factory: SessionFactory,
    temporal_client: Client,
) -> None:
    cb = uid("PW-")
    new = chargers.NewCharger.model_validate({"charge_box_id": cb, "connectors": 1})
    old = (await chargers.add_charger(ops_ctx, ADMIN, new))["password"]

    async with operations_charger(gateway, session_factory, cb, password=old) as cp:
        rotated = await chargers.rotate_password(ops_ctx, ADMIN, cb)
        fresh = rotated["password"]
        push = rotated["push"]
        assert (push["status"], push["charger_status"]) == ("answered", "Accepted")
        # The charger received the real value, in the one frame of this operation.
        [(frame_id, action, payload)] = cp.received
        assert (action, payload) == (
            "ChangeConfiguration",
            {"key": "AuthorizationKey", "value": fresh},
        )
        assert frame_id == push["operation_id"]

    # Nowhere else: not in the operations log, the audit trail or the workflow's history.
    async with session_factory() as db:
        op = await db.get(ChargerOperation, push["operation_id"])
        audit = (await db.scalars(select(AuditLog).where(AuditLog.subject == cb))).all()
    assert op is not None and op.request == {"key": "AuthorizationKey", "value": "***"}
    assert all(fresh not in str(row.details) and old not in str(row.details) for row in audit)
    assert op.workflow_id
    history = await temporal_client.get_workflow_handle(op.workflow_id).fetch_history()
    assert fresh not in history.to_json()

    # The charger reconnects with what it was told: accepted, and the old one stops working.
    async with operations_charger(gateway, session_factory, cb, password=fresh):
        pass
    assert await handshake_status(gateway, cb, authorization=basic(cb, old)) == 401
    assert await handshake_status(gateway, cb, authorization=basic(cb, fresh)) == 101
