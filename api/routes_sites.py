"""``/api/v1/sites`` and ``/api/v1/tariffs``: admin only (live-checked), changes audited; thin over
:mod:`services.sites` and :mod:`services.tariffs`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.authz import AdminUser, LiveAdmin
from api.routes_chargers import actor_of
from api.services import Services
from services import site_load, sites, tariffs

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


@router.patch(
    "/sites/{site}/load-limit",
    response_model=site_load.SiteLoadView,
    summary="Set the site's power limit (kW, or A per phase)",
)
async def set_load_limit(
    site: str, body: site_load.LoadLimitInput, admin: LiveAdmin, ctx: Services
) -> site_load.SiteLoadView:
    """The site's ``SiteLoad`` workflow divides it among the active sessions and pushes the
    charging profiles (docs/load-management.md)."""
    return await site_load.set_load_limit(ctx, actor_of(admin), site, body)


@router.delete(
    "/sites/{site}/load-limit",
    response_model=site_load.SiteLoadView,
    summary="Remove the site's power limit",
)
async def clear_load_limit(site: str, admin: LiveAdmin, ctx: Services) -> site_load.SiteLoadView:
    """The profiles set on connected chargers are cleared."""
    return await site_load.clear_load_limit(ctx, actor_of(admin), site)


@router.get(
    "/sites/{site}/load",
    response_model=site_load.SiteLoadView,
    summary="The site's limit and each active session's current limit",
)
async def show_site_load(site: str, _: AdminUser, ctx: Services) -> site_load.SiteLoadView:
    return await site_load.site_load(ctx, site)


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
