"""Scan-to-login and tap-to-add.

1. Arm: an operator arms a charger for 60 s (``login`` or ``register``), or a driver's QR
   sign-in page arms ``login`` for the charger it names. The answer carries a one-time
   ``claim`` secret (only its SHA-256 is stored).
2. Tap: the gateway intercepts the next Authorize there — answered Blocked, no charge — and
   records the idTag on the arm (``gateway/scan_intercept.py``).
3. Exchange: the claim holder polls ``POST /api/v1/scan/{id}/exchange``: 202 while waiting;
   then, once, a signed-in session for the card's owner (``login``: a one-time magic-link-style
   token minted by the auth service and redeemed here) or the registered card (``register``).

All three are rate limited; refusals answer 429 with Retry-After.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import select, update

from activities.auth_client import AuthServiceError, AuthServiceRefused
from api.audit import add_audit, write_audit
from api.authz import LiveAdmin, auth_client_of
from api.client_address import client_address
from api.deps import State
from api.errors import ApiError, NotFound
from api.ratelimit import rate_limit
from db.identity_models import SCAN_LOGIN, SCAN_REGISTER, ScanArm
from db.models import Charger, EvCard, UserMapping

router = APIRouter(prefix="/api/v1", tags=["scan"])

SCAN_TTL = timedelta(seconds=60)

ScanPurpose = Literal["login", "register"]


class ArmIn(BaseModel):
    purpose: ScanPurpose = "login"


class QrLoginIn(BaseModel):
    charge_box_id: str = Field(min_length=1, max_length=255)


class ArmOut(BaseModel):
    scan_id: str
    claim: str
    charge_box_id: str
    purpose: ScanPurpose
    expires_at: datetime


class ExchangeIn(BaseModel):
    claim: str = Field(min_length=16, max_length=200)


class ExchangeOut(BaseModel):
    status: Literal["signed_in", "registered", "already_registered", "unknown_card"]
    scan_id: str
    id_tag: str | None = None
    user_id: str | None = None
    session_token: str | None = None
    jwt: str | None = None


def _digest(claim: str) -> str:
    return hashlib.sha256(claim.encode()).hexdigest()


async def _arm(
    state: State, charge_box_id: str, purpose: str, armed_by: str, source: str | None
) -> ArmOut:
    now = datetime.now(UTC)
    claim = secrets.token_urlsafe(32)
    arm = ScanArm(
        id=str(uuid.uuid4()),
        charge_box_id=charge_box_id,
        purpose=purpose,
        claim_sha256=_digest(claim),
        armed_by=armed_by,
        armed_from=source,
        created_at=now,
        expires_at=now + SCAN_TTL,
        result={},
    )
    async with state.sessions() as db, db.begin():
        if await db.get(Charger, charge_box_id) is None:
            raise NotFound("charger")
        # One open arm per charger: serialise armers on the charger row.
        await db.get(Charger, charge_box_id, with_for_update=True)
        busy = await db.scalar(
            select(ScanArm.id).where(
                ScanArm.charge_box_id == charge_box_id,
                ScanArm.consumed_at.is_(None),
                ScanArm.expires_at > now,
            )
        )
        if busy is not None:
            raise ApiError(409, "SCAN_BUSY", "a scan is already armed on this charger")
        db.add(arm)
        add_audit(
            db,
            armed_by,
            "scan.armed",
            subject=charge_box_id,
            source=source,
            details={"scan_id": arm.id, "purpose": purpose},
        )
    return ArmOut(
        scan_id=arm.id,
        claim=claim,
        charge_box_id=charge_box_id,
        purpose=purpose,
        expires_at=arm.expires_at,
    )


@router.post(
    "/chargers/{charge_box_id}/scan",
    response_model=ArmOut,
    status_code=201,
    dependencies=[Depends(rate_limit("scan-arm", 10, 60, by="user"))],
)
async def arm_scan(charge_box_id: str, body: ArmIn, admin: LiveAdmin, state: State) -> ArmOut:
    return await _arm(state, charge_box_id, body.purpose, admin.actor, admin.source)


@router.post(
    "/scan/login",
    response_model=ArmOut,
    status_code=201,
    dependencies=[Depends(rate_limit("scan-login", 5, 60))],
)
async def arm_qr_login(body: QrLoginIn, request: Request, state: State) -> ArmOut:
    """The charger's QR sign-in page: no account needed yet, the tap proves who you are."""
    source = client_address(request, state.settings)
    return await _arm(state, body.charge_box_id, SCAN_LOGIN, f"qr:{source}", source)


@router.post(
    "/scan/{scan_id}/exchange",
    response_model=ExchangeOut,
    responses={202: {"description": "armed, waiting for the tap"}},
    dependencies=[Depends(rate_limit("scan-exchange", 120, 60))],
)
async def exchange(scan_id: str, body: ExchangeIn, request: Request, state: State) -> Any:
    source = client_address(request, state.settings)
    now = datetime.now(UTC)
    async with state.sessions() as db:
        arm = await db.get(ScanArm, scan_id)
    # A wrong claim looks exactly like a scan that does not exist.
    if arm is None or not hmac.compare_digest(arm.claim_sha256, _digest(body.claim)):
        raise NotFound("scan")
    if arm.exchanged_at is not None:
        raise ApiError(409, "SCAN_USED", "this scan was exchanged already")
    if arm.consumed_at is None:
        if arm.expires_at <= now:
            raise ApiError(410, "SCAN_EXPIRED", "no card was tapped in time; arm again")
        return JSONResponse(
            {"status": "waiting", "scan_id": scan_id, "expires_at": arm.expires_at.isoformat()},
            status_code=202,
            headers={"Retry-After": "1"},
        )
    async with state.sessions() as db, db.begin():
        claimed = await db.scalar(
            update(ScanArm)
            .where(ScanArm.id == scan_id, ScanArm.exchanged_at.is_(None))
            .values(exchanged_at=now)
            .returning(ScanArm.id)
        )
    if claimed is None:
        raise ApiError(409, "SCAN_USED", "this scan was exchanged already")
    assert arm.id_tag is not None
    if arm.purpose == SCAN_REGISTER:
        out = await _register(state, arm, source)
    else:
        out = await _sign_in(state, arm, source)
    async with state.sessions() as db, db.begin():
        await db.execute(
            update(ScanArm)
            .where(ScanArm.id == scan_id)
            .values(result={"status": out.status, "user_id": out.user_id})
        )
    return out


async def _register(state: State, arm: ScanArm, source: str | None) -> ExchangeOut:
    assert arm.id_tag is not None
    async with state.sessions() as db, db.begin():
        if await db.get(EvCard, arm.id_tag) is not None:
            return ExchangeOut(status="already_registered", scan_id=arm.id, id_tag=arm.id_tag)
        db.add(EvCard(id_tag=arm.id_tag, label="registered by tap"))
        add_audit(
            db,
            arm.armed_by,
            "card.registered",
            subject=arm.id_tag,
            source=source,
            details={"scan_id": arm.id, "charge_box_id": arm.charge_box_id},
        )
    return ExchangeOut(status="registered", scan_id=arm.id, id_tag=arm.id_tag)


async def _sign_in(state: State, arm: ScanArm, source: str | None) -> ExchangeOut:
    assert arm.id_tag is not None
    async with state.sessions() as db:
        row = (
            await db.execute(
                select(EvCard, UserMapping)
                .join(UserMapping, UserMapping.id_tag == EvCard.id_tag)
                .where(EvCard.id_tag == arm.id_tag, UserMapping.is_active)
            )
        ).first()
    if row is None or row[0].lost_at is not None or row[0].blocked or not row[0].is_active:
        await write_audit(
            state.sessions,
            arm.armed_by,
            "auth.scan_sign_in",
            subject=arm.id_tag,
            source=source,
            details={"scan_id": arm.id, "signed_in": False},
        )
        return ExchangeOut(status="unknown_card", scan_id=arm.id)
    mapping = row[1]
    try:
        session = await auth_client_of(state).sign_in_as(mapping.user_id)
    except AuthServiceRefused as exc:
        raise ApiError(403, "SIGN_IN_REFUSED", "this account cannot sign in") from exc
    except AuthServiceError as exc:
        raise ApiError(503, "UNAVAILABLE", "the auth service is not reachable") from exc
    await write_audit(
        state.sessions,
        f"user:{mapping.user_id}",
        "auth.scan_sign_in",
        subject=mapping.user_id,
        source=source,
        details={
            "scan_id": arm.id,
            "id_tag": arm.id_tag,
            "signed_in": True,
            "charge_box_id": arm.charge_box_id,
        },
    )
    return ExchangeOut(
        status="signed_in",
        scan_id=arm.id,
        id_tag=arm.id_tag,
        user_id=mapping.user_id,
        session_token=session.session_token,
        jwt=session.jwt,
    )
