"""Drivers: chargers near me or at a site (free or not, plugs, power, price), start and stop a
charge from the phone, one session in detail with its meter timeline, and the dashboard.

Every route needs a signed-in user; the session routes are the caller's own (another driver's
session is a 404). Writes re-check the session with the auth service (a ban takes effect at
once, answered ``ACCOUNT_BANNED``) and are refused under impersonation. See docs/drivers.md.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from activities.auth_client import AuthServiceError
from api.authz import CurrentUser, Principal, auth_client_of, require_live_session
from api.deps import State
from api.errors import ApiError
from api.services import Services, actor_of
from domain.availability import Availability
from services import availability, driver_sessions, driver_views
from services.driver_sessions import CLIENT_REQUEST_ID_PATTERN

router = APIRouter(prefix="/api/v1", tags=["drivers"])


async def live_driver(principal: CurrentUser, state: State) -> Principal:
    """:func:`require_live_session`, telling a banned account from an ended session."""
    try:
        return await require_live_session(principal, state)
    except ApiError as exc:
        if exc.code != "SESSION_REVOKED":
            raise
        try:
            user = await auth_client_of(state).get_user(principal.user_id)
        except AuthServiceError:
            raise exc from None
        if user.get("banned"):
            raise ApiError(403, "ACCOUNT_BANNED", "your account is banned") from None
        raise


LiveDriver = Annotated[Principal, Depends(live_driver)]


# -- chargers ------------------------------------------------------------------------------------


class SiteOut(BaseModel):
    id: int
    name: str
    address: str | None
    latitude: float | None
    longitude: float | None
    timezone: str


class ConnectorOut(BaseModel):
    connector_id: int
    availability: Availability
    connector_type: str | None = Field(description="Type2, CCS2, CHAdeMO, ... (None: not set)")
    max_power_w: int


class TariffOut(BaseModel):
    code: str
    version: int
    valid_from: datetime
    currency: str
    price_per_kwh_minor: int
    price_per_minute_minor: int
    price_per_session_minor: int
    session_fee_min_energy_wh: int
    session_fee_min_duration_s: int
    idle_grace_minutes: int = 0
    idle_price_per_minute_minor: int = 0
    idle_fee_cap_minor: int | None = None
    words: str = Field(
        description='e.g. "€0.30 per kWh + €0.50 per session; idle fee €0.40 per minute after '
        '15 minutes, at most €12.00"'
    )


class DriverChargerOut(BaseModel):
    charge_box_id: str
    label: str | None
    site: SiteOut | None
    connectors: list[ConnectorOut]
    tariff: TariffOut | None
    distance_km: float | None = None


@router.get(
    "/chargers/nearby",
    response_model=list[DriverChargerOut],
    summary="Chargers near a position, nearest first",
)
async def chargers_nearby(
    _: CurrentUser,
    ctx: Services,
    lat: Annotated[float, Query(ge=-90, le=90)],
    lon: Annotated[float, Query(ge=-180, le=180)],
    radius_km: Annotated[float, Query(gt=0, le=availability.MAX_RADIUS_KM)] = 5.0,
    limit: Annotated[int, Query(ge=1, le=availability.MAX_NEARBY)] = 50,
) -> list[dict[str, Any]]:
    return await availability.nearby_chargers(ctx, lat, lon, radius_km, limit=limit)


@router.get(
    "/sites/{site_id}/chargers",
    response_model=list[DriverChargerOut],
    summary="The chargers of a site, as drivers see them",
)
async def chargers_at_site(site_id: int, _: CurrentUser, ctx: Services) -> list[dict[str, Any]]:
    return await availability.site_chargers(ctx, site_id)


# -- start and stop ------------------------------------------------------------------------------


class StartIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    charge_box_id: str = Field(min_length=1, max_length=255)
    connector_id: int = Field(ge=1, le=64)
    client_request_id: str = Field(
        pattern=CLIENT_REQUEST_ID_PATTERN,
        description="chosen by the app, once per tap of 'Start': a retry with the same id "
        "answers the same session (8-64 of A-Z a-z 0-9 . _ : -; a UUID is fine)",
    )


class StartOut(BaseModel):
    workflow_id: str
    state: str
    remote_start: str | None = Field(description="the charger's answer: Accepted (or pending)")
    replayed: bool = Field(description="an earlier request with this client_request_id")
    answered: bool = Field(description="false: still waiting for the charger (202)")


@router.post(
    "/me/sessions",
    response_model=StartOut,
    summary="Start charging on a charger's connector with my card",
    responses={202: {"description": "requested; the charger has not answered yet"}},
)
async def start_my_session(
    body: StartIn, user: LiveDriver, ctx: Services, response: Response
) -> dict[str, Any]:
    result = await driver_sessions.start_session(
        ctx,
        actor_of(user),
        user.user_id,
        charge_box_id=body.charge_box_id,
        connector_id=body.connector_id,
        client_request_id=body.client_request_id,
    )
    if not result["answered"]:
        response.status_code = 202
    return result


class StopOut(BaseModel):
    workflow_id: str
    state: str
    accepted: bool
    message: str | None = None


@router.post(
    "/me/sessions/{workflow_id}/stop",
    response_model=StopOut,
    summary="Stop my running session (a repeated stop answers the same)",
)
async def stop_my_session(workflow_id: str, user: LiveDriver, ctx: Services) -> dict[str, Any]:
    return await driver_sessions.stop_session(ctx, actor_of(user), user.user_id, workflow_id)


# -- reading -------------------------------------------------------------------------------------


class PointOut(BaseModel):
    at: datetime
    energy_wh: int = Field(description="since the session started")
    power_w: int | None
    power_kw: float | None


class PriceOut(BaseModel):
    currency: str
    energy_minor: int
    time_minor: int
    session_minor: int
    total_minor: int


class DriverSessionOut(BaseModel):
    workflow_id: str
    state: str
    charge_box_id: str
    connector_id: int | None
    id_tag: str | None
    transaction_id: int | None
    energy_wh: int
    cost_minor: int
    currency: str | None
    started_at: datetime | None
    stopped_at: datetime | None
    end_reason: str | None
    flags: list[str] = Field(
        default_factory=list, description="why the session needed a closer look (see sessions)"
    )


class IdleFeeOut(BaseModel):
    """What the car's staying plugged in after the stop cost (the tariff's idle fee)."""

    stopped_at: datetime
    ended_at: datetime
    end_reason: str = Field(
        description="available | new_session | unavailable | cap_reached | watch_expired | "
        "charger_offline | unplugged_before_stop"
    )
    idle_s: int
    billed_s: int
    amount_minor: int
    currency: str
    capped: bool
    invoice_number: str | None
    billed: bool


class SessionDetailOut(DriverSessionOut):
    duration_s: int
    average_power_w: int | None
    peak_power_w: int | None
    tariff: TariffOut | None
    estimated_cost: PriceOut | None
    idle_fee: IdleFeeOut | None = None
    timeline: list[PointOut] | None = None


class MeterOut(BaseModel):
    workflow_id: str
    points: list[PointOut]
    peak_power_w: int | None


@router.get(
    "/me/sessions/{workflow_id}",
    response_model=SessionDetailOut,
    summary="One of my sessions: figures, tariff, estimated cost, meter timeline",
)
async def my_session(workflow_id: str, user: CurrentUser, ctx: Services) -> dict[str, Any]:
    return await driver_views.session_detail(ctx, user.user_id, workflow_id)


@router.get(
    "/me/sessions/{workflow_id}/meter",
    response_model=MeterOut,
    summary="My session's meter timeline (Wh and kW over time)",
)
async def my_session_meter(workflow_id: str, user: CurrentUser, ctx: Services) -> dict[str, Any]:
    return await driver_views.session_meter(ctx, user.user_id, workflow_id)


class DayOut(BaseModel):
    date: date
    sessions: int
    energy_wh: int
    cost_minor: dict[str, int] = Field(description="per currency")


class UsageOut(BaseModel):
    period: Literal["current", "previous", "year"]
    timezone: str
    from_: date = Field(alias="from")
    to: date
    totals: dict[str, Any]
    days: list[DayOut]

    model_config = ConfigDict(populate_by_name=True)


class ReservationOut(BaseModel):
    id: Any
    charge_box_id: str
    connector_id: int | None
    starts_at: datetime
    ends_at: datetime
    status: str


class DashboardOut(BaseModel):
    active_session: SessionDetailOut | None
    last_sessions: list[DriverSessionOut]
    next_reservation: ReservationOut | None
    usage: UsageOut


@router.get(
    "/me/dashboard",
    response_model=DashboardOut,
    response_model_by_alias=True,
    summary="My active session, last five sessions, next reservation and usage per day",
)
async def my_dashboard(
    user: CurrentUser,
    ctx: Services,
    period: Literal["current", "previous", "year"] = "current",
    tz: Annotated[
        str | None, Query(max_length=64, description="IANA time zone of the usage days")
    ] = None,
) -> dict[str, Any]:
    return await driver_views.dashboard(ctx, user.user_id, period, tz)
