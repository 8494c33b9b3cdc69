"""The network at a glance: energy today and this month, active sessions, chargers online and
offline, faulted connectors, operations that failed in the last 24 hours.

**Energy is counted from the meter, by period.** A transaction's energy in a period is its
energy register at the period's end minus its register at the period's start, where the register
at a moment is the highest trusted reading before it: the transaction's ``meterStart``, its
unflagged ``Energy.Active.Import.Register`` samples (whole-meter, not per phase) and its
``meterStop``. A session that charges across midnight is split between the two days at the last
sample before midnight; a session with no samples counts whole at its stop. Flagged samples (out
of the transaction's window, not monotonic, implausible) are never counted, as they are never
billed. "Today" and "this month" are calendar periods in ``POLARIS_OPERATOR_TIMEZONE``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text, true
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Charger, ChargingSession, Connector
from domain.session_model import TRANSACTION_PHASES
from services.actor import Actor
from services.context import ServiceContext
from services.errors import InvalidInput
from services.operator_views import require_operator

# The operations log's statuses that mean "did not work" (the ops helper's charger_operations).
FAILED_OPERATION_STATUSES = ("failed", "timed_out", "charger_offline", "rejected")
MAX_FAULTS_LISTED = 50

_ENERGY = text(
    """
    WITH tx AS (
        SELECT id, meter_start_wh FROM transactions
        WHERE started_at < :end
          AND COALESCE(stopped_at, closed_at, 'infinity'::timestamptz) >= :start
    ),
    points AS (
        SELECT t.id, t.started_at AS at, t.meter_start_wh AS wh
        FROM transactions t JOIN tx USING (id)
        UNION ALL
        SELECT m.transaction_id, m.sampled_at, m.energy_wh
        FROM meter_samples m JOIN tx ON tx.id = m.transaction_id
        WHERE m.measurand = 'Energy.Active.Import.Register' AND m.phase IS NULL
          AND m.flag IS NULL AND m.energy_wh IS NOT NULL AND m.sampled_at < :end
        UNION ALL
        SELECT t.id, t.stopped_at, t.meter_stop_wh
        FROM transactions t JOIN tx USING (id)
        WHERE t.stopped_at IS NOT NULL AND t.stopped_at < :end AND t.meter_stop_wh IS NOT NULL
    )
    SELECT COALESCE(SUM(GREATEST(0, delivered)), 0) FROM (
        SELECT MAX(p.wh) FILTER (WHERE p.at < :end)
             - COALESCE(MAX(p.wh) FILTER (WHERE p.at < :start), MIN(tx.meter_start_wh))
             AS delivered
        FROM points p JOIN tx ON tx.id = p.id
        GROUP BY p.id
    ) per_transaction
    """
)


async def energy_wh(db: AsyncSession, start: datetime, end: datetime) -> int:
    """Wh delivered in ``[start, end)`` over all transactions (see the module docstring)."""
    value = await db.scalar(_ENERGY, {"start": start, "end": end})
    return int(value or 0)


def day_bounds(now: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    today = now.astimezone(zone).date()
    return _midnight(today, zone), _midnight(today + timedelta(days=1), zone)


def month_bounds(now: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    today = now.astimezone(zone).date()
    first = today.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return _midnight(first, zone), _midnight(following, zone)


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


def _live_chargers() -> Any:
    """Chargers that count: decommissioned ones (``chargers.decommissioned_at``, when the
    chargers capability has added it) are history, not the network."""
    decommissioned = getattr(Charger, "decommissioned_at", None)
    return decommissioned.is_(None) if decommissioned is not None else true()


async def failed_operations(db: AsyncSession, since: datetime) -> int | None:
    """Operations that did not work since ``since``; None while the operations log
    (``charger_operations``) does not exist in this database."""
    exists = await db.scalar(text("SELECT to_regclass('charger_operations') IS NOT NULL"))
    if not exists:
        return None
    value = await db.scalar(
        text(
            "SELECT count(*) FROM charger_operations "
            "WHERE status = ANY(:statuses) AND created_at >= :since"
        ),
        {"statuses": list(FAILED_OPERATION_STATUSES), "since": since},
    )
    return int(value or 0)


async def compute_kpis(db: AsyncSession, *, now: datetime, zone: ZoneInfo) -> dict[str, Any]:
    day_start, day_end = day_bounds(now, zone)
    month_start, month_end = month_bounds(now, zone)
    today = await energy_wh(db, day_start, day_end)
    month = await energy_wh(db, month_start, month_end)
    active = await db.scalar(
        select(func.count())
        .select_from(ChargingSession)
        .where(ChargingSession.state.in_([p.value for p in TRANSACTION_PHASES]))
    )
    chargers = (
        await db.execute(
            select(Charger.connected, func.count())
            .where(_live_chargers())
            .group_by(Charger.connected)
        )
    ).all()
    by_connection = {bool(connected): int(count) for connected, count in chargers}
    faulty = (
        select(Connector)
        .join(Charger, Charger.charge_box_id == Connector.charge_box_id)
        .where(_live_chargers())
        .where((Connector.status == "Faulted") | (Connector.error_code != "NoError"))
    )
    faulted_count = await db.scalar(select(func.count()).select_from(faulty.subquery()))
    faulted = (
        await db.scalars(
            faulty.order_by(Connector.charge_box_id, Connector.connector_id).limit(
                MAX_FAULTS_LISTED
            )
        )
    ).all()
    return {
        "at": now.astimezone(zone).isoformat(),
        "timezone": zone.key,
        "today_from": day_start.astimezone(zone).isoformat(),
        "month_from": month_start.astimezone(zone).isoformat(),
        "energy_today_wh": today,
        "energy_today_kwh": round(today / 1000, 3),
        "energy_month_wh": month,
        "energy_month_kwh": round(month / 1000, 3),
        "active_sessions": int(active or 0),
        "chargers_online": by_connection.get(True, 0),
        "chargers_offline": by_connection.get(False, 0),
        "faulted_connectors": int(faulted_count or 0),
        "operations_failed_24h": await failed_operations(db, now - timedelta(hours=24)),
        "faults": [
            {
                "charge_box_id": c.charge_box_id,
                "connector_id": c.connector_id,
                "status": c.status,
                "error_code": c.error_code,
                "vendor_error_code": c.vendor_error_code,
                "since": c.status_at.isoformat() if c.status_at else None,
            }
            for c in faulted
        ],
    }


async def kpis(
    ctx: ServiceContext,
    actor: Actor,
    *,
    timezone: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The KPIs now, counted in ``timezone`` (default: the operator's, from settings)."""
    require_operator(actor)
    name = timezone or ctx.settings.operator_timezone
    try:
        zone = ZoneInfo(name)
    except (ValueError, KeyError) as exc:  # ZoneInfoNotFoundError is a KeyError
        raise InvalidInput(
            "unknown time zone",
            issues=[{"path": ["tz"], "message": f"{name!r} is not an IANA time zone"}],
        ) from exc
    async with ctx.sessions() as db:
        return await compute_kpis(db, now=now or datetime.now(UTC), zone=zone)
