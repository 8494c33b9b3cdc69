"""Charger and connector state in PostgreSQL: connection, boot, status, last seen."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.selectable import ScalarSelect

from db.engine import SessionFactory
from db.events import record_event
from db.models import AuditLog, Charger, Connector, Transaction
from domain.events import CHARGER_CONNECTED, CHARGER_STATUS_CHANGED
from gateway import event_routes, load_trigger, local_list_trigger
from gateway.closures import close_after_reboot
from gateway.outbox import enqueue
from workflows.messages import SIGNAL_CONNECTOR_STATUS, ConnectorStatus, SessionInput


async def auto_register(sf: SessionFactory, charge_box_id: str, remote: str | None) -> bool:
    """Create the charger row for an unknown id (audited). False if someone else just did."""
    async with sf.begin() as s:
        created = await s.scalar(
            pg_insert(Charger)
            .values(
                charge_box_id=charge_box_id,
                auto_registered=True,
                registration_status="Accepted",
                connected=False,
            )
            .on_conflict_do_nothing(index_elements=[Charger.charge_box_id])
            .returning(Charger.charge_box_id)
        )
        if created is None:
            return False
        await s.execute(
            insert(AuditLog).values(
                actor="gateway",
                action="charger.auto_registered",
                subject=charge_box_id,
                source=remote,
                details={"charge_box_id": charge_box_id},
            )
        )
    return True


async def audit_charger_connection(
    sf: SessionFactory,
    action: str,
    charge_box_id: str,
    *,
    source: str | None,
    details: dict[str, object],
) -> None:
    """One audit row about a charger's socket (replaced, or refused to protect the live one)."""
    async with sf.begin() as s:
        await s.execute(
            insert(AuditLog).values(
                actor="gateway",
                action=action,
                subject=charge_box_id,
                source=source[:255] if source else None,
                details={"charge_box_id": charge_box_id, **details},
            )
        )


async def set_connected(
    sf: SessionFactory,
    charge_box_id: str,
    instance: str,
    now: datetime,
    *,
    ocpp_version: str,
) -> bool:
    """Record the connection (and the OCPP version it negotiated: informational, never read to
    choose one); True when an outbox row was queued with it (wake the relay)."""
    async with sf.begin() as s:
        await s.execute(
            update(Charger)
            .where(Charger.charge_box_id == charge_box_id)
            .values(
                connected=True,
                gateway_instance=instance,
                last_seen_at=now,
                ocpp_version=ocpp_version,
            )
        )
        await record_event(
            s,
            CHARGER_CONNECTED,
            {"charge_box_id": charge_box_id, "gateway": instance, "at": now.isoformat()},
            subject=charge_box_id,
            charge_box_id=charge_box_id,
            site_id=_site_of(charge_box_id),
        )
        # A local-list sync (or ClearCache) that waited for this charger to come back.
        queued = await local_list_trigger.enqueue_if_pending(s, charge_box_id)
        # Its site's load plan counts it as reachable again.
        return await load_trigger.enqueue_if_limited(s, charge_box_id, "connected") or queued


def _site_of(charge_box_id: str) -> ScalarSelect[int | None]:
    """The charger's site, resolved inside the event's own insert (no extra round trip)."""
    return select(Charger.site_id).where(Charger.charge_box_id == charge_box_id).scalar_subquery()


async def set_disconnected(sf: SessionFactory, charge_box_id: str, instance: str) -> None:
    # Only if the charger is still ours: it may already have reconnected to another gateway.
    async with sf.begin() as s:
        await s.execute(
            update(Charger)
            .where(Charger.charge_box_id == charge_box_id, Charger.gateway_instance == instance)
            .values(connected=False)
        )


async def promote_password(
    sf: SessionFactory,
    charge_box_id: str,
    pending_hash: str,
    *,
    source: str | None,
    gateway_instance: str,
) -> bool:
    """The charger authenticated with its rotated password: it becomes the only one (audited).

    Only if the pending hash is still the one that was checked: a rotation made meanwhile keeps
    its own pending password. False when nothing changed.
    """
    async with sf.begin() as s:
        promoted = await s.scalar(
            update(Charger)
            .where(
                Charger.charge_box_id == charge_box_id,
                Charger.pending_password_hash == pending_hash,
            )
            .values(password_hash=pending_hash, pending_password_hash=None)
            .returning(Charger.charge_box_id)
        )
        if promoted is None:
            return False
        await s.execute(
            insert(AuditLog).values(
                actor="gateway",
                action="charger.password_promoted",
                subject=charge_box_id,
                source=source[:255] if source else None,
                details={
                    "charge_box_id": charge_box_id,
                    "gateway_instance": gateway_instance,
                    "old_password": "void",
                },
            )
        )
    return True


async def record_boot(
    sf: SessionFactory,
    charge_box_id: str,
    *,
    vendor: str,
    model: str,
    serial_number: str | None,
    firmware_version: str | None,
    now: datetime,
) -> bool:
    """Record the boot; True when an outbox row was queued with it (wake the relay)."""
    async with sf.begin() as s:
        await s.execute(
            update(Charger)
            .where(Charger.charge_box_id == charge_box_id)
            .values(
                vendor=vendor,
                model=model,
                serial_number=serial_number,
                firmware_version=firmware_version,
                last_boot_at=now,
                last_seen_at=now,
                registration_status="Accepted",
            )
        )
        # A booted charger may have lost its profiles: its TxDefaultProfile is sent again.
        return await load_trigger.enqueue_if_limited(s, charge_box_id, "booted")


async def record_status(
    sf: SessionFactory,
    charge_box_id: str,
    *,
    connector_id: int,
    status: str,
    error_code: str,
    info: str | None,
    vendor_error_code: str | None,
    status_at: datetime,
    now: datetime,
) -> bool:
    """Upsert the connector; tell the running session on it, if any. True if an event was queued."""
    async with sf.begin() as s:
        values = dict(
            status=status,
            error_code=error_code,
            info=info,
            vendor_error_code=vendor_error_code,
            status_at=status_at,
        )
        stmt = pg_insert(Connector).values(
            charge_box_id=charge_box_id, connector_id=connector_id, **values
        )
        # A queued, older status never overwrites a newer one (nor is it announced).
        applied = await s.scalar(
            stmt.on_conflict_do_update(
                index_elements=[Connector.charge_box_id, Connector.connector_id],
                set_={**values, "updated_at": func.now()},
                where=(Connector.status_at.is_(None)) | (Connector.status_at <= status_at),
            ).returning(Connector.connector_id)
        )
        if applied is not None:
            await record_event(
                s,
                CHARGER_STATUS_CHANGED,
                {
                    "charge_box_id": charge_box_id,
                    "connector_id": connector_id,
                    "status": status,
                    "error_code": error_code,
                    "info": info,
                    "vendor_error_code": vendor_error_code,
                    "at": status_at.isoformat(),
                },
                subject=charge_box_id,
                charge_box_id=charge_box_id,
                site_id=_site_of(charge_box_id),
            )
        if connector_id == 0:
            return False
        if await close_after_reboot(
            s, charge_box_id=charge_box_id, connector_id=connector_id, status=status, now=now
        ):
            return True  # the session hears of it as a closure, not as a status
        open_tx = (
            await s.execute(
                select(Transaction.id, Transaction.workflow_id, Transaction.id_tag)
                .where(
                    Transaction.charge_box_id == charge_box_id,
                    Transaction.connector_id == connector_id,
                    Transaction.stopped_at.is_(None),
                    Transaction.closed_at.is_(None),
                )
                .order_by(Transaction.id.desc())
                .limit(1)
            )
        ).first()
        if open_tx is None:
            return await _publish_status_after_stop(
                s,
                charge_box_id=charge_box_id,
                connector_id=connector_id,
                status=status,
                error_code=error_code,
                status_at=status_at,
            )
        await enqueue(
            s,
            workflow_id=open_tx.workflow_id,
            kind=SIGNAL_CONNECTOR_STATUS,
            start=SessionInput(
                charge_box_id=charge_box_id,
                connector_id=connector_id,
                id_tag=open_tx.id_tag,
                origin="charger",
            ),
            signal=ConnectorStatus(
                event_id=0,
                connector_id=connector_id,
                status=status,
                error_code=error_code,
                at=status_at,
            ),
        )
    return True


async def _publish_status_after_stop(
    s: AsyncSession,
    *,
    charge_box_id: str,
    connector_id: int,
    status: str,
    error_code: str,
    status_at: datetime,
) -> bool:
    """A status on a connector with no open transaction goes to the workflows subscribed to
    ``connector_status_after_stop`` (never to a ChargingSession: no phantom sessions). Without
    subscribers this costs nothing; with some, one indexed read of the connector's last
    transaction. True when a row was queued."""
    if not event_routes.subscribers(event_routes.CONNECTOR_STATUS_AFTER_STOP):
        return False
    last = (
        await s.execute(
            select(Transaction.id, Transaction.workflow_id, Transaction.stopped_at)
            .where(
                Transaction.charge_box_id == charge_box_id,
                Transaction.connector_id == connector_id,
            )
            .order_by(Transaction.id.desc())
            .limit(1)
        )
    ).first()
    event: dict[str, object] = {
        "charge_box_id": charge_box_id,
        "connector_id": connector_id,
        "status": status,
        "error_code": error_code,
        "at": status_at.isoformat(),
        "transaction_id": last.id if last else None,
        "session_workflow_id": last.workflow_id if last else None,
        "stopped_at": last.stopped_at.isoformat() if last and last.stopped_at else None,
    }
    written = await event_routes.publish(s, event_routes.CONNECTOR_STATUS_AFTER_STOP, event)
    return written > 0
