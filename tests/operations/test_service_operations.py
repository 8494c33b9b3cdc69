"""Every OCPP 1.6 central-system action end to end through services/operations.py: a real
gateway, a real ChargerOperationWorkflow and a real ``ocpp`` charge point answering Accepted,
Rejected, NotSupported, NotImplemented, never, or being offline; the operation row checked at
each step."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select

from db.engine import SessionFactory
from db.models import AuditLog
from db.operation_models import ChargerOperation
from domain.operations import CENTRAL_SYSTEM_ACTIONS
from gateway.main import Gateway
from services import operations
from services.context import ServiceContext
from services.errors import ChargerOffline
from tests.gateway.conftest import seed_charger
from tests.helpers import eventually
from tests.operations.charger import ANSWERS, REQUESTS
from tests.operations.conftest import ADMIN, operations_charger


async def _row(sf: SessionFactory, operation_id: str) -> ChargerOperation:
    async with sf() as db:
        row = await db.get(ChargerOperation, operation_id)
    assert row is not None
    return row


@pytest.mark.parametrize("action", CENTRAL_SYSTEM_ACTIONS)
async def test_every_action_through_every_kind_of_answer(
    action: str, gateway: Gateway, session_factory: SessionFactory, ops_ctx: ServiceContext
) -> None:
    cb = await seed_charger(session_factory)
    fields = REQUESTS[action]
    accepting, refusing = ANSWERS[action]
    async with operations_charger(gateway, session_factory, cb) as cp:
        # Accepted: answered, with the charger's payload; the frame's unique id is the row's id.
        op = await operations.request_operation(ops_ctx, ADMIN, cb, action, fields, timeout_s=10)
        assert op["status"] == "answered", op
        assert op["action"] == action and op["charge_box_id"] == cb
        assert op["sent_at"] is not None and op["finished_at"] is not None
        assert op["requested_by"] == ADMIN.id and op["source"] == ADMIN.source
        assert op["workflow_id"] == f"charger-op:{op['id']}"
        unique_id, received_action, _ = cp.received[-1]
        assert (unique_id, received_action) == (op["id"], action)
        if action == "GetConfiguration":
            keys = {k["key"]: k.get("value") for k in op["response"]["configurationKey"]}
            assert keys == {"HeartbeatInterval": "300", "AuthorizationKey": "***"}
        else:
            assert op["response"] == accepting

        # Rejected: the charger's refusing status.
        if refusing is not None:
            cp.mode = "Rejected"
            op = await operations.request_operation(ops_ctx, ADMIN, cb, action, fields)
            assert op["status"] == "rejected", op
            assert op["response"] == refusing

        # NotSupported and NotImplemented as CallErrors: failed, with the code.
        for code in ("NotSupported", "NotImplemented"):
            cp.mode = code  # type: ignore[assignment]
            op = await operations.request_operation(ops_ctx, ADMIN, cb, action, fields)
            assert op["status"] == "failed", op
            assert op["response"]["code"] == code
            assert op["error"].startswith(f"CallError {code}")

        # In flight: the frame reached the charger, the row says sent; the answer finishes it.
        cp.mode = "never"
        sent_before = len(cp.received)
        pending = asyncio.create_task(
            operations.request_operation(ops_ctx, ADMIN, cb, action, fields, timeout_s=60)
        )
        await eventually(lambda: len(cp.received) > sent_before, message="the frame")
        in_flight = await _row(session_factory, cp.received[-1][0])
        assert in_flight.status == "sent" and in_flight.sent_at is not None
        assert in_flight.finished_at is None and in_flight.response is None
        cp.release.set()
        op = await pending
        assert op["id"] == in_flight.id and op["status"] == "answered", op

        # Never answers: timed out; the row was sent first.
        cp.release = asyncio.Event()
        sent_before = len(cp.received)
        op = await operations.request_operation(ops_ctx, ADMIN, cb, action, fields, timeout_s=1)
        assert op["status"] == "timed_out", op
        assert op["sent_at"] is not None and "did not answer" in op["error"]
        assert len(cp.received) == sent_before + 1
        cp.release.set()

    # Offline: refused at once, recorded, nothing sent.
    with pytest.raises(ChargerOffline) as offline:
        await operations.request_operation(ops_ctx, ADMIN, cb, action, fields)
    listed = await operations.list_operations(ops_ctx, charge_box_id=cb)
    assert listed[0]["status"] == "charger_offline" and listed[0]["sent_at"] is None
    assert listed[0]["id"] in offline.value.message
    statuses = [o["status"] for o in reversed(listed)]
    refused = ["rejected"] if refusing else []
    expected = ["answered", *refused, "failed", "failed", "answered", "timed_out"]
    assert statuses == [*expected, "charger_offline"]
    async with session_factory() as db:
        audited = (
            await db.scalars(
                select(AuditLog.details).where(
                    AuditLog.subject == cb, AuditLog.action == "operation.requested"
                )
            )
        ).all()
    assert {d["operation_id"] for d in audited} == {o["id"] for o in listed}
