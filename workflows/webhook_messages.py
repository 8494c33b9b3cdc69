"""Message types and names shared by the webhook workflows, their activities and the service
layer (importable from all three without an upward arrow)."""

from __future__ import annotations

from pydantic import BaseModel

WEBHOOK_DISPATCHER_WORKFLOW = "WebhookDispatcher"
WEBHOOK_DELIVERY_WORKFLOW = "WebhookDelivery"
ACTIVITY_DISPATCH_EVENTS = "webhook_dispatch_events"
ACTIVITY_WAIT_FOR_EVENTS = "webhook_wait_for_events"
ACTIVITY_ATTEMPT_DELIVERY = "webhook_attempt_delivery"
SIGNAL_WAKE = "wake"

# The production dispatcher; tests run their own under another name (and cursor).
DISPATCHER_NAME = "webhooks"


def dispatcher_workflow_id(name: str = DISPATCHER_NAME) -> str:
    return f"webhook-dispatcher-{name}"


def delivery_workflow_id(delivery_id: str, chain: int) -> str:
    """One workflow per attempt chain: the first from the dispatcher, one more per redelivery."""
    return f"webhook-delivery-{delivery_id}" + ("" if chain == 1 else f"-r{chain}")


class DispatcherInput(BaseModel):
    name: str = DISPATCHER_NAME  # the cursor's name
    batch_size: int = 200
    # Rounds before continue-as-new (history stays short).
    iterations_per_run: int = 200
    # How long one wait for new events may listen before the loop goes round anyway.
    wait_s: float = 60.0


class DispatchEventsInput(BaseModel):
    name: str
    batch_size: int = 200


class DispatchEventsResult(BaseModel):
    events: int = 0
    deliveries: int = 0
    started: int = 0
    more: bool = False  # a full batch: go again at once
    last_event_id: int = 0


class WaitForEventsInput(BaseModel):
    after_id: int
    max_wait_s: float = 60.0
    poll_s: float = 1.0


class Schedule(BaseModel):
    """domain.webhooks.RetrySchedule, as the delivery workflow's input carries it."""

    first_delay_s: float
    factor: float = 2.0
    max_delay_s: float
    give_up_after_s: float


class DeliveryInput(BaseModel):
    delivery_id: str
    chain: int = 1
    schedule: Schedule
    timeout_s: float = 10.0


class AttemptInput(BaseModel):
    delivery_id: str
    chain: int
    attempt: int
    final: bool  # no retry after this one: a failure fails the delivery


class AttemptResult(BaseModel):
    # delivered: 2xx; failed: try again later (or, when final, the delivery failed);
    # gone: the endpoint was deleted or disabled, or the chain was replaced (stop trying).
    outcome: str
    status_code: int | None = None
    error: str | None = None
