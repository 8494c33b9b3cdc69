"""Transactions a charger forgot: the gateway closes them in the journal and tells the session.

Two rules are decided here, inside the journal transaction of the message that reveals them:

* StartTransaction on a connector that still has an open transaction (``new_transaction``);
* after a reboot (BootNotification later than the transaction's journal row), a StatusNotification
  reporting that connector ``Available`` or ``Preparing`` (``charger_rebooted``).

The row gets ``closed_at``/``closed_reason`` (``stopped_at`` stays NULL so a late StopTransaction
is still journaled and compensated), the session gets a ``transaction_closed`` signal through the
outbox, and the audit log a ``session.closed`` row, all in the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import AuditLog, Charger, Transaction
from domain.closure import (
    AUDIT_SESSION_CLOSED,
    CLOSED_CHARGER_REBOOTED,
    CLOSED_NEW_TRANSACTION,
    closure_details,
)
from gateway.outbox import enqueue
from workflows.messages import SIGNAL_TRANSACTION_CLOSED, SessionInput, TransactionClosed

# A rebooted charger reporting these for a connector has no transaction running there.
FREE_STATUSES = frozenset({"Available", "Preparing"})


def open_on_connector(charge_box_id: str, connector_id: int) -> Select[Transaction]:
    """The open (neither stopped nor closed) transactions of one connector."""
    return select(Transaction).where(
        Transaction.charge_box_id == charge_box_id,
        Transaction.connector_id == connector_id,
        Transaction.stopped_at.is_(None),
        Transaction.closed_at.is_(None),
    )


async def close_for_new_transaction(
    s: AsyncSession, *, charge_box_id: str, connector_id: int, now: datetime
) -> int:
    """Close whatever still runs on the connector a new transaction starts on. Returns how many."""
    rows = (await s.execute(open_on_connector(charge_box_id, connector_id))).scalars().all()
    for row in rows:
        await _close(s, row, CLOSED_NEW_TRANSACTION, now)
    return len(rows)


@dataclass(frozen=True)
class Running:
    """An open transaction of a connector, and whether its journal row predates the charger's
    last boot (the charger cannot still be running it)."""

    transaction: Transaction
    before_boot: bool


async def open_since_boot(s: AsyncSession, charge_box_id: str, connector_id: int) -> list[Running]:
    """The connector's open transactions, newest first, each with whether the charger booted
    after it started (the last boot is read inside the query: one round trip)."""
    last_boot = (
        select(Charger.last_boot_at).where(Charger.charge_box_id == charge_box_id).scalar_subquery()
    )
    # No boot yet (NULL): nothing predates it.
    before_boot = func.coalesce(Transaction.created_at < last_boot, False).label("before_boot")
    query = (
        open_on_connector(charge_box_id, connector_id)
        .add_columns(before_boot)
        .order_by(Transaction.id.desc())
    )
    return [Running(row[0], row[1]) for row in (await s.execute(query)).all()]


async def close_after_reboot(
    s: AsyncSession, running: list[Running], *, status: str, now: datetime
) -> int:
    """A rebooted charger reports the connector free: close what we think runs there (of
    ``running``, what predates the boot). Returns how many."""
    if status not in FREE_STATUSES:
        return 0
    rebooted = [r.transaction for r in running if r.before_boot]
    for row in rebooted:
        await _close(s, row, CLOSED_CHARGER_REBOOTED, now)
    return len(rebooted)


async def _close(s: AsyncSession, row: Transaction, reason: str, now: datetime) -> None:
    await s.execute(
        update(Transaction)
        .where(Transaction.id == row.id)
        .values(closed_at=now, closed_reason=reason)
    )
    await enqueue(
        s,
        workflow_id=row.workflow_id,
        kind=SIGNAL_TRANSACTION_CLOSED,
        start=SessionInput(
            charge_box_id=row.charge_box_id,
            connector_id=row.connector_id,
            id_tag=row.id_tag,
            origin="charger",
        ),
        signal=TransactionClosed(event_id=0, transaction_id=row.id, reason=reason, at=now),
    )
    await s.execute(
        insert(AuditLog).values(
            actor=f"charger:{row.charge_box_id}",
            action=AUDIT_SESSION_CLOSED,
            subject=row.workflow_id,
            source="gateway",
            details=closure_details(
                transaction_id=row.id, charge_box_id=row.charge_box_id, reason=reason
            ),
        )
    )
