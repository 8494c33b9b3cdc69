"""Password rotation of a connected OCPP 2.0.1 charger: ``polaris chargers password`` (the
service behind it and the API) sends SetVariables ``SecurityCtrlr.BasicAuthPassword``; the value
stays out of the operations log, the audit trail and the workflow's history; the station
reconnects with it and the old one is refused (real gateway, real Temporal, real v201 station)."""

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
from tests.operations.conftest import ADMIN, station201

pytestmark = pytest.mark.timeout(120)


async def test_a_connected_2_0_1_charger_gets_its_new_password_as_set_variables(
    gateway: Gateway,
    ops_ctx: ServiceContext,
    session_factory: SessionFactory,
    temporal_client: Client,
) -> None:
    cb = uid("PW2-")
    new = chargers.NewCharger.model_validate({"charge_box_id": cb, "connectors": 1})
    old = (await chargers.add_charger(ops_ctx, ADMIN, new))["password"]

    async with station201(gateway, session_factory, cb, old) as cp:
        rotated = await chargers.rotate_password(ops_ctx, ADMIN, cb)
        fresh = rotated["password"]
        push = rotated["push"]
        assert (push["status"], push["charger_status"]) == ("answered", "Accepted")
        # The station received the real value, in the one SetVariables of this operation.
        [(action, payload)] = cp.received
        assert action == "SetVariables"
        assert payload["set_variable_data"] == [
            {
                "attribute_value": fresh,
                "component": {"name": "SecurityCtrlr"},
                "variable": {"name": "BasicAuthPassword"},
            }
        ]
        assert cp.variables[("SecurityCtrlr", "BasicAuthPassword")] == fresh

    async with session_factory() as db:
        op = await db.get(ChargerOperation, push["operation_id"])
        audit = (await db.scalars(select(AuditLog).where(AuditLog.subject == cb))).all()
    assert op is not None and op.protocol == "ocpp2.0.1"
    assert op.request == {"key": "AuthorizationKey", "value": "***"}
    assert fresh not in str(op.response) and fresh not in str(op.request)
    assert all(fresh not in str(row.details) and old not in str(row.details) for row in audit)
    assert op.workflow_id
    history = await temporal_client.get_workflow_handle(op.workflow_id).fetch_history()
    assert fresh not in history.to_json()

    async with station201(gateway, session_factory, cb, fresh):
        pass
    assert await handshake_status(gateway, cb, authorization=basic(cb, old)) == 401
    assert await handshake_status(gateway, cb, authorization=basic(cb, fresh)) == 101
