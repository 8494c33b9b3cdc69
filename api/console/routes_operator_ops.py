"""Operator pages, second part: sites and tariffs, cards and users (link saga, report lost, ban,
impersonation), reservations, invoices and Lago webhooks (replay, breaker), firmware campaigns.

As in :mod:`api.console.routes_operator`, every page reads and writes through the API
(``api_client.Api``, in-process) as the signed-in operator; a refused form is shown again with the
API's message above it and each issue next to the field it names.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.console import session as console_session
from api.console.api_client import ApiFailure
from api.console.web import Operator, api_for, form_failure, page, redirect
from api.deps import AppState

router = APIRouter(prefix="/console/operator", include_in_schema=False)


def _q(value: str) -> str:
    return quote(value, safe="")


async def _form(request: Request) -> dict[str, str]:
    form = await request.form()
    return {k: str(v).strip() for k, v in form.items() if k != "csrf"}


def _number(value: str) -> int | float | str:
    """A number when it reads as one; otherwise the text goes to the API, whose message says
    why it is refused."""
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return value


def _iso(value: str) -> str:
    """``<input type="datetime-local">`` gives ``2025-01-31T10:00``: UTC is meant."""
    if len(value) == 16 and value[10] == "T":
        return f"{value}:00+00:00"
    return value


# -- sites -------------------------------------------------------------------------------------

SITE_FIELDS = ("name", "address", "latitude", "longitude", "timezone")


def _site_body(values: dict[str, str], *, patch: bool) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name in SITE_FIELDS:
        value = values.get(name, "")
        if name in ("latitude", "longitude"):
            if value:
                body[name] = _number(value)
            elif patch:
                body[name] = None  # cleared
        elif value or (patch and name == "address"):
            body[name] = value or None
    return body


@router.get("/sites")
async def sites_list(request: Request, user: Operator) -> Response:
    sites = await api_for(request, user).get("/api/v1/sites")
    return page(request, "operator/sites.html", {"title": "Sites", "sites": sites})


@router.post("/sites")
async def site_add(request: Request, user: Operator) -> Response:
    values = await _form(request)
    api = api_for(request, user)
    try:
        created = await api.post("/api/v1/sites", json=_site_body(values, patch=False))
    except ApiFailure as failure:
        sites = await api.get("/api/v1/sites")
        context = {"title": "Sites", "sites": sites, "form": values, **form_failure(failure)}
        return page(request, "operator/sites.html", context, status_code=failure.status)
    return redirect(f"/console/operator/sites/{created['id']}", request)


@router.get("/sites/{site}")
async def site_detail(request: Request, user: Operator, site: str) -> Response:
    found = await api_for(request, user).get(f"/api/v1/sites/{_q(site)}")
    return page(
        request,
        "operator/site.html",
        {"title": f"Site {found['name']}", "site": found, "form": found},
    )


@router.post("/sites/{site}")
async def site_edit(request: Request, user: Operator, site: str) -> Response:
    values = await _form(request)
    api = api_for(request, user)
    try:
        await api.patch(f"/api/v1/sites/{_q(site)}", json=_site_body(values, patch=True))
    except ApiFailure as failure:
        found = await api.get(f"/api/v1/sites/{_q(site)}")
        context = {"title": f"Site {found['name']}", "site": found, "form": values}
        context.update(form_failure(failure))
        return page(request, "operator/site.html", context, status_code=failure.status)
    return redirect(f"/console/operator/sites/{_q(site)}?saved=1", request)


# -- tariffs -----------------------------------------------------------------------------------

TERMS = (
    "price_per_kwh_minor",
    "price_per_minute_minor",
    "price_per_session_minor",
    "session_fee_min_energy_wh",
    "session_fee_min_duration_s",
)


@router.get("/tariffs")
async def tariffs_list(request: Request, user: Operator) -> Response:
    tariffs = await api_for(request, user).get("/api/v1/tariffs")
    return page(request, "operator/tariffs.html", {"title": "Tariffs", "tariffs": tariffs})


@router.post("/tariffs")
async def tariff_add(request: Request, user: Operator) -> Response:
    values = await _form(request)
    body: dict[str, Any] = {
        "code": values.get("code", ""),
        "currency": values.get("currency", ""),
        "is_default": values.get("is_default") == "on",
    }
    for name in TERMS:
        if values.get(name):
            body[name] = _number(values[name])
    api = api_for(request, user)
    try:
        created = await api.post("/api/v1/tariffs", json=body)
    except ApiFailure as failure:
        tariffs = await api.get("/api/v1/tariffs")
        context = {"title": "Tariffs", "tariffs": tariffs, "form": values}
        context.update(form_failure(failure))
        return page(request, "operator/tariffs.html", context, status_code=failure.status)
    return redirect(f"/console/operator/tariffs/{_q(created['code'])}", request)


@router.get("/tariffs/{code}")
async def tariff_detail(request: Request, user: Operator, code: str) -> Response:
    tariff = await api_for(request, user).get(f"/api/v1/tariffs/{_q(code)}")
    return page(
        request,
        "operator/tariff.html",
        {
            "title": f"Tariff {tariff['code']}",
            "tariff": tariff,
            # The terms in force, to start from (valid_from: now, unless given).
            "form": {k: v for k, v in (tariff.get("current") or {}).items() if k in TERMS},
        },
    )


@router.post("/tariffs/{code}/versions")
async def tariff_version_add(request: Request, user: Operator, code: str) -> Response:
    values = await _form(request)
    body: dict[str, Any] = {name: _number(values[name]) for name in TERMS if values.get(name)}
    if values.get("valid_from"):
        body["valid_from"] = _iso(values["valid_from"])
    api = api_for(request, user)
    try:
        await api.post(f"/api/v1/tariffs/{_q(code)}/versions", json=body)
    except ApiFailure as failure:
        tariff = await api.get(f"/api/v1/tariffs/{_q(code)}")
        context = {"title": f"Tariff {tariff['code']}", "tariff": tariff, "form": values}
        context.update(form_failure(failure))
        return page(request, "operator/tariff.html", context, status_code=failure.status)
    return redirect(f"/console/operator/tariffs/{_q(code)}", request)


# -- cards -------------------------------------------------------------------------------------

# The card-link saga's steps, in order (workflows/card_link.py).
LINK_STEPS = ("prepare", "lago_customer", "lago_subscription", "auth_user", "mapping", "invite")


@router.get("/cards")
async def cards_list(request: Request, user: Operator, q: str = "") -> Response:
    context: dict[str, Any] = {"title": "Cards", "q": q}
    try:
        context["cards"] = await api_for(request, user).get("/api/v1/cards", q=q, limit=200)
    except ApiFailure as failure:
        if failure.status != 422:
            raise
        context.update({"cards": [], **form_failure(failure)})
        context["errors"] = {"q": context["errors"].get("q", [failure.message])}
    return page(request, "operator/cards.html", context)


@router.post("/cards")
async def card_add(request: Request, user: Operator) -> Response:
    values = await _form(request)
    body: dict[str, Any] = {"id_tag": values.get("id_tag", "")}
    if values.get("label"):
        body["label"] = values["label"]
    api = api_for(request, user)
    try:
        created = await api.post("/api/v1/cards", json=body)
    except ApiFailure as failure:
        cards = await api.get("/api/v1/cards", limit=200)
        context = {"title": "Cards", "q": "", "cards": cards, "form": values}
        context.update(form_failure(failure))
        return page(request, "operator/cards.html", context, status_code=failure.status)
    return redirect(f"/console/operator/cards/{_q(created['id_tag'])}", request)


async def _card_context(request: Request, user: Operator, id_tag: str) -> dict[str, Any]:
    api = api_for(request, user)
    card = await api.get(f"/api/v1/cards/{_q(id_tag)}")
    return {"title": f"Card {card['id_tag']}", "card": card, "steps": LINK_STEPS}


@router.get("/cards/{id_tag}")
async def card_detail(request: Request, user: Operator, id_tag: str) -> Response:
    context = await _card_context(request, user, id_tag)
    context["link"] = await _link_progress(request, user, id_tag)
    return page(request, "operator/card.html", context)


async def _link_progress(request: Request, user: Operator, id_tag: str) -> dict[str, Any] | None:
    try:
        answer: dict[str, Any] = await api_for(request, user).get(
            f"/api/v1/cards/{_q(id_tag)}/link"
        )
    except ApiFailure as failure:
        if failure.status in (404, 503):
            return None
        raise
    return answer


@router.get("/cards/{id_tag}/link")
async def card_link_progress(request: Request, user: Operator, id_tag: str) -> Response:
    """The saga's steps so far (polled while the link form's request runs)."""
    link = await _link_progress(request, user, id_tag)
    return page(
        request,
        "operator/_link_progress.html",
        {"link": link, "steps": LINK_STEPS, "card": {"id_tag": id_tag}, "polling": True},
    )


@router.post("/cards/{id_tag}/link")
async def card_link(request: Request, user: Operator, id_tag: str) -> Response:
    values = await _form(request)
    body: dict[str, Any] = {
        "email": values.get("email", ""),
        "billing_mode": values.get("billing_mode") or "usage",
        "invite": values.get("invite") == "on",
        "confirm_reassign": values.get("confirm_reassign") == "on",
    }
    for name in ("name", "plan_code", "currency"):
        if values.get(name):
            body[name] = values[name]
    context: dict[str, Any] = {"card": {"id_tag": id_tag}, "steps": LINK_STEPS, "form": values}
    try:
        result = await api_for(request, user).post(f"/api/v1/cards/{_q(id_tag)}/link", json=body)
        context["link"] = {"running": False, "progress": result}
    except ApiFailure as failure:
        context.update(form_failure(failure))
        saga = failure.issues[0] if failure.code == "CARD_LINK_FAILED" and failure.issues else None
        context["link"] = {"running": False, "progress": saga} if saga else None
    return page(request, "operator/_link_form.html", context)


@router.post("/cards/{id_tag}/report-lost")
async def card_report_lost(request: Request, user: Operator, id_tag: str) -> Response:
    try:
        await api_for(request, user).post(f"/api/v1/cards/{_q(id_tag)}/report-lost")
    except ApiFailure as failure:
        context = await _card_context(request, user, id_tag)
        context.update({"link": None, "lost_error": failure})
        return page(request, "operator/card.html", context, status_code=failure.status)
    return redirect(f"/console/operator/cards/{_q(id_tag)}", request)


@router.post("/cards/{id_tag}/unlink")
async def card_unlink(request: Request, user: Operator, id_tag: str) -> Response:
    try:
        await api_for(request, user).post(f"/api/v1/cards/{_q(id_tag)}/unlink")
    except ApiFailure as failure:
        context = await _card_context(request, user, id_tag)
        context.update({"link": None, "unlink_error": failure})
        return page(request, "operator/card.html", context, status_code=failure.status)
    return redirect(f"/console/operator/cards/{_q(id_tag)}", request)


# -- users and impersonation -------------------------------------------------------------------


@router.get("/users")
async def users_list(request: Request, user: Operator, search: str = "") -> Response:
    context: dict[str, Any] = {"title": "Users", "search": search}
    try:
        found = await api_for(request, user).get("/api/v1/users", search=search, limit=100)
        context.update({"users": found["users"], "total": found["total"]})
    except ApiFailure as failure:
        if failure.status not in (422, 503):
            raise
        context.update({"users": [], "total": 0, **form_failure(failure)})
    return page(request, "operator/users.html", context)


async def _user_page(
    request: Request, user: Operator, user_id: str, extra: dict[str, Any] | None = None
) -> Response:
    shown = await api_for(request, user).get(f"/api/v1/users/{_q(user_id)}")
    context = {"title": f"User {shown['email']}", "shown": shown, **(extra or {})}
    status = extra.get("status", 200) if extra else 200
    return page(request, "operator/user.html", context, status_code=status)


@router.get("/users/{user_id}")
async def user_detail(request: Request, user: Operator, user_id: str) -> Response:
    return await _user_page(request, user, user_id)


@router.post("/users/{user_id}/ban")
async def user_ban(request: Request, user: Operator, user_id: str) -> Response:
    values = await _form(request)
    body: dict[str, Any] = {}
    if values.get("reason"):
        body["reason"] = values["reason"]
    if values.get("expires_in_s"):
        body["expires_in_s"] = _number(values["expires_in_s"])
    try:
        await api_for(request, user).post(f"/api/v1/users/{_q(user_id)}/ban", json=body)
    except ApiFailure as failure:
        extra = {"form": values, "status": failure.status, **form_failure(failure)}
        return await _user_page(request, user, user_id, extra)
    return redirect(f"/console/operator/users/{_q(user_id)}", request)


@router.post("/users/{user_id}/unban")
async def user_unban(request: Request, user: Operator, user_id: str) -> Response:
    try:
        await api_for(request, user).post(f"/api/v1/users/{_q(user_id)}/unban")
    except ApiFailure as failure:
        extra = {"status": failure.status, "unban_error": failure}
        return await _user_page(request, user, user_id, extra)
    return redirect(f"/console/operator/users/{_q(user_id)}", request)


@router.post("/users/{user_id}/impersonate")
async def user_impersonate(request: Request, user: Operator, user_id: str) -> Response:
    """Start a read-only impersonation: its JWT goes in the impersonation cookie, and the
    driver's pages show what the driver sees, under a banner with "Stop impersonating"."""
    try:
        started = await api_for(request, user).post(
            "/api/v1/impersonation", json={"user_id": user_id}
        )
    except ApiFailure as failure:
        extra = {"status": failure.status, "impersonate_error": failure}
        return await _user_page(request, user, user_id, extra)
    response = redirect("/console/driver", request)
    state: AppState = request.app.state.polaris
    response.set_cookie(
        console_session.IMPERSONATION_COOKIE,
        started["jwt"],
        httponly=True,
        samesite="lax",
        secure=console_session.secure_cookies(state),
        path="/console",
    )
    return response


@router.post("/impersonation/stop")
async def impersonation_stop(request: Request, user: Operator) -> Response:
    """End the impersonation at the auth service (audited by the API) and drop its cookie. An
    impersonation that has already ended (expired, revoked) only loses its cookie."""
    if user.impersonation_jwt is not None:
        try:
            await api_for(request, user, acting=True).post("/api/v1/impersonation/stop")
        except ApiFailure as failure:
            if failure.status not in (401, 409):
                raise
    response = redirect("/console/operator/users", request)
    response.delete_cookie(console_session.IMPERSONATION_COOKIE, path="/console")
    return response


# -- reservations ------------------------------------------------------------------------------

RESERVATION_STATUSES = ("pending", "confirmed", "used", "cancelled", "failed", "expired")
OPEN_RESERVATIONS = ("pending", "confirmed")


async def _reservations_context(
    request: Request, user: Operator, filters: dict[str, str]
) -> dict[str, Any]:
    context: dict[str, Any] = {
        "title": "Reservations",
        "filters": filters,
        "statuses": RESERVATION_STATUSES,
        "open_statuses": OPEN_RESERVATIONS,
    }
    try:
        context["reservations"] = await api_for(request, user).get(
            "/api/v1/reservations",
            charge_box_id=filters.get("charge_box_id"),
            user_id=filters.get("user_id"),
            status=filters.get("status"),
            limit=200,
        )
    except ApiFailure as failure:
        if failure.status != 422:
            raise
        context.update({"reservations": [], **form_failure(failure)})
    return context


@router.get("/reservations")
async def reservations_list(
    request: Request, user: Operator, charge_box_id: str = "", user_id: str = "", status: str = ""
) -> Response:
    filters = {"charge_box_id": charge_box_id, "user_id": user_id, "status": status}
    context = await _reservations_context(request, user, filters)
    return page(request, "operator/reservations.html", context)


@router.post("/reservations/{reservation_id}/cancel")
async def reservation_cancel(request: Request, user: Operator, reservation_id: str) -> Response:
    values = await _form(request)
    body = {"reason": values["reason"]} if values.get("reason") else None
    try:
        await api_for(request, user).post(
            f"/api/v1/reservations/{_q(reservation_id)}/cancel", json=body
        )
    except ApiFailure as failure:
        context = await _reservations_context(request, user, {})
        context.update({"cancel_error": failure, "cancel_id": reservation_id})
        return page(request, "operator/reservations.html", context, status_code=failure.status)
    return redirect("/console/operator/reservations", request)


# -- billing: invoices, Lago webhooks, the breaker ---------------------------------------------

INVOICE_STATUSES = ("draft", "finalized", "voided", "failed")


async def _billing_context(
    request: Request, user: Operator, filters: dict[str, str]
) -> dict[str, Any]:
    api = api_for(request, user)
    context: dict[str, Any] = {
        "title": "Billing",
        "filters": filters,
        "invoice_statuses": INVOICE_STATUSES,
    }
    try:
        context["invoices"] = await api.get(
            "/api/v1/invoices",
            customer=filters.get("customer"),
            status=filters.get("status"),
            per_page=50,
        )
    except ApiFailure as failure:
        if failure.status == 422:
            context.update(form_failure(failure))
        else:
            context["invoices_error"] = failure
        context["invoices"] = {"invoices": []}
    context["events"] = await api.get("/api/admin/webhooks/lago", limit=100)
    context["breaker"] = await api.get("/api/admin/webhooks/lago/breaker")
    return context


@router.get("/billing")
async def billing(
    request: Request, user: Operator, customer: str = "", status: str = ""
) -> Response:
    context = await _billing_context(request, user, {"customer": customer, "status": status})
    return page(request, "operator/billing.html", context)


@router.post("/billing/webhooks/{event_id}/replay")
async def webhook_replay(request: Request, user: Operator, event_id: str) -> Response:
    try:
        await api_for(request, user).post(f"/api/admin/webhooks/lago/{_q(event_id)}/replay")
    except ApiFailure as failure:
        context = await _billing_context(request, user, {})
        context["replay_error"] = failure
        return page(request, "operator/billing.html", context, status_code=failure.status)
    return redirect("/console/operator/billing#webhooks", request)


@router.post("/billing/breaker/reset")
async def breaker_reset(request: Request, user: Operator) -> Response:
    try:
        await api_for(request, user).post("/api/admin/webhooks/lago/breaker/reset")
    except ApiFailure as failure:
        context = await _billing_context(request, user, {})
        context["breaker_error"] = failure
        return page(request, "operator/billing.html", context, status_code=failure.status)
    return redirect("/console/operator/billing#breaker", request)


# -- firmware campaigns ------------------------------------------------------------------------


async def _campaigns_context(request: Request, user: Operator) -> dict[str, Any]:
    api = api_for(request, user)
    firmware = await api.get("/api/v1/firmware")
    return {
        "title": "Firmware campaigns",
        "campaigns": await api.get("/api/v1/firmware-campaigns"),
        "firmware": firmware,
        "firmware_options": [(f["id"], f"{f['name']} {f['version']}") for f in firmware],
        "firmware_names": {f["id"]: f"{f['name']} {f['version']}" for f in firmware},
    }


@router.get("/firmware-campaigns")
async def campaigns_list(request: Request, user: Operator) -> Response:
    context = await _campaigns_context(request, user)
    return page(request, "operator/campaigns.html", context)


@router.get("/firmware-campaigns/rows")
async def campaigns_rows(request: Request, user: Operator) -> Response:
    context = await _campaigns_context(request, user)
    return page(request, "operator/_campaign_rows.html", context)


@router.post("/firmware-campaigns")
async def campaign_start(request: Request, user: Operator) -> Response:
    values = await _form(request)
    body: dict[str, Any] = {
        "firmware_id": values.get("firmware_id", ""),
        "chargers": [c.strip() for c in values.get("chargers", "").replace(",", " ").split()],
    }
    for name in ("wave_size", "pause_s", "max_failures", "wave_deadline_s"):
        if values.get(name):
            body[name] = _number(values[name])
    try:
        created = await api_for(request, user).post("/api/v1/firmware-campaigns", json=body)
    except ApiFailure as failure:
        context = await _campaigns_context(request, user)
        context.update({"form": values, **form_failure(failure)})
        return page(request, "operator/campaigns.html", context, status_code=failure.status)
    return redirect(f"/console/operator/firmware-campaigns/{_q(created['id'])}", request)


async def _campaign(request: Request, user: Operator, campaign_id: str) -> dict[str, Any]:
    campaign: dict[str, Any] = await api_for(request, user).get(
        f"/api/v1/firmware-campaigns/{_q(campaign_id)}"
    )
    live = campaign.get("live") or {}
    total = len(campaign.get("chargers") or [])
    succeeded = live.get("succeeded", campaign.get("succeeded") or [])
    failed = live.get("failed", campaign.get("failed") or {})
    campaign["progress"] = {
        "total": total,
        "succeeded": len(succeeded),
        "failed": len(failed),
        "done": len(succeeded) + len(failed),
        "current_wave": live.get("current_wave") or [],
        "state": live.get("state") or campaign.get("state"),
        "failed_by_charger": failed,
    }
    return campaign


@router.get("/firmware-campaigns/{campaign_id}")
async def campaign_detail(request: Request, user: Operator, campaign_id: str) -> Response:
    campaign = await _campaign(request, user, campaign_id)
    return page(
        request,
        "operator/campaign.html",
        {"title": "Firmware campaign", "campaign": campaign},
    )


@router.get("/firmware-campaigns/{campaign_id}/live")
async def campaign_live(request: Request, user: Operator, campaign_id: str) -> Response:
    campaign = await _campaign(request, user, campaign_id)
    return page(request, "operator/_campaign_live.html", {"campaign": campaign})


@router.post("/firmware-campaigns/{campaign_id}/halt")
async def campaign_halt(request: Request, user: Operator, campaign_id: str) -> Response:
    values = await _form(request)
    body = {"reason": values["reason"]} if values.get("reason") else None
    try:
        await api_for(request, user).post(
            f"/api/v1/firmware-campaigns/{_q(campaign_id)}/halt", json=body
        )
    except ApiFailure as failure:
        campaign = await _campaign(request, user, campaign_id)
        context = {"title": "Firmware campaign", "campaign": campaign, "form": values}
        context.update(form_failure(failure))
        return page(request, "operator/campaign.html", context, status_code=failure.status)
    return redirect(f"/console/operator/firmware-campaigns/{_q(campaign_id)}", request)
