"""What every console page uses: templates, the signed-in user, CSRF, errors as pages."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from api.console import csrf
from api.console.api_client import Api, ApiFailure
from api.console.session import ConsoleUser, console_user, secure_cookies
from api.deps import AppState, State

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))


# -- filters -----------------------------------------------------------------------------------


def _when(value: Any) -> str:
    if not value:
        return "—"
    moment: datetime | None = value if isinstance(value, datetime) else None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
    if moment is None:
        return str(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _kwh(wh: Any) -> str:
    if wh is None:
        return "—"
    return f"{float(wh) / 1000:.3f} kWh"


def _money(minor: Any, currency: str | None = None) -> str:
    if minor is None:
        return "—"
    return f"{int(minor) / 100:.2f} {currency or ''}".strip()


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


templates.env.filters["when"] = _when
templates.env.filters["kwh"] = _kwh
templates.env.filters["money"] = _money
templates.env.filters["pretty"] = _pretty
templates.env.filters["zip_pairs"] = lambda items: [(str(i), str(i)) for i in items]
templates.env.filters["urlpart"] = lambda v: quote(str(v), safe="")


# -- who is asking -----------------------------------------------------------------------------


class SignInRequired(Exception):
    """No console session: pages redirect to sign-in (htmx requests get ``HX-Redirect``)."""


class ConsoleHttpError(Exception):
    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


async def optional_user(request: Request, state: State) -> ConsoleUser | None:
    user = await console_user(request, state)
    request.state.console_user = user
    return user


async def signed_in(
    request: Request, user: Annotated[ConsoleUser | None, Depends(optional_user)]
) -> ConsoleUser:
    if user is None:
        raise SignInRequired()
    if request.method not in ("GET", "HEAD") and not await csrf.valid(request, user.session_token):
        raise ConsoleHttpError(403, "Forbidden", "The form expired; reload the page and retry.")
    return user


async def operator(user: Annotated[ConsoleUser, Depends(signed_in)]) -> ConsoleUser:
    """Operator pages: admins and operators only. Anybody else gets a 404 (nothing leaks)."""
    if not user.is_operator:
        raise ConsoleHttpError(404, "Not found", "There is no such page.")
    return user


SignedIn = Annotated[ConsoleUser, Depends(signed_in)]
Operator = Annotated[ConsoleUser, Depends(operator)]
MaybeUser = Annotated[ConsoleUser | None, Depends(optional_user)]


def api_for(request: Request, user: ConsoleUser | None, *, acting: bool = False) -> Api:
    """The in-process API client: as the operator, or (``acting``) as the impersonated driver."""
    if user is None:
        return Api(request, None)
    return Api(request, user.acting_jwt if acting else user.jwt)


# -- rendering ---------------------------------------------------------------------------------


def page(
    request: Request,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    user: ConsoleUser | None = getattr(request.state, "console_user", None)
    new_pre_token: str | None = None
    if user is not None:
        token = csrf.session_token_csrf(user.session_token)
    else:
        token = request.cookies.get(csrf.PRE_COOKIE) or ""
        if not token:  # first visit: the double-submit token the sign-in forms repeat
            token = new_pre_token = csrf.new_pre_token()
    ctx: dict[str, Any] = {
        "user": user,
        "csrf_token": token,
        "errors": {},
        "form": {},
        "error": None,
        "path": request.url.path,
    }
    ctx.update(context or {})
    response = templates.TemplateResponse(
        request, template, ctx, status_code=status_code, headers=headers
    )
    if new_pre_token is not None:
        state: AppState = request.app.state.polaris
        response.set_cookie(
            csrf.PRE_COOKIE,
            new_pre_token,
            httponly=True,
            samesite="lax",
            secure=secure_cookies(state),
            path="/console",
        )
    return response


def form_failure(failure: ApiFailure) -> dict[str, Any]:
    """Template context for a form the API refused: the message, and issues by field."""
    return {"error": failure, "errors": failure.field_errors()}


def redirect(url: str, request: Request | None = None) -> Response:
    """A 303 after a form; an ``HX-Redirect`` for htmx requests."""
    if request is not None and request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def is_htmx(request: Request) -> bool:
    return bool(request.headers.get("hx-request"))
