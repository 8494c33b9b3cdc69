"""The Lago side of a new installation: the billable metric and a plan that prices it.

Lago prices the usage we send it with a plan (``POLARIS_LAGO_PLAN_CODE``); every driver linked to
a card is subscribed to it. With a real Lago an operator may design the plan in Lago's own
console; :func:`ensure_billing_plan` creates a simple one (a price per kWh, nothing per month)
when none exists, in the embedded sandbox or in a real Lago alike, and never changes an existing
plan.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from lago_python_client.models import Plan

from activities.lago import EnsureBillableMetricInput, LagoBilling
from activities.lago_client import LagoError, LagoNotFound, call_lago, make_lago_client
from config.settings import Settings
from db.audit import write_audit
from services.actor import Actor
from services.context import ServiceContext
from services.errors import InvalidInput, Unavailable


async def ensure_billing_plan(
    ctx: ServiceContext,
    actor: Actor,
    *,
    price_per_kwh: str,
    currency: str,
    name: str = "EV charging",
) -> dict[str, Any]:
    """The metric and the plan ``settings.lago_plan_code``; ``created`` says whether this call
    made the plan (an existing plan is reported as it is)."""
    try:
        price = Decimal(price_per_kwh)
    except InvalidOperation:
        price = Decimal(-1)
    if not price.is_finite() or price < 0:
        raise InvalidInput(
            "price_per_kwh must be a decimal amount ≥ 0",
            issues=[{"path": ["price_per_kwh"], "message": "a decimal amount such as 0.30"}],
        )
    if len(currency) != 3 or not currency.isalpha():
        raise InvalidInput(
            "currency must be an ISO 4217 code",
            issues=[{"path": ["currency"], "message": "three letters, such as EUR"}],
        )
    settings = ctx.settings
    billing = LagoBilling(settings, ctx.sessions, plan_code=settings.lago_plan_code)
    try:
        metric = await billing.ensure_billable_metric(
            EnsureBillableMetricInput(create_if_missing=True)
        )
        created = await create_plan_if_missing(settings, price, currency.upper(), name)
    except LagoError as exc:
        raise Unavailable(f"Lago did not answer as expected: {exc}") from exc
    await write_audit(
        ctx.sessions,
        actor.id,
        "billing.plan_ensured",
        subject=settings.lago_plan_code,
        source=actor.source,
        details={"created": created, "price_per_kwh": str(price), "currency": currency},
    )
    return {
        "plan_code": settings.lago_plan_code,
        "created": created,
        "billable_metric": metric.code,
        "price_per_kwh": str(price) if created else None,
        "currency": currency.upper() if created else None,
    }


async def create_plan_if_missing(
    settings: Settings, price_per_kwh: Decimal, currency: str, name: str
) -> bool:
    """Create the plan ``settings.lago_plan_code`` (a price per kWh of the billable metric, no
    monthly fee) unless it exists; True when it was created. The metric must exist."""
    # Typed Any as in activities/lago.py: the client's mixins do not type-check under strict.
    client: Any = make_lago_client(settings)
    try:
        await call_lago(client.plans.find, settings.lago_plan_code)
        return False
    except LagoNotFound:
        pass
    metric = await call_lago(client.billable_metrics.find, settings.lago_billable_metric_code)
    # parse_obj, as in activities/lago.py: the client's pydantic-v1 models declare every
    # optional field as a required constructor argument under mypy.
    plan = Plan.parse_obj(
        {
            "name": name,
            "code": settings.lago_plan_code,
            "interval": "monthly",
            "amount_cents": 0,
            "amount_currency": currency,
            "pay_in_advance": False,
            "charges": [
                {
                    "billable_metric_id": metric.lago_id,
                    "charge_model": "standard",
                    "properties": {"amount": str(price_per_kwh)},
                }
            ],
        }
    )
    await call_lago(client.plans.create, plan)
    return True
