"""Joining a StartTransaction to the reservation it uses: one gateway outbox row, in the
journal transaction, that the relay delivers as the ``reservation_join`` signal (signal-with-
start) to that reservation's ``ReservationWorkflow`` — the generic "workflow + signal" row kind,
so the relay knows nothing of reservations.

A StartTransaction uses a reservation when it carries its ``reservationId``, or when the
reserving card starts on the reserved connector while the charger holds the reservation
(confirmed) or within its window. A start that matches nothing costs one indexed read.
"""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from workflows.reservation_messages import (
    RESERVATION_WORKFLOW,
    SIGNAL_RESERVATION_JOIN,
    reservation_workflow_id,
)

_MATCH = text(
    """
    SELECT id, (ocpp_reservation_id = CAST(:reservation_id AS integer)) AS by_id
    FROM reservations
    WHERE charge_box_id = :charge_box_id
      AND (
        (ocpp_reservation_id = CAST(:reservation_id AS integer)
         AND status IN ('pending', 'confirmed', 'expired'))
        OR (connector_id = :connector_id AND id_tag = :id_tag
            AND status IN ('pending', 'confirmed')
            AND (status = 'confirmed' OR starts_at <= :started_at)
            AND :started_at < ends_at)
      )
    ORDER BY by_id DESC NULLS LAST, starts_at
    LIMIT 1
    """
)

_ENQUEUE = text(
    "INSERT INTO gateway_outbox (workflow_id, kind, payload, attempts) "
    "VALUES (:workflow_id, :kind, CAST(:payload AS jsonb), 0)"
)


async def enqueue_join(
    s: AsyncSession,
    *,
    charge_box_id: str,
    connector_id: int,
    id_tag: str,
    reservation_id: int | None,
    started_at: datetime,
    transaction_id: int,
    session_workflow_id: str,
) -> str | None:
    """Queue the join when the start uses a reservation; the reservation's id, else None."""
    row = (
        await s.execute(
            _MATCH,
            {
                "charge_box_id": charge_box_id,
                "connector_id": connector_id,
                "id_tag": id_tag,
                "reservation_id": reservation_id,
                "started_at": started_at,
            },
        )
    ).first()
    if row is None:
        return None
    payload = {
        "workflow": {"type": RESERVATION_WORKFLOW, "input": {"reservation_id": row.id}},
        "signal": {
            "transaction_id": transaction_id,
            "session_workflow_id": session_workflow_id,
            "started_at": started_at.isoformat(),
            "by": "reservation_id" if row.by_id else "id_tag",
        },
    }
    await s.execute(
        _ENQUEUE,
        {
            "workflow_id": reservation_workflow_id(row.id),
            "kind": SIGNAL_RESERVATION_JOIN,
            "payload": json.dumps(payload),
        },
    )
    return str(row.id)
