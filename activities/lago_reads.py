"""Billing reads for the API: invoices, PDF link, current usage, wallets, customer portal.

Plain async functions over the official client (run in a thread). Every read is scoped to the
caller's Lago customer (``external_customer_id`` = the user's public id): an invoice or wallet of
another customer raises :class:`LagoNotFound`, which the API answers 404 like any cross-tenant
read. Lago being down raises :class:`LagoUnavailable` (answer 503). Money stays integer minor units.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from activities.lago_client import LagoNotFound, LagoUnavailable, call_lago

__all__ = [
    "CurrentUsage",
    "InvoiceDetail",
    "InvoicePage",
    "InvoicePdf",
    "InvoiceSummary",
    "LagoNotFound",
    "LagoUnavailable",
    "OperatorInvoice",
    "OperatorInvoicePage",
    "UsageCharge",
    "WalletSummary",
    "WalletTransactionItem",
    "current_usage",
    "get_invoice",
    "invoice_pdf",
    "list_all_invoices",
    "list_invoices",
    "list_wallets",
    "portal_url",
    "wallet_transactions",
]


class InvoiceSummary(BaseModel):
    lago_id: str
    number: str
    invoice_type: str
    status: str
    payment_status: str
    currency: str
    total_amount_minor: int
    issuing_date: str | None = None


class InvoicePage(BaseModel):
    invoices: list[InvoiceSummary]
    page: int
    total_pages: int | None = None
    total_count: int | None = None


class InvoiceFeeLine(BaseModel):
    description: str | None
    units: str | None
    amount_minor: int


class InvoiceDetail(InvoiceSummary):
    fees_amount_minor: int
    taxes_amount_minor: int
    prepaid_credit_amount_minor: int
    file_url: str | None
    fees: list[InvoiceFeeLine]


class InvoicePdf(BaseModel):
    status: Literal["ready", "pending"]
    url: str | None


class UsageCharge(BaseModel):
    code: str | None
    units: str
    amount_minor: int
    events_count: int | None


class CurrentUsage(BaseModel):
    from_datetime: str | None
    to_datetime: str | None
    currency: str
    amount_minor: int
    total_amount_minor: int
    charges: list[UsageCharge]


class WalletSummary(BaseModel):
    lago_id: str
    name: str | None
    status: str
    currency: str
    balance_minor: int
    ongoing_balance_minor: int
    credits_balance: str | None


class WalletTransactionItem(BaseModel):
    lago_id: str
    transaction_type: str
    transaction_status: str | None
    status: str
    amount: str | None
    credit_amount: str | None
    created_at: str | None


def _summary(invoice: Any) -> dict[str, Any]:
    return {
        "lago_id": invoice.lago_id,
        "number": invoice.number,
        "invoice_type": invoice.invoice_type,
        "status": invoice.status,
        "payment_status": invoice.payment_status,
        "currency": invoice.currency,
        "total_amount_minor": invoice.total_amount_cents,
        "issuing_date": invoice.issuing_date,
    }


def _customer_of(invoice: Any) -> str | None:
    customer = getattr(invoice, "customer", None)
    return getattr(customer, "external_id", None)


async def list_invoices(
    client: Any, external_customer_id: str, *, page: int = 1, per_page: int = 20
) -> InvoicePage:
    listing = await call_lago(
        client.invoices.find_all,
        {"external_customer_id": external_customer_id, "page": page, "per_page": per_page},
    )
    meta = listing.get("meta") or {}
    return InvoicePage(
        invoices=[InvoiceSummary(**_summary(i)) for i in listing.get("invoices") or []],
        page=page,
        total_pages=meta.get("total_pages"),
        total_count=meta.get("total_count"),
    )


class OperatorInvoice(InvoiceSummary):
    external_customer_id: str | None = None


class OperatorInvoicePage(BaseModel):
    invoices: list[OperatorInvoice]
    page: int
    total_pages: int | None = None
    total_count: int | None = None


async def list_all_invoices(
    client: Any,
    *,
    external_customer_id: str | None = None,
    status: str | None = None,
    payment_status: str | None = None,
    page: int = 1,
    per_page: int = 20,
) -> OperatorInvoicePage:
    """Every customer's invoices (operators), filtered as Lago's ``GET /invoices`` filters."""
    options: dict[str, Any] = {"page": page, "per_page": per_page}
    for name, value in (
        ("external_customer_id", external_customer_id),
        # Lago's filters are arrays (``statuses[]``); one value each here.
        ("statuses[]", status),
        ("payment_statuses[]", payment_status),
    ):
        if value:
            options[name] = value
    listing = await call_lago(client.invoices.find_all, options)
    meta = listing.get("meta") or {}
    return OperatorInvoicePage(
        invoices=[
            OperatorInvoice(**_summary(i), external_customer_id=_customer_of(i))
            for i in listing.get("invoices") or []
        ],
        page=page,
        total_pages=meta.get("total_pages"),
        total_count=meta.get("total_count"),
    )


async def _own_invoice(client: Any, external_customer_id: str, lago_id: str) -> Any:
    invoice = await call_lago(client.invoices.find, lago_id)
    if _customer_of(invoice) != external_customer_id:
        raise LagoNotFound("invoice not found", status=404)
    return invoice


async def get_invoice(client: Any, external_customer_id: str, lago_id: str) -> InvoiceDetail:
    invoice = await _own_invoice(client, external_customer_id, lago_id)
    fees = invoice.fees.__root__ if invoice.fees is not None else []
    return InvoiceDetail(
        **_summary(invoice),
        fees_amount_minor=invoice.fees_amount_cents,
        taxes_amount_minor=invoice.taxes_amount_cents,
        prepaid_credit_amount_minor=invoice.prepaid_credit_amount_cents,
        file_url=invoice.file_url,
        fees=[
            InvoiceFeeLine(
                description=getattr(fee, "description", None),
                units=None if fee.units is None else str(fee.units),
                amount_minor=int(fee.amount_cents or 0),
            )
            for fee in fees
        ],
    )


async def invoice_pdf(client: Any, external_customer_id: str, lago_id: str) -> InvoicePdf:
    """The PDF link, or ``pending`` after asking Lago to generate it (ask again later)."""
    invoice = await _own_invoice(client, external_customer_id, lago_id)
    if invoice.file_url:
        return InvoicePdf(status="ready", url=invoice.file_url)
    downloaded = await call_lago(client.invoices.download, lago_id)
    url = getattr(downloaded, "file_url", None)
    return InvoicePdf(status="ready", url=url) if url else InvoicePdf(status="pending", url=None)


async def current_usage(
    client: Any, external_customer_id: str, external_subscription_id: str
) -> CurrentUsage:
    usage = await call_lago(
        client.customers.current_usage, external_customer_id, external_subscription_id
    )
    charges = [
        UsageCharge(
            code=getattr(getattr(c, "billable_metric", None), "code", None),
            units=str(c.units),
            amount_minor=int(c.amount_cents),
            events_count=c.events_count,
        )
        for c in usage.charges_usage or []
    ]
    return CurrentUsage(
        from_datetime=usage.from_datetime,
        to_datetime=usage.to_datetime,
        currency=usage.currency,
        amount_minor=int(usage.amount_cents),
        total_amount_minor=int(usage.total_amount_cents),
        charges=charges,
    )


async def list_wallets(client: Any, external_customer_id: str) -> list[WalletSummary]:
    listing = await call_lago(
        client.wallets.find_all, {"external_customer_id": external_customer_id}
    )
    return [
        WalletSummary(
            lago_id=w.lago_id,
            name=w.name,
            status=w.status,
            currency=w.currency,
            balance_minor=w.balance_cents,
            ongoing_balance_minor=w.ongoing_balance_cents,
            credits_balance=None if w.credits_balance is None else str(w.credits_balance),
        )
        for w in listing.get("wallets") or []
        if w.external_customer_id == external_customer_id
    ]


async def wallet_transactions(
    client: Any, external_customer_id: str, wallet_id: str
) -> list[WalletTransactionItem]:
    wallet = await call_lago(client.wallets.find, wallet_id)
    if wallet.external_customer_id != external_customer_id:
        raise LagoNotFound("wallet not found", status=404)
    listing = await call_lago(client.wallet_transactions.find_all, wallet_id)
    return [
        WalletTransactionItem(
            lago_id=t.lago_id,
            transaction_type=t.transaction_type,
            transaction_status=getattr(t, "transaction_status", None),
            status=t.status,
            amount=None if t.amount is None else str(t.amount),
            credit_amount=None if t.credit_amount is None else str(t.credit_amount),
            created_at=t.created_at,
        )
        for t in listing.get("wallet_transactions") or []
    ]


async def portal_url(client: Any, external_customer_id: str) -> str:
    url = await call_lago(client.customers.portal_url, external_customer_id)
    if not url:
        raise LagoUnavailable("Lago answered no portal URL")
    return str(url)
