"""Chargers as drivers see them: where, which plugs, free or not, and what charging costs.

:func:`connector_availability` gathers the facts of ``domain/availability.py``'s rule (the one
rule; the reservations helper uses it for free slots too). :func:`nearby_chargers` and
:func:`site_chargers` answer the driver routes (``GET /api/v1/chargers/nearby``,
``GET /api/v1/sites/{id}/chargers``): public-ish data, never anyone's sessions or cards.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Charger, Connector, Site, Tariff, TariffVersion, Transaction
from db.reservation_models import LIVE_STATUSES, Reservation
from db.tariffs import idle_terms, version_at
from domain.availability import Availability, ConnectorFacts, connector_state
from domain.pricing import TariffTerms
from domain.tariff_words import tariff_words
from services.context import ServiceContext
from services.errors import InvalidInput, NotFound

EARTH_RADIUS_KM = 6371.0088
MAX_RADIUS_KM = 500.0
MAX_NEARBY = 100


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine) on the mean Earth radius."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


async def _reserved_now(
    db: AsyncSession, charge_box_ids: list[str], now: datetime
) -> list[tuple[str, int | None]]:
    """(charger, connector) of the reservations holding a connector now (a reservation for "any
    connector" is given a concrete one when it is made)."""
    if not charge_box_ids:
        return []
    rows = await db.execute(
        select(Reservation.charge_box_id, Reservation.connector_id).where(
            Reservation.charge_box_id.in_(charge_box_ids),
            Reservation.starts_at <= now,
            Reservation.ends_at > now,
            Reservation.status.in_(LIVE_STATUSES),
        )
    )
    return [(r.charge_box_id, r.connector_id) for r in rows]


async def connector_availability(
    db: AsyncSession,
    charge_box_ids: Iterable[str],
    *,
    heartbeat_interval_s: float,
    now: datetime | None = None,
) -> dict[str, dict[int, Availability]]:
    """Each connector (1..N) of each charger: ``available | in_use | reserved | offline |
    faulted`` (``domain/availability.py``). A reservation for "any connector" holds the
    lowest-numbered connector that would otherwise be available."""
    ids = sorted(set(charge_box_ids))
    now = now or datetime.now(UTC)
    if not ids:
        return {}
    chargers = {
        c.charge_box_id: c
        for c in (await db.scalars(select(Charger).where(Charger.charge_box_id.in_(ids)))).all()
    }
    connectors = (
        await db.scalars(
            select(Connector)
            .where(Connector.charge_box_id.in_(ids))
            .order_by(Connector.charge_box_id, Connector.connector_id)
        )
    ).all()
    open_tx = {
        (r.charge_box_id, r.connector_id)
        for r in await db.execute(
            select(Transaction.charge_box_id, Transaction.connector_id).where(
                Transaction.charge_box_id.in_(ids),
                Transaction.stopped_at.is_(None),
                Transaction.closed_at.is_(None),
            )
        )
    }
    reservations = await _reserved_now(db, ids, now)
    reserved = {(cb, n) for cb, n in reservations if n is not None}
    any_reserved: dict[str, int] = {}
    for cb, n in reservations:
        if n is None:
            any_reserved[cb] = any_reserved.get(cb, 0) + 1
    whole = {c.charge_box_id: c.status for c in connectors if c.connector_id == 0}
    out: dict[str, dict[int, Availability]] = {cb: {} for cb in chargers}
    for c in connectors:
        charger = chargers.get(c.charge_box_id)
        if c.connector_id == 0 or charger is None:
            continue
        facts = ConnectorFacts(
            connected=charger.connected,
            last_seen_at=charger.last_seen_at,
            status=c.status,
            charger_status=whole.get(c.charge_box_id),
            open_transaction=(c.charge_box_id, c.connector_id) in open_tx,
            reserved_now=(c.charge_box_id, c.connector_id) in reserved,
        )
        state = connector_state(facts, now, heartbeat_interval_s)
        if state == "available" and any_reserved.get(c.charge_box_id, 0) > 0:
            any_reserved[c.charge_box_id] -= 1
            state = "reserved"
        out[c.charge_box_id][c.connector_id] = state
    return out


# -- what drivers see ----------------------------------------------------------------------------


async def _default_tariff_id(db: AsyncSession) -> int | None:
    return await db.scalar(select(Tariff.id).where(Tariff.is_default.is_(True)).limit(1))


async def tariff_now(
    db: AsyncSession, tariff_id: int | None, now: datetime
) -> dict[str, Any] | None:
    """The terms in force now of the charger's tariff (or the default one), in words too."""
    if tariff_id is None:
        return None
    tariff = await db.get(Tariff, tariff_id)
    version = await version_at(db, tariff_id, now)
    if tariff is None or version is None:
        return None
    terms = TariffTerms(
        code=tariff.code,
        currency=version.currency,
        price_per_kwh_minor=version.price_per_kwh_minor,
        price_per_minute_minor=version.price_per_minute_minor,
        price_per_session_minor=version.price_per_session_minor,
        session_fee_min_energy_wh=version.session_fee_min_energy_wh,
        session_fee_min_duration_s=version.session_fee_min_duration_s,
    )
    return {
        "code": tariff.code,
        "version": version.version,
        "valid_from": version.valid_from,
        **terms.model_dump(exclude={"code"}),
        **idle_fields(version),
        "words": tariff_words(terms, idle_terms(version)),
    }


def idle_fields(version: TariffVersion) -> dict[str, Any]:
    """The idle-fee terms of a version as the tariff views show them."""
    return {
        "idle_grace_minutes": version.idle_grace_minutes,
        "idle_price_per_minute_minor": version.idle_price_per_minute_minor,
        "idle_fee_cap_minor": version.idle_fee_cap_minor,
    }


def _site_view(site: Site | None) -> dict[str, Any] | None:
    if site is None:
        return None
    return {
        "id": site.id,
        "name": site.name,
        "address": site.address,
        "latitude": site.latitude,
        "longitude": site.longitude,
        "timezone": site.timezone,
    }


async def _views(
    ctx: ServiceContext, db: AsyncSession, chargers: list[Charger], now: datetime
) -> list[dict[str, Any]]:
    ids = [c.charge_box_id for c in chargers]
    states = await connector_availability(
        db, ids, heartbeat_interval_s=ctx.settings.heartbeat_interval_s, now=now
    )
    connectors = (
        await db.scalars(
            select(Connector)
            .where(Connector.charge_box_id.in_(ids), Connector.connector_id > 0)
            .order_by(Connector.charge_box_id, Connector.connector_id)
        )
    ).all()
    by_charger: dict[str, list[Connector]] = {}
    for c in connectors:
        by_charger.setdefault(c.charge_box_id, []).append(c)
    default_tariff = await _default_tariff_id(db)
    tariffs: dict[int | None, dict[str, Any] | None] = {}
    sites: dict[int, Site | None] = {}
    out = []
    for charger in chargers:
        tariff_id = charger.tariff_id if charger.tariff_id is not None else default_tariff
        if tariff_id not in tariffs:
            tariffs[tariff_id] = await tariff_now(db, tariff_id, now)
        if charger.site_id is not None and charger.site_id not in sites:
            sites[charger.site_id] = await db.get(Site, charger.site_id)
        out.append(
            {
                "charge_box_id": charger.charge_box_id,
                "label": charger.label,
                "site": _site_view(sites.get(charger.site_id) if charger.site_id else None),
                "connectors": [
                    {
                        "connector_id": c.connector_id,
                        "availability": states.get(charger.charge_box_id, {}).get(
                            c.connector_id, "offline"
                        ),
                        "connector_type": c.connector_type,
                        "max_power_w": c.max_power_w or charger.max_power_w,
                    }
                    for c in by_charger.get(charger.charge_box_id, [])
                ],
                "tariff": tariffs[tariff_id],
            }
        )
    return out


def _in_service() -> Any:
    return Charger.decommissioned_at.is_(None)


async def site_chargers(ctx: ServiceContext, site_id: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    async with ctx.sessions() as db:
        if await db.get(Site, site_id) is None:
            raise NotFound(f"no site {site_id}")
        chargers = (
            await db.scalars(
                select(Charger)
                .where(Charger.site_id == site_id, _in_service())
                .order_by(Charger.charge_box_id)
            )
        ).all()
        return await _views(ctx, db, list(chargers), now)


def _check_position(lat: float, lon: float, radius_km: float) -> None:
    issues = []
    if not -90 <= lat <= 90:
        issues.append({"path": ["lat"], "message": "latitude must be between -90 and 90"})
    if not -180 <= lon <= 180:
        issues.append({"path": ["lon"], "message": "longitude must be between -180 and 180"})
    if not 0 < radius_km <= MAX_RADIUS_KM:
        issues.append(
            {"path": ["radius_km"], "message": f"radius_km must be in (0, {MAX_RADIUS_KM:g}]"}
        )
    if issues:
        raise InvalidInput("the position is not valid", issues=issues)


async def nearby_chargers(
    ctx: ServiceContext, lat: float, lon: float, radius_km: float, *, limit: int = 50
) -> list[dict[str, Any]]:
    """Chargers at sites within ``radius_km`` of (lat, lon), nearest first (ties by id); each
    with its ``distance_km``. Chargers without a located site are never "near"."""
    _check_position(lat, lon, radius_km)
    limit = max(1, min(limit, MAX_NEARBY))
    # A bounding box the database filters on, then the exact distance here.
    dlat = math.degrees(radius_km / EARTH_RADIUS_KM)
    now = datetime.now(UTC)
    async with ctx.sessions() as db:
        rows = (
            await db.execute(
                select(Charger, Site.latitude, Site.longitude)
                .join(Site, Site.id == Charger.site_id)
                .where(
                    _in_service(),
                    Site.latitude.is_not(None),
                    Site.latitude.between(lat - dlat, lat + dlat),
                )
            )
        ).all()
        near = sorted(
            (
                (distance_km(lat, lon, s_lat, s_lon), charger)
                for charger, s_lat, s_lon in rows
                if s_lat is not None and s_lon is not None
            ),
            key=lambda pair: (pair[0], pair[1].charge_box_id),
        )
        near = [(d, c) for d, c in near if d <= radius_km][:limit]
        views = await _views(ctx, db, [c for _, c in near], now)
    for (d, _), view in zip(near, views, strict=True):
        view["distance_km"] = round(d, 3)
    return views


__all__ = [
    "connector_availability",
    "distance_km",
    "nearby_chargers",
    "site_chargers",
    "tariff_now",
]
