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

from config.settings import Settings
from gateway.event_routes import (
    CHARGER_ACTIVITY,
    CONNECTOR_STATUS_AFTER_STOP,
    Subscription,
    subscribe,
    unsubscribe,
)
from workflows.idle_fee_messages import (
    IDLE_FEE_WORKFLOW,
    SIGNAL_IDLE_STATUS,
    subscription_start_input,
    subscription_workflow_id,
)
from workflows.steve_messages import CADENCE_WORKFLOW, CADENCE_WORKFLOW_ID, SIGNAL_CADENCE_ACTIVITY

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


def steve_cadence_subscription(settings: Settings) -> Subscription | None:
    """SteVe's Adaptive Cadence hears of every charger's activity (docs/steve.md), when SteVe is
    configured. Started by the outbox when it is not running, with the configured intervals."""
    if not settings.steve_api_url:
        return None
    cadence = {
        "active_s": settings.steve_sync_active_s,
        "idle_s": settings.steve_sync_idle_s,
        "dormant_s": settings.steve_sync_dormant_s,
        "demote_after": settings.steve_sync_demote_after,
        "dormant_after_s": settings.steve_sync_dormant_after_s,
        "run_now": False,
    }
    return Subscription(
        event=CHARGER_ACTIVITY,
        kind=SIGNAL_CADENCE_ACTIVITY,
        workflow_type=CADENCE_WORKFLOW,
        workflow_id=lambda _e: CADENCE_WORKFLOW_ID,
        start_input=lambda _e: dict(cadence),
    )


def subscribe_per_settings(settings: Settings) -> list[Subscription]:
    """The subscriptions that depend on configuration (the gateway subscribes them at start
    and unsubscribes them at stop)."""
    made = [sub for sub in (steve_cadence_subscription(settings),) if sub is not None]
    for sub in made:
        subscribe(sub)
    return made


def unsubscribe_all(subs: list[Subscription]) -> None:
    for sub in subs:
        unsubscribe(sub)
