"""Remote operations: what an operator asks a charger to do, through one family for the API and
the CLI (see docs/operations.md).

:func:`request_operation` checks the caller's allow-list (``POLARIS_OPERATION_ALLOWLIST``),
validates the fields against the protocol's schema (nothing is written or sent when they are
wrong), and then either answers the frame (dry run), records ``charger_offline`` at once (the
charger is not connected), or writes the operation row and starts ``ChargerOperationWorkflow``,
waiting up to the operation's timeout for the charger's answer. Every request is audited.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from temporalio.client import WorkflowFailureError
from temporalio.service import RPCError

from db.audit import add_audit, write_audit
from db.models import Charger, Transaction
from db.operation_models import ChargerConfiguration, ChargerOperation
from db.operations import finish_operation, insert_operation
from domain.operations import (
    OCPP201_ONLY_ACTIONS,
    OPERATION_ACTIONS,
    OPERATION_STATUSES,
    configuration_changes,
    redact_request,
)
from gateway import ocpp16_operations as ocpp16
from gateway import ocpp201_operations as ocpp201
from services.actor import Actor
from services.context import ServiceContext
from services.errors import ChargerOffline, Forbidden, InvalidInput, NotFound, Unavailable
from workflows.charger_operation import (
    GATEWAY_MARGIN,
    ChargerOperationInput,
    ChargerOperationWorkflow,
    workflow_id_for,
)

MIN_TIMEOUT_S = 1.0
MAX_TIMEOUT_S = 300.0
# How much longer than the operation's timeout the caller waits for the workflow's outcome: past
# the workflow's own margin, so a gateway that died mid-call is reported, not left "sent".
WAIT_MARGIN_S = GATEWAY_MARGIN.total_seconds() + 5.0


def allowed_actions(ctx: ServiceContext, role: str) -> frozenset[str]:
    granted = ctx.settings.operation_allowlist.get(role)
    if granted is None:
        return frozenset()
    return frozenset(OPERATION_ACTIONS if granted == "*" else granted)


def check_action(ctx: ServiceContext, actor: Actor, action: str) -> None:
    if action not in OPERATION_ACTIONS:
        raise NotFound(f"no operation {action!r}; operations: {', '.join(OPERATION_ACTIONS)}")
    if action not in allowed_actions(ctx, actor.role):
        raise Forbidden(f"the {actor.role} role may not send {action} (operation allow-list)")


def validate_fields(action: str, fields: dict[str, Any], version: str = "1.6") -> None:
    """Check ``fields`` (OCPP 1.6 names, or a 2.0.1-only operation's own) for a charger whose last
    connection used OCPP ``version``."""
    if action in OCPP201_ONLY_ACTIONS:
        if version != ocpp201.OCPP_VERSION:
            raise InvalidInput(
                f"{action} exists only in OCPP 2.0.1 and the charger's last connection used "
                f"OCPP {version}; nothing was sent",
                issues=[{"path": ["action"], "message": "an OCPP 2.0.1-only operation"}],
            )
        issues = ocpp201.validate_request(action, fields)
        version = ocpp201.OCPP_VERSION
    else:
        issues = ocpp16.validate_request(action, fields)
        version = ocpp16.OCPP_VERSION
    if issues:
        raise InvalidInput(
            f"the {action} request does not fit the OCPP {version} schema; nothing was sent",
            issues=issues,
        )


def charger_version(charger: Charger) -> str:
    """The OCPP version of the charger's last connection (1.6 when it never said)."""
    return ocpp201.OCPP_VERSION if charger.ocpp_version == ocpp201.OCPP_VERSION else "1.6"


async def translate_for_201(
    ctx: ServiceContext, charge_box_id: str, action: str, fields: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """The 2.0.1 action and payload the gateway will send for this operation (the adapter
    ``gateway/ocpp201_operations.py``, with the facts it looks up), checked against the 2.0.1
    schema. :class:`InvalidInput` when it has no translation or the result does not fit."""
    facts = ocpp201.Facts()
    if action == "RemoteStopTransaction":
        async with ctx.sessions() as db:
            ocpp_tx = await db.scalar(
                select(Transaction.ocpp_transaction_id).where(
                    Transaction.id == fields.get("transactionId"),
                    Transaction.charge_box_id == charge_box_id,
                )
            )
        facts = ocpp201.Facts(ocpp_transaction_id=ocpp_tx)
    try:
        sent_action, payload = ocpp201.translate_request(action, fields, facts)
    except ocpp201.Untranslatable as exc:
        raise InvalidInput(
            f"{exc} (the charger's last connection used OCPP 2.0.1); nothing was sent",
            issues=[{"path": ["action"], "message": str(exc)}],
        ) from None
    issues = ocpp201.validate_request(sent_action, payload)
    if issues:
        raise InvalidInput(
            f"the {action} request, as {sent_action}, does not fit the OCPP 2.0.1 schema; "
            "nothing was sent",
            issues=issues,
        )
    return sent_action, payload


async def request_operation(
    ctx: ServiceContext,
    actor: Actor,
    charge_box_id: str,
    action: str,
    fields: dict[str, Any],
    *,
    dry_run: bool = False,
    timeout_s: float = 30.0,
) -> dict[str, Any]:
    """Send ``action`` with ``fields`` (OCPP's own names) to the charger; the operation as it
    stands when the charger answered or the wait ran out (``dry_run``: the frame instead)."""
    audit_details: dict[str, Any] = {
        "action": action,
        "fields": redact_request(action, fields),
        "dry_run": dry_run,
    }
    try:
        check_action(ctx, actor, action)
        if not MIN_TIMEOUT_S <= timeout_s <= MAX_TIMEOUT_S:
            raise InvalidInput(
                "timeout out of range",
                issues=[
                    {
                        "path": ["timeout_s"],
                        "message": f"between {MIN_TIMEOUT_S} and {MAX_TIMEOUT_S} seconds",
                    }
                ],
            )
        async with ctx.sessions() as db:
            charger = await db.get(Charger, charge_box_id)
        if charger is None:
            validate_fields(action, fields)
            raise NotFound(f"charger {charge_box_id!r} not found")
        # Validated and previewed with the adapter of the charger's last-used protocol.
        version = charger_version(charger)
        validate_fields(action, fields, version)
        frame_action, frame_fields = action, redact_request(action, fields)
        if version == ocpp201.OCPP_VERSION:
            frame_action, frame_fields = await translate_for_201(
                ctx, charge_box_id, action, frame_fields
            )
    except (Forbidden, InvalidInput, NotFound) as exc:
        await write_audit(
            ctx.sessions,
            actor.id,
            "operation.refused",
            subject=charge_box_id,
            source=actor.source,
            details={**audit_details, "reason": exc.code, "issues": exc.issues},
        )
        raise
    operation_id = str(uuid.uuid4())
    if dry_run:
        await write_audit(
            ctx.sessions,
            actor.id,
            "operation.dry_run",
            subject=charge_box_id,
            source=actor.source,
            details=audit_details,
        )
        return {
            "dry_run": True,
            "charge_box_id": charge_box_id,
            "action": action,
            "protocol": ocpp201.PROTOCOL if version == ocpp201.OCPP_VERSION else ocpp16.PROTOCOL,
            # Secrets show as *** here too: the frame sent carries the value.
            "frame": ocpp16.build_frame(frame_action, frame_fields, operation_id),
            "sent": False,
        }
    connected = charger.connected and charger.gateway_instance is not None
    async with ctx.sessions() as db, db.begin():
        await insert_operation(
            db,
            operation_id=operation_id,
            charge_box_id=charge_box_id,
            action=action,
            fields=fields,
            requested_by=actor.id,
            source=actor.source,
            workflow_id=workflow_id_for(operation_id) if connected else None,
            # The protocol of the charger's last connection (2.0.1: translated at the gateway).
            protocol=ocpp201.PROTOCOL if version == ocpp201.OCPP_VERSION else ocpp16.PROTOCOL,
            status="requested" if connected else "charger_offline",
            error=None if connected else f"{charge_box_id} is not connected",
        )
        add_audit(
            db,
            actor.id,
            "operation.requested",
            subject=charge_box_id,
            source=actor.source,
            details={**audit_details, "operation_id": operation_id},
        )
    if not connected:
        raise ChargerOffline(
            f"charger {charge_box_id} is not connected; nothing was sent "
            f"(operation {operation_id} recorded as charger_offline)"
        )
    await _run(ctx, charger, operation_id, action, fields, timeout_s)
    return await get_operation(ctx, operation_id)


async def _run(
    ctx: ServiceContext,
    charger: Charger,
    operation_id: str,
    action: str,
    fields: dict[str, Any],
    timeout_s: float,
) -> None:
    try:
        client = await ctx.temporal()
        handle = await client.start_workflow(
            ChargerOperationWorkflow.run,
            ChargerOperationInput(
                operation_id=operation_id,
                charge_box_id=charger.charge_box_id,
                action=action,
                payload=redact_request(action, fields),
                timeout_s=timeout_s,
                gateway_task_queue=f"gateway-{charger.gateway_instance}",
                pickup_timeout_s=ctx.settings.operation_pickup_timeout_s,
            ),
            id=workflow_id_for(operation_id),
            task_queue=ctx.settings.temporal_task_queue,
        )
    except (RPCError, RuntimeError, OSError) as exc:
        await finish_operation(
            ctx.sessions, operation_id, "failed", error=f"could not start the operation: {exc}"
        )
        raise Unavailable(
            f"Temporal is unavailable; operation {operation_id} was not sent"
        ) from exc
    # Whatever the workflow's outcome, the row tells where the operation stands.
    with contextlib.suppress(TimeoutError, WorkflowFailureError):
        await asyncio.wait_for(handle.result(), timeout_s + WAIT_MARGIN_S)


async def get_operation(ctx: ServiceContext, operation_id: str) -> dict[str, Any]:
    try:
        uuid.UUID(operation_id)
    except ValueError:
        raise NotFound(f"operation {operation_id!r} not found") from None
    async with ctx.sessions() as db:
        row = await db.get(ChargerOperation, operation_id)
    if row is None:
        raise NotFound(f"operation {operation_id!r} not found")
    return operation_view(row)


async def list_operations(
    ctx: ServiceContext,
    *,
    charge_box_id: str | None = None,
    status: str | None = None,
    action: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Newest first."""
    if status is not None and status not in OPERATION_STATUSES:
        raise InvalidInput(
            "unknown status",
            issues=[{"path": ["status"], "message": f"one of {', '.join(OPERATION_STATUSES)}"}],
        )
    query = (
        select(ChargerOperation)
        .order_by(ChargerOperation.created_at.desc())
        .limit(max(1, min(limit, 500)))
    )
    if charge_box_id is not None:
        query = query.where(ChargerOperation.charge_box_id == charge_box_id)
    if status is not None:
        query = query.where(ChargerOperation.status == status)
    if action is not None:
        query = query.where(ChargerOperation.action == action)
    async with ctx.sessions() as db:
        rows = (await db.scalars(query)).all()
    return [operation_view(r) for r in rows]


async def charger_configuration(ctx: ServiceContext, charge_box_id: str) -> dict[str, Any]:
    """The charger's last GetConfiguration answer, and what changed since the one before."""
    async with ctx.sessions() as db:
        charger = await db.get(Charger, charge_box_id)
        config = await db.get(ChargerConfiguration, charge_box_id)
    if charger is None:
        raise NotFound(f"charger {charge_box_id!r} not found")
    if config is None:
        return {
            "charge_box_id": charge_box_id,
            "read_at": None,
            "keys": [],
            "unknown_keys": [],
            "changes": [],
            "hint": f"polaris chargers op {charge_box_id} GetConfiguration",
        }
    return {
        "charge_box_id": charge_box_id,
        "read_at": _iso(config.read_at),
        "operation_id": config.operation_id,
        "full": config.full,
        "keys": [{"key": k, **v} for k, v in sorted(config.keys.items())],
        "unknown_keys": list(config.unknown_keys),
        "previous_read_at": _iso(config.previous_read_at),
        "changes": configuration_changes(
            config.previous_keys, config.keys, current_is_full=config.full
        ),
    }


def operation_view(row: ChargerOperation) -> dict[str, Any]:
    return {
        "id": row.id,
        "charge_box_id": row.charge_box_id,
        "action": row.action,
        "protocol": row.protocol,
        "status": row.status,
        "request": row.request,
        "response": row.response,
        "error": row.error,
        "requested_by": row.requested_by,
        "source": row.source,
        "workflow_id": row.workflow_id,
        "created_at": _iso(row.created_at),
        "sent_at": _iso(row.sent_at),
        "finished_at": _iso(row.finished_at),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
