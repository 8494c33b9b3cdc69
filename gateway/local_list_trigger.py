"""The connect trigger of the local-list sync: a charger with a pending local-list sync (or
ClearCache) that connects gets one gateway outbox row, kind ``local_list_sync``, in the same
transaction that records the connection. The relay turns it into a signal-with-start of the
charger's ``LocalListSync`` workflow (``local-list:<chargeBoxId>``).

Chargers with nothing pending (and chargers the local list never saw) cost one indexed read and
no row, so connections of everyone else are untouched.
"""

from __future__ import annotations

import json

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from workflows.local_list_messages import (
    LOCAL_LIST_SYNC_WORKFLOW,
    SIGNAL_LOCAL_LIST_SYNC,
    local_list_workflow_id,
)

_ENQUEUE = text(
    """
    INSERT INTO gateway_outbox (workflow_id, kind, payload, attempts)
    SELECT :workflow_id, :kind, CAST(:payload AS jsonb), 0
    FROM charger_local_lists
    WHERE charge_box_id = :charge_box_id
      AND ((sync_requested > sync_done OR full_requested) AND supported IS DISTINCT FROM false
           OR clear_cache_requested > clear_cache_done)
    RETURNING id
    """
)


async def enqueue_if_pending(s: AsyncSession, charge_box_id: str) -> bool:
    """Insert the outbox row when the charger has local-list work waiting; True if it did."""
    payload = {
        # Generic relay shape: start this workflow type with this input, then signal ``kind``.
        "workflow": {"type": LOCAL_LIST_SYNC_WORKFLOW, "input": {"charge_box_id": charge_box_id}},
        "signal": {"reason": "connected"},
    }
    row = await s.execute(
        _ENQUEUE,
        {
            "workflow_id": local_list_workflow_id(charge_box_id),
            "kind": SIGNAL_LOCAL_LIST_SYNC,
            "payload": json.dumps(payload),
            "charge_box_id": charge_box_id,
        },
    )
    return row.first() is not None
