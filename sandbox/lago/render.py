"""Stored records to the JSON objects of the Lago API."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sandbox.lago.money import dec_str, from_minor, to_decimal, to_minor
from sandbox.lago.state import Record, State, iso, now
from sandbox.lago.usage import billing_period, customer_usage_cents

_SUBSCRIPTION_FIELDS = (
    "lago_id",
    "external_id",
    "lago_customer_id",
    "external_customer_id",
    "billing_time",
    "name",
    "plan_code",
    "status",
    "created_at",
    "canceled_at",
    "started_at",
    "ending_at",
    "subscription_at",
    "terminated_at",
    "previous_plan_code",
    "next_plan_code",
    "downgrade_plan_date",
    "trial_ended_at",
    "current_billing_period_started_at",
    "current_billing_period_ending_at",
    "on_termination_credit_note",
    "on_termination_invoice",
)


def customer(rec: Record) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if not k.startswith("_")}


def subscription(rec: Record, state: State, extended: bool = False) -> dict[str, Any]:
    out = {k: rec.get(k) for k in _SUBSCRIPTION_FIELDS}
    plan = state.plans.get(rec["plan_code"])
    if plan is not None:
        out["plan_amount_cents"] = plan["amount_cents"]
        out["plan_amount_currency"] = plan["amount_currency"]
        if rec["status"] == "active":
            start, end = billing_period(rec, plan, now())
            out["current_billing_period_started_at"] = iso(start)
            out["current_billing_period_ending_at"] = iso(end)
        if extended:
            out["plan"] = plan_obj(plan)
    return out


def plain(rec: Record) -> dict[str, Any]:
    """A record without its internal (``_``) fields."""
    return {k: v for k, v in rec.items() if not k.startswith("_")}


def plan_obj(rec: Record) -> dict[str, Any]:
    """The document types several optional plan fields as non-nullable: omit them when unset."""
    return {k: v for k, v in rec.items() if not k.startswith("_") and v is not None}


def event(rec: Record, created: bool = False) -> dict[str, Any]:
    out = {k: v for k, v in rec.items() if not k.startswith("_")}
    if created:  # processing is asynchronous in Lago: the create answer knows no customer yet
        out["lago_customer_id"] = None
        out["lago_subscription_id"] = None
    return out


def invoice(rec: Record, state: State, with_fees: bool = True) -> dict[str, Any]:
    out = {k: v for k, v in rec.items() if not k.startswith("_") and k not in ("fees", "file_url")}
    settled = rec["payment_status"] == "succeeded" or rec["status"] in ("voided", "draft")
    out["total_due_amount_cents"] = 0 if settled else rec["total_amount_cents"]
    if rec.get("file_url"):  # the document types file_url as a string: absent until generated
        out["file_url"] = rec["file_url"]
    cust = state.customers.get(rec["_external_customer_id"])
    if cust is not None:
        out["customer"] = customer(cust)
    if with_fees:
        out["fees"] = list(rec.get("fees", []))
        out["subscriptions"] = [
            subscription(state.subscriptions[s], state)
            for s in rec.get("_subscription_ids", [])
            if s in state.subscriptions
        ]
        out["credits"] = []
        out["applied_taxes"] = []
    return out


def credits_to_cents(credits: Decimal, rate_amount: str, currency: str) -> int:
    return to_minor(credits * to_decimal(rate_amount), currency)


def cents_to_credits(cents: int, rate_amount: str, currency: str) -> Decimal:
    rate = to_decimal(rate_amount, "1") or Decimal(1)
    return from_minor(cents, currency) / rate


def wallet(rec: Record, state: State) -> dict[str, Any]:
    out = {k: v for k, v in rec.items() if not k.startswith("_")}
    currency, rate = rec["currency"], rec["rate_amount"]
    balance = int(rec["balance_cents"])
    usage = 0
    if rec["status"] == "active":
        usage = min(balance, customer_usage_cents(state, rec["external_customer_id"], now()))
    ongoing = balance - usage
    out.update(
        {
            "credits_balance": dec_str(cents_to_credits(balance, rate, currency)),
            "ongoing_balance_cents": ongoing,
            "ongoing_usage_balance_cents": usage,
            "credits_ongoing_balance": dec_str(cents_to_credits(ongoing, rate, currency)),
            "credits_ongoing_usage_balance": dec_str(cents_to_credits(usage, rate, currency)),
            "consumed_credits": dec_str(
                cents_to_credits(int(rec.get("_consumed_cents", 0)), rate, currency)
            ),
            "consumed_amount_cents": int(rec.get("_consumed_cents", 0)),
            # Required by the document without a definition: Lago's deprecated alias.
            "balance": balance,
        }
    )
    return out


def wallet_transaction(rec: Record) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if not k.startswith("_")}
