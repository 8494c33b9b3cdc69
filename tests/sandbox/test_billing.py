"""The billing flow through the official ``lago_python_client`` against a real sandbox server."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from lago_python_client.client import Client
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import (
    AddOn,
    BatchEvent,
    BillableMetric,
    Charge,
    Charges,
    Customer,
    Event,
    OneOffInvoice,
    Plan,
    Subscription,
    Wallet,
    WalletTransaction,
)
from lago_python_client.models.invoice import InvoiceFee, InvoiceFeesList

from tests.sandbox.conftest import RunningSandbox, wait_until


def _uid() -> str:
    return uuid.uuid4().hex[:8]


def setup_subscription(lago: Client, price: str = "0.30") -> tuple[str, str, str]:
    """Metric (sum_agg on kwh) + plan (standard charge) + customer + subscription."""
    uid = _uid()
    metric = lago.billable_metrics.create(
        BillableMetric(
            name="Energy", code=f"kwh_{uid}", aggregation_type="sum_agg", field_name="kwh"
        )
    )
    assert metric is not None and metric.aggregation_type == "sum_agg"
    plan = lago.plans.create(
        Plan(
            name="Pay as you charge",
            code=f"plan_{uid}",
            interval="monthly",
            amount_cents=0,
            amount_currency="EUR",
            pay_in_advance=False,
            charges=Charges(
                __root__=[
                    Charge(
                        billable_metric_id=metric.lago_id,
                        charge_model="standard",
                        properties={"amount": price},
                    )
                ]
            ),
        )
    )
    assert plan is not None and plan.charges is not None
    customer = lago.customers.create(Customer(external_id=f"cus_{uid}", name="Ada", currency="EUR"))
    assert customer is not None and customer.external_id == f"cus_{uid}"
    sub = lago.subscriptions.create(
        Subscription(
            external_customer_id=f"cus_{uid}", plan_code=f"plan_{uid}", external_id=f"sub_{uid}"
        )
    )
    assert sub is not None and sub.status == "active"
    return f"kwh_{uid}", f"cus_{uid}", f"sub_{uid}"


def test_events_are_idempotent_and_usage_is_their_sum(
    lago: Client, sandbox: RunningSandbox
) -> None:
    code, customer, sub = setup_subscription(lago)
    for i, kwh in enumerate([1.5, 2.25, 10]):
        created = lago.events.create(
            Event(
                transaction_id=f"{sub}:{i}",
                external_subscription_id=sub,
                code=code,
                properties={"kwh": kwh},
            )
        )
        assert created is not None and created.transaction_id == f"{sub}:{i}"
    with pytest.raises(LagoApiError) as dup:
        lago.events.create(
            Event(
                transaction_id=f"{sub}:0",
                external_subscription_id=sub,
                code=code,
                properties={"kwh": 99},
            )
        )
    assert dup.value.status_code == 422
    assert dup.value.response == {
        "status": 422,
        "error": "Unprocessable Entity",
        "code": "validation_errors",
        "error_details": {"transaction_id": ["value_already_exist"]},
    }
    batch = [
        Event(
            transaction_id=f"{sub}:b{i}",
            external_subscription_id=sub,
            code=code,
            properties={"kwh": "1"},
        )
        for i in range(100)
    ]
    lago.events.batch_create(BatchEvent(events=batch))
    too_many = [*batch, Event(transaction_id=f"{sub}:x", external_subscription_id=sub, code=code)]
    with pytest.raises(LagoApiError) as big:
        lago.events.batch_create(BatchEvent(events=too_many))
    assert big.value.status_code == 422

    usage = lago.customers.current_usage(customer, sub)
    units = Decimal("1.5") + Decimal("2.25") + 10 + 100
    assert Decimal(usage.charges_usage[0].units) == units
    assert usage.charges_usage[0].events_count == 103
    assert usage.amount_cents == 3413  # 113.75 kWh x 0.30 EUR = 34.125 EUR, half-up
    assert usage.currency == "EUR"

    found = lago.events.find(f"{sub}:1")
    assert found is not None and found.properties == {"kwh": 2.25}
    assert found.lago_subscription_id is not None

    # The official client has no "list events"; the sandbox serves GET /events all the same.
    page = sandbox.api(
        "GET", "/events", params={"external_subscription_id": sub, "per_page": 50, "page": 3}
    ).json()
    assert page["meta"] == {
        "current_page": 3,
        "next_page": None,
        "prev_page": 2,
        "total_pages": 3,
        "total_count": 103,
    }
    assert len(page["events"]) == 3


def test_customers_subscriptions_portal_and_termination(lago: Client) -> None:
    code, customer, sub = setup_subscription(lago, price="0.50")
    again = lago.customers.create(Customer(external_id=customer, email="ada@example.org"))
    assert again is not None and again.email == "ada@example.org" and again.name == "Ada"
    assert lago.customers.find(customer).external_id == customer
    listed = lago.customers.find_all({"per_page": 1000})["customers"]
    assert customer in {c.external_id for c in listed}
    assert "/__sandbox/portal/" in lago.customers.portal_url(customer)

    subs = lago.subscriptions.find_all({"external_customer_id": customer})["subscriptions"]
    assert [s.external_id for s in subs] == [sub]
    assert lago.subscriptions.find(sub).plan_code.startswith("plan_")

    lago.events.create(
        Event(
            transaction_id=f"{sub}:t",
            external_subscription_id=sub,
            code=code,
            properties={"kwh": 4},
        )
    )
    terminated = lago.subscriptions.destroy(sub)
    assert terminated.status == "terminated"
    invoices = lago.invoices.find_all({"external_customer_id": customer})["invoices"]
    assert len(invoices) == 1 and invoices[0].invoice_type == "subscription"
    assert invoices[0].total_amount_cents == 200
    with pytest.raises(LagoApiError) as gone:
        lago.customers.current_usage(customer, sub)
    assert gone.value.status_code == 404


def test_one_off_invoice_lifecycle(lago: Client, sandbox: RunningSandbox) -> None:
    uid = _uid()
    lago.add_ons.create(
        AddOn(name="Card", code=f"card_{uid}", amount_cents=500, amount_currency="EUR")
    )
    lago.customers.create(Customer(external_id=f"cus_{uid}", currency="EUR"))
    invoice = lago.invoices.create(
        OneOffInvoice(
            external_customer_id=f"cus_{uid}",
            currency="EUR",
            fees=InvoiceFeesList(
                __root__=[
                    InvoiceFee(add_on_code=f"card_{uid}", units=2),
                    InvoiceFee(
                        add_on_code=f"card_{uid}",
                        unit_amount_cents=123,
                        units=1.5,
                        description="parking",
                    ),
                ]
            ),
        )
    )
    assert invoice is not None
    assert invoice.invoice_type == "one_off" and invoice.status == "finalized"
    assert invoice.fees_amount_cents == 1000 + 185
    assert invoice.total_amount_cents == 1185
    assert invoice.file_url is None  # generated in the background

    ready = wait_until(lambda: lago.invoices.find(invoice.lago_id).file_url)
    assert ".pdf?signature=" in ready
    assert sandbox_pdf(sandbox, ready).startswith(b"%PDF")
    downloaded = lago.invoices.download(invoice.lago_id)
    assert downloaded is not None and downloaded.file_url == ready

    assert lago.invoices.retry_payment(invoice.lago_id) is None  # 200, empty body
    assert lago.invoices.finalize(invoice.lago_id).status == "finalized"
    assert lago.invoices.void(invoice.lago_id).status == "voided"
    with pytest.raises(LagoApiError) as again:
        lago.invoices.void(invoice.lago_id)
    assert again.value.status_code == 405
    with pytest.raises(LagoApiError) as missing:
        lago.invoices.find(str(uuid.uuid4()))
    assert missing.value.status_code == 404


def sandbox_pdf(sandbox: RunningSandbox, url: str) -> bytes:
    import httpx

    return httpx.get(url, timeout=10).content


def test_wallet_balance_and_transactions(lago: Client) -> None:
    code, customer, sub = setup_subscription(lago, price="0.25")
    wallet = lago.wallets.create(
        Wallet(
            external_customer_id=customer,
            rate_amount="1",
            currency="EUR",
            name="Prepaid",
            paid_credits="10",
            granted_credits="5",
        )
    )
    assert wallet is not None and wallet.balance_cents == 1500
    txs = lago.wallet_transactions.create(
        WalletTransaction(wallet_id=wallet.lago_id, granted_credits="2.5")
    )
    assert [t.transaction_status for t in txs["wallet_transactions"]] == ["granted"]
    lago.events.create(
        Event(
            transaction_id=f"{sub}:w",
            external_subscription_id=sub,
            code=code,
            properties={"kwh": 20},
        )
    )
    found = lago.wallets.find(wallet.lago_id)
    assert found.balance_cents == 1750
    assert found.ongoing_balance_cents == 1750 - 500  # current usage: 20 kWh x 0.25
    listed = lago.wallets.find_all({"external_customer_id": customer})["wallets"]
    assert [w.lago_id for w in listed] == [wallet.lago_id]
    history = lago.wallet_transactions.find_all(wallet.lago_id)["wallet_transactions"]
    assert sorted(t.transaction_status for t in history) == ["granted", "granted", "purchased"]
    with pytest.raises(LagoApiError) as too_much:
        lago.wallet_transactions.create(
            WalletTransaction(wallet_id=wallet.lago_id, voided_credits="1000")
        )
    assert too_much.value.status_code == 422

    # Terminating bills the usage, paid from the wallet first.
    lago.subscriptions.destroy(sub)
    invoice = lago.invoices.find_all({"external_customer_id": customer})["invoices"][0]
    assert invoice.prepaid_credit_amount_cents == 500 and invoice.total_amount_cents == 0
    assert lago.wallets.find(wallet.lago_id).balance_cents == 1250


def test_bad_key_and_bad_bodies(sandbox: RunningSandbox) -> None:
    denied = Client(api_key="wrong", api_url=sandbox.url)
    with pytest.raises(LagoApiError) as exc:
        denied.customers.find_all()
    assert exc.value.status_code == 401
    assert exc.value.response == {"status": 401, "error": "Unauthorized"}

    missing_root = sandbox.api("POST", "/events", json={"transaction_id": "x"})
    assert missing_root.status_code == 400
    bad = sandbox.api(
        "POST",
        "/events",
        json={"event": {"transaction_id": "x", "code": {"x": 1}, "properties": []}},
    )
    assert bad.status_code == 422
    assert bad.json()["error_details"] == {
        "code": ["invalid_value"],
        "external_subscription_id": ["value_is_mandatory"],
        "properties": ["invalid_value"],
    }
    assert sandbox.api("GET", "/plans/nope").json() == {
        "status": 404,
        "error": "Not Found",
        "code": "plan_not_found",
    }
