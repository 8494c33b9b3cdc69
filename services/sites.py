"""Sites: where chargers stand (name, address, coordinates, IANA time zone)."""

from __future__ import annotations

import zoneinfo
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from db.audit import add_audit
from db.models import Charger, Site
from services.actor import Actor
from services.context import ServiceContext
from services.errors import Conflict, InvalidInput, NotFound
from services.validation import invalid


@cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def check_timezone(name: str) -> str:
    """An IANA time zone name (``Europe/Amsterdam``, ``UTC``); anything else is refused."""
    zones = _zones()
    if zones and name not in zones:
        raise ValueError(f"{name!r} is not an IANA time zone name (like Europe/Amsterdam)")
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not an IANA time zone name") from None
    return name


class _SiteFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @field_validator("timezone", check_fields=False)
    @classmethod
    def _timezone(cls, value: str | None) -> str | None:
        return None if value is None else check_timezone(value)


class NewSite(_SiteFields):
    name: str = Field(min_length=1, max_length=200)
    address: str | None = Field(default=None, max_length=500)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    timezone: str = "UTC"


class SitePatch(_SiteFields):
    """Fields left out are kept; ``address``/coordinates given as null are cleared."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    address: str | None = Field(default=None, max_length=500)
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    timezone: str | None = None


def _check_pair(latitude: float | None, longitude: float | None) -> None:
    if (latitude is None) != (longitude is None):
        raise InvalidInput(
            "latitude and longitude go together",
            issues=[
                {"path": ["latitude"], "message": "give both latitude and longitude, or neither"},
                {"path": ["longitude"], "message": "give both latitude and longitude, or neither"},
            ],
        )


def site_dict(site: Site, chargers: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": site.id,
        "name": site.name,
        "address": site.address,
        "latitude": site.latitude,
        "longitude": site.longitude,
        "timezone": site.timezone,
        "created_at": site.created_at,
    }
    if chargers is not None:
        out["chargers"] = chargers
    return out


async def find_site(db: AsyncSession, ref: str | int) -> Site | None:
    """A site by name, else by numeric id."""
    text = str(ref)
    site = await db.scalar(select(Site).where(Site.name == text))
    if site is None and text.isdigit() and len(text) < 10:
        site = await db.get(Site, int(text))
    return site


async def _site_or_404(db: AsyncSession, ref: str | int) -> Site:
    site = await find_site(db, ref)
    if site is None:
        raise NotFound(f"no site {str(ref)!r}")
    return site


async def add_site(ctx: ServiceContext, actor: Actor, new: NewSite) -> dict[str, Any]:
    _check_pair(new.latitude, new.longitude)
    async with ctx.sessions() as db:
        try:
            async with db.begin():
                site = Site(**new.model_dump())
                db.add(site)
                await db.flush()
                add_audit(
                    db,
                    actor.id,
                    "site.added",
                    subject=f"site:{site.id}",
                    source=actor.source,
                    details=new.model_dump(),
                )
        except IntegrityError:
            raise Conflict(f"a site named {new.name!r} exists already") from None
        await db.refresh(site)
        return site_dict(site, 0)


async def list_sites(ctx: ServiceContext) -> list[dict[str, Any]]:
    counts = (
        select(Charger.site_id, func.count().label("n"))
        .where(Charger.decommissioned_at.is_(None))
        .group_by(Charger.site_id)
        .subquery()
    )
    async with ctx.sessions() as db:
        rows = (
            await db.execute(
                select(Site, func.coalesce(counts.c.n, 0))
                .outerjoin(counts, counts.c.site_id == Site.id)
                .order_by(Site.name)
            )
        ).all()
    return [site_dict(site, int(n)) for site, n in rows]


async def show_site(ctx: ServiceContext, ref: str | int) -> dict[str, Any]:
    async with ctx.sessions() as db:
        site = await _site_or_404(db, ref)
        chargers = (
            await db.scalars(
                select(Charger.charge_box_id)
                .where(Charger.site_id == site.id, Charger.decommissioned_at.is_(None))
                .order_by(Charger.charge_box_id)
            )
        ).all()
    out = site_dict(site, len(chargers))
    out["charge_box_ids"] = list(chargers)
    out["load"] = await _load_summary(ctx, site.id)
    return out


async def _load_summary(ctx: ServiceContext, site_id: int) -> dict[str, Any] | None:
    """The site's power limit and each active session's current limit (None: no limit)."""
    from services.site_load import site_load  # it reads sites through this module

    view = await site_load(ctx, site_id)
    if view.limit is None:
        return None
    return {
        "unit": view.limit.unit,
        "site_limit": view.limit.site_limit,
        "allocated": view.allocated,
        "sessions": [
            {
                "charge_box_id": s.charge_box_id,
                "connector_id": s.connector_id,
                "transaction_id": s.transaction_id,
                "limit": s.limit,
                "acknowledged_limit": s.acknowledged_limit,
                "paused": s.paused,
            }
            for s in view.sessions
        ],
    }


async def set_site(
    ctx: ServiceContext, actor: Actor, ref: str | int, patch: SitePatch
) -> dict[str, Any]:
    changes = patch.model_dump(exclude_unset=True)
    for required in ("name", "timezone"):
        if required in changes and changes[required] is None:
            raise invalid(required, f"{required} cannot be cleared")
    async with ctx.sessions() as db:
        try:
            async with db.begin():
                site = await _site_or_404(db, ref)
                latitude = changes.get("latitude", site.latitude)
                longitude = changes.get("longitude", site.longitude)
                _check_pair(latitude, longitude)
                before = {k: getattr(site, k) for k in changes}
                for key, value in changes.items():
                    setattr(site, key, value)
                add_audit(
                    db,
                    actor.id,
                    "site.updated",
                    subject=f"site:{site.id}",
                    source=actor.source,
                    details={"before": before, "after": changes},
                )
        except IntegrityError:
            raise Conflict(f"a site named {changes.get('name')!r} exists already") from None
    return await show_site(ctx, site.id)


__all__ = [
    "NewSite",
    "SitePatch",
    "add_site",
    "check_timezone",
    "find_site",
    "list_sites",
    "set_site",
    "show_site",
    "site_dict",
]
