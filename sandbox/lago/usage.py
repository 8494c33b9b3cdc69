"""Billing periods and usage computed from the stored events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sandbox.lago.money import charge_amount, dec_str, to_decimal
from sandbox.lago.state import Record, State, iso, parse_time

_MONTHS = {"monthly": 1, "quarterly": 3, "semiannual": 6, "yearly": 12}


def _add_months(moment: datetime, months: int) -> datetime:
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(
        moment.day,
        [31, 29 if _leap(year) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1],
    )
    return moment.replace(year=year, month=month, day=day)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def billing_period(subscription: Record, plan: Record, at: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the period containing ``at``; never starts before the subscription."""
    started = parse_time(subscription.get("started_at") or subscription["created_at"])
    if subscription.get("period_start"):  # moved forward by sandbox billing runs
        started = max(started, parse_time(subscription["period_start"]))
    interval = plan.get("interval", "monthly")
    if subscription.get("billing_time") == "anniversary":
        start = started
        while True:
            end = (
                start + timedelta(days=7)
                if interval == "weekly"
                else _add_months(start, _MONTHS[interval])
            )
            if end > at:
                return start, end
            start = end
    midnight = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if interval == "weekly":
        start = midnight - timedelta(days=midnight.weekday())
        end = start + timedelta(days=7)
    else:
        months = _MONTHS[interval]
        first_month = (at.month - 1) // months * months + 1
        start = midnight.replace(month=first_month, day=1)
        end = _add_months(start, months)
    return max(start, started), end


def event_time(value: Any, received: datetime) -> datetime:
    """Lago accepts Unix seconds (int, float or numeric string); we also accept ISO 8601."""
    if value is None or value == "":
        return received
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC)
    text = str(value)
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        return parse_time(text)


def subscription_events(
    state: State, subscription: Record, start: datetime, end: datetime, code: str
) -> list[Record]:
    ext = subscription["external_id"]
    return [
        e
        for e in state.events
        if e["external_subscription_id"] == ext
        and e["code"] == code
        and start <= parse_time(e["timestamp"]) < end
    ]


def aggregate(metric: Record, events: list[Record]) -> Decimal:
    kind = metric.get("aggregation_type")
    if kind == "count_agg":
        return Decimal(len(events))
    field = metric.get("field_name") or ""
    values = []
    for e in events:
        try:
            values.append(to_decimal((e.get("properties") or {}).get(field)))
        except ValueError:  # Lago ignores events whose value is not a number
            continue
    if kind == "max_agg":
        return max(values, default=Decimal(0))
    if kind == "latest_agg":
        return values[-1] if values else Decimal(0)
    if kind == "unique_count_agg":
        return Decimal(len({(e.get("properties") or {}).get(field) for e in events}))
    return sum(values, Decimal(0))  # sum_agg (and weighted_sum_agg, approximated)


def charge_usages(
    state: State, subscription: Record, plan: Record, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Per charge: metric, units, event count, amount in minor units."""
    currency = plan["amount_currency"]
    out = []
    for charge in plan.get("charges", []):
        metric = state.billable_metrics.get(charge["billable_metric_code"])
        if metric is None:
            continue
        events = subscription_events(state, subscription, start, end, metric["code"])
        units = aggregate(metric, events)
        out.append(
            {
                "charge": charge,
                "metric": metric,
                "units": units,
                "events_count": len(events),
                "amount_cents": charge_amount(charge, units, currency),
            }
        )
    return out


def current_usage(state: State, subscription: Record, plan: Record, at: datetime) -> dict[str, Any]:
    """The ``customer_usage`` object of ``GET /customers/{id}/current_usage``."""
    start, end = billing_period(subscription, plan, at)
    currency = plan["amount_currency"]
    usages = charge_usages(state, subscription, plan, start, end)
    total = sum(u["amount_cents"] for u in usages)
    return {
        "from_datetime": iso(start),
        "to_datetime": iso(end - timedelta(seconds=1)),
        "issuing_date": (end).date().isoformat(),
        "lago_invoice_id": None,
        "currency": currency,
        "amount_cents": total,
        "taxes_amount_cents": 0,
        "total_amount_cents": total,
        "charges_usage": [
            {
                "units": dec_str(u["units"]),
                "total_aggregated_units": dec_str(u["units"]),
                "events_count": u["events_count"],
                "amount_cents": u["amount_cents"],
                "amount_currency": currency,
                "charge": {
                    "lago_id": u["charge"]["lago_id"],
                    "charge_model": u["charge"]["charge_model"],
                    "invoice_display_name": u["charge"].get("invoice_display_name")
                    or u["metric"]["name"],
                },
                "billable_metric": {
                    "lago_id": u["metric"]["lago_id"],
                    "name": u["metric"]["name"],
                    "code": u["metric"]["code"],
                    "aggregation_type": u["metric"]["aggregation_type"],
                },
                "filters": [],
                "grouped_usage": [],
            }
            for u in usages
        ],
    }


def customer_usage_cents(state: State, external_customer_id: str, at: datetime) -> int:
    """Current usage over all active subscriptions of a customer (for wallet ongoing balance)."""
    total = 0
    for sub in state.subscriptions.values():
        if sub["external_customer_id"] != external_customer_id or sub["status"] != "active":
            continue
        plan = state.plans.get(sub["plan_code"])
        if plan is None:
            continue
        start, end = billing_period(sub, plan, at)
        total += sum(u["amount_cents"] for u in charge_usages(state, sub, plan, start, end))
    return total
