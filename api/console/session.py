"""The console's sign-in state: a cookie holding the auth service's session token.

The browser keeps one HttpOnly cookie, ``polaris_console`` (SameSite=Lax; Secure outside dev and
test), whose value is the BetterAuth session token a password or magic-link sign-in answered.
Each request turns it into a short-lived JWT (``GET /api/auth/token`` at the auth service, cached
per session until a minute before it expires) and verifies that JWT as every API route does, so
the console's pages see exactly the principal the API sees. A revoked session or a banned user
stops working within the JWT's lifetime, and at once on every route the API live-checks.

An operator's impersonation keeps the driver's read-only JWT in a second cookie,
``polaris_console_as`` (the JWT only: the auth service never hands out the driver's session
token); driver pages use it while it lasts, with a banner.

A driver signed in by scanning a charger's QR code has no session token at all: the scan sign-in
answers a JWT of at most 15 minutes (docs/identity.md). Its cookie, ``polaris_console_scan``,
holds that JWT until it expires — nothing renews it; then the driver sees the sign-in page. Only
a driver's JWT minted by a scan (``amr`` has ``scan``, no impersonation) is accepted there.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import httpx
from fastapi import Request

from api.auth_jwt import InvalidToken, JwksUnavailable
from api.authz import Principal, verifier_of
from api.client_address import client_address
from api.deps import AppState

COOKIE = "polaris_console"
IMPERSONATION_COOKIE = "polaris_console_as"
SCAN_COOKIE = "polaris_console_scan"
# A JWT is reused until this many seconds before it expires.
_JWT_MARGIN_S = 60
_CACHE_LIMIT = 10_000


@dataclass(frozen=True)
class ConsoleUser:
    """Who is signed in to the console, and the JWT the console calls the API with."""

    session_token: str
    jwt: str
    principal: Principal
    # Set while an operator views the console as a driver (read-only).
    impersonation_jwt: str | None = None
    impersonated: Principal | None = None
    # Signed in by a scan: ``session_token`` is then the JWT itself (no auth session to renew).
    by_scan: bool = False

    @property
    def is_operator(self) -> bool:
        return self.principal.role in ("admin", "operator") and not self.principal.impersonated_by

    @property
    def acting(self) -> Principal:
        """The principal driver pages act as (the driver under impersonation)."""
        return self.impersonated or self.principal

    @property
    def acting_jwt(self) -> str:
        return self.impersonation_jwt or self.jwt


class JwtCache:
    """session-token hash -> (JWT, expiry); bounded, per process."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[str, float]] = {}

    @staticmethod
    def key(session_token: str) -> str:
        return hashlib.sha256(session_token.encode()).hexdigest()

    def get(self, session_token: str) -> str | None:
        entry = self._entries.get(self.key(session_token))
        if entry is None or entry[1] - _JWT_MARGIN_S <= time.time():
            return None
        return entry[0]

    def put(self, session_token: str, jwt: str, expires_at: float) -> None:
        if len(self._entries) >= _CACHE_LIMIT:
            now = time.time()
            self._entries = {k: v for k, v in self._entries.items() if v[1] > now}
            if len(self._entries) >= _CACHE_LIMIT:
                self._entries.clear()
        self._entries[self.key(session_token)] = (jwt, expires_at)

    def drop(self, session_token: str) -> None:
        self._entries.pop(self.key(session_token), None)


def jwt_cache(request: Request) -> JwtCache:
    cache: JwtCache | None = getattr(request.app.state, "console_jwts", None)
    if cache is None:
        cache = JwtCache()
        request.app.state.console_jwts = cache
    return cache


def auth_url(state: AppState, path: str) -> str:
    return f"{state.settings.auth_base_url.rstrip('/')}{path}"


def forwarded_headers(request: Request, state: AppState) -> dict[str, str]:
    """The browser's address for the auth service (believed where the API is a trusted proxy)."""
    address = client_address(request, state.settings)
    return {"x-forwarded-for": address} if address else {}


async def _principal_of(
    jwt: str, request: Request, state: AppState, *, scan_only: bool = False
) -> Principal | None:
    try:
        claims = await verifier_of(state).verify(jwt)
    except (InvalidToken, JwksUnavailable):
        return None
    if scan_only:
        amr = claims.raw.get("amr")
        if not isinstance(amr, list) or "scan" not in amr or claims.raw.get("impersonatedBy"):
            return None
        if claims.role in ("admin", "operator"):
            return None
    sid = claims.raw.get("sid")
    by = claims.raw.get("impersonatedBy")
    return Principal(
        user_id=claims.sub,
        email=claims.email,
        role=claims.role or "customer",
        session_id=sid if isinstance(sid, str) else None,
        impersonated_by=by if isinstance(by, str) else None,
        source=client_address(request, state.settings),
        expires_at=claims.exp,
    )


async def _fresh_jwt(session_token: str, state: AppState) -> str | None:
    try:
        response = await state.http.get(
            auth_url(state, "/api/auth/token"),
            headers={"authorization": f"Bearer {session_token}"},
        )
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    token = response.json().get("token")
    return token if isinstance(token, str) else None


async def console_user(request: Request, state: AppState) -> ConsoleUser | None:
    """The signed-in user of this request, or None (no cookie, session ended, user banned)."""
    session_token = request.cookies.get(COOKIE)
    if not session_token:
        return await _scan_user(request, state)
    cache = jwt_cache(request)
    jwt = cache.get(session_token)
    principal = await _principal_of(jwt, request, state) if jwt else None
    if principal is None:
        jwt = await _fresh_jwt(session_token, state)
        if jwt is None:
            cache.drop(session_token)
            return None
        principal = await _principal_of(jwt, request, state)
        if principal is None or principal.expires_at is None:
            return None
        cache.put(session_token, jwt, principal.expires_at)
    assert jwt is not None
    user = ConsoleUser(session_token=session_token, jwt=jwt, principal=principal)
    as_jwt = request.cookies.get(IMPERSONATION_COOKIE)
    if as_jwt and user.is_operator:
        impersonated = await _principal_of(as_jwt, request, state)
        if impersonated is not None and impersonated.impersonated_by == principal.user_id:
            return ConsoleUser(
                session_token=session_token,
                jwt=jwt,
                principal=principal,
                impersonation_jwt=as_jwt,
                impersonated=impersonated,
            )
    return user


async def _scan_user(request: Request, state: AppState) -> ConsoleUser | None:
    """The driver a scan signed in, while the JWT in ``SCAN_COOKIE`` lasts."""
    jwt = request.cookies.get(SCAN_COOKIE)
    if not jwt:
        return None
    principal = await _principal_of(jwt, request, state, scan_only=True)
    if principal is None:
        return None
    return ConsoleUser(session_token=jwt, jwt=jwt, principal=principal, by_scan=True)


def secure_cookies(state: AppState) -> bool:
    return state.settings.require_env() not in ("dev", "test")
