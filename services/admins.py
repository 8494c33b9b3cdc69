"""The first operator of a new installation: an admin account in the auth service.

``polaris admin create`` is how an empty install gets its first admin (``polaris seed demo`` also
makes one, with demo data beside it). Further admins and operators are made by an admin through
the API (``POST /api/v1/users/{id}/role``).
"""

from __future__ import annotations

import secrets
from typing import Any

import httpx

from activities.auth_client import AuthServiceClient, AuthServiceError, AuthServiceRefused
from db.audit import write_audit
from services.actor import Actor
from services.context import ServiceContext
from services.errors import InvalidInput, Unavailable

ADMIN_ROLE = "admin"


async def create_admin(
    ctx: ServiceContext,
    actor: Actor,
    email: str,
    *,
    name: str = "Administrator",
    password: str | None = None,
) -> dict[str, Any]:
    """Create ``email`` as an admin, or promote the existing account. The password (given, or
    generated) is answered only when the account was created, once."""
    email = email.strip().lower()
    if "@" not in email or len(email) > 320:
        raise InvalidInput(
            "not an e-mail address", issues=[{"path": ["email"], "message": "an e-mail address"}]
        )
    if password is not None and len(password) < 12:
        raise InvalidInput(
            "the password is too short",
            issues=[{"path": ["password"], "message": "at least 12 characters"}],
        )
    chosen = password or secrets.token_urlsafe(18)
    async with httpx.AsyncClient(timeout=10.0) as http:
        auth = AuthServiceClient.for_caller(http, ctx.settings, "api")
        try:
            found = await auth.list_users(search=email, limit=100)
            before = next(
                (u for u in found.get("users", []) if str(u.get("email", "")).lower() == email),
                None,
            )
            # The auth service gives an existing account the role asked for.
            user = await auth.ensure_user(email, name=name, role=ADMIN_ROLE, password=chosen)
            promoted = before is not None and before.get("role") != ADMIN_ROLE
        except AuthServiceRefused as exc:
            raise InvalidInput(f"the auth service refused: {exc.message or exc.code}") from exc
        except AuthServiceError as exc:
            raise Unavailable(f"the auth service is not reachable: {exc}") from exc
    created = bool(user.get("created"))
    await write_audit(
        ctx.sessions,
        actor.id,
        "admin.created" if created else ("admin.promoted" if promoted else "admin.exists"),
        subject=str(user["id"]),
        source=actor.source,
        details={"email": email},
    )
    answer: dict[str, Any] = {
        "user_id": str(user["id"]),
        "email": email,
        "created": created,
        "promoted": promoted,
    }
    if created:
        answer["password"] = chosen if password is None else None
        answer["password_generated"] = password is None
    return answer
