"""Workflows subscribed to charger events: the one place a new workflow is wired to the gateway.

Add a :class:`gateway.event_routes.Subscription` here (``subscribe(...)`` at import time); the
gateway imports this module at start, publishes each event to every subscriber (one outbox row
each, in the frame's journal transaction) and the relay delivers the rows by the route the
subscription registered. Nothing else in the gateway changes. See ``docs/extending.md``.

Example (a workflow per stopped session that watches its connector)::

    subscribe(
        Subscription(
            event=CONNECTOR_STATUS_AFTER_STOP,
            kind="idle_status",  # outbox kind and signal name (at most 32 characters)
            workflow_type="IdleFee",
            workflow_id=lambda e: (
                f"idle-fee:{e['session_workflow_id']}" if e["session_workflow_id"] else None
            ),
            start_input=lambda e: {"session_workflow_id": e["session_workflow_id"]},
        )
    )
"""

from __future__ import annotations

from gateway.event_routes import Subscription, subscribe  # noqa: F401  (the API used here)
