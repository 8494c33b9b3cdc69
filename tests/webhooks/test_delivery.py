"""Deliveries over a real HTTP receiver: signed per Standard Webhooks, retried through failures
and timeouts with the same webhook-id, one delivery per (endpoint, event), payloads valid
against their schemas, a log of every attempt."""

from __future__ import annotations

import json
import os
from pathlib import Path

import jsonschema
import pytest
from sqlalchemy import update
from temporalio.client import Client
from temporalio.worker import Worker

from db.engine import SessionFactory
from db.events import record_event
from db.webhook_models import WebhookDispatchCursor
from domain import events as ev
from domain.webhook_schemas import schema_for
from services import webhooks
from services.context import ServiceContext
from tests.helpers import eventually
from tests.webhooks.conftest import OPERATOR, deliveries_of
from tests.webhooks.receiver import receiver
from workflows.webhook_messages import dispatcher_workflow_id

pytestmark = pytest.mark.timeout(120)

HISTORIES = Path(__file__).resolve().parent.parent / "histories"


async def test_a_failing_then_slow_receiver_gets_the_event_once_recovered(
    wh_ctx: ServiceContext,
    wh_worker: Worker,
    session_factory: SessionFactory,
    task_queue: str,
    temporal_client: Client,
) -> None:
    """With ``POLARIS_RECORD_HISTORIES=1`` it also records ``tests/histories/webhook_delivery_v1
    .json`` and ``webhook_dispatcher_v1.json`` (replayed by ``tests/workflows/test_replay.py``)."""
    async with receiver(script=["fail", "timeout"]) as rx:
        created = await webhooks.create_endpoint(
            wh_ctx,
            OPERATOR,
            webhooks.NewEndpoint(url=rx.url, event_types=["session.*", ev.CARD_LOST]),
        )
        rx.secrets = [created["secret"]]
        assert created["secret"].startswith("whsec_")
        async with session_factory.begin() as db:
            started = await record_event(
                db,
                ev.SESSION_STARTED,
                {"session_id": "s-1", "charge_box_id": "CB-WH-1", "connector_id": 1},
                charge_box_id="CB-WH-1",
            )
            # Not subscribed: never delivered.
            await record_event(db, ev.CHARGER_OFFLINE, {"charge_box_id": "CB-WH-1"})

        async def delivered() -> bool:
            rows = await deliveries_of(session_factory, created["id"])
            return len(rows) == 1 and rows[0].status == "delivered"

        await eventually(delivered, message="the delivery to succeed")
        [delivery] = await deliveries_of(session_factory, created["id"])
        assert delivery.event_id == started and delivery.attempts == 3

        # Three requests, one webhook-id, each signed with the endpoint's secret.
        assert [r.answered for r in rx.received] == ["fail", "timeout", "ok"]
        assert {r.webhook_id for r in rx.received} == {delivery.id}
        assert all(r.verified[created["secret"]] for r in rx.received)
        for r in rx.received:
            assert r.headers["webhook-signature"].startswith("v1,")
            body = json.loads(r.body)
            jsonschema.validate(body, schema_for(body["type"]))
            assert body["type"] == ev.SESSION_STARTED and body["id"] == f"evt_{started}"
            assert body["data"]["charge_box_id"] == "CB-WH-1"

        # The log: request (no secret anywhere), response or error, per attempt.
        shown = await webhooks.show_delivery(wh_ctx, delivery.id)
        log = shown["attempts_log"]
        assert [a["attempt"] for a in log] == [1, 2, 3]
        assert [a["ok"] for a in log] == [False, False, True]
        assert log[0]["response"]["status"] == 500
        assert log[0]["response"]["body"] == "upstream broke"
        assert log[1]["response"] is None and "timed out" in log[1]["error"]
        assert log[2]["response"]["status"] == 204
        assert log[2]["response"]["headers"]["x-receiver"] == "test"
        assert log[2]["request"]["headers"]["webhook-id"] == delivery.id
        assert created["secret"] not in json.dumps(log, default=str)

        # The dispatcher reading the same events again (a retried activity, a lost cursor)
        # makes no second delivery.
        async with session_factory.begin() as db:
            await db.execute(
                update(WebhookDispatchCursor)
                .where(WebhookDispatchCursor.name == task_queue)
                .values(last_event_id=started - 1)
            )
            await record_event(
                db, ev.SESSION_STOPPED, {"session_id": "s-1", "charge_box_id": "CB-WH-1"}
            )

        async def both() -> bool:
            rows = await deliveries_of(session_factory, created["id"])
            return [r.status for r in rows] == ["delivered", "delivered"]

        await eventually(both, message="the second event's delivery")
        assert len(rx.received) == 4
        listed = await webhooks.list_deliveries(wh_ctx, endpoint_id=created["id"])
        assert [d["event_type"] for d in listed] == [ev.SESSION_STOPPED, ev.SESSION_STARTED]
        if os.environ.get("POLARIS_RECORD_HISTORIES"):
            assert delivery.workflow_id is not None
            for name, workflow_id in (
                ("webhook_delivery_v1", delivery.workflow_id),
                ("webhook_dispatcher_v1", dispatcher_workflow_id(task_queue)),
            ):
                handle = temporal_client.get_workflow_handle(workflow_id)
                (HISTORIES / f"{name}.json").write_text((await handle.fetch_history()).to_json())
