"""Per-session one-off invoices, created at most once.

Lago has no idempotency key for ``POST /invoices``. So:

1. a ``session_invoices`` row claims ``session-invoice:<workflow id>`` and is locked
   (``SELECT ... FOR UPDATE``) for the whole attempt — a concurrent attempt waits;
2. a row that already has its ``lago_invoice_id`` is the answer;
3. otherwise Lago is searched: the customer's one-off invoices whose fee description carries the
   marker ``[polaris:session-invoice:<workflow id>]`` (the answer of an earlier attempt may have
   been lost after Lago created the invoice);
4. only then is the invoice created, and its id stored in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lago_python_client.models import AddOn, Customer, OneOffInvoice
from lago_python_client.models.invoice import InvoiceResponse
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from activities.lago_client import (
    LAGO_TIMEOUT,
    LagoNotFound,
    LagoRejected,
    LagoUnavailable,
    call_lago,
)
from db.billing_models import SessionInvoice
from db.engine import SessionFactory

LOOKUP_PAGE_SIZE = 100
LOOKUP_MAX_PAGES = 20


def invoice_key(workflow_id: str) -> str:
    return f"session-invoice:{workflow_id}"


def invoice_marker(workflow_id: str) -> str:
    return f"[polaris:{invoice_key(workflow_id)}]"


class SessionInvoiceRequest(BaseModel):
    workflow_id: str
    external_customer_id: str
    amount_minor: int
    currency: str
    add_on_code: str


@dataclass(frozen=True)
class SessionInvoiceOutcome:
    lago_invoice_id: str
    invoice_number: str | None
    created: bool


async def create_or_find_session_invoice(
    client: Any, sessions: SessionFactory, request: SessionInvoiceRequest
) -> SessionInvoiceOutcome:
    key = invoice_key(request.workflow_id)
    async with sessions() as db, db.begin():
        await db.execute(
            insert(SessionInvoice)
            .values(
                workflow_id=request.workflow_id,
                source="one_off",
                idempotency_key=key,
                external_customer_id=request.external_customer_id,
                amount_minor=request.amount_minor,
                currency=request.currency,
            )
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
        )
        row = (
            await db.scalars(
                select(SessionInvoice)
                .where(SessionInvoice.idempotency_key == key)
                .with_for_update()
            )
        ).one()
        if row.lago_invoice_id is not None:
            return SessionInvoiceOutcome(row.lago_invoice_id, row.invoice_number, created=False)

        invoice = await find_session_invoice(client, request)
        created = invoice is None
        if invoice is None:
            invoice = await _create(client, request)
        row.lago_invoice_id = invoice.lago_id
        row.invoice_number = invoice.number
        row.linked_at = datetime.now(UTC)
    return SessionInvoiceOutcome(invoice.lago_id, invoice.number, created=created)


async def find_session_invoice(
    client: Any, request: SessionInvoiceRequest
) -> InvoiceResponse | None:
    """The one-off invoice an earlier attempt created for this session, if any."""
    return await find_one_off_invoice(
        client,
        external_customer_id=request.external_customer_id,
        amount_minor=request.amount_minor,
        marker=invoice_marker(request.workflow_id),
    )


async def find_one_off_invoice(
    client: Any, *, external_customer_id: str, amount_minor: int, marker: str
) -> InvoiceResponse | None:
    """The customer's one-off invoice of ``amount_minor`` with a fee whose description carries
    ``marker`` (an earlier attempt created it and its answer was lost), if any."""
    for page in range(1, LOOKUP_MAX_PAGES + 1):
        try:
            listing = await call_lago(
                client.invoices.find_all,
                {
                    "external_customer_id": external_customer_id,
                    "invoice_type": "one_off",
                    "per_page": LOOKUP_PAGE_SIZE,
                    "page": page,
                },
            )
        except LagoNotFound:
            return None
        invoices: list[InvoiceResponse] = list(listing.get("invoices") or [])
        for summary in invoices:
            if summary.fees_amount_cents != amount_minor:
                continue
            detail: InvoiceResponse = await call_lago(client.invoices.find, summary.lago_id)
            fees = detail.fees.__root__ if detail.fees is not None else []
            if any(marker in (fee.description or "") for fee in fees):
                return detail
        meta = listing.get("meta") or {}
        if not invoices or not meta.get("next_page"):
            return None
    return None


async def _create(client: Any, request: SessionInvoiceRequest) -> InvoiceResponse:
    return await create_one_off_invoice(
        client,
        external_customer_id=request.external_customer_id,
        currency=request.currency,
        add_on=AddOnSpec(
            code=request.add_on_code,
            name="EV charging session",
            description="One charging session (per-session billing)",
        ),
        amount_minor=request.amount_minor,
        description=f"EV charging session {invoice_marker(request.workflow_id)}",
    )


@dataclass(frozen=True)
class AddOnSpec:
    """The Lago add-on a one-off fee is billed on (created with amount 0 if missing)."""

    code: str
    name: str
    description: str


async def create_one_off_invoice(
    client: Any,
    *,
    external_customer_id: str,
    currency: str,
    add_on: AddOnSpec,
    amount_minor: int,
    description: str,
) -> InvoiceResponse:
    """A one-off invoice with one fee of ``amount_minor`` on ``add_on``; the caller makes it
    at-most-once (a claimed row and :func:`find_one_off_invoice` with a marker in
    ``description``)."""
    await _ensure_add_on(client, add_on, currency)
    # Upsert by external id only: creates a missing customer, changes nothing on an existing one.
    await call_lago(
        client.customers.create,
        Customer.parse_obj({"external_id": external_customer_id}),
        LAGO_TIMEOUT,
    )
    fee = {
        "add_on_code": add_on.code,
        "units": 1,
        "unit_amount_cents": amount_minor,
        "description": description,
    }
    invoice: InvoiceResponse | None = await call_lago(
        client.invoices.create,
        OneOffInvoice.parse_obj(
            {
                "external_customer_id": external_customer_id,
                "currency": currency,
                "fees": [fee],
            }
        ),
        LAGO_TIMEOUT,
    )
    if invoice is None:
        raise LagoUnavailable("Lago answered no invoice")
    return invoice


async def _ensure_add_on(client: Any, add_on: AddOnSpec, currency: str) -> None:
    try:
        await call_lago(client.add_ons.find, add_on.code)
        return
    except LagoNotFound:
        pass
    try:
        await call_lago(
            client.add_ons.create,
            AddOn.parse_obj(
                {
                    "name": add_on.name,
                    "code": add_on.code,
                    "amount_cents": 0,
                    "amount_currency": currency,
                    "description": add_on.description,
                }
            ),
            LAGO_TIMEOUT,
        )
    except LagoRejected as exc:
        if exc.status != 422:  # 422: another attempt created it in the meantime
            raise
