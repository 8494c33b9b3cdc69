"""Console sign-in and sign-out, through the real auth service.

- Operators (and anyone with a password): e-mail + password, ``POST /api/auth/sign-in/email``.
- Drivers: a magic link. The console asks for it with ``callbackURL=<console>/console/auth/magic``;
  the auth service mails a link to that page (auth/auth.mjs ``consoleMagicLink``), whose button
  exchanges the token server-side (``GET /api/auth/magic-link/verify?token=…``). A GET alone never
  spends the token: mail scanners follow links.
- ``POST /console/token``: a fresh JWT for the page's own fetch-based SSE client (never in a URL).
"""

from __future__ import annotations

import contextlib
from typing import Annotated

import httpx
from fastapi import APIRouter, Form, Request
from fastapi.responses import JSONResponse, Response

from api.console import csrf
from api.console.session import (
    COOKIE,
    IMPERSONATION_COOKIE,
    SCAN_COOKIE,
    auth_url,
    forwarded_headers,
    jwt_cache,
    secure_cookies,
)
from api.console.web import ConsoleHttpError, MaybeUser, SignedIn, page, redirect
from api.deps import AppState, State

router = APIRouter(prefix="/console", include_in_schema=False)

MAGIC_PATH = "/console/auth/magic"


def home_of(role: str) -> str:
    return "/console/operator" if role in ("admin", "operator") else "/console/driver"


def _set_session(response: Response, token: str, state: AppState) -> None:
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=secure_cookies(state),
        path="/",
        max_age=7 * 24 * 3600,
    )
    response.delete_cookie(csrf.PRE_COOKIE, path="/console")


async def _check_pre_csrf(request: Request) -> None:
    if not await csrf.valid(request, None):
        raise ConsoleHttpError(403, "Forbidden", "The form expired; reload the page and retry.")


@router.get("")
async def console_root(user: MaybeUser) -> Response:
    if user is None:
        return redirect("/console/sign-in")
    return redirect(home_of(user.principal.role))


@router.get("/sign-in")
async def sign_in_page(request: Request, user: MaybeUser) -> Response:
    if user is not None:
        return redirect(home_of(user.principal.role))
    return page(request, "sign_in.html", {"title": "Sign in"})


@router.post("/sign-in/password")
async def sign_in_password(
    request: Request,
    state: State,
    email: Annotated[str, Form()] = "",
    password: Annotated[str, Form()] = "",
) -> Response:
    await _check_pre_csrf(request)
    errors: dict[str, list[str]] = {}
    if not email.strip():
        errors["email"] = ["Enter your e-mail address."]
    if not password:
        errors["password"] = ["Enter your password."]
    message = "Check the fields below."
    if not errors:
        try:
            answer = await state.http.post(
                auth_url(state, "/api/auth/sign-in/email"),
                json={"email": email.strip(), "password": password},
                headers=forwarded_headers(request, state),
            )
        except httpx.HTTPError:
            answer = None
        token = answer.headers.get("set-auth-token") if answer is not None else None
        if answer is not None and answer.status_code == 200 and token:
            # /console sends each role to its own area.
            response = redirect("/console")
            _set_session(response, token, state)
            return response
        message = _auth_message(answer)
        errors["password"] = [message]
        status = 503 if answer is None else 429 if answer.status_code == 429 else 401
    else:
        status = 400
    return page(
        request,
        "sign_in.html",
        {"title": "Sign in", "form": {"email": email}, "errors": errors, "message": message},
        status_code=status,
    )


def _auth_message(answer: httpx.Response | None) -> str:
    if answer is None:
        return "The sign-in service is unavailable; try again in a moment."
    if answer.status_code == 429:
        return "Too many attempts: wait a moment before trying again."
    try:
        body = answer.json()
    except ValueError:
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or "Wrong e-mail or password.")


@router.post("/sign-in/magic")
async def sign_in_magic(
    request: Request, state: State, magic_email: Annotated[str, Form()] = ""
) -> Response:
    await _check_pre_csrf(request)
    email = magic_email
    if not email.strip():
        return page(
            request,
            "sign_in.html",
            {"title": "Sign in", "errors": {"magic_email": ["Enter your e-mail address."]}},
            status_code=400,
        )
    try:
        answer = await state.http.post(
            auth_url(state, "/api/auth/sign-in/magic-link"),
            json={
                "email": email.strip(),
                "callbackURL": f"{state.settings.public_base}{MAGIC_PATH}",
            },
            headers=forwarded_headers(request, state),
        )
    except httpx.HTTPError:
        answer = None
    if answer is None or answer.status_code != 200:
        message = _auth_message(answer)
        return page(
            request,
            "sign_in.html",
            {
                "title": "Sign in",
                "form": {"magic_email": email},
                "errors": {"magic_email": [message]},
            },
            status_code=answer.status_code if answer is not None else 503,
        )
    # The same answer whether the address is known or not (no account enumeration).
    return page(request, "magic_sent.html", {"title": "Check your e-mail", "email": email})


@router.get("/auth/magic")
async def magic_landing(request: Request, token: str = "") -> Response:
    return page(request, "magic_confirm.html", {"title": "Sign in", "token": token})


@router.post("/auth/magic")
async def magic_exchange(
    request: Request, state: State, token: Annotated[str, Form()] = ""
) -> Response:
    await _check_pre_csrf(request)
    try:
        answer = await state.http.get(
            auth_url(state, "/api/auth/magic-link/verify"),
            params={"token": token},
            headers=forwarded_headers(request, state),
        )
    except httpx.HTTPError:
        answer = None
    session = None
    if answer is not None and answer.status_code == 200:
        body = answer.json()
        session = answer.headers.get("set-auth-token") or (
            body.get("token") if isinstance(body, dict) else None
        )
    if not session:
        return page(
            request,
            "sign_in.html",
            {
                "title": "Sign in",
                "message": "This sign-in link has expired or was already used: ask for a new one.",
            },
            status_code=400,
        )
    response = redirect("/console")
    _set_session(response, session, state)
    return response


@router.post("/sign-out")
async def sign_out(request: Request, state: State, user: SignedIn) -> Response:
    # The cookie goes regardless; a session the auth service did not hear about expires.
    # A scan sign-in holds only a JWT (no session token to end): its cookie just goes.
    with contextlib.suppress(httpx.HTTPError):
        if not user.by_scan:
            await state.http.post(
                auth_url(state, "/api/auth/sign-out"),
                headers={
                    "authorization": f"Bearer {user.session_token}",
                    **forwarded_headers(request, state),
                },
                json={},
            )
    jwt_cache(request).drop(user.session_token)
    response = redirect("/console/sign-in", request)
    response.delete_cookie(COOKIE, path="/")
    response.delete_cookie(IMPERSONATION_COOKIE, path="/")
    response.delete_cookie(SCAN_COOKIE, path="/")
    return response


@router.post("/token")
async def stream_token(user: SignedIn) -> JSONResponse:
    """The JWT the page's SSE client sends as ``Authorization`` (fetch, never a URL)."""
    acting = user.acting
    return JSONResponse(
        {"token": user.acting_jwt, "expires_at": acting.expires_at},
        headers={"cache-control": "no-store"},
    )
