"""Operators: a charger's local authorization list, and a forced Full update."""

from __future__ import annotations

from fastapi import APIRouter

from api.authz import AdminUser, LiveAdmin, Principal
from api.services import Services
from services import local_lists
from services.actor import Actor

router = APIRouter(prefix="/api/v1", tags=["local-lists"])


def _actor(principal: Principal) -> Actor:
    return Actor(id=principal.actor, role=principal.role, source=principal.source or "api")


@router.get("/chargers/{charge_box_id}/local-list", response_model=local_lists.LocalListView)
async def show_local_list(
    charge_box_id: str, _: AdminUser, ctx: Services
) -> local_lists.LocalListView:
    """The list the charger acknowledged (version, entries), whether it supports local lists,
    its limits, whether it is in step with the cards, and the last sync."""
    return await local_lists.show(ctx, charge_box_id)


@router.post(
    "/chargers/{charge_box_id}/local-list/sync",
    status_code=202,
    response_model=local_lists.SyncRequested,
)
async def sync_local_list(
    charge_box_id: str, admin: LiveAdmin, ctx: Services
) -> local_lists.SyncRequested:
    """A forced Full update (and a new support probe) of one charger; answers at once."""
    return await local_lists.request_sync(ctx, _actor(admin), charge_box_id)


@router.post("/local-lists/sync", status_code=202, response_model=local_lists.SyncRequested)
async def sync_all_local_lists(admin: LiveAdmin, ctx: Services) -> local_lists.SyncRequested:
    """A forced Full update of every charger that supports local lists."""
    return await local_lists.request_sync(ctx, _actor(admin), None)
