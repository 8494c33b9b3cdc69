"""Inbound Lago webhooks (``POST /api/webhook/lago``) and the operator's replay route.

Signature check (``X-Lago-Signature``) with the one algorithm the operator configured
(``POLARIS_LAGO_WEBHOOK_ALGORITHM``, Lago's endpoint setting; a request naming another one in
``X-Lago-Signature-Algorithm`` is refused, so a client cannot pick the weaker check):

- ``hmac``: base64(HMAC-SHA256(``settings.lago_webhook_secret``, raw body)), compared in
  constant time;
- ``jwt``: an RS256 JWT signed by Lago whose claim ``data`` is the raw body, verified with
  Lago's public key (PEM, or the base64 of the PEM that ``GET /api/v1/webhooks/public_key``
  returns). Without a configured key, JWT-signed webhooks are refused. A token that carries a
  signed time (``iat``, ``exp``) outside ``POLARIS_LAGO_WEBHOOK_TOLERANCE_S`` is refused.

Every refusal is 401 ``INVALID_SIGNATURE`` (also for a signature that is not ASCII); a body over
``POLARIS_LAGO_WEBHOOK_MAX_BODY_BYTES`` is 413 before anything is parsed.

Replays: ``X-Lago-Unique-Key`` is not signed, so a verified webhook is stored once per *signed
body* (its SHA-256) as well as once per key, and processed by ``LagoWebhookWorkflow``. Lago's
redeliveries, and a captured webhook re-sent under any key, answer 200 ``duplicate`` without a
second row or run. (Lago's HMAC signature covers no timestamp; the digest is what makes a replay
harmless, for as long as the row is kept.) If Temporal cannot be reached the row stays
``pending`` and the answer is 503, so Lago retries — and the retry (a duplicate) starts the run.

Routers: :data:`router` (webhook, reads the public key from settings when such a setting exists)
or :func:`build_webhook_router` (explicit key); :func:`build_admin_router` (the event log, replay,
the breaker's state and reset) takes the admin check as a dependency.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey
from pydantic import BaseModel
from temporalio.service import RPCError

from activities.lago_webhooks import (
    BreakerState,
    replay_webhook_event,
    start_webhook_workflow,
    store_webhook_event,
)
from api.authz import Principal
from api.deps import State
from api.errors import ApiError, NotFound
from api.services import Services, actor_of
from config.settings import Settings
from db.billing_models import WEBHOOK_PENDING
from services import lago_webhook_log

log = logging.getLogger("polaris.api.webhooks.lago")

WEBHOOK_PATH = "/api/webhook/lago"
REPLAY_PATH = "/api/admin/webhooks/lago/{event_id}/replay"
EVENTS_PATH = "/api/admin/webhooks/lago"
BREAKER_PATH = "/api/admin/webhooks/lago/breaker"


class InvalidSignature(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(401, "INVALID_SIGNATURE", message)


class BodyTooLarge(ApiError):
    def __init__(self, limit_bytes: int) -> None:
        super().__init__(413, "PAYLOAD_TOO_LARGE", f"the body is larger than {limit_bytes} bytes")


class WebhookAccepted(BaseModel):
    id: int
    status: str
    duplicate: bool


class ReplayStarted(BaseModel):
    id: int
    replay_of: int
    status: str


# -- signature checks (pure) ------------------------------------------------------------------


def hmac_signature(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def verify_hmac(body: bytes, signature: str, secret: str) -> bool:
    # Bytes, not str: compare_digest refuses non-ASCII text with a TypeError (a 500).
    presented = signature.strip().encode("utf-8", "replace")
    return hmac.compare_digest(hmac_signature(secret, body).encode(), presented)


def load_public_key(value: str) -> RSAKey:
    """A PEM public key, or the base64 of one (Lago's ``/webhooks/public_key`` answer)."""
    text = value.strip()
    if not text.startswith("-----BEGIN"):
        try:
            text = base64.b64decode(text, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError("Lago webhook public key is neither PEM nor base64 PEM") from exc
    return RSAKey.import_key(text)


def verify_jwt(body: bytes, token: str, public_key: RSAKey) -> dict[str, Any] | None:
    """The token's claims when it is Lago's signature over ``body``, else ``None``."""
    try:
        claims = dict(jwt.decode(token.strip(), public_key, algorithms=["RS256"]).claims)
    except (JoseError, ValueError, TypeError):
        return None
    data = claims.get("data")
    if isinstance(data, str):
        return claims if hmac.compare_digest(data.encode(), body) else None
    try:  # a JSON object rather than its text: compare the values
        same = data is not None and bool(data == json.loads(body))
    except ValueError:
        return None
    return claims if same else None


def signed_time_refusal(claims: dict[str, Any], tolerance_s: int, now_s: float) -> str | None:
    """Why a token's signed times make it a replay (or a forgery from the future), if they do.

    Lago's tokens carry no time today; one that does is held to it.
    """
    iat, exp = claims.get("iat"), claims.get("exp")
    for name, value in (("iat", iat), ("exp", exp)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return f"the token's {name} is not a time"
    if iat is not None and now_s - iat > tolerance_s:
        return f"the webhook was signed more than {tolerance_s} s ago"
    if iat is not None and iat - now_s > tolerance_s:
        return "the webhook was signed in the future"
    if exp is not None and now_s > exp:
        return "the webhook's signature has expired"
    return None


async def read_body(request: Request, limit_bytes: int) -> bytes:
    """The raw body, refused (413) as soon as it is known to exceed ``limit_bytes``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit_bytes:
        raise BodyTooLarge(limit_bytes)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit_bytes:
            raise BodyTooLarge(limit_bytes)
    return bytes(body)


def _verify(
    settings: Settings,
    body: bytes,
    signature: str | None,
    named_algorithm: str | None,
    explicit_key: RSAKey | None,
) -> None:
    if not signature:
        raise InvalidSignature("X-Lago-Signature is missing")
    algorithm = settings.lago_webhook_algorithm
    if named_algorithm is not None and named_algorithm.strip().lower() != algorithm:
        raise InvalidSignature(
            f"this endpoint accepts {algorithm} signatures only (POLARIS_LAGO_WEBHOOK_ALGORITHM)"
        )
    if algorithm == "hmac":
        if not verify_hmac(body, signature, settings.lago_webhook_secret.get_secret_value()):
            raise InvalidSignature("the HMAC signature does not match the body")
        return
    key = explicit_key or _configured_key(settings)
    if key is None:
        raise InvalidSignature("JWT-signed webhooks need POLARIS_LAGO_WEBHOOK_PUBLIC_KEY")
    claims = verify_jwt(body, signature, key)
    if claims is None:
        raise InvalidSignature("the JWT signature does not verify or does not cover the body")
    refusal = signed_time_refusal(claims, settings.lago_webhook_tolerance_s, time.time())
    if refusal is not None:
        raise InvalidSignature(refusal)


# -- routes -----------------------------------------------------------------------------------


def build_webhook_router(public_key: str | None = None) -> APIRouter:
    """The webhook route; ``public_key`` (PEM or base64 PEM) enables JWT-signed webhooks.

    Without it, the key is read from ``settings.lago_webhook_public_key`` if that setting
    exists (``POLARIS_LAGO_WEBHOOK_PUBLIC_KEY``).
    """
    explicit = load_public_key(public_key) if public_key else None
    api = APIRouter(tags=["webhooks"])

    @api.post(WEBHOOK_PATH, response_model=WebhookAccepted)
    async def receive_lago_webhook(
        request: Request,
        state: State,
        x_lago_signature: Annotated[str | None, Header()] = None,
        x_lago_signature_algorithm: Annotated[str | None, Header()] = None,
        x_lago_unique_key: Annotated[str | None, Header()] = None,
    ) -> WebhookAccepted:
        body = await read_body(request, state.settings.lago_webhook_max_body_bytes)
        _verify(state.settings, body, x_lago_signature, x_lago_signature_algorithm, explicit)

        if not x_lago_unique_key:
            raise ApiError(400, "BAD_REQUEST", "X-Lago-Unique-Key is missing")
        payload = _payload(body)
        stored = await store_webhook_event(
            state.sessions,
            unique_key=x_lago_unique_key[:255],
            webhook_type=str(payload["webhook_type"])[:100],
            payload=payload,
            body_sha256=hashlib.sha256(body).hexdigest(),
        )
        if stored.status == WEBHOOK_PENDING:
            # Also for a duplicate still pending: the first delivery may not have reached Temporal.
            try:
                client = await state.temporal()
                await start_webhook_workflow(
                    client, stored.id, task_queue=state.settings.temporal_task_queue
                )
            except (RPCError, OSError, RuntimeError) as exc:
                log.warning("Lago webhook %s stored, Temporal unavailable: %s", stored.id, exc)
                raise ApiError(
                    503, "UNAVAILABLE", "stored; processing could not start, retry later"
                ) from exc
        return WebhookAccepted(id=stored.id, status=stored.status, duplicate=stored.duplicate)

    return api


def _configured_key(settings: Settings) -> RSAKey | None:
    value = settings.lago_webhook_public_key
    text = value.get_secret_value() if value is not None else ""
    return load_public_key(text) if text else None


def _payload(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise ApiError(400, "BAD_REQUEST", "the body is not JSON") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("webhook_type"), str):
        raise ApiError(400, "BAD_REQUEST", "the body has no webhook_type")
    return payload


def require_admin_placeholder() -> None:
    """Refuses everyone until the real admin check is wired (see :func:`build_admin_router`)."""
    raise ApiError(403, "FORBIDDEN", "operator access is not configured")


def build_admin_router(
    require_admin: Callable[..., Any] = require_admin_placeholder,
) -> APIRouter:
    """Operator routes for the webhook log; ``require_admin`` is a FastAPI dependency."""
    api = APIRouter(tags=["admin"], dependencies=[Depends(require_admin)])

    # A default, not an annotation: annotations are resolved from the module's globals, where
    # this closure's ``require_admin`` is not.
    admin = Depends(require_admin)

    @api.post(REPLAY_PATH, response_model=ReplayStarted, status_code=202)
    async def replay_lago_webhook(
        event_id: int, state: State, ctx: Services, principal: Principal = admin
    ) -> ReplayStarted:
        """Process a stored webhook again, as a new event row (audited)."""
        try:
            client = await state.temporal()
        except (RPCError, OSError, RuntimeError) as exc:
            raise ApiError(503, "UNAVAILABLE", "Temporal is not reachable") from exc
        try:
            stored = await replay_webhook_event(
                state.sessions, client, event_id, task_queue=state.settings.temporal_task_queue
            )
        except LookupError as exc:
            raise NotFound("webhook event") from exc
        await lago_webhook_log.audit_replay(ctx, actor_of(principal), event_id, stored.id)
        return ReplayStarted(id=stored.id, replay_of=event_id, status=stored.status)

    @api.get(EVENTS_PATH, response_model=list[lago_webhook_log.WebhookEventOut])
    async def list_lago_webhooks(
        ctx: Services,
        status: Annotated[str | None, Query(max_length=16)] = None,
        webhook_type: Annotated[str | None, Query(max_length=100)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> list[lago_webhook_log.WebhookEventOut]:
        """The stored webhooks (and replays), newest first."""
        return await lago_webhook_log.list_events(
            ctx, status=status, webhook_type=webhook_type, limit=limit, offset=offset
        )

    @api.get(BREAKER_PATH, response_model=BreakerState)
    async def lago_webhook_breaker(ctx: Services) -> BreakerState:
        """Open: webhooks are stored as ``skipped`` (replay them after the reset)."""
        return await lago_webhook_log.breaker(ctx)

    @api.post(f"{BREAKER_PATH}/reset", response_model=BreakerState)
    async def reset_lago_webhook_breaker(
        ctx: Services, principal: Principal = admin
    ) -> BreakerState:
        """Close the breaker (audited)."""
        return await lago_webhook_log.reset(ctx, actor_of(principal))

    return api


router = build_webhook_router()
admin_router = build_admin_router()

__all__ = [
    "BodyTooLarge",
    "InvalidSignature",
    "admin_router",
    "build_admin_router",
    "build_webhook_router",
    "hmac_signature",
    "load_public_key",
    "read_body",
    "require_admin_placeholder",
    "router",
    "signed_time_refusal",
    "verify_hmac",
    "verify_jwt",
]
