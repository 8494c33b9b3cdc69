"""Operator pages (``/console/operator``): the network run from a browser.

Every page reads and writes through the API (``api_client.Api``, in-process), as the signed-in
operator: the same authorization, the same ``{error, message, issues}`` answers. Fragments that
change live (``*_fragment`` routes) are re-fetched by htmx when the page's SSE stream says so.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from api.console.api_client import ApiFailure
from api.console.web import Operator, api_for, form_failure, is_htmx, page
from domain.operations import CENTRAL_SYSTEM_ACTIONS

router = APIRouter(prefix="/console/operator", include_in_schema=False)

ACTIVE_STATES = "requested,pre_authorized,charging,suspended"
FAILED_OPERATION_STATUSES = ("failed", "timed_out", "charger_offline", "rejected")


# -- dashboard ---------------------------------------------------------------------------------


async def _dashboard_data(request: Request, user: Operator) -> dict[str, Any]:
    api = api_for(request, user)
    kpis = await api.get("/api/v1/kpis")
    live = await api.get("/api/v1/sessions", state=ACTIVE_STATES, limit=50)
    chargers = await api.get("/api/v1/chargers")
    offline = [c for c in chargers if not c.get("connected")]
    operations = await api.get("/api/v1/operations", limit=100)
    failed = [o for o in operations if o.get("status") in FAILED_OPERATION_STATUSES][:10]
    breaker = await api.get("/api/admin/webhooks/lago/breaker")
    return {
        "breaker": breaker,
        "kpis": kpis,
        "live_sessions": live,
        "offline": offline[:20],
        "failed_operations": failed,
    }


@router.get("")
async def dashboard(request: Request, user: Operator) -> Response:
    data = await _dashboard_data(request, user)
    return page(request, "operator/dashboard.html", {"title": "Dashboard", **data})


@router.get("/fragments/dashboard")
async def dashboard_fragment(request: Request, user: Operator) -> Response:
    data = await _dashboard_data(request, user)
    return page(request, "operator/_dashboard_live.html", data)


# -- chargers ----------------------------------------------------------------------------------


@router.get("/chargers")
async def chargers_list(
    request: Request,
    user: Operator,
    q: str = "",
    connection: str = "",
    site: str = "",
    include_decommissioned: str = "",
) -> Response:
    api = api_for(request, user)
    chargers = await api.get("/api/v1/chargers", all="true" if include_decommissioned else None)
    needle = q.strip().lower()
    shown = [
        c
        for c in chargers
        if (not needle or needle in f"{c['charge_box_id']} {c.get('label') or ''}".lower())
        and (not connection or (connection == "online") == bool(c.get("connected")))
        and (not site or (c.get("site") or "") == site)
    ]
    sites = sorted({c["site"] for c in chargers if c.get("site")})
    context = {
        "title": "Chargers",
        "chargers": shown,
        "sites": sites,
        "filters": {
            "q": q,
            "connection": connection,
            "site": site,
            "include_decommissioned": include_decommissioned,
        },
    }
    if is_htmx(request) and request.headers.get("hx-target") == "charger-rows":
        return page(request, "operator/_charger_rows.html", context)
    return page(request, "operator/chargers.html", context)


@router.post("/chargers")
async def charger_add(request: Request, user: Operator) -> Response:
    form = await request.form()
    values = {k: str(v) for k, v in form.items() if k != "csrf"}
    body: dict[str, Any] = {"charge_box_id": values.get("charge_box_id", "").strip()}
    body["connectors"] = _int_or_text(values.get("connectors", ""))
    for name in ("site", "tariff", "label"):
        if values.get(name, "").strip():
            body[name] = values[name].strip()
    if values.get("max_power_w", "").strip():
        body["max_power_w"] = _int_or_text(values["max_power_w"])
    try:
        created = await api_for(request, user).post("/api/v1/chargers", json=body)
    except ApiFailure as failure:
        chargers = await api_for(request, user).get("/api/v1/chargers")
        return page(
            request,
            "operator/chargers.html",
            {
                "title": "Chargers",
                "chargers": chargers,
                "sites": sorted({c["site"] for c in chargers if c.get("site")}),
                "filters": {},
                "form": values,
                **form_failure(failure),
            },
            status_code=failure.status,
        )
    return page(
        request,
        "operator/charger_created.html",
        {"title": "Charger added", "created": created},
        status_code=201,
    )


def _int_or_text(value: str) -> int | str:
    """Numbers as numbers; anything else goes to the API as typed, so its message says why."""
    try:
        return int(value.strip())
    except ValueError:
        return value


async def _charger_data(request: Request, user: Operator, charge_box_id: str) -> dict[str, Any]:
    api = api_for(request, user)
    charger = await api.get(f"/api/v1/chargers/{quote(charge_box_id, safe='')}")
    operations = await api.get("/api/v1/operations", charger=charge_box_id, limit=20)
    return {"charger": charger, "operations": operations}


@router.get("/chargers/{charge_box_id}")
async def charger_detail(request: Request, user: Operator, charge_box_id: str) -> Response:
    data = await _charger_data(request, user, charge_box_id)
    api = api_for(request, user)
    cid = quote(charge_box_id, safe="")
    extras: dict[str, Any] = {}
    for key, path in (
        ("configuration", f"/api/v1/chargers/{cid}/configuration"),
        ("firmware", f"/api/v1/chargers/{cid}/firmware"),
        ("diagnostics", f"/api/v1/chargers/{cid}/diagnostics"),
    ):
        try:
            extras[key] = await api.get(path)
        except ApiFailure as failure:
            extras[key] = None
            extras[f"{key}_error"] = failure
    return page(
        request,
        "operator/charger.html",
        {
            "title": f"Charger {charge_box_id}",
            "actions": CENTRAL_SYSTEM_ACTIONS,
            "examples": OPERATION_EXAMPLES,
            "op": {"action": "Reset", "fields": json.dumps(OPERATION_EXAMPLES["Reset"])},
            **data,
            **extras,
        },
    )


@router.get("/chargers/{charge_box_id}/live")
async def charger_live(request: Request, user: Operator, charge_box_id: str) -> Response:
    data = await _charger_data(request, user, charge_box_id)
    return page(request, "operator/_charger_live.html", data)


@router.post("/chargers/{charge_box_id}/operations")
async def charger_operation(request: Request, user: Operator, charge_box_id: str) -> Response:
    """The operation panel: ``intent=preview`` answers the frame (dry run), ``intent=send`` sends
    it and answers the operation once the charger answered (or the wait ran out)."""
    form = await request.form()
    action = str(form.get("action") or "")
    raw = str(form.get("fields") or "").strip() or "{}"
    preview = str(form.get("intent") or "") == "preview"
    context: dict[str, Any] = {
        "charge_box_id": charge_box_id,
        "op": {"action": action, "fields": raw},
        "actions": CENTRAL_SYSTEM_ACTIONS,
        "examples": OPERATION_EXAMPLES,
    }
    try:
        fields = json.loads(raw)
        if not isinstance(fields, dict):
            raise ValueError("not an object")
    except ValueError:
        context["errors"] = {"fields": ['The fields must be a JSON object, e.g. {"type": "Soft"}.']}
        return page(request, "operator/_operation_panel.html", context, status_code=422)
    path = f"/api/v1/chargers/{quote(charge_box_id, safe='')}/operations/{quote(action, safe='')}"
    try:
        result = await api_for(request, user).post(
            path, json=fields, dry_run="true" if preview else None
        )
    except ApiFailure as failure:
        failure_context = form_failure(failure)
        # Schema issues concern the fields box; name them by their path inside it.
        if failure.issues:
            failure_context["errors"] = {
                "fields": [
                    f"{'/'.join(str(p) for p in (i.get('path') or [])) or '(frame)'}: "
                    f"{i.get('message')}"
                    for i in failure.issues
                ]
            }
        context.update(failure_context)
        return page(request, "operator/_operation_panel.html", context, status_code=200)
    context["result"] = result
    context["preview"] = preview
    return page(request, "operator/_operation_panel.html", context)


# Fields to start from in the operation panel (OCPP 1.6 names); the API validates them.
OPERATION_EXAMPLES: dict[str, dict[str, Any]] = {
    "RemoteStartTransaction": {"idTag": "CARD-ID", "connectorId": 1},
    "RemoteStopTransaction": {"transactionId": 1},
    "Reset": {"type": "Soft"},
    "UnlockConnector": {"connectorId": 1},
    "ChangeAvailability": {"connectorId": 0, "type": "Operative"},
    "GetConfiguration": {},
    "ChangeConfiguration": {"key": "HeartbeatInterval", "value": "300"},
    "ClearCache": {},
    "TriggerMessage": {"requestedMessage": "StatusNotification"},
    "DataTransfer": {"vendorId": "com.example"},
    "GetLocalListVersion": {},
    "SendLocalList": {"listVersion": 1, "updateType": "Full", "localAuthorizationList": []},
    "ReserveNow": {
        "connectorId": 1,
        "expiryDate": "2030-01-01T00:00:00Z",
        "idTag": "CARD-ID",
        "reservationId": 1,
    },
    "CancelReservation": {"reservationId": 1},
    "ClearChargingProfile": {},
    "GetCompositeSchedule": {"connectorId": 1, "duration": 3600},
}


# -- sessions ----------------------------------------------------------------------------------


@router.get("/sessions")
async def sessions_list(
    request: Request,
    user: Operator,
    state: str = "",
    charger: str = "",
    card: str = "",
    user_id: str = "",
    started_from: str = "",
    started_to: str = "",
    offset: int = 0,
) -> Response:
    filters = {
        "state": state,
        "charger": charger,
        "card": card,
        "user_id": user_id,
        "started_from": started_from,
        "started_to": started_to,
    }
    context: dict[str, Any] = {"title": "Sessions", "filters": filters, "offset": offset}
    try:
        context["sessions"] = await api_for(request, user).get(
            "/api/v1/sessions",
            state=state,
            charger=charger,
            card=card,
            user=user_id,
            limit=PAGE,
            offset=offset,
            **{"from": _iso_or_blank(started_from), "to": _iso_or_blank(started_to)},
        )
    except ApiFailure as failure:
        if failure.status != 422:
            raise
        context.update({"sessions": [], **form_failure(failure)})
        context["errors"] = {
            {"from": "started_from", "to": "started_to", "user": "user_id"}.get(k, k): v
            for k, v in context["errors"].items()
        }
    return page(request, "operator/sessions.html", context)


PAGE = 50


def _iso_or_blank(value: str) -> str:
    """``<input type="datetime-local">`` gives ``2025-01-31T10:00``: UTC is meant."""
    value = value.strip()
    if len(value) == 16 and value[10] == "T":
        return f"{value}:00+00:00"
    return value


async def _session_data(request: Request, user: Operator, session_id: str) -> dict[str, Any]:
    api = api_for(request, user)
    sid = quote(session_id, safe="")
    session = await api.get(f"/api/v1/sessions/{sid}")
    billing = await api.get(f"/api/v1/sessions/{sid}/billing-events")
    return {"session": session, "billing_events": billing}


@router.get("/sessions/{session_id}")
async def session_detail(request: Request, user: Operator, session_id: str) -> Response:
    data = await _session_data(request, user, session_id)
    return page(
        request,
        "operator/session.html",
        {"title": f"Session {data['session']['workflow_id']}", **data},
    )


@router.get("/sessions/{session_id}/live")
async def session_live(request: Request, user: Operator, session_id: str) -> Response:
    data = await _session_data(request, user, session_id)
    return page(request, "operator/_session_live.html", data)


@router.get("/sessions/{session_id}/timeline")
async def session_timeline(request: Request, user: Operator, session_id: str) -> Response:
    sid = quote(session_id, safe="")
    try:
        timeline = await api_for(request, user).get(f"/api/v1/sessions/{sid}/timeline")
        error = None
    except ApiFailure as failure:
        if failure.status == 404:
            raise
        timeline, error = None, failure
    return page(request, "operator/_session_timeline.html", {"timeline": timeline, "error": error})


@router.get("/sessions/{session_id}/meter.json")
async def session_meter(request: Request, user: Operator, session_id: str) -> JSONResponse:
    sid = quote(session_id, safe="")
    samples = await api_for(request, user).get(f"/api/v1/sessions/{sid}/meter-samples")
    return JSONResponse(meter_points(samples))


def meter_points(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Energy (kWh) and power (kW) by time, from the session's meter samples: whole-meter
    readings only, flagged ones left out (they are never billed)."""
    by_time: dict[float, dict[str, Any]] = {}
    for s in samples:
        if s.get("flag") or s.get("phase") or not s.get("sampled_at"):
            continue
        at = datetime.fromisoformat(str(s["sampled_at"]).replace("Z", "+00:00")).timestamp()
        point = by_time.setdefault(at, {"t": at, "kwh": None, "kw": None})
        measurand = s.get("measurand") or "Energy.Active.Import.Register"
        if measurand == "Energy.Active.Import.Register" and s.get("energy_wh") is not None:
            point["kwh"] = round(int(s["energy_wh"]) / 1000, 3)
        elif measurand == "Power.Active.Import":
            try:
                value = float(s.get("value") or 0)
            except ValueError:
                continue
            point["kw"] = round(value if (s.get("unit") or "W") == "kW" else value / 1000, 3)
    points = [by_time[t] for t in sorted(by_time)]
    # The curve starts at zero: energy delivered since the first reading.
    first = next((p["kwh"] for p in points if p["kwh"] is not None), None)
    if first is not None:
        for p in points:
            if p["kwh"] is not None:
                p["kwh"] = round(p["kwh"] - first, 3)
    return points


# -- logs --------------------------------------------------------------------------------------


@router.get("/operations")
async def operations_log(
    request: Request, user: Operator, charger: str = "", status: str = "", action: str = ""
) -> Response:
    filters = {"charger": charger, "status": status, "action": action}
    context: dict[str, Any] = {"title": "Operations", "filters": filters}
    try:
        context["operations"] = await api_for(request, user).get(
            "/api/v1/operations", charger=charger, status=status, action=action, limit=200
        )
    except ApiFailure as failure:
        if failure.status != 422:
            raise
        context.update({"operations": [], **form_failure(failure)})
    return page(request, "operator/operations.html", context)


@router.get("/operations/{operation_id}")
async def operation_detail(request: Request, user: Operator, operation_id: str) -> Response:
    operation = await api_for(request, user).get(
        f"/api/v1/operations/{quote(operation_id, safe='')}"
    )
    return page(
        request,
        "operator/operation.html",
        {"title": f"Operation {operation['action']}", "operation": operation},
    )


@router.get("/audit")
async def audit_log(
    request: Request, user: Operator, actor: str = "", action: str = "", subject: str = ""
) -> Response:
    filters = {"actor": actor, "action": action, "subject": subject}
    context: dict[str, Any] = {"title": "Audit log", "filters": filters}
    try:
        context["rows"] = await api_for(request, user).get(
            "/api/v1/audit", actor=actor, action=action, subject=subject, limit=200
        )
    except ApiFailure as failure:
        if failure.status != 422:
            raise
        context.update({"rows": [], **form_failure(failure)})
    return page(request, "operator/audit.html", context)
