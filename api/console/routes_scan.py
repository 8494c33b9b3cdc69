"""Scan-to-login in the console: the page a charger's QR code opens (docs/console.md, "Scan
sign-in"; the flow and its threat model: docs/identity.md).

1. ``GET /console/scan?c=<chargeBoxId>#k=<secret>`` — the QR code's URL. The secret is in the
   fragment, which no server receives: the page's script (``scan.js``) moves it into the form,
   removes it from the address bar and submits. Without it the driver can type the code.
2. ``POST /console/scan`` (form, CSRF) arms the sign-in through ``POST /api/v1/scan/login``. The
   one-time claim stays on the server side of the browser: an HttpOnly cookie scoped to
   ``/console/scan``, living as long as an arm can be claimed. The code is never put back into
   a page, a URL or a log.
3. ``GET /console/scan/{scanId}``: "tap your card on the charger"; its script polls
   ``POST /console/scan/{scanId}/exchange`` (CSRF header), which asks the API's exchange. On
   ``signed_in`` the JWT (never a session token) goes into the ``polaris_console_scan`` cookie
   until it expires — nothing renews it — and the page goes to the driver's dashboard.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, Response

from api.console import csrf
from api.console.api_client import Api, ApiFailure
from api.console.session import (
    COOKIE,
    IMPERSONATION_COOKIE,
    SCAN_COOKIE,
    ConsoleUser,
    secure_cookies,
)
from api.console.web import ConsoleHttpError, MaybeUser, page, redirect
from api.deps import State

router = APIRouter(prefix="/console/scan", include_in_schema=False)

CLAIM_COOKIE = "polaris_console_scan_claim"
# An arm lives 30 s and its tap can be claimed 10 s later: the claim cookie outlives both.
_CLAIM_COOKIE_S = 120

NO_SUCH_CODE = (
    "This code does not open a sign-in at that charger: scan the QR code on the charger again "
    "(codes change when the operator renews them)."
)
ARM_REFUSALS = {
    "SCAN_UNAVAILABLE": "Scan sign-in is not available at this charger.",
    "SCAN_BUSY": "Someone is already signing in at this charger: try again in half a minute.",
    "RATE_LIMITED": "Too many attempts: wait a minute before scanning again.",
}
EXCHANGE_REFUSALS = {
    "SCAN_SIGN_IN_REFUSED": (
        "This card's account cannot sign in by scanning (staff accounts never can): "
        "sign in with your e-mail instead."
    ),
    "SCAN_EXPIRED": "Too late: no card was tapped in time. Scan the code again to retry.",
    "SCAN_USED": "This sign-in was already used. Scan the code again to retry.",
    "NOT_FOUND": "This sign-in has ended. Scan the code again to retry.",
}
UNKNOWN_CARD = (
    "That card is not linked to an account: link it first, or sign in with your e-mail instead."
)


def _form_page(
    request: Request,
    charger: str,
    *,
    errors: dict[str, list[str]] | None = None,
    message: str | None = None,
    status_code: int = 200,
) -> Response:
    return page(
        request,
        "scan.html",
        {
            "title": "Sign in at a charger",
            "form": {"charger": charger},
            "errors": errors or {},
            "message": message,
        },
        status_code=status_code,
        headers={"cache-control": "no-store", "referrer-policy": "no-referrer"},
    )


@router.get("")
async def scan_page(request: Request, user: MaybeUser, c: str = "", charger: str = "") -> Response:
    # ``user`` (resolved for every page of this flow) decides which CSRF token the form carries.
    return _form_page(request, (c or charger).strip())


@router.post("")
async def arm(
    request: Request,
    state: State,
    user: MaybeUser,
    charger: Annotated[str, Form()] = "",
    code: Annotated[str, Form()] = "",
) -> Response:
    if not await _csrf_ok(request, user):
        raise ConsoleHttpError(403, "Forbidden", "The form expired; reload the page and retry.")
    charger, code = charger.strip(), code.strip()
    errors: dict[str, list[str]] = {}
    if not charger:
        errors["charger"] = ["Enter the charger's name, as printed on it."]
    if not code:
        errors["code"] = ["Scan the charger's QR code, or type the code printed under it."]
    if errors:
        return _form_page(request, charger, errors=errors, status_code=400)
    try:
        armed = await Api(request, None).post(
            "/api/v1/scan/login", {"charge_box_id": charger, "secret": code}
        )
    except ApiFailure as failure:
        if failure.status == 404:
            return _form_page(request, charger, errors={"code": [NO_SUCH_CODE]}, status_code=404)
        if failure.status == 422:
            fields = failure.field_errors()
            return _form_page(
                request,
                charger,
                errors={
                    "charger": fields.get("charge_box_id", []),
                    "code": fields.get("secret", []),
                },
                message=failure.message,
                status_code=422,
            )
        message = ARM_REFUSALS.get(failure.code) or (
            ARM_REFUSALS["RATE_LIMITED"] if failure.status == 429 else failure.message
        )
        return _form_page(request, charger, message=message, status_code=failure.status)
    scan_id = str(armed["scan_id"])
    response = redirect(f"/console/scan/{scan_id}")
    response.set_cookie(
        CLAIM_COOKIE,
        f"{scan_id}:{armed['claim']}",
        httponly=True,
        samesite="strict",
        secure=secure_cookies(state),
        path="/console/scan",
        max_age=_CLAIM_COOKIE_S,
    )
    return response


async def _csrf_ok(request: Request, user: ConsoleUser | None) -> bool:
    """The token the page was rendered with: the session's when someone is signed in already
    (the browser may be a signed-in driver scanning again), else the double-submit one."""
    return await csrf.valid(request, user.session_token if user is not None else None)


def _claim_of(request: Request, scan_id: str) -> str | None:
    held = request.cookies.get(CLAIM_COOKIE, "")
    cookie_scan, _, claim = held.partition(":")
    return claim if cookie_scan == scan_id and claim else None


@router.get("/{scan_id}")
async def waiting_page(request: Request, user: MaybeUser, scan_id: str) -> Response:
    if _claim_of(request, scan_id) is None:
        return _form_page(request, "", message=EXCHANGE_REFUSALS["NOT_FOUND"], status_code=404)
    return page(
        request,
        "scan_wait.html",
        {"title": "Tap your card", "scan_id": scan_id},
        headers={"cache-control": "no-store"},
    )


@router.post("/{scan_id}/exchange")
async def exchange(request: Request, state: State, user: MaybeUser, scan_id: str) -> JSONResponse:
    if not await _csrf_ok(request, user):
        return _answer({"status": "failed", "message": "The page expired; scan again."}, 403)
    claim = _claim_of(request, scan_id)
    if claim is None:
        return _answer({"status": "failed", "message": EXCHANGE_REFUSALS["NOT_FOUND"]}, 404)
    try:
        result = await Api(request, None).post(f"/api/v1/scan/{scan_id}/exchange", {"claim": claim})
    except ApiFailure as failure:
        message = EXCHANGE_REFUSALS.get(failure.code) or failure.message
        response = _answer({"status": "failed", "message": message}, failure.status)
        response.delete_cookie(CLAIM_COOKIE, path="/console/scan")
        return response
    if isinstance(result, dict) and result.get("status") == "waiting":
        return _answer({"status": "waiting"}, 202)
    if not isinstance(result, dict) or result.get("status") != "signed_in":
        response = _answer({"status": "failed", "message": UNKNOWN_CARD}, 200)
        response.delete_cookie(CLAIM_COOKIE, path="/console/scan")
        return response
    response = _answer({"status": "signed_in", "location": "/console/driver"}, 200)
    response.delete_cookie(CLAIM_COOKIE, path="/console/scan")
    # This browser is now this driver, for the JWT's lifetime only.
    response.delete_cookie(COOKIE, path="/")
    response.delete_cookie(IMPERSONATION_COOKIE, path="/")
    response.set_cookie(
        SCAN_COOKIE,
        str(result["jwt"]),
        httponly=True,
        samesite="lax",
        secure=secure_cookies(state),
        path="/",
        max_age=max(1, _lifetime_s(result.get("expires_at"))),
    )
    return response


def _lifetime_s(expires_at: Any) -> int:
    if not isinstance(expires_at, str):
        return 60
    try:
        moment = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    except ValueError:
        return 60
    return int(moment.timestamp() - time.time())


def _answer(body: dict[str, Any], status: int) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"cache-control": "no-store"})
