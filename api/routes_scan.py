"""Scan-to-login and tap-to-add (threat model: docs/identity.md, "Scan-to-login: threat model").

1. Arm.
   - QR sign-in, ``POST /scan/login {charge_box_id, secret}``, no account: the secret comes from
     the charger's QR code and proves presence at that charger. An unknown charger, a charger
     without a code and a wrong code answer one identical 404; a charger that connects without
     a password answers 403 ``SCAN_UNAVAILABLE`` (anyone could send its taps). Limited per
     client address and per charger (429).
   - Tap-to-add, ``POST /chargers/{id}/scan`` (live admin): ``register`` only — an operator
     never arms a sign-in, which would hand them a driver's account outside read-only
     impersonation.
   One open arm per charger (409 ``SCAN_BUSY``), living ``scan_arm_ttl_s``. The answer carries a
   one-time ``claim`` secret (only its SHA-256 is stored).
2. Tap: ``gateway/scan_intercept.py`` records it (a QR sign-in never changes the charger's answer).
3. Exchange: the claim holder polls ``POST /scan/{id}/exchange``: 202 while waiting; once, and
   only within ``scan_claim_window_s`` of the tap, a short-lived JWT for the card's owner (never
   an operator; never the auth service's session token) or the registered card.
4. Rotate a charger's QR secret: ``POST /chargers/{id}/scan-secret`` (live admin), answered once.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.exceptions import HTTPException

from api.authz import LiveAdmin
from api.client_address import client_address
from api.deps import AppState, State, get_state
from api.errors import ApiError, NotFound
from api.ratelimit import rate_limit
from api.scan_sign_in import sign_in_by_tap
from api.services import Services
from db.audit import add_audit, write_audit
from db.identity_models import SCAN_LOGIN, SCAN_REGISTER, ScanArm
from db.models import Charger, EvCard
from db.scan_secrets import RotationRefused, ScanSecretCheck, check_scan_secret, rotate_scan_secret
from services import local_lists

router = APIRouter(prefix="/api/v1", tags=["scan"])

ScanPurpose = Literal["login", "register"]


class ArmIn(BaseModel):
    purpose: Literal["register"] = "register"


class QrLoginIn(BaseModel):
    charge_box_id: str = Field(min_length=1, max_length=255)
    secret: str = Field(min_length=1, max_length=200)


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
    id_tag: str | None = None  # tap-to-add only: a sign-in never reveals the card's idTag
    user_id: str | None = None
    jwt: str | None = None
    expires_at: datetime | None = None


class ScanSecretOut(BaseModel):
    charge_box_id: str
    secret: str
    qr_url: str
    rotated_at: datetime


def _digest(claim: str) -> str:
    return hashlib.sha256(claim.encode()).hexdigest()


def _no_such_code() -> ApiError:
    # One answer for an unknown charger, a charger without a code and a wrong code.
    return ApiError(404, "NOT_FOUND", "no charger has this scan code")


async def _qr_arm_limit(request: Request, response: Response) -> None:
    """Per client address, before anything is looked up (so it answers alike for any charger)."""
    settings = get_state(request).settings
    limit = rate_limit("scan-login", settings.scan_arms_per_client_per_minute, 60)
    await limit(request, response)


async def _db_now(db: AsyncSession) -> datetime:
    """The database clock: the gateway stamps taps with it too, so windows of a few seconds
    hold across processes and machines."""
    now: datetime = (await db.execute(select(func.now()))).scalar_one()
    return now


async def _per_charger_limit(db: AsyncSession, state: AppState, cb: str, now: datetime) -> None:
    settings = state.settings
    window = timedelta(seconds=settings.scan_arms_per_charger_window_s)
    count, oldest = (
        await db.execute(
            select(func.count(), func.min(ScanArm.created_at)).where(
                ScanArm.charge_box_id == cb,
                ScanArm.purpose == SCAN_LOGIN,
                ScanArm.created_at > now - window,
            )
        )
    ).one()
    if count >= settings.scan_arms_per_charger and oldest is not None:
        wait_s = max(1, math.ceil((oldest + window - now).total_seconds()))
        raise HTTPException(
            429,
            "this charger was armed too often; retry later",
            headers={"Retry-After": str(wait_s)},
        )


async def _arm(
    state: State, charge_box_id: str, purpose: str, armed_by: str, source: str | None
) -> ArmOut:
    claim = secrets.token_urlsafe(32)
    async with state.sessions() as db, db.begin():
        # One open arm per charger: serialise armers on the charger row.
        if await db.get(Charger, charge_box_id, with_for_update=True) is None:
            raise NotFound("charger")
        now = await _db_now(db)
        if purpose == SCAN_LOGIN:
            await _per_charger_limit(db, state, charge_box_id, now)
        busy = await db.scalar(
            select(ScanArm.id).where(
                ScanArm.charge_box_id == charge_box_id,
                ScanArm.consumed_at.is_(None),
                ScanArm.expires_at > now,
            )
        )
        if busy is not None:
            raise ApiError(409, "SCAN_BUSY", "a scan is already armed on this charger")
        arm = ScanArm(
            id=str(uuid.uuid4()),
            charge_box_id=charge_box_id,
            purpose=purpose,
            claim_sha256=_digest(claim),
            armed_by=armed_by,
            armed_from=source,
            created_at=now,
            expires_at=now + timedelta(seconds=state.settings.scan_arm_ttl_s),
            result={},
        )
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
    dependencies=[Depends(_qr_arm_limit)],
)
async def arm_qr_login(body: QrLoginIn, request: Request, state: State) -> ArmOut:
    """The charger's QR sign-in page: the QR code's secret proves you stand at the charger, the
    tap that follows proves who you are."""
    source = client_address(request, state.settings)
    async with state.sessions() as db:
        check = await check_scan_secret(db, body.charge_box_id, body.secret)
    if check is not ScanSecretCheck.VALID:
        await write_audit(
            state.sessions,
            f"qr:{source}",
            "scan.arm_refused",
            subject=body.charge_box_id,
            source=source,
            details={"reason": check.value},
        )
    if check is ScanSecretCheck.REFUSED:
        raise _no_such_code()
    if check is ScanSecretCheck.UNAUTHENTICATED_CHARGER:
        raise ApiError(403, "SCAN_UNAVAILABLE", "scan sign-in is not available at this charger")
    return await _arm(state, body.charge_box_id, SCAN_LOGIN, f"qr:{source}", source)


@router.post(
    "/chargers/{charge_box_id}/scan-secret",
    response_model=ScanSecretOut,
    status_code=201,
    dependencies=[Depends(rate_limit("scan-secret", 10, 60, by="user"))],
)
async def rotate_secret(
    charge_box_id: str, admin: LiveAdmin, state: State, response: Response
) -> ScanSecretOut:
    """A new QR secret for the charger; every earlier code stops working. Shown this once."""
    try:
        async with state.sessions() as db, db.begin():
            rotated = await rotate_scan_secret(
                db,
                charge_box_id,
                actor=admin.actor,
                source=admin.source,
                page_url=state.settings.scan_qr_page_url,
            )
    except RotationRefused as exc:
        if exc.reason == "unknown_charger":
            raise NotFound("charger") from exc
        raise ApiError(
            409,
            "CHARGER_UNAUTHENTICATED",
            "this charger connects without a password; scan sign-in needs an authenticated charger",
        ) from exc
    response.headers["Cache-Control"] = "no-store"
    return ScanSecretOut(
        charge_box_id=rotated.charge_box_id,
        secret=rotated.secret,
        qr_url=rotated.qr_url,
        rotated_at=rotated.rotated_at,
    )


@router.post(
    "/scan/{scan_id}/exchange",
    response_model=ExchangeOut,
    response_model_exclude_none=True,
    responses={202: {"description": "armed, waiting for the tap"}},
    dependencies=[Depends(rate_limit("scan-exchange", 120, 60))],
)
async def exchange(
    scan_id: str, body: ExchangeIn, request: Request, state: State, ctx: Services
) -> Any:
    source = client_address(request, state.settings)
    window = timedelta(seconds=state.settings.scan_claim_window_s)
    async with state.sessions() as db:
        arm = await db.get(ScanArm, scan_id)
        now = await _db_now(db)
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
    # One-time, and only right after the tap: whoever did not claim by then has lost the race.
    async with state.sessions() as db, db.begin():
        claimed = await db.scalar(
            update(ScanArm)
            .where(
                ScanArm.id == scan_id,
                ScanArm.exchanged_at.is_(None),
                ScanArm.consumed_at >= func.now() - window,
            )
            .values(exchanged_at=func.now())
            .returning(ScanArm.id)
        )
    if claimed is None:
        async with state.sessions() as db:
            used = await db.scalar(select(ScanArm.exchanged_at).where(ScanArm.id == scan_id))
        if used is not None:
            raise ApiError(409, "SCAN_USED", "this scan was exchanged already")
        raise ApiError(410, "SCAN_EXPIRED", "the card was tapped too long ago; arm again")
    if arm.purpose == SCAN_REGISTER:
        out = await _register(state, arm, source)
        if out.status == "registered":
            await local_lists.cards_changed(ctx, [arm.id_tag or ""])
    else:
        result = await sign_in_by_tap(state, arm, source)
        out = ExchangeOut(scan_id=arm.id, **result.model_dump())
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
