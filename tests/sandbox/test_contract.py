"""The contract check itself: it rejects drift, and every implemented route passes through it."""

from __future__ import annotations

import json
from typing import Any

import httpx
from lago_python_client.models import AddOn, Customer, Event, OneOffInvoice, Wallet
from lago_python_client.models.invoice import InvoiceFee, InvoiceFeesList

from sandbox.lago.app import implemented_operations
from sandbox.lago.config import SandboxConfig
from sandbox.lago.contract import ContractLog, ContractMiddleware, OpenApiContract
from tests.sandbox.conftest import API_KEY, start_sandbox, wait_until
from tests.sandbox.test_billing import setup_subscription


def test_validator_rejects_a_wrong_response_body() -> None:
    contract = OpenApiContract.load()
    op = contract.find_operation("POST", "/events")
    assert op is not None and op.operation_id == "createEvent"
    wrong = json.dumps({"event": {"transaction_id": 1, "code": "kwh"}}).encode()
    problems = contract.validate_response(op, 200, wrong)
    assert any("transaction_id" in p for p in problems)
    assert any("timestamp" in p for p in problems)  # a required property is missing
    assert contract.validate_response(op, 201, b"{}") == [
        "status 201 is not declared for POST /events"
    ]
    good = {
        "event": {
            "lago_id": None,
            "transaction_id": "t",
            "lago_customer_id": None,
            "code": "kwh",
            "timestamp": "2024-01-01T00:00:00.000Z",
            "lago_subscription_id": None,
            "external_subscription_id": "s",
            "properties": {"kwh": 3},
        }
    }
    assert contract.validate_response(op, 200, json.dumps(good).encode()) == []
    assert contract.errata  # the published document's known defects are patched, and listed


async def test_middleware_turns_drift_into_500() -> None:
    async def drifting_app(scope: Any, receive: Any, send: Any) -> None:
        body = json.dumps({"customer": {"external_id": 42}}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    log = ContractLog()
    app = ContractMiddleware(drifting_app, OpenApiContract.load(), log, strict=True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        response = await c.get("/api/v1/customers/abc")
    assert response.status_code == 500
    assert response.json()["code"] == "sandbox_contract_violation"
    assert "external_id" in response.json()["message"]
    assert (
        log.violations and log.violations[0]["operation"] == "GET /customers/{external_customer_id}"
    )

    lenient = ContractMiddleware(drifting_app, OpenApiContract.load(), ContractLog(), strict=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=lenient), base_url="http://t"
    ) as c:
        assert (await c.get("/api/v1/customers/abc")).status_code == 200


def test_every_implemented_operation_is_checked() -> None:
    """A tour of every route; each answer went through the validator and none broke it."""
    sb = start_sandbox(SandboxConfig(api_key=API_KEY, admin_enabled=True, pdf_delay_seconds=0.01))
    try:
        lago = sb.client()
        code, customer, sub = setup_subscription(lago)
        lago.billable_metrics.find(code)
        lago.billable_metrics.find_all()
        lago.plans.find_all()
        lago.plans.find(lago.subscriptions.find(sub).plan_code)
        lago.customers.find(customer)
        lago.customers.find_all()
        lago.customers.portal_url(customer)
        lago.subscriptions.find_all({"external_customer_id": customer})
        lago.events.create(
            Event(
                transaction_id="c1", external_subscription_id=sub, code=code, properties={"kwh": 1}
            )
        )
        sb.api(
            "POST",
            "/events/batch",
            json={
                "events": [
                    {
                        "transaction_id": "c2",
                        "external_subscription_id": sub,
                        "code": code,
                        "properties": {"kwh": 2},
                    }
                ]
            },
        )
        lago.events.find("c1")
        sb.api("GET", "/events")
        lago.customers.current_usage(customer, sub)
        lago.add_ons.create(AddOn(name="A", code="a", amount_cents=100, amount_currency="EUR"))
        lago.add_ons.find("a")
        lago.add_ons.find_all()
        invoice = lago.invoices.create(
            OneOffInvoice(
                external_customer_id=customer,
                fees=InvoiceFeesList(__root__=[InvoiceFee(add_on_code="a")]),
            )
        )
        assert invoice is not None
        wait_until(lambda: lago.invoices.find(invoice.lago_id).file_url)
        lago.invoices.find_all({"external_customer_id": customer})
        lago.invoices.download(invoice.lago_id)
        lago.invoices.retry_payment(invoice.lago_id)
        lago.invoices.finalize(invoice.lago_id)
        lago.invoices.void(invoice.lago_id)
        wallet = lago.wallets.create(
            Wallet(
                external_customer_id=customer, rate_amount="1", currency="EUR", granted_credits="3"
            )
        )
        assert wallet is not None
        lago.wallets.find(wallet.lago_id)
        lago.wallets.find_all({"external_customer_id": customer})
        sb.api("GET", f"/customers/{customer}/wallets")
        sb.api(
            "POST",
            "/wallet_transactions",
            json={"wallet_transaction": {"wallet_id": wallet.lago_id, "paid_credits": "1"}},
        )
        lago.wallet_transactions.find_all(wallet.lago_id)
        lago.subscriptions.destroy(sub)
        lago.customers.create(Customer(external_id=customer))

        report = sb.admin("GET", "/contract").json()
        checked = {c["operation"] for c in report["checked"]}
        implemented = set(report["implemented"])
        assert implemented == implemented_operations(OpenApiContract.load())
        assert implemented - checked == set(), "routes never validated in this tour"
        assert report["violations"] == []
    finally:
        sb.stop()
