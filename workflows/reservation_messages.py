"""Names and message types of ReservationWorkflow, shared by the workflow, its activities, the
service layer and the gateway (which routes a StartTransaction to it through the outbox)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel

RESERVATION_WORKFLOW = "Reservation"
SIGNAL_RESERVATION_CANCEL = "reservation_cancel"
SIGNAL_RESERVATION_JOIN = "reservation_join"
QUERY_RESERVATION_STATUS = "reservation_status"


def reservation_workflow_id(reservation_id: str) -> str:
    return f"reservation:{reservation_id}"


class ReservationInput(BaseModel):
    """Everything else is read from the ``reservations`` row (the source of truth). The timers
    come from settings when the service starts the workflow; a start by the relay (a session
    joined after the workflow ended) uses the defaults, which no timer of its needs."""

    reservation_id: str
    lead_s: float = 300.0
    no_show_s: float = 900.0
    offline_retry_s: float = 30.0


class ReservationCancel(BaseModel):
    event_id: int = 0
    reason: str | None = None


class ReservationJoin(BaseModel):
    """A StartTransaction on the reserved connector (carrying the reservation id, or by the
    reserving card within the window), journaled by the gateway."""

    event_id: int = 0
    transaction_id: int
    session_workflow_id: str
    started_at: datetime | None = None
    by: str = "reservation_id"  # reservation_id | id_tag


class ReservationState(BaseModel):
    reservation_id: str
    status: str
    reason: str | None = None
    reserve_now_attempts: int = 0


__all__ = [
    "QUERY_RESERVATION_STATUS",
    "RESERVATION_WORKFLOW",
    "SIGNAL_RESERVATION_CANCEL",
    "SIGNAL_RESERVATION_JOIN",
    "ReservationCancel",
    "ReservationInput",
    "ReservationJoin",
    "ReservationState",
    "reservation_workflow_id",
]
