"""The running sandbox: state, webhooks, background work and the invoice lifecycle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from starlette.requests import Request

from sandbox.lago import render
from sandbox.lago.config import FaultSpec, SandboxConfig
from sandbox.lago.contract import ContractLog, OpenApiContract
from sandbox.lago.links import LinkSigner
from sandbox.lago.money import dec_str, from_minor
from sandbox.lago.state import Record, State, Store, iso, iso_ms, new_id, now
from sandbox.lago.usage import billing_period, charge_usages
from sandbox.lago.webhooks import WebhookDispatcher

log = logging.getLogger("sandbox.lago")


class Sandbox:
    def __init__(self, config: SandboxConfig, contract: OpenApiContract) -> None:
        self.config = config
        self.contract = contract
        self.contract_log = ContractLog()
        self.store = Store(config.state_file)
        self.faults: list[FaultSpec] = list(config.faults)
        self.webhooks = WebhookDispatcher(
            config.webhook_url,
            config.webhook_secret,
            organization_id=config.organization_id,
            max_attempts=config.webhook_max_attempts,
            backoff_seconds=config.webhook_backoff_seconds,
            timeout_seconds=config.webhook_timeout_seconds,
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self._base_url = config.public_url
        # Portal and PDF links are capability URLs (sandbox/lago/links.py).
        self.links = LinkSigner(config.api_key)

    @property
    def state(self) -> State:
        return self.store.state

    def commit(self) -> None:
        self.store.commit()

    async def start(self) -> None:
        await self.webhooks.start()
        # Invoices whose PDF was not generated before a restart get it now.
        for inv in self.state.invoices.values():
            if inv["status"] == "finalized" and not inv.get("file_url"):
                self.spawn(self._generate_pdf(inv["lago_id"]))

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.webhooks.stop()
        self.commit()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def remember_base_url(self, request: Request) -> None:
        if self._base_url is None:
            self._base_url = str(request.base_url).rstrip("/")

    @property
    def base_url(self) -> str:
        return (self._base_url or "http://127.0.0.1:3100").rstrip("/")

    def reset(self) -> None:
        self.store.reset()
        self.webhooks.sent.clear()

    # -- invoices ---------------------------------------------------------------------------

    def new_invoice(
        self,
        customer: Record,
        *,
        invoice_type: str,
        currency: str,
        fees: list[dict[str, Any]],
        draft: bool = False,
        subscription_ids: list[str] | None = None,
    ) -> Record:
        state = self.state
        moment = now()
        seq = state.next_number("invoice")
        cust_seq = state.next_number(f"invoice:{customer['external_id']}")
        lago_id = new_id()
        fees_total = 0
        for fee in fees:
            fee["lago_invoice_id"] = lago_id
            fees_total += fee["amount_cents"]
        inv: Record = {
            "lago_id": lago_id,
            "billing_entity_code": None,
            "sequential_id": cust_seq,
            "number": f"SBX-{customer['sequential_id']:03d}-{seq:05d}",
            "issuing_date": moment.date().isoformat(),
            "payment_due_date": moment.date().isoformat(),
            "payment_overdue": False,
            "net_payment_term": 0,
            "invoice_type": invoice_type,
            "status": "draft" if draft else "finalized",
            "payment_status": "pending",
            "currency": currency,
            "fees_amount_cents": fees_total,
            "coupons_amount_cents": 0,
            "credit_notes_amount_cents": 0,
            "sub_total_excluding_taxes_amount_cents": fees_total,
            "taxes_amount_cents": 0,
            "sub_total_including_taxes_amount_cents": fees_total,
            "prepaid_credit_amount_cents": 0,
            "progressive_billing_credit_amount_cents": 0,
            "total_amount_cents": fees_total,
            "version_number": 4,
            "self_billed": False,
            "created_at": iso(moment),
            "updated_at": iso(moment),
            "metadata": [],
            "applied_usage_thresholds": [],
            "fees": fees,
            "_external_customer_id": customer["external_id"],
            "_subscription_ids": list(subscription_ids or []),
        }
        state.invoices[lago_id] = inv
        if invoice_type == "subscription" and not draft:
            self._apply_prepaid_credits(inv)
        if draft:
            self.webhooks.emit("invoice.drafted", "invoice", render.invoice(inv, state))
        else:
            self._finalized(inv)
        return inv

    def finalize(self, inv: Record) -> None:
        if inv["status"] != "draft":
            return
        inv["status"] = "finalized"
        inv["updated_at"] = iso(now())
        if inv["invoice_type"] == "subscription":
            self._apply_prepaid_credits(inv)
        self._finalized(inv)

    def _finalized(self, inv: Record) -> None:
        if inv["total_amount_cents"] == 0:
            inv["payment_status"] = "succeeded"
        self.webhooks.emit("invoice.created", "invoice", render.invoice(inv, self.state))
        self.spawn(self._generate_pdf(inv["lago_id"]))

    def _apply_prepaid_credits(self, inv: Record) -> None:
        state = self.state
        for wallet in state.wallets.values():
            due = inv["total_amount_cents"]
            if due <= 0:
                return
            if (
                wallet["external_customer_id"] != inv["_external_customer_id"]
                or wallet["status"] != "active"
                or wallet["currency"] != inv["currency"]
                or wallet["balance_cents"] <= 0
            ):
                continue
            used = min(due, wallet["balance_cents"])
            wallet["balance_cents"] -= used
            wallet["_consumed_cents"] = wallet.get("_consumed_cents", 0) + used
            wallet["last_consumed_credit_at"] = iso(now())
            inv["prepaid_credit_amount_cents"] += used
            inv["total_amount_cents"] -= used
            credits = render.cents_to_credits(used, wallet["rate_amount"], wallet["currency"])
            tx = self.wallet_transaction(
                wallet, "outbound", "invoiced", credits, lago_invoice_id=inv["lago_id"]
            )
            state.wallet_transactions[tx["lago_id"]] = tx

    def wallet_transaction(
        self,
        wallet: Record,
        direction: str,
        kind: str,
        credits: Decimal,
        *,
        lago_invoice_id: str | None = None,
        name: str | None = None,
        metadata: list[dict[str, Any]] | None = None,
    ) -> Record:
        moment = iso(now())
        cents = render.credits_to_cents(credits, wallet["rate_amount"], wallet["currency"])
        return {
            "lago_id": new_id(),
            "lago_wallet_id": wallet["lago_id"],
            "lago_invoice_id": lago_invoice_id,
            "lago_credit_note_id": None,
            "lago_voided_invoice_id": None,
            "status": "settled",
            "source": "manual",
            "transaction_status": kind,
            "transaction_type": direction,
            "amount": dec_str(credits * Decimal(str(wallet["rate_amount"]))),
            "credit_amount": dec_str(credits),
            "invoice_requires_successful_payment": False,
            "metadata": list(metadata or []),
            "remaining_amount_cents": cents if direction == "inbound" else None,
            "remaining_credit_amount": dec_str(credits) if direction == "inbound" else None,
            "priority": int(wallet.get("priority", 50)),
            "settled_at": moment,
            "failed_at": None,
            "created_at": moment,
            "name": name,
            "payment_method": {"payment_method_type": "manual"},
            "_seq": self.state.next_number("wallet_transaction"),
        }

    def bill_subscription(
        self, sub: Record, *, until: datetime, terminating: bool
    ) -> Record | None:
        """Invoice a subscription's usage from its period start to ``until`` (charges only)."""
        state = self.state
        plan = state.plans.get(sub["plan_code"])
        customer = state.customers.get(sub["external_customer_id"])
        if plan is None or customer is None:
            return None
        start, end = billing_period(sub, plan, until - timedelta(microseconds=1))
        end = min(end, until)
        currency = plan["amount_currency"]
        fees = []
        for usage in charge_usages(state, sub, plan, start, end):
            if usage["amount_cents"] == 0 and usage["events_count"] == 0:
                continue
            fees.append(self._charge_fee(sub, customer, usage, currency, start, end))
        sub["period_start"] = iso(end)
        grace = int((customer.get("billing_configuration") or {}).get("invoice_grace_period") or 0)
        return self.new_invoice(
            customer,
            invoice_type="subscription",
            currency=currency,
            fees=fees,
            draft=grace > 0,
            subscription_ids=[sub["external_id"]],
        )

    def _charge_fee(
        self,
        sub: Record,
        customer: Record,
        usage: dict[str, Any],
        currency: str,
        start: datetime,
        end: datetime,
    ) -> dict[str, Any]:
        units: Decimal = usage["units"]
        cents: int = usage["amount_cents"]
        unit_amount = (from_minor(cents, currency) / units) if units else Decimal(0)
        return {
            "lago_id": new_id(),
            "lago_charge_id": usage["charge"]["lago_id"],
            "lago_subscription_id": sub["lago_id"],
            "lago_customer_id": customer["lago_id"],
            "external_customer_id": customer["external_id"],
            "external_subscription_id": sub["external_id"],
            "amount_cents": cents,
            "precise_amount": dec_str(from_minor(cents, currency)),
            "amount_currency": currency,
            "taxes_amount_cents": 0,
            "taxes_rate": 0.0,
            "units": dec_str(units),
            "precise_unit_amount": dec_str(unit_amount),
            "total_aggregated_units": dec_str(units),
            "total_amount_cents": cents,
            "total_amount_currency": currency,
            "events_count": usage["events_count"],
            "pay_in_advance": False,
            "invoiceable": True,
            "from_date": iso(start),
            "to_date": iso(end),
            "payment_status": "pending",
            "created_at": iso(now()),
            "sub_total_excluding_taxes_amount_cents": cents,
            "sub_total_excluding_taxes_precise_amount_cents": dec_str(Decimal(cents)),
            "item": {
                "type": "charge",
                "code": usage["metric"]["code"],
                "name": usage["metric"]["name"],
                "invoice_display_name": usage["charge"].get("invoice_display_name")
                or usage["metric"]["name"],
                "lago_item_id": usage["metric"]["lago_id"],
                "item_type": "BillableMetric",
            },
        }

    async def _generate_pdf(self, lago_id: str) -> None:
        await asyncio.sleep(self.config.pdf_delay_seconds)
        inv = self.state.invoices.get(lago_id)
        if inv is None or inv.get("file_url") or inv["status"] == "draft":
            return
        path = f"/__sandbox/files/invoices/{quote(lago_id, safe='')}.pdf"
        inv["file_url"] = f"{self.base_url}{self.links.sign(path)}"
        inv["updated_at"] = iso(now())
        self.commit()
        self.webhooks.emit("invoice.generated", "invoice", render.invoice(inv, self.state))

    def generate_pdf_soon(self, inv: Record) -> None:
        if inv["status"] != "draft" and not inv.get("file_url"):
            self.spawn(self._generate_pdf(inv["lago_id"]))

    def event_error(self, event: Record, error: str, message: str) -> None:
        self.webhooks.emit(
            "event.error",
            "event_error",
            {"error": error, "message": message, "event": event, "at": iso_ms(now())},
        )


def sandbox_of(request: Request) -> Sandbox:
    sb = request.app.state.sandbox
    assert isinstance(sb, Sandbox)
    sb.remember_base_url(request)
    return sb
