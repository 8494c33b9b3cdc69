"""The trigger of site load management: a StartTransaction or StopTransaction at a charger whose
site has a power limit, a connection or boot of such a charger, and a MeterValues offering less
than the session's acknowledged limit (``Power.Offered``/``Current.Offered``) add one gateway
outbox row (kind ``site_load_changed``) in the same journal transaction. The relay turns it into a
signal-with-start of the site's ``SiteLoad`` workflow (``site-load:<site id>``).

Chargers at sites without a limit (and chargers without a site) cost one indexed read and no row.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.meter import Sample
from workflows.site_load_messages import SIGNAL_SITE_LOAD, SITE_LOAD_WORKFLOW


def enqueue_sql(chargers: str) -> str:
    """The INSERT of one site-load outbox row per charger of ``chargers`` (a FROM item with
    ``charge_box_id`` and ``site_id``, aliased ``c``) whose site has a limit, in charger order.
    Parameters: ``:kind``, ``:workflow_type``, ``:reason``. Generic relay shape: start this
    workflow type with this input, then signal ``kind``."""
    return f"""
    INSERT INTO gateway_outbox (workflow_id, kind, payload, attempts)
    SELECT 'site-load:' || c.site_id, :kind,
           jsonb_build_object(
             'workflow', jsonb_build_object(
               'type', CAST(:workflow_type AS text),
               'input', jsonb_build_object('site_id', c.site_id)),
             'signal', jsonb_build_object(
               'reason', CAST(:reason AS text), 'charge_box_id', c.charge_box_id)),
           0
    FROM {chargers} JOIN site_load_limits l ON l.site_id = c.site_id
    ORDER BY c.charge_box_id
    RETURNING id
    """


def enqueue_params(reason: str) -> dict[str, str]:
    return {"kind": SIGNAL_SITE_LOAD, "workflow_type": SITE_LOAD_WORKFLOW, "reason": reason}


# For one charger or many at once (a batch of connections).
_ENQUEUE = text(
    enqueue_sql(
        "(SELECT charge_box_id, site_id FROM chargers"
        " WHERE charge_box_id = ANY(CAST(:charge_box_ids AS text[]))) c"
    )
)


async def enqueue_if_limited(s: AsyncSession, charge_box_id: str, reason: str) -> bool:
    """``reason``: started | stopped | connected | booted | offered. True when a row was added
    (wake the relay)."""
    return await enqueue_many_if_limited(s, [charge_box_id], reason)


async def enqueue_many_if_limited(
    s: AsyncSession, charge_box_ids: Sequence[str], reason: str
) -> bool:
    """:func:`enqueue_if_limited` for many chargers in one statement."""
    if not charge_box_ids:
        return False
    row = await s.execute(
        _ENQUEUE,
        {**enqueue_params(reason), "charge_box_ids": list(charge_box_ids)},
    )
    return row.first() is not None


OFFERED_MEASURANDS = frozenset({"Power.Offered", "Current.Offered"})

# The offered value in the site's unit, kept on the session's TxProfile row when it is below
# what the charger acknowledged and was sampled after it acknowledged it (an older sample
# reflects the profile before ours). RETURNING: the row changed (wake the site's workflow).
_OFFERED = text(
    """
    UPDATE charger_load_profiles p
    SET offered_limit = v.offered, offered_at = now()
    FROM (
      SELECT CASE WHEN l.unit = 'W'
               THEN COALESCE(CAST(:w AS integer), CAST(:a AS integer) * l.phases * l.voltage_v)
               ELSE COALESCE(CAST(:a AS integer), CAST(:w AS integer) / (l.phases * l.voltage_v))
             END AS offered
      FROM charger_load_profiles q JOIN site_load_limits l ON l.site_id = q.site_id
      WHERE q.charge_box_id = :charge_box_id AND q.connector_id = :connector_id
        AND q.purpose = 'TxProfile'
    ) v
    WHERE p.charge_box_id = :charge_box_id AND p.connector_id = :connector_id
      AND p.purpose = 'TxProfile' AND p.acknowledged_transaction_id = :transaction_id
      AND p.acknowledged_limit IS NOT NULL AND p.acknowledged_at < :sampled_at
      AND v.offered < p.acknowledged_limit AND v.offered IS DISTINCT FROM p.offered_limit
    RETURNING p.site_id
    """
)


def offered_values(samples: Sequence[Sample]) -> tuple[int | None, int | None, datetime | None]:
    """(watts, amperes, when) offered in the message: the last value of each measurand; values
    per phase: the sum of the powers, the lowest current."""
    power: dict[str | None, int] = {}
    current: dict[str | None, int] = {}
    at: datetime | None = None
    for x in samples:
        if x.measurand not in OFFERED_MEASURANDS or x.problem is not None:
            continue
        try:
            value = Decimal(x.raw_value.strip())
        except (InvalidOperation, AttributeError):
            continue
        if x.measurand == "Power.Offered":
            power[x.phase] = int(value * 1000 if (x.unit or "W") == "kW" else value)
        else:
            current[x.phase] = int(value)
        at = x.sampled_at if at is None else max(at, x.sampled_at)
    watts = power.get(None, sum(power.values()) if power else None)
    amps = current.get(None, min(current.values()) if current else None)
    return watts, amps, at


async def record_offered(
    s: AsyncSession,
    *,
    charge_box_id: str,
    connector_id: int,
    transaction_id: int,
    samples: Sequence[Sample],
) -> bool:
    """Keep a lower offered limit and wake the site's workflow; True if a row was queued."""
    watts, amps, at = offered_values(samples)
    if at is None or (watts is None and amps is None):
        return False
    changed = await s.execute(
        _OFFERED,
        {
            "w": watts,
            "a": amps,
            "charge_box_id": charge_box_id,
            "connector_id": connector_id,
            "transaction_id": transaction_id,
            "sampled_at": at,
        },
    )
    if changed.first() is None:
        return False
    return await enqueue_if_limited(s, charge_box_id, "offered")
