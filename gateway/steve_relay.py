"""SteVe relay mode: each charger's frames go to SteVe unchanged over an upstream socket of its
own, SteVe's answers come back unchanged, and the same events are tapped into our journal (and
so into the session workflows) as in standalone mode.

Per charger (``RelayChargePoint``, made by the server when ``POLARIS_STEVE_OCPP_URL`` is set):

- **Charger → SteVe.** A Call is sent upstream as it came (same text, same unique id); SteVe's
  answer is tapped, then sent to the charger as SteVe wrote it. ``StartTransaction`` is journaled
  with *SteVe's* transaction id (our sequence is moved past it), so the id the charger sees, the
  one SteVe bills against and ours are one. The tap runs before the answer leaves: if a
  transaction message cannot be journaled the charger gets an ``InternalError`` and resends it
  (SteVe keeps one transaction per start, so the resend gets the same id).
- **SteVe unreachable** (not connected, or no answer within ``steve_relay_timeout_s``): the
  charger stays connected; ``StartTransaction``, ``StopTransaction`` and ``MeterValues`` are
  answered with an OCPP ``InternalError`` so the charger keeps and retries them; everything else
  is answered by the gateway itself, as in standalone mode.
- **SteVe → charger.** A Call from SteVe is sent to the charger unchanged and the charger's
  answer (matched by unique id) goes back upstream unchanged.
- **Upstream** reconnects with exponential backoff (1 s doubling, capped at
  ``steve_relay_backoff_max_s``, with jitter) for as long as the charger is connected, and
  presents the charger's own HTTP Basic credentials, if it sent any.

Commands from workflows go through SteVe's REST operations API in this mode
(:class:`SteveCommandRoute`, used by ``gateway/commands.py``), into the same operations log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from ocpp.charge_point import camel_to_snake_case
from ocpp.exceptions import InternalError, OCPPError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from domain.energy import OutOfRange, check_register, check_timestamp
from gateway import transactions
from gateway.charge_point import (
    INT32_MAX,
    GatewayChargePoint,
    GatewayContext,
    journal_guard,
    parse_time,
    refuse,
    within,
)

log = logging.getLogger(__name__)

# Messages a charger keeps and retries when the central system answers InternalError.
TRANSACTION_ACTIONS = frozenset({"StartTransaction", "StopTransaction", "MeterValues"})
CALL, CALL_RESULT, CALL_ERROR = 2, 3, 4


class UpstreamDown(Exception):
    """SteVe is not connected, or did not answer in time."""


class Upstream:
    """One charger's socket to SteVe, kept open (with backoff) while the charger is connected."""

    def __init__(
        self,
        charge_box_id: str,
        url: str,
        *,
        on_call: Callable[[str, str], Awaitable[None]],
        authorization: str | None,
        backoff_max_s: float,
    ) -> None:
        self.charge_box_id = charge_box_id
        self.url = url.rstrip("/") + "/" + charge_box_id
        self._on_call = on_call
        self._headers = {"Authorization": authorization} if authorization else {}
        self._backoff_max_s = backoff_max_s
        self._ws: ClientConnection | None = None
        self._pending: dict[str, asyncio.Future[str]] = {}
        self.connected = asyncio.Event()
        self.connects = 0

    async def run(self) -> None:
        delay = 1.0
        while True:
            try:
                async with connect(
                    self.url,
                    subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                    additional_headers=self._headers,
                    open_timeout=10,
                    ping_interval=20,
                ) as ws:
                    self._ws = ws
                    self.connects += 1
                    self.connected.set()
                    delay = 1.0
                    log.info("%s: relay to SteVe connected", self.charge_box_id)
                    await self._read(ws)
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ConnectionClosed) as exc:
                log.warning("%s: SteVe unreachable: %r", self.charge_box_id, exc)
            finally:
                self._ws = None
                self.connected.clear()
                for fut in self._pending.values():
                    if not fut.done():
                        fut.set_exception(UpstreamDown("the SteVe socket closed"))
                self._pending.clear()
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, self._backoff_max_s)

    async def _read(self, ws: ClientConnection) -> None:
        async for raw in ws:
            text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
            try:
                frame = json.loads(text)
                kind, unique_id = int(frame[0]), str(frame[1])
            except (ValueError, TypeError, IndexError, KeyError):
                log.warning("%s: unreadable frame from SteVe dropped", self.charge_box_id)
                continue
            if kind == CALL:
                await self._on_call(unique_id, text)
                continue
            fut = self._pending.pop(unique_id, None)
            if fut is not None and not fut.done():
                fut.set_result(text)

    async def forward(self, raw: str, unique_id: str, timeout_s: float) -> str:
        """Send a charger's Call to SteVe; SteVe's answer frame, as text."""
        ws = self._ws
        if ws is None:
            raise UpstreamDown("not connected to SteVe")
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[unique_id] = fut
        try:
            await ws.send(raw)
            async with asyncio.timeout(timeout_s):
                return await fut
        except (ConnectionClosed, TimeoutError) as exc:
            raise UpstreamDown(f"SteVe did not answer: {type(exc).__name__}") from exc
        finally:
            self._pending.pop(unique_id, None)

    async def send(self, raw: str) -> None:
        """A charger's answer to one of SteVe's Calls."""
        ws = self._ws
        if ws is None:
            log.warning("%s: SteVe went away before the charger answered it", self.charge_box_id)
            return
        with contextlib.suppress(ConnectionClosed):
            await ws.send(raw)


class RelayChargePoint(GatewayChargePoint):
    def __init__(self, charge_box_id: str, connection: Any, ctx: GatewayContext) -> None:
        super().__init__(charge_box_id, connection, ctx)
        request = getattr(connection, "request", None)
        authorization = request.headers.get("Authorization") if request is not None else None
        url = ctx.settings.steve_ocpp_url
        assert url, "relay mode needs POLARIS_STEVE_OCPP_URL"
        self.upstream = Upstream(
            charge_box_id,
            url,
            on_call=self._from_steve,
            authorization=authorization,
            backoff_max_s=ctx.settings.steve_relay_backoff_max_s,
        )
        self._steve_calls: set[str] = set()
        self._raw: str = ""
        self._upstream_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._upstream_task = asyncio.create_task(self.upstream.run())
        # The first frames of a connection (BootNotification) wait a moment for SteVe.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.ctx.settings.steve_relay_timeout_s):
                await self.upstream.connected.wait()
        try:
            await super().start()
        finally:
            self._upstream_task.cancel()
            await asyncio.gather(self._upstream_task, return_exceptions=True)

    # -- SteVe → charger ---------------------------------------------------------------------

    async def _from_steve(self, unique_id: str, raw: str) -> None:
        self._steve_calls.add(unique_id)
        try:
            await self._connection.send(raw)
        except ConnectionClosed:
            self._steve_calls.discard(unique_id)

    # -- charger → SteVe ---------------------------------------------------------------------

    async def route_message(self, raw_msg: str | bytes) -> None:
        text = raw_msg if isinstance(raw_msg, str) else raw_msg.decode("utf-8", "replace")
        answer_id = _answer_id(text)
        if answer_id is not None and answer_id in self._steve_calls:
            self._steve_calls.discard(answer_id)
            self.on_frame()
            await self.upstream.send(text)
            return
        self._raw = text
        await super().route_message(raw_msg)

    async def _handle_call(self, msg: Any) -> None:
        raw = self._raw
        try:
            answer = await self.upstream.forward(
                raw, msg.unique_id, self.ctx.settings.steve_relay_timeout_s
            )
        except UpstreamDown as exc:
            if msg.action in TRANSACTION_ACTIONS:
                log.warning("%s: %s answered InternalError: %s", self.id, msg.action, exc)
                error = InternalError(
                    description="central system unreachable; retry",
                    details={"cause": "SteVe is unreachable"},
                )
                await self._send(msg.create_call_error(error).to_json())
                return
            await super()._handle_call(msg)  # answered by the gateway, as in standalone mode
            return
        try:
            await self._tap(msg, answer)
        except OCPPError as error:
            if msg.action in TRANSACTION_ACTIONS:
                await self._send(msg.create_call_error(error).to_json())
                return
            log.error(
                "%s: %s not journaled (SteVe's answer relayed): %r", self.id, msg.action, error
            )
        except Exception as exc:  # a tap that fails never keeps SteVe's answer from the charger
            log.exception("%s: tapping %s failed: %r", self.id, msg.action, exc)
            if msg.action in TRANSACTION_ACTIONS:
                failed = InternalError(details={"cause": f"{msg.action} could not be journaled"})
                await self._send(msg.create_call_error(failed).to_json())
                return
        await self._send(answer)

    async def _tap(self, msg: Any, answer_raw: str) -> None:
        answer = json.loads(answer_raw)
        if int(answer[0]) != CALL_RESULT:
            return  # SteVe refused it: nothing happened
        payload = msg.payload if isinstance(msg.payload, dict) else {}
        if msg.action == "StartTransaction":
            await self._tap_start(payload, answer[2] if len(answer) > 2 else {})
            return
        handlers = self.route_map.get(msg.action) or {}
        handler = handlers.get("_on_action")
        if handler is not None:
            await handler(**camel_to_snake_case(payload))

    async def _tap_start(self, payload: dict[str, Any], answer: dict[str, Any]) -> None:
        tx_id = answer.get("transactionId")
        if not isinstance(tx_id, int):
            raise InternalError(details={"cause": "SteVe's answer has no transactionId"})
        now = self.ctx.clock()
        connector_id = int(payload["connectorId"])
        stamped = parse_time(str(payload["timestamp"]))
        within(connector_id, "connectorId", low=1, high=INT32_MAX)
        try:
            started_at = check_timestamp(stamped, now, self.ctx.limits)
            meter_start_wh = check_register(int(payload["meterStart"]), self.ctx.limits)
        except OutOfRange as exc:
            raise refuse(exc) from None
        steve_status = (answer.get("idTagInfo") or {}).get("status")
        async with journal_guard(self.ctx, "StartTransaction"):
            outcome = await transactions.start_transaction(
                self.ctx.sf,
                charge_box_id=self.charge_box_id,
                connector_id=connector_id,
                id_tag=str(payload["idTag"]),
                meter_start_wh=meter_start_wh,
                started_at=started_at,
                reservation_id=payload.get("reservationId"),
                now=now,
                transaction_id=tx_id,
                upstream_status=steve_status if isinstance(steve_status, str) else None,
            )
        if outcome.transaction_id != tx_id:
            log.error(
                "%s: SteVe's transaction %s is journaled as %s",
                self.id,
                tx_id,
                outcome.transaction_id,
            )
        if outcome.created:
            self.ctx.wake_relay()


def _answer_id(text: str) -> str | None:
    """The unique id of a CallResult / CallError frame; None for anything else."""
    if not text.lstrip().startswith(("[3", "[4")):
        return None
    try:
        frame = json.loads(text)
        if int(frame[0]) in (CALL_RESULT, CALL_ERROR):
            return str(frame[1])
    except (ValueError, TypeError, IndexError):
        return None
    return None


def charge_point_factory(
    ctx: GatewayContext,
) -> Callable[[str, Any, GatewayContext], GatewayChargePoint]:
    """What the OCPP server builds per connection: a relay when SteVe's OCPP URL is set."""
    if ctx.settings.steve_ocpp_url:
        return RelayChargePoint
    return GatewayChargePoint


__all__ = [
    "TRANSACTION_ACTIONS",
    "RelayChargePoint",
    "Upstream",
    "UpstreamDown",
    "charge_point_factory",
]
