"""The operations family for a charger on OCPP 2.0.1: ``polaris chargers op`` and the service
behind the API validate and dry-run with the adapter of the charger's last-used protocol (a
2.0.1 dry run shows the 2.0.1 frame), refuse what has no translation before anything is sent,
and send the 2.0.1-only operations (real ``polaris`` subprocess, real gateway, real v201 station).
"""

from __future__ import annotations

import json

import pytest

from db.engine import SessionFactory
from gateway.main import Gateway
from services import operations
from services.context import ServiceContext
from services.errors import InvalidInput
from tests.gateway.conftest import seed_charger
from tests.operations.conftest import ADMIN, operations_charger, station201
from tests.operations.test_api_and_cli import polaris

pytestmark = pytest.mark.timeout(180)


async def test_cli_previews_and_sends_with_the_2_0_1_adapter(
    gateway: Gateway, session_factory: SessionFactory, ops_ctx: ServiceContext
) -> None:
    cb = await seed_charger(session_factory)
    settings = ops_ctx.settings
    async with station201(gateway, session_factory, cb) as cp:
        # Dry run: the frame a 2.0.1 station gets, nothing sent.
        done = await polaris(
            settings, "chargers", "op", cb, "Reset", "type=Hard", "--dry-run", "--json"
        )
        assert done.returncode == 0, done.stderr
        preview = json.loads(done.stdout)
        assert preview["protocol"] == "ocpp2.0.1"
        assert preview["frame"][2:] == ["Reset", {"type": "Immediate"}]
        # A secret is previewed redacted, in its 2.0.1 place.
        done = await polaris(
            settings, "chargers", "op", cb, "ChangeConfiguration",
            "key=AuthorizationKey", "value=s3cret-value-123", "--dry-run", "--json",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "s3cret-value-123" not in done.stdout
        assert json.loads(done.stdout)["frame"][2:] == [
            "SetVariables",
            {
                "setVariableData": [
                    {
                        "attributeValue": "***",
                        "component": {"name": "SecurityCtrlr"},
                        "variable": {"name": "BasicAuthPassword"},
                    }
                ]
            },
        ]
        assert cp.received == []

        # 2.0.1-only operations, fields typed by the 2.0.1 schema.
        done = await polaris(
            settings, "chargers", "op", cb, "GetVariables",
            'getVariableData=[{"component": {"name": "OCPPCommCtrlr"},'
            ' "variable": {"name": "HeartbeatInterval"}}]', "--json",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        answered = json.loads(done.stdout)
        assert answered["status"] == "answered"
        assert answered["protocol"] == "ocpp2.0.1"
        assert cp.received[-1][0] == "GetVariables"
        done = await polaris(
            settings, "chargers", "op", cb, "GetTransactionStatus", "transactionId=TX-9", "--json"
        )
        assert done.returncode == 0, done.stderr
        assert cp.received[-1] == ("GetTransactionStatus", {"transaction_id": "TX-9"})
        done = await polaris(settings, "chargers", "op", cb, "GetBaseReport", "requestId=3")
        assert done.returncode == 2 and "reportBase" in done.stderr  # 2.0.1 schema: required

        # No 2.0.1 translation yet: exit 2, nothing written or sent.
        sent = len(cp.received)
        done = await polaris(
            settings, "chargers", "op", cb, "GetDiagnostics", "location=ftp://logs.example/"
        )
        assert done.returncode == 2, done.stderr
        assert "not yet supported on an OCPP 2.0.1" in done.stderr
        assert "nothing was sent" in done.stderr
        assert len(cp.received) == sent
    rows = await operations.list_operations(ops_ctx, charge_box_id=cb)
    assert [r["action"] for r in rows] == ["GetTransactionStatus", "GetVariables"]


async def test_a_2_0_1_only_operation_for_a_1_6_charger_is_refused_before_sending(
    gateway: Gateway, session_factory: SessionFactory, ops_ctx: ServiceContext
) -> None:
    cb = await seed_charger(session_factory)
    async with operations_charger(gateway, session_factory, cb) as cp:
        for dry_run in (True, False):
            with pytest.raises(InvalidInput, match=r"only in OCPP 2\.0\.1"):
                await operations.request_operation(
                    ops_ctx, ADMIN, cb, "GetTransactionStatus", {}, dry_run=dry_run
                )
        # The 1.6 preview is unchanged.
        preview = await operations.request_operation(
            ops_ctx, ADMIN, cb, "Reset", {"type": "Hard"}, dry_run=True
        )
        assert preview["protocol"] == "ocpp1.6"
        assert preview["frame"][2:] == ["Reset", {"type": "Hard"}]
        assert cp.received == []
    assert await operations.list_operations(ops_ctx, charge_box_id=cb) == []
