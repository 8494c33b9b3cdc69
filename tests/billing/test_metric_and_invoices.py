"""Metric safety, per-session invoices (created once), and the API's billing reads."""

from __future__ import annotations

import logging
import uuid

import pytest
from lago_python_client.models import BillableMetric, Wallet
from sqlalchemy import select
from temporalio.exceptions import ApplicationError

from activities import lago_reads
from activities.lago import (
    CreateSessionInvoiceInput,
    EnsureBillableMetricInput,
    LagoBilling,
    SendUsageEventsInput,
    check_billable_metric_at_startup,
)
from activities.lago_client import LagoNotFound, make_lago_client
from config.settings import Settings
from db.billing_models import SessionInvoice
from db.engine import SessionFactory
from tests.billing.conftest import seed_billing_events, seed_driver
from tests.helpers import eventually
from tests.sandbox.conftest import RunningSandbox


def _settings(settings: Settings, **update: object) -> Settings:
    return settings.model_copy(update=update)


async def test_metric_with_another_aggregation_is_refused(
    lago_sandbox: RunningSandbox,
    lago_settings: Settings,
    session_factory: SessionFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    code = f"bad_{uuid.uuid4().hex[:8]}"
    lago_sandbox.client().billable_metrics.create(
        BillableMetric(name="Peak", code=code, aggregation_type="max_agg", field_name="kwh")
    )
    settings = _settings(lago_settings, lago_billable_metric_code=code)
    billing = LagoBilling(settings, session_factory)
    with pytest.raises(ApplicationError) as exc:
        await billing.ensure_billable_metric(EnsureBillableMetricInput())
    assert exc.value.type == "BillingMisconfigured" and exc.value.non_retryable
    # Billing refuses too, before reading or sending anything.
    with pytest.raises(ApplicationError) as refused:
        await billing.send_usage_events(SendUsageEventsInput(workflow_id="session:none"))
    assert refused.value.type == "BillingMisconfigured"
    with caplog.at_level(logging.CRITICAL, logger="polaris.billing.lago"):
        assert await check_billable_metric_at_startup(settings, session_factory) is None
    assert "MISCONFIGURED" in caplog.text


async def test_missing_metric_is_created_in_dev_and_refused_in_prod(
    lago_sandbox: RunningSandbox, lago_settings: Settings, session_factory: SessionFactory
) -> None:
    prod = _settings(
        lago_settings, env="prod", lago_billable_metric_code=f"m_{uuid.uuid4().hex[:8]}"
    )
    with pytest.raises(ApplicationError) as exc:
        await LagoBilling(prod, session_factory).ensure_billable_metric(EnsureBillableMetricInput())
    assert exc.value.type == "BillingMisconfigured"

    code = f"m_{uuid.uuid4().hex[:8]}"
    dev = _settings(lago_settings, lago_billable_metric_code=code)
    created = await LagoBilling(dev, session_factory).ensure_billable_metric(
        EnsureBillableMetricInput()
    )
    assert (created.created, created.aggregation_type, created.field_name) == (
        True,
        "sum_agg",
        "kwh",
    )
    again = await check_billable_metric_at_startup(dev, session_factory)
    assert again is not None and not again.created


async def test_lago_down_is_retryable(
    lago_sandbox: RunningSandbox, billing: LagoBilling, session_factory: SessionFactory
) -> None:
    spec = {"mode": "status", "status": 503, "path_prefix": "/api/v1/billable_metrics"}
    lago_sandbox.admin("POST", "/faults", json=spec)
    try:
        with pytest.raises(ApplicationError) as exc:
            await billing.ensure_billable_metric(EnsureBillableMetricInput())
    finally:
        lago_sandbox.admin("DELETE", "/faults")
    assert exc.value.type == "LagoUnavailable" and not exc.value.non_retryable


async def invoices_of(sandbox: RunningSandbox, customer: str) -> list[dict[str, object]]:
    body = sandbox.api("GET", "/invoices", params={"external_customer_id": customer}).json()
    return list(body["invoices"])


async def test_per_session_invoice_is_created_once(
    lago_sandbox: RunningSandbox, billing: LagoBilling, session_factory: SessionFactory
) -> None:
    driver = await seed_driver(session_factory, billing, mode="per_session")
    workflow_id = f"session:test:{uuid.uuid4().hex[:10]}"
    await seed_billing_events(
        session_factory, workflow_id, [10_000, 2_345], customer=driver.public_id
    )  # 300 + 70 minor units
    request = CreateSessionInvoiceInput(workflow_id=workflow_id)
    first = await billing.create_session_invoice(request)
    second = await billing.create_session_invoice(request)
    assert first.status == "created" and second.status == "existing"
    assert first.lago_invoice_id == second.lago_invoice_id
    assert first.amount_minor == 370
    invoices = await invoices_of(lago_sandbox, driver.public_id)
    assert len(invoices) == 1
    assert invoices[0]["invoice_type"] == "one_off" and invoices[0]["total_amount_cents"] == 370
    async with session_factory() as db:
        rows = (
            await db.scalars(
                select(SessionInvoice).where(SessionInvoice.workflow_id == workflow_id)
            )
        ).all()
    assert [(r.lago_invoice_id, r.source) for r in rows] == [(first.lago_invoice_id, "one_off")]


async def test_per_session_invoice_survives_a_lost_answer(
    lago_sandbox: RunningSandbox, billing: LagoBilling, session_factory: SessionFactory
) -> None:
    driver = await seed_driver(session_factory, billing, mode="per_session")
    workflow_id = f"session:test:{uuid.uuid4().hex[:10]}"
    await seed_billing_events(session_factory, workflow_id, [5_000], customer=driver.public_id)
    spec = {
        "mode": "status",
        "status": 502,
        "phase": "after",
        "path_prefix": "/api/v1/invoices",
        "method": "POST",
    }
    lago_sandbox.admin("POST", "/faults", json=spec)
    try:
        with pytest.raises(ApplicationError) as exc:
            await billing.create_session_invoice(CreateSessionInvoiceInput(workflow_id=workflow_id))
        assert not exc.value.non_retryable
    finally:
        lago_sandbox.admin("DELETE", "/faults")
    retried = await billing.create_session_invoice(
        CreateSessionInvoiceInput(workflow_id=workflow_id)
    )
    assert retried.status == "existing" and retried.lago_invoice_id
    assert len(await invoices_of(lago_sandbox, driver.public_id)) == 1


async def test_zero_amount_session_gets_no_invoice(
    lago_sandbox: RunningSandbox, billing: LagoBilling, session_factory: SessionFactory
) -> None:
    driver = await seed_driver(session_factory, billing, mode="per_session")
    workflow_id = f"session:test:{uuid.uuid4().hex[:10]}"
    await seed_billing_events(session_factory, workflow_id, [10], customer=driver.public_id)
    result = await billing.create_session_invoice(
        CreateSessionInvoiceInput(workflow_id=workflow_id)
    )
    assert result.status == "zero_amount"
    assert await invoices_of(lago_sandbox, driver.public_id) == []


async def test_reads_for_the_api(
    lago_sandbox: RunningSandbox,
    lago_settings: Settings,
    billing: LagoBilling,
    session_factory: SessionFactory,
) -> None:
    client = make_lago_client(lago_settings)
    driver = await seed_driver(session_factory, billing)
    assert driver.subscription is not None
    other = await seed_driver(session_factory, billing, mode="per_session")
    workflow_id = f"session:test:{uuid.uuid4().hex[:10]}"
    await seed_billing_events(session_factory, workflow_id, [12_500], customer=driver.public_id)
    await billing.send_usage_events(SendUsageEventsInput(workflow_id=workflow_id))

    usage = await lago_reads.current_usage(client, driver.public_id, driver.subscription)
    assert usage.currency == "EUR" and usage.amount_minor == 375  # 12.5 kWh x 0.30
    assert [c.units for c in usage.charges] == ["12.5"]

    other_flow = f"session:test:{uuid.uuid4().hex[:10]}"
    await seed_billing_events(session_factory, other_flow, [20_000], customer=other.public_id)
    invoice = await billing.create_session_invoice(
        CreateSessionInvoiceInput(workflow_id=other_flow)
    )
    assert invoice.lago_invoice_id is not None
    page = await lago_reads.list_invoices(client, other.public_id)
    assert [i.lago_id for i in page.invoices] == [invoice.lago_invoice_id]
    detail = await lago_reads.get_invoice(client, other.public_id, invoice.lago_invoice_id)
    assert detail.total_amount_minor == 600 and len(detail.fees) == 1
    with pytest.raises(LagoNotFound):  # another driver's invoice
        await lago_reads.get_invoice(client, driver.public_id, invoice.lago_invoice_id)
    pdf = await eventually(
        lambda: _ready_pdf(client, other.public_id, invoice.lago_invoice_id), timeout=10
    )
    assert pdf.url is not None and ".pdf?signature=" in pdf.url

    lago_sandbox.client().wallets.create(
        Wallet(
            external_customer_id=driver.public_id,
            rate_amount="1",
            currency="EUR",
            name="Prepaid",
            paid_credits="10",
        )
    )
    wallets = await lago_reads.list_wallets(client, driver.public_id)
    assert [(w.balance_minor, w.currency) for w in wallets] == [(1000, "EUR")]
    txs = await lago_reads.wallet_transactions(client, driver.public_id, wallets[0].lago_id)
    assert [t.transaction_status for t in txs] == ["purchased"]
    with pytest.raises(LagoNotFound):
        await lago_reads.wallet_transactions(client, other.public_id, wallets[0].lago_id)
    assert driver.public_id in await lago_reads.portal_url(client, driver.public_id)


async def _ready_pdf(client: object, customer: str, lago_id: str) -> lago_reads.InvoicePdf | None:
    pdf = await lago_reads.invoice_pdf(client, customer, lago_id)
    return pdf if pdf.status == "ready" else None
