"""The connect trigger of the local-list sync: a charger with a pending local-list sync (or
ClearCache) that connects gets one gateway outbox row, kind ``local_list_sync``, in the same
transaction that records the connection. The relay turns it into a signal-with-start of the
charger's ``LocalListSync`` workflow (``local-list:<chargeBoxId>``).

Chargers with nothing pending (and chargers the local list never saw) cost one indexed read and
no row, so connections of everyone else are untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from workflows.local_list_messages import (
    LOCAL_LIST_SYNC_WORKFLOW,
    SIGNAL_LOCAL_LIST_SYNC,
    local_list_workflow_id,
)

# Generic relay shape: start this workflow type with this input, then signal ``kind``; for a
# batch of connections, in charger order.
_ENQUEUE = text(
    """
    INSERT INTO gateway_outbox (workflow_id, kind, payload, attempts)
    SELECT CAST(:id_prefix AS text) || charge_box_id, :kind,
           jsonb_build_object(
             'workflow', jsonb_build_object(
               'type', CAST(:workflow_type AS text),
               'input', jsonb_build_object('charge_box_id', charge_box_id)),
             'signal', jsonb_build_object('reason', 'connected')),
           0
    FROM charger_local_lists
    WHERE charge_box_id = ANY(CAST(:charge_box_ids AS text[]))
      AND ((sync_requested > sync_done OR full_requested) AND supported IS DISTINCT FROM false
           OR clear_cache_requested > clear_cache_done)
    ORDER BY charge_box_id
    RETURNING id
    """
)


async def enqueue_many_if_pending(s: AsyncSession, charge_box_ids: Sequence[str]) -> bool:
    """Insert one outbox row per charger that has local-list work waiting; True if any."""
    if not charge_box_ids:
        return False
    row = await s.execute(
        _ENQUEUE,
        {
            # The workflow id is local_list_workflow_id(charge_box_id).
            "id_prefix": local_list_workflow_id(""),
            "kind": SIGNAL_LOCAL_LIST_SYNC,
            "workflow_type": LOCAL_LIST_SYNC_WORKFLOW,
            "charge_box_ids": list(charge_box_ids),
        },
    )
    return row.first() is not None
