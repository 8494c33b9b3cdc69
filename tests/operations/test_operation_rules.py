"""What happens before and around sending: dry runs send nothing, schema violations are refused
before anything is written or sent, the allow-list, secrets kept out of the log and of Temporal's
history, a dead gateway, the kept configuration, and retries that must not resend."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import select, update
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import Worker

from db.engine import SessionFactory
from db.models import AuditLog, Charger
from db.operation_models import ChargerOperation, ChargerOperationSecret
from db.operations import insert_operation, mark_sent
from gateway.main import Gateway
from services import operations
from services.actor import Actor
from services.context import ServiceContext
from services.errors import Forbidden, InvalidInput, NotFound
from tests.gateway.conftest import seed_charger
from tests.gateway.session_stub import CommandProbe, CommandProbeInput
from tests.helpers import eventually
from tests.operations.charger import REQUESTS
from tests.operations.conftest import ADMIN, OPERATOR, operations_charger
from workflows.charger_operation import workflow_id_for
from workflows.messages import (
    ACTIVITY_SEND_CHARGER_COMMAND,
    ChargerCommandInput,
    ChargerCommandResult,
)


async def _rows(sf: SessionFactory, charge_box_id: str) -> list[ChargerOperation]:
    async with sf() as db:
        return list(
            (
                await db.scalars(
                    select(ChargerOperation)
                    .where(ChargerOperation.charge_box_id == charge_box_id)
                    .order_by(ChargerOperation.created_at)
                )
            ).all()
        )


async def _audit(sf: SessionFactory, charge_box_id: str) -> list[AuditLog]:
    async with sf() as db:
        return list(
            (
                await db.scalars(
                    select(AuditLog).where(AuditLog.subject == charge_box_id).order_by(AuditLog.id)
                )
            ).all()
        )


async def test_dry_run_answers_the_frame_and_sends_nothing(
    gateway: Gateway, session_factory: SessionFactory, ops_ctx: ServiceContext
) -> None:
    cb = await seed_charger(session_factory)
    async with operations_charger(gateway, session_factory, cb) as cp:
        answer = await operations.request_operation(
            ops_ctx, ADMIN, cb, "Reset", {"type": "Hard"}, dry_run=True
        )
        frame = answer["frame"]
        assert frame[0] == 2 and frame[2:] == ["Reset", {"type": "Hard"}]
        assert uuid.UUID(frame[1]) and answer["sent"] is False
        # A charger round trip after the dry run: the only CALL it ever got is this one.
        await operations.request_operation(ops_ctx, ADMIN, cb, "ClearCache", {})
        assert [a for _, a, _ in cp.received] == ["ClearCache"]
    assert [r.action for r in await _rows(session_factory, cb)] == ["ClearCache"]
    assert [a.action for a in await _audit(session_factory, cb)] == [
        "operation.dry_run",
        "operation.requested",
    ]


@pytest.mark.parametrize(
    ("action", "fields", "path"),
    [
        ("Reset", {"type": "Harder"}, ["type"]),
        ("Reset", {}, ["type"]),
        ("ChangeConfiguration", {"key": "HeartbeatInterval", "value": 60}, ["value"]),
        ("UnlockConnector", {"connectorId": "one"}, ["connectorId"]),
        ("RemoteStartTransaction", {"idTag": "X" * 21}, ["idTag"]),
        ("GetConfiguration", {"keys": ["HeartbeatInterval"]}, []),
        (
            "SetChargingProfile",
            {"connectorId": 1, "csChargingProfiles": {}},
            ["csChargingProfiles"],
        ),
    ],
)
async def test_schema_violations_are_refused_before_anything_is_written_or_sent(
    gateway: Gateway,
    session_factory: SessionFactory,
    ops_ctx: ServiceContext,
    action: str,
    fields: dict[str, object],
    path: list[str],
) -> None:
    cb = await seed_charger(session_factory)
    async with operations_charger(gateway, session_factory, cb) as cp:
        with pytest.raises(InvalidInput) as refused:
            await operations.request_operation(ops_ctx, ADMIN, cb, action, fields)
        assert "nothing was sent" in refused.value.message
        assert refused.value.issues and refused.value.issues[0]["path"][: len(path)] == path
        # Dry runs are validated the same way.
        with pytest.raises(InvalidInput):
            await operations.request_operation(ops_ctx, ADMIN, cb, action, fields, dry_run=True)
        assert cp.received == []
    assert await _rows(session_factory, cb) == []
    audit = await _audit(session_factory, cb)
    assert [a.action for a in audit] == ["operation.refused", "operation.refused"]
    assert audit[0].details["reason"] == "VALIDATION_FAILED"


async def test_unknown_action_and_unknown_charger_are_not_found(ops_ctx: ServiceContext) -> None:
    with pytest.raises(NotFound):
        await operations.request_operation(ops_ctx, ADMIN, "CB-NOPE", "Heartbeat", {})
    with pytest.raises(NotFound):
        await operations.request_operation(ops_ctx, ADMIN, "CB-NOPE", "ClearCache", {})
    with pytest.raises(NotFound):
        await operations.get_operation(ops_ctx, str(uuid.uuid4()))
    with pytest.raises(NotFound):
        await operations.get_operation(ops_ctx, "not-a-uuid")


async def test_the_allow_list_decides_per_role(
    gateway: Gateway, session_factory: SessionFactory, ops_ctx: ServiceContext
) -> None:
    cb = await seed_charger(session_factory)
    driver = Actor(id="user:driver", role="customer", source="198.51.100.1")
    async with operations_charger(gateway, session_factory, cb) as cp:
        for actor, action in (
            (OPERATOR, "Reset"),
            (OPERATOR, "UpdateFirmware"),
            (driver, "ClearCache"),
        ):
            with pytest.raises(Forbidden):
                await operations.request_operation(ops_ctx, actor, cb, action, REQUESTS[action])
        op = await operations.request_operation(ops_ctx, OPERATOR, cb, "GetConfiguration", {})
        assert op["status"] == "answered" and op["requested_by"] == OPERATOR.id
        # The setting changes it: this operator may Reset and nothing else.
        settings = ops_ctx.settings.model_copy(
            update={"operation_allowlist": {"operator": ["Reset"]}}
        )
        narrowed = ServiceContext(
            settings=settings, sessions=ops_ctx.sessions, temporal=ops_ctx.temporal
        )
        op = await operations.request_operation(narrowed, OPERATOR, cb, "Reset", {"type": "Soft"})
        assert op["status"] == "answered"
        with pytest.raises(Forbidden):
            await operations.request_operation(narrowed, OPERATOR, cb, "GetConfiguration", {})
        with pytest.raises(Forbidden):  # admin is not listed in this allow-list
            await operations.request_operation(narrowed, ADMIN, cb, "ClearCache", {})
        assert [a for _, a, _ in cp.received] == ["GetConfiguration", "Reset"]


async def test_the_authorization_key_reaches_the_charger_but_no_log_and_no_history(
    gateway: Gateway,
    session_factory: SessionFactory,
    ops_ctx: ServiceContext,
    temporal_client: Client,
) -> None:
    cb = await seed_charger(session_factory)
    secret = f"s3cret-{uuid.uuid4().hex}"
    fields = {"key": "AuthorizationKey", "value": secret}
    async with operations_charger(gateway, session_factory, cb) as cp:
        dry = await operations.request_operation(
            ops_ctx, ADMIN, cb, "ChangeConfiguration", fields, dry_run=True
        )
        assert dry["frame"][3] == {"key": "AuthorizationKey", "value": "***"}
        op = await operations.request_operation(ops_ctx, ADMIN, cb, "ChangeConfiguration", fields)
        assert op["status"] == "answered"
        assert cp.received[-1][2] == {"key": "AuthorizationKey", "value": secret}
    assert op["request"] == {"key": "AuthorizationKey", "value": "***"}
    async with session_factory() as db:
        assert await db.get(ChargerOperationSecret, op["id"]) is None  # dropped once finished
    for entry in await _audit(session_factory, cb):
        assert secret not in str(entry.details)
    history = await temporal_client.get_workflow_handle(op["workflow_id"]).fetch_history()
    assert secret not in history.to_json()


async def test_a_gateway_that_is_gone_makes_the_operation_charger_offline(
    session_factory: SessionFactory, ops_ctx: ServiceContext, gateway: Gateway
) -> None:
    """The charger's row says connected, but its gateway process is dead: nobody picks up."""
    cb = await seed_charger(session_factory)
    async with session_factory.begin() as db:
        await db.execute(
            update(Charger)
            .where(Charger.charge_box_id == cb)
            .values(connected=True, gateway_instance=f"gone-{uuid.uuid4().hex[:8]}")
        )
    pending = asyncio.create_task(
        operations.request_operation(ops_ctx, ADMIN, cb, "Reset", {"type": "Soft"})
    )

    async def waiting() -> ChargerOperation:
        rows = await _rows(session_factory, cb)
        assert len(rows) == 1
        return rows[0]

    # Written before anything else, and requested while it waits for a gateway.
    row = await eventually(waiting, message="the operation row")
    assert row.status in ("requested", "charger_offline") and row.sent_at is None
    op = await pending
    assert op["id"] == row.id
    assert op["status"] == "charger_offline" and op["sent_at"] is None
    assert "no gateway picked the command up" in op["error"]


async def test_a_charger_gone_from_its_gateway_is_charger_offline(
    session_factory: SessionFactory, ops_ctx: ServiceContext, gateway: Gateway
) -> None:
    """The row says connected to a live gateway that has no socket for it."""
    cb = await seed_charger(session_factory)
    async with session_factory.begin() as db:
        await db.execute(
            update(Charger)
            .where(Charger.charge_box_id == cb)
            .values(connected=True, gateway_instance=gateway.settings.gateway_instance)
        )
    op = await operations.request_operation(ops_ctx, ADMIN, cb, "Reset", {"type": "Soft"})
    assert op["status"] == "charger_offline" and op["sent_at"] is None
    assert "not connected to this gateway" in op["error"]


async def test_the_last_configuration_is_kept_with_what_changed(
    gateway: Gateway, session_factory: SessionFactory, ops_ctx: ServiceContext
) -> None:
    from tests.operations import charger as sim

    cb = await seed_charger(session_factory)
    empty = await operations.charger_configuration(ops_ctx, cb)
    assert empty["keys"] == [] and empty["read_at"] is None
    async with operations_charger(gateway, session_factory, cb):
        first = await operations.request_operation(ops_ctx, ADMIN, cb, "GetConfiguration", {})
        config = await operations.charger_configuration(ops_ctx, cb)
        assert config["operation_id"] == first["id"] and config["changes"] == []
        assert {k["key"]: k["value"] for k in config["keys"]} == {
            "HeartbeatInterval": "300",
            "AuthorizationKey": "***",
        }
        original = sim.ANSWERS["GetConfiguration"]
        sim.ANSWERS["GetConfiguration"] = (
            {
                "configurationKey": [
                    {"key": "HeartbeatInterval", "readonly": False, "value": "60"},
                    {"key": "MeterValueSampleInterval", "readonly": False, "value": "30"},
                ]
            },
            None,
        )
        try:
            await operations.request_operation(ops_ctx, ADMIN, cb, "GetConfiguration", {})
        finally:
            sim.ANSWERS["GetConfiguration"] = original
    config = await operations.charger_configuration(ops_ctx, cb)
    assert config["changes"] == [
        {"key": "AuthorizationKey", "change": "removed", "before": "***"},
        {"key": "HeartbeatInterval", "change": "changed", "before": "300", "after": "60"},
        {"key": "MeterValueSampleInterval", "change": "added", "after": "30"},
    ]
    with pytest.raises(NotFound):
        await operations.charger_configuration(ops_ctx, "CB-NOPE")


# -- send_charger_command as other workflows use it --------------------------------------------


async def _probe(
    client: Client, gateway: Gateway, command: ChargerCommandInput, workflow_id: str
) -> object:
    return await client.execute_workflow(
        CommandProbe.run,
        CommandProbeInput(
            charge_box_id=command.charge_box_id,
            gateway_task_queue=gateway.settings.gateway_task_queue,
            command=command,
        ),
        id=workflow_id,
        task_queue=gateway.settings.temporal_task_queue,
    )


async def test_a_workflow_command_is_logged_under_its_workflow(
    gateway: Gateway, session_factory: SessionFactory, temporal_client: Client
) -> None:
    cb = await seed_charger(session_factory)
    workflow_id = f"probe-{uuid.uuid4().hex}"
    async with operations_charger(gateway, session_factory, cb) as cp:
        await _probe(
            temporal_client,
            gateway,
            ChargerCommandInput(charge_box_id=cb, action="Reset", payload={"type": "Soft"}),
            workflow_id,
        )
    [row] = await _rows(session_factory, cb)
    assert (row.status, row.source, row.workflow_id) == ("answered", workflow_id, workflow_id)
    assert row.requested_by == "workflow:CommandProbe"
    assert cp.received[0][0] == row.id


@pytest.mark.parametrize(("action", "resent"), [("Reset", False), ("ClearCache", True)])
async def test_a_retry_finding_its_operation_sent_without_answer(
    gateway: Gateway,
    session_factory: SessionFactory,
    temporal_client: Client,
    action: str,
    resent: bool,
) -> None:
    """As if an earlier attempt sent the frame and the gateway died before the answer: a
    non-idempotent action is not sent again, an idempotent one is."""
    cb = await seed_charger(session_factory)
    operation_id = str(uuid.uuid4())
    async with session_factory.begin() as db:
        await insert_operation(
            db,
            operation_id=operation_id,
            charge_box_id=cb,
            action=action,
            fields=REQUESTS[action],
            requested_by=ADMIN.id,
            source=ADMIN.source,
            workflow_id=workflow_id_for(operation_id),
        )
    await mark_sent(session_factory, operation_id)
    command = ChargerCommandInput(
        charge_box_id=cb, action=action, payload=REQUESTS[action], operation_id=operation_id
    )
    async with operations_charger(gateway, session_factory, cb) as cp:
        if resent:
            await _probe(temporal_client, gateway, command, f"probe-{uuid.uuid4().hex}")
        else:
            with pytest.raises(WorkflowFailureError) as failure:
                await _probe(temporal_client, gateway, command, f"probe-{uuid.uuid4().hex}")
            cause = failure.value.cause
            assert isinstance(cause, ActivityError) and isinstance(cause.cause, ApplicationError)
            assert cause.cause.type == "ChargerOffline" and cause.cause.non_retryable
        assert len(cp.received) == (1 if resent else 0)
    [row] = await _rows(session_factory, cb)
    assert row.status == ("answered" if resent else "failed")
    if not resent:
        assert "not sent again" in (row.error or "")


async def test_the_operations_list_filters(
    gateway: Gateway, session_factory: SessionFactory, ops_ctx: ServiceContext
) -> None:
    cb = await seed_charger(session_factory)
    async with operations_charger(gateway, session_factory, cb) as cp:
        await operations.request_operation(ops_ctx, ADMIN, cb, "ClearCache", {})
        cp.mode = "Rejected"
        rejected = await operations.request_operation(ops_ctx, ADMIN, cb, "ClearCache", {})
    assert [
        o["id"]
        for o in await operations.list_operations(ops_ctx, charge_box_id=cb, status="rejected")
    ] == [rejected["id"]]
    assert len(await operations.list_operations(ops_ctx, charge_box_id=cb)) == 2
    with pytest.raises(InvalidInput):
        await operations.list_operations(ops_ctx, status="lost")


@pytest.mark.parametrize(("sent", "status"), [(True, "timed_out"), (False, "failed")])
async def test_a_gateway_that_dies_mid_call_never_leaves_the_row_open(
    session_factory: SessionFactory,
    ops_ctx: ServiceContext,
    temporal_client: Client,
    gateway: Gateway,
    sent: bool,
    status: str,
) -> None:
    """A stand-in gateway takes the command (after marking it sent, or before) and never
    reports: the workflow finishes the row when the activity's time is up."""
    cb = await seed_charger(session_factory)
    instance = f"hung-{uuid.uuid4().hex[:8]}"
    async with session_factory.begin() as db:
        await db.execute(
            update(Charger)
            .where(Charger.charge_box_id == cb)
            .values(connected=True, gateway_instance=instance)
        )

    @activity.defn(name=ACTIVITY_SEND_CHARGER_COMMAND)
    async def hangs(input: ChargerCommandInput) -> ChargerCommandResult:
        assert input.operation_id is not None
        if sent:
            await mark_sent(session_factory, input.operation_id)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async with Worker(temporal_client, task_queue=f"gateway-{instance}", activities=[hangs]):
        op = await operations.request_operation(
            ops_ctx, ADMIN, cb, "Reset", {"type": "Soft"}, timeout_s=1
        )
        await temporal_client.get_workflow_handle(op["workflow_id"]).result()
    op = await operations.get_operation(ops_ctx, op["id"])
    assert op["status"] == status, op
    assert (op["sent_at"] is not None) is sent
    assert "did not report" in op["error"]
