"""Chargers: register (with a generated password, shown once), read, change, rotate the password,
decommission; the unknown chargers the gateway refused.

Passwords (OCPP security profile 1, HTTP Basic) are stored as scrypt hashes
(:mod:`gateway.passwords`); the plaintext exists only in the answer to ``add`` and ``password``,
never in a log line, an audit row or a workflow's input. A rotated password is kept as
``pending_password_hash``: the gateway accepts the old or the new one until the charger first
authenticates with the new one, then only the new one (``gateway/server.py``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from db.audit import add_audit
from db.models import AuditLog, Charger, Connector, PendingCharger, Site, Tariff, Transaction
from domain.availability import ConnectorType
from gateway.passwords import hash_password
from services.actor import Actor
from services.context import ServiceContext
from services.errors import ChargerOffline, Conflict, NotFound
from services.sites import find_site
from services.validation import invalid

log = logging.getLogger(__name__)

# What the gateway can route (``/ocpp/<id>``): printable ASCII without "/", up to 255.
CHARGE_BOX_ID_PATTERN = r"^[!-.0-~]{1,255}$"
MAX_CONNECTORS = 64
# 20 random bytes as 40 hex digits: the most OCPP 1.6's AuthorizationKey holds (security
# whitepaper: up to 20 bytes, hexadecimal), and a plain string any charger's web UI accepts.
PASSWORD_BYTES = 20

CHARGER_AUTH_WARNINGS = {
    "unauthenticated": "connects WITHOUT authentication (allow_unauthenticated): anyone can "
    "speak for it",
    "none": "has no password: refused by the gateway outside dev",
}
ALLOW_UNAUTHENTICATED_WARNING = (
    "allow_unauthenticated is on: the gateway lets ANYONE who knows this chargeBoxId connect "
    "as this charger, without a password. Use it only for a charger that cannot do HTTP Basic "
    "authentication, on a network you control."
)


def charger_authentication(charger: Charger | None) -> str:
    """How the charger proves who it is: ``password``; ``unauthenticated`` (no password, let in
    by the operator's ``allow_unauthenticated``); ``none`` (no password: refused outside dev);
    ``unknown`` (no such charger)."""
    if charger is None:
        return "unknown"
    if charger.password_hash:
        return "password"
    return "unauthenticated" if charger.allow_unauthenticated else "none"


def new_password() -> str:
    return secrets.token_hex(PASSWORD_BYTES)


class NewCharger(BaseModel):
    model_config = ConfigDict(extra="forbid")

    charge_box_id: str = Field(pattern=CHARGE_BOX_ID_PATTERN)
    connectors: int = Field(ge=1, le=MAX_CONNECTORS, description="connectors 1..N (0 is added)")
    site: str | None = Field(default=None, max_length=200, description="site name or id")
    tariff: str | None = Field(default=None, max_length=64, description="tariff code")
    max_power_w: int | None = Field(default=None, gt=0, le=10_000_000)
    label: str | None = Field(default=None, max_length=200)


class ConnectorPatch(BaseModel):
    """What drivers see of one connector: its plug and the most it delivers (null: the
    charger's ``max_power_w``). Fields left out are kept; null clears."""

    model_config = ConfigDict(extra="forbid")

    connector_id: int = Field(ge=1, le=MAX_CONNECTORS)
    connector_type: ConnectorType | None = None
    max_power_w: int | None = Field(default=None, gt=0, le=10_000_000)


RegistrationStatus = Literal["Accepted", "Pending", "Rejected"]
# How many of the charger's latest security events / NotifyEvents `chargers show` lists.
RECENT_EVENTS = 10


class ChargerPatch(BaseModel):
    """Fields left out are kept; ``site``, ``tariff`` or ``label`` given as null are cleared.
    ``connectors``: per-connector changes (:class:`ConnectorPatch`)."""

    model_config = ConfigDict(extra="forbid")

    site: str | None = Field(default=None, max_length=200)
    tariff: str | None = Field(default=None, max_length=64)
    max_power_w: int | None = Field(default=None, gt=0, le=10_000_000)
    allow_unauthenticated: bool | None = None
    label: str | None = Field(default=None, max_length=200)
    connectors: list[ConnectorPatch] | None = Field(default=None, max_length=MAX_CONNECTORS)
    # OCPP 2.0.1: the start button (idToken type NoAuthorization) is accepted, flagged free_vend
    # and never billed to a customer; and what its next BootNotification is answered
    # (Pending / Rejected: every other message gets SecurityError until it is Accepted).
    free_vend: bool | None = None
    registration_status: RegistrationStatus | None = None


# -- reading ------------------------------------------------------------------------------------


async def _charger_or_404(db: AsyncSession, charge_box_id: str, *, lock: bool = False) -> Charger:
    query = select(Charger).where(Charger.charge_box_id == charge_box_id)
    if lock:
        query = query.with_for_update()
    charger = await db.scalar(query)
    if charger is None:
        raise NotFound(f"no charger {charge_box_id!r}")
    return charger


def _authentication(charger: Charger) -> dict[str, Any]:
    mode = charger_authentication(charger)
    return {
        "mode": mode,
        "password_rotation_pending": charger.pending_password_hash is not None,
        "password_rotated_at": charger.password_rotated_at,
        "warning": CHARGER_AUTH_WARNINGS.get(mode),
    }


async def _names(db: AsyncSession, charger: Charger) -> tuple[str | None, str | None]:
    site = await db.get(Site, charger.site_id) if charger.site_id is not None else None
    tariff = await db.get(Tariff, charger.tariff_id) if charger.tariff_id is not None else None
    return (site.name if site else None), (tariff.code if tariff else None)


def _summary(charger: Charger, site: str | None, tariff: str | None) -> dict[str, Any]:
    return {
        "charge_box_id": charger.charge_box_id,
        "label": charger.label,
        "site": site,
        "tariff": tariff,
        "max_power_w": charger.max_power_w,
        "vendor": charger.vendor,
        "model": charger.model,
        "serial_number": charger.serial_number,
        "firmware_version": charger.firmware_version,
        # The OCPP version the last connection negotiated (each connection chooses its own).
        "ocpp_version": charger.ocpp_version,
        "free_vend": charger.free_vend,
        "registration_status": charger.registration_status,
        "connected": charger.connected,
        "gateway_instance": charger.gateway_instance,
        "last_seen_at": charger.last_seen_at,
        "last_boot_at": charger.last_boot_at,
        "authentication": _authentication(charger),
        "auto_registered": charger.auto_registered,
        "created_at": charger.created_at,
        "decommissioned_at": charger.decommissioned_at,
    }


async def _connectors(db: AsyncSession, charge_box_id: str) -> list[dict[str, Any]]:
    connectors = (
        await db.scalars(
            select(Connector)
            .where(Connector.charge_box_id == charge_box_id)
            .order_by(Connector.connector_id)
        )
    ).all()
    open_tx = (
        await db.execute(
            select(
                Transaction.connector_id,
                Transaction.id,
                Transaction.workflow_id,
                Transaction.started_at,
            )
            .where(
                Transaction.charge_box_id == charge_box_id,
                Transaction.stopped_at.is_(None),
                Transaction.closed_at.is_(None),
            )
            .order_by(Transaction.id)
        )
    ).all()
    running = {row.connector_id: row for row in open_tx}  # the newest per connector wins
    out = []
    for c in connectors:
        tx = running.get(c.connector_id)
        out.append(
            {
                "connector_id": c.connector_id,
                "status": c.status,
                "error_code": c.error_code,
                "info": c.info,
                "vendor_error_code": c.vendor_error_code,
                "connector_type": c.connector_type,
                "max_power_w": c.max_power_w,
                "since": c.status_at,
                "session": None
                if tx is None
                else {
                    "workflow_id": tx.workflow_id,
                    "transaction_id": tx.id,
                    "started_at": tx.started_at,
                },
            }
        )
    return out


async def _view(db: AsyncSession, charger: Charger) -> dict[str, Any]:
    site, tariff = await _names(db, charger)
    return {
        **_summary(charger, site, tariff),
        "connectors": await _connectors(db, charger.charge_box_id),
        # OCPP 2.0.1 SecurityEventNotification and NotifyEvent, as the gateway audited them.
        "security_events": await _recent_audit(db, charger.charge_box_id, "security_event.%"),
        "events": await _recent_audit(db, charger.charge_box_id, "charger.event"),
    }


async def _recent_audit(db: AsyncSession, charge_box_id: str, action: str) -> list[dict[str, Any]]:
    rows = (
        await db.scalars(
            select(AuditLog)
            .where(
                AuditLog.subject == charge_box_id,
                AuditLog.actor == "gateway",
                AuditLog.action.like(action),
            )
            .order_by(AuditLog.at.desc(), AuditLog.id.desc())
            .limit(RECENT_EVENTS)
        )
    ).all()
    return [{"at": r.at, "action": r.action, **(r.details or {})} for r in rows]


async def list_chargers(
    ctx: ServiceContext, *, include_decommissioned: bool = False
) -> list[dict[str, Any]]:
    query = (
        select(Charger, Site.name, Tariff.code)
        .outerjoin(Site, Site.id == Charger.site_id)
        .outerjoin(Tariff, Tariff.id == Charger.tariff_id)
        .order_by(Charger.charge_box_id)
    )
    if not include_decommissioned:
        query = query.where(Charger.decommissioned_at.is_(None))
    async with ctx.sessions() as db:
        rows = (await db.execute(query)).all()
    return [_summary(charger, site, tariff) for charger, site, tariff in rows]


async def show_charger(ctx: ServiceContext, charge_box_id: str) -> dict[str, Any]:
    async with ctx.sessions() as db:
        return await _view(db, await _charger_or_404(db, charge_box_id))


async def list_pending(ctx: ServiceContext) -> list[dict[str, Any]]:
    async with ctx.sessions() as db:
        rows = (
            await db.scalars(select(PendingCharger).order_by(PendingCharger.last_seen_at.desc()))
        ).all()
    return [
        {
            "charge_box_id": p.charge_box_id,
            "first_seen_at": p.first_seen_at,
            "last_seen_at": p.last_seen_at,
            "attempts": p.attempts,
            "last_address": p.last_address,
        }
        for p in rows
    ]


# -- changing -----------------------------------------------------------------------------------


async def _site_id(db: AsyncSession, ref: str | None) -> int | None:
    if ref is None:
        return None
    site = await find_site(db, ref)
    if site is None:
        raise invalid("site", f"no site {ref!r} (add it with `polaris sites add`)")
    return site.id


async def _tariff_id(db: AsyncSession, code: str | None) -> int | None:
    if code is None:
        return None
    tariff_id = await db.scalar(select(Tariff.id).where(Tariff.code == code))
    if tariff_id is None:
        raise invalid("tariff", f"no tariff {code!r} (add it with `polaris tariffs add`)")
    return tariff_id


async def add_charger(ctx: ServiceContext, actor: Actor, new: NewCharger) -> dict[str, Any]:
    """Register a charger with connectors 0..N and a generated password, answered once."""
    password = new_password()
    password_hash = await asyncio.to_thread(hash_password, password)  # ~50 ms of scrypt
    async with ctx.sessions() as db:
        async with db.begin():
            existing = await db.get(Charger, new.charge_box_id)
            if existing is not None:
                state = " (decommissioned)" if existing.decommissioned_at else ""
                raise Conflict(f"charger {new.charge_box_id!r} exists already{state}")
            values: dict[str, Any] = {
                "charge_box_id": new.charge_box_id,
                "site_id": await _site_id(db, new.site),
                "tariff_id": await _tariff_id(db, new.tariff),
                "password_hash": password_hash,
                "label": new.label,
                "registration_status": "Accepted",
                "connected": False,
            }
            if new.max_power_w is not None:
                values["max_power_w"] = new.max_power_w
            db.add(Charger(**values))
            await db.flush()
            for connector_id in range(new.connectors + 1):
                db.add(Connector(charge_box_id=new.charge_box_id, connector_id=connector_id))
            was_pending = await db.scalar(
                delete(PendingCharger)
                .where(PendingCharger.charge_box_id == new.charge_box_id)
                .returning(PendingCharger.charge_box_id)
            )
            add_audit(
                db,
                actor.id,
                "charger.added",
                subject=new.charge_box_id,
                source=actor.source,
                details={
                    **new.model_dump(exclude={"charge_box_id"}),
                    "was_pending": was_pending is not None,
                },
            )
        async with db.begin():
            view = await _view(db, await _charger_or_404(db, new.charge_box_id))
    return {"charger": view, "password": password}


async def set_charger(
    ctx: ServiceContext, actor: Actor, charge_box_id: str, patch: ChargerPatch
) -> dict[str, Any]:
    changes = patch.model_dump(exclude_unset=True)
    for required in ("max_power_w", "allow_unauthenticated", "free_vend", "registration_status"):
        if required in changes and changes[required] is None:
            raise invalid(required, f"{required} cannot be cleared")
    warnings: list[str] = []
    async with ctx.sessions() as db:
        async with db.begin():
            charger = await _charger_or_404(db, charge_box_id, lock=True)
            if charger.decommissioned_at is not None:
                raise Conflict(f"charger {charge_box_id!r} is decommissioned")
            site, tariff = await _names(db, charger)
            before: dict[str, Any] = {}
            if "site" in changes:
                before["site"] = site
                charger.site_id = await _site_id(db, changes["site"])
            if "tariff" in changes:
                before["tariff"] = tariff
                charger.tariff_id = await _tariff_id(db, changes["tariff"])
            for key in (
                "max_power_w",
                "allow_unauthenticated",
                "label",
                "free_vend",
                "registration_status",
            ):
                if key in changes:
                    before[key] = getattr(charger, key)
                    setattr(charger, key, changes[key])
            if patch.connectors:
                before["connectors"] = await _set_connectors(db, charge_box_id, patch.connectors)
            if changes.get("allow_unauthenticated"):
                warnings.append(ALLOW_UNAUTHENTICATED_WARNING)
                log.warning(
                    "charger %s: allow_unauthenticated turned on by %s", charge_box_id, actor.id
                )
            add_audit(
                db,
                actor.id,
                "charger.updated",
                subject=charge_box_id,
                source=actor.source,
                details={"before": before, "after": changes},
            )
        async with db.begin():
            view = await _view(db, await _charger_or_404(db, charge_box_id))
    return {"charger": view, "warnings": warnings}


async def _set_connectors(
    db: AsyncSession, charge_box_id: str, patches: list[ConnectorPatch]
) -> list[dict[str, Any]]:
    """Apply per-connector changes; answers what they were before (for the audit row)."""
    before = []
    for p in patches:
        connector = await db.get(Connector, (charge_box_id, p.connector_id))
        if connector is None:
            raise invalid(
                "connectors", f"charger {charge_box_id!r} has no connector {p.connector_id}"
            )
        given_fields = p.model_dump(exclude_unset=True, exclude={"connector_id"})
        before.append(
            {"connector_id": p.connector_id, **{k: getattr(connector, k) for k in given_fields}}
        )
        for key, value in given_fields.items():
            setattr(connector, key, value)
    return before


async def decommission_charger(
    ctx: ServiceContext, actor: Actor, charge_box_id: str
) -> dict[str, Any]:
    """Keep the row and its history; the gateway refuses the charger from now on (and closes a
    live connection at its next message), and lists leave it out unless asked."""
    async with ctx.sessions() as db:
        async with db.begin():
            charger = await _charger_or_404(db, charge_box_id, lock=True)
            if charger.decommissioned_at is not None:
                raise Conflict(f"charger {charge_box_id!r} is decommissioned already")
            charger.decommissioned_at = datetime.now(UTC)
            charger.pending_password_hash = None
            add_audit(
                db,
                actor.id,
                "charger.decommissioned",
                subject=charge_box_id,
                source=actor.source,
                details={"connected": charger.connected, "gateway": charger.gateway_instance},
            )
        async with db.begin():
            return await _view(db, await _charger_or_404(db, charge_box_id))


async def rotate_password(ctx: ServiceContext, actor: Actor, charge_box_id: str) -> dict[str, Any]:
    """A new password, answered once and stored as pending: the gateway accepts the old or the
    new one until the charger first authenticates with the new one. A connected charger is
    also told the new one (``ChangeConfiguration AuthorizationKey``: see
    :func:`push_authorization_key`).
    """
    password = new_password()
    pending_hash = await asyncio.to_thread(hash_password, password)
    async with ctx.sessions() as db, db.begin():
        charger = await _charger_or_404(db, charge_box_id, lock=True)
        if charger.decommissioned_at is not None:
            raise Conflict(f"charger {charge_box_id!r} is decommissioned")
        replaced_pending = charger.pending_password_hash is not None
        charger.pending_password_hash = pending_hash
        charger.password_rotated_at = datetime.now(UTC)
        connected = charger.connected
        add_audit(
            db,
            actor.id,
            "charger.password_rotated",
            subject=charge_box_id,
            source=actor.source,
            details={
                "connected": connected,
                "had_password": charger.password_hash is not None,
                "replaced_unused_pending": replaced_pending,
            },
        )
    push: dict[str, Any] = {"status": "not_sent", "reason": "the charger is not connected"}
    if connected:
        push = await push_authorization_key(ctx, actor, charge_box_id, password)
    return {
        "charge_box_id": charge_box_id,
        "password": password,
        "pending": True,
        "push": push,
    }


async def push_authorization_key(
    ctx: ServiceContext, actor: Actor, charge_box_id: str, password: str
) -> dict[str, Any]:
    """Tell a connected charger its new password (``ChangeConfiguration`` of ``AuthorizationKey``).

    The one place the plaintext leaves the service layer. Answers ``{status, reason?,
    operation_id?, charger_status?}``: ``status`` is the operation's (answered | rejected | failed
    | timed_out) or ``charger_offline``; ``charger_status`` the charger's answer (Accepted |
    Rejected | NotSupported). The operations service keeps the value out of its log, the audit
    trail and the workflow's history. Whatever the answer, the pending password stays pending:
    the gateway promotes it only when the charger authenticates with it.
    """
    from services.operations import request_operation  # operations import nothing of ours

    try:
        op = await request_operation(
            ctx,
            actor,
            charge_box_id,
            "ChangeConfiguration",
            {"key": "AuthorizationKey", "value": password},
        )
    except ChargerOffline as exc:
        return {"status": "charger_offline", "reason": exc.message}
    response = op.get("response") or {}
    return {
        "status": op["status"],
        "operation_id": op["id"],
        "charger_status": response.get("status"),
        "reason": op.get("error"),
    }


__all__ = [
    "ALLOW_UNAUTHENTICATED_WARNING",
    "CHARGER_AUTH_WARNINGS",
    "ChargerPatch",
    "ConnectorPatch",
    "NewCharger",
    "add_charger",
    "charger_authentication",
    "decommission_charger",
    "list_chargers",
    "list_pending",
    "new_password",
    "push_authorization_key",
    "rotate_password",
    "set_charger",
    "show_charger",
]
