"""Turning a recorded tap into a sign-in (the last step of scan-to-login).

The card must be active, unblocked, not reported lost and linked to an account. The auth
service then mints a short session and a JWT for that account (``POST /internal/scan-sign-ins``)
and refuses operators; the API checks the JWT it got back as any route would (signature, issuer,
audience, subject) and refuses an admin role again, so neither side alone decides that an
operator account may be taken by a tap. Only the JWT reaches the client.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import select

from activities.auth_client import AuthServiceError, AuthServiceRefused
from api.auth_jwt import AuthJwtError
from api.authz import ADMIN_ROLE, auth_client_of, verifier_of
from api.deps import AppState
from api.errors import ApiError
from db.audit import write_audit
from db.identity_models import ScanArm
from db.models import EvCard, UserMapping


class SignInResult(BaseModel):
    status: Literal["signed_in", "unknown_card"]
    user_id: str | None = None
    jwt: str | None = None
    expires_at: datetime | None = None


def _refused() -> ApiError:
    return ApiError(
        403,
        "SCAN_SIGN_IN_REFUSED",
        "this account cannot sign in by scanning; use a sign-in link or your password",
    )


async def _owner(state: AppState, id_tag: str) -> str | None:
    async with state.sessions() as db:
        row = (
            await db.execute(
                select(EvCard, UserMapping.user_id)
                .join(UserMapping, UserMapping.id_tag == EvCard.id_tag)
                .where(EvCard.id_tag == id_tag, UserMapping.is_active)
            )
        ).first()
    if row is None or row[0].lost_at is not None or row[0].blocked or not row[0].is_active:
        return None
    return str(row[1])


async def sign_in_by_tap(state: AppState, arm: ScanArm, source: str | None) -> SignInResult:
    assert arm.id_tag is not None
    base = {"scan_id": arm.id, "charge_box_id": arm.charge_box_id}
    user_id = await _owner(state, arm.id_tag)
    if user_id is None:
        await write_audit(
            state.sessions,
            arm.armed_by,
            "auth.scan_sign_in",
            subject=arm.id_tag,
            source=source,
            details={**base, "signed_in": False, "reason": "unknown_card"},
        )
        return SignInResult(status="unknown_card")
    try:
        minted = await auth_client_of(state).scan_sign_in(
            user_id, expires_in_s=state.settings.scan_jwt_ttl_s
        )
        claims = await verifier_of(state).verify(minted.jwt)
    except AuthServiceRefused as exc:
        await write_audit(
            state.sessions,
            arm.armed_by,
            "auth.scan_sign_in",
            subject=user_id,
            source=source,
            details={**base, "signed_in": False, "reason": exc.code},
        )
        raise _refused() from exc
    except (AuthServiceError, AuthJwtError) as exc:
        raise ApiError(503, "UNAVAILABLE", "the auth service is not reachable") from exc
    if claims.sub != user_id or ADMIN_ROLE in (claims.role or "").split(","):
        # The auth service should have refused; end the session it made, then refuse here.
        with contextlib.suppress(AuthServiceError):
            await auth_client_of(state).revoke_session(minted.session_id)
        await write_audit(
            state.sessions,
            arm.armed_by,
            "auth.scan_sign_in",
            subject=user_id,
            source=source,
            details={**base, "signed_in": False, "reason": "admin_refused"},
        )
        raise _refused()
    await write_audit(
        state.sessions,
        f"user:{user_id}",
        "auth.scan_sign_in",
        subject=user_id,
        source=source,
        details={**base, "signed_in": True, "session_id": minted.session_id},
    )
    return SignInResult(
        status="signed_in", user_id=user_id, jwt=minted.jwt, expires_at=minted.expires_at
    )


__all__ = ["SignInResult", "sign_in_by_tap"]
