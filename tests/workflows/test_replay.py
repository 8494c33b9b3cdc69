"""Replay every committed history in ``tests/histories/``: a workflow change that breaks
determinism for running executions fails here before it reaches them (use
``workflow.patched()``). A new history is picked up by being there: it is replayed with the
worker's class for its workflow type (``worker.WORKFLOWS``), so a history of a workflow the
worker does not register fails too.

Never re-record a history to make a change pass: each stands for executions already running.
``MARKERS`` says what each one must show (a re-recording that lost it would prove less) and how
it is recorded:

- ``charging_session_v1``: before the ``lago-send-usage-v1`` patch; frozen.
- ``charging_session_v2``: with ``lago-send-usage-v1`` (periodic lines and Lago sends),
  ``POLARIS_RECORD_HISTORIES=1 pytest tests/billing/test_session_lago.py -k periodic``.
- ``charging_session_v3``: with ``session-flags-data-error-v1`` (a line PostgreSQL refused),
  ``… tests/workflows/test_data_error.py``.
- ``charging_session_v4``: with ``session-closure-v1`` (a forgotten transaction closed, then a
  late stop's compensation), ``… tests/workflows/test_session_closure.py``.
- ``charging_session_v5``: with ``late-pre-authorize-v1`` (the tap's pre_authorize handled after
  the start, refusing the card; then ``authorization_refused`` and a remote stop),
  ``… tests/sessions/test_late_refusal.py -k after``.
- ``charging_session_v6``: with ``ocpp201-transaction-status-v1`` (the watchdog asks a 2.0.1
  station GetTransactionStatus and closes the transaction it no longer has),
  ``… tests/sessions/test_ocpp201_transaction_status.py -k no_longer``.
- ``charging_session_v7``: with ``session-read-model-local-v1`` (every read-model write a local
  activity: a tap to a billed session with a suspension and redelivered signals); recorded by
  ``tests/workflows/test_charging_session.py -k tap_to_billed`` before the next patch, frozen.
- ``charging_session_v8``: with ``session-db-activities-local-v1`` as well (pre-authorization,
  tariff and billing line as local activities: the history schedules only Lago's activity);
  recorded by the same test before the next change, frozen.
- ``charging_session_v9``: the same, with each read-model write's result naming the state it
  wrote (the operator's timeline reads states from it),
  ``… tests/workflows/test_charging_session.py -k tap_to_billed``.
- ``firmware_campaign_*``: ``… tests/firmware/test_campaign.py -k "threshold or operator"``.
- ``idle_fee_v1``: statuses that never free the connector (one redelivered), the watch timer,
  the charger checked, the line recorded, ``… tests/idle_fee/test_workflow.py -k watch``.
- ``local_list_sync_v1``: a differential update refused with VersionMismatch, the Full update
  that followed, ``… tests/local_lists/test_sync.py -k mismatch``.
- ``reservation_v1``: ReserveNow accepted, then joined by a StartTransaction,
  ``… tests/reservations/test_workflow.py -k reservation_id_joins``.
- ``retention_v1``: ``… tests/prodops/test_retention.py``.
- ``site_load_v1``: arrivals, an offered limit, a charger offline and back,
  ``… tests/load/test_site_load.py -k amps``.
- ``webhook_*``: ``… tests/webhooks/test_delivery.py``.

Every activity a history schedules must be registered where it runs: on the worker
(``worker.worker_activities``) or, for the gateway queues, by the gateway — a forgotten
activity fails here, not on a running workflow.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from activities.sessions import SessionActivities
from config.settings import Settings
from config.temporal import DATA_CONVERTER
from db.engine import SessionFactory
from gateway.commands import ChargerCommands
from worker import (
    WORKFLOWS,
    activities_of,
    activity_name,
    worker_activities,
    workflow_runner,
)

HISTORIES = Path(__file__).resolve().parent.parent / "histories"
HISTORY_FILES = sorted(HISTORIES.glob("*.json"))

MARKERS: dict[str, str] = {
    "charging_session_v1": "record_billing_events",
    "charging_session_v2": "lago_send_usage_events",
    "charging_session_v3": "DataError",
    "charging_session_v4": "record_session_closure",
    "charging_session_v5": "authorization_refused",
    "charging_session_v6": "send_charger_command",
    "charging_session_v7": "core_local_activity",
    "charging_session_v8": "core_local_activity",
    "charging_session_v9": "core_local_activity",
    "firmware_campaign_threshold_v1": "EVENT_TYPE_TIMER_FIRED",
    "firmware_campaign_halt_v1": "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED",
    "idle_fee_v1": "idle_fee_charger_seen",
    "local_list_sync_v1": "local_list_record_accepted",
    "reservation_v1": "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED",
    "retention_v1": "retention_prune",
    "site_load_v1": "site_load_plan",
    "webhook_delivery_v1": "webhook_attempt_delivery",
    "webhook_dispatcher_v1": "webhook_wait_for_events",
}


def workflow_type_name(cls: type) -> str:
    defn = getattr(cls, "__temporal_workflow_definition")
    return str(defn.name)


WORKFLOW_CLASSES = {workflow_type_name(cls): cls for cls in WORKFLOWS}


def _events(path: Path) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = json.loads(path.read_text())["events"]
    return events


def history_workflow_type(path: Path) -> str:
    started = _events(path)[0]["workflowExecutionStartedEventAttributes"]
    return str(started["workflowType"]["name"])


def scheduled_activities(path: Path) -> set[tuple[str, str]]:
    """(activity type, task queue) of every activity the history schedules."""
    found = set()
    for event in _events(path):
        attrs = event.get("activityTaskScheduledEventAttributes")
        if attrs:
            found.add((attrs["activityType"]["name"], attrs["taskQueue"]["name"]))
    return found


def test_every_history_has_a_marker_and_there_is_a_history_per_marker() -> None:
    names = {p.stem for p in HISTORY_FILES}
    assert names, "no histories found"
    assert set(MARKERS) <= names, f"histories gone: {set(MARKERS) - names}"


@pytest.mark.parametrize("path", HISTORY_FILES, ids=[p.stem for p in HISTORY_FILES])
async def test_replay(path: Path) -> None:
    text = path.read_text()  # noqa: ASYNC240 (a small committed file)
    if path.stem in MARKERS:
        assert MARKERS[path.stem] in text
    workflow_type = history_workflow_type(path)
    assert workflow_type in WORKFLOW_CLASSES, f"{workflow_type} is not registered in worker.py"
    history = WorkflowHistory.from_json(path.stem, text)
    replayer = Replayer(
        workflows=[WORKFLOW_CLASSES[workflow_type]],
        data_converter=DATA_CONVERTER,
        workflow_runner=workflow_runner(),  # the sandbox the worker runs them in
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None


async def test_every_activity_a_history_schedules_is_registered(
    temporal_client: Client, base_settings: Settings, session_factory: SessionFactory
) -> None:
    on_worker = {
        activity_name(fn)
        for fn in worker_activities(temporal_client, base_settings, session_factory)
    }
    gateway = ChargerCommands.__new__(ChargerCommands)
    on_gateway = {activity_name(fn) for fn in activities_of(gateway)}
    missing = []
    for path in HISTORY_FILES:
        for name, queue in scheduled_activities(path):
            registered = on_gateway if queue.startswith("gateway-") else on_worker
            if name not in registered:
                missing.append(f"{path.stem}: {name} on {queue}")
    assert not missing, missing


def test_activities_register_by_class() -> None:
    class Forgot(SessionActivities):
        async def load_tariff(self, *args: Any) -> Any:  # lost its @activity.defn
            return None

    class Nothing:
        pass

    with pytest.raises(TypeError, match="overrides an activity"):
        activities_of(Forgot.__new__(Forgot))
    with pytest.raises(TypeError, match=r"no @activity\.defn"):
        activities_of(Nothing())
    sessions = SessionActivities.__new__(SessionActivities)
    names = {activity_name(fn) for fn in activities_of(sessions)}
    assert {"load_tariff", "pre_authorize_card", "upsert_session_read_model"} <= names
