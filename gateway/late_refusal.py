"""A refusal from the session workflow that came after the charger was answered.

Authorize answers from the local decision when the workflow's pre-authorization misses the
budget (``POLARIS_AUTHORIZE_BUDGET_S``); the pre-authorization goes on in the background. When
it then refuses the card, the refusal still stops the session, and is recorded either way (an
``authorize.rejected`` audit row, ``decided_by`` ``workflow-late``):

- **before the StartTransaction**: the tap's ``session_intents`` row takes the refusal, so the
  StartTransaction is answered with it (idTagInfo: the charger stops) and its
  ``transaction_started`` signal carries it (the session is flagged ``start_refused:<status>``);
- **after the StartTransaction** (it was answered Accepted): the transaction row takes the
  refusal and, in the same database transaction, an ``authorization_refused`` outbox row tells
  the session workflow, which flags the session and sends RemoteStopTransaction.

No energy is billed to a refused card without that flag on the session.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update

from db.engine import SessionFactory
from db.models import AuditLog, Transaction, session_intents
from gateway.outbox import enqueue
from workflows.messages import (
    SIGNAL_AUTHORIZATION_REFUSED,
    AuthorizationRefused,
    AuthorizationStatus,
    SessionInput,
)

BEFORE_START = "before_start"
AFTER_START = "after_start"
NO_TRANSACTION = "no_transaction"


async def late_refusal(
    sf: SessionFactory,
    *,
    workflow_id: str,
    charge_box_id: str,
    id_tag: str,
    status: AuthorizationStatus,
    reason: str,
    now: datetime,
) -> str:
    """Record the refusal and stop the session; returns which case applied (see above).

    StartTransaction consumes the intent under ``FOR UPDATE``: the two never pass each other."""
    t = session_intents
    async with sf.begin() as s:
        pending = await s.scalar(
            update(t)
            .where(t.c.workflow_id == workflow_id, t.c.consumed_at.is_(None))
            .values(auth_status=status)
            .returning(t.c.id)
        )
        if pending is not None:
            s.add(_audit(charge_box_id, id_tag, status, reason, BEFORE_START, None))
            return BEFORE_START
        tx_id = await s.scalar(
            select(t.c.transaction_id)
            .where(t.c.workflow_id == workflow_id, t.c.transaction_id.is_not(None))
            .limit(1)
        )
        tx = None
        if tx_id is not None:
            tx = (
                await s.execute(
                    update(Transaction)
                    .where(Transaction.id == tx_id)
                    .values(auth_status=status)
                    .returning(
                        Transaction.workflow_id, Transaction.connector_id, Transaction.id_tag
                    )
                )
            ).first()
        if tx is None:
            # The tap expired unused (or its start was never journaled): nothing to stop.
            s.add(_audit(charge_box_id, id_tag, status, reason, NO_TRANSACTION, None))
            return NO_TRANSACTION
        s.add(_audit(charge_box_id, id_tag, status, reason, AFTER_START, tx_id))
        await enqueue(
            s,
            workflow_id=tx.workflow_id,
            kind=SIGNAL_AUTHORIZATION_REFUSED,
            start=SessionInput(
                charge_box_id=charge_box_id,
                connector_id=tx.connector_id,
                id_tag=tx.id_tag,
                origin="tap",
            ),
            signal=AuthorizationRefused(
                event_id=0, transaction_id=tx_id, status=status, reason=reason, at=now
            ),
        )
    return AFTER_START


def _audit(
    charge_box_id: str,
    id_tag: str,
    status: str,
    reason: str,
    when: str,
    transaction_id: int | None,
) -> AuditLog:
    return AuditLog(
        actor=f"charger:{charge_box_id}",
        action="authorize.rejected",
        subject=id_tag,
        source="gateway",
        details={
            "status": status,
            "reason": reason,
            "decided_by": "workflow-late",
            "refused": when,
            "transaction_id": transaction_id,
        },
    )
