"""Usage events reach Lago exactly once, through the real client, sandbox and Temporal worker."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from activities.lago import LagoBilling, SendUsageEventsInput, wh_to_kwh
from db.engine import SessionFactory
from db.models import BillingEvent, UserMapping
from tests.billing.conftest import Driver, seed_billing_events, seed_driver
from tests.billing.workflows_for_tests import SendUsageEventsTestWorkflow
from tests.sandbox.conftest import RunningSandbox

FAULTS = {
    "before_503": {"mode": "status", "status": 503, "phase": "before"},
    "before_drop": {"mode": "drop", "phase": "before"},
    "after_502": {"mode": "status", "status": 502, "phase": "after"},
    "after_drop": {"mode": "drop", "phase": "after"},
}


def lago_events(sandbox: RunningSandbox, subscription: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    page = 1
    while True:
        body = sandbox.api(
            "GET",
            "/events",
            params={"external_subscription_id": subscription, "per_page": 100, "page": page},
        ).json()
        events.extend(body["events"])
        if not body["meta"]["next_page"]:
            return events
        page += 1


def add_faults(sandbox: RunningSandbox, faults: list[tuple[str, int]]) -> None:
    assert sandbox.admin("DELETE", "/faults").status_code == 204
    for name, count in faults:
        spec = {**FAULTS[name], "path_prefix": "/api/v1/events", "method": "POST", "count": count}
        assert sandbox.admin("POST", "/faults", json=spec).status_code == 201


async def unsent(factory: SessionFactory, workflow_id: str) -> list[str]:
    async with factory() as db:
        rows = await db.scalars(
            select(BillingEvent.transaction_id).where(
                BillingEvent.workflow_id == workflow_id, BillingEvent.sent_at.is_(None)
            )
        )
        return list(rows.all())


def test_wh_to_kwh_is_exact() -> None:
    assert wh_to_kwh(0) == "0.000"
    assert wh_to_kwh(1) == "0.001"
    assert wh_to_kwh(1234) == "1.234"
    assert wh_to_kwh(123_456_789) == "123456.789"


session_energies = st.lists(st.integers(min_value=0, max_value=150_000), min_size=1, max_size=110)


@pytest.mark.timeout(300)
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    sessions=st.lists(session_energies, min_size=1, max_size=2),
    faults=st.lists(
        st.tuples(st.sampled_from(sorted(FAULTS)), st.integers(min_value=1, max_value=2)),
        max_size=3,
    ),
)
async def test_every_event_reaches_lago_exactly_once_despite_faults(
    sessions: list[list[int]],
    faults: list[tuple[str, int]],
    lago_sandbox: RunningSandbox,
    billing: LagoBilling,
    session_factory: SessionFactory,
    temporal_client: Client,
    task_queue: str,
) -> None:
    driver = await seed_driver(session_factory, billing)
    assert driver.subscription is not None
    expected: dict[str, int] = {}
    workflow_ids = []
    for energies in sessions:
        workflow_id = f"session:test:{uuid.uuid4().hex[:10]}"
        workflow_ids.append(workflow_id)
        ids = await seed_billing_events(
            session_factory, workflow_id, energies, customer=driver.public_id
        )
        expected.update(zip(ids, energies, strict=True))

    add_faults(lago_sandbox, faults)
    try:
        async with Worker(
            temporal_client,
            task_queue=task_queue,
            workflows=[SendUsageEventsTestWorkflow],
            activities=[billing.send_usage_events],
        ):
            for workflow_id in workflow_ids:
                await temporal_client.execute_workflow(
                    SendUsageEventsTestWorkflow.run,
                    SendUsageEventsInput(workflow_id=workflow_id),
                    id=f"test-send:{workflow_id}",
                    task_queue=task_queue,
                )
                # Idempotent: a second run (a replayed activity) sends nothing new.
                again = await billing.send_usage_events(
                    SendUsageEventsInput(workflow_id=workflow_id)
                )
                assert again.sent == again.duplicates == 0
                assert await unsent(session_factory, workflow_id) == []
    finally:
        lago_sandbox.admin("DELETE", "/faults")

    received = lago_events(lago_sandbox, driver.subscription)
    ids = [e["transaction_id"] for e in received]
    assert sorted(ids) == sorted(expected), "each billing event exactly once"
    by_id = {e["transaction_id"]: e for e in received}
    for tid, wh in expected.items():
        assert by_id[tid]["properties"] == {"kwh": wh_to_kwh(wh)}
        assert by_id[tid]["code"] == "ev_charging_kwh"
    total_kwh = sum((Decimal(e["properties"]["kwh"]) for e in received), Decimal(0))
    assert total_kwh * 1000 == sum(expected.values())


async def test_lost_answer_after_a_timeout_is_a_duplicate_not_a_second_event(
    lago_sandbox: RunningSandbox, billing: LagoBilling, session_factory: SessionFactory
) -> None:
    driver = await seed_driver(session_factory, billing)
    assert driver.subscription is not None
    workflow_id = f"session:test:{uuid.uuid4().hex[:10]}"
    await seed_billing_events(
        session_factory, workflow_id, [1500, 2500, 7], customer=driver.public_id
    )
    # The batch is stored, then the answer comes after the client's (5 s) timeout.
    spec = {"mode": "delay", "seconds": 6, "phase": "after", "path_prefix": "/api/v1/events/batch"}
    assert lago_sandbox.admin("POST", "/faults", json=spec).status_code == 201
    try:
        with pytest.raises(ApplicationError) as exc:
            await billing.send_usage_events(SendUsageEventsInput(workflow_id=workflow_id))
        assert exc.value.type == "LagoUnavailable" and not exc.value.non_retryable
    finally:
        lago_sandbox.admin("DELETE", "/faults")
    assert len(await unsent(session_factory, workflow_id)) == 3
    retried = await billing.send_usage_events(SendUsageEventsInput(workflow_id=workflow_id))
    assert (retried.sent, retried.duplicates) == (0, 3)
    events = lago_events(lago_sandbox, driver.subscription)
    assert sorted(e["properties"]["kwh"] for e in events) == ["0.007", "1.500", "2.500"]


async def test_mixed_batch_sends_new_events_and_counts_old_ones(
    lago_sandbox: RunningSandbox, billing: LagoBilling, session_factory: SessionFactory
) -> None:
    driver = await seed_driver(session_factory, billing)
    workflow_id = f"session:test:{uuid.uuid4().hex[:10]}"
    await seed_billing_events(
        session_factory, workflow_id, [100, 200, 300], customer=driver.public_id
    )
    async with session_factory() as db, db.begin():
        third = await db.get(BillingEvent, f"{workflow_id}:3")
        assert third is not None
        await db.delete(third)
    first = await billing.send_usage_events(SendUsageEventsInput(workflow_id=workflow_id))
    assert (first.sent, first.duplicates) == (2, 0)
    # Forget that two were sent (as if the database write was lost) and add the third: the batch
    # is refused as a whole, the one-by-one fallback sends one and counts two duplicates.
    async with session_factory() as db, db.begin():
        for row in await db.scalars(
            select(BillingEvent).where(BillingEvent.workflow_id == workflow_id)
        ):
            row.sent_at = None
        db.add(
            BillingEvent(
                transaction_id=f"{workflow_id}:3",
                workflow_id=workflow_id,
                sequence=3,
                kind="final",
                energy_wh=300,
                amount_minor=9,
                currency="EUR",
                occurred_at=datetime.now(UTC),
                lago_customer_external_id=driver.public_id,
            )
        )
    second = await billing.send_usage_events(SendUsageEventsInput(workflow_id=workflow_id))
    assert (second.sent, second.duplicates) == (1, 2)
    assert await unsent(session_factory, workflow_id) == []


async def test_unmapped_and_per_session_rows_are_not_sent_as_usage(
    lago_sandbox: RunningSandbox, billing: LagoBilling, session_factory: SessionFactory
) -> None:
    per_session = await seed_driver(session_factory, billing, mode="per_session")
    workflow_id = f"session:test:{uuid.uuid4().hex[:10]}"
    await seed_billing_events(session_factory, workflow_id, [1000], customer=per_session.public_id)
    result = await billing.send_usage_events(SendUsageEventsInput(workflow_id=workflow_id))
    assert (result.sent, result.skipped_per_session) == (0, 1)

    orphan = f"session:test:{uuid.uuid4().hex[:10]}"
    await seed_billing_events(session_factory, orphan, [1000], customer=None)
    result = await billing.send_usage_events(SendUsageEventsInput(workflow_id=orphan))
    assert (result.sent, result.skipped_no_customer) == (0, 1)


async def test_a_customer_without_subscription_is_refused_for_good(
    lago_sandbox: RunningSandbox, billing: LagoBilling, session_factory: SessionFactory
) -> None:
    driver: Driver = await seed_driver(session_factory, billing, mode="per_session")
    async with session_factory() as db, db.begin():
        mapping = (
            await db.scalars(select(UserMapping).where(UserMapping.public_id == driver.public_id))
        ).one()
        mapping.billing_mode = "usage"
    workflow_id = f"session:test:{uuid.uuid4().hex[:10]}"
    await seed_billing_events(session_factory, workflow_id, [1000], customer=driver.public_id)
    with pytest.raises(ApplicationError) as exc:
        await billing.send_usage_events(SendUsageEventsInput(workflow_id=workflow_id))
    assert exc.value.type == "NoLagoSubscription" and exc.value.non_retryable
