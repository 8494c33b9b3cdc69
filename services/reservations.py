"""Reservations: a driver holds a connector for a time window (docs/reservations.md).

- :func:`create` — checks the window, picks the driver's card (or the one named) and the
  connector (the one asked for, or the first free one when any will do), inserts the row — the
  database's exclusion constraint refuses an overlap, so of two drivers racing for one slot
  exactly one wins and the other gets 409 ``SLOT_TAKEN`` with up to two free slots nearby — and
  starts its ``ReservationWorkflow``.
- :func:`list_mine`, :func:`get_mine`, :func:`cancel_mine` — the driver's own (404 for others').
- :func:`list_all`, :func:`cancel` — operators.
- :func:`cancel_for_card` — a card unlinked: its reservations (and its child cards') end.
- :func:`next_reservation` — the driver dashboard's next live reservation.

A cancel changes the row first (the slot is free at once, with its event), then signals the
workflow, which tells the charger ``CancelReservation`` if it had accepted ``ReserveNow``; a lost
signal is caught up at the workflow's next step (it re-reads the row).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from db.audit import add_audit
from db.models import Charger, Connector, EvCard, UserMapping
from db.reservation_models import LIVE_STATUSES, Reservation
from db.reservations import record_status_event, transition
from domain.reservations import Window, suggest_slots, window_issues
from services.actor import Actor
from services.context import ServiceContext
from services.errors import Conflict, InvalidInput, NotFound, Unavailable
from workflows.reservation_messages import (
    RESERVATION_WORKFLOW,
    SIGNAL_RESERVATION_CANCEL,
    ReservationCancel,
    ReservationInput,
    reservation_workflow_id,
)

log = logging.getLogger("polaris.services.reservations")

MIN_DURATION = timedelta(minutes=10)
EXCLUSION_VIOLATION = "23P01"
# Two drivers inserting overlapping rows at once can each wait on the other's exclusion check;
# PostgreSQL then aborts one of them with a deadlock. That one lost the race: it tries again and
# meets the winner's row as an ordinary overlap.
DEADLOCK_DETECTED = "40P01"
INSERT_ATTEMPTS = 3
SIGNAL_TIMEOUT = timedelta(seconds=5)


class SlotTaken(Conflict):
    code = "SLOT_TAKEN"


class NoCard(Conflict):
    code = "NO_CARD"


class CardBlocked(Conflict):
    code = "CARD_BLOCKED"


class AlreadyEnded(Conflict):
    code = "RESERVATION_ENDED"


class ReservationIn(BaseModel):
    """A reservation request: a charger, a connector (omit it: any), a start, a duration."""

    charge_box_id: str = Field(min_length=1, max_length=255)
    connector_id: int | None = Field(default=None, ge=1, le=100)
    starts_at: datetime
    duration_min: int = Field(ge=1, le=24 * 60)
    # Which of the driver's cards; omitted: their active card.
    id_tag: str | None = Field(default=None, min_length=1, max_length=20)


class SlotOut(BaseModel):
    connector_id: int
    starts_at: datetime
    ends_at: datetime


class ReservationOut(BaseModel):
    id: str
    charge_box_id: str
    connector_id: int | None
    any_connector: bool
    id_tag: str
    starts_at: datetime
    ends_at: datetime
    status: str
    reason: str | None
    ocpp_reservation_id: int
    session_workflow_id: str | None
    transaction_id: int | None
    cancelled_by: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, r: Reservation) -> ReservationOut:
        return cls(
            id=r.id,
            charge_box_id=r.charge_box_id,
            connector_id=r.connector_id,
            any_connector=r.any_connector,
            id_tag=r.id_tag,
            starts_at=r.starts_at,
            ends_at=r.ends_at,
            status=r.status,
            reason=r.reason,
            ocpp_reservation_id=r.ocpp_reservation_id,
            session_workflow_id=r.session_workflow_id,
            transaction_id=r.transaction_id,
            cancelled_by=r.cancelled_by,
            created_at=r.created_at,
            updated_at=r.updated_at,
        )


class OperatorReservationOut(ReservationOut):
    user_id: str
    workflow_id: str

    @classmethod
    def of(cls, r: Reservation) -> OperatorReservationOut:
        return cls(
            **ReservationOut.of(r).model_dump(), user_id=r.user_id, workflow_id=r.workflow_id
        )


class ReservationFilters(BaseModel):
    charge_box_id: str | None = None
    user_id: str | None = None
    status: str | None = None
    starts_after: datetime | None = None
    starts_before: datetime | None = None
    limit: int = Field(default=100, ge=1, le=500)
    offset: int = Field(default=0, ge=0)


# -- create ---------------------------------------------------------------------------------


async def create(
    ctx: ServiceContext, actor: Actor, user_id: str, body: ReservationIn
) -> ReservationOut:
    settings = ctx.settings
    now = datetime.now(UTC)
    duration = timedelta(minutes=body.duration_min)
    issues = window_issues(
        body.starts_at,
        duration,
        now=now,
        max_ahead=timedelta(seconds=settings.reservation_max_ahead_s),
        min_duration=MIN_DURATION,
        max_duration=timedelta(seconds=settings.reservation_max_duration_s),
    )
    if issues:
        raise InvalidInput("the reservation window is not valid", issues=issues)
    wanted = Window(body.starts_at, body.starts_at + duration)
    async with ctx.sessions() as db:
        charger = await db.get(Charger, body.charge_box_id)
        if charger is None or charger.decommissioned_at is not None:
            raise NotFound("charger not found")
        id_tag = await _drivers_card(db, user_id, body.id_tag)
        candidates = await _connectors(db, body.charge_box_id, body.connector_id)
    for connector_id in candidates:
        row = await _insert(ctx, actor, user_id, id_tag, body, connector_id, wanted)
        if row is not None:
            await _start_workflow(ctx, row)
            return ReservationOut.of(row)
    slots = await _suggestions(ctx, body.charge_box_id, candidates, wanted, now)
    raise SlotTaken(
        "the connector is already reserved at that time"
        if body.connector_id is not None
        else "every connector of the charger is reserved at that time",
        extra={"suggested_slots": [s.model_dump(mode="json") for s in slots]},
    )


async def _drivers_card(db: AsyncSession, user_id: str, id_tag: str | None) -> str:
    query = (
        select(EvCard)
        .join(UserMapping, UserMapping.id_tag == EvCard.id_tag)
        .where(UserMapping.user_id == user_id, UserMapping.is_active)
        .order_by(UserMapping.id)
    )
    if id_tag is not None:
        query = query.where(EvCard.id_tag == id_tag)
    cards = list((await db.scalars(query)).all())
    if not cards:
        if id_tag is not None:
            raise InvalidInput(
                "that card is not one of yours",
                issues=[{"path": ["id_tag"], "message": "not a card linked to your account"}],
            )
        raise NoCard("you have no card linked to your account")
    usable = [c for c in cards if c.is_active and not c.blocked and c.lost_at is None]
    if not usable:
        raise CardBlocked("your card is blocked; reservations need a card that may charge")
    return usable[0].id_tag


async def _connectors(db: AsyncSession, charge_box_id: str, wanted: int | None) -> list[int]:
    known = list(
        (
            await db.scalars(
                select(Connector.connector_id)
                .where(Connector.charge_box_id == charge_box_id, Connector.connector_id > 0)
                .order_by(Connector.connector_id)
            )
        ).all()
    )
    if wanted is not None:
        if known and wanted not in known:
            raise InvalidInput(
                "the charger has no such connector",
                issues=[{"path": ["connector_id"], "message": f"one of {known}"}],
            )
        return [wanted]
    # A charger that has not reported its connectors yet has at least connector 1.
    return known or [1]


async def _insert(
    ctx: ServiceContext,
    actor: Actor,
    user_id: str,
    id_tag: str,
    body: ReservationIn,
    connector_id: int,
    wanted: Window,
) -> Reservation | None:
    """The new row, or None when the database refused an overlap on this connector."""
    for attempt in range(1, INSERT_ATTEMPTS + 1):
        try:
            return await _insert_once(ctx, actor, user_id, id_tag, body, connector_id, wanted)
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != DEADLOCK_DETECTED or (
                attempt == INSERT_ATTEMPTS
            ):
                raise
            log.info("reservation insert on %s lost a race; trying again", body.charge_box_id)
    raise AssertionError("unreachable")


async def _insert_once(
    ctx: ServiceContext,
    actor: Actor,
    user_id: str,
    id_tag: str,
    body: ReservationIn,
    connector_id: int,
    wanted: Window,
) -> Reservation | None:
    reservation_id = str(uuid.uuid4())
    row = Reservation(
        id=reservation_id,
        charge_box_id=body.charge_box_id,
        connector_id=connector_id,
        any_connector=body.connector_id is None,
        user_id=user_id,
        id_tag=id_tag,
        starts_at=wanted.starts_at,
        ends_at=wanted.ends_at,
        status="pending",
        workflow_id=reservation_workflow_id(reservation_id),
    )
    try:
        async with ctx.sessions.begin() as db:
            db.add(row)
            await db.flush()
            await db.refresh(row)
            await record_status_event(db, row)
            add_audit(
                db,
                actor.id,
                "reservation.created",
                subject=reservation_id,
                source=actor.source,
                details={"charge_box_id": body.charge_box_id, "connector_id": connector_id},
            )
    except IntegrityError as exc:
        if getattr(exc.orig, "sqlstate", None) == EXCLUSION_VIOLATION:
            return None
        raise
    return row


async def _suggestions(
    ctx: ServiceContext,
    charge_box_id: str,
    connectors: Sequence[int],
    wanted: Window,
    now: datetime,
) -> list[SlotOut]:
    horizon = now + timedelta(seconds=ctx.settings.reservation_max_ahead_s)
    async with ctx.sessions() as db:
        rows = (
            await db.execute(
                select(Reservation.connector_id, Reservation.starts_at, Reservation.ends_at).where(
                    Reservation.charge_box_id == charge_box_id,
                    Reservation.connector_id.in_(list(connectors)),
                    Reservation.status.in_(LIVE_STATUSES),
                    Reservation.ends_at > now,
                )
            )
        ).all()
    busy: dict[int, list[Window]] = {c: [] for c in connectors}
    for connector_id, starts_at, ends_at in rows:
        if connector_id is not None:
            busy[connector_id].append(Window(starts_at, ends_at))
    slots = suggest_slots(
        busy, wanted, earliest=max(now, wanted.starts_at - timedelta(days=1)), latest=horizon
    )
    return [
        SlotOut(connector_id=s.connector_id, starts_at=s.starts_at, ends_at=s.ends_at)
        for s in slots
    ]


async def _start_workflow(ctx: ServiceContext, row: Reservation) -> None:
    settings = ctx.settings
    try:
        client = await ctx.temporal()
        await client.start_workflow(
            RESERVATION_WORKFLOW,
            ReservationInput(
                reservation_id=row.id,
                lead_s=settings.reservation_lead_s,
                no_show_s=settings.reservation_no_show_s,
                offline_retry_s=settings.reservation_offline_retry_s,
            ),
            id=row.workflow_id,
            task_queue=settings.temporal_task_queue,
        )
    except Exception as exc:
        log.exception("could not start the workflow of reservation %s", row.id)
        async with ctx.sessions.begin() as db:
            await transition(
                db,
                row.id,
                "failed",
                allowed_from=LIVE_STATUSES,
                reason="the reservation could not be scheduled; try again",
            )
        raise Unavailable("reservations cannot be scheduled right now; try again") from exc


# -- read -----------------------------------------------------------------------------------


async def list_mine(
    ctx: ServiceContext, user_id: str, *, status: str | None = None, limit: int = 100
) -> list[ReservationOut]:
    query = select(Reservation).where(Reservation.user_id == user_id)
    if status is not None:
        query = query.where(Reservation.status == status)
    query = query.order_by(Reservation.starts_at.desc()).limit(limit)
    async with ctx.sessions() as db:
        return [ReservationOut.of(r) for r in (await db.scalars(query)).all()]


async def get_mine(ctx: ServiceContext, user_id: str, reservation_id: str) -> ReservationOut:
    async with ctx.sessions() as db:
        row = await _owned(db, user_id, reservation_id)
    return ReservationOut.of(row)


async def _owned(db: AsyncSession, user_id: str, reservation_id: str) -> Reservation:
    row = await db.get(Reservation, reservation_id)
    if row is None or row.user_id != user_id:
        raise NotFound("reservation not found")
    return row


async def list_all(
    ctx: ServiceContext, filters: ReservationFilters
) -> list[OperatorReservationOut]:
    query = select(Reservation)
    if filters.charge_box_id is not None:
        query = query.where(Reservation.charge_box_id == filters.charge_box_id)
    if filters.user_id is not None:
        query = query.where(Reservation.user_id == filters.user_id)
    if filters.status is not None:
        query = query.where(Reservation.status == filters.status)
    if filters.starts_after is not None:
        query = query.where(Reservation.starts_at >= filters.starts_after)
    if filters.starts_before is not None:
        query = query.where(Reservation.starts_at < filters.starts_before)
    query = (
        query.order_by(Reservation.starts_at.desc(), Reservation.id)
        .limit(filters.limit)
        .offset(filters.offset)
    )
    async with ctx.sessions() as db:
        return [OperatorReservationOut.of(r) for r in (await db.scalars(query)).all()]


async def next_reservation(ctx: ServiceContext, user_id: str) -> ReservationOut | None:
    """The driver's next reservation still holding a connector (the dashboard's)."""
    now = datetime.now(UTC)
    async with ctx.sessions() as db:
        row = await db.scalar(
            select(Reservation)
            .where(
                Reservation.user_id == user_id,
                Reservation.status.in_(LIVE_STATUSES),
                Reservation.ends_at > now,
            )
            .order_by(Reservation.starts_at)
            .limit(1)
        )
    return ReservationOut.of(row) if row is not None else None


# -- cancel ---------------------------------------------------------------------------------


async def cancel_mine(
    ctx: ServiceContext, actor: Actor, user_id: str, reservation_id: str
) -> ReservationOut:
    async with ctx.sessions() as db:
        await _owned(db, user_id, reservation_id)
    return await _cancel(ctx, actor, reservation_id, "cancelled by the driver")


async def cancel(
    ctx: ServiceContext, actor: Actor, reservation_id: str, reason: str | None = None
) -> ReservationOut:
    """An operator's cancel (any driver's reservation)."""
    return await _cancel(ctx, actor, reservation_id, reason or "cancelled by an operator")


async def cancel_for_card(ctx: ServiceContext, id_tag: str, reason: str) -> list[str]:
    """End the live reservations of a card (and of its child cards); their ids."""
    async with ctx.sessions() as db:
        children = await db.scalars(select(EvCard.id_tag).where(EvCard.parent_id_tag == id_tag))
        tags = [id_tag, *children.all()]
        ids = list(
            (
                await db.scalars(
                    select(Reservation.id).where(
                        Reservation.id_tag.in_(tags), Reservation.status.in_(LIVE_STATUSES)
                    )
                )
            ).all()
        )
    system = Actor(id="system:card-unlinked", role="admin", source="service")
    cancelled = []
    for reservation_id in ids:
        try:
            await _cancel(ctx, system, reservation_id, reason)
            cancelled.append(reservation_id)
        except AlreadyEnded:
            continue  # it ended meanwhile
    return cancelled


async def _cancel(
    ctx: ServiceContext, actor: Actor, reservation_id: str, reason: str
) -> ReservationOut:
    async with ctx.sessions.begin() as db:
        row = await transition(
            db,
            reservation_id,
            "cancelled",
            allowed_from=LIVE_STATUSES,
            reason=reason,
            cancelled_by=actor.id,
        )
        if row is None:
            current = await db.get(Reservation, reservation_id)
            if current is None:
                raise NotFound("reservation not found")
            raise AlreadyEnded(f"the reservation has already ended ({current.status})")
        add_audit(
            db,
            actor.id,
            "reservation.cancelled",
            subject=reservation_id,
            source=actor.source,
            details={"reason": reason},
        )
    await _signal_cancel(ctx, row, reason)
    return ReservationOut.of(row)


async def _signal_cancel(ctx: ServiceContext, row: Reservation, reason: str) -> None:
    """Wake the workflow (it tells the charger); never fails the cancel, which is committed."""
    try:
        client = await ctx.temporal()
        await client.get_workflow_handle(row.workflow_id).signal(
            SIGNAL_RESERVATION_CANCEL,
            ReservationCancel(reason=reason),
            rpc_timeout=SIGNAL_TIMEOUT,
        )
    except Exception:
        log.warning(
            "reservation %s: cancel signal not delivered (the workflow re-reads the row)",
            row.id,
            exc_info=True,
        )


__all__ = [
    "AlreadyEnded",
    "CardBlocked",
    "NoCard",
    "OperatorReservationOut",
    "ReservationFilters",
    "ReservationIn",
    "ReservationOut",
    "SlotOut",
    "SlotTaken",
    "cancel",
    "cancel_for_card",
    "cancel_mine",
    "create",
    "get_mine",
    "list_all",
    "list_mine",
    "next_reservation",
]
