"""The idle fee's activities (``workflows/idle_fee.py``): the session's idle terms, whether its
charger is still there, the line in ``idle_fees``, and the line in Lago.

The Lago line is a one-off invoice with one fee on the add-on ``idle_fee`` (amount from our
tariff, so Lago needs no price for it: ``unit_amount_cents`` = the fee). Lago has no idempotency
key for ``POST /invoices``, so it is sent at most once the way per-session invoices are
(``activities/lago_invoices.py``): the ``idle_fees`` row is locked for the attempt, a stored
``lago_invoice_id`` is the answer, otherwise the customer's one-off invoices are searched for the
marker ``[polaris:idle-fee:<session workflow id>]`` in the fee description before one is created,
and the invoice id is stored in the same transaction. See ``docs/extending.md``.

A line that cannot be sent for good (Lago refused it, or the session has no Lago customer) is
alerted on like unsent usage lines: an ERROR log and one operator notification per session
(``billing.unsent``, dedupe key ``billing.unsent:idle-fee:<session>``, its ``data.reason`` the
last error). That notification is what lists the line as unsent; ``services/billing_unsent.py``
sends it again through this same activity code.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, cast, select, update
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity

from activities.db_errors import data_errors_are_final
from activities.lago_client import LagoError, make_lago_client, to_application_error
from activities.lago_invoices import AddOnSpec, create_one_off_invoice, find_one_off_invoice
from config.settings import Settings
from db.billing_models import Notification
from db.engine import SessionFactory
from db.idle_fee_models import IdleFeeLine
from db.models import (
    BillingEvent,
    Charger,
    ChargingSession,
    PlatformEvent,
    Tariff,
    TariffVersion,
    Transaction,
    UserMapping,
)
from db.notifications import BILLING_UNSENT, notify
from db.tariffs import idle_terms, version_at
from domain.events import CHARGER_STATUS_CHANGED
from domain.idle_fee import idle_fee_line_id
from workflows.idle_fee_messages import (
    ACTIVITY_CHARGER_SEEN,
    ACTIVITY_IDLE_CONTEXT,
    ACTIVITY_RECORD,
    ACTIVITY_SEND,
    ChargerSeen,
    IdleFeeContext,
    IdleFeeLineOut,
    RecordIdleFeeInput,
    SendIdleFeeInput,
    SendIdleFeeResult,
)

log = logging.getLogger("polaris.idle_fee")

IDLE_FEE_ADD_ON = AddOnSpec(
    code="idle_fee",
    name="Idle fee",
    description="A car left plugged in after its charging session stopped",
)
# OCPP 1.6 StopTransaction reason when the cable was pulled: the car left as the session stopped.
UNPLUGGED = "EVDisconnected"


async def _session_version(
    db: AsyncSession, session_workflow_id: str, tx: Transaction
) -> TariffVersion | None:
    """The tariff version the session is billed under. The session records it on its read model
    the first time it prices anything (``load_tariff``); an idle fee that starts before that
    (a short session whose read model is still catching up) resolves it by the same rule — the
    charger's tariff, else the default one, in the version valid at the start — and records it
    the same way (only where none is recorded yet), so both agree."""
    recorded = await db.scalar(
        select(ChargingSession.tariff_version_id).where(
            ChargingSession.workflow_id == session_workflow_id
        )
    )
    if recorded is not None:
        return await db.get(TariffVersion, recorded)
    tariff_id = await db.scalar(
        select(Charger.tariff_id).where(Charger.charge_box_id == tx.charge_box_id)
    )
    if tariff_id is None:
        tariff_id = await db.scalar(
            select(Tariff.id).where(Tariff.is_default.is_(True)).order_by(Tariff.id).limit(1)
        )
    if tariff_id is None:
        return None
    version = await version_at(db, tariff_id, tx.started_at)
    if version is not None:
        await db.execute(
            update(ChargingSession)
            .where(
                ChargingSession.workflow_id == session_workflow_id,
                ChargingSession.tariff_version_id.is_(None),
            )
            .values(tariff_version_id=version.id)
        )
    return version


def idle_fee_marker(session_workflow_id: str) -> str:
    return f"[polaris:idle-fee:{session_workflow_id}]"


# The operator notification of an idle fee left unsent (also what lists it as unsent).
UNSENT_DEDUPE_PREFIX = "billing.unsent:idle-fee:"
NO_CUSTOMER = "NoLagoCustomer"


def unsent_dedupe_key(session_workflow_id: str) -> str:
    return f"{UNSENT_DEDUPE_PREFIX}{session_workflow_id}"


class IdleFeeActivities:
    def __init__(
        self, settings: Settings, session_factory: SessionFactory, *, client: Any = None
    ) -> None:
        self._sessions = session_factory
        # Typed Any on purpose, as in activities/lago.py (the client does not type-check).
        self._client: Any = client or make_lago_client(settings)

    @activity.defn(name=ACTIVITY_IDLE_CONTEXT)
    @data_errors_are_final
    async def context(self, session_workflow_id: str) -> IdleFeeContext:
        """The session's idle terms (its tariff version) and stop; whether the car was gone."""
        async with self._sessions() as db, db.begin():
            tx = (
                await db.execute(
                    select(Transaction)
                    .where(Transaction.workflow_id == session_workflow_id)
                    .order_by(Transaction.id.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            if tx is None or tx.stopped_at is None:
                return IdleFeeContext(applies=False, reason="not_stopped")
            version = await _session_version(db, session_workflow_id, tx)
            if version is None:
                return IdleFeeContext(applies=False, reason="no_tariff")
            terms = idle_terms(version)
            if not terms.applies:
                return IdleFeeContext(applies=False, reason="no_idle_price")
            # The connector's last status during the transaction (by the charger's clock).
            status_at = cast(PlatformEvent.payload["at"].astext, DateTime(timezone=True))
            before_stop = await db.scalar(
                select(PlatformEvent.payload["status"].astext)
                .where(
                    PlatformEvent.type == CHARGER_STATUS_CHANGED,
                    PlatformEvent.charge_box_id == tx.charge_box_id,
                    PlatformEvent.payload["connector_id"] == cast(tx.connector_id, JSONB),
                    status_at >= tx.started_at,
                    status_at <= tx.stopped_at,
                )
                .order_by(status_at.desc(), PlatformEvent.id.desc())
                .limit(1)
            )
        return IdleFeeContext(
            applies=True,
            terms=terms,
            tariff_version_id=version.id,
            stopped_at=tx.stopped_at,
            unplugged_before_stop=tx.stop_reason == UNPLUGGED or before_stop == "Available",
        )

    @activity.defn(name=ACTIVITY_CHARGER_SEEN)
    async def charger_seen(self, charge_box_id: str) -> ChargerSeen:
        async with self._sessions() as db:
            charger = await db.get(Charger, charge_box_id)
        if charger is None:
            return ChargerSeen(connected=False)
        return ChargerSeen(connected=charger.connected, last_seen_at=charger.last_seen_at)

    @activity.defn(name=ACTIVITY_RECORD)
    @data_errors_are_final
    async def record(self, input: RecordIdleFeeInput) -> IdleFeeLineOut:
        """The session's line in ``idle_fees``; the first record wins (a retry, or a replayed
        workflow, gets the stored line back unchanged)."""
        fee = input.fee
        async with self._sessions() as db, db.begin():
            customer = await self._customer(db, input.session_workflow_id)
            await db.execute(
                insert(IdleFeeLine)
                .values(
                    session_workflow_id=input.session_workflow_id,
                    line_id=idle_fee_line_id(input.session_workflow_id),
                    charge_box_id=input.charge_box_id,
                    connector_id=input.connector_id,
                    tariff_version_id=input.tariff_version_id,
                    stopped_at=input.stopped_at,
                    ended_at=input.ended_at,
                    end_reason=input.end_reason,
                    idle_s=fee.idle_s,
                    billed_s=fee.billed_s,
                    amount_minor=fee.amount_minor,
                    currency=fee.currency,
                    capped=fee.capped,
                    lago_customer_external_id=customer,
                )
                .on_conflict_do_nothing(index_elements=["session_workflow_id"])
            )
            line = await db.get(IdleFeeLine, input.session_workflow_id)
            assert line is not None
            return IdleFeeLineOut(
                line_id=line.line_id,
                amount_minor=line.amount_minor,
                currency=line.currency,
                end_reason=line.end_reason,
                idle_s=line.idle_s,
            )

    @activity.defn(name=ACTIVITY_SEND)
    @data_errors_are_final
    async def send(self, input: SendIdleFeeInput) -> SendIdleFeeResult:
        """The line as a one-off Lago invoice, at most once (see the module's docstring).

        Left unsent for good (a non-retryable refusal, or no Lago customer): alerted first."""
        session_workflow_id = input.session_workflow_id
        try:
            result = await self._send(session_workflow_id)
        except LagoError as exc:
            error = to_application_error(exc)
            if error.non_retryable:
                await self._alert_unsent(session_workflow_id, error.type, str(error))
            raise error from exc
        if result.status == "no_customer":
            await self._alert_unsent(
                session_workflow_id, NO_CUSTOMER, "no Lago customer: the session's card has none"
            )
        return result

    async def _alert_unsent(self, session_workflow_id: str, kind: str | None, reason: str) -> None:
        """ERROR log + one operator notification per session; its ``data`` keeps the last error
        (a later refusal, e.g. of a resend, updates it)."""
        log.error(
            "idle fee of %s not sent to Lago (%s: %s); it stays unsent: "
            "`polaris billing unsent list`",
            session_workflow_id,
            kind,
            reason,
        )
        data = {"session": session_workflow_id, "line": "idle_fee", "type": kind}
        data["reason"] = reason[:500]
        try:
            async with self._sessions() as db, db.begin():
                await notify(
                    db,
                    audience="operators",
                    kind=BILLING_UNSENT,
                    dedupe_key=unsent_dedupe_key(session_workflow_id),
                    title=f"The idle fee of session {session_workflow_id} was not sent to Lago",
                    data=data,
                )
                await db.execute(
                    update(Notification)
                    .where(Notification.dedupe_key == unsent_dedupe_key(session_workflow_id))
                    .values(data=data)
                )
        except Exception:  # the alert must never hide the refusal itself
            log.exception("could not record the operator notification for %s", session_workflow_id)

    async def _send(self, session_workflow_id: str) -> SendIdleFeeResult:
        async with self._sessions() as db, db.begin():
            line = (
                await db.scalars(
                    select(IdleFeeLine)
                    .where(IdleFeeLine.session_workflow_id == session_workflow_id)
                    .with_for_update()
                )
            ).one()
            if line.lago_invoice_id is not None:
                return SendIdleFeeResult(
                    status="existing",
                    lago_invoice_id=line.lago_invoice_id,
                    invoice_number=line.invoice_number,
                )
            if line.amount_minor == 0:
                return SendIdleFeeResult(status="zero_amount")
            if line.lago_customer_external_id is None:
                line.lago_customer_external_id = await self._customer(db, session_workflow_id)
            customer = line.lago_customer_external_id
            if customer is None:  # alerted by ``send``
                return SendIdleFeeResult(status="no_customer")
            marker = idle_fee_marker(session_workflow_id)
            invoice = await find_one_off_invoice(
                self._client,
                external_customer_id=customer,
                amount_minor=line.amount_minor,
                marker=marker,
            )
            created = invoice is None
            if invoice is None:
                minutes = -(-line.idle_s // 60)
                invoice = await create_one_off_invoice(
                    self._client,
                    external_customer_id=customer,
                    currency=line.currency,
                    add_on=IDLE_FEE_ADD_ON,
                    amount_minor=line.amount_minor,
                    description=(
                        f"Idle fee: {minutes} min plugged in after charging at "
                        f"{line.charge_box_id} {marker}"
                    ),
                )
            line.lago_invoice_id = invoice.lago_id
            line.invoice_number = invoice.number
            line.sent_at = datetime.now(UTC)
        log.info("idle fee of %s in Lago invoice %s", session_workflow_id, invoice.lago_id)
        return SendIdleFeeResult(
            status="created" if created else "existing",
            lago_invoice_id=invoice.lago_id,
            invoice_number=invoice.number,
        )

    @staticmethod
    async def _customer(db: Any, session_workflow_id: str) -> str | None:
        """The session's Lago customer: the one its billing lines carry, else its card's."""
        billed = await db.scalar(
            select(BillingEvent.lago_customer_external_id)
            .where(
                BillingEvent.workflow_id == session_workflow_id,
                BillingEvent.lago_customer_external_id.is_not(None),
            )
            .limit(1)
        )
        if billed is not None:
            return str(billed)
        card = await db.scalar(
            select(UserMapping.lago_customer_external_id)
            .join(Transaction, Transaction.id_tag == UserMapping.id_tag)
            .where(
                Transaction.workflow_id == session_workflow_id,
                UserMapping.is_active,
                UserMapping.lago_customer_external_id.is_not(None),
            )
            .order_by(Transaction.id)
            .limit(1)
        )
        return str(card) if card is not None else None


__all__ = [
    "IDLE_FEE_ADD_ON",
    "NO_CUSTOMER",
    "UNSENT_DEDUPE_PREFIX",
    "IdleFeeActivities",
    "idle_fee_marker",
    "unsent_dedupe_key",
]
