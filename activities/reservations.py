"""Activities of ReservationWorkflow: read the row (and the charger's gateway), and move it
through its statuses (``db/reservations.py``: guarded updates with their events)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import select
from temporalio import activity

from db.engine import SessionFactory
from db.models import Charger
from db.reservation_models import Reservation
from db.reservations import transition

ACTIVITY_LOAD_RESERVATION = "reservation_load"
ACTIVITY_MOVE_RESERVATION = "reservation_move"


class ReservationRef(BaseModel):
    reservation_id: str


class ReservationFacts(BaseModel):
    found: bool
    reservation_id: str = ""
    status: str = ""
    charge_box_id: str = ""
    connector_id: int | None = None
    id_tag: str = ""
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    ocpp_reservation_id: int = 0
    sent_to_charger: bool = False
    # The gateway queue holding the charger's socket; None when it is not connected.
    task_queue: str | None = None


class MoveInput(BaseModel):
    reservation_id: str
    to: str  # confirmed | failed | expired | used
    reason: str | None = None
    session_workflow_id: str | None = None
    transaction_id: int | None = None


class MoveResult(BaseModel):
    moved: bool
    status: str  # the row's status after the call
    sent_to_charger: bool


# Which statuses each move may leave. "used" also from expired: a StartTransaction carrying the
# reservation id proves the charger still held it (its clock, not ours, decided).
ALLOWED_FROM: dict[str, tuple[str, ...]] = {
    "confirmed": ("pending",),
    "failed": ("pending", "confirmed"),
    "expired": ("pending", "confirmed"),
    "used": ("pending", "confirmed", "expired"),
}


class ReservationActivities:
    def __init__(self, session_factory: SessionFactory) -> None:
        self._sessions = session_factory

    @activity.defn(name=ACTIVITY_LOAD_RESERVATION)
    async def load(self, input: ReservationRef) -> ReservationFacts:
        async with self._sessions() as db:
            r = await db.get(Reservation, input.reservation_id)
            if r is None:
                return ReservationFacts(found=False)
            charger = (
                await db.execute(
                    select(Charger.connected, Charger.gateway_instance).where(
                        Charger.charge_box_id == r.charge_box_id
                    )
                )
            ).first()
        queue = (
            f"gateway-{charger.gateway_instance}"
            if charger is not None and charger.connected and charger.gateway_instance
            else None
        )
        return ReservationFacts(
            found=True,
            reservation_id=r.id,
            status=r.status,
            charge_box_id=r.charge_box_id,
            connector_id=r.connector_id,
            id_tag=r.id_tag,
            starts_at=r.starts_at,
            ends_at=r.ends_at,
            ocpp_reservation_id=r.ocpp_reservation_id,
            sent_to_charger=r.sent_to_charger,
            task_queue=queue,
        )

    @activity.defn(name=ACTIVITY_MOVE_RESERVATION)
    async def move(self, input: MoveInput) -> MoveResult:
        """Idempotent: a retried move finds the row already moved (``moved`` False) and
        answers its status."""
        values: dict[str, object] = {}
        if input.to == "confirmed":
            values["sent_to_charger"] = True
        if input.reason is not None:
            values["reason"] = input.reason
        if input.to == "used":
            values["session_workflow_id"] = input.session_workflow_id
            values["transaction_id"] = input.transaction_id
        async with self._sessions.begin() as db:
            row = await transition(
                db, input.reservation_id, input.to, allowed_from=ALLOWED_FROM[input.to], **values
            )
            if row is not None:
                return MoveResult(
                    moved=True, status=row.status, sent_to_charger=row.sent_to_charger
                )
            current = await db.get(Reservation, input.reservation_id)
        if current is None:
            return MoveResult(moved=False, status="unknown", sent_to_charger=False)
        return MoveResult(
            moved=False, status=current.status, sent_to_charger=current.sent_to_charger
        )


__all__ = [
    "ACTIVITY_LOAD_RESERVATION",
    "ACTIVITY_MOVE_RESERVATION",
    "MoveInput",
    "MoveResult",
    "ReservationActivities",
    "ReservationFacts",
    "ReservationRef",
]
