"""A small client for the auth service's internal endpoints (``auth/internal*.mjs``).

Used by the API (users, bans, impersonation, live-session checks, scan-to-login JWTs) and by
the card-link activities (provision a user, invite by magic link, compensate). The internal API
lives on the auth service's private listener (``POLARIS_AUTH_INTERNAL_URL``), not its public
port; every call carries the calling process's own token (``POLARIS_AUTH_INTERNAL_TOKEN``).

Exceptions::

    AuthServiceError
     ├── AuthServiceUnavailable   the service did not answer (connection, timeout, 5xx)
     └── AuthServiceRefused       it answered 4xx (``status``, ``code``)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from config.settings import AuthCaller, Settings


class AuthServiceError(Exception):
    """Base class of this module's errors."""


class AuthServiceUnavailable(AuthServiceError):
    """No usable answer: connection refused, timeout or a 5xx."""


class AuthServiceRefused(AuthServiceError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class SessionCheck:
    active: bool
    user_id: str | None = None
    role: str | None = None
    banned: bool = False
    impersonated_by: str | None = None


@dataclass(frozen=True, slots=True)
class ScanSignIn:
    jwt: str
    session_id: str
    user_id: str
    expires_at: datetime


class AuthServiceClient:
    """One per process (the API's ``AppState``) or per activity worker.

    ``base_url`` is the public URL (magic-link verify, ``/api/auth/token``); ``internal_url`` the
    private listener of the internal API.
    """

    def __init__(
        self, http: httpx.AsyncClient, base_url: str, internal_token: str, *, internal_url: str
    ) -> None:
        self._http = http
        self.base_url = base_url.rstrip("/")
        self.internal_url = internal_url.rstrip("/")
        self._token = internal_token

    @classmethod
    def for_caller(
        cls, http: httpx.AsyncClient, settings: Settings, caller: AuthCaller
    ) -> AuthServiceClient:
        return cls(
            http,
            settings.auth_base_url,
            settings.internal_token_for(caller),
            internal_url=settings.auth_internal_base_url,
        )

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        try:
            response = await self._http.request(
                method,
                f"{self.internal_url}{path}",
                json=json,
                params=params,
                headers={"Authorization": f"Bearer {self._token}"},
            )
        except httpx.HTTPError as exc:
            raise AuthServiceUnavailable(f"auth service {method} {path}: {exc!r}") from exc
        if response.status_code >= 500:
            raise AuthServiceUnavailable(f"auth service {method} {path}: {response.status_code}")
        try:
            body = response.json()
        except ValueError as exc:
            raise AuthServiceUnavailable(f"auth service {method} {path}: not JSON") from exc
        if response.status_code >= 400:
            code = str(body.get("error", "error")) if isinstance(body, dict) else "error"
            message = str(body.get("message", "")) if isinstance(body, dict) else ""
            raise AuthServiceRefused(response.status_code, code, message)
        return body

    # -- users --------------------------------------------------------------------------------

    async def ensure_user(
        self,
        email: str,
        *,
        name: str | None = None,
        role: str | None = None,
        password: str | None = None,
    ) -> dict[str, Any]:
        """Create the user unless it exists (then it is answered unchanged, ``created`` false);
        ``password`` is set only on creation."""
        body: dict[str, Any] = {"email": email}
        if name:
            body["name"] = name
        if role:
            body["role"] = role
        if password:
            body["password"] = password
        result: dict[str, Any] = await self._call("POST", "/internal/users", json=body)
        return result

    async def list_users(
        self, *, search: str | None = None, limit: int = 50, offset: int = 0
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if search:
            params["search"] = search
        result: dict[str, Any] = await self._call("GET", "/internal/users", params=params)
        return result

    async def get_user(self, user_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", f"/internal/users/{quote(user_id)}")
        return result

    async def delete_user(self, user_id: str) -> bool:
        result = await self._call("DELETE", f"/internal/users/{quote(user_id)}")
        return bool(result.get("deleted"))

    async def set_role(self, user_id: str, role: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "POST", f"/internal/users/{quote(user_id)}/role", json={"role": role}
        )
        return result

    async def ban(
        self, user_id: str, *, reason: str | None, expires_in_s: int | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if reason:
            body["reason"] = reason
        if expires_in_s:
            body["expiresInSeconds"] = expires_in_s
        result: dict[str, Any] = await self._call(
            "POST", f"/internal/users/{quote(user_id)}/ban", json=body
        )
        return result

    async def unban(self, user_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "POST", f"/internal/users/{quote(user_id)}/unban", json={}
        )
        return result

    # -- sessions -----------------------------------------------------------------------------

    async def check_session(self, session_id: str) -> SessionCheck:
        body = await self._call("POST", "/internal/sessions/check", json={"sessionId": session_id})
        return SessionCheck(
            active=bool(body.get("active")),
            user_id=body.get("userId"),
            role=body.get("role"),
            banned=bool(body.get("banned")),
            impersonated_by=body.get("impersonatedBy"),
        )

    async def revoke_session(self, session_id: str) -> bool:
        body = await self._call("POST", "/internal/sessions/revoke", json={"sessionId": session_id})
        return bool(body.get("revoked"))

    async def impersonate(self, admin_user_id: str, user_id: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "POST",
            "/internal/impersonations",
            json={"adminUserId": admin_user_id, "userId": user_id},
        )
        return result

    # -- magic links and scan-to-login ---------------------------------------------------------

    async def send_invite(self, email: str) -> bool:
        body = await self._call("POST", "/internal/magic-links", json={"email": email})
        return bool(body.get("delivered"))

    async def scan_sign_in(self, user_id: str, *, expires_in_s: int) -> ScanSignIn:
        """A short session for a driver who proved who they are by a tap (scan-to-login), and a
        JWT for it. The auth service keeps the session token; it refuses operators
        (``admin_refused``) and banned users."""
        body = await self._call(
            "POST",
            "/internal/scan-sign-ins",
            json={"userId": user_id, "expiresInSeconds": expires_in_s},
        )
        return ScanSignIn(
            jwt=str(body["jwt"]),
            session_id=str(body["sessionId"]),
            user_id=str(body["userId"]),
            expires_at=datetime.fromisoformat(str(body["expiresAt"]).replace("Z", "+00:00")),
        )


__all__ = [
    "AuthServiceClient",
    "AuthServiceError",
    "AuthServiceRefused",
    "AuthServiceUnavailable",
    "ScanSignIn",
    "SessionCheck",
]
