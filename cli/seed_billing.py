"""The demo's billing side: in the Lago sandbox, a plan priced like the demo tariff, and the demo
driver as a customer subscribed to it, so a demo session ends with usage (and an invoice) in
"Lago" without a Lago account. Only for the embedded sandbox: a real Lago is never seeded."""

from __future__ import annotations

from typing import Any

from lago_python_client.models import Plan

from activities.lago import (
    EnsureBillableMetricInput,
    EnsureSubscriptionInput,
    LagoBilling,
    UpsertCustomerInput,
)
from activities.lago_client import LagoNotFound, call_lago, make_lago_client
from config.settings import Settings
from db.engine import SessionFactory

DEMO_PRICE_PER_KWH = "0.30"  # EUR, as the demo tariff


async def ensure_demo_plan(settings: Settings) -> None:
    # Typed Any as in activities/lago.py: the client's mixins do not type-check under strict.
    client: Any = make_lago_client(settings)
    try:
        await call_lago(client.plans.find, settings.lago_plan_code)
        return
    except LagoNotFound:
        pass
    metric = await call_lago(client.billable_metrics.find, settings.lago_billable_metric_code)
    # parse_obj, as in activities/lago.py: the client's pydantic-v1 models declare every
    # optional field as a required constructor argument under mypy.
    plan = Plan.parse_obj(
        {
            "name": "EV charging (demo)",
            "code": settings.lago_plan_code,
            "interval": "monthly",
            "amount_cents": 0,
            "amount_currency": "EUR",
            "pay_in_advance": False,
            "charges": [
                {
                    "billable_metric_id": metric.lago_id,
                    "charge_model": "standard",
                    "properties": {"amount": DEMO_PRICE_PER_KWH},
                }
            ],
        }
    )
    await call_lago(client.plans.create, plan)


async def seed_demo_billing(
    settings: Settings, session_factory: SessionFactory, *, public_id: str, email: str
) -> str:
    """Metric, plan, customer and subscription; idempotent. Returns the subscription id."""
    billing = LagoBilling(settings, session_factory, plan_code=settings.lago_plan_code)
    await billing.ensure_billable_metric(EnsureBillableMetricInput(create_if_missing=True))
    await ensure_demo_plan(settings)
    await billing.upsert_customer(
        UpsertCustomerInput(public_id=public_id, email=email, name="Demo Driver", currency="EUR")
    )
    subscription = await billing.ensure_subscription(EnsureSubscriptionInput(public_id=public_id))
    return subscription.external_id
