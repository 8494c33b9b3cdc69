"""The one authorization layer every API route uses.

- :data:`CurrentUser` — the bearer JWT, verified offline against the auth service's JWKS (the
  verifier lives in ``AppState``). Missing or invalid: 401 ``UNAUTHENTICATED``; JWKS unreachable
  and nothing cached: 503.
- :data:`AdminUser` — every admin route: the session behind the JWT is checked with the auth
  service (an answer reused for at most ``POLARIS_API_ADMIN_CHECK_CACHE_S``, see
  ``api/live_sessions.py``) and the *live* role must be ``admin`` (and not an impersonation), else
  403 ``FORBIDDEN``; an ended session or a banned user answers 401 ``SESSION_REVOKED``. The JWT's
  ``role`` claim alone never opens an admin route: it outlives a demotion by up to 15 minutes.
- :data:`LiveUser` / :data:`LiveAdmin` — for sensitive actions: the same check, never cached.
- Impersonation: a JWT whose session an operator started for a driver (``impersonatedBy``) is
  read-only: any method other than GET/HEAD/OPTIONS answers 403 ``IMPERSONATION_READ_ONLY``
  (except :data:`AnyCurrentUser` routes, i.e. stopping the impersonation); every request made
  under impersonation is written to the audit log.
- Ownership: customer routes query with the caller's id and answer 404 for anything that is not
  theirs (:func:`not_found_unless`), never 403, so ids of other drivers' objects leak nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated

from fastapi import Depends, Request

from activities.auth_client import AuthServiceClient, AuthServiceError
from api.auth_jwt import Claims, InvalidToken, JwksUnavailable, JwtVerifier
from api.client_address import client_address
from api.deps import AppState, State
from api.errors import ApiError, NotFound
from api.live_sessions import LiveSessionCache
from db.audit import write_audit

ADMIN_ROLE = "admin"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the JWT's user, and the operator behind an impersonation."""

    user_id: str
    email: str | None
    role: str
    session_id: str | None
    impersonated_by: str | None
    source: str | None
    # When the bearer token expires (epoch seconds): long-lived responses (live streams) end then.
    expires_at: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN_ROLE and self.impersonated_by is None

    @property
    def actor(self) -> str:
        """The audit log's ``actor``: the operator when impersonating."""
        if self.impersonated_by:
            return f"user:{self.impersonated_by}"
        return f"user:{self.user_id}"


def verifier_of(state: AppState) -> JwtVerifier:
    """The process's verifier (made in the lifespan; built here for states made elsewhere)."""
    if state.verifier is None:
        state.verifier = JwtVerifier.for_auth_service(
            state.settings.auth_base_url, http_client=state.http
        )
    return state.verifier


def auth_client_of(state: AppState) -> AuthServiceClient:
    return AuthServiceClient.for_caller(state.http, state.settings, "api")


def unauthenticated(message: str) -> ApiError:
    return ApiError(401, "UNAUTHENTICATED", message)


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthenticated("a bearer token is required")
    return token.strip()


def _principal(claims: Claims, request: Request, state: AppState) -> Principal:
    session_id = claims.raw.get("sid")
    impersonated_by = claims.raw.get("impersonatedBy")
    return Principal(
        user_id=claims.sub,
        email=claims.email,
        role=claims.role or "customer",
        session_id=session_id if isinstance(session_id, str) else None,
        impersonated_by=impersonated_by if isinstance(impersonated_by, str) else None,
        source=client_address(request, state.settings),
        expires_at=claims.exp,
    )


async def _authenticate(request: Request, state: AppState, *, read_only: bool) -> Principal:
    token = _bearer(request)
    try:
        claims = await verifier_of(state).verify(token)
    except InvalidToken as exc:
        raise unauthenticated(f"the token is not valid ({exc.reason})") from exc
    except JwksUnavailable as exc:
        raise ApiError(503, "UNAVAILABLE", "the auth service's keys are unavailable") from exc
    principal = _principal(claims, request, state)
    request.state.user_id = principal.user_id
    if principal.impersonated_by:
        refused = read_only and request.method.upper() not in SAFE_METHODS
        await write_audit(
            state.sessions,
            principal.actor,
            "impersonation.request",
            subject=principal.user_id,
            source=principal.source,
            details={
                "method": request.method,
                "path": request.url.path,
                "refused": refused,
            },
        )
        if refused:
            raise ApiError(
                403, "IMPERSONATION_READ_ONLY", "an impersonation session cannot change anything"
            )
    return principal


async def current_user(request: Request, state: State) -> Principal:
    return await _authenticate(request, state, read_only=True)


async def current_user_any(request: Request, state: State) -> Principal:
    """Like :func:`current_user`, but an impersonation may also mutate (only to end itself)."""
    return await _authenticate(request, state, read_only=False)


CurrentUser = Annotated[Principal, Depends(current_user)]
AnyCurrentUser = Annotated[Principal, Depends(current_user_any)]


def live_sessions_of(state: AppState) -> LiveSessionCache:
    """The process's cache of session checks (admin reads only)."""
    if state.live_sessions is None:
        state.live_sessions = LiveSessionCache(state.settings.api_admin_check_cache_s)
    return state.live_sessions


async def _live(principal: Principal, state: AppState, *, cached: bool = False) -> Principal:
    if principal.session_id is None:
        raise unauthenticated("the token names no session; sign in again")
    cache = live_sessions_of(state)
    check = cache.get(principal.session_id) if cached else None
    if check is None:
        try:
            check = await auth_client_of(state).check_session(principal.session_id)
        except AuthServiceError as exc:
            raise ApiError(
                503, "UNAVAILABLE", "the auth service cannot confirm the session"
            ) from exc
        if cached:
            cache.put(principal.session_id, check)
    if not check.active or check.banned or check.user_id != principal.user_id:
        raise ApiError(401, "SESSION_REVOKED", "the session has ended or the user is banned")
    return replace(principal, role=check.role or "customer")


async def require_admin(principal: CurrentUser, state: State) -> Principal:
    """Admin reads: the live role decides, not the JWT's claim (cached a few seconds)."""
    if not principal.is_admin:  # not even the token claims it: no need to ask
        raise ApiError(403, "FORBIDDEN", "this needs the admin role")
    live = await _live(principal, state, cached=True)
    if not live.is_admin:
        raise ApiError(403, "FORBIDDEN", "this needs the admin role")
    return live


AdminUser = Annotated[Principal, Depends(require_admin)]


async def require_live_session(principal: CurrentUser, state: State) -> Principal:
    """Re-check the session with the auth service (a ban takes effect at once)."""
    return await _live(principal, state)


async def require_live_admin(principal: CurrentUser, state: State) -> Principal:
    live = await _live(principal, state)
    if not live.is_admin:
        raise ApiError(403, "FORBIDDEN", "this needs the admin role")
    return live


LiveUser = Annotated[Principal, Depends(require_live_session)]
LiveAdmin = Annotated[Principal, Depends(require_live_admin)]

# Staff roles of the operations routes (remote operations): what each may send is the
# operation allow-list's business (POLARIS_OPERATION_ALLOWLIST, services/operations.py).
OPERATOR_ROLES = frozenset({ADMIN_ROLE, "operator"})


async def require_live_operator(principal: CurrentUser, state: State) -> Principal:
    """Admin or operator, live-checked like :func:`require_live_admin` (never cached)."""
    if principal.role not in OPERATOR_ROLES or principal.impersonated_by is not None:
        raise ApiError(403, "FORBIDDEN", "this needs the operator or admin role")
    live = await _live(principal, state)
    if live.role not in OPERATOR_ROLES:
        raise ApiError(403, "FORBIDDEN", "this needs the operator or admin role")
    return live


LiveOperator = Annotated[Principal, Depends(require_live_operator)]


def not_found_unless(found: object, what: str) -> None:
    """Customer routes: something absent *or someone else's* is a 404."""
    if found is None:
        raise NotFound(what)


__all__ = [
    "ADMIN_ROLE",
    "OPERATOR_ROLES",
    "AdminUser",
    "AnyCurrentUser",
    "CurrentUser",
    "LiveAdmin",
    "LiveOperator",
    "LiveUser",
    "Principal",
    "auth_client_of",
    "current_user",
    "current_user_any",
    "live_sessions_of",
    "not_found_unless",
    "require_admin",
    "require_live_admin",
    "require_live_operator",
    "require_live_session",
    "verifier_of",
]
