"""Workflows subscribed to charger events: the one place a new workflow is wired to the gateway.

Add a :class:`gateway.event_routes.Subscription` here (``subscribe(...)`` at import time); the
gateway imports this module at start, publishes each event to every subscriber (one outbox row
each, in the frame's journal transaction) and the relay delivers the rows by the route the
subscription registered. Nothing else in the gateway changes. See ``docs/extending.md``.

The idle fee (``workflows/idle_fee.py``) is the worked example: one ``IdleFee`` workflow per
stopped session, fed every status of its connector after the StopTransaction. Its kind is not
``may_restart``: a status after the workflow ended (the next driver's ``Preparing``) never
starts it again.
"""

from __future__ import annotations

from gateway.event_routes import CONNECTOR_STATUS_AFTER_STOP, Subscription, subscribe
from workflows.idle_fee_messages import (
    IDLE_FEE_WORKFLOW,
    SIGNAL_IDLE_STATUS,
    subscription_start_input,
    subscription_workflow_id,
)

IDLE_FEE = subscribe(
    Subscription(
        event=CONNECTOR_STATUS_AFTER_STOP,
        kind=SIGNAL_IDLE_STATUS,
        workflow_type=IDLE_FEE_WORKFLOW,
        workflow_id=subscription_workflow_id,
        start_input=subscription_start_input,
        may_restart=False,
    )
)

BUILT_IN: tuple[Subscription, ...] = (IDLE_FEE,)
"""The subscriptions this module makes (tests that need a gateway without them remove these)."""
