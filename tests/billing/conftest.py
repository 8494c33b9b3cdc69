"""Fixtures for the billing tests: a real Lago sandbox server, settings pointing at it, seeds."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from lago_python_client.models import BillableMetric, Charge, Charges, Plan
from pydantic import SecretStr
from sqlalchemy.dialects.postgresql import insert

from activities.lago import (
    DEFAULT_PLAN_CODE,
    EnsureSubscriptionInput,
    LagoBilling,
    UpsertCustomerInput,
)
from config.settings import Settings
from db.engine import SessionFactory
from db.models import BillingEvent, EvCard, UserMapping
from sandbox.lago.config import SandboxConfig
from tests.sandbox.conftest import RunningSandbox, start_sandbox

API_KEY = "billing-test-key"
METRIC_CODE = "ev_charging_kwh"
PRICE_PER_KWH = "0.30"


@pytest.fixture(scope="module")
def lago_sandbox() -> Iterator[RunningSandbox]:
    running = start_sandbox(
        SandboxConfig(api_key=API_KEY, admin_enabled=True, pdf_delay_seconds=0.05)
    )
    try:
        lago = running.client()
        metric = lago.billable_metrics.create(
            BillableMetric(
                name="Energy", code=METRIC_CODE, aggregation_type="sum_agg", field_name="kwh"
            )
        )
        assert metric is not None
        lago.plans.create(
            Plan(
                name="EV charging",
                code=DEFAULT_PLAN_CODE,
                interval="monthly",
                amount_cents=0,
                amount_currency="EUR",
                pay_in_advance=False,
                charges=Charges(
                    __root__=[
                        Charge(
                            billable_metric_id=metric.lago_id,
                            charge_model="standard",
                            properties={"amount": PRICE_PER_KWH},
                        )
                    ]
                ),
            )
        )
        yield running
        violations = running.app.sandbox.contract_log.violations
        assert violations == [], f"responses that break the Lago OpenAPI document: {violations}"
    finally:
        running.stop()


@pytest.fixture
def lago_settings(
    base_settings: Settings, lago_sandbox: RunningSandbox, task_queue: str
) -> Settings:
    return base_settings.model_copy(
        update={
            "lago_api_url": lago_sandbox.url,
            "lago_api_key": SecretStr(API_KEY),
            "temporal_task_queue": task_queue,
        }
    )


@pytest.fixture
def billing(lago_settings: Settings, session_factory: SessionFactory) -> LagoBilling:
    return LagoBilling(lago_settings, session_factory)


@dataclass
class Driver:
    public_id: str
    id_tag: str
    subscription: str | None


async def seed_driver(
    factory: SessionFactory, billing: LagoBilling, *, mode: str = "usage"
) -> Driver:
    """A card + mapping in PostgreSQL, the customer (and, in usage mode, subscription) in Lago."""
    public_id = uuid.uuid4().hex[:8].upper()
    id_tag = f"T{public_id}"
    async with factory() as db, db.begin():
        db.add(EvCard(id_tag=id_tag))
        await db.flush()
        db.add(
            UserMapping(
                user_id=f"user-{public_id}",
                public_id=public_id,
                id_tag=id_tag,
                billing_mode=mode,
            )
        )
    await billing.upsert_customer(UpsertCustomerInput(public_id=public_id, currency="EUR"))
    subscription = None
    if mode == "usage":
        sub = await billing.ensure_subscription(EnsureSubscriptionInput(public_id=public_id))
        subscription = sub.external_id
    return Driver(public_id=public_id, id_tag=id_tag, subscription=subscription)


async def seed_billing_events(
    factory: SessionFactory,
    workflow_id: str,
    energies_wh: list[int],
    *,
    customer: str | None,
    price_per_kwh_minor: int = 30,
    kinds: list[str] | None = None,
) -> list[str]:
    """billing_events rows as the session workflow records them; returns their ids."""
    # After the subscription started (Lago bills events inside the subscription's period).
    start = datetime.now(UTC)
    rows = [
        {
            "transaction_id": f"{workflow_id}:{seq}",
            "workflow_id": workflow_id,
            "sequence": seq,
            "kind": (
                kinds[seq - 1] if kinds else ("final" if seq == len(energies_wh) else "periodic")
            ),
            "energy_wh": wh,
            "amount_minor": wh * price_per_kwh_minor // 1000,
            "currency": "EUR",
            "occurred_at": start + timedelta(milliseconds=seq),
            "lago_customer_external_id": customer,
        }
        for seq, wh in enumerate(energies_wh, start=1)
    ]
    if rows:
        async with factory() as db, db.begin():
            await db.execute(insert(BillingEvent).values(rows))
    return [str(r["transaction_id"]) for r in rows]
