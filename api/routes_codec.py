"""The payload codec server the Temporal UI calls to show encrypted payloads (docs/selfhosting.md,
"Payload encryption and the codec endpoint").

``POST /api/codec/encode`` and ``POST /api/codec/decode`` take and return Temporal's codec-server
JSON: ``{"payloads": [{"metadata": {"encoding": "<base64>", ...}, "data": "<base64>"}]}``.
Who may call them: a live admin (the bearer JWT of the API), or whoever holds
``POLARIS_CODEC_TOKEN`` (a separate bearer token for a UI whose own access token is not ours).
Anyone else gets 401/403: decoded payloads carry personal data. Every decode is audited.

CORS: the browser running the Temporal UI calls these directly, so the UI's origin
(``POLARIS_TEMPORAL_UI_URL``) is allowed, with the headers the UI sends; no other origin is.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from temporalio.api.common.v1 import Payload

from api.authz import current_user, require_live_admin
from api.client_address import client_address
from api.deps import AppState, State
from api.errors import ApiError
from config.payload_codec import PayloadKeyError
from config.temporal import data_converter
from db.audit import write_audit

router = APIRouter(prefix="/api/codec", tags=["codec"])

ALLOWED_HEADERS = "authorization, content-type, x-namespace"


def _ui_origin(state: AppState) -> str | None:
    base = state.settings.temporal_ui_base()
    if not base:
        return None
    parts = urlsplit(base)
    return f"{parts.scheme}://{parts.netloc}"


def _cors(request: Request, state: AppState, response: Response) -> Response:
    origin = request.headers.get("origin")
    if origin and origin == _ui_origin(state):
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Credentials"] = "true"
        response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
        response.headers["Vary"] = "Origin"
    return response


async def _caller(request: Request, state: AppState) -> str:
    """The audit actor of an allowed caller; raises 401/403 for everyone else."""
    token = state.settings.codec_token
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if (
        token is not None
        and scheme.lower() == "bearer"
        and hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode())
    ):
        return "codec-token"
    principal = await current_user(request, state)
    admin = await require_live_admin(principal, state)
    return admin.actor


def _payloads(body: Any) -> list[Payload]:
    items = body.get("payloads") if isinstance(body, dict) else None
    if not isinstance(items, list):
        raise ApiError(422, "INVALID_INPUT", 'expected {"payloads": [...]}')
    try:
        return [
            Payload(
                metadata={
                    str(k): base64.b64decode(v, validate=True)
                    for k, v in (item.get("metadata") or {}).items()
                },
                data=base64.b64decode(item.get("data") or "", validate=True),
            )
            for item in items
        ]
    except (AttributeError, TypeError, binascii.Error, ValueError):
        raise ApiError(422, "INVALID_INPUT", "payloads must be base64 metadata and data") from None


def _json(payloads: list[Payload]) -> dict[str, Any]:
    return {
        "payloads": [
            {
                "metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                "data": base64.b64encode(p.data).decode(),
            }
            for p in payloads
        ]
    }


@router.options("/{action}", include_in_schema=False)
async def preflight(action: str, request: Request, state: State) -> Response:
    return _cors(request, state, Response(status_code=204))


async def _run(action: str, request: Request, state: AppState) -> Response:
    try:
        actor = await _caller(request, state)
        codec = data_converter(state.settings).payload_codec
        if codec is None:
            raise ApiError(409, "CONFLICT", "payload encryption is off (POLARIS_PAYLOAD_KEYS)")
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(422, "INVALID_INPUT", "the body is not JSON") from None
        payloads = _payloads(body)
        if action == "decode":
            await write_audit(
                state.sessions,
                actor,
                "codec.decode",
                source=client_address(request, state.settings),
                details={
                    "payloads": len(payloads),
                    "namespace": request.headers.get("x-namespace"),
                },
            )
            result = await codec.decode(payloads)
        else:
            result = await codec.encode(payloads)
    except ApiError as exc:
        response: Response = JSONResponse(
            {"error": exc.code, "message": exc.message}, status_code=exc.status
        )
        return _cors(request, state, response)
    except PayloadKeyError:  # a payload sealed with a key this deployment does not hold
        response = JSONResponse(
            {"error": "INVALID_INPUT", "message": "a payload does not open with our keys"},
            status_code=422,
        )
        return _cors(request, state, response)
    return _cors(request, state, JSONResponse(_json(result)))


@router.post("/encode")
async def encode(request: Request, state: State) -> Response:
    return await _run("encode", request, state)


@router.post("/decode")
async def decode(request: Request, state: State) -> Response:
    return await _run("decode", request, state)
