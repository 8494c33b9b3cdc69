"""The trigger of site load management: a StartTransaction or StopTransaction at a charger whose
site has a power limit, and a connection of such a charger, add one gateway outbox row (kind
``site_load_changed``) in the same journal transaction. The relay turns it into a
signal-with-start of the site's ``SiteLoad`` workflow (``site-load:<site id>``).

Chargers at sites without a limit (and chargers without a site) cost one indexed read and no row.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from workflows.site_load_messages import SIGNAL_SITE_LOAD, SITE_LOAD_WORKFLOW

# Generic relay shape: start this workflow type with this input, then signal ``kind``.
_ENQUEUE = text(
    """
    INSERT INTO gateway_outbox (workflow_id, kind, payload, attempts)
    SELECT 'site-load:' || c.site_id, :kind,
           jsonb_build_object(
             'workflow', jsonb_build_object(
               'type', CAST(:workflow_type AS text),
               'input', jsonb_build_object('site_id', c.site_id)),
             'signal', jsonb_build_object(
               'reason', CAST(:reason AS text), 'charge_box_id', c.charge_box_id)),
           0
    FROM chargers c JOIN site_load_limits l ON l.site_id = c.site_id
    WHERE c.charge_box_id = :charge_box_id
    RETURNING id
    """
)


async def enqueue_if_limited(s: AsyncSession, charge_box_id: str, reason: str) -> bool:
    """``reason``: started | stopped | connected. True when a row was added (wake the relay)."""
    row = await s.execute(
        _ENQUEUE,
        {
            "kind": SIGNAL_SITE_LOAD,
            "workflow_type": SITE_LOAD_WORKFLOW,
            "reason": reason,
            "charge_box_id": charge_box_id,
        },
    )
    return row.first() is not None
