"""The demo's billing side: in the Lago sandbox, a plan priced like the demo tariff, and the demo
driver as a customer subscribed to it, so a demo session ends with usage (and an invoice) in
"Lago" without a Lago account. Only for the embedded sandbox: a real Lago is never seeded."""

from __future__ import annotations

from decimal import Decimal

from activities.lago import (
    EnsureBillableMetricInput,
    EnsureSubscriptionInput,
    LagoBilling,
    UpsertCustomerInput,
)
from config.settings import Settings
from db.engine import SessionFactory
from services.billing_plan import create_plan_if_missing

DEMO_PRICE_PER_KWH = "0.30"  # EUR, as the demo tariff


async def ensure_demo_plan(settings: Settings) -> None:
    await create_plan_if_missing(
        settings, Decimal(DEMO_PRICE_PER_KWH), "EUR", name="EV charging (demo)"
    )


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
