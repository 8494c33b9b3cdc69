"""Replay committed histories of the webhook workflows: a change that breaks determinism for
running executions (a delivery retries for a day; the dispatcher runs for ever) fails here (use
``workflow.patched()``).

``webhook_delivery_v1.json``: a delivery that failed (500), timed out, then succeeded.
``webhook_dispatcher_v1.json``: the dispatcher's rounds and waits around it. Regenerate with
``POLARIS_RECORD_HISTORIES=1 pytest tests/webhooks/test_delivery.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from config.temporal import DATA_CONVERTER
from workflows.webhooks import WebhookDeliveryWorkflow, WebhookDispatcherWorkflow

HISTORIES = Path(__file__).resolve().parent.parent / "histories"


@pytest.mark.parametrize(
    ("name", "must_contain"),
    [
        ("webhook_delivery_v1", "webhook_attempt_delivery"),
        ("webhook_dispatcher_v1", "webhook_wait_for_events"),
    ],
)
async def test_replay_webhook_workflows(name: str, must_contain: str) -> None:
    text = (HISTORIES / f"{name}.json").read_text()
    assert must_contain in text
    history = WorkflowHistory.from_json(name, text)
    replayer = Replayer(
        workflows=[WebhookDeliveryWorkflow, WebhookDispatcherWorkflow],
        data_converter=DATA_CONVERTER,
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
