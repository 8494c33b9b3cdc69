"""The SteVe stand-in as one ASGI app: ``/steve/api/v1`` (HTTP Basic, every request and response
checked against SteVe's OpenAPI document) and the OCPP 1.6J central system at
``/steve/websocket/CentralSystemService/{chargeBoxId}``.

Operations are executed as SteVe does: a task id, then one Call per selected charge box over its
OCPP socket, collected into ``successResponses`` / ``errorResponses`` (the station answered with a
CallError) / ``exceptions`` (the station is not connected, or the call failed), with
``taskFinished`` false when the answer did not come within ``call_timeout_s``.

``/__sandbox`` (no auth; tests and ``polaris dev`` only): ``GET state``, ``POST
charging_profiles``.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

from ocpp.exceptions import OCPPError
from ocpp.v16 import call
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.exceptions import ConnectionClosed

from sandbox.steve.central import StarletteSocket, SteveStation
from sandbox.steve.contract import ContractLog, SteveContract
from sandbox.steve.state import SteveState, Tx, iso, now, parse_iso

log = logging.getLogger("sandbox.steve")

API = "/steve/api/v1"
WS_PREFIX = "/steve/websocket/CentralSystemService/"


@dataclass
class SteveConfig:
    user: str = "polaris"
    password: str = "steve-dev-password"
    call_timeout_s: float = 10.0
    strict_contract: bool = True


@dataclass
class SteveStandIn:
    """State shared by the app and whoever drives it (tests keep it across restarts)."""

    config: SteveConfig = field(default_factory=SteveConfig)
    state: SteveState = field(default_factory=SteveState)
    contract: SteveContract = field(default_factory=SteveContract.load)
    contract_log: ContractLog = field(default_factory=ContractLog)
    stations: dict[str, SteveStation] = field(default_factory=dict)
    sockets: dict[str, WebSocket] = field(default_factory=dict)


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    422: "Unprocessable Content",
    500: "Internal Server Error",
}


def error_body(status: int, message: str, path: str) -> dict[str, Any]:
    return {
        "status": status,
        "error": _REASONS.get(status, "Error"),
        "message": message,
        "path": path,
        "timestamp": iso(now()),
    }


# -- the ASGI layers --------------------------------------------------------------------------


class SteveMiddleware:
    """HTTP Basic, then the contract check of the request, the route, the contract check of the
    response (a mismatch is recorded, and in strict mode answered 500)."""

    def __init__(self, app: Any, standin: SteveStandIn) -> None:
        self.app = app
        self.s = standin

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(API + "/"):
            await self.app(scope, receive, send)
            return
        if not self._authorized(scope):
            await _send_json(
                send,
                401,
                error_body(401, "Full authentication is required", path),
                [(b"www-authenticate", b'Basic realm="SteVe"')],
            )
            return
        op = self.s.contract.find(scope["method"], path)
        if op is None:
            await self.app(scope, receive, send)
            return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        query = parse_qs(scope.get("query_string", b"").decode(), keep_blank_values=True)
        body: Any = None
        problems: list[str] = []
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                problems = ["the body is not valid JSON"]
        if not problems:
            problems = self.s.contract.request_problems(op, query, body, bool(raw.strip()))
        if problems:
            log.info("request to %s rejected: %s", op.key, problems)
            status, payload = 400, error_body(400, "; ".join(problems), path)
            await self._finish(op, status, json.dumps(payload).encode(), send)
            return
        scope.setdefault("state", {})["steve_body"] = body
        captured: list[Any] = []

        async def replay() -> Any:
            return {"type": "http.request", "body": raw, "more_body": False}

        async def capture(message: Any) -> None:
            captured.append(message)

        await self.app(scope, replay, capture)
        start = next(m for m in captured if m["type"] == "http.response.start")
        out = b"".join(m.get("body", b"") for m in captured if m["type"] == "http.response.body")
        await self._finish(op, int(start["status"]), out, send)

    def _authorized(self, scope: Any) -> bool:
        header = dict(scope.get("headers", [])).get(b"authorization", b"")
        token = base64.b64encode(f"{self.s.config.user}:{self.s.config.password}".encode())
        return hmac.compare_digest(header, b"Basic " + token)

    async def _finish(self, op: Any, status: int, body: bytes, send: Any) -> None:
        problems = self.s.contract.response_problems(op, status, body)
        self.s.contract_log.checked[(op.key, status)] += 1
        if problems:
            self.s.contract_log.violations.append(
                {"operation": op.key, "status": status, "problems": problems}
            )
            log.error("contract violation: %s", problems)
            if self.s.config.strict_contract:
                status = 500
                body = json.dumps(error_body(500, "; ".join(problems)[:2000], op.template)).encode()
        headers = [(b"content-type", b"application/json")] if body else []
        await _send_raw(send, status, body, headers)


async def _send_raw(send: Any, status: int, body: bytes, headers: list[Any]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_json(send: Any, status: int, body: Any, extra: list[Any] | None = None) -> None:
    await _send_raw(
        send,
        status,
        json.dumps(body).encode(),
        [(b"content-type", b"application/json"), *(extra or [])],
    )


def standin_of(request: Request | WebSocket) -> SteveStandIn:
    standin: SteveStandIn = request.app.state.standin
    return standin


def body_of(request: Request) -> dict[str, Any]:
    body = request.scope.get("state", {}).get("steve_body")
    return body if isinstance(body, dict) else {}


# -- ocppTags ---------------------------------------------------------------------------------


def _flag(value: str | None, actual: bool) -> bool:
    return value in (None, "ALL") or (value == "TRUE") == actual


async def list_tags(request: Request) -> Response:
    st = standin_of(request).state
    q = request.query_params
    at = now()
    out = []
    for tag in st.tags.values():
        expired = tag.expiry is not None and tag.expiry <= at
        if q.get("ocppTagPk") and int(q["ocppTagPk"]) != tag.pk:
            continue
        if q.get("idTag") and q["idTag"] != tag.id_tag:
            continue
        if q.get("parentIdTag") and q["parentIdTag"] != tag.parent_id_tag:
            continue
        if q.get("note") and q["note"] not in (tag.note or ""):
            continue
        if q.get("userFilter") == "OnlyTagsWithUser":
            continue  # the stand-in has no SteVe users
        if not (
            _flag(q.get("expired"), expired)
            and _flag(q.get("blocked"), tag.blocked)
            and _flag(q.get("inTransaction"), st.active_count(tag.id_tag) > 0)
        ):
            continue
        out.append(st.tag_overview(tag))
    return JSONResponse(out)


def _tag_fields(st: SteveState, body: dict[str, Any], *, id_tag: str) -> dict[str, Any]:
    parent = body.get("parentIdTag") or None
    if parent is not None and (parent == id_tag or st.tag_by_id(parent) is None):
        raise ApiError(422, f"The parent OCPP tag '{parent}' does not exist")
    return {
        "parent_id_tag": parent,
        "expiry": parse_iso(body["expiryDate"]) if body.get("expiryDate") else None,
        "max_active": int(body.get("maxActiveTransactionCount", 1)),
        "note": body.get("note"),
    }


async def create_tag(request: Request) -> Response:
    st = standin_of(request).state
    body = body_of(request)
    id_tag = str(body["idTag"])
    if st.tag_by_id(id_tag) is not None:
        raise ApiError(422, f"A user with idTag '{id_tag}' already exists.")
    tag = st.add_tag(id_tag, **_tag_fields(st, body, id_tag=id_tag))
    return JSONResponse(st.tag_overview(tag), status_code=201)


def _tag(request: Request) -> Any:
    st = standin_of(request).state
    tag = st.tags.get(int(request.path_params["pk"]))
    if tag is None:
        raise ApiError(404, f"Could not find this ocppTag: {request.path_params['pk']}")
    return tag


async def get_tag(request: Request) -> Response:
    return JSONResponse(standin_of(request).state.tag_overview(_tag(request)))


async def update_tag(request: Request) -> Response:
    st = standin_of(request).state
    tag = _tag(request)
    for name, value in _tag_fields(st, body_of(request), id_tag=tag.id_tag).items():
        setattr(tag, name, value)
    return JSONResponse(st.tag_overview(tag))


async def delete_tag(request: Request) -> Response:
    st = standin_of(request).state
    tag = _tag(request)
    overview = st.tag_overview(tag)
    del st.tags[tag.pk]
    return JSONResponse(overview)


async def expire_tag(request: Request) -> Response:
    st = standin_of(request).state
    tag = _tag(request)
    tag.expiry = now()
    return JSONResponse(st.tag_overview(tag))


# -- transactions -----------------------------------------------------------------------------


async def list_transactions(request: Request) -> Response:
    st = standin_of(request).state
    q = request.query_params
    pks = {int(v) for v in q.getlist("transactionPk")}
    boxes = set(q.getlist("chargeBoxId"))
    tags = set(q.getlist("ocppIdTag"))
    kind = q.get("type", "ALL")
    period = q.get("periodType", "ALL")
    start_from = parse_iso(q["from"]) if q.get("from") else None
    start_to = parse_iso(q["to"]) if q.get("to") else None
    if period == "FROM_TO" and (start_from is None or start_to is None or start_to <= start_from):
        raise ApiError(400, "'from' and 'to' must be set, and 'to' must be after 'from'")
    horizon = {"TODAY": 1, "LAST_10": 10, "LAST_30": 30, "LAST_90": 90}.get(period)
    out = []
    for tx in sorted(st.transactions.values(), key=lambda t: t.id):
        if (pks and tx.id not in pks) or (boxes and tx.charge_box_id not in boxes):
            continue
        if tags and tx.id_tag not in tags:
            continue
        if q.get("connectorId") and int(q["connectorId"]) != tx.connector_id:
            continue
        if (kind == "ACTIVE" and not tx.active) or (kind == "STOPPED" and tx.active):
            continue
        if horizon is not None and tx.started_at < now() - timedelta(days=horizon):
            continue
        if period == "FROM_TO" and not (start_from <= tx.started_at <= start_to):  # type: ignore[operator]
            continue
        out.append(st.transaction_json(tx))
    return JSONResponse(out)


def _tx(request: Request) -> Tx:
    tx = standin_of(request).state.transactions.get(int(request.path_params["pk"]))
    if tx is None:
        raise ApiError(404, f"Transaction {request.path_params['pk']} not found")
    return tx


async def get_transaction(request: Request) -> Response:
    st = standin_of(request).state
    tx = _tx(request)
    energy_only = request.query_params.get("energyValuesOnly", "true") == "true"
    values = [
        v
        for v in tx.values
        if not energy_only
        or (v.get("measurand") or "Energy.Active.Import.Register")
        == "Energy.Active.Import.Register"
    ]
    return JSONResponse({"transaction": st.transaction_json(tx), "values": values})


async def stop_transaction(request: Request) -> Response:
    st = standin_of(request).state
    tx = _tx(request)
    if not tx.active:
        raise ApiError(422, f"Transaction {tx.id} is already stopped")
    st.stop_transaction(tx.id, st.last_energy_value(tx), now(), None, actor="manual")
    return Response(status_code=200)


# -- operations -------------------------------------------------------------------------------


def _eligible(st: SteveState, id_tag: str) -> None:
    status = st.tag_status(id_tag)
    if status not in ("Accepted", "ConcurrentTx"):
        raise ApiError(422, f"The OCPP tag '{id_tag}' is not eligible: {status}")


def _frame_for(st: SteveState, action: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The OCPP request SteVe sends for an operation (camelCase payload)."""
    if action == "RemoteStartTransaction":
        _eligible(st, body["idTag"])
        payload: dict[str, Any] = {"idTag": body["idTag"]}
        if body.get("connectorId"):
            payload["connectorId"] = body["connectorId"]
        if body.get("chargingProfilePk") is not None:
            payload["chargingProfile"] = _profile(st, body["chargingProfilePk"])
        return action, payload
    if action == "RemoteStopTransaction":
        tx = st.transactions.get(body["transactionId"])
        if tx is None or not tx.active or tx.charge_box_id != body["chargeBoxIdList"][0]:
            raise ApiError(
                422,
                f"Transaction {body['transactionId']} is not active at "
                f"{body['chargeBoxIdList'][0]}",
            )
        return action, {"transactionId": tx.id}
    if action == "Reset":
        return action, {"type": body["resetType"]}
    if action == "UnlockConnector":
        return action, {"connectorId": body["connectorId"]}
    if action == "ChangeAvailability":
        return action, {"connectorId": body.get("connectorId", 0), "type": body["availType"]}
    if action == "TriggerMessage":
        payload = {"requestedMessage": body["triggerMessage"]}
        if body.get("connectorId") is not None:
            payload["connectorId"] = body["connectorId"]
        return action, payload
    if action == "ReserveNow":
        _eligible(st, body["idTag"])
        rid = st.add_reservation(
            charge_box_id=body["chargeBoxIdList"][0],
            connector_id=body["connectorId"],
            id_tag=body["idTag"],
            expiry=body["expiry"],
        )
        return action, {
            "connectorId": body["connectorId"],
            "expiryDate": body["expiry"],
            "idTag": body["idTag"],
            "reservationId": rid,
        }
    if action == "CancelReservation":
        if body["reservationId"] not in st.reservations:
            raise ApiError(422, f"Reservation {body['reservationId']} does not exist")
        return action, {"reservationId": body["reservationId"]}
    if action == "SetChargingProfile":
        profile = _profile(st, body["chargingProfilePk"])
        if body.get("transactionId") is not None:
            profile["transactionId"] = body["transactionId"]
        return action, {"connectorId": body["connectorId"], "csChargingProfiles": profile}
    if action == "ClearCache":
        return action, {}
    raise ApiError(404, f"{action} is not implemented by the SteVe stand-in")


def _profile(st: SteveState, pk: int) -> dict[str, Any]:
    profile = st.charging_profiles.get(pk)
    if profile is None:
        raise ApiError(422, f"Charging profile {pk} does not exist")
    copied: dict[str, Any] = json.loads(json.dumps(profile))
    return copied


async def operation(request: Request) -> Response:
    standin = standin_of(request)
    action = request.path_params["action"]
    body = body_of(request)
    name, payload = _frame_for(standin.state, action, body)
    task_id = standin.state.next_task_id()
    boxes: list[str] = list(body["chargeBoxIdList"])
    results = await asyncio.gather(*(_call(standin, box, name, payload) for box in boxes))
    out: dict[str, Any] = {
        "taskId": task_id,
        "taskFinished": all(r[0] != "timeout" for r in results),
        "successResponses": [],
        "errorResponses": [],
        "exceptions": [],
    }
    for box, (kind, detail) in zip(boxes, results, strict=True):
        if kind == "ok":
            out["successResponses"].append({"chargeBoxId": box, **detail})
        elif kind == "error":
            out["errorResponses"].append({"chargeBoxId": box, **detail})
        elif kind == "exception":
            out["exceptions"].append({"chargeBoxId": box, "exceptionMessage": detail})
    return JSONResponse(out)


async def _call(
    standin: SteveStandIn, box: str, action: str, payload: dict[str, Any]
) -> tuple[str, Any]:
    station = standin.stations.get(box)
    if station is None:
        return "exception", f"ChargeBox '{box}' is not connected (offline)"
    request = getattr(call, action)(**_snake(payload))
    try:
        answer = await asyncio.wait_for(
            station.call(request, suppress=False), standin.config.call_timeout_s
        )
    except TimeoutError:
        return "timeout", None
    except OCPPError as exc:
        return "error", {
            "errorCode": exc.code,
            "errorDescription": exc.description or "",
            "errorDetails": json.dumps(exc.details or {}, default=str),
        }
    except (ConnectionClosed, RuntimeError) as exc:
        return "exception", f"{type(exc).__name__}: {exc}"
    status = getattr(answer, "status", None)
    return "ok", {"response": str(status)} if status is not None else {}


def _snake(payload: dict[str, Any]) -> dict[str, Any]:
    from ocpp.charge_point import camel_to_snake_case

    out: dict[str, Any] = camel_to_snake_case(payload)
    return out


# -- the OCPP endpoint and the sandbox extras -------------------------------------------------


async def central_system(ws: WebSocket) -> None:
    standin = standin_of(ws)
    box = ws.path_params["charge_box_id"]
    offered = ws.scope.get("subprotocols") or []
    if "ocpp1.6" not in offered:
        await ws.close(1002)
        return
    await ws.accept(subprotocol="ocpp1.6")
    station = SteveStation(box, StarletteSocket(ws), standin.state)
    old = standin.sockets.get(box)
    standin.stations[box] = station
    standin.sockets[box] = ws
    if old is not None:
        await old.close(1000)
    try:
        await station.start()
    except ConnectionClosed:
        pass
    finally:
        if standin.stations.get(box) is station:
            del standin.stations[box]
            del standin.sockets[box]


async def sandbox_state(request: Request) -> Response:
    st = standin_of(request).state
    return JSONResponse(
        {
            "tags": [st.tag_overview(t) for t in st.tags.values()],
            "transactions": [st.transaction_json(t) for t in st.transactions.values()],
            "connected": sorted(standin_of(request).stations),
            "contract_violations": standin_of(request).contract_log.violations,
        }
    )


async def add_charging_profile(request: Request) -> Response:
    profile = await request.json()
    if not isinstance(profile, dict):
        return JSONResponse({"error": "a JSON object is required"}, status_code=400)
    pk = standin_of(request).state.add_charging_profile(profile)
    return JSONResponse({"chargingProfilePk": pk}, status_code=201)


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return JSONResponse(error_body(exc.status, exc.message, request.url.path), exc.status)


OPERATIONS = (
    "RemoteStartTransaction",
    "RemoteStopTransaction",
    "Reset",
    "UnlockConnector",
    "ChangeAvailability",
    "TriggerMessage",
    "ReserveNow",
    "CancelReservation",
    "SetChargingProfile",
    "ClearCache",
)


def create_app(standin: SteveStandIn | None = None) -> Any:
    standin = standin or SteveStandIn()
    routes = [
        Route(f"{API}/ocppTags", list_tags, methods=["GET"]),
        Route(f"{API}/ocppTags", create_tag, methods=["POST"]),
        Route(f"{API}/ocppTags/{{pk:int}}", get_tag, methods=["GET"]),
        Route(f"{API}/ocppTags/{{pk:int}}", update_tag, methods=["PUT"]),
        Route(f"{API}/ocppTags/{{pk:int}}", delete_tag, methods=["DELETE"]),
        Route(f"{API}/ocppTags/{{pk:int}}/expire", expire_tag, methods=["PATCH"]),
        Route(f"{API}/transactions", list_transactions, methods=["GET"]),
        Route(f"{API}/transactions/{{pk:int}}", get_transaction, methods=["GET"]),
        Route(f"{API}/transactions/{{pk:int}}/stop", stop_transaction, methods=["PATCH"]),
        Route(f"{API}/operations/{{action}}", operation, methods=["POST"]),
        WebSocketRoute(f"{WS_PREFIX}{{charge_box_id}}", central_system),
        Route("/__sandbox/state", sandbox_state, methods=["GET"]),
        Route("/__sandbox/charging_profiles", add_charging_profile, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
    ]
    app = Starlette(routes=routes, exception_handlers={ApiError: api_error})
    app.state.standin = standin
    return SteveMiddleware(app, standin)
