"""What a driver reads about their own charging: one session in detail (meter timeline, power,
estimated cost) and the dashboard (active session, the last five, the next reservation, usage
per day).

Every read is scoped to the driver (``charging_sessions.user_id``, the card's owner frozen when
the session started): another driver's session is "not found".

Usage days are counted in the driver's time zone: the app sends it (``tz``, an IANA name; a
phone knows it), else the platform's ``POLARIS_OPERATOR_TIMEZONE``. A session belongs to the day
it started on, in that zone.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Date, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Charger, ChargingSession, MeterSample, Tariff, TariffVersion
from db.tariffs import idle_terms
from domain.meter_timeline import (
    Sample,
    TimelinePoint,
    average_power_w,
    meter_timeline,
    peak_power_w,
)
from domain.pricing import TariffTerms, price_session
from domain.session import OPEN_PHASES, TRANSACTION_PHASES
from domain.tariff_words import tariff_words
from services import reservations
from services.availability import idle_fields, tariff_now
from services.context import ServiceContext
from services.driver_sessions import own_session
from services.idle_fees import session_idle_fee
from services.operator_views import session_transactions
from services.validation import invalid

Period = Literal["current", "previous", "year"]
MAX_TIMELINE_SAMPLES = 20_000
LAST_SESSIONS = 5
RUNNING = frozenset(p.value for p in TRANSACTION_PHASES)


def zone(name: str | None, default: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or default)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise invalid("tz", f"unknown time zone {name!r} (an IANA name: Europe/Berlin)") from exc


def session_out(row: ChargingSession) -> dict[str, Any]:
    return {
        "workflow_id": row.workflow_id,
        "state": row.state,
        "charge_box_id": row.charge_box_id,
        "connector_id": row.connector_id,
        "id_tag": row.id_tag,
        "transaction_id": row.transaction_id,
        "energy_wh": row.energy_wh,
        "cost_minor": row.cost_minor,
        "currency": row.currency,
        "started_at": row.started_at,
        "stopped_at": row.stopped_at,
        "end_reason": row.end_reason,
        "flags": list(row.flags or []),
    }


# -- one session ----------------------------------------------------------------------------------


async def _terms(
    db: AsyncSession, row: ChargingSession
) -> tuple[TariffTerms | None, dict[str, Any] | None]:
    """The session's tariff version; before it is priced, the charger's version at its start."""
    if row.tariff_version_id is not None:
        found = (
            await db.execute(
                select(Tariff.code, TariffVersion)
                .join(Tariff, Tariff.id == TariffVersion.tariff_id)
                .where(TariffVersion.id == row.tariff_version_id)
            )
        ).first()
        if found is not None:
            code, v = found
            terms = TariffTerms(
                code=code,
                currency=v.currency,
                price_per_kwh_minor=v.price_per_kwh_minor,
                price_per_minute_minor=v.price_per_minute_minor,
                price_per_session_minor=v.price_per_session_minor,
                session_fee_min_energy_wh=v.session_fee_min_energy_wh,
                session_fee_min_duration_s=v.session_fee_min_duration_s,
            )
            return terms, {
                "code": code,
                "version": v.version,
                "valid_from": v.valid_from,
                **terms.model_dump(exclude={"code"}),
                **idle_fields(v),
                "words": tariff_words(terms, idle_terms(v)),
            }
    charger = await db.get(Charger, row.charge_box_id)
    tariff_id = charger.tariff_id if charger else None
    if tariff_id is None:
        tariff_id = await db.scalar(select(Tariff.id).where(Tariff.is_default.is_(True)).limit(1))
    described = await tariff_now(db, tariff_id, row.started_at or datetime.now(UTC))
    if described is None:
        return None, None
    terms = TariffTerms(
        code=described["code"],
        **{k: described[k] for k in TariffTerms.model_fields if k != "code"},
    )
    return terms, described


async def _timeline(db: AsyncSession, row: ChargingSession) -> tuple[list[TimelinePoint], int]:
    transactions = await session_transactions(db, row.workflow_id)
    if not transactions or row.started_at is None:
        return [], 0
    first = transactions[0]
    samples = (
        await db.scalars(
            select(MeterSample)
            .where(MeterSample.transaction_id.in_([t.id for t in transactions]))
            .order_by(MeterSample.sampled_at, MeterSample.id)
            .limit(MAX_TIMELINE_SAMPLES)
        )
    ).all()
    points = meter_timeline(
        [
            Sample(
                sampled_at=s.sampled_at,
                measurand=s.measurand,
                phase=s.phase,
                unit=s.unit,
                raw_value=s.raw_value,
                energy_wh=s.energy_wh,
                flag=s.flag,
            )
            for s in samples
        ],
        started_at=first.started_at,
        meter_start_wh=first.meter_start_wh,
    )
    return points, first.meter_start_wh


def _point(p: TimelinePoint) -> dict[str, Any]:
    return {
        "at": p.at,
        "energy_wh": p.energy_wh,
        "power_w": p.power_w,
        "power_kw": None if p.power_w is None else round(p.power_w / 1000, 3),
    }


async def session_detail(
    ctx: ServiceContext, user_id: str, workflow_id: str, *, with_timeline: bool = True
) -> dict[str, Any]:
    """The session, its duration, average and peak power, the tariff version it is (or will
    be) billed under and the cost estimated from it, its idle fee (once recorded), and
    (``with_timeline``) the timeline."""
    now = datetime.now(UTC)
    async with ctx.sessions() as db:
        row = await own_session(db, user_id, workflow_id)
        points, _ = await _timeline(db, row)
        terms, tariff = await _terms(db, row)
        idle_fee = await session_idle_fee(db, row.workflow_id, for_operator=False)
    energy_wh = row.energy_wh
    if row.state in RUNNING and points:
        # The journal's samples are what the workflow sees too, and the read model can trail
        # them by a signal: a running session shows the newer of the two.
        energy_wh = max(energy_wh, points[-1].energy_wh)
    duration_s = 0
    if row.started_at is not None:
        duration_s = max(0, int(((row.stopped_at or now) - row.started_at).total_seconds()))
    estimate = (
        price_session(terms, energy_wh=max(0, energy_wh), duration_s=duration_s)
        if terms is not None and row.started_at is not None
        else None
    )
    average = average_power_w(energy_wh, duration_s)
    peak = peak_power_w(points)
    out = {
        **session_out(row),
        "energy_wh": energy_wh,
        "duration_s": duration_s,
        "average_power_w": average,
        "peak_power_w": peak,
        "tariff": tariff,
        "estimated_cost": None if estimate is None else estimate.model_dump(),
        "idle_fee": idle_fee,
    }
    if with_timeline:
        out["timeline"] = [_point(p) for p in points]
    return out


async def session_meter(ctx: ServiceContext, user_id: str, workflow_id: str) -> dict[str, Any]:
    async with ctx.sessions() as db:
        row = await own_session(db, user_id, workflow_id)
        points, _ = await _timeline(db, row)
    return {
        "workflow_id": row.workflow_id,
        "points": [_point(p) for p in points],
        "peak_power_w": peak_power_w(points),
    }


# -- dashboard ------------------------------------------------------------------------------------


async def next_reservation(ctx: ServiceContext, user_id: str) -> dict[str, Any] | None:
    """The driver's next reservation that still holds a connector (see services/reservations)."""
    found = await reservations.next_reservation(ctx, user_id)
    return None if found is None else found.model_dump(mode="json")


def period_range(period: Period, today: date) -> tuple[date, date]:
    """[first day, last day] of the period, in the driver's calendar; current periods end today."""
    if period == "current":
        return today.replace(day=1), today
    if period == "previous":
        last = today.replace(day=1) - timedelta(days=1)
        return last.replace(day=1), last
    return today.replace(month=1, day=1), today


async def usage(
    ctx: ServiceContext, user_id: str, period: Period, tz_name: str | None
) -> dict[str, Any]:
    tz = zone(tz_name, ctx.settings.operator_timezone)
    today = datetime.now(tz).date()
    first, last = period_range(period, today)
    start = datetime.combine(first, datetime.min.time(), tz)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), tz)
    local_day = cast(func.timezone(tz.key, ChargingSession.started_at), Date)
    async with ctx.sessions() as db:
        rows = (
            await db.execute(
                select(
                    local_day.label("day"),
                    ChargingSession.currency,
                    func.count().label("sessions"),
                    func.coalesce(func.sum(ChargingSession.energy_wh), 0).label("energy_wh"),
                    func.coalesce(func.sum(ChargingSession.cost_minor), 0).label("cost_minor"),
                )
                .where(
                    ChargingSession.user_id == user_id,
                    ChargingSession.started_at >= start,
                    ChargingSession.started_at < end,
                )
                .group_by(local_day, ChargingSession.currency)
            )
        ).all()
    days: dict[date, dict[str, Any]] = {}
    d = first
    while d <= last:
        days[d] = {"date": d, "sessions": 0, "energy_wh": 0, "cost_minor": {}}
        d += timedelta(days=1)
    totals: dict[str, Any] = {"sessions": 0, "energy_wh": 0, "cost_minor": {}}
    for r in rows:
        bucket = days.get(r.day)
        if bucket is None:
            continue
        for target in (bucket, totals):
            target["sessions"] += int(r.sessions)
            target["energy_wh"] += int(r.energy_wh)
            if r.currency:
                costs = target["cost_minor"]
                costs[r.currency] = costs.get(r.currency, 0) + int(r.cost_minor)
    return {
        "period": period,
        "timezone": tz.key,
        "from": first,
        "to": last,
        "totals": totals,
        "days": list(days.values()),
    }


async def dashboard(
    ctx: ServiceContext, user_id: str, period: Period, tz_name: str | None
) -> dict[str, Any]:
    open_states = [p.value for p in OPEN_PHASES]
    async with ctx.sessions() as db:
        active = await db.scalar(
            select(ChargingSession)
            .where(ChargingSession.user_id == user_id, ChargingSession.state.in_(open_states))
            .order_by(ChargingSession.created_at.desc(), ChargingSession.workflow_id)
            .limit(1)
        )
        last = (
            await db.scalars(
                select(ChargingSession)
                .where(ChargingSession.user_id == user_id, ChargingSession.started_at.is_not(None))
                .order_by(ChargingSession.started_at.desc(), ChargingSession.workflow_id)
                .limit(LAST_SESSIONS)
            )
        ).all()
    return {
        "active_session": None
        if active is None
        else await session_detail(ctx, user_id, active.workflow_id, with_timeline=False),
        "last_sessions": [session_out(r) for r in last],
        "next_reservation": await next_reservation(ctx, user_id),
        "usage": await usage(ctx, user_id, period, tz_name),
    }


__all__ = [
    "dashboard",
    "next_reservation",
    "period_range",
    "session_detail",
    "session_meter",
    "usage",
    "zone",
]
