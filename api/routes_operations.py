"""Remote operations: ``POST /api/v1/chargers/{id}/operations/{Action}``, the operations log and
each charger's last configuration. Thin over ``services/operations.py``; admin and operator
(live-checked), what each may send decided by the operation allow-list; every request audited
by the service."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query

from api.authz import LiveOperator
from api.services import Services, actor_of
from services import operations

router = APIRouter(prefix="/api/v1", tags=["operations"])

ChargeBoxId = Annotated[str, Path(min_length=1, max_length=255)]


@router.post("/chargers/{charge_box_id}/operations/{action}")
async def request_operation(
    charge_box_id: ChargeBoxId,
    action: Annotated[str, Path(max_length=64)],
    principal: LiveOperator,
    ctx: Services,
    fields: Annotated[dict[str, Any] | None, Body()] = None,
    dry_run: bool = False,
    timeout_s: Annotated[float, Query(ge=1, le=300)] = 30.0,
) -> dict[str, Any]:
    """Send ``action`` (an OCPP 1.6 central-system message, e.g. ``Reset``) with the body's
    fields, named as in OCPP (``{"type": "Soft"}``). Answers the operation as it stands when
    the charger answered or ``timeout_s`` ran out; ``?dry_run=true`` answers the frame instead
    and sends nothing. 422: the fields break the OCPP schema (nothing sent); 409
    ``CHARGER_OFFLINE``: not connected (recorded, nothing sent); 403: not on your allow-list."""
    return await operations.request_operation(
        ctx,
        actor_of(principal),
        charge_box_id,
        action,
        fields or {},
        dry_run=dry_run,
        timeout_s=timeout_s,
    )


@router.get("/operations")
async def list_operations(
    _: LiveOperator,
    ctx: Services,
    charger: Annotated[str | None, Query(max_length=255)] = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
    action: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[dict[str, Any]]:
    return await operations.list_operations(
        ctx, charge_box_id=charger, status=status, action=action, limit=limit
    )


@router.get("/operations/{operation_id}")
async def get_operation(
    operation_id: Annotated[str, Path(max_length=64)], _: LiveOperator, ctx: Services
) -> dict[str, Any]:
    return await operations.get_operation(ctx, operation_id)


@router.get("/chargers/{charge_box_id}/configuration")
async def charger_configuration(
    charge_box_id: ChargeBoxId, _: LiveOperator, ctx: Services
) -> dict[str, Any]:
    """The charger's last GetConfiguration answer and what changed since the one before."""
    return await operations.charger_configuration(ctx, charge_box_id)
