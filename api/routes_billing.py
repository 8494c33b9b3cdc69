"""Billing reads for the signed-in driver, and the operators' invoice actions.

Drivers (``/api/v1/me/billing/...``) read their own Lago customer only: the customer's external
id is the public id of their active mapping (``user_mappings``). Another driver's invoice or
wallet answers 404 like every cross-tenant read. Operators list every invoice
(``GET /api/v1/invoices``) and act on any
(``/api/v1/invoices/{lago_id}/finalize|void|retry-payment``); each action is audited.

Lago errors are mapped here, once: not found → 404, unavailable → 503 ``BILLING_UNAVAILABLE``,
refused (e.g. voiding a paid invoice) → 409 ``BILLING_REFUSED``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import select

from activities import lago_reads
from activities.lago_client import (
    LagoError,
    LagoNotFound,
    LagoRejected,
    call_lago,
    make_lago_client,
)
from api.authz import AdminUser, CurrentUser, LiveAdmin
from api.deps import AppState, State
from api.errors import ApiError, NotFound
from api.services import Services, actor_of
from db.audit import write_audit
from db.models import UserMapping
from services import billing_unsent

router = APIRouter(prefix="/api/v1", tags=["billing"])

InvoiceAction = Literal["finalize", "void", "retry-payment"]


@dataclass(frozen=True, slots=True)
class BillingAccount:
    customer_id: str
    subscription_id: str | None


class PortalOut(BaseModel):
    url: str


class InvoiceActionOut(BaseModel):
    lago_id: str
    action: InvoiceAction
    status: str | None = None
    payment_status: str | None = None


@contextmanager
def lago_errors(what: str) -> Iterator[None]:
    """The one place Lago failures become HTTP answers for these routes."""
    try:
        yield
    except LagoNotFound as exc:
        raise NotFound(what) from exc
    except LagoRejected as exc:
        raise ApiError(
            409, "BILLING_REFUSED", f"Lago refused this ({exc.code or exc.status})"
        ) from exc
    except LagoError as exc:  # LagoUnavailable, and anything else the client could not do
        raise ApiError(
            503, "BILLING_UNAVAILABLE", "billing is unavailable; try again later"
        ) from exc


async def billing_account(state: AppState, user_id: str) -> BillingAccount | None:
    """The caller's Lago customer: their newest active mapping (None: no billing account)."""
    async with state.sessions() as db:
        mapping = await db.scalar(
            select(UserMapping)
            .where(UserMapping.user_id == user_id, UserMapping.is_active)
            .order_by(UserMapping.created_at.desc(), UserMapping.id.desc())
            .limit(1)
        )
    if mapping is None:
        return None
    return BillingAccount(
        customer_id=mapping.lago_customer_external_id or mapping.public_id,
        subscription_id=mapping.lago_subscription_external_id,
    )


async def _account(state: AppState, user_id: str) -> BillingAccount:
    account = await billing_account(state, user_id)
    if account is None:
        raise NotFound("billing account")
    return account


def _client(state: AppState) -> Any:
    return make_lago_client(state.settings)


@router.get("/me/billing/invoices", response_model=lago_reads.InvoicePage)
async def my_invoices(
    user: CurrentUser,
    state: State,
    page: Annotated[int, Query(ge=1)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 20,
) -> lago_reads.InvoicePage:
    account = await billing_account(state, user.user_id)
    if account is None:
        return lago_reads.InvoicePage(invoices=[], page=page, total_pages=0, total_count=0)
    with lago_errors("invoices"):
        return await lago_reads.list_invoices(
            _client(state), account.customer_id, page=page, per_page=per_page
        )


@router.get("/me/billing/invoices/{lago_id}", response_model=lago_reads.InvoiceDetail)
async def my_invoice(lago_id: str, user: CurrentUser, state: State) -> lago_reads.InvoiceDetail:
    account = await _account(state, user.user_id)
    with lago_errors("invoice"):
        return await lago_reads.get_invoice(_client(state), account.customer_id, lago_id)


@router.get(
    "/me/billing/invoices/{lago_id}/pdf",
    response_model=lago_reads.InvoicePdf,
    responses={202: {"model": lago_reads.InvoicePdf, "description": "PDF being generated"}},
)
async def my_invoice_pdf(lago_id: str, user: CurrentUser, state: State) -> JSONResponse:
    """200 with the URL when ready; 202 ``pending`` while Lago generates it (ask again)."""
    account = await _account(state, user.user_id)
    with lago_errors("invoice"):
        pdf = await lago_reads.invoice_pdf(_client(state), account.customer_id, lago_id)
    return JSONResponse(pdf.model_dump(), status_code=200 if pdf.status == "ready" else 202)


@router.get("/me/billing/usage", response_model=lago_reads.CurrentUsage)
async def my_usage(user: CurrentUser, state: State) -> lago_reads.CurrentUsage:
    account = await _account(state, user.user_id)
    if account.subscription_id is None:
        raise NotFound("subscription")
    with lago_errors("subscription"):
        return await lago_reads.current_usage(
            _client(state), account.customer_id, account.subscription_id
        )


@router.get("/me/billing/wallets", response_model=list[lago_reads.WalletSummary])
async def my_wallets(user: CurrentUser, state: State) -> list[lago_reads.WalletSummary]:
    account = await billing_account(state, user.user_id)
    if account is None:
        return []
    with lago_errors("wallets"):
        return await lago_reads.list_wallets(_client(state), account.customer_id)


@router.get(
    "/me/billing/wallets/{wallet_id}/transactions",
    response_model=list[lago_reads.WalletTransactionItem],
)
async def my_wallet_transactions(
    wallet_id: str, user: CurrentUser, state: State
) -> list[lago_reads.WalletTransactionItem]:
    account = await _account(state, user.user_id)
    with lago_errors("wallet"):
        return await lago_reads.wallet_transactions(_client(state), account.customer_id, wallet_id)


@router.get("/me/billing/portal", response_model=PortalOut)
async def my_portal(user: CurrentUser, state: State) -> PortalOut:
    account = await _account(state, user.user_id)
    with lago_errors("customer"):
        return PortalOut(url=await lago_reads.portal_url(_client(state), account.customer_id))


@router.get("/invoices", response_model=lago_reads.OperatorInvoicePage)
async def all_invoices(
    _: AdminUser,
    state: State,
    customer: Annotated[str | None, Query(max_length=255)] = None,
    status: Annotated[Literal["draft", "finalized", "voided", "failed"] | None, Query()] = None,
    payment_status: Annotated[Literal["pending", "succeeded", "failed"] | None, Query()] = None,
    page: Annotated[int, Query(ge=1)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 20,
) -> lago_reads.OperatorInvoicePage:
    """Every driver's invoices, from Lago (``customer``: the Lago customer's external id)."""
    with lago_errors("invoices"):
        return await lago_reads.list_all_invoices(
            _client(state),
            external_customer_id=customer,
            status=status,
            payment_status=payment_status,
            page=page,
            per_page=per_page,
        )


_CLIENT_METHODS: dict[InvoiceAction, str] = {
    "finalize": "finalize",
    "void": "void",
    "retry-payment": "retry_payment",
}
_AUDIT_ACTIONS: dict[InvoiceAction, str] = {
    "finalize": "invoice.finalized",
    "void": "invoice.voided",
    "retry-payment": "invoice.payment_retried",
}


async def _invoice_action(
    action: InvoiceAction, lago_id: str, admin: LiveAdmin, state: AppState
) -> InvoiceActionOut:
    client = _client(state)
    details: dict[str, Any] = {"action": action}
    try:
        with lago_errors("invoice"):
            answer = await call_lago(getattr(client.invoices, _CLIENT_METHODS[action]), lago_id)
            if answer is None:  # retry_payment answers an empty body: read the invoice back
                answer = await call_lago(client.invoices.find, lago_id)
    except ApiError as exc:
        details["refused"] = exc.code
        raise
    finally:
        # Written whatever Lago answered: an attempt on an invoice is itself worth knowing.
        await write_audit(
            state.sessions,
            admin.actor,
            _AUDIT_ACTIONS[action],
            subject=f"invoice:{lago_id}",
            source=admin.source,
            details=details,
        )
    return InvoiceActionOut(
        lago_id=lago_id,
        action=action,
        status=getattr(answer, "status", None),
        payment_status=getattr(answer, "payment_status", None),
    )


@router.post("/invoices/{lago_id}/finalize", response_model=InvoiceActionOut)
async def finalize_invoice(lago_id: str, admin: LiveAdmin, state: State) -> InvoiceActionOut:
    return await _invoice_action("finalize", lago_id, admin, state)


@router.post("/invoices/{lago_id}/void", response_model=InvoiceActionOut)
async def void_invoice(lago_id: str, admin: LiveAdmin, state: State) -> InvoiceActionOut:
    return await _invoice_action("void", lago_id, admin, state)


@router.post("/invoices/{lago_id}/retry-payment", response_model=InvoiceActionOut)
async def retry_invoice_payment(lago_id: str, admin: LiveAdmin, state: State) -> InvoiceActionOut:
    return await _invoice_action("retry-payment", lago_id, admin, state)


# -- Unsent billing lines (services/billing_unsent.py; docs/selfhosting.md) -----------------------


class ResendIn(BaseModel):
    session: str | None = None


@router.get("/billing/unsent")
async def list_unsent_lines(
    admin: LiveAdmin, ctx: Services, session: str | None = None
) -> list[dict[str, Any]]:
    return await billing_unsent.list_unsent(ctx, actor_of(admin), session=session)


@router.post("/billing/unsent/resend")
async def resend_unsent_lines(body: ResendIn, admin: LiveAdmin, ctx: Services) -> dict[str, Any]:
    return await billing_unsent.resend_unsent(ctx, actor_of(admin), session=body.session)
