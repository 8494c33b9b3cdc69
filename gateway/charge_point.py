"""One charger's OCPP 1.6J session: short handlers, each answering from PostgreSQL only.

Handlers never await Temporal beyond the Authorize budget and never call the charger: the
``ocpp`` library handles a connection's messages one at a time, so a slow handler stalls that
charger and a call to the charger from inside a handler would wait for an answer that can only
be read after the handler returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from ocpp.exceptions import (
    InternalError,
    PropertyConstraintViolationError,
    TypeConstraintViolationError,
)
from ocpp.routing import on
from ocpp.v16 import call_result
from ocpp.v16.enums import Action
from sqlalchemy.exc import SQLAlchemyError

from config.settings import Settings
from db.engine import SessionFactory
from domain.energy import BIGINT_MAX, MeterLimits, OutOfRange, check_register, check_timestamp
from gateway import firmware_status, journal, metering, transactions
from gateway.authorize import Authorizer
from gateway.frame_guard import FrameGuardedChargePoint
from gateway.group_commit import MeterValuesBatcher
from gateway.last_seen import LastSeenWriter
from gateway.local_auth import decide
from gateway.log_redaction import TagRedactor
from gateway.meter import REFUSED_PROBLEMS, parse_samples
from gateway.open_transactions import OpenTransactions
from gateway.stop_checks import read_stop
from observability.metrics import JOURNAL_WRITE

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
# Vendors whose DataTransfer messages we understand (none yet).
KNOWN_VENDORS: frozenset[str] = frozenset()
# WebSocket close code for a charger decommissioned while connected (policy violation).
CLOSE_DECOMMISSIONED = 1008


def handles(action: Action) -> Callable[[F], F]:
    # check_frame() has already validated the request against the same OCPP 1.6 schema (to answer
    # the precise CallError); validating it a second time in the library cost ~5% of the CPU.
    # Our answers are typed call_result dataclasses; the tests' real ocpp clients validate them.
    return cast(Callable[[F], F], on(action, skip_schema_validation=True))


def parse_time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        raise TypeConstraintViolationError(
            details={"cause": f"{value!r} is not an ISO 8601 dateTime"}
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# Our columns: connector and reservation ids are INTEGER, transaction ids BIGINT.
INT32_MAX = 2**31 - 1


def within(value: int | None, name: str, *, low: int, high: int) -> None:
    """An integer field a charger sent, inside what we can store; PropertyConstraintViolation if
    not (an overflowing value would make the journal write fail, and the charger resend it)."""
    if value is not None and not low <= value <= high:
        raise PropertyConstraintViolationError(details={"cause": f"{name} {value} out of range"})


def refuse(what: OutOfRange) -> PropertyConstraintViolationError:
    return PropertyConstraintViolationError(details={"cause": str(what)})


def ocpp_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _id_tag_info(
    status: str, parent: str | None = None, expiry: datetime | None = None
) -> dict[str, str]:
    info = {"status": status}
    if parent:
        info["parentIdTag"] = parent
    if expiry:
        info["expiryDate"] = ocpp_time(expiry)
    return info


@dataclass
class GatewayContext:
    """What every charger session shares within one gateway process."""

    sf: SessionFactory
    settings: Settings
    authorizer: Authorizer
    throttle: metering.ProgressThrottle
    meter_values: MeterValuesBatcher
    last_seen: LastSeenWriter
    wake_relay: Callable[[], None]
    clock: Callable[[], datetime]
    tags: TagRedactor
    # settings.meter_limits, built once: every metering message reads it.
    limits: MeterLimits
    db_timeout_s: float = 10.0


@contextlib.asynccontextmanager
async def journal_guard(ctx: GatewayContext, what: str) -> AsyncIterator[None]:
    """PostgreSQL trouble → OCPP InternalError, so the charger keeps the message and retries.

    The block's duration is the journal latency of ``what`` (a histogram, failures included)."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(ctx.db_timeout_s):
            yield
    except (SQLAlchemyError, OSError, TimeoutError) as exc:
        log.error("%s failed, answering InternalError: %r", what, exc)
        raise InternalError(details={"cause": f"{what} could not be journaled; retry"}) from exc
    finally:
        JOURNAL_WRITE.labels(what).observe(time.perf_counter() - started)


class GatewayChargePoint(FrameGuardedChargePoint):
    def __init__(self, charge_box_id: str, connection: Any, ctx: GatewayContext) -> None:
        # The response timeout is enforced per command by the activity instead.
        super().__init__(
            charge_box_id,
            connection,
            settings=ctx.settings,
            tags=ctx.tags,
            response_timeout=3600,
        )
        self.ctx = ctx
        self.charge_box_id = charge_box_id
        self._background: set[asyncio.Task[None]] = set()
        # The last good register of each open transaction of this connection (MeterValues).
        self.open_transactions = OpenTransactions()

    # -- liveness ------------------------------------------------------------------------

    def on_frame(self) -> None:
        """Every message proves the charger alive: ``last_seen_at`` is written for all connected
        chargers together, one statement per interval (:mod:`gateway.last_seen`)."""
        self.ctx.last_seen.heard(self.charge_box_id, self.ctx.clock(), self._close_decommissioned)

    async def _close_decommissioned(self) -> None:
        await self._connection.close(CLOSE_DECOMMISSIONED, "charger is decommissioned")

    def spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close_background(self) -> None:
        tasks = [*self._background]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- core messages ---------------------------------------------------------------------

    @handles(Action.boot_notification)
    async def on_boot_notification(
        self, charge_point_vendor: str, charge_point_model: str, **kwargs: Any
    ) -> call_result.BootNotification:
        now = self.ctx.clock()
        # Nothing stored → InternalError: the charger boots again later rather than believing
        # it was registered.
        async with journal_guard(self.ctx, "BootNotification"):
            queued = await journal.record_boot(
                self.ctx.sf,
                self.charge_box_id,
                vendor=charge_point_vendor,
                model=charge_point_model,
                serial_number=kwargs.get("charge_point_serial_number")
                or kwargs.get("charge_box_serial_number"),
                firmware_version=kwargs.get("firmware_version"),
                now=now,
            )
        if queued:
            self.ctx.wake_relay()
        return call_result.BootNotification(
            current_time=ocpp_time(now),
            interval=self.ctx.settings.heartbeat_interval_s,
            status="Accepted",
        )

    @handles(Action.heartbeat)
    async def on_heartbeat(self, **kwargs: Any) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=ocpp_time(self.ctx.clock()))

    @handles(Action.status_notification)
    async def on_status_notification(
        self, connector_id: int, error_code: str, status: str, **kwargs: Any
    ) -> call_result.StatusNotification:
        now = self.ctx.clock()
        stamp = kwargs.get("timestamp")
        at = parse_time(stamp) if stamp is not None else now
        within(connector_id, "connectorId", low=0, high=INT32_MAX)
        try:
            check_timestamp(at, now, self.ctx.limits)
        except OutOfRange:
            at = now  # a status time no clock can mean: the time we heard it
        async with journal_guard(self.ctx, "StatusNotification"):
            queued = await journal.record_status(
                self.ctx.sf,
                self.charge_box_id,
                connector_id=connector_id,
                status=status,
                error_code=error_code,
                info=kwargs.get("info"),
                vendor_error_code=kwargs.get("vendor_error_code"),
                status_at=at,
                now=now,
            )
        if queued:
            self.ctx.wake_relay()
        return call_result.StatusNotification()

    @handles(Action.authorize)
    async def on_authorize(self, id_tag: str, **kwargs: Any) -> call_result.Authorize:
        async with journal_guard(self.ctx, "Authorize"):
            outcome = await self.ctx.authorizer.authorize(self.charge_box_id, id_tag)
        return call_result.Authorize(
            id_tag_info=_id_tag_info(outcome.status, outcome.parent_id_tag, outcome.expiry_date)
        )

    @handles(Action.start_transaction)
    async def on_start_transaction(
        self, connector_id: int, id_tag: str, meter_start: int, timestamp: str, **kwargs: Any
    ) -> call_result.StartTransaction:
        now = self.ctx.clock()
        limits = self.ctx.limits
        stamped = parse_time(timestamp)  # a type error is reported before any range error
        within(connector_id, "connectorId", low=1, high=INT32_MAX)
        within(kwargs.get("reservation_id"), "reservationId", low=-INT32_MAX, high=INT32_MAX)
        try:
            started_at = check_timestamp(stamped, now, limits)
            meter_start_wh = check_register(int(meter_start), limits)
        except OutOfRange as exc:
            raise refuse(exc) from None
        async with journal_guard(self.ctx, "StartTransaction"):
            outcome = await transactions.start_transaction(
                self.ctx.sf,
                charge_box_id=self.charge_box_id,
                connector_id=connector_id,
                id_tag=id_tag,
                meter_start_wh=meter_start_wh,
                started_at=started_at,
                reservation_id=kwargs.get("reservation_id"),
                now=now,
            )
        if outcome.created:
            self.ctx.wake_relay()
        return call_result.StartTransaction(
            transaction_id=outcome.transaction_id,
            id_tag_info=_id_tag_info(
                outcome.auth_status, outcome.parent_id_tag, outcome.expiry_date
            ),
        )

    @handles(Action.meter_values)
    async def on_meter_values(
        self, connector_id: int, meter_value: list[dict[str, Any]], **kwargs: Any
    ) -> call_result.MeterValues:
        within(connector_id, "connectorId", low=0, high=INT32_MAX)
        within(kwargs.get("transaction_id"), "transactionId", low=-BIGINT_MAX, high=BIGINT_MAX)
        samples = parse_samples(
            meter_value, parse_time, limits=self.ctx.limits, now=self.ctx.clock()
        )
        refused = sorted({x.problem for x in samples if x.problem in REFUSED_PROBLEMS})
        if refused:
            # Nothing of the message is stored: the charger's retries are bounded
            # (TransactionMessageAttempts), and the values are not ones to bill.
            raise PropertyConstraintViolationError(
                details={"cause": f"meterValue {', '.join(map(str, refused))}"}
            )
        async with journal_guard(self.ctx, "MeterValues"):
            events = await self.ctx.meter_values.record(
                charge_box_id=self.charge_box_id,
                connector_id=connector_id,
                transaction_id=kwargs.get("transaction_id"),
                samples=samples,
                remembered=self.open_transactions,
            )
        if events:
            self.ctx.wake_relay()
        return call_result.MeterValues()

    @handles(Action.stop_transaction)
    async def on_stop_transaction(
        self, meter_stop: int, timestamp: str, transaction_id: int, **kwargs: Any
    ) -> call_result.StopTransaction:
        # Always acknowledged: values out of range are replaced and flagged (stop_checks.py).
        now = self.ctx.clock()
        limits = self.ctx.limits
        id_tag: str | None = kwargs.get("id_tag")
        stop = read_stop(
            int(meter_stop),
            parse_time(timestamp),
            parse_samples(kwargs.get("transaction_data") or [], parse_time, limits=limits, now=now),
            limits=limits,
            now=now,
        )
        raw = {
            "meterStop": meter_stop,
            "timestamp": timestamp,
            "transactionId": transaction_id,
            "idTag": id_tag,
            "reason": kwargs.get("reason"),
        }
        if stop.flags:
            raw["transactionData"] = kwargs.get("transaction_data")
        self.open_transactions.forget(transaction_id)
        if not -BIGINT_MAX <= transaction_id <= BIGINT_MAX:
            # No transaction can have this id, and no column can hold it: acknowledged, logged.
            log.warning("%s: StopTransaction for impossible transactionId", self.id)
            return call_result.StopTransaction(id_tag_info=await self._stop_tag_info(id_tag))
        async with journal_guard(self.ctx, "StopTransaction"):
            outcome = await transactions.stop_transaction(
                self.ctx.sf,
                charge_box_id=self.charge_box_id,
                transaction_id=transaction_id,
                stop=stop,
                # OCPP 1.6: a StopTransaction without a reason means "Local".
                reason=kwargs.get("reason") or "Local",
                id_tag=id_tag,
                raw_payload=raw,
                progress_gate=self.ctx.throttle,
                limits=limits,
                now=now,
            )
            info = await self._stop_tag_info(id_tag)
        if outcome.kind == "stopped":
            self.ctx.wake_relay()
        return call_result.StopTransaction(id_tag_info=info)

    async def _stop_tag_info(self, id_tag: str | None) -> dict[str, str] | None:
        if id_tag is None:
            return None
        async with journal_guard(self.ctx, "StopTransaction"), self.ctx.sf() as s:
            d = await decide(s, id_tag, self.ctx.clock(), check_concurrency=False)
        return _id_tag_info(d.status, d.parent_id_tag, d.expiry_date)

    @handles(Action.data_transfer)
    async def on_data_transfer(self, vendor_id: str, **kwargs: Any) -> call_result.DataTransfer:
        if vendor_id not in KNOWN_VENDORS:
            return call_result.DataTransfer(status="UnknownVendorId")
        return call_result.DataTransfer(status="UnknownMessageId")

    @handles(Action.diagnostics_status_notification)
    async def on_diagnostics_status_notification(
        self, status: str, **kwargs: Any
    ) -> call_result.DiagnosticsStatusNotification:
        log.info("%s: diagnostics %s", self.id, status)
        async with journal_guard(self.ctx, "DiagnosticsStatusNotification"):
            await firmware_status.record_diagnostics_status(
                self.ctx.sf, self.charge_box_id, status, self.ctx.clock()
            )
        return call_result.DiagnosticsStatusNotification()

    @handles(Action.firmware_status_notification)
    async def on_firmware_status_notification(
        self, status: str, **kwargs: Any
    ) -> call_result.FirmwareStatusNotification:
        log.info("%s: firmware %s", self.id, status)
        async with journal_guard(self.ctx, "FirmwareStatusNotification"):
            await firmware_status.record_firmware_status(
                self.ctx.sf, self.charge_box_id, status, self.ctx.clock()
            )
        return call_result.FirmwareStatusNotification()
