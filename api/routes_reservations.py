"""Reservations: drivers reserve, list and cancel their own (404 for anyone else's); operators
list every reservation and cancel any. The rules are in ``services/reservations.py``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.authz import CurrentUser, LiveOperator, LiveUser
from api.services import Services, actor_of
from services import reservations
from services.reservations import (
    OperatorReservationOut,
    ReservationFilters,
    ReservationIn,
    ReservationOut,
    SlotOut,
)

router = APIRouter(tags=["reservations"])

Status = Literal["pending", "confirmed", "used", "cancelled", "failed", "expired"]


class ErrorOut(BaseModel):
    error: str
    message: str
    issues: list[dict[str, Any]] | None = None


class SlotTakenOut(ErrorOut):
    suggested_slots: list[SlotOut] = Field(default_factory=list)


class CancelIn(BaseModel):
    reason: str | None = Field(default=None, max_length=300)


@router.post(
    "/api/v1/me/reservations",
    response_model=ReservationOut,
    status_code=201,
    summary="Reserve a connector",
    responses={
        404: {"model": ErrorOut, "description": "no such charger"},
        409: {
            "model": SlotTakenOut,
            "description": "SLOT_TAKEN (with up to two free slots nearby), NO_CARD or CARD_BLOCKED",
        },
        422: {"model": ErrorOut, "description": "the window or the connector is not valid"},
    },
)
async def reserve(body: ReservationIn, user: LiveUser, ctx: Services) -> ReservationOut:
    """Hold a connector (or any connector of the charger) from ``starts_at`` for
    ``duration_min`` minutes, with the driver's card (or the one named). The charger gets
    ``ReserveNow`` shortly before the start; follow ``status`` (``pending`` → ``confirmed``, or
    ``failed`` with a ``reason``)."""
    return await reservations.create(ctx, actor_of(user), user.user_id, body)


@router.get(
    "/api/v1/me/reservations",
    response_model=list[ReservationOut],
    summary="My reservations",
)
async def my_reservations(
    user: CurrentUser,
    ctx: Services,
    status: Annotated[Status | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[ReservationOut]:
    """Newest start first; ``reason`` says why one failed, expired or was cancelled."""
    return await reservations.list_mine(ctx, user.user_id, status=status, limit=limit)


@router.get(
    "/api/v1/me/reservations/{reservation_id}",
    response_model=ReservationOut,
    summary="One of my reservations",
    responses={404: {"model": ErrorOut, "description": "not found (or not yours)"}},
)
async def my_reservation(reservation_id: str, user: CurrentUser, ctx: Services) -> ReservationOut:
    return await reservations.get_mine(ctx, user.user_id, reservation_id)


@router.delete(
    "/api/v1/me/reservations/{reservation_id}",
    response_model=ReservationOut,
    summary="Cancel one of my reservations",
    responses={
        404: {"model": ErrorOut, "description": "not found (or not yours)"},
        409: {"model": ErrorOut, "description": "RESERVATION_ENDED: it already ended"},
    },
)
async def cancel_my_reservation(
    reservation_id: str, user: LiveUser, ctx: Services
) -> ReservationOut:
    """The slot is free at once; the charger gets ``CancelReservation`` if it held it."""
    return await reservations.cancel_mine(ctx, actor_of(user), user.user_id, reservation_id)


@router.get(
    "/api/v1/reservations",
    response_model=list[OperatorReservationOut],
    summary="Every reservation (operators)",
)
async def list_reservations(
    _: LiveOperator,
    ctx: Services,
    charge_box_id: Annotated[str | None, Query(max_length=255)] = None,
    user_id: Annotated[str | None, Query(max_length=64)] = None,
    status: Annotated[Status | None, Query()] = None,
    starts_after: Annotated[datetime | None, Query()] = None,
    starts_before: Annotated[datetime | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[OperatorReservationOut]:
    """Filter by charger, driver, status and start time; newest start first."""
    return await reservations.list_all(
        ctx,
        ReservationFilters(
            charge_box_id=charge_box_id,
            user_id=user_id,
            status=status,
            starts_after=starts_after,
            starts_before=starts_before,
            limit=limit,
            offset=offset,
        ),
    )


@router.post(
    "/api/v1/reservations/{reservation_id}/cancel",
    response_model=ReservationOut,
    summary="Cancel a reservation (operators)",
    responses={
        404: {"model": ErrorOut, "description": "no such reservation"},
        409: {"model": ErrorOut, "description": "RESERVATION_ENDED: it already ended"},
    },
)
async def cancel_reservation(
    reservation_id: str, operator: LiveOperator, ctx: Services, body: CancelIn | None = None
) -> ReservationOut:
    """The driver sees ``reason`` (default: "cancelled by an operator")."""
    reason = body.reason if body is not None else None
    return await reservations.cancel(ctx, actor_of(operator), reservation_id, reason)
