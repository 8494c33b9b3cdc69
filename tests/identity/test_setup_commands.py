"""An empty installation's first steps, against the real auth service and the Lago sandbox:
``polaris admin create`` (services.admins) and ``polaris billing plan`` (services.billing_plan)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import select

from activities.lago_client import call_lago, make_lago_client
from config.settings import Settings
from db.engine import SessionFactory
from db.models import AuditLog
from services import admins, billing_plan
from services.actor import Actor
from services.context import ServiceContext
from services.errors import InvalidInput
from tests.fixtures.auth import AuthService, ensure_user, sign_in

CLI = Actor(id="cli:test", role="admin", source="cli@test")


def context(settings: Settings, sf: SessionFactory) -> ServiceContext:
    async def temporal() -> Any:
        raise AssertionError("no Temporal needed")

    return ServiceContext(settings=settings, sessions=sf, temporal=temporal)


async def test_admin_create_makes_an_admin_who_can_sign_in_and_promotes_an_existing_account(
    identity_settings: Settings, session_factory: SessionFactory, auth_service: AuthService
) -> None:
    ctx = context(identity_settings, session_factory)
    email = f"first-admin-{uuid.uuid4().hex[:8]}@example.com"
    made = await admins.create_admin(ctx, CLI, email)
    assert made["created"] is True and made["password_generated"] is True
    token = await sign_in(auth_service, email, made["password"])
    assert token

    again = await admins.create_admin(ctx, CLI, email)
    assert again["created"] is False and "password" not in again

    driver = f"driver-{uuid.uuid4().hex[:8]}@example.com"
    await ensure_user(auth_service, driver, password="a-driver-password-1")
    promoted = await admins.create_admin(ctx, CLI, driver)
    assert (promoted["created"], promoted["promoted"]) == (False, True)

    with pytest.raises(InvalidInput):
        await admins.create_admin(ctx, CLI, "not-an-address")
    async with session_factory() as db:
        actions = (
            await db.scalars(select(AuditLog.action).where(AuditLog.subject == made["user_id"]))
        ).all()
        rows = (await db.scalars(select(AuditLog).where(AuditLog.actor == CLI.id))).all()
    assert "admin.created" in actions
    assert all(made["password"] not in str(row.details) for row in rows)


async def test_billing_plan_is_created_once_in_lago_and_then_left_alone(
    identity_settings: Settings, session_factory: SessionFactory
) -> None:
    settings = identity_settings.model_copy(
        update={"lago_plan_code": f"plan_{uuid.uuid4().hex[:8]}"}
    )
    ctx = context(settings, session_factory)
    first = await billing_plan.ensure_billing_plan(ctx, CLI, price_per_kwh="0.30", currency="eur")
    assert first["created"] is True and first["currency"] == "EUR"
    client: Any = make_lago_client(settings)
    plan = await call_lago(client.plans.find, settings.lago_plan_code)
    assert plan.amount_currency == "EUR"
    assert [charge.properties["amount"] for charge in plan.charges.__root__] == ["0.30"]

    second = await billing_plan.ensure_billing_plan(ctx, CLI, price_per_kwh="0.99", currency="EUR")
    assert second["created"] is False
    plan = await call_lago(client.plans.find, settings.lago_plan_code)
    assert [charge.properties["amount"] for charge in plan.charges.__root__] == ["0.30"]

    for price, currency in (("-1", "EUR"), ("abc", "EUR"), ("0.30", "EURO")):
        with pytest.raises(InvalidInput):
            await billing_plan.ensure_billing_plan(ctx, CLI, price_per_kwh=price, currency=currency)
