"""Site load management: a site's power limit, and what each of its sessions may draw.

The limit is in kW (``W`` internally) or in A per phase (with the number of phases and the
voltage). Changing it wakes the site's ``SiteLoad`` workflow, which divides the limit again and
pushes the profiles (docs/load-management.md). The change stands when Temporal is away: the next
start or stop at the site wakes the workflow anyway.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.service import RPCError

from db.audit import add_audit
from db.load_models import ChargerLoadProfile, SiteLoadLimit
from db.models import Charger, Site, Transaction
from domain.load import LoadUnit, as_watts, charger_max, default_minimum
from services.actor import Actor
from services.context import ServiceContext
from services.errors import InvalidInput, NotFound
from services.sites import find_site
from workflows.site_load_messages import (
    SIGNAL_SITE_LOAD,
    SITE_LOAD_WORKFLOW,
    SiteLoadInput,
    SiteLoadSignal,
    site_load_workflow_id,
)

log = logging.getLogger("polaris.site_load")
SIGNAL_TIMEOUT_S = 5.0


class LoadLimitInput(BaseModel):
    """Exactly one of ``kw`` and ``amps``. The minimum per session and the safe default (the
    TxDefaultProfile a charger applies by itself) are in the same unit; both default to 6 A
    per phase (4.14 kW on three phases of 230 V)."""

    model_config = ConfigDict(extra="forbid")

    kw: float | None = Field(default=None, gt=0, le=100_000, description="limit in kW")
    amps: int | None = Field(default=None, gt=0, le=10_000, description="limit in A per phase")
    phases: Literal[1, 3] = 3
    voltage: int = Field(default=230, ge=100, le=1000, description="phase voltage (V)")
    min_kw: float | None = Field(default=None, ge=0, le=100_000)
    min_amps: int | None = Field(default=None, ge=0, le=10_000)
    safe_kw: float | None = Field(default=None, ge=0, le=100_000)
    safe_amps: int | None = Field(default=None, ge=0, le=10_000)


class LoadLimitView(BaseModel):
    unit: LoadUnit
    site_limit: int = Field(description="in the unit: W, or A per phase")
    site_limit_w: int
    phases: int
    voltage_v: int
    min_per_session: int
    safe_limit: int
    updated_by: str | None
    updated_at: datetime


class SessionLoad(BaseModel):
    charge_box_id: str
    connector_id: int
    transaction_id: int
    started_at: datetime
    connected: bool
    unit: LoadUnit | None
    # The charger's maximum in the site's unit (None without a limit).
    max: int | None
    # What the plan gives the session (None: not planned yet); 0 with ``paused``.
    limit: int | None
    paused: bool
    # What the charger accepted for this transaction (None: nothing yet).
    acknowledged_limit: int | None
    status: str | None
    error: str | None


class ChargerDefault(BaseModel):
    charge_box_id: str
    connected: bool
    limit: int | None
    acknowledged_limit: int | None
    status: str | None


class SiteLoadView(BaseModel):
    site_id: int
    site_name: str
    workflow_id: str
    limit: LoadLimitView | None
    # Sum of the planned limits of the active sessions (in the unit).
    allocated: int
    sessions: list[SessionLoad]
    defaults: list[ChargerDefault]
    rounds: int
    last_planned_at: datetime | None
    # After a change: whether the workflow was woken (False: Temporal unreachable).
    signalled: bool | None = None


def _unit_value(
    body: LoadLimitInput, kw_field: str, amps_field: str, unit: LoadUnit
) -> tuple[int | None, list[dict[str, object]]]:
    kw, amps = getattr(body, kw_field), getattr(body, amps_field)
    wrong = amps_field if unit == "W" else kw_field
    if getattr(body, wrong) is not None:
        other = "kW" if unit == "W" else "A"
        return None, [{"path": [wrong], "message": f"give it in {other}, the limit's unit"}]
    if unit == "W":
        return (None if kw is None else round(kw * 1000)), []
    return amps, []


def _check(body: LoadLimitInput) -> tuple[LoadUnit, int, int, int]:
    if (body.kw is None) == (body.amps is None):
        message = "give the limit either in kW (kw) or in A per phase (amps)"
        raise InvalidInput(
            message,
            issues=[{"path": ["kw"], "message": message}, {"path": ["amps"], "message": message}],
        )
    unit: LoadUnit = "W" if body.kw is not None else "A"
    limit = round(body.kw * 1000) if body.kw is not None else int(body.amps or 0)
    minimum, issues = _unit_value(body, "min_kw", "min_amps", unit)
    safe, more = _unit_value(body, "safe_kw", "safe_amps", unit)
    issues += more
    if issues:
        raise InvalidInput("The request is not valid", issues=issues)
    if minimum is None:
        minimum = default_minimum(unit, phases=body.phases, voltage_v=body.voltage)
    if safe is None:
        safe = minimum
    for name, value in (("min", minimum), ("safe", safe)):
        if value > limit:
            field = f"{name}_{'kw' if unit == 'W' else 'amps'}"
            raise InvalidInput(
                f"{field} is above the site's limit",
                issues=[{"path": [field], "message": "must not exceed the site's limit"}],
            )
    if limit <= 0:
        raise InvalidInput("the limit must be positive", issues=[{"path": ["kw"], "message": ">0"}])
    return unit, limit, minimum, safe


async def _site(db: AsyncSession, ref: str | int) -> Site:
    site = await find_site(db, ref)
    if site is None:
        raise NotFound(f"no site {str(ref)!r}")
    return site


async def set_load_limit(
    ctx: ServiceContext, actor: Actor, ref: str | int, body: LoadLimitInput
) -> SiteLoadView:
    unit, limit, minimum, safe = _check(body)
    async with ctx.sessions() as db, db.begin():
        site = await _site(db, ref)
        row = await db.get(SiteLoadLimit, site.id, with_for_update=True)
        before = None if row is None else _limit_view(row).model_dump(mode="json")
        if row is None:
            row = SiteLoadLimit(site_id=site.id)
            db.add(row)
        row.unit = unit
        row.site_limit = limit
        row.phases = body.phases
        row.voltage_v = body.voltage
        row.min_per_session = minimum
        row.safe_limit = safe
        row.updated_by = actor.id
        row.updated_at = datetime.now().astimezone()
        add_audit(
            db,
            actor.id,
            "site.load_limit_set",
            subject=f"site:{site.id}",
            source=actor.source,
            details={
                "before": before,
                "after": {
                    "unit": unit,
                    "site_limit": limit,
                    "phases": body.phases,
                    "voltage_v": body.voltage,
                    "min_per_session": minimum,
                    "safe_limit": safe,
                },
            },
        )
        site_id = site.id
    signalled = await wake(ctx, site_id, "limit_changed")
    view = await site_load(ctx, site_id)
    return view.model_copy(update={"signalled": signalled})


async def clear_load_limit(ctx: ServiceContext, actor: Actor, ref: str | int) -> SiteLoadView:
    """No limit any more: the workflow clears the profiles it set on connected chargers."""
    async with ctx.sessions() as db, db.begin():
        site = await _site(db, ref)
        row = await db.get(SiteLoadLimit, site.id, with_for_update=True)
        if row is None:
            raise NotFound(f"site {site.name!r} has no load limit")
        add_audit(
            db,
            actor.id,
            "site.load_limit_cleared",
            subject=f"site:{site.id}",
            source=actor.source,
            details={"before": _limit_view(row).model_dump(mode="json")},
        )
        await db.delete(row)
        site_id = site.id
    signalled = await wake(ctx, site_id, "limit_cleared")
    view = await site_load(ctx, site_id)
    return view.model_copy(update={"signalled": signalled})


async def wake(ctx: ServiceContext, site_id: int, reason: str) -> bool:
    """Signal-with-start the site's workflow; False (logged) if Temporal is away."""
    try:
        client = await asyncio.wait_for(ctx.temporal(), SIGNAL_TIMEOUT_S)
        await client.start_workflow(
            SITE_LOAD_WORKFLOW,
            SiteLoadInput(site_id=site_id),
            id=site_load_workflow_id(site_id),
            task_queue=ctx.settings.temporal_task_queue,
            start_signal=SIGNAL_SITE_LOAD,
            start_signal_args=[SiteLoadSignal(reason=reason)],
            rpc_timeout=timedelta(seconds=SIGNAL_TIMEOUT_S),
        )
    except (RPCError, OSError, RuntimeError, TimeoutError) as exc:
        log.warning("site load workflow of site %s not woken (%s): %r", site_id, reason, exc)
        return False
    return True


def _limit_view(row: SiteLoadLimit) -> LoadLimitView:
    unit: LoadUnit = "A" if row.unit == "A" else "W"
    return LoadLimitView(
        unit=unit,
        site_limit=row.site_limit,
        site_limit_w=as_watts(row.site_limit, unit, phases=row.phases, voltage_v=row.voltage_v),
        phases=row.phases,
        voltage_v=row.voltage_v,
        min_per_session=row.min_per_session,
        safe_limit=row.safe_limit,
        updated_by=row.updated_by,
        updated_at=row.updated_at,
    )


async def site_load(ctx: ServiceContext, ref: str | int) -> SiteLoadView:
    """The site's limit and each active session's current limit (planned and acknowledged)."""
    async with ctx.sessions() as db:
        site = await _site(db, ref)
        row = await db.get(SiteLoadLimit, site.id)
        chargers = {
            c.charge_box_id: c
            for c in (
                await db.scalars(
                    select(Charger)
                    .where(Charger.site_id == site.id, Charger.decommissioned_at.is_(None))
                    .order_by(Charger.charge_box_id)
                )
            ).all()
        }
        profiles = {
            (p.charge_box_id, p.connector_id, p.purpose): p
            for p in (
                await db.scalars(
                    select(ChargerLoadProfile).where(
                        ChargerLoadProfile.charge_box_id.in_(list(chargers))
                    )
                )
            ).all()
        }
        open_tx = (
            await db.execute(
                select(
                    Transaction.charge_box_id,
                    Transaction.connector_id,
                    Transaction.id,
                    Transaction.started_at,
                )
                .where(
                    Transaction.charge_box_id.in_(list(chargers)),
                    Transaction.stopped_at.is_(None),
                    Transaction.closed_at.is_(None),
                )
                .order_by(Transaction.started_at, Transaction.id)
            )
        ).all()
    sessions = []
    for cb, connector, tx_id, started_at in open_tx:
        p = profiles.get((cb, connector, "TxProfile"))
        planned = p is not None and p.planned_transaction_id == tx_id
        acknowledged = p is not None and p.acknowledged_transaction_id == tx_id
        limit = p.planned_limit if p is not None and planned else None
        sessions.append(
            SessionLoad(
                charge_box_id=cb,
                connector_id=connector,
                transaction_id=int(tx_id),
                started_at=started_at,
                connected=chargers[cb].connected,
                max=None
                if row is None
                else charger_max(
                    chargers[cb].max_power_w,
                    _unit(row.unit),
                    phases=row.phases,
                    voltage_v=row.voltage_v,
                ),
                unit=_unit(p.unit) if p is not None else None,
                limit=limit,
                paused=limit == 0,
                acknowledged_limit=p.acknowledged_limit if p is not None and acknowledged else None,
                status=p.status if p is not None and planned else None,
                error=p.error if p is not None and planned else None,
            )
        )
    defaults = []
    for cb, charger in chargers.items():
        p = profiles.get((cb, 0, "TxDefaultProfile"))
        defaults.append(
            ChargerDefault(
                charge_box_id=cb,
                connected=charger.connected,
                limit=p.planned_limit if p else None,
                acknowledged_limit=p.acknowledged_limit if p else None,
                status=p.status if p else None,
            )
        )
    return SiteLoadView(
        site_id=site.id,
        site_name=site.name,
        workflow_id=site_load_workflow_id(site.id),
        limit=_limit_view(row) if row is not None else None,
        allocated=sum(s.limit or 0 for s in sessions),
        sessions=sessions,
        defaults=defaults,
        rounds=row.rounds if row is not None else 0,
        last_planned_at=row.last_planned_at if row is not None else None,
    )


def _unit(value: str) -> LoadUnit:
    return "A" if value == "A" else "W"


__all__ = [
    "ChargerDefault",
    "LoadLimitInput",
    "LoadLimitView",
    "SessionLoad",
    "SiteLoadView",
    "clear_load_limit",
    "set_load_limit",
    "site_load",
    "wake",
]
