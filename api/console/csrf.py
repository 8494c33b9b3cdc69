"""CSRF protection of the console's forms (and its htmx and fetch requests).

Signed in, the token is bound to the session: ``HMAC-SHA256(session token, "polaris-console-csrf")``
— only whoever holds the HttpOnly session cookie's value can compute it, so no server secret is
needed and every replica agrees. Before sign-in (the sign-in forms themselves: login CSRF) it is
a double-submit token: a random value in the ``polaris_console_csrf`` cookie that the form must
repeat. Forms carry it in a hidden ``csrf`` field; htmx and fetch send it in ``X-CSRF-Token``
(from the page's ``<meta name="csrf-token">``). The cookies are SameSite=Lax as well.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request

PRE_COOKIE = "polaris_console_csrf"
HEADER = "x-csrf-token"
FIELD = "csrf"


def session_token_csrf(session_token: str) -> str:
    return hmac.new(session_token.encode(), b"polaris-console-csrf", hashlib.sha256).hexdigest()


def new_pre_token() -> str:
    return secrets.token_urlsafe(32)


def expected_token(request: Request, session_token: str | None) -> str | None:
    if session_token:
        return session_token_csrf(session_token)
    return request.cookies.get(PRE_COOKIE) or None


async def submitted_token(request: Request) -> str | None:
    header = request.headers.get(HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()  # cached by Starlette: the route reads it again for free
        value = form.get(FIELD)
        return value if isinstance(value, str) else None
    return None


async def valid(request: Request, session_token: str | None) -> bool:
    expected = expected_token(request, session_token)
    given = await submitted_token(request)
    return bool(expected and given and hmac.compare_digest(expected, given))
