"""``/api/v1/chargers``: register, read, change, rotate the password of and decommission chargers;
the unknown chargers the gateway refused. Admin only (live-checked), changes audited; thin over
:mod:`services.chargers`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.authz import AdminUser, LiveAdmin, Principal
from api.services import Services
from services import chargers
from services.actor import Actor

router = APIRouter(prefix="/api/v1/chargers", tags=["chargers"])


def actor_of(principal: Principal) -> Actor:
    return Actor(id=principal.actor, role=principal.role, source=principal.source or "api")


@router.post("", status_code=201)
async def add_charger(body: chargers.NewCharger, admin: LiveAdmin, ctx: Services) -> dict[str, Any]:
    """Answers ``{charger, password}``: the password is shown this once (only its hash is kept)."""
    return await chargers.add_charger(ctx, actor_of(admin), body)


@router.get("")
async def list_chargers(
    _: AdminUser,
    ctx: Services,
    include_decommissioned: Annotated[bool, Query(alias="all")] = False,
) -> list[dict[str, Any]]:
    return await chargers.list_chargers(ctx, include_decommissioned=include_decommissioned)


@router.get("/pending")
async def pending_chargers(_: AdminUser, ctx: Services) -> list[dict[str, Any]]:
    """Unknown chargeBoxIds the gateway refused: when, how often, from which address."""
    return await chargers.list_pending(ctx)


@router.get("/{charge_box_id}")
async def show_charger(charge_box_id: str, _: AdminUser, ctx: Services) -> dict[str, Any]:
    return await chargers.show_charger(ctx, charge_box_id)


@router.patch("/{charge_box_id}")
async def set_charger(
    charge_box_id: str, body: chargers.ChargerPatch, admin: LiveAdmin, ctx: Services
) -> dict[str, Any]:
    """Answers ``{charger, warnings}`` (a loud warning when ``allow_unauthenticated`` is set)."""
    return await chargers.set_charger(ctx, actor_of(admin), charge_box_id, body)


@router.post("/{charge_box_id}/password")
async def rotate_password(charge_box_id: str, admin: LiveAdmin, ctx: Services) -> dict[str, Any]:
    """A new password, shown this once; the old one works until the charger uses the new one."""
    return await chargers.rotate_password(ctx, actor_of(admin), charge_box_id)


@router.delete("/{charge_box_id}")
async def decommission_charger(
    charge_box_id: str, admin: LiveAdmin, ctx: Services
) -> dict[str, Any]:
    """Decommission: the row and its history stay; the gateway refuses the charger."""
    return await chargers.decommission_charger(ctx, actor_of(admin), charge_box_id)
