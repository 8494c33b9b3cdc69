"""Driver billing reads and operator invoice actions: real JWTs, the real API, the Lago sandbox."""

from __future__ import annotations

import uuid

import httpx
import pytest
from lago_python_client.models import Wallet
from sqlalchemy import select

from activities.lago import (
    CreateSessionInvoiceInput,
    EnsureSubscriptionInput,
    LagoBilling,
    SendUsageEventsInput,
    UpsertCustomerInput,
)
from config.settings import Settings
from db.engine import SessionFactory
from db.models import AuditLog
from tests.billing.conftest import seed_billing_events
from tests.fixtures.auth import AuthService
from tests.helpers import eventually
from tests.identity.conftest import Person, person, seed_card
from tests.sandbox.conftest import RunningSandbox

pytestmark = pytest.mark.timeout(120)


async def billed_driver(
    service: AuthService, factory: SessionFactory, billing: LagoBilling, *, subscribe: bool
) -> tuple[Person, str]:
    """A signed-in driver with a card, a Lago customer and (optionally) a subscription."""
    driver = await person(service, "payer")
    public_id = uuid.uuid4().hex[:8].upper()
    await seed_card(factory, owner=driver, public_id=public_id)
    await billing.upsert_customer(UpsertCustomerInput(public_id=public_id, currency="EUR"))
    if subscribe:
        await billing.ensure_subscription(EnsureSubscriptionInput(public_id=public_id))
    return driver, public_id


async def session_invoice(factory: SessionFactory, billing: LagoBilling, public_id: str) -> str:
    workflow_id = f"session:billing-routes:{uuid.uuid4().hex[:10]}"
    await seed_billing_events(factory, workflow_id, [20_000], customer=public_id)
    created = await billing.create_session_invoice(
        CreateSessionInvoiceInput(workflow_id=workflow_id)
    )
    assert created.lago_invoice_id is not None
    return created.lago_invoice_id


async def test_driver_reads_own_billing_and_nobody_elses(
    api: httpx.AsyncClient,
    auth_service: AuthService,
    identity_settings: Settings,
    session_factory: SessionFactory,
    lago_sandbox: RunningSandbox,
) -> None:
    billing = LagoBilling(identity_settings, session_factory)
    driver, public_id = await billed_driver(auth_service, session_factory, billing, subscribe=True)
    other, other_public_id = await billed_driver(
        auth_service, session_factory, billing, subscribe=False
    )
    invoice_id = await session_invoice(session_factory, billing, other_public_id)

    # The invoice's owner sees it: list, detail, PDF (pending first, or ready at once).
    listed = await api.get("/api/v1/me/billing/invoices", headers=other.headers)
    assert listed.status_code == 200, listed.text
    assert [i["lago_id"] for i in listed.json()["invoices"]] == [invoice_id]
    detail = await api.get(f"/api/v1/me/billing/invoices/{invoice_id}", headers=other.headers)
    assert detail.status_code == 200, detail.text
    assert detail.json()["total_amount_minor"] == 600 and len(detail.json()["fees"]) == 1

    async def ready_pdf() -> str | None:
        answer = await api.get(
            f"/api/v1/me/billing/invoices/{invoice_id}/pdf", headers=other.headers
        )
        assert answer.status_code in (200, 202), answer.text
        assert answer.json()["status"] == ("ready" if answer.status_code == 200 else "pending")
        return answer.json()["url"] if answer.status_code == 200 else None

    assert ".pdf?signature=" in str(await eventually(ready_pdf, timeout=10))

    # Another driver's invoice is a 404, never a 403, on every route that names it.
    for path in (f"/invoices/{invoice_id}", f"/invoices/{invoice_id}/pdf"):
        refused = await api.get(f"/api/v1/me/billing{path}", headers=driver.headers)
        assert refused.status_code == 404, refused.text
        assert refused.json()["error"] == "NOT_FOUND"
    mine = await api.get("/api/v1/me/billing/invoices", headers=driver.headers)
    assert mine.status_code == 200 and mine.json()["invoices"] == []

    # Current usage on the subscription, from usage sent to Lago.
    workflow_id = f"session:billing-routes:{uuid.uuid4().hex[:10]}"
    await seed_billing_events(session_factory, workflow_id, [12_500], customer=public_id)
    await billing.send_usage_events(SendUsageEventsInput(workflow_id=workflow_id))
    usage = await api.get("/api/v1/me/billing/usage", headers=driver.headers)
    assert usage.status_code == 200, usage.text
    assert (usage.json()["currency"], usage.json()["amount_minor"]) == ("EUR", 375)
    no_subscription = await api.get("/api/v1/me/billing/usage", headers=other.headers)
    assert no_subscription.status_code == 404

    # Wallet and its transactions; someone else's wallet is a 404.
    lago_sandbox.client().wallets.create(
        Wallet(
            external_customer_id=public_id,
            rate_amount="1",
            currency="EUR",
            name="Prepaid",
            paid_credits="10",
        )
    )
    wallets = await api.get("/api/v1/me/billing/wallets", headers=driver.headers)
    assert wallets.status_code == 200, wallets.text
    assert [(w["balance_minor"], w["currency"]) for w in wallets.json()] == [(1000, "EUR")]
    wallet_id = wallets.json()[0]["lago_id"]
    txs = await api.get(
        f"/api/v1/me/billing/wallets/{wallet_id}/transactions", headers=driver.headers
    )
    assert txs.status_code == 200 and [t["transaction_status"] for t in txs.json()] == ["purchased"]
    foreign = await api.get(
        f"/api/v1/me/billing/wallets/{wallet_id}/transactions", headers=other.headers
    )
    assert foreign.status_code == 404
    assert (await api.get("/api/v1/me/billing/wallets", headers=other.headers)).json() == []

    portal = await api.get("/api/v1/me/billing/portal", headers=driver.headers)
    assert portal.status_code == 200 and public_id in portal.json()["url"]


async def test_driver_without_a_card_and_lago_down(
    api: httpx.AsyncClient,
    auth_service: AuthService,
    identity_settings: Settings,
    session_factory: SessionFactory,
    lago_sandbox: RunningSandbox,
) -> None:
    nobody = await person(auth_service, "cardless")
    empty = await api.get("/api/v1/me/billing/invoices", headers=nobody.headers)
    assert empty.status_code == 200 and empty.json()["invoices"] == []
    assert (await api.get("/api/v1/me/billing/portal", headers=nobody.headers)).status_code == 404
    unsigned = await api.get("/api/v1/me/billing/invoices")
    assert unsigned.status_code == 401

    billing = LagoBilling(identity_settings, session_factory)
    driver, _ = await billed_driver(auth_service, session_factory, billing, subscribe=False)
    added = lago_sandbox.admin("POST", "/faults", json={"status": 503, "count": None})
    assert added.status_code == 201, added.text
    try:
        for path in ("/invoices", "/wallets", "/portal"):
            down = await api.get(f"/api/v1/me/billing{path}", headers=driver.headers)
            assert down.status_code == 503, down.text
            assert down.json()["error"] == "BILLING_UNAVAILABLE" and down.json()["message"]
    finally:
        lago_sandbox.admin("DELETE", "/faults")
    back = await api.get("/api/v1/me/billing/invoices", headers=driver.headers)
    assert back.status_code == 200


async def test_operator_invoice_actions_are_admin_only_and_audited(
    api: httpx.AsyncClient,
    auth_service: AuthService,
    identity_settings: Settings,
    session_factory: SessionFactory,
) -> None:
    billing = LagoBilling(identity_settings, session_factory)
    driver, public_id = await billed_driver(auth_service, session_factory, billing, subscribe=False)
    admin = await person(auth_service, "billing-admin", role="admin")
    invoice_id = await session_invoice(session_factory, billing, public_id)

    refused = await api.post(f"/api/v1/invoices/{invoice_id}/void", headers=driver.headers)
    assert refused.status_code == 403 and refused.json()["error"] == "FORBIDDEN"

    finalized = await api.post(f"/api/v1/invoices/{invoice_id}/finalize", headers=admin.headers)
    assert finalized.status_code == 200, finalized.text
    assert finalized.json()["status"] == "finalized"
    retried = await api.post(f"/api/v1/invoices/{invoice_id}/retry-payment", headers=admin.headers)
    assert retried.status_code == 200, retried.text
    assert retried.json()["payment_status"] == "pending"
    voided = await api.post(f"/api/v1/invoices/{invoice_id}/void", headers=admin.headers)
    assert voided.status_code == 200, voided.text
    assert voided.json()["status"] == "voided"
    again = await api.post(f"/api/v1/invoices/{invoice_id}/void", headers=admin.headers)
    assert again.status_code == 409 and again.json()["error"] == "BILLING_REFUSED"
    missing = await api.post("/api/v1/invoices/no-such-invoice/finalize", headers=admin.headers)
    assert missing.status_code == 404

    async with session_factory() as db:
        rows = (
            await db.execute(
                select(AuditLog.action, AuditLog.actor, AuditLog.details)
                .where(AuditLog.subject == f"invoice:{invoice_id}")
                .order_by(AuditLog.id)
            )
        ).all()
    assert [(r.action, r.actor) for r in rows] == [
        ("invoice.finalized", f"user:{admin.user_id}"),
        ("invoice.payment_retried", f"user:{admin.user_id}"),
        ("invoice.voided", f"user:{admin.user_id}"),
        ("invoice.voided", f"user:{admin.user_id}"),
    ]
    assert rows[-1].details == {"action": "void", "refused": "BILLING_REFUSED"}
