"""``/api/v1/sites`` and ``/api/v1/tariffs``: admin only (live-checked), changes audited; thin over
:mod:`services.sites` and :mod:`services.tariffs`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.authz import AdminUser, LiveAdmin
from api.routes_chargers import actor_of
from api.services import Services
from services import sites, tariffs

router = APIRouter(prefix="/api/v1", tags=["sites", "tariffs"])


@router.post("/sites", status_code=201)
async def add_site(body: sites.NewSite, admin: LiveAdmin, ctx: Services) -> dict[str, Any]:
    return await sites.add_site(ctx, actor_of(admin), body)


@router.get("/sites")
async def list_sites(_: AdminUser, ctx: Services) -> list[dict[str, Any]]:
    return await sites.list_sites(ctx)


@router.get("/sites/{site}")
async def show_site(site: str, _: AdminUser, ctx: Services) -> dict[str, Any]:
    """``site``: its name or id."""
    return await sites.show_site(ctx, site)


@router.patch("/sites/{site}")
async def set_site(
    site: str, body: sites.SitePatch, admin: LiveAdmin, ctx: Services
) -> dict[str, Any]:
    return await sites.set_site(ctx, actor_of(admin), site, body)


@router.post("/tariffs", status_code=201)
async def add_tariff(body: tariffs.NewTariff, admin: LiveAdmin, ctx: Services) -> dict[str, Any]:
    return await tariffs.add_tariff(ctx, actor_of(admin), body)


@router.get("/tariffs")
async def list_tariffs(_: AdminUser, ctx: Services) -> list[dict[str, Any]]:
    return await tariffs.list_tariffs(ctx)


@router.get("/tariffs/{code}")
async def show_tariff(code: str, _: AdminUser, ctx: Services) -> dict[str, Any]:
    return await tariffs.show_tariff(ctx, code)


@router.post("/tariffs/{code}/versions", status_code=201)
async def add_tariff_version(
    code: str, body: tariffs.NewTariffVersion, admin: LiveAdmin, ctx: Services
) -> dict[str, Any]:
    """A new version from ``valid_from`` (default now): prices are never edited in place."""
    return await tariffs.add_version(ctx, actor_of(admin), code, body)
