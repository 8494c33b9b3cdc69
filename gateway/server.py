"""The WebSocket shell: routing, the OCPP handshake rules, security profile 1.

``process_request`` runs before the WebSocket handshake completes, so every refusal is a plain
HTTP answer: 404 for an unknown path or charger (an unknown charger is recorded as pending,
``gateway/pending.py``), 400 without the ``ocpp1.6`` or ``ocpp2.0.1`` subprotocol (the version is
chosen per connection in the charger's order: ``gateway/negotiation.py``), 401 for missing or wrong
credentials (and, outside dev, for a charger that has none and no operator exemption), 403 for a
decommissioned charger, 409 when a connection without credentials would displace an
authenticated one, 429 while the client address or the chargeBoxId is locked out after wrong
passwords, 503 when too many handshakes are being checked or PostgreSQL cannot say who the
charger is. Health and metrics are not served here (this port is public): they are on the
gateway's metrics port (``observability/http.py``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from urllib.parse import unquote
from weakref import WeakKeyDictionary

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from db.engine import autocommit
from db.models import Charger
from gateway import journal
from gateway.charge_point import GatewayContext
from gateway.connection_state import ConnectionStateWriter
from gateway.handshake_limits import HandshakeGuard, Outcome, Ticket, client_address
from gateway.negotiation import OCPP201, SUPPORTED, VERSION_OF, choose, offered_in
from gateway.ocpp201.charge_point import GatewayChargePoint201
from gateway.passwords import verify_password
from gateway.pending import PendingRecorder
from gateway.registry import Admission, ChargerRegistry
from gateway.steve_relay import charge_point_factory
from observability.logs import bind
from observability.metrics import CHARGERS_CONNECTED, HANDSHAKE_FAILURES

log = logging.getLogger(__name__)

SUBPROTOCOL = "ocpp1.6"
PATH_PREFIXES = ("/ocpp/", "/steve/websocket/CentralSystemService/")
# Close code for a socket that lost the race against an authenticated connection.
CLOSE_POLICY_VIOLATION = 1008
# The reason label of polaris_gateway_handshake_failures_total, from the refusal's status.
HANDSHAKE_REASONS: dict[int, str] = {
    HTTPStatus.BAD_REQUEST: "subprotocol",
    HTTPStatus.UNAUTHORIZED: "unauthorized",
    HTTPStatus.FORBIDDEN: "decommissioned",
    HTTPStatus.NOT_FOUND: "unknown_charger",
    HTTPStatus.CONFLICT: "credentials_conflict",
    HTTPStatus.TOO_MANY_REQUESTS: "locked_out",
    HTTPStatus.SERVICE_UNAVAILABLE: "unavailable",
}


def charge_box_id_from_path(path: str) -> str | None:
    path = path.split("?", 1)[0]
    for prefix in PATH_PREFIXES:
        if path.startswith(prefix):
            rest = unquote(path[len(prefix) :])
            if rest and "/" not in rest and len(rest) <= 255:
                return rest
    return None


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """``(user, password)`` from an HTTP Basic header; None for anything malformed.

    websockets hands over non-ASCII header bytes as surrogate escapes, which base64 refuses with
    a plain ValueError (binascii.Error is its subclass): such a header is malformed, not a crash.
    """
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def _unauthorized(connection: ServerConnection, text: str = "Unauthorized\n") -> Response:
    response = connection.respond(HTTPStatus.UNAUTHORIZED, text)
    response.headers["WWW-Authenticate"] = 'Basic realm="OCPP", charset="UTF-8"'
    return response


def _retry_later(connection: ServerConnection, status: HTTPStatus, wait_s: float) -> Response:
    response = connection.respond(status, "Try again later\n")
    response.headers["Retry-After"] = str(max(1, math.ceil(wait_s)))
    return response


class OcppServer:
    def __init__(self, ctx: GatewayContext, registry: ChargerRegistry) -> None:
        self.ctx = ctx
        self.registry = registry
        self.guard = HandshakeGuard(ctx.settings)
        # scrypt runs here, never on the loop's default executor: a flood of wrong passwords
        # then occupies a few threads instead of every thread the process has.
        self.hash_pool = ThreadPoolExecutor(
            max_workers=ctx.settings.gateway_auth_hash_workers, thread_name_prefix="gw-scrypt"
        )
        self.pending_handshakes = 0
        # Handshakes waiting for one of those slots, first come first served.
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        self.pending = PendingRecorder(
            ctx.sf,
            max_rows=ctx.settings.gateway_pending_chargers_max,
            interval_s=ctx.settings.gateway_pending_charger_interval_s,
        )
        # How each admitted connection got in, from process_request to handle.
        self._admissions: WeakKeyDictionary[ServerConnection, Admission] = WeakKeyDictionary()
        # What serves a connection: GatewayChargePoint, or a SteVe relay (gateway/steve_relay.py).
        self.charge_point_class = charge_point_factory(ctx)
        # Connections and disconnections, written in the order they happen, many per
        # transaction: a closing socket's "disconnected" never lands after the "connected" of the
        # connection that replaced it (gateway/connection_state.py).
        self.connection_states = ConnectionStateWriter(
            ctx.sf, ctx.settings.gateway_instance, ctx.wake_relay
        )

    async def close(self) -> None:
        self.hash_pool.shutdown(wait=False, cancel_futures=True)
        await self.connection_states.close()

    def _peer(self, connection: ServerConnection, request: Request) -> str | None:
        remote = connection.remote_address
        return client_address(
            str(remote[0]) if remote else None,
            request.headers.get_all("X-Forwarded-For"),
            self.ctx.settings.gateway_trusted_proxies,
        )

    async def process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        response = await self._process_request(connection, request)
        if response is not None:
            HANDSHAKE_FAILURES.labels(HANDSHAKE_REASONS.get(response.status_code, "other")).inc()
        return response

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        charge_box_id = charge_box_id_from_path(request.path)
        if charge_box_id is None:
            return connection.respond(HTTPStatus.NOT_FOUND, "Not a charger endpoint\n")
        if choose(offered_in(request.headers.get_all("Sec-WebSocket-Protocol"))) is None:
            return connection.respond(
                HTTPStatus.BAD_REQUEST, f"Subprotocol {' or '.join(SUPPORTED)} required\n"
            )
        peer = self._peer(connection, request)
        # Admission is decided before the first await, so a burst of concurrent handshakes sees
        # each other's reservations (and the cap's slots are counted synchronously).
        ticket = self.guard.admit(
            peer,
            charge_box_id,
            offers_credentials=request.headers.get("Authorization") is not None,
        )
        if not isinstance(ticket, Ticket):
            return _retry_later(connection, HTTPStatus.TOO_MANY_REQUESTS, ticket)
        try:
            slot = await self._take_slot()
        except BaseException:
            self.guard.settle(ticket, Outcome.NEUTRAL)
            raise
        if not slot:
            self.guard.settle(ticket, Outcome.NEUTRAL)
            return _retry_later(connection, HTTPStatus.SERVICE_UNAVAILABLE, 1)
        outcome = Outcome.NEUTRAL
        try:
            answer, outcome = await self._check_charger(connection, request, charge_box_id, peer)
            return answer
        finally:
            self._release_slot()
            self.guard.settle(ticket, outcome)

    async def _take_slot(self) -> bool:
        """One of the ``gateway_max_pending_handshakes`` slots, at once or after waiting in line
        (at most ``gateway_handshake_queue`` wait, each at most ``…_queue_wait_s``); False: 503."""
        settings = self.ctx.settings
        if (
            self.pending_handshakes < settings.gateway_max_pending_handshakes
            and not self._slot_waiters
        ):
            self.pending_handshakes += 1
            return True
        if len(self._slot_waiters) >= settings.gateway_handshake_queue:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._slot_waiters.append(waiter)
        try:
            await asyncio.wait({waiter}, timeout=settings.gateway_handshake_queue_wait_s)
        except asyncio.CancelledError:
            # The handshake was abandoned while it waited: a slot already handed over goes on.
            if waiter.done():
                self._release_slot()
            else:
                self._drop_waiter(waiter)
            raise
        if waiter.done():
            return True  # the slot was handed over (pending_handshakes counts it already)
        self._drop_waiter(waiter)
        return False

    def _drop_waiter(self, waiter: asyncio.Future[None]) -> None:
        waiter.cancel()
        with contextlib.suppress(ValueError):
            self._slot_waiters.remove(waiter)

    def _release_slot(self) -> None:
        """Hand the slot to the first handshake waiting for one, or free it."""
        while self._slot_waiters:
            waiter = self._slot_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.pending_handshakes -= 1

    async def _check_charger(
        self,
        connection: ServerConnection,
        request: Request,
        charge_box_id: str,
        peer: str | None,
    ) -> tuple[Response | None, Outcome]:
        settings = self.ctx.settings
        try:
            # One statement: autocommit, one round trip.
            async with asyncio.timeout(self.ctx.db_timeout_s), autocommit(self.ctx.sf) as s:
                row = (
                    await s.execute(
                        select(
                            Charger.password_hash,
                            Charger.pending_password_hash,
                            Charger.allow_unauthenticated,
                            Charger.decommissioned_at,
                        ).where(Charger.charge_box_id == charge_box_id)
                    )
                ).first()
            if row is None and settings.gateway_auto_register:
                await journal.auto_register(self.ctx.sf, charge_box_id, peer)
                log.info("auto-registered charger %s", charge_box_id)
                return await self._admit(
                    connection, charge_box_id, Admission(False, peer, "auto_register")
                )
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            log.error("cannot check charger %s: %r", charge_box_id, exc)
            return connection.respond(
                HTTPStatus.SERVICE_UNAVAILABLE, "Try again later\n"
            ), Outcome.NEUTRAL
        if row is None:
            await self._record_pending(charge_box_id, peer)
            return connection.respond(HTTPStatus.NOT_FOUND, "Unknown charger\n"), Outcome.NEUTRAL
        if row.decommissioned_at is not None:
            log.warning("charger %s is decommissioned: refused %s", charge_box_id, peer)
            return connection.respond(
                HTTPStatus.FORBIDDEN, "Charger is decommissioned\n"
            ), Outcome.NEUTRAL
        creds = basic_credentials(request.headers.get("Authorization"))
        # A passwordless charger that was given a password (rotation) and presents it.
        rotating = (
            row.pending_password_hash is not None
            and creds is not None
            and creds[0] == charge_box_id
        )
        if row.password_hash or rotating:
            if creds is None or creds[0] != charge_box_id:
                return _unauthorized(connection), Outcome.NEUTRAL
            match = await self._match_password(
                creds[1], row.pending_password_hash, row.password_hash
            )
            if match == "pending":
                await self._promote(charge_box_id, row.pending_password_hash, peer)
            if match is not None:
                response, _ = await self._admit(connection, charge_box_id, Admission(True, peer))
                return response, Outcome.SUCCEEDED
            if row.password_hash:
                log.warning("charger %s: wrong password from %s", charge_box_id, peer)
                return _unauthorized(connection), Outcome.FAILED
            # A passwordless charger with a rotation under way, offering something else: as
            # before the rotation, its credentials decide nothing (it may still be exempt).
        if row.allow_unauthenticated:
            exemption = "allow_unauthenticated"
        elif not settings.gateway_requires_charger_credentials:
            exemption = "auto_register" if settings.gateway_auto_register else "dev"
        else:
            log.warning(
                "charger %s has no password and is not marked allow_unauthenticated: refused %s",
                charge_box_id,
                peer,
            )
            return _unauthorized(connection, "Charger has no credentials\n"), Outcome.NEUTRAL
        return await self._admit(connection, charge_box_id, Admission(False, peer, exemption))

    async def _match_password(
        self, password: str, pending_hash: str | None, current_hash: str | None
    ) -> str | None:
        """Which stored password ``password`` is: ``pending`` (a rotation's new one, tried first),
        ``current``, or None."""
        loop = asyncio.get_running_loop()
        for name, stored in (("pending", pending_hash), ("current", current_hash)):
            if not stored:
                continue
            ok = await loop.run_in_executor(self.hash_pool, verify_password, password, stored)
            if ok:
                return name
        return None

    async def _promote(self, charge_box_id: str, pending_hash: str, peer: str | None) -> None:
        """The charger proved the rotated password: it replaces the old one (audited). If this
        cannot be written the old password keeps working until the next connection promotes."""
        try:
            async with asyncio.timeout(self.ctx.db_timeout_s):
                promoted = await journal.promote_password(
                    self.ctx.sf,
                    charge_box_id,
                    pending_hash,
                    source=peer,
                    gateway_instance=self.ctx.settings.gateway_instance,
                )
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            log.error("charger %s: new password not promoted: %r", charge_box_id, exc)
            return
        if promoted:
            log.info(
                "charger %s authenticated with its new password: the old one is void", charge_box_id
            )

    async def _record_pending(self, charge_box_id: str, peer: str | None) -> None:
        try:
            async with asyncio.timeout(self.ctx.db_timeout_s):
                await self.pending.record(charge_box_id, peer, self.ctx.clock())
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            log.error("unknown charger %s not recorded as pending: %r", charge_box_id, exc)

    async def _admit(
        self, connection: ServerConnection, charge_box_id: str, admission: Admission
    ) -> tuple[Response | None, Outcome]:
        if not self.registry.may_replace(charge_box_id, admission):
            live = self.registry.admission(charge_box_id)
            log.warning(
                "charger %s: refused %s without credentials while it is connected with them",
                charge_box_id,
                admission.peer,
            )
            await self._audit("charger.connection_refused", charge_box_id, live, admission)
            response = connection.respond(
                HTTPStatus.CONFLICT, "Charger is connected with credentials\n"
            )
            return response, Outcome.FAILED
        self._admissions[connection] = admission
        return None, Outcome.NEUTRAL

    async def _audit(
        self, action: str, charge_box_id: str, old: Admission | None, new: Admission
    ) -> None:
        details: dict[str, object] = {
            "gateway_instance": self.ctx.settings.gateway_instance,
            "old_peer": old.peer if old else None,
            "old_authenticated": old.authenticated if old else None,
            "new_peer": new.peer,
            "new_authenticated": new.authenticated,
            "new_exemption": new.exemption,
        }
        try:
            async with asyncio.timeout(self.ctx.db_timeout_s):
                await journal.audit_charger_connection(
                    self.ctx.sf, action, charge_box_id, source=new.peer, details=details
                )
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            log.error("%s: %s not audited: %r", charge_box_id, action, exc)

    async def handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        charge_box_id = charge_box_id_from_path(ws.request.path)
        assert charge_box_id is not None
        admission = self._admissions.pop(ws)
        # Every line logged for this connection (its handlers, its tasks) names the charger.
        bind(charge_box_id=charge_box_id)
        if not self.registry.may_replace(charge_box_id, admission):
            # An authenticated handshake for this charger finished while this one was checked.
            log.warning(
                "charger %s: connection from %s lost to an authenticated one",
                charge_box_id,
                admission.peer,
            )
            await self._audit(
                "charger.connection_refused",
                charge_box_id,
                self.registry.admission(charge_box_id),
                admission,
            )
            await ws.close(CLOSE_POLICY_VIOLATION, "charger is connected with credentials")
            return
        # The class follows what THIS connection negotiated, never the charger row.
        protocol = ws.subprotocol or SUBPROTOCOL
        # 2.0.1 connections are served here; SteVe (a relay when configured) speaks 1.6 only.
        charge_point = GatewayChargePoint201 if protocol == OCPP201 else self.charge_point_class
        cp = charge_point(charge_box_id, ws, self.ctx)
        old = self.registry.put(cp, admission)
        if not admission.authenticated:
            log.warning(
                "charger %s connected WITHOUT authentication from %s (%s)",
                charge_box_id,
                admission.peer,
                admission.exemption,
            )
        if old is not None:
            # The charger reconnected while its old socket looked alive: the new one wins.
            log.warning(
                "charger %s: connection from %s replaced by one from %s (authenticated: %s)",
                charge_box_id,
                old.admission.peer,
                admission.peer,
                admission.authenticated,
            )
            cp.spawn(old.cp._connection.close(1000, "replaced by a new connection"))
            await self._audit(
                "charger.connection_replaced", charge_box_id, old.admission, admission
            )
        try:
            await self.connection_states.connected(
                charge_box_id, self.ctx.clock(), ocpp_version=VERSION_OF[protocol]
            )
        except (SQLAlchemyError, OSError) as exc:
            log.error("%s: connection not recorded: %r", charge_box_id, exc)
        log.info("charger %s connected (%s)", charge_box_id, protocol)
        CHARGERS_CONNECTED.inc()
        try:
            await cp.start()
        except ConnectionClosed:
            pass
        finally:
            CHARGERS_CONNECTED.dec()
            await cp.close_background()
            # The charger may have reconnected (here) while this socket was closing: then the
            # new connection's "connected" stands (and is queued after this would have been).
            if self.registry.remove(cp) and self.registry.get(charge_box_id) is None:
                try:
                    await self.connection_states.disconnected(charge_box_id)
                except (SQLAlchemyError, OSError) as exc:
                    log.error("%s: disconnection not recorded: %r", charge_box_id, exc)
            log.info("charger %s disconnected", charge_box_id)
