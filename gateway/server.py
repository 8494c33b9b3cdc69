"""The WebSocket shell: routing, the OCPP handshake rules, security profile 1, /healthz.

``process_request`` runs before the WebSocket handshake completes, so every refusal is a plain
HTTP answer: 404 for an unknown path or charger, 400 without the ``ocpp1.6`` subprotocol, 401 for
a missing or wrong password, 503 when PostgreSQL cannot say who the charger is.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Callable
from http import HTTPStatus
from urllib.parse import unquote

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from db.models import Charger
from gateway import journal
from gateway.charge_point import GatewayChargePoint, GatewayContext
from gateway.passwords import verify_password

log = logging.getLogger(__name__)

SUBPROTOCOL = "ocpp1.6"
PATH_PREFIXES = ("/ocpp/", "/steve/websocket/CentralSystemService/")


def charge_box_id_from_path(path: str) -> str | None:
    path = path.split("?", 1)[0]
    for prefix in PATH_PREFIXES:
        if path.startswith(prefix):
            rest = unquote(path[len(prefix) :])
            if rest and "/" not in rest and len(rest) <= 255:
                return rest
    return None


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


class ChargerRegistry:
    """The live sockets of this process, by chargeBoxId (the newest connection wins)."""

    def __init__(self) -> None:
        self._by_id: dict[str, GatewayChargePoint] = {}

    def get(self, charge_box_id: str) -> GatewayChargePoint | None:
        return self._by_id.get(charge_box_id)

    def put(self, cp: GatewayChargePoint) -> GatewayChargePoint | None:
        old = self._by_id.get(cp.charge_box_id)
        self._by_id[cp.charge_box_id] = cp
        return old

    def remove(self, cp: GatewayChargePoint) -> bool:
        if self._by_id.get(cp.charge_box_id) is cp:
            del self._by_id[cp.charge_box_id]
            return True
        return False

    def __len__(self) -> int:
        return len(self._by_id)


class OcppServer:
    def __init__(
        self,
        ctx: GatewayContext,
        registry: ChargerRegistry,
        health: Callable[[], dict[str, object]],
    ) -> None:
        self.ctx = ctx
        self.registry = registry
        self._health = health

    async def process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        if request.path.split("?", 1)[0] == "/healthz":
            response = connection.respond(HTTPStatus.OK, json.dumps(self._health()) + "\n")
            response.headers["Content-Type"] = "application/json"
            return response
        charge_box_id = charge_box_id_from_path(request.path)
        if charge_box_id is None:
            return connection.respond(HTTPStatus.NOT_FOUND, "Not a charger endpoint\n")
        offered = {
            p.strip()
            for h in request.headers.get_all("Sec-WebSocket-Protocol")
            for p in h.split(",")
        }
        if SUBPROTOCOL not in offered:
            return connection.respond(
                HTTPStatus.BAD_REQUEST, f"Subprotocol {SUBPROTOCOL} required\n"
            )
        try:
            async with asyncio.timeout(self.ctx.db_timeout_s), self.ctx.sf() as s:
                row = (
                    await s.execute(
                        select(Charger.charge_box_id, Charger.password_hash).where(
                            Charger.charge_box_id == charge_box_id
                        )
                    )
                ).first()
            if row is None and self.ctx.settings.gateway_auto_register:
                remote = connection.remote_address
                await journal.auto_register(
                    self.ctx.sf, charge_box_id, str(remote[0]) if remote else None
                )
                log.info("auto-registered charger %s", charge_box_id)
                return None
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            log.error("cannot check charger %s: %r", charge_box_id, exc)
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "Try again later\n")
        if row is None:
            return connection.respond(HTTPStatus.NOT_FOUND, "Unknown charger\n")
        if row.password_hash:
            creds = basic_credentials(request.headers.get("Authorization"))
            ok = (
                creds is not None
                and creds[0] == charge_box_id
                and await asyncio.to_thread(verify_password, creds[1], row.password_hash)
            )
            if not ok:
                response = connection.respond(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
                response.headers["WWW-Authenticate"] = 'Basic realm="OCPP", charset="UTF-8"'
                return response
        return None

    async def handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        charge_box_id = charge_box_id_from_path(ws.request.path)
        assert charge_box_id is not None
        cp = GatewayChargePoint(charge_box_id, ws, self.ctx)
        old = self.registry.put(cp)
        if old is not None:
            # The charger reconnected while its old socket looked alive: the new one wins.
            cp.spawn(old._connection.close(1000, "replaced by a new connection"))
        try:
            await journal.set_connected(
                self.ctx.sf, charge_box_id, self.ctx.settings.gateway_instance, self.ctx.clock()
            )
        except (SQLAlchemyError, OSError) as exc:
            log.error("%s: connection not recorded: %r", charge_box_id, exc)
        log.info("charger %s connected", charge_box_id)
        try:
            await cp.start()
        except ConnectionClosed:
            pass
        finally:
            await cp.close_background()
            if self.registry.remove(cp):
                try:
                    await journal.set_disconnected(
                        self.ctx.sf, charge_box_id, self.ctx.settings.gateway_instance
                    )
                except (SQLAlchemyError, OSError) as exc:
                    log.error("%s: disconnection not recorded: %r", charge_box_id, exc)
            log.info("charger %s disconnected", charge_box_id)
