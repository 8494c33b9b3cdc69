"""The event registry: a workflow subscribes to charger events without touching the relay;
statuses after StopTransaction reach it (and no ChargingSession); a kind no route knows waits
for a newer gateway."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from ocpp.v16 import call
from sqlalchemy import select, text
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError
from temporalio.worker import Worker

from activities.operations import OperationActivities
from db.engine import SessionFactory
from db.models import GatewayOutbox
from gateway import event_routes
from gateway import subscribers as subscribers_module
from gateway.event_routes import CONNECTOR_STATUS_AFTER_STOP, Subscription
from gateway.main import Gateway
from tests.gateway.conftest import charger_session, seed_card, seed_charger
from tests.gateway.session_stub import CommandProbe, RecordingSession
from tests.gateway.watcher_stub import WATCH_KIND, WATCHER, ConnectorWatcher
from tests.helpers import eventually, ocpp_ts
from workflows.charger_operation import ChargerOperationWorkflow


@pytest.fixture(autouse=True)
def without_built_in_subscribers() -> Iterator[None]:
    """These tests are about the registry itself: the platform's own subscriptions (the idle
    fee, gateway/subscribers.py) are removed for their duration and restored afterwards."""
    for sub in subscribers_module.BUILT_IN:
        event_routes.unsubscribe(sub)
    try:
        yield
    finally:
        for sub in subscribers_module.BUILT_IN:
            event_routes.subscribe(sub)


def watcher_id(event: dict[str, Any]) -> str:
    return f"watch:{event['charge_box_id']}:{event['connector_id']}"


@pytest.fixture
def watcher() -> Iterator[Subscription]:
    sub = event_routes.subscribe(
        Subscription(
            event=CONNECTOR_STATUS_AFTER_STOP,
            kind=WATCH_KIND,
            workflow_type=WATCHER,
            workflow_id=watcher_id,
            start_input=lambda e: {"charge_box_id": e["charge_box_id"]},
        )
    )
    try:
        yield sub
    finally:
        event_routes.unsubscribe(sub)


@pytest.fixture
async def session_worker(
    temporal_client: Client, task_queue: str, session_factory: SessionFactory
) -> AsyncIterator[Worker]:
    """The gateway stand-ins plus the test's subscribed workflow, on one worker."""
    worker = Worker(
        temporal_client,
        task_queue=task_queue,
        workflows=[RecordingSession, CommandProbe, ChargerOperationWorkflow, ConnectorWatcher],
        activities=[OperationActivities(session_factory).finish_charger_operation],
    )
    async with worker:
        yield worker


async def _seen(client: Client, workflow_id: str) -> list[dict[str, Any]]:
    try:
        seen: list[dict[str, Any]] = await client.get_workflow_handle(workflow_id).query(
            ConnectorWatcher.seen
        )
    except RPCError as exc:  # not started yet
        raise AssertionError(str(exc)) from exc
    return seen


async def _rows(sf: SessionFactory, **where: Any) -> list[GatewayOutbox]:
    async with sf() as s:
        q = select(GatewayOutbox).order_by(GatewayOutbox.id)
        for column, value in where.items():
            q = q.where(getattr(GatewayOutbox, column) == value)
        return list((await s.execute(q)).scalars())


async def test_a_status_after_stop_reaches_the_subscriber_and_no_session(
    watcher: Subscription,
    gateway: Gateway,
    session_factory: SessionFactory,
    temporal_client: Client,
) -> None:
    cb = await seed_charger(session_factory)
    id_tag = await seed_card(session_factory)
    base = datetime.now(UTC) - timedelta(hours=1)
    async with charger_session(gateway, cb) as cp:
        # No transaction on the connector yet: the subscriber hears it, no session starts.
        await cp.call(
            call.StatusNotification(connector_id=1, error_code="NoError", status="Available")
        )
        start = await cp.call(
            call.StartTransaction(
                connector_id=1, id_tag=id_tag, meter_start=0, timestamp=ocpp_ts(0, base=base)
            )
        )
        tx_id = start.transaction_id
        # During the transaction the status goes to the session, not to the subscriber.
        await cp.call(
            call.StatusNotification(connector_id=1, error_code="NoError", status="Charging")
        )
        await cp.call(
            call.StopTransaction(
                meter_stop=5000, timestamp=ocpp_ts(600, base=base), transaction_id=tx_id
            )
        )
        await cp.call(
            call.StatusNotification(connector_id=1, error_code="NoError", status="Finishing")
        )

    handle = temporal_client.get_workflow_handle(f"watch:{cb}:1")

    async def both() -> list[dict[str, Any]]:
        seen = await _seen(temporal_client, f"watch:{cb}:1")
        assert [e["status"] for e in seen] == ["Available", "Finishing"]
        return seen

    available, finishing = await eventually(both, timeout=20)
    assert available["transaction_id"] is None and available["session_workflow_id"] is None
    assert finishing["transaction_id"] == tx_id
    assert finishing["session_workflow_id"].startswith(f"session:{cb}:")
    assert finishing["stopped_at"] is not None
    assert finishing["event_id"] > available["event_id"]
    assert await handle.query(ConnectorWatcher.started_with) == {"charge_box_id": cb}

    # The session heard "Charging" only; no row of the charger went to a phantom session.
    session_rows = await _rows(session_factory, workflow_id=finishing["session_workflow_id"])
    statuses = [r.payload["signal"]["status"] for r in session_rows if r.kind == "connector_status"]
    assert statuses == ["Charging"]
    async with session_factory() as s:
        workflows = set(
            (
                await s.execute(
                    text(
                        "SELECT DISTINCT workflow_id FROM gateway_outbox "
                        "WHERE payload->'session'->>'charge_box_id' = :cb "
                        "OR payload->'signal'->>'charge_box_id' = :cb"
                    ),
                    {"cb": cb},
                )
            ).scalars()
        )
    assert workflows == {finishing["session_workflow_id"], f"watch:{cb}:1"}


async def test_without_subscribers_a_status_after_stop_writes_nothing(
    gateway: Gateway, session_factory: SessionFactory
) -> None:
    assert event_routes.subscribers(CONNECTOR_STATUS_AFTER_STOP) == []
    cb = await seed_charger(session_factory)
    async with charger_session(gateway, cb) as cp:
        await cp.call(
            call.StatusNotification(connector_id=1, error_code="NoError", status="Available")
        )
    async with session_factory() as s:
        count = await s.scalar(
            text(
                "SELECT count(*) FROM gateway_outbox "
                "WHERE payload->'signal'->>'charge_box_id' = :cb "
                "OR payload->'session'->>'charge_box_id' = :cb"
            ),
            {"cb": cb},
        )
    assert count == 0


async def _insert(sf: SessionFactory, workflow_id: str, kind: str, payload: dict[str, Any]) -> int:
    async with sf.begin() as s:
        row_id = await s.scalar(
            text(
                "INSERT INTO gateway_outbox (workflow_id, kind, payload, attempts) "
                "VALUES (:w, :k, CAST(:p AS jsonb), 0) RETURNING id"
            ),
            {"w": workflow_id, "k": kind, "p": json.dumps(payload)},
        )
    assert row_id is not None
    return int(row_id)


async def test_an_unknown_kind_waits_for_a_newer_gateway(
    watcher: Subscription,
    gateway: Gateway,
    session_factory: SessionFactory,
    temporal_client: Client,
) -> None:
    future_kind = f"future_{uuid.uuid4().hex[:8]}"
    blocked = f"watch:future-{uuid.uuid4().hex[:8]}:1"
    other = f"watch:other-{uuid.uuid4().hex[:8]}:1"
    # A row of a kind from a newer gateway, shaped like a session row (an old relay would have
    # started a ChargingSession for it), then a known row of the same workflow behind it.
    session_like = {
        "session": {"charge_box_id": "CB-FUTURE", "connector_id": 1, "origin": "charger"},
        "signal": {"status": "Occupied"},
    }
    unknown_id = await _insert(session_factory, blocked, future_kind, session_like)
    generic = {"workflow": {"type": WATCHER, "input": {}}, "signal": {"status": "Available"}}
    behind_id = await _insert(session_factory, blocked, WATCH_KIND, generic)
    other_id = await _insert(session_factory, other, WATCH_KIND, generic)
    gateway.relay.wake()

    async def delivered() -> bool:
        (row,) = await _rows(session_factory, id=other_id)
        return row.delivered_at is not None

    await eventually(delivered, timeout=20)
    (unknown,) = await _rows(session_factory, id=unknown_id)
    (behind,) = await _rows(session_factory, id=behind_id)
    # Never claimed: not delivered, no attempt, no error; the row behind it keeps its order.
    assert (unknown.delivered_at, unknown.attempts, unknown.last_error) == (None, 0, None)
    assert behind.delivered_at is None
    with pytest.raises(RPCError):
        await temporal_client.get_workflow_handle(blocked).describe()
    other_desc = await temporal_client.get_workflow_handle(other).describe()
    assert other_desc.status == WorkflowExecutionStatus.RUNNING

    backlog = {b.kind: b for b in await gateway.relay.unknown_backlog()}
    assert backlog[future_kind].rows == 1
    assert backlog[future_kind].age_s >= 0

    # A newer gateway (here: the route registered) delivers both, in order.
    route = event_routes.register(event_routes.Route(future_kind, WATCHER, WATCH_KIND))
    try:
        gateway.relay.wake()

        async def both_delivered() -> list[dict[str, Any]]:
            seen = await _seen(temporal_client, blocked)
            assert [e["status"] for e in seen] == ["Occupied", "Available"]
            return seen

        await eventually(both_delivered, timeout=20)
    finally:
        event_routes._ROUTES.pop(route.kind, None)


def test_a_kind_routes_to_one_workflow_only() -> None:
    with pytest.raises(ValueError, match="already routed"):
        event_routes.register(event_routes.Route("connector_status", WATCHER, "x"))
    with pytest.raises(ValueError, match="longer than"):
        event_routes.register(event_routes.Route("k" * 33, WATCHER, "x"))
    with pytest.raises(ValueError, match="unknown charger event"):
        event_routes.subscribe(
            Subscription(event="nope", kind="k", workflow_type=WATCHER, workflow_id=watcher_id)
        )
