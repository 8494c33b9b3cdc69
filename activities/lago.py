"""Lago billing activities: metric safety, customers, subscriptions, usage events, invoices.

Every activity is at-least-once, so every write to Lago carries a deterministic key:

- usage events: ``transaction_id`` = the ``billing_events`` row id (``<workflow id>:<sequence>``);
  Lago answers a duplicate with 422 ``value_already_exist``, which counts as delivered;
- customers: upsert by ``external_id`` = the user's public id;
- subscriptions: upsert by ``external_id`` = ``sub-<public id>``;
- per-session invoices: a ``session_invoices`` row claims ``session-invoice:<workflow id>`` before
  Lago is called, and the invoice is looked up in Lago (by a marker in its fee description)
  before one is created, so a lost answer never produces a second invoice.

Lago down (5xx, timeouts, connection errors, 429) → retryable ``ApplicationError`` of type
``LagoUnavailable``; anything else Lago refuses → non-retryable (``LagoRejected``,
``LagoNotFound``); a metric we cannot trust → non-retryable ``BillingMisconfigured``.
See ``docs/billing.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from lago_python_client.client import Client
from lago_python_client.models import BatchEvent, BillableMetric, Customer, Event, Subscription
from pydantic import BaseModel, Field
from sqlalchemy import select, update
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.db_errors import data_errors_are_final
from activities.lago_client import (
    LAGO_TIMEOUT,
    LagoError,
    LagoNotFound,
    call_lago,
    make_lago_client,
    to_application_error,
)
from activities.lago_invoices import SessionInvoiceRequest, create_or_find_session_invoice
from config.settings import Settings
from db.engine import SessionFactory
from db.models import BillingEvent, Transaction, UserMapping
from db.notifications import BILLING_UNSENT, notify

log = logging.getLogger("polaris.billing.lago")

ACTIVITY_ENSURE_BILLABLE_METRIC = "lago_ensure_billable_metric"
ACTIVITY_UPSERT_CUSTOMER = "lago_upsert_customer"
ACTIVITY_ENSURE_SUBSCRIPTION = "lago_ensure_subscription"
ACTIVITY_SEND_USAGE_EVENTS = "lago_send_usage_events"
ACTIVITY_CREATE_SESSION_INVOICE = "lago_create_session_invoice"

BILLING_MISCONFIGURED = "BillingMisconfigured"
NO_LAGO_SUBSCRIPTION = "NoLagoSubscription"
REQUIRED_AGGREGATION = "sum_agg"
METRIC_FIELD = "kwh"
MAX_BATCH = 100
DEFAULT_PLAN_CODE = "ev_charging"
DEFAULT_ADD_ON_CODE = "ev_session"


def wh_to_kwh(energy_wh: int) -> str:
    """Integer Wh → the exact kWh decimal string Lago sums (``1234`` → ``"1.234"``)."""
    return str((Decimal(energy_wh) / 1000).quantize(Decimal("0.001")))


def subscription_external_id(public_id: str) -> str:
    return f"sub-{public_id}"


class BillingMisconfigured(Exception):
    """The billable metric would not bill what we send: refuse to bill rather than bill wrong."""


# -- inputs and results -----------------------------------------------------------------------


class EnsureBillableMetricInput(BaseModel):
    # None: create a missing metric unless env is prod.
    create_if_missing: bool | None = None


class BillableMetricStatus(BaseModel):
    code: str
    aggregation_type: str
    field_name: str | None
    created: bool


class UpsertCustomerInput(BaseModel):
    public_id: str = Field(min_length=1, max_length=64)
    name: str | None = None
    email: str | None = None
    currency: str | None = Field(default=None, min_length=3, max_length=3)


class CustomerRef(BaseModel):
    external_id: str
    lago_id: str


class EnsureSubscriptionInput(BaseModel):
    public_id: str = Field(min_length=1, max_length=64)
    plan_code: str | None = None  # None: the deployment's plan


class SubscriptionRef(BaseModel):
    external_id: str
    plan_code: str
    status: str


class SendUsageEventsInput(BaseModel):
    workflow_id: str


class SendUsageEventsResult(BaseModel):
    sent: int  # accepted by Lago now
    duplicates: int  # Lago had them already (a previous attempt's answer was lost)
    skipped_per_session: int  # customer billed by per-session invoice, not usage
    skipped_no_customer: int  # rows without a Lago customer (unmapped card)


class CreateSessionInvoiceInput(BaseModel):
    workflow_id: str
    # Defaults: the sum of the workflow's billing_events, their currency and customer.
    amount_minor: int | None = Field(default=None, ge=0)
    currency: str | None = Field(default=None, min_length=3, max_length=3)
    external_customer_id: str | None = None


class SessionInvoiceResult(BaseModel):
    status: Literal["created", "existing", "zero_amount", "no_customer"]
    lago_invoice_id: str | None = None
    invoice_number: str | None = None
    amount_minor: int = 0
    currency: str | None = None


# -- the activities ---------------------------------------------------------------------------


class LagoBilling:
    """Activities around the official client; built once per worker from settings."""

    def __init__(
        self,
        settings: Settings,
        session_factory: SessionFactory,
        *,
        plan_code: str = DEFAULT_PLAN_CODE,
        add_on_code: str = DEFAULT_ADD_ON_CODE,
        client: Client | None = None,
    ) -> None:
        self._settings = settings
        self._sessions = session_factory
        # Typed Any on purpose: the client's mixin methods and pydantic-v1 models do not type-check
        # under mypy strict; our own inputs and results are the typed boundary.
        self._client: Any = client or make_lago_client(settings)
        self.metric_code = settings.lago_billable_metric_code
        self.plan_code = plan_code
        self.add_on_code = add_on_code
        self._metric_verified = False

    @activity.defn(name=ACTIVITY_ENSURE_BILLABLE_METRIC)
    async def ensure_billable_metric(
        self, input: EnsureBillableMetricInput
    ) -> BillableMetricStatus:
        try:
            return await self._ensure_metric(input.create_if_missing)
        except BillingMisconfigured as exc:
            raise ApplicationError(
                str(exc), type=BILLING_MISCONFIGURED, non_retryable=True
            ) from exc
        except LagoError as exc:
            raise to_application_error(exc) from exc

    @activity.defn(name=ACTIVITY_UPSERT_CUSTOMER)
    async def upsert_customer(self, input: UpsertCustomerInput) -> CustomerRef:
        customer = Customer.parse_obj(
            {
                "external_id": input.public_id,
                "name": input.name,
                "email": input.email,
                "currency": input.currency,
            }
        )
        try:
            created = await call_lago(self._client.customers.create, customer, LAGO_TIMEOUT)
        except LagoError as exc:
            raise to_application_error(exc) from exc
        if created is None:
            raise ApplicationError("Lago answered no customer", type="LagoUnavailable")
        await self._remember_mapping(input.public_id, customer=input.public_id)
        return CustomerRef(external_id=created.external_id, lago_id=created.lago_id)

    @activity.defn(name=ACTIVITY_ENSURE_SUBSCRIPTION)
    async def ensure_subscription(self, input: EnsureSubscriptionInput) -> SubscriptionRef:
        external_id = subscription_external_id(input.public_id)
        plan_code = input.plan_code or self.plan_code
        try:
            try:
                current = await call_lago(self._client.subscriptions.find, external_id)
            except LagoNotFound:
                current = None
            if current is None or current.status != "active" or current.plan_code != plan_code:
                wanted = Subscription.parse_obj(
                    {
                        "external_customer_id": input.public_id,
                        "plan_code": plan_code,
                        "external_id": external_id,
                    }
                )
                current = await call_lago(self._client.subscriptions.create, wanted, LAGO_TIMEOUT)
        except LagoError as exc:
            raise to_application_error(exc) from exc
        if current is None:
            raise ApplicationError("Lago answered no subscription", type="LagoUnavailable")
        await self._remember_mapping(
            input.public_id, customer=input.public_id, subscription=external_id
        )
        return SubscriptionRef(
            external_id=external_id, plan_code=current.plan_code, status=current.status
        )

    @activity.defn(name=ACTIVITY_SEND_USAGE_EVENTS)
    @data_errors_are_final
    async def send_usage_events(self, input: SendUsageEventsInput) -> SendUsageEventsResult:
        """Send this workflow's unsent ``billing_events`` rows to Lago, then mark them sent.

        A refusal for good (non-retryable) is alerted on before it is raised: an ERROR log and
        one operator notification per session (``services/billing_unsent.py`` lists and resends).
        """
        try:
            return await self._send_usage_events(input)
        except ApplicationError as exc:
            if exc.non_retryable:
                await self._alert_unsent(input.workflow_id, exc)
            raise

    async def _alert_unsent(self, workflow_id: str, exc: ApplicationError) -> None:
        log.error(
            "billing lines of %s refused by Lago for good (%s: %s); they stay unsent: "
            "`polaris billing unsent list`",
            workflow_id,
            exc.type,
            exc,
        )
        try:
            async with self._sessions() as db, db.begin():
                await notify(
                    db,
                    audience="operators",
                    kind=BILLING_UNSENT,
                    dedupe_key=f"billing.unsent:{workflow_id}",
                    title=f"Billing lines of session {workflow_id} were not sent to Lago",
                    data={"session": workflow_id, "type": exc.type, "reason": str(exc)[:500]},
                )
        except Exception:  # the alert must never hide the refusal itself
            log.exception("could not record the operator notification for %s", workflow_id)

    async def _send_usage_events(self, input: SendUsageEventsInput) -> SendUsageEventsResult:
        try:
            await self._verify_metric_once()
        except BillingMisconfigured as exc:
            raise ApplicationError(
                str(exc), type=BILLING_MISCONFIGURED, non_retryable=True
            ) from exc
        except LagoError as exc:
            raise to_application_error(exc) from exc

        async with self._sessions() as db:
            rows = (
                await db.scalars(
                    select(BillingEvent)
                    .where(BillingEvent.workflow_id == input.workflow_id)
                    .where(BillingEvent.sent_at.is_(None))
                    .order_by(BillingEvent.sequence)
                )
            ).all()
        if any(row.lago_customer_external_id is None for row in rows):
            await self._fill_customer_from_card(input.workflow_id, rows)
        result = SendUsageEventsResult(
            sent=0, duplicates=0, skipped_per_session=0, skipped_no_customer=0
        )
        to_send: list[tuple[BillingEvent, str]] = []
        targets: dict[str, tuple[str | None, str]] = {}
        for row in rows:
            customer = row.lago_customer_external_id
            if customer is None:
                result.skipped_no_customer += 1
                continue
            if customer not in targets:
                targets[customer] = await self._target(customer)
            subscription, mode = targets[customer]
            if mode == "per_session":
                result.skipped_per_session += 1
                continue
            if subscription is None:
                raise ApplicationError(
                    f"customer {customer} has no Lago subscription to bill usage to",
                    type=NO_LAGO_SUBSCRIPTION,
                    non_retryable=True,
                )
            to_send.append((row, subscription))

        for start in range(0, len(to_send), MAX_BATCH):
            chunk = to_send[start : start + MAX_BATCH]
            sent, duplicates, failure = await self._send_chunk(chunk)
            await self._mark_sent([tid for tid in sent + duplicates])
            result.sent += len(sent)
            result.duplicates += len(duplicates)
            if failure is not None:
                raise to_application_error(failure) from failure
            if activity.in_activity():
                activity.heartbeat(start + len(chunk))
        if to_send:
            log.info(
                "usage events to Lago: %d sent, %d already there", result.sent, result.duplicates
            )
        return result

    @activity.defn(name=ACTIVITY_CREATE_SESSION_INVOICE)
    @data_errors_are_final
    async def create_session_invoice(
        self, input: CreateSessionInvoiceInput
    ) -> SessionInvoiceResult:
        """One one-off invoice per session (per-session billing mode), never two."""
        amount, currency, customer = await self._session_totals(input)
        if customer is None:
            return SessionInvoiceResult(status="no_customer", amount_minor=amount)
        if amount == 0 or currency is None:
            return SessionInvoiceResult(status="zero_amount", currency=currency)
        request = SessionInvoiceRequest(
            workflow_id=input.workflow_id,
            external_customer_id=customer,
            amount_minor=amount,
            currency=currency,
            add_on_code=self.add_on_code,
        )
        try:
            outcome = await create_or_find_session_invoice(self._client, self._sessions, request)
        except LagoError as exc:
            raise to_application_error(exc) from exc
        return SessionInvoiceResult(
            status="created" if outcome.created else "existing",
            lago_invoice_id=outcome.lago_invoice_id,
            invoice_number=outcome.invoice_number,
            amount_minor=amount,
            currency=currency,
        )

    # -- helpers ------------------------------------------------------------------------------

    async def _ensure_metric(self, create_if_missing: bool | None) -> BillableMetricStatus:
        code = self.metric_code
        if create_if_missing is None:
            create_if_missing = self._settings.env != "prod"
        try:
            metric = await call_lago(self._client.billable_metrics.find, code)
        except LagoNotFound:
            metric = None
        created = False
        if metric is None:
            if not create_if_missing:
                raise BillingMisconfigured(
                    f"billable metric {code!r} does not exist in Lago; create it with "
                    f"aggregation {REQUIRED_AGGREGATION} on field {METRIC_FIELD!r}"
                )
            metric = await call_lago(
                self._client.billable_metrics.create,
                BillableMetric.parse_obj(
                    {
                        "name": "EV charging energy (kWh)",
                        "code": code,
                        "description": "Energy delivered, in kWh (Polaris billing_events)",
                        "aggregation_type": REQUIRED_AGGREGATION,
                        "field_name": METRIC_FIELD,
                        "recurring": False,
                    }
                ),
                LAGO_TIMEOUT,
            )
            if metric is None:
                raise BillingMisconfigured(f"Lago did not return the metric {code!r} it created")
            created = True
        if metric.aggregation_type != REQUIRED_AGGREGATION or metric.field_name != METRIC_FIELD:
            raise BillingMisconfigured(
                f"billable metric {code!r} aggregates {metric.aggregation_type} on "
                f"{metric.field_name!r}; billing needs {REQUIRED_AGGREGATION} on "
                f"{METRIC_FIELD!r}. Refusing to bill."
            )
        self._metric_verified = True
        return BillableMetricStatus(
            code=code,
            aggregation_type=metric.aggregation_type,
            field_name=metric.field_name,
            created=created,
        )

    async def _verify_metric_once(self) -> None:
        if not self._metric_verified:
            await self._ensure_metric(None)

    async def _target(self, customer: str) -> tuple[str | None, str]:
        """(subscription external id, billing mode) for a Lago customer, from its mappings."""
        async with self._sessions() as db:
            mappings = (
                await db.scalars(
                    select(UserMapping)
                    .where(UserMapping.lago_customer_external_id == customer)
                    .order_by(UserMapping.is_active.desc(), UserMapping.id.desc())
                )
            ).all()
        if not mappings:
            return None, "usage"
        mode = mappings[0].billing_mode
        subscription = next(
            (m.lago_subscription_external_id for m in mappings if m.lago_subscription_external_id),
            None,
        )
        return subscription, mode

    def _event(self, row: BillingEvent, subscription: str) -> Event:
        return Event.parse_obj(
            {
                "transaction_id": row.transaction_id,
                "external_subscription_id": subscription,
                "code": self.metric_code,
                "timestamp": int(row.occurred_at.timestamp()),
                "properties": {METRIC_FIELD: wh_to_kwh(row.energy_wh)},
            }
        )

    async def _send_chunk(
        self, chunk: Sequence[tuple[BillingEvent, str]]
    ) -> tuple[list[str], list[str], LagoError | None]:
        """(sent ids, duplicate ids, the first failure that stopped us or None)."""
        events = [self._event(row, sub) for row, sub in chunk]
        ids = [event.transaction_id for event in events]
        try:
            await call_lago(
                self._client.events.batch_create, BatchEvent.parse_obj({"events": events})
            )
            return ids, [], None
        except LagoError as exc:
            if exc.status != 422:
                return [], [], exc
        # A batch is all-or-nothing: find out one by one which events Lago already has.
        sent: list[str] = []
        duplicates: list[str] = []
        for event in events:
            try:
                await call_lago(self._create_event, event)
                sent.append(event.transaction_id)
            except LagoError as exc:
                if exc.is_duplicate:
                    duplicates.append(event.transaction_id)
                    continue
                return sent, duplicates, exc
        return sent, duplicates, None

    def _create_event(self, event: Event) -> None:
        self._client.events.create(event, timeout=LAGO_TIMEOUT)

    async def _mark_sent(self, transaction_ids: list[str]) -> None:
        if not transaction_ids:
            return
        async with self._sessions() as db, db.begin():
            await db.execute(
                update(BillingEvent)
                .where(BillingEvent.transaction_id.in_(transaction_ids))
                .where(BillingEvent.sent_at.is_(None))
                .values(sent_at=datetime.now(UTC))
            )

    async def _remember_mapping(
        self, public_id: str, *, customer: str, subscription: str | None = None
    ) -> None:
        values: dict[str, str] = {"lago_customer_external_id": customer}
        if subscription is not None:
            values["lago_subscription_external_id"] = subscription
        async with self._sessions() as db, db.begin():
            await db.execute(
                update(UserMapping)
                .where(UserMapping.public_id == public_id, UserMapping.is_active)
                .values(**values)
            )

    async def _fill_customer_from_card(
        self, workflow_id: str, rows: Sequence[BillingEvent]
    ) -> None:
        """Billing lines of a session that was never pre-authorized (a charger that skipped
        Authorize) carry no customer: take it from the session's card and its active mapping,
        record it on the rows, and bill them like any other."""
        async with self._sessions() as db, db.begin():
            customer = await db.scalar(
                select(UserMapping.lago_customer_external_id)
                .join(Transaction, Transaction.id_tag == UserMapping.id_tag)
                .where(Transaction.workflow_id == workflow_id, UserMapping.is_active)
                .order_by(Transaction.id)
                .limit(1)
            )
            if customer is None:
                return
            await db.execute(
                update(BillingEvent)
                .where(
                    BillingEvent.workflow_id == workflow_id,
                    BillingEvent.lago_customer_external_id.is_(None),
                )
                .values(lago_customer_external_id=customer)
            )
        for row in rows:
            if row.lago_customer_external_id is None:
                row.lago_customer_external_id = customer

    async def _session_totals(
        self, input: CreateSessionInvoiceInput
    ) -> tuple[int, str | None, str | None]:
        async with self._sessions() as db:
            rows = (
                await db.scalars(
                    select(BillingEvent).where(BillingEvent.workflow_id == input.workflow_id)
                )
            ).all()
        if any(row.lago_customer_external_id is None for row in rows):
            await self._fill_customer_from_card(input.workflow_id, rows)
        amount = sum(row.amount_minor for row in rows)
        currency = next((row.currency for row in rows), None)
        customer = next(
            (row.lago_customer_external_id for row in rows if row.lago_customer_external_id),
            None,
        )
        return (
            input.amount_minor if input.amount_minor is not None else amount,
            input.currency or currency,
            input.external_customer_id or customer,
        )


async def check_billable_metric_at_startup(
    settings: Settings, session_factory: SessionFactory, *, client: Client | None = None
) -> BillableMetricStatus | None:
    """For the worker's start: verify (or, outside prod, create) the metric; log loudly.

    Returns the metric's status, or None when billing is misconfigured or Lago is unreachable
    (the worker still starts: sessions keep their billing_events and send them later, and
    ``send_usage_events`` refuses to bill against a wrong metric).
    """
    billing = LagoBilling(settings, session_factory, client=client)
    try:
        status = await billing._ensure_metric(None)
    except BillingMisconfigured as exc:
        log.critical("LAGO BILLING IS MISCONFIGURED, usage will not be sent: %s", exc)
        return None
    except LagoError as exc:
        log.error("Lago not reachable at start-up (%s); the metric is checked again later", exc)
        return None
    log.info(
        "Lago billable metric %s ok (%s on %s%s)",
        status.code,
        status.aggregation_type,
        status.field_name,
        ", created" if status.created else "",
    )
    return status


__all__ = [
    "ACTIVITY_CREATE_SESSION_INVOICE",
    "ACTIVITY_ENSURE_BILLABLE_METRIC",
    "ACTIVITY_ENSURE_SUBSCRIPTION",
    "ACTIVITY_SEND_USAGE_EVENTS",
    "ACTIVITY_UPSERT_CUSTOMER",
    "BillingMisconfigured",
    "CreateSessionInvoiceInput",
    "EnsureBillableMetricInput",
    "EnsureSubscriptionInput",
    "LagoBilling",
    "SendUsageEventsInput",
    "SendUsageEventsResult",
    "SessionInvoiceResult",
    "UpsertCustomerInput",
    "check_billable_metric_at_startup",
    "subscription_external_id",
    "wh_to_kwh",
]
