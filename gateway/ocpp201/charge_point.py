"""One charger's OCPP 2.0.1 connection: the same shell as 1.6 (liveness, background tasks, the
journal guard, answers from PostgreSQL only), with 2.0.1 handlers and the 2.0.1 frame check.

The class is chosen per connection from the negotiated subprotocol (``gateway/server.py``),
never from the charger row: chargers switch versions, some open a short 1.6 probe first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar, cast

from ocpp.charge_point import ChargePoint as LibraryChargePoint
from ocpp.exceptions import PropertyConstraintViolationError, SecurityError
from ocpp.messages import CallError
from ocpp.routing import on
from ocpp.v201 import call, call_result
from ocpp.v201.enums import Action

from domain.energy import OutOfRange, check_timestamp
from gateway import firmware_status
from gateway import journal as journal16
from gateway.charge_point import (
    INT32_MAX,
    GatewayChargePoint,
    GatewayContext,
    journal_guard,
    ocpp_time,
    parse_time,
    within,
)
from gateway.frames import UnusableAnswer
from gateway.meter import REFUSED_PROBLEMS
from gateway.metering import store_samples
from gateway.ocpp201 import journal
from gateway.ocpp201 import transactions as tx201
from gateway.ocpp201.auth import decide_token
from gateway.ocpp201.frames import CheckedCall, FrameProblem, check_frame
from gateway.ocpp201.meter import parse_samples_201
from observability.metrics import FRAMES

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
OCPP_VERSION = "2.0.1"
SUBPROTOCOL = "ocpp2.0.1"
# Messages a station may send while its boot is Pending or Rejected (B02/B03): the boot itself;
# anything else only when we asked for it with TriggerMessage.
ALWAYS_ALLOWED = frozenset({"BootNotification"})
KNOWN_VENDORS: frozenset[str] = frozenset()


def handles(action: Action) -> Callable[[F], F]:
    # check_frame() validated the request against the 2.0.1 schema already.
    return cast(Callable[[F], F], on(action, skip_schema_validation=True))


class GatewayChargePoint201(GatewayChargePoint):
    _call = call
    _call_result = call_result
    _ocpp_version = OCPP_VERSION
    ocpp_version = OCPP_VERSION

    def __init__(self, charge_box_id: str, connection: Any, ctx: GatewayContext) -> None:
        super().__init__(charge_box_id, connection, ctx)
        # Only this class's handlers: the 1.6 ones it inherits answer nothing in 2.0.1.
        self.route_map = {
            fn._on_action: {
                "_on_action": getattr(self, name),
                "_skip_schema_validation": fn._skip_schema_validation,
            }
            for name, fn in vars(GatewayChargePoint201).items()
            if hasattr(fn, "_on_action")
        }
        self._request: dict[str, Any] = {}
        # The status of the last BootNotification answered on this connection.
        self.boot_status: str | None = None
        # Actions the charger may send while not Accepted because we triggered them.
        self.triggered: set[str] = set()

    # -- the frame shell ---------------------------------------------------------------

    async def route_message(self, raw_msg: str | bytes) -> None:
        self.on_frame()
        try:
            checked = check_frame(raw_msg, self.route_map)
        except FrameProblem as problem:
            FRAMES.labels("unknown", "rejected").inc()
            self._poison(f"rejected with {problem.error.code}", raw_msg)
            await self._send(problem.call_error_json())
            return
        except UnusableAnswer as exc:
            FRAMES.labels("answer", "dropped").inc()
            self._poison(f"dropped ({exc})", raw_msg)
            return
        if isinstance(checked, str):
            if checked not in self._awaiting:
                FRAMES.labels("answer", "dropped").inc()
                self._poison("dropped: answers no call in flight", raw_msg)
                return
            self._awaiting.discard(checked)
            FRAMES.labels("answer", "ok").inc()
        elif not self._may_send(checked):
            FRAMES.labels(checked.action, "call_error").inc()
            error = SecurityError(
                details={"cause": f"BootNotification is {self.boot_status}: boot first"}
            )
            await self._send(
                CallError(checked.unique_id, error.code, error.description, error.details).to_json()
            )
            return
        else:
            self._request = checked.payload
        await LibraryChargePoint.route_message(self, raw_msg)

    def _may_send(self, checked: CheckedCall) -> bool:
        if self.boot_status in (None, "Accepted") or checked.action in ALWAYS_ALLOWED:
            return True
        if checked.action in self.triggered:
            self.triggered.discard(checked.action)
            return True
        return False

    def _stamp(self, value: str) -> datetime:
        return parse_time(value)

    # -- provisioning ------------------------------------------------------------------

    @handles(Action.boot_notification)
    async def on201_boot_notification(self, **kwargs: Any) -> call_result.BootNotification:
        now = self.ctx.clock()
        station = self._request["chargingStation"]
        async with journal_guard(self.ctx, "BootNotification"):
            status = await journal.registration_status(self.ctx.sf, self.charge_box_id)
            status = status if status in ("Pending", "Rejected") else "Accepted"
            queued = False
            if status == "Accepted":
                queued = await journal16.record_boot(
                    self.ctx.sf,
                    self.charge_box_id,
                    vendor=station["vendorName"],
                    model=station["model"],
                    serial_number=station.get("serialNumber"),
                    firmware_version=station.get("firmwareVersion"),
                    now=now,
                )
        if queued:
            self.ctx.wake_relay()
        self.boot_status = status
        log.info("%s booted (%s): %s", self.id, self._request.get("reason"), status)
        return call_result.BootNotification(
            current_time=ocpp_time(now),
            interval=self.ctx.settings.heartbeat_interval_s,
            status=status,
        )

    @handles(Action.heartbeat)
    async def on201_heartbeat(self, **kwargs: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=ocpp_time(self.ctx.clock()))

    @handles(Action.status_notification)
    async def on201_status_notification(self, **kwargs: Any) -> call_result.StatusNotification:
        now = self.ctx.clock()
        req = self._request
        within(req["evseId"], "evseId", low=0, high=INT32_MAX)
        within(req["connectorId"], "connectorId", low=0, high=INT32_MAX)
        at = parse_time(req["timestamp"])
        try:
            check_timestamp(at, now, self.ctx.limits)
        except OutOfRange:
            at = now
        async with journal_guard(self.ctx, "StatusNotification"):
            await journal.record_status(
                self.ctx.sf,
                self.charge_box_id,
                evse_id=req["evseId"],
                connector_id=req["connectorId"],
                status=req["connectorStatus"],
                status_at=at,
            )
        return call_result.StatusNotification()

    @handles(Action.notify_event)
    async def on201_notify_event(self, **kwargs: Any) -> call_result.NotifyEvent:
        for item in self._request.get("eventData", []):
            variable = item.get("variable", {}).get("name")
            component = item.get("component", {}).get("name")
            log.info(
                "%s: event %s.%s = %r (%s)",
                self.id,
                component,
                variable,
                item.get("actualValue"),
                item.get("trigger"),
            )
        async with journal_guard(self.ctx, "NotifyEvent"):
            await journal.record_events(self.ctx.sf, self.charge_box_id, self._request)
        return call_result.NotifyEvent()

    @handles(Action.security_event_notification)
    async def on201_security_event_notification(
        self, **kwargs: Any
    ) -> call_result.SecurityEventNotification:
        req = self._request
        log.warning("%s: security event %s", self.id, req["type"])
        async with journal_guard(self.ctx, "SecurityEventNotification"):
            await journal.audit(
                self.ctx.sf,
                self.charge_box_id,
                f"security_event.{req['type']}",
                {
                    "type": req["type"],
                    "timestamp": req["timestamp"],
                    "tech_info": req.get("techInfo"),
                },
            )
        return call_result.SecurityEventNotification()

    @handles(Action.firmware_status_notification)
    async def on201_firmware_status_notification(
        self, **kwargs: Any
    ) -> call_result.FirmwareStatusNotification:
        status = self._request["status"]
        log.info("%s: firmware %s", self.id, status)
        async with journal_guard(self.ctx, "FirmwareStatusNotification"):
            await firmware_status.record_firmware_status(
                self.ctx.sf, self.charge_box_id, status, self.ctx.clock()
            )
        return call_result.FirmwareStatusNotification()

    @handles(Action.log_status_notification)
    async def on201_log_status_notification(
        self, **kwargs: Any
    ) -> call_result.LogStatusNotification:
        status = self._request["status"]
        log.info("%s: log upload %s", self.id, status)
        async with journal_guard(self.ctx, "LogStatusNotification"):
            await firmware_status.record_diagnostics_status(
                self.ctx.sf, self.charge_box_id, status, self.ctx.clock()
            )
        return call_result.LogStatusNotification()

    @handles(Action.data_transfer)
    async def on201_data_transfer(self, **kwargs: Any) -> call_result.DataTransfer:
        if self._request["vendorId"] not in KNOWN_VENDORS:
            return call_result.DataTransfer(status="UnknownVendorId")
        return call_result.DataTransfer(status="UnknownMessageId")

    @handles(Action.notify_report)
    async def on201_notify_report(self, **kwargs: Any) -> call_result.NotifyReport:
        """A part of the answer to GetBaseReport: stored as the charger's device model."""
        req = self._request
        within(req["requestId"], "requestId", low=-INT32_MAX, high=INT32_MAX)
        async with journal_guard(self.ctx, "NotifyReport"):
            written = await journal.record_report(
                self.ctx.sf,
                self.charge_box_id,
                request_id=int(req["requestId"]),
                report_data=req.get("reportData") or [],
                reported_at=self.ctx.clock(),
            )
        log.info(
            "%s: device model report %s part %s: %d attributes%s",
            self.id,
            req["requestId"],
            req["seqNo"],
            written,
            " (more to come)" if req.get("tbc") else "",
        )
        return call_result.NotifyReport()

    @handles(Action.meter_values)
    async def on201_meter_values(self, **kwargs: Any) -> call_result.MeterValues:
        """Clock-aligned values (evseId 0 = the grid meter): stored, never billed from (they
        name no transaction; transaction values come in TransactionEvent)."""
        req = self._request
        evse = req["evseId"]
        within(evse, "evseId", low=0, high=INT32_MAX)
        samples = parse_samples_201(
            req["meterValue"], parse_time, limits=self.ctx.limits, now=self.ctx.clock()
        )
        refused = sorted({x.problem for x in samples if x.problem in REFUSED_PROBLEMS})
        if refused:
            raise PropertyConstraintViolationError(
                details={"cause": f"meterValue {', '.join(map(str, refused))}"}
            )
        async with journal_guard(self.ctx, "MeterValues"), self.ctx.sf.begin() as s:
            await store_samples(
                s,
                charge_box_id=self.charge_box_id,
                connector_id=evse,
                tx=None,
                transaction_id=None,
                samples=samples,
                progress_gate=self.ctx.throttle,
                limits=self.ctx.limits,
            )
        return call_result.MeterValues()

    # -- authorization and transactions -----------------------------------------------

    @handles(Action.authorize)
    async def on201_authorize(self, **kwargs: Any) -> call_result.Authorize:
        id_token = self._request["idToken"]
        async with journal_guard(self.ctx, "Authorize"):
            async with self.ctx.sf.begin() as s:
                token = await decide_token(s, self.charge_box_id, id_token, self.ctx.clock())
            info = token.info()
            if token.id_tag is not None and token.decision.accepted:
                # The 1.6 path: the tap's workflow (pre-authorization) and its intent row.
                outcome = await self.ctx.authorizer.authorize(self.charge_box_id, token.id_tag)
                info["status"] = outcome.status
        return call_result.Authorize(id_token_info=info)

    @handles(Action.transaction_event)
    async def on201_transaction_event(self, **kwargs: Any) -> call_result.TransactionEvent:
        req = self._request
        now = self.ctx.clock()
        info = req["transactionInfo"]
        evse = req.get("evse") or {}
        within(req["seqNo"], "seqNo", low=0, high=INT32_MAX)
        within(evse.get("id"), "evse.id", low=0, high=INT32_MAX)
        within(info.get("remoteStartId"), "remoteStartId", low=-INT32_MAX, high=INT32_MAX)
        at = parse_time(req["timestamp"])
        try:
            check_timestamp(at, now, self.ctx.limits)
        except OutOfRange as exc:
            raise PropertyConstraintViolationError(details={"cause": str(exc)}) from None
        samples = parse_samples_201(
            req.get("meterValue", []), parse_time, limits=self.ctx.limits, now=now
        )
        if req["eventType"] != "Ended" and any(x.problem in REFUSED_PROBLEMS for x in samples):
            raise PropertyConstraintViolationError(details={"cause": "meterValue out of range"})
        # An Ended is never refused (the charger would resend it forever): unusable samples go.
        samples = [x for x in samples if x.problem not in REFUSED_PROBLEMS]
        event = tx201.Event(
            event_type=req["eventType"],
            at=at,
            trigger_reason=req["triggerReason"],
            seq_no=int(req["seqNo"]),
            ocpp_transaction_id=info["transactionId"],
            charging_state=info.get("chargingState"),
            stopped_reason=info.get("stoppedReason"),
            remote_start_id=info.get("remoteStartId"),
            evse_id=evse.get("id"),
            connector_id=evse.get("connectorId"),
            id_token=req.get("idToken"),
            offline=bool(req.get("offline", False)),
            samples=samples,
            payload=req,
        )
        async with journal_guard(self.ctx, "TransactionEvent"):
            outcome = await tx201.transaction_event(
                self.ctx.sf,
                charge_box_id=self.charge_box_id,
                event=event,
                progress_gate=self.ctx.throttle,
                limits=self.ctx.limits,
                now=now,
            )
        if outcome.queued:
            self.ctx.wake_relay()
        if outcome.token is not None:
            return call_result.TransactionEvent(id_token_info=outcome.token.info())
        return call_result.TransactionEvent()
