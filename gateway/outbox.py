"""Writing to the gateway outbox (always inside the caller's journal transaction).

Row shape (``gateway_outbox.payload``)::

    {"session": {SessionInput fields: charge_box_id, connector_id, id_tag, origin},
     "signal":  {the signal's fields except event_id, JSON-encoded},
     "trace":   {"traceparent": W3C trace context of the frame's span}   (only when tracing)}

``kind`` is the signal name (``transaction_started`` | ``meter_progress`` |
``transaction_stopped`` | ``connector_status`` | ``transaction_closed``); the relay delivers
each kind by its route in ``gateway/event_routes.py``, and adds ``event_id`` = the row id, so a
redelivered signal is recognised by the workflow. Workflows other than the session subscribe to
charger events there (``event_routes.subscribe``) instead of writing rows here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import GatewayOutbox
from observability.tracing import current_traceparent
from workflows.messages import SessionInput


async def enqueue(
    session: AsyncSession,
    *,
    workflow_id: str,
    kind: str,
    start: SessionInput,
    signal: BaseModel | dict[str, Any],
) -> int:
    """Insert one outbox row; returns its id. The caller commits (and then wakes the relay)."""
    if isinstance(signal, BaseModel):
        signal_json = signal.model_dump(mode="json", exclude={"event_id"})
    else:
        signal_json = dict(signal)
    payload: dict[str, Any] = {
        "session": start.model_dump(mode="json", exclude_none=True),
        "signal": signal_json,
    }
    trace = current_traceparent()
    if trace is not None:
        # The relay continues this trace when it hands the row to Temporal.
        payload["trace"] = trace
    row_id = await session.scalar(
        insert(GatewayOutbox)
        .values(workflow_id=workflow_id, kind=kind, payload=payload, attempts=0)
        .returning(GatewayOutbox.id)
    )
    assert row_id is not None
    return int(row_id)
