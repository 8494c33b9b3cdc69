"""Writes to the operations log, shared by the gateway's ``send_charger_command``, the worker's
operation activities and the service layer, so the state machine (``domain/operations.py``) is
enforced in one place: a row only moves along an allowed transition, under a row lock.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.engine import SessionFactory
from db.events import record_event
from db.models import Charger
from db.operation_models import ChargerConfiguration, ChargerOperation, ChargerOperationSecret
from domain.events import OPERATION_COMPLETED
from domain.operations import (
    FINAL_STATUSES,
    can_advance,
    configuration_map,
    redact_answer,
    split_secrets,
)


async def insert_operation(
    db: AsyncSession,
    *,
    operation_id: str,
    charge_box_id: str,
    action: str,
    fields: dict[str, Any],
    requested_by: str,
    source: str | None,
    workflow_id: str | None,
    protocol: str = "ocpp1.6",
    status: str = "requested",
    error: str | None = None,
) -> bool:
    """Add the row (secrets redacted and stashed until the operation ends) unless it exists;
    True when this call created it. Runs in the caller's transaction."""
    request, secrets = split_secrets(action, fields)
    final = status in FINAL_STATUSES
    created = await db.scalar(
        insert(ChargerOperation)
        .values(
            id=operation_id,
            charge_box_id=charge_box_id,
            action=action,
            protocol=protocol,
            request=request,
            status=status,
            error=error,
            requested_by=requested_by[:255],
            source=source[:255] if source else None,
            workflow_id=workflow_id,
            finished_at=datetime.now(UTC) if final else None,
        )
        .on_conflict_do_nothing(index_elements=[ChargerOperation.id])
        .returning(ChargerOperation.id)
    )
    if created is not None and secrets and not final:
        db.add(ChargerOperationSecret(operation_id=operation_id, fields=secrets))
    if created is not None and final:
        await _announce(
            db,
            operation_id=operation_id,
            charge_box_id=charge_box_id,
            action=action,
            status=status,
            error=error,
            requested_by=requested_by,
        )
    return created is not None


async def operation_secrets(sessions: SessionFactory, operation_id: str) -> dict[str, Any]:
    async with sessions() as db:
        stash = await db.get(ChargerOperationSecret, operation_id)
    return dict(stash.fields) if stash is not None else {}


async def mark_sent(sessions: SessionFactory, operation_id: str) -> bool:
    """``requested`` → ``sent`` (a retry re-sending an idempotent action keeps ``sent`` and gets
    a new ``sent_at``)."""
    async with sessions() as db, db.begin():
        row = await _locked(db, operation_id)
        if row is None or row.status not in ("requested", "sent"):
            return False
        row.status = "sent"
        row.sent_at = datetime.now(UTC)
        row.error = None
        return True


async def note_error(sessions: SessionFactory, operation_id: str, error: str) -> None:
    """An attempt's problem on a row that stays open (a retry follows)."""
    async with sessions() as db, db.begin():
        row = await _locked(db, operation_id)
        if row is not None and row.status not in FINAL_STATUSES:
            row.error = error[:2000]


async def finish_operation(
    sessions: SessionFactory,
    operation_id: str,
    status: str,
    *,
    response: dict[str, Any] | None = None,
    error: str | None = None,
) -> ChargerOperation | None:
    """Move the row to a final status if the state machine allows it from where it stands;
    the row as it is afterwards (None when there is no such row). The operation's secrets are
    dropped; an answered GetConfiguration becomes the charger's configuration."""
    async with sessions() as db, db.begin():
        row = await _locked(db, operation_id)
        if row is None:
            return None
        if can_advance(row.status, status):
            now = datetime.now(UTC)
            row.status = status
            row.finished_at = now
            if response is not None:
                row.response = redact_answer(row.action, response)
            row.error = error[:2000] if error else None
            await db.execute(
                delete(ChargerOperationSecret).where(
                    ChargerOperationSecret.operation_id == operation_id
                )
            )
            if row.action == "GetConfiguration" and status == "answered" and response:
                await _keep_configuration(db, row, now)
            if status in FINAL_STATUSES:
                await _announce(
                    db,
                    operation_id=row.id,
                    charge_box_id=row.charge_box_id,
                    action=row.action,
                    status=status,
                    error=row.error,
                    requested_by=row.requested_by,
                )
        await db.flush()
        db.expunge(row)
        return row


async def _announce(
    db: AsyncSession,
    *,
    operation_id: str,
    charge_box_id: str,
    action: str,
    status: str,
    error: str | None,
    requested_by: str,
) -> None:
    """``operation.completed``, in the transaction that made the row final (once: a final row
    never advances again)."""
    await record_event(
        db,
        OPERATION_COMPLETED,
        {
            "operation_id": operation_id,
            "charge_box_id": charge_box_id,
            "action": action,
            "status": status,
            "error": error[:500] if error else None,
            "requested_by": requested_by,
        },
        subject=operation_id,
        charge_box_id=charge_box_id,
        site_id=select(Charger.site_id)
        .where(Charger.charge_box_id == charge_box_id)
        .scalar_subquery(),
    )


async def _locked(db: AsyncSession, operation_id: str) -> ChargerOperation | None:
    row: ChargerOperation | None = await db.scalar(
        select(ChargerOperation).where(ChargerOperation.id == operation_id).with_for_update()
    )
    return row


async def _keep_configuration(db: AsyncSession, row: ChargerOperation, now: datetime) -> None:
    answer = row.response or {}
    keys = configuration_map(answer.get("configurationKey"))
    unknown = [k for k in answer.get("unknownKey") or [] if isinstance(k, str)]
    full = not row.request.get("key")
    existing = await db.get(ChargerConfiguration, row.charge_box_id, with_for_update=True)
    if existing is None:
        db.add(
            ChargerConfiguration(
                charge_box_id=row.charge_box_id,
                keys=keys,
                unknown_keys=unknown,
                full=full,
                operation_id=row.id,
                read_at=now,
            )
        )
        return
    existing.previous_keys = existing.keys
    existing.previous_read_at = existing.read_at
    existing.keys = keys
    existing.unknown_keys = unknown
    existing.full = full
    existing.operation_id = row.id
    existing.read_at = now
