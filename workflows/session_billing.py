"""The billing steps of ChargingSessionWorkflow: lines, periodic deltas, Lago.

A mixin, so the workflow class stays about the session's life cycle. Everything here runs inside
the workflow (deterministic: no I/O, no clock but ``workflow.now()``); I/O is in activities.

Billing never blocks charging. Lines are recorded in PostgreSQL by the main loop (short DB
activities); sending them to Lago runs in a background task of the workflow (:meth:`_kick_lago`),
so while Lago is down for hours the main loop keeps its timers and the handlers keep answering
signals and updates. The workflow completes only after the last send (and, in per-session mode,
the invoice) went through or was refused for good (flag ``lago_unsent`` / ``lago_invoice_failed``;
the rows stay unsent in PostgreSQL for a later sync).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.billing import BillingActivities, BillingEventRecord, RecordBillingEventsInput
    from activities.db_errors import DATA_ERROR
    from activities.lago import CreateSessionInvoiceInput, LagoBilling, SendUsageEventsInput
    from activities.sessions import LoadTariffInput, SessionActivities
    from domain.billing import BillingKind, BillingLine, billing_event_id, next_billing_line
    from domain.pricing import TariffTerms
    from domain.session import (
        Bill,
        Billed,
        Event,
        PeriodicBilled,
        Rejection,
        SessionState,
        Transition,
    )
    from workflows import messages as msg
    from workflows import session_support as sup

# Recorded on the first workflow task of every execution that sends usage to Lago and bills
# periodic deltas. Executions recorded before it (tests/histories/charging_session_v1.json) replay
# the old path: no Lago calls, no periodic lines.
LAGO_PATCH = "lago-send-usage-v1"

FLAG_LAGO_UNSENT = "lago_unsent"
FLAG_LAGO_INVOICE_FAILED = "lago_invoice_failed"
# The read model carries the session's flags, and a value PostgreSQL refuses (a non-retryable
# ``DataError`` from an activity) flags the session ``data_error`` and bills nothing for it, so the
# session still reaches its end. Executions recorded before it wrote rows without flags and
# failed on such an error (in practice they retried it forever: the activity was retryable).
FLAGS_PATCH = "session-flags-data-error-v1"
FLAG_DATA_ERROR = "data_error"


class SessionBillingMixin:
    """Billing for :class:`workflows.charging_session.ChargingSessionWorkflow`."""

    _input: msg.SessionInput
    _state: SessionState
    # Set once per run from workflow.patched(LAGO_PATCH).
    _lago: bool
    _lago_owed: bool  # a line was recorded that no send has picked up yet
    _lago_task: asyncio.Task[None] | None
    _per_session: bool  # Lago said the customer is billed per session (invoice at close)
    _invoice: msg.InvoiceLinked | None
    _last_periodic_at: datetime | None

    # Provided by ChargingSessionWorkflow (declared here so the mixin type-checks).
    _apply: Callable[[Event], Transition | Rejection]

    def _init_billing(self, carry: sup.SessionCarry | None) -> None:
        self._lago = False
        self._lago_task = None
        self._lago_owed = carry.lago_owed if carry else False
        self._per_session = carry.per_session if carry else False
        self._invoice = carry.invoice if carry else None
        self._last_periodic_at = carry.last_periodic_at if carry else None

    def _flag(self, flag: str) -> None:
        if flag not in self._state.flags:
            self._state = self._state.model_copy(update={"flags": [*self._state.flags, flag]})

    def _data_error(self, err: BaseException) -> bool:
        """A value PostgreSQL refused: flag the session and go on (True); anything else: False."""
        cause = sup.failure_cause(err)
        if not isinstance(cause, ApplicationError) or cause.type != DATA_ERROR:
            return False
        if not workflow.patched(FLAGS_PATCH):
            return False
        workflow.logger.warning("PostgreSQL refused a value of this session: %s", cause.message)
        self._flag(FLAG_DATA_ERROR)
        return True

    # -- lines ----------------------------------------------------------------------------------

    async def _tariff(self) -> TariffTerms:
        if self._state.tariff is not None:
            return self._state.tariff  # the same terms for every line of a session
        try:
            return await sup.db_activity(
                SessionActivities.load_tariff,
                LoadTariffInput(charge_box_id=self._state.charge_box_id),
                start_to_close_timeout=sup.DB_TIMEOUT,
                retry_policy=sup.DB_RETRY,
            )
        except sup.ACTIVITY_FAILED as err:
            cause = sup.failure_cause(err)
            no_tariff = isinstance(cause, ApplicationError) and cause.type == "NoTariff"
            if not no_tariff and not self._data_error(err):
                raise
            if no_tariff:
                self._flag("no_tariff")
            return TariffTerms(code="none", currency=sup.NO_TARIFF_CURRENCY)

    async def _line(
        self, kind: BillingKind, register_wh: int, at: datetime
    ) -> tuple[TariffTerms, BillingLine | None]:
        tariff = await self._tariff()
        line = next_billing_line(
            self._state, kind=kind, register_wh=register_wh, at=at, tariff=tariff
        )
        return tariff, line

    async def _record(self, line: BillingLine) -> str:
        workflow_id = workflow.info().workflow_id
        event_id = billing_event_id(workflow_id, line.sequence)
        record = BillingEventRecord(
            transaction_id=event_id,
            workflow_id=workflow_id,
            sequence=line.sequence,
            kind=line.kind,
            energy_wh=line.energy_wh,
            amount_minor=line.amount_minor,
            currency=line.currency,
            occurred_at=line.occurred_at,
            lago_customer_external_id=self._state.billing_customer_id,
        )
        await sup.db_activity(
            BillingActivities.record_billing_events,
            RecordBillingEventsInput(events=[record]),
            start_to_close_timeout=sup.DB_TIMEOUT,
            retry_policy=sup.DB_RETRY,
        )
        if self._lago:
            self._kick_lago()
        return event_id

    def _billed_nothing(self, tariff: TariffTerms) -> None:
        """Answer a Bill effect with an empty line (nothing left to bill, or it could not be
        stored)."""
        self._apply(
            Billed(
                at=workflow.now(),
                sequence=self._state.billing_sequence,
                event_id=None,
                energy_wh=0,
                amount_minor=0,
                currency=tariff.currency,
                tariff=tariff,
            )
        )

    async def _bill(self, effect: Bill) -> None:
        """Answer a ``Bill`` effect of the machine (``final`` or ``compensation``)."""
        tariff, line = await self._line(effect.kind, effect.register_wh, effect.at)
        if line is None:  # a compensation with nothing left to bill
            self._billed_nothing(tariff)
            return
        try:
            event_id = await self._record(line)
        except sup.ACTIVITY_FAILED as err:
            if not self._data_error(err):
                raise
            # The line could not be stored: nothing is billed for it; an operator looks.
            self._billed_nothing(tariff)
            return
        self._apply(
            Billed(
                at=workflow.now(),
                sequence=line.sequence,
                event_id=event_id,
                energy_wh=line.energy_wh,
                amount_minor=line.amount_minor,
                currency=line.currency,
                tariff=tariff,
            )
        )

    # -- periodic deltas (long sessions) ----------------------------------------------------------

    def _periodic_due_in(self) -> float | None:
        """Seconds until the next periodic line is due; None when periodic billing is off."""
        interval = self._input.periodic_billing_s
        if not self._lago or not interval or interval <= 0:
            return None
        if self._last_periodic_at is None:
            self._last_periodic_at = workflow.now()
        return interval - (workflow.now() - self._last_periodic_at).total_seconds()

    async def _bill_periodic(self) -> None:
        """Bill the delta up to the latest register as a ``periodic`` line (if there is one)."""
        self._last_periodic_at = workflow.now()
        state = self._state
        if state.last_register_wh is None or state.last_register_at is None:
            return
        tariff, line = await self._line("periodic", state.last_register_wh, state.last_register_at)
        if line is None:
            return
        try:
            event_id = await self._record(line)
        except sup.ACTIVITY_FAILED as err:
            if not self._data_error(err):
                raise
            return
        self._apply(
            PeriodicBilled(
                at=workflow.now(),
                sequence=line.sequence,
                event_id=event_id,
                energy_wh=line.energy_wh,
                amount_minor=line.amount_minor,
                currency=line.currency,
                tariff=tariff,
            )
        )

    # -- Lago -------------------------------------------------------------------------------------

    def _kick_lago(self) -> None:
        """Have the background sender send what is unsent (now, or after its current send)."""
        self._lago_owed = True
        if self._lago_task is None or self._lago_task.done():
            self._lago_task = asyncio.create_task(self._lago_sender())

    async def _lago_sender(self) -> None:
        while self._lago_owed:
            self._lago_owed = False
            try:
                result = await workflow.execute_activity_method(
                    LagoBilling.send_usage_events,
                    SendUsageEventsInput(workflow_id=workflow.info().workflow_id),
                    start_to_close_timeout=sup.LAGO_TIMEOUT,
                    heartbeat_timeout=sup.LAGO_HEARTBEAT,
                    retry_policy=sup.LAGO_RETRY,
                )
            except ActivityError as err:
                # Refused for good (misconfigured metric, no subscription, Lago said no): the
                # rows stay unsent in PostgreSQL for a later sync; charging goes on.
                workflow.logger.warning("usage events not sent to Lago: %s", _reason(err))
                self._flag(FLAG_LAGO_UNSENT)
                continue
            if result.skipped_per_session:
                self._per_session = True

    async def _finish_billing(self) -> None:
        """At the end of the session: the last send, then the per-session invoice."""
        while self._lago_pending():
            if self._lago_task is None or self._lago_task.done():
                self._kick_lago()  # owed from the previous run (continue-as-new)
            assert self._lago_task is not None
            await self._lago_task
        if not self._per_session or self._invoice is not None:
            return
        try:
            result = await workflow.execute_activity_method(
                LagoBilling.create_session_invoice,
                CreateSessionInvoiceInput(workflow_id=workflow.info().workflow_id),
                start_to_close_timeout=sup.LAGO_TIMEOUT,
                heartbeat_timeout=sup.LAGO_HEARTBEAT,
                retry_policy=sup.LAGO_RETRY,
            )
        except ActivityError as err:
            workflow.logger.warning("per-session invoice not created: %s", _reason(err))
            self._flag(FLAG_LAGO_INVOICE_FAILED)
            return
        if result.lago_invoice_id is not None:
            self._invoice = msg.InvoiceLinked(
                lago_invoice_id=result.lago_invoice_id, invoice_number=result.invoice_number
            )

    def _lago_pending(self) -> bool:
        return self._lago_owed or (self._lago_task is not None and not self._lago_task.done())


def _reason(err: ActivityError) -> str:
    cause = err.cause
    if isinstance(cause, ApplicationError):
        return f"{cause.type}: {cause.message}"
    return str(cause or err)


__all__ = [
    "FLAGS_PATCH",
    "FLAG_DATA_ERROR",
    "FLAG_LAGO_INVOICE_FAILED",
    "FLAG_LAGO_UNSENT",
    "LAGO_PATCH",
    "SessionBillingMixin",
]
