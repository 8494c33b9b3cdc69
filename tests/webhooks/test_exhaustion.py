"""A receiver that never recovers: the delivery is retried with exponential backoff for at least
24 hours (durable timers, skipped by Temporal's time-skipping test server), then failed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.webhooks import WebhookActivities, new_delivery_id, schedule_of
from config.settings import Settings
from db.engine import SessionFactory
from db.events import record_event
from db.webhook_models import WebhookDelivery, WebhookEndpoint
from domain import events as ev
from domain.webhooks import RetrySchedule
from services import webhooks
from services.context import ServiceContext
from tests.webhooks.conftest import OPERATOR, webhook_settings
from tests.webhooks.receiver import receiver
from workflows.webhook_messages import AttemptResult, DeliveryInput, delivery_workflow_id
from workflows.webhooks import WebhookDeliveryWorkflow

pytestmark = pytest.mark.timeout(300)


async def test_a_dead_receiver_is_retried_for_a_day_then_the_delivery_fails(
    time_skipping_env: WorkflowEnvironment,
    base_settings: Settings,
    session_factory: SessionFactory,
    task_queue: str,
) -> None:
    # The production schedule: 5 s doubling up to 1 h, until the waits add up to 24 h.
    settings = webhook_settings(
        base_settings,
        task_queue,
        webhook_retry_first_delay_s=5.0,
        webhook_retry_max_delay_s=3600.0,
        webhook_retry_give_up_after_s=86400.0,
    )
    delays = RetrySchedule(**schedule_of(settings).model_dump()).delays()
    assert sum(delays) >= 86400 and max(delays) == 3600

    async def no_temporal() -> Client:
        raise RuntimeError("this test starts the delivery workflow itself")

    ctx = ServiceContext(settings=settings, sessions=session_factory, temporal=no_temporal)
    client = time_skipping_env.client
    async with receiver(default="fail") as rx:
        endpoint = await webhooks.create_endpoint(
            ctx, OPERATOR, webhooks.NewEndpoint(url=rx.url, event_types=[ev.CHARGER_OFFLINE])
        )
        delivery_id = new_delivery_id()
        async with session_factory.begin() as db:
            event_id = await record_event(db, ev.CHARGER_OFFLINE, {"charge_box_id": "CB-WH-24H"})
            db.add(
                WebhookDelivery(
                    id=delivery_id,
                    endpoint_id=endpoint["id"],
                    event_id=event_id,
                    event_type=ev.CHARGER_OFFLINE,
                )
            )
        acts = WebhookActivities(settings, session_factory, client)
        try:
            async with Worker(
                client,
                task_queue=task_queue,
                workflows=[WebhookDeliveryWorkflow],
                activities=[acts.attempt_delivery],
            ):
                began = await time_skipping_env.get_current_time()
                result = await client.execute_workflow(
                    WebhookDeliveryWorkflow.run,
                    DeliveryInput(delivery_id=delivery_id, schedule=schedule_of(settings)),
                    id=delivery_workflow_id(delivery_id, 1),
                    task_queue=task_queue,
                    result_type=AttemptResult,
                )
                ended = await time_skipping_env.get_current_time()
            assert result.outcome == "failed" and result.status_code == 500
            assert ended - began >= timedelta(hours=24)
            assert len(rx.received) == len(delays) + 1
            assert {r.webhook_id for r in rx.received} == {delivery_id}
            async with session_factory() as db:
                row = await db.get(WebhookDelivery, delivery_id)
                ep = await db.get(WebhookEndpoint, endpoint["id"])
            assert row is not None and row.status == "failed" and row.finished_at is not None
            assert row.attempts == len(delays) + 1 and row.last_status_code == 500
            # One failed delivery: counted, not yet enough to disable the endpoint.
            assert ep is not None and ep.consecutive_failures == 1 and ep.enabled
        finally:
            await webhooks.delete_endpoint(ctx, OPERATOR, endpoint["id"])
