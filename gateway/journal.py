"""Charger and connector state in PostgreSQL: connection, boot, status, last seen."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.selectable import ScalarSelect

from db.engine import SessionFactory, autocommit
from db.events import EVENTS_CHANNEL, recorded_with
from db.models import AuditLog, Charger, Connector, Transaction
from domain.events import CHARGER_CONNECTED, CHARGER_STATUS_CHANGED
from gateway import event_routes, load_trigger, local_list_trigger
from gateway.closures import close_after_reboot, open_since_boot
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


@dataclass(frozen=True)
class Connected:
    """A connection to record: when, and the OCPP version it negotiated (informational, never
    read to choose one)."""

    charge_box_id: str
    at: datetime
    ocpp_version: str


# Connected rows take this gateway and the version; disconnected ones are only changed while the
# charger is still this gateway's (it may already have reconnected to another). Rows are locked in
# charger order, so two gateways' batches never deadlock.
_WRITE_STATES = text(
    """
    WITH v AS (
        SELECT * FROM unnest(
            CAST(:ids AS text[]), CAST(:connected AS boolean[]),
            CAST(:ats AS timestamptz[]), CAST(:versions AS text[])
        ) AS v(id, connected, at, version)
    ), locked AS (
        SELECT c.charge_box_id FROM chargers c JOIN v ON c.charge_box_id = v.id
        ORDER BY c.charge_box_id
        FOR UPDATE OF c
    )
    UPDATE chargers c SET
        connected = v.connected,
        gateway_instance = CASE WHEN v.connected THEN :instance ELSE c.gateway_instance END,
        last_seen_at = CASE WHEN v.connected THEN GREATEST(c.last_seen_at, v.at)
                            ELSE c.last_seen_at END,
        ocpp_version = CASE WHEN v.connected THEN v.version ELSE c.ocpp_version END
    FROM v JOIN locked ON locked.charge_box_id = v.id
    WHERE c.charge_box_id = v.id AND (v.connected OR c.gateway_instance = :instance)
    """
)

# One ``charger.connected`` event per connection, in order, and one NOTIFY for all of them (the
# notification only wakes listeners, who read every row after the last id they saw).
_CONNECTED_EVENTS = text(
    """
    WITH v AS (
        SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:ats AS text[]))
        WITH ORDINALITY AS v(id, at, n)
    ), inserted AS (
        INSERT INTO platform_events (type, payload, subject, charge_box_id, site_id)
        SELECT :type,
               jsonb_build_object('charge_box_id', v.id, 'gateway', CAST(:instance AS text),
                                  'at', v.at),
               v.id, v.id, c.site_id
        FROM v LEFT JOIN chargers c ON c.charge_box_id = v.id
        ORDER BY v.n
        RETURNING id
    )
    SELECT pg_notify(:channel, CAST(max(id) AS text)) FROM inserted
    """
)


async def write_connection_states(
    sf: SessionFactory,
    instance: str,
    *,
    connected: Sequence[Connected],
    disconnected: Sequence[str],
    events: Sequence[Connected],
) -> bool:
    """Record a batch of connections and disconnections in one transaction (one charger at most
    once in ``connected`` + ``disconnected``: its last state); ``events``: every connection of
    the batch, announced. True when an outbox row was queued (wake the relay)."""
    states = [(c.charge_box_id, True, c.at, c.ocpp_version) for c in connected] + [
        (charge_box_id, False, None, None) for charge_box_id in disconnected
    ]
    states.sort(key=lambda state: state[0])
    async with sf.begin() as s:
        if states:
            ids, flags, ats, versions = (list(column) for column in zip(*states, strict=True))
            await s.execute(
                _WRITE_STATES,
                {
                    "ids": ids,
                    "connected": flags,
                    "ats": ats,
                    "versions": versions,
                    "instance": instance,
                },
            )
        if events:
            await s.execute(
                _CONNECTED_EVENTS,
                {
                    "ids": [e.charge_box_id for e in events],
                    "ats": [e.at.isoformat() for e in events],
                    "type": CHARGER_CONNECTED,
                    "instance": instance,
                    "channel": EVENTS_CHANNEL,
                },
            )
        ids_connected = sorted(c.charge_box_id for c in connected)
        # A local-list sync (or ClearCache) that waited for these chargers to come back.
        queued = await local_list_trigger.enqueue_many_if_pending(s, ids_connected)
        # Their sites' load plans count them as reachable again.
        return await load_trigger.enqueue_many_if_limited(s, ids_connected, "connected") or queued


def _site_of(charge_box_id: str) -> ScalarSelect[int | None]:
    """The charger's site, resolved inside the event's own insert (no extra round trip)."""
    return select(Charger.site_id).where(Charger.charge_box_id == charge_box_id).scalar_subquery()


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


# The boot, and a site-load row when the charger's site has a limit (a booted charger may have
# lost its profiles: its TxDefaultProfile is sent again), in one statement.
_RECORD_BOOT = text(
    """
    WITH booted AS (
        UPDATE chargers SET vendor = :vendor, model = :model, serial_number = :serial_number,
            firmware_version = :firmware_version, last_boot_at = :now,
            last_seen_at = GREATEST(last_seen_at, :now), registration_status = 'Accepted'
        WHERE charge_box_id = :charge_box_id
        RETURNING charge_box_id, site_id
    )
    """
    + load_trigger.enqueue_sql("booted c")
)


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
    """Record the boot; True when an outbox row was queued with it (wake the relay). One
    statement, so one round trip (autocommit)."""
    async with autocommit(sf) as conn:
        queued = await conn.execute(
            _RECORD_BOOT,
            {
                "charge_box_id": charge_box_id,
                "vendor": vendor,
                "model": model,
                "serial_number": serial_number,
                "firmware_version": firmware_version,
                "now": now,
                **load_trigger.enqueue_params("booted"),
            },
        )
        return queued.first() is not None


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
        # A queued, older status never overwrites a newer one (nor is it announced). The upsert
        # and its event are one statement.
        changed = (
            stmt.on_conflict_do_update(
                index_elements=[Connector.charge_box_id, Connector.connector_id],
                set_={**values, "updated_at": func.now()},
                where=(Connector.status_at.is_(None)) | (Connector.status_at <= status_at),
            )
            .returning(Connector.connector_id)
            .cte("changed")
        )
        await s.execute(
            recorded_with(
                changed,
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
        )
        if connector_id == 0:
            return False
        # What runs on the connector, and whether the charger rebooted since: one read.
        running = await open_since_boot(s, charge_box_id, connector_id)
        if await close_after_reboot(s, running, status=status, now=now):
            return True  # the session hears of it as a closure, not as a status
        open_tx = running[0].transaction if running else None
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
