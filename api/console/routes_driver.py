"""Driver pages (``/console/driver``): the driver's portal, phone first.

Every page reads and writes through the driver API (``api_client.Api``, in-process) as the
signed-in driver — or, under an operator's impersonation, as the impersonated driver with the
API's read-only rule (its writes answer ``IMPERSONATION_READ_ONLY``, shown like any refusal).
Another driver's session or reservation is the API's 404, shown as the console's 404 page.

Live parts (the active session's kW and kWh, the meter curve) are fragments that htmx re-fetches
when the driver's SSE stream (``/api/v1/me/stream``) announces a change of that session.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from api.console.api_client import Api, ApiFailure
from api.console.web import SignedIn, api_for, page, redirect

router = APIRouter(prefix="/console/driver", include_in_schema=False)

# The browser's IANA time zone, written by driver.js (usage days, reservation times).
TZ_COOKIE = "polaris_tz"
ACTIVE_STATES = ("requested", "pre_authorized", "charging", "suspended", "stopping")
STOPPABLE_STATES = ("pre_authorized", "charging", "suspended")
LIVE_SESSION_TYPES = "session.started,session.updated,session.stopped,session.billed"
PAGE_SIZE = 20

# What a driver reads when the API refuses a start or a stop (docs/drivers.md lists the codes);
# the API's own message is shown beside it.
REFUSALS: dict[str, str] = {
    "NO_CARD": "You have no charging card linked to your account yet.",
    "CARD_BLOCKED": "Your card is blocked or deactivated.",
    "CARD_LOST": "This card was reported lost; it cannot charge any more.",
    "CARD_EXPIRED": "Your card has expired.",
    "CARD_IN_USE": "Your card is already charging somewhere else.",
    "ACCOUNT_BANNED": "Your account is banned.",
    "SESSION_REVOKED": "Your sign-in ended: sign in again.",
    "CHARGER_OFFLINE": "This charger is offline right now.",
    "CONNECTOR_BUSY": "This connector is in use.",
    "CONNECTOR_RESERVED": "This connector is reserved.",
    "CONNECTOR_FAULTED": "This connector reports a fault.",
    "CHARGER_REFUSED": "The charger refused.",
    "CHARGER_TIMEOUT": "The charger did not answer in time; try again.",
    "NOT_FOUND": "There is no such charger.",
    "VALIDATION_FAILED": "That connector does not exist on this charger.",
    "UNAVAILABLE": "The charging service cannot be reached; try again in a moment.",
    "SESSION_NOT_STARTED": "The charger has not started this session yet.",
    "IMPERSONATION_READ_ONLY": "Read-only: you are viewing as this driver.",
    "RATE_LIMITED": "Too many requests: wait a moment.",
}


def refusal_text(failure: ApiFailure) -> str:
    return REFUSALS.get(failure.code, "The request was refused.")


def part(value: str) -> str:
    """A path segment of an API URL (workflow ids hold ``:``, card ids anything)."""
    return quote(value, safe=":")


def driver_api(request: Request, user: SignedIn) -> Api:
    return api_for(request, user, acting=True)


def browser_zone(request: Request) -> str | None:
    name = request.cookies.get(TZ_COOKIE)
    if not name or len(name) > 64:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


def _local(value: Any, tz: str | None) -> str:
    """An API timestamp in the browser's zone (UTC when it is not known)."""
    if not value:
        return "—"
    moment = (
        value
        if isinstance(value, datetime)
        else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    )
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    zone = ZoneInfo(tz) if tz else UTC
    local = moment.astimezone(zone)
    return local.strftime("%Y-%m-%d %H:%M ") + (local.tzname() or "UTC")


def _context(request: Request, **values: Any) -> dict[str, Any]:
    tz = browser_zone(request)
    return {"tz": tz, "local": lambda v: _local(v, tz), "refusal_text": refusal_text, **values}


def last_power_kw(detail: dict[str, Any]) -> float | None:
    for point in reversed(detail.get("timeline") or []):
        if point.get("power_kw") is not None:
            return float(point["power_kw"])
    return None


# -- dashboard -----------------------------------------------------------------------------------


async def _active(api: Api) -> dict[str, Any] | None:
    """The active session with its timeline (for the newest power reading), or None."""
    dashboard = await api.get("/api/v1/me/dashboard")
    active = dashboard.get("active_session")
    if active is None:
        return None
    detail: dict[str, Any] = await api.get(f"/api/v1/me/sessions/{part(active['workflow_id'])}")
    return detail


@router.get("")
async def dashboard(request: Request, user: SignedIn) -> Response:
    api = driver_api(request, user)
    me = await api.get("/api/v1/me")
    data = await api.get("/api/v1/me/dashboard", tz=browser_zone(request))
    active = None
    if data.get("active_session"):
        active = await api.get(f"/api/v1/me/sessions/{part(data['active_session']['workflow_id'])}")
    usage = data["usage"]
    return page(
        request,
        "driver/dashboard.html",
        _context(
            request,
            title="My charging",
            me=me,
            active=active,
            power_kw=last_power_kw(active) if active else None,
            last_sessions=data["last_sessions"],
            next_reservation=data["next_reservation"],
            usage=usage,
            usage_points=[{"date": d["date"], "kwh": d["energy_wh"] / 1000} for d in usage["days"]],
        ),
    )


@router.get("/fragments/active")
async def active_fragment(request: Request, user: SignedIn) -> Response:
    active = await _active(driver_api(request, user))
    return page(
        request,
        "driver/_active.html",
        _context(request, active=active, power_kw=last_power_kw(active) if active else None),
    )


# -- find a charger, start -----------------------------------------------------------------------


async def _find_page(
    request: Request,
    user: SignedIn,
    *,
    lat: str | None,
    lon: str | None,
    radius_km: str | None,
    start_error: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    api = driver_api(request, user)
    form = {"lat": lat or "", "lon": lon or "", "radius_km": radius_km or "5"}
    chargers: list[dict[str, Any]] | None = None
    errors: dict[str, list[str]] = {}
    error: ApiFailure | None = None
    if lat or lon:
        try:
            chargers = await api.get(
                "/api/v1/chargers/nearby", lat=lat, lon=lon, radius_km=radius_km or None
            )
        except ApiFailure as failure:
            if failure.status >= 500 or failure.status == 401:
                raise
            error, errors = failure, failure.field_errors()
            status_code = failure.status
    return page(
        request,
        "driver/find.html",
        _context(
            request,
            title="Find a charger",
            form=form,
            errors=errors,
            error=error,
            chargers=chargers,
            start_error=start_error,
            request_id=str(uuid.uuid4()),
        ),
        status_code=status_code,
    )


@router.get("/chargers")
async def find(
    request: Request,
    user: SignedIn,
    lat: str | None = None,
    lon: str | None = None,
    radius_km: str | None = None,
) -> Response:
    return await _find_page(request, user, lat=lat, lon=lon, radius_km=radius_km)


@router.post("/start")
async def start(
    request: Request,
    user: SignedIn,
    charge_box_id: Annotated[str, Form()],
    connector_id: Annotated[int, Form()],
    client_request_id: Annotated[str, Form()],
    lat: Annotated[str, Form()] = "",
    lon: Annotated[str, Form()] = "",
    radius_km: Annotated[str, Form()] = "",
) -> Response:
    """One press of "Start": the form's request id makes a double submit the same session."""
    api = driver_api(request, user)
    try:
        started = await api.post(
            "/api/v1/me/sessions",
            json={
                "charge_box_id": charge_box_id,
                "connector_id": connector_id,
                "client_request_id": client_request_id,
            },
        )
    except ApiFailure as failure:
        if failure.status == 401:
            raise
        return await _find_page(
            request,
            user,
            lat=lat,
            lon=lon,
            radius_km=radius_km,
            start_error={
                "charge_box_id": charge_box_id,
                "connector_id": connector_id,
                "failure": failure,
            },
            status_code=failure.status,
        )
    return redirect(f"/console/driver/sessions/{part(started['workflow_id'])}", request)


# -- sessions ------------------------------------------------------------------------------------


@router.get("/sessions")
async def sessions(request: Request, user: SignedIn, page_no: int = 1) -> Response:
    page_no = max(1, page_no)
    rows = await driver_api(request, user).get(
        "/api/v1/me/sessions", limit=PAGE_SIZE + 1, offset=(page_no - 1) * PAGE_SIZE
    )
    return page(
        request,
        "driver/sessions.html",
        _context(
            request,
            title="My sessions",
            sessions=rows[:PAGE_SIZE],
            page_no=page_no,
            has_more=len(rows) > PAGE_SIZE,
        ),
    )


async def _session(request: Request, user: SignedIn, workflow_id: str) -> dict[str, Any]:
    detail: dict[str, Any] = await driver_api(request, user).get(
        f"/api/v1/me/sessions/{part(workflow_id)}"
    )
    return detail


def _session_context(request: Request, detail: dict[str, Any], **more: Any) -> dict[str, Any]:
    return _context(
        request,
        title=f"Session at {detail['charge_box_id']}",
        s=detail,
        power_kw=last_power_kw(detail),
        active=detail["state"] in ACTIVE_STATES,
        stoppable=detail["state"] in STOPPABLE_STATES,
        billed=detail["state"] in ("billed", "closed") and detail.get("transaction_id"),
        live_types=LIVE_SESSION_TYPES,
        **more,
    )


@router.get("/sessions/{workflow_id}")
async def session_page(request: Request, user: SignedIn, workflow_id: str) -> Response:
    detail = await _session(request, user, workflow_id)
    return page(request, "driver/session.html", _session_context(request, detail))


@router.get("/sessions/{workflow_id}/live")
async def session_fragment(request: Request, user: SignedIn, workflow_id: str) -> Response:
    detail = await _session(request, user, workflow_id)
    return page(request, "driver/_session_live.html", _session_context(request, detail))


@router.get("/sessions/{workflow_id}/meter.json")
async def session_meter(request: Request, user: SignedIn, workflow_id: str) -> JSONResponse:
    """The meter curve for uPlot: ``[{t: epoch s, kwh, kw}]``."""
    meter = await driver_api(request, user).get(f"/api/v1/me/sessions/{part(workflow_id)}/meter")
    points = [
        {
            "t": datetime.fromisoformat(p["at"].replace("Z", "+00:00")).timestamp(),
            "kwh": p["energy_wh"] / 1000,
            "kw": p["power_kw"],
        }
        for p in meter["points"]
    ]
    return JSONResponse(points, headers={"cache-control": "no-store"})


@router.post("/sessions/{workflow_id}/stop")
async def stop(request: Request, user: SignedIn, workflow_id: str) -> Response:
    try:
        await driver_api(request, user).post(f"/api/v1/me/sessions/{part(workflow_id)}/stop")
    except ApiFailure as failure:
        if failure.status in (401, 404):
            raise
        detail = await _session(request, user, workflow_id)
        return page(
            request,
            "driver/session.html",
            _session_context(request, detail, stop_error=failure),
            status_code=failure.status,
        )
    return redirect(f"/console/driver/sessions/{part(workflow_id)}", request)


# -- cards ---------------------------------------------------------------------------------------


async def _cards_page(
    request: Request,
    user: SignedIn,
    *,
    failure: ApiFailure | None = None,
    failed_tag: str | None = None,
    reported: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    cards = await driver_api(request, user).get("/api/v1/me/cards")
    return page(
        request,
        "driver/cards.html",
        _context(
            request,
            title="My cards",
            cards=cards,
            error=failure,
            failed_tag=failed_tag,
            reported=reported,
        ),
        status_code=status_code,
    )


@router.get("/cards")
async def cards(request: Request, user: SignedIn) -> Response:
    return await _cards_page(request, user)


@router.post("/cards/{id_tag}/report-lost")
async def report_lost(request: Request, user: SignedIn, id_tag: str) -> Response:
    try:
        reported = await driver_api(request, user).post(
            f"/api/v1/me/cards/{part(id_tag)}/report-lost"
        )
    except ApiFailure as failure:
        if failure.status in (401, 404):
            raise
        return await _cards_page(
            request, user, failure=failure, failed_tag=id_tag, status_code=failure.status
        )
    return await _cards_page(request, user, reported=reported)


# -- reservations --------------------------------------------------------------------------------


def _starts_at(value: str, tz: str | None) -> str:
    """A ``datetime-local`` value (no zone) in the browser's zone, as ISO 8601 with an offset.
    Anything else goes to the API as typed, for its own message."""
    try:
        naive = datetime.fromisoformat(value)
    except ValueError:
        return value
    if naive.tzinfo is None:
        naive = naive.replace(tzinfo=ZoneInfo(tz) if tz else UTC)
    return naive.isoformat()


def _default_start(tz: str | None) -> str:
    soon = datetime.now(ZoneInfo(tz) if tz else UTC) + timedelta(hours=1)
    return soon.replace(minute=0, second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M")


async def _reservations_page(
    request: Request,
    user: SignedIn,
    *,
    form: dict[str, Any] | None = None,
    failure: ApiFailure | None = None,
    cancel_failure: tuple[str, ApiFailure] | None = None,
    status_code: int = 200,
) -> Response:
    tz = browser_zone(request)
    rows = await driver_api(request, user).get("/api/v1/me/reservations", limit=100)
    errors = failure.field_errors() if failure else {}
    if failure and failure.code == "SLOT_TAKEN":
        errors.setdefault("starts_at", []).append(failure.message)
    suggestions = (failure.body.get("suggested_slots") or []) if failure else []
    return page(
        request,
        "driver/reservations.html",
        _context(
            request,
            title="My reservations",
            reservations=rows,
            form=form or {"starts_at": _default_start(tz), "duration_min": "30"},
            errors=errors,
            error=failure,
            suggestions=suggestions,
            cancel_failure=cancel_failure,
        ),
        status_code=status_code,
    )


@router.get("/reservations")
async def reservations(request: Request, user: SignedIn) -> Response:
    return await _reservations_page(request, user)


@router.post("/reservations")
async def reserve(
    request: Request,
    user: SignedIn,
    charge_box_id: Annotated[str, Form()] = "",
    connector_id: Annotated[str, Form()] = "",
    starts_at: Annotated[str, Form()] = "",
    duration_min: Annotated[str, Form()] = "",
    exact_starts_at: Annotated[str, Form()] = "",
) -> Response:
    """Create; a suggested slot's button sends its exact start (``exact_starts_at``)."""
    form = {
        "charge_box_id": charge_box_id,
        "connector_id": connector_id,
        "starts_at": starts_at,
        "duration_min": duration_min,
    }
    body: dict[str, Any] = {
        "charge_box_id": charge_box_id.strip(),
        "starts_at": exact_starts_at or _starts_at(starts_at, browser_zone(request)),
        "duration_min": duration_min.strip(),
    }
    if connector_id.strip():
        body["connector_id"] = connector_id.strip()
    try:
        await driver_api(request, user).post("/api/v1/me/reservations", json=body)
    except ApiFailure as failure:
        if failure.status == 401:
            raise
        return await _reservations_page(
            request, user, form=form, failure=failure, status_code=failure.status
        )
    return redirect("/console/driver/reservations", request)


@router.post("/reservations/{reservation_id}/cancel")
async def cancel_reservation(request: Request, user: SignedIn, reservation_id: str) -> Response:
    try:
        await driver_api(request, user).delete(f"/api/v1/me/reservations/{part(reservation_id)}")
    except ApiFailure as failure:
        if failure.status in (401, 404):
            raise
        return await _reservations_page(
            request,
            user,
            cancel_failure=(reservation_id, failure),
            status_code=failure.status,
        )
    return redirect("/console/driver/reservations", request)


# -- billing -------------------------------------------------------------------------------------


async def _optional(api: Api, path: str, **params: Any) -> tuple[Any, ApiFailure | None]:
    """A billing read that may be missing (no subscription: 404) or down (503): shown, not fatal."""
    try:
        return await api.get(path, **params), None
    except ApiFailure as failure:
        if failure.status == 401:
            raise
        return None, failure


@router.get("/billing")
async def billing(request: Request, user: SignedIn, page_no: int = 1) -> Response:
    api = driver_api(request, user)
    invoices, invoices_error = await _optional(
        api, "/api/v1/me/billing/invoices", page=max(1, page_no), per_page=20
    )
    usage, usage_error = await _optional(api, "/api/v1/me/billing/usage")
    wallets, wallets_error = await _optional(api, "/api/v1/me/billing/wallets")
    return page(
        request,
        "driver/billing.html",
        _context(
            request,
            title="Billing",
            invoices=invoices,
            invoices_error=invoices_error,
            usage=usage,
            usage_error=usage_error,
            wallets=wallets,
            wallets_error=wallets_error,
            page_no=max(1, page_no),
        ),
    )


@router.get("/billing/invoices/{lago_id}")
async def invoice(request: Request, user: SignedIn, lago_id: str) -> Response:
    detail = await driver_api(request, user).get(f"/api/v1/me/billing/invoices/{part(lago_id)}")
    return page(
        request,
        "driver/invoice.html",
        _context(request, title=f"Invoice {detail['number']}", invoice=detail),
    )


@router.get("/billing/invoices/{lago_id}/pdf")
async def invoice_pdf(request: Request, user: SignedIn, lago_id: str) -> Response:
    """To the PDF when Lago has it; else a page that says it is being generated."""
    pdf = await driver_api(request, user).get(f"/api/v1/me/billing/invoices/{part(lago_id)}/pdf")
    if pdf.get("status") == "ready" and pdf.get("url"):
        return RedirectResponse(pdf["url"], status_code=303)
    return page(
        request,
        "driver/pdf_pending.html",
        _context(request, title="Invoice PDF", lago_id=lago_id),
        status_code=202,
    )


@router.get("/billing/portal")
async def portal(request: Request, user: SignedIn) -> Response:
    """Lago's customer portal: a signed link, fetched only when the driver asks for it."""
    answer = await driver_api(request, user).get("/api/v1/me/billing/portal")
    return RedirectResponse(answer["url"], status_code=303)


@router.get("/billing/wallets/{wallet_id}")
async def wallet(request: Request, user: SignedIn, wallet_id: str) -> Response:
    rows = await driver_api(request, user).get(
        f"/api/v1/me/billing/wallets/{part(wallet_id)}/transactions"
    )
    return page(
        request,
        "driver/wallet.html",
        _context(request, title="Wallet", transactions=rows, wallet_id=wallet_id),
    )


# -- notifications -------------------------------------------------------------------------------


@router.get("/notifications")
async def notifications(
    request: Request,
    user: SignedIn,
    archived: bool = False,
    unread: bool = False,
    before_id: int | None = None,
) -> Response:
    api = driver_api(request, user)
    listing = await api.get(
        "/api/v1/me/notifications",
        archived=str(archived).lower(),
        unread="true" if unread else None,
        before_id=before_id,
        limit=50,
    )
    count = await api.get("/api/v1/me/notifications/unread-count")
    return page(
        request,
        "driver/notifications.html",
        _context(
            request,
            title="Notifications",
            items=listing["notifications"],
            next_before_id=listing["next_before_id"],
            archived=archived,
            unread=unread,
            unread_count=count["unread"],
        ),
    )


async def _mark(request: Request, user: SignedIn, path: str, back: str) -> Response:
    try:
        await driver_api(request, user).post(path)
    except ApiFailure as failure:
        if failure.status in (401, 404):
            raise
        return page(
            request,
            "error.html",
            {"title": "Refused", "message": failure.message, "code": failure.code},
            status_code=failure.status,
        )
    return redirect(back, request)


@router.post("/notifications/{notification_id}/read")
async def notification_read(request: Request, user: SignedIn, notification_id: int) -> Response:
    return await _mark(
        request,
        user,
        f"/api/v1/me/notifications/{notification_id}/read",
        "/console/driver/notifications",
    )


@router.post("/notifications/{notification_id}/archive")
async def notification_archive(request: Request, user: SignedIn, notification_id: int) -> Response:
    return await _mark(
        request,
        user,
        f"/api/v1/me/notifications/{notification_id}/archive",
        "/console/driver/notifications",
    )


@router.post("/notifications/read-all")
async def notifications_read_all(request: Request, user: SignedIn) -> Response:
    return await _mark(
        request, user, "/api/v1/me/notifications/read-all", "/console/driver/notifications"
    )
